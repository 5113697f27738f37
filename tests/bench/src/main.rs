//! `paywarden-bench`: paywarden measured from outside, as a merchant would see it, next to the
//! approaches it replaces, on this machine's PostgreSQL, a private Redis and the RabbitMQ
//! broker.
//!
//! ```sh
//! cargo build --release -p paywarden -p paywarden-bench
//! target/release/paywarden-bench expiry      # close lateness, burst, DB / Redis / RabbitMQ baselines
//! target/release/paywarden-bench create      # POST /v1/orders next to pgbench
//! target/release/paywarden-bench rehydrate   # re-arming after kill -9, RSS per live order
//! target/release/paywarden-bench idle        # CPU with 1,000,000 live orders and no traffic
//! target/release/paywarden-bench webhooks    # outbox delivery throughput to one local receiver
//! target/release/paywarden-bench dashboard   # the console's dashboard with 1,000,000 orders
//! target/release/paywarden-bench merchants   # start and memory with 10,000 merchants' accounts
//! ```
//!
//! Each scenario starts the `paywarden` release binary next to this one as its own process on
//! a fresh database, prints its tables and writes them as JSON under `--out`.

mod baselines;
mod create;
mod dashboard;
mod expiry;
mod harness;
mod load;
mod merchants;
mod rehydrate;
mod report;
mod webhooks;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "paywarden measured from outside, side by side with the approaches it replaces")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Where the JSON figures go.
    #[arg(long, global = true, default_value = "target/bench")]
    out: PathBuf,
    /// A setting of the measured service, as its environment variable:
    /// `--set PAYWARDEN__DATABASE__MAX_CONNECTIONS=20` (repeatable).
    #[arg(long = "set", global = true, value_parser = parse_setting)]
    settings: Vec<(String, String)>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if key.starts_with("PAYWARDEN__") => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected PAYWARDEN__SECTION__KEY=value, got {text}")),
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// Close committed − deadline for orders through the service, a burst, and the baselines.
    Expiry(expiry::Args),
    /// Order creation over HTTP next to pgbench running the same rows.
    Create(create::Args),
    /// Re-arming pending orders after kill -9, next to a bare read; RSS per live order.
    Rehydrate(rehydrate::Args),
    /// CPU used with live orders armed and no traffic.
    Idle(rehydrate::IdleArgs),
    /// Outbox events delivered per second to one local receiver.
    Webhooks(webhooks::Args),
    /// The console's dashboard loads with orders over the last week, next to a bare count.
    Dashboard(dashboard::Args),
    /// Start and memory with many merchants' provider accounts, next to an empty deployment.
    Merchants(merchants::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    harness::SERVICE_SETTINGS.set(cli.settings.clone()).ok();
    match &cli.scenario {
        Scenario::Expiry(args) => expiry::run(args, &cli.out).await,
        Scenario::Create(args) => create::run(args, &cli.out).await,
        Scenario::Rehydrate(args) => rehydrate::run(args, &cli.out).await,
        Scenario::Idle(args) => rehydrate::idle(args, &cli.out).await,
        Scenario::Webhooks(args) => webhooks::run(args, &cli.out).await,
        Scenario::Dashboard(args) => dashboard::run(args, &cli.out).await,
        Scenario::Merchants(args) => merchants::run(args, &cli.out).await,
    }
}
