//! Benchmark of the order actors: memory per live order and how late their timers fire.
//!
//! For each N (default 100,000 and 1,000,000) it stores N pending orders in a fresh SQLite
//! database, re-arms them through the engine exactly as a restart does (one `OrderActor` per
//! order, registered, timer armed), and reports:
//! - RSS per live order: (RSS after arming − RSS before) / N;
//! - timer lateness (fired − deadline): p50 / p99 / max, with deadlines spread evenly over
//!   `--spread-seconds` (60 by default).
//!
//! Each fired timer then runs the real expiry pass (read the order, no attempts, close it with
//! its log and outbox rows); the report says how many closes finished while timers fired.
//!
//! Run: `cargo run --release -p paywarden-bench [-- --orders 100000 --orders 1000000]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::deadline::SqlDeadlineIndex;
use actors::engine::{Engine, EngineParts};
use actors::ids::Snowflake;
use actors::metrics::EngineMetrics;
use actors::order::expiry::ExpirySettings;
use actors::provider::Providers;
use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

#[derive(Parser)]
#[command(about = "Memory per live order and timer lateness of paywarden's order actors")]
struct Args {
    /// Live orders to arm (repeat for several runs).
    #[arg(long = "orders")]
    orders: Vec<usize>,
    /// Deadlines are spread evenly over this many seconds.
    #[arg(long, default_value_t = 60)]
    spread_seconds: i64,
    /// Arbiters (threads) for the order actors.
    #[arg(long, default_value_t = 2)]
    arbiters: usize,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.orders.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        args.orders.clone()
    };
    println!(
        "paywarden-bench: {} arbiters, deadlines spread over {} s",
        args.arbiters, args.spread_seconds
    );
    for n in sizes {
        run(n, &args).await?;
    }
    // Queued closes of the last run would keep the process busy; the figures are printed.
    std::process::exit(0)
}

async fn run(n: usize, args: &Args) -> anyhow::Result<()> {
    println!("\n== {n} live orders");
    let dir = std::env::temp_dir().join(format!("paywarden-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.display());
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3600))
        .sqlx_logging(false);
    let db = Database::connect(options).await.context("sqlite")?;
    Migrator::up(&db, None).await?;

    // Deadlines start after the arming phase has surely finished.
    let setup_slack_ms = i64::try_from(n / 40).unwrap_or(i64::MAX).max(5_000) + 5_000;
    let inserted_at = Instant::now();
    let first_deadline_ms = Utc::now().timestamp_millis() + setup_slack_ms + 30_000;
    insert_orders(&db, n, first_deadline_ms, args.spread_seconds * 1000).await?;
    println!("stored {n} orders in {:.1} s", inserted_at.elapsed().as_secs_f64());

    let registry = prometheus::Registry::new();
    let mut metrics = EngineMetrics::register(&registry)?;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(n)));
    metrics.lateness_samples = Some(samples.clone());
    // No provider: the benchmarked orders have no payment attempts.
    let providers = Providers::new(HashMap::new(), Duration::from_secs(30));
    let engine = Engine::start(EngineParts {
        db: db.clone(),
        ids: Snowflake::new(1)?,
        providers: Arc::new(providers),
        index: Arc::new(SqlDeadlineIndex::new(db.clone())),
        refunds: actors::refund::RefundSettings::default(),
        settings: ExpirySettings {
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(30),
            retry_budget: 5,
            stuck_retry_interval: Duration::from_secs(60),
            userpaying_grace: Duration::from_secs(5),
            userpaying_max_rechecks: 6,
            provider_reply_timeout: Duration::from_secs(30),
            actor_reply_timeout: Duration::from_secs(60),
            overdue_per_second: 1000,
            arbiters: args.arbiters,
            max_concurrent_passes: 64,
            follow_up_interval: Duration::from_millis(200),
            provider_clock_margin: Duration::from_secs(30),
        },
        metrics,
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rss_before = rss_bytes()?;
    let armed_at = Instant::now();
    let report = engine.rehydrate().await?;
    // Let the arbiters run every actor's `started` (timer armed) before measuring.
    while engine.live_actors() < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_bytes()?;
    let per_order = (rss_after.saturating_sub(rss_before)) / u64::try_from(n).unwrap_or(1);
    println!(
        "armed {} actors in {:.1} s; RSS {} MiB -> {} MiB: {per_order} bytes per live order",
        report.armed,
        armed_at.elapsed().as_secs_f64(),
        rss_before >> 20,
        rss_after >> 20
    );

    let until_first = first_deadline_ms - Utc::now().timestamp_millis();
    println!("waiting {} ms for the first deadline", until_first);
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(until_first.max(0)).unwrap_or(0))
        + Duration::from_secs(u64::try_from(args.spread_seconds).unwrap_or(60) + 60);
    loop {
        let fired = samples.lock().map(|s| s.len()).unwrap_or(0);
        if fired >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let fired = samples.lock().map(|s| s.len()).unwrap_or(0);
        println!("  fired {fired}/{n}, actors still live {}", engine.live_actors());
    }
    let closed = registry
        .gather()
        .iter()
        .filter(|family| family.name() == "expiry_outcomes_total")
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| metric.get_label().iter().any(|label| label.value() == "closed"))
        .map(|metric| metric.get_counter().get_value())
        .sum::<f64>();
    let mut lateness = samples.lock().map(|s| s.clone()).unwrap_or_default();
    lateness.sort_unstable();
    let rss_peak = rss_bytes()?;
    println!(
        "RESULT n={n} rss_per_order_bytes={per_order} fired={} lateness_ms p50={} p99={} max={} closed_while_firing={closed} rss_now_mib={}",
        lateness.len(),
        percentile_ms(&lateness, 50),
        percentile_ms(&lateness, 99),
        percentile_ms(&lateness, 100),
        rss_peak >> 20
    );
    // The closes still queued behind SQLite's single writer are not part of the measurement:
    // leave without draining them.
    let _ = std::fs::remove_dir_all(&dir);
    drop(engine);
    Ok(())
}

async fn insert_orders(db: &DatabaseConnection, n: usize, first_ms: i64, spread_ms: i64) -> anyhow::Result<()> {
    let ids = Snowflake::new(2)?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let mut rows = Vec::with_capacity(500);
    for i in 0..n {
        let id = ids.next_id().await?;
        let offset = spread_ms * i64::try_from(i).unwrap_or(0) / i64::try_from(n).unwrap_or(1);
        let expires = chrono::DateTime::<Utc>::from_timestamp_millis(first_ms + offset).context("deadline")?;
        rows.push(format!(
            "({id}, '{id}', 'bench', 'b{i}', 'x', 'u', 'bench order', 100, 'CNY', 'pending', NULL, '{}', '{}', NULL, NULL, 0)",
            expires.to_rfc3339(),
            now.to_rfc3339()
        ));
        if rows.len() == 500 || i + 1 == n {
            let sql = format!(
                "INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, subject, total_amount, currency, status, close_reason, expires_at, created_at, paid_at, closed_at, version) VALUES {}",
                rows.join(",")
            );
            txn.execute_unprepared(&sql).await?;
            rows.clear();
        }
    }
    txn.commit().await?;
    Ok(())
}

/// The `p`-th percentile (0..=100) of sorted µs samples, in ms with three decimals.
fn percentile_ms(sorted_us: &[i64], p: usize) -> String {
    if sorted_us.is_empty() {
        return "n/a".to_owned();
    }
    let idx = ((sorted_us.len() - 1) * p).div_ceil(100);
    let us = sorted_us[idx.min(sorted_us.len() - 1)];
    format!("{}.{:03}", us / 1000, (us % 1000).abs())
}

fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS not found")?;
    Ok(kb * 1024)
}
