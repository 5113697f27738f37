//! `paywarden-fault`: runs the fault-injection suite at any size and prints every count.
//!
//! ```sh
//! cargo run --release -p paywarden-fault -- --orders 5000 --minutes 10 --nodes 3
//! ```
//!
//! Exits 0 when every invariant held, 1 when one failed, 2 when the harness itself failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use paywarden_fault::{run, Scenario};
use tracing_subscriber::{fmt, EnvFilter};

#[derive(Parser)]
#[command(
    version,
    about = "Fault-injection suite: paywarden's invariants under node kills, a Redis restart and provider failures"
)]
struct Cli {
    /// Orders created, evenly over the load.
    #[arg(long)]
    orders: Option<u32>,
    /// How long the load runs, in minutes.
    #[arg(long, conflicts_with = "seconds")]
    minutes: Option<f64>,
    /// How long the load runs, in seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// paywarden processes on the same PostgreSQL and Redis.
    #[arg(long)]
    nodes: Option<usize>,
    /// Every node runs every pending order, instead of a cluster where each order is run by
    /// the owner of its partition.
    #[arg(long)]
    no_cluster: bool,
    /// Seeds every order's choices (default: a fresh one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Shortest order TTL, in seconds.
    #[arg(long)]
    ttl_min: Option<u64>,
    /// Longest order TTL, in seconds.
    #[arg(long)]
    ttl_max: Option<u64>,
    /// The simulator's WeChat close rule (no close this soon after the prepay); 0: off.
    #[arg(long)]
    close_too_early_seconds: Option<u64>,
    /// Keep the database and the logs even when every invariant held.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,paywarden_fault=info"));
    // try_init fails only when a subscriber is already installed.
    let _ = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let defaults = Scenario::ci();
    let load_duration = match (cli.minutes, cli.seconds) {
        (Some(minutes), _) => Duration::from_secs_f64((minutes * 60.0).max(10.0)),
        (None, Some(seconds)) => Duration::from_secs(seconds.max(10)),
        (None, None) => defaults.load_duration,
    };
    let ttl_min = cli.ttl_min.unwrap_or(defaults.ttl_seconds.0).max(1);
    let scenario = Scenario {
        orders: cli.orders.unwrap_or(defaults.orders),
        load_duration,
        nodes: cli.nodes.unwrap_or(defaults.nodes).max(1),
        cluster: !cli.no_cluster,
        seed: cli.seed.unwrap_or_else(rand::random),
        ttl_seconds: (ttl_min, cli.ttl_max.unwrap_or(defaults.ttl_seconds.1).max(ttl_min)),
        close_too_early_seconds: cli.close_too_early_seconds.unwrap_or(defaults.close_too_early_seconds),
        // Longer runs leave more to settle.
        quiescence_limit: defaults.quiescence_limit.max(load_duration / 4),
        keep: cli.keep,
        ..defaults
    };
    match run(&scenario).await {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("the fault suite could not run: {err:?}");
            ExitCode::from(2)
        }
    }
}
