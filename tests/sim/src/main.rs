//! `paywarden-sim`: the WeChat Pay / Alipay simulator as a stand-alone server, for demos and
//! manual testing. Keys come from `paywarden-sim keys --dir DIR`; without `--keys-dir`, fresh
//! ones are generated and forgotten at exit.

use clap::{Parser, Subcommand};
use paywarden_sim::keys::{write_keys, KeyMaterial};
use paywarden_sim::{SimConfig, SimServer};
use tracing_subscriber::{fmt, EnvFilter};

#[derive(Parser)]
#[command(version, about = "WeChat Pay v3 / Alipay provider simulator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "PAYWARDEN_SIM_BIND", default_value = "127.0.0.1:7070")]
    bind: String,
    /// Directory written by `paywarden-sim keys`.
    #[arg(long, env = "PAYWARDEN_SIM_KEYS_DIR")]
    keys_dir: Option<std::path::PathBuf>,
    /// WeChat refuses closes this soon after the prepay.
    #[arg(long, env = "PAYWARDEN_SIM_CLOSE_TOO_EARLY_SECONDS", default_value_t = paywarden_sim::DEFAULT_CLOSE_TOO_EARLY_SECONDS)]
    close_too_early_seconds: u64,
    /// Divides the providers' notification retry schedules.
    #[arg(long, env = "PAYWARDEN_SIM_NOTIFY_SPEEDUP", default_value_t = 1)]
    notify_speedup: u32,
}

/// Without a subcommand, the simulator serves.
#[derive(Subcommand)]
enum Command {
    /// Write RSA-2048 merchant and platform key pairs and a WeChat APIv3 key into DIR (files
    /// 0600), for the simulator and local gateway settings. Never commit them.
    Keys {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Keys { dir }) = &cli.command {
        for path in write_keys(dir)? {
            println!("{}", path.display());
        }
        return Ok(());
    }
    init_logging();
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

/// Plain-text logs: `RUST_LOG` when set, else `info`.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init fails only when a subscriber is already installed, which is fine.
    let _ = fmt().with_env_filter(filter).with_target(false).try_init();
}
