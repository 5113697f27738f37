//! `rehydrate`: N pending orders; the service arms them, is killed with SIGKILL and started
//! again; how long until every timer is armed, next to a bare read of the same data
//! (`ZRANGE … WITHSCORES` of the deadline index plus the `SELECT` of the live orders), and
//! the resident memory per live order. `idle`: the CPU the service uses with those orders
//! armed and no traffic.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Statement};
use serde::Serialize;

use crate::harness::{now_ms, store_pending_orders, Harness, Service};
use crate::report::{float_u, print_table, write_json, Machine};

/// Deadlines of the stored orders start this far ahead (none fires during a run) and spread
/// over a day.
const FIRST_DEADLINE_AHEAD_MS: i64 = 3_600_000;
const SPREAD_MS: i64 = 86_400_000;
/// The gauge of order actors whose timer is armed.
const ARMED: &str = "paywarden_order_timers_armed";

#[derive(clap::Args)]
pub struct Args {
    /// Pending orders (repeat for several runs).
    #[arg(long = "orders")]
    orders: Vec<u64>,
}

#[derive(clap::Args)]
pub struct IdleArgs {
    /// Live orders armed while idle.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// How long the CPU is watched.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

#[derive(Serialize)]
struct Row {
    orders: u64,
    /// SIGKILL, start: process spawned until every timer is armed.
    rearm_after_kill_s: f64,
    /// Of which: until the service answered `/healthz`.
    healthy_after_s: f64,
    bare_read_s: f64,
    ratio: f64,
    rss_empty_bytes: u64,
    rss_armed_bytes: u64,
    rss_per_order_bytes: u64,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    rows: Vec<Row>,
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let sizes = if args.orders.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        args.orders.clone()
    };
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("rehydrate: {n} pending orders");
        let mut harness = Harness::new("rehydrate").await?;
        let (mut service, rss_empty) = empty_then_stored(&mut harness, n).await?;
        // First start: arms them.
        service.start().await?;
        service
            .wait_for_metric(ARMED, float_u(n), Duration::from_secs(600))
            .await?;
        service.kill();
        eprintln!("  killed with SIGKILL; starting again");
        let spawned = Instant::now();
        let healthy = service.start().await?;
        let armed_at = service
            .wait_for_metric(ARMED, float_u(n), Duration::from_secs(600))
            .await?;
        let rearm = armed_at.duration_since(spawned);
        // Let allocations settle before reading the memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_armed = service.rss()?;
        service.kill();
        let bare = bare_read(&harness).await?;
        let per_order = rss_armed.saturating_sub(rss_empty) / n.max(1);
        rows.push(Row {
            orders: n,
            rearm_after_kill_s: rearm.as_secs_f64(),
            healthy_after_s: healthy.as_secs_f64(),
            bare_read_s: bare.as_secs_f64(),
            ratio: rearm.as_secs_f64() / bare.as_secs_f64(),
            rss_empty_bytes: rss_empty,
            rss_armed_bytes: rss_armed,
            rss_per_order_bytes: per_order,
        });
        harness.finish(false).await?;
    }
    print_table(
        "Re-arming after kill -9 (PostgreSQL + Redis, release build) next to a bare read of the same data",
        &[
            "pending orders",
            "all timers armed after",
            "/healthz after",
            "bare ZRANGE + SELECT",
            "ratio",
            "RSS per live order",
        ],
        &rows
            .iter()
            .map(|row| {
                vec![
                    row.orders.to_string(),
                    format!("{:.2} s", row.rearm_after_kill_s),
                    format!("{:.2} s", row.healthy_after_s),
                    format!("{:.2} s", row.bare_read_s),
                    format!("{:.2}x", row.ratio),
                    format!("{} B", row.rss_per_order_bytes),
                ]
            })
            .collect::<Vec<_>>(),
    );
    write_json(out, "rehydrate", &Figures { machine, rows })
}

/// Starts the service on the empty database (its resident memory with no order), stops it,
/// then stores `n` pending orders. Returns the stopped service and that memory.
async fn empty_then_stored(harness: &mut Harness, n: u64) -> anyhow::Result<(Service, u64)> {
    let mut service = harness.node(Vec::new())?;
    service.start().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty = service.rss()?;
    service.kill();
    store_pending_orders(harness, n, now_ms() + FIRST_DEADLINE_AHEAD_MS, SPREAD_MS).await?;
    Ok((service, rss_empty))
}

/// `ZRANGE key 0 -1 WITHSCORES` and the `SELECT` of the live orders' ids and deadlines: what
/// any re-arming has to read.
async fn bare_read(harness: &Harness) -> anyhow::Result<Duration> {
    let client = redis::Client::open(harness.redis.url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let members: Vec<(i64, i64)> = redis::cmd("ZRANGE")
        .arg(harness.deadlines_key())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await?;
    let rows = harness
        .conn
        .query_all(Statement::from_string(
            harness.conn.get_database_backend(),
            "SELECT id, expires_at FROM orders WHERE status IN ('pending', 'stuck')".to_owned(),
        ))
        .await?;
    let mut read = 0usize;
    for row in &rows {
        let _: i64 = row.try_get_by_index(0)?;
        let _: chrono::DateTime<chrono::Utc> = row.try_get_by_index(1)?;
        read += 1;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        members.len() == read,
        "index {} and database {read} differ",
        members.len()
    );
    Ok(elapsed)
}

#[derive(Serialize)]
struct IdleFigures {
    machine: Machine,
    orders: u64,
    seconds: u64,
    cpu_seconds: f64,
    percent_of_a_core: f64,
    rss_bytes: u64,
}

pub async fn idle(args: &IdleArgs, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let mut harness = Harness::new("idle").await?;
    let (mut service, _) = empty_then_stored(&mut harness, args.orders).await?;
    service.start().await?;
    service
        .wait_for_metric(ARMED, float_u(args.orders), Duration::from_secs(600))
        .await
        .context("arming")?;
    // Start-up work (reconcile, first sweeps) done.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("idle: watching the CPU for {} s", args.seconds);
    let before = service.cpu_time()?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let used = service.cpu_time()?.saturating_sub(before);
    let rss = service.rss()?;
    service.kill();
    let figures = IdleFigures {
        machine,
        orders: args.orders,
        seconds: args.seconds,
        cpu_seconds: used.as_secs_f64(),
        percent_of_a_core: used.as_secs_f64() / float_u(args.seconds) * 100.0,
        rss_bytes: rss,
    };
    print_table(
        "Idle service with live orders armed and no traffic",
        &["live orders", "watched", "CPU used", "of one core", "RSS"],
        &[vec![
            figures.orders.to_string(),
            format!("{} s", figures.seconds),
            format!("{:.2} s", figures.cpu_seconds),
            format!("{:.2} %", figures.percent_of_a_core),
            format!("{} MiB", figures.rss_bytes >> 20),
        ]],
    );
    write_json(out, "idle", &figures)?;
    harness.finish(false).await
}
