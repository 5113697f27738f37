//! `create`: `POST /v1/orders` throughput and latency at 1, 16 and 64 connections, next to
//! `pgbench` running the transaction of the same rows (order, item, log, outbox event) on the
//! same database at the same concurrency.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::harness::Harness;
use crate::load::create_orders;
use crate::report::{ms, print_table, write_json, Machine, Spread};

#[derive(clap::Args)]
pub struct Args {
    /// Client connections (repeat for several).
    #[arg(long = "connections")]
    connections: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
}

#[derive(Serialize)]
struct Row {
    connections: usize,
    paywarden_per_second: f64,
    paywarden_latency: Spread,
    paywarden_failed: u64,
    /// CPU time the service process used per order created (user + system).
    service_cpu_per_order_us: f64,
    pgbench_tps: f64,
    pgbench_latency: Spread,
    ratio: f64,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    seconds: u64,
    rows: Vec<Row>,
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let connections = if args.connections.is_empty() {
        vec![1, 16, 64]
    } else {
        args.connections.clone()
    };
    let duration = Duration::from_secs(args.seconds.max(1));
    let mut harness = Harness::new("create").await?;
    let mut service = harness.node(Vec::new())?;
    service.start().await?;
    let script = write_pgbench_script(&harness.dir)?;
    // Warm-up: connections opened, caches filled.
    create_orders(&service.base(), 16, Duration::from_secs(3), "warm").await?;

    let mut rows = Vec::new();
    for &c in &connections {
        eprintln!(
            "create: {c} connection(s), {} s through the service",
            duration.as_secs()
        );
        let cpu_before = service.cpu_time()?;
        let load = create_orders(&service.base(), c, duration, &format!("c{c}")).await?;
        let cpu = service.cpu_time()?.saturating_sub(cpu_before);
        if let Some(failure) = &load.first_failure {
            eprintln!("  {} failed; the first: {failure}", load.failed);
        }
        eprintln!("create: {c} connection(s), {} s of pgbench", duration.as_secs());
        let (tps, latency) = pgbench(&harness, &script, c, duration)?;
        let per_second = load.per_second();
        rows.push(Row {
            connections: c,
            paywarden_per_second: per_second,
            paywarden_latency: Spread::of_micros(load.latencies_us),
            paywarden_failed: load.failed,
            service_cpu_per_order_us: cpu.as_secs_f64() * 1e6 / crate::report::float_u(load.ok.max(1)),
            pgbench_tps: tps,
            pgbench_latency: latency,
            ratio: per_second / tps,
        });
    }
    service.kill();

    print_table(
        "POST /v1/orders (PostgreSQL + Redis, release build) next to pgbench running the same rows",
        &[
            "connections",
            "paywarden orders/s",
            "p50 ms",
            "p99 ms",
            "failed",
            "service CPU / order",
            "pgbench tps",
            "p50 ms",
            "p99 ms",
            "paywarden / pgbench",
        ],
        &rows
            .iter()
            .map(|row| {
                vec![
                    row.connections.to_string(),
                    format!("{:.0}", row.paywarden_per_second),
                    ms(row.paywarden_latency.p50_ms),
                    ms(row.paywarden_latency.p99_ms),
                    row.paywarden_failed.to_string(),
                    format!("{:.0} µs", row.service_cpu_per_order_us),
                    format!("{:.0}", row.pgbench_tps),
                    ms(row.pgbench_latency.p50_ms),
                    ms(row.pgbench_latency.p99_ms),
                    format!("{:.0} %", row.ratio * 100.0),
                ]
            })
            .collect::<Vec<_>>(),
    );
    write_json(
        out,
        "create",
        &Figures {
            machine,
            seconds: duration.as_secs(),
            rows,
        },
    )?;
    harness.finish(false).await
}

/// The rows one create writes, as one transaction: the order, its item, its log line and its
/// `order.created` outbox event (a payload of the size paywarden writes).
fn write_pgbench_script(dir: &Path) -> anyhow::Result<PathBuf> {
    // The payload of an `order.created` event (colons are written `|` and put back by the
    // statement: pgbench would read `:name` inside the literal as a variable).
    let payload = format!(
        "{{\"event_id\":\"{}\",\"type\":\"order.created\",\"occurred_at\":\"2026-12-01T00:00:00Z\",\"order_no\":\"7400000000000000000\",\"merchant_id\":\"demo\",\"out_business_id\":\"pgbench-order\",\"status\":\"pending\",\"total_amount\":2999,\"currency\":\"CNY\"}}",
        uuid::Uuid::nil()
    )
    .replace(':', "|");
    let script = format!(
        "\\set id random(1000000000000000000, 8000000000000000000)\n\
         BEGIN;\n\
         INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, subject, total_amount, currency, status, expires_at, created_at, version, refunded_amount) \
         VALUES (:id, CAST(:id AS TEXT), 'pgbench', 'pgb-' || :id, '{fp}', 'bench-user', 'bench order', 2999, 'CNY', 'closed', now() + interval '1 hour', now(), 0, 0);\n\
         INSERT INTO order_logs (order_id, event, from_status, to_status, operator, reason, created_at) \
         VALUES (:id, 'published' || chr(58) || 'order.created', NULL, 'pending', 'merchant' || chr(58) || 'pgbench', 'total 2999 CNY', now());\n\
         INSERT INTO order_items (order_id, sku_id, name, unit_price, quantity, amount, reserved_quantity) \
         VALUES (:id, 'sku-1', 'bench item', 2999, 1, 2999, 0);\n\
         INSERT INTO outbox (event_id, event_type, order_id, merchant_id, payload, created_at) \
         VALUES (gen_random_uuid(), 'order.created', :id, 'pgbench', replace('{payload}', '|', chr(58)), now());\n\
         END;\n",
        fp = "f".repeat(64),
    );
    let path = dir.join("create.pgbench");
    std::fs::write(&path, script)?;
    Ok(path)
}

/// Runs pgbench with `script` at `clients` for `duration`; returns tps and the latency spread
/// of every transaction (from its per-transaction log).
fn pgbench(harness: &Harness, script: &Path, clients: usize, duration: Duration) -> anyhow::Result<(f64, Spread)> {
    let logs = harness.dir.join(format!("pgbench-{clients}"));
    std::fs::create_dir_all(&logs)?;
    let output = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", &clients.min(2).to_string()])
        .args(["-T", &duration.as_secs().to_string()])
        .arg("-f")
        .arg(script)
        .arg("-l")
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg(&harness.db.name)
        .output()
        .context("pgbench could not be run (is postgresql-contrib / pgbench installed?)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    }
    let tps = stdout
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // client_id transaction_no latency_us script_no epoch epoch_us
        latencies.extend(
            text.lines()
                .filter_map(|line| line.split_whitespace().nth(2))
                .filter_map(|v| v.parse::<i64>().ok()),
        );
    }
    Ok((tps, Spread::of_micros(latencies)))
}
