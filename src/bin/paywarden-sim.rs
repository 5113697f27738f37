//! `paywarden-sim`: the WeChat Pay / Alipay simulator as a stand-alone server, for demos and
//! manual testing. Keys come from `paywarden keys --dir DIR`; without `--keys-dir`, fresh
//! ones are generated and forgotten at exit.

use clap::Parser;
use paywarden::keys::KeyMaterial;
use paywarden::sim::{SimConfig, SimServer};

#[derive(Parser)]
#[command(version, about = "WeChat Pay v3 / Alipay provider simulator")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PAYWARDEN_SIM_BIND", default_value = "127.0.0.1:7070")]
    bind: String,
    /// Directory written by `paywarden keys`.
    #[arg(long, env = "PAYWARDEN_SIM_KEYS_DIR")]
    keys_dir: Option<std::path::PathBuf>,
    /// WeChat refuses closes this soon after the prepay.
    #[arg(long, env = "PAYWARDEN_SIM_CLOSE_TOO_EARLY_SECONDS", default_value_t = paywarden::sim::DEFAULT_CLOSE_TOO_EARLY_SECONDS)]
    close_too_early_seconds: u64,
    /// Divides the providers' notification retry schedules.
    #[arg(long, env = "PAYWARDEN_SIM_NOTIFY_SPEEDUP", default_value_t = 1)]
    notify_speedup: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    paywarden::telemetry::init("info", false);
    let keys = match &cli.keys_dir {
        Some(dir) => KeyMaterial::read(dir)?,
        None => KeyMaterial::generate()?,
    };
    let mut config = SimConfig::new(keys);
    config.close_too_early_seconds = cli.close_too_early_seconds;
    config.notify_speedup = cli.notify_speedup;
    let server = SimServer::start_on(&cli.bind, config).await?;
    tracing::info!(
        base_url = server.base_url(),
        alipay_gateway = %server.alipay_gateway_url(),
        wechat_platform_serial = server.wechat_platform_serial(),
        "paywarden-sim ready"
    );
    server.run_until_stopped().await
}
