//! `expiry`: how late an unpaid order is closed, measured as a merchant sees it: from its
//! deadline until the close is committed in the database.
//!
//! Orders are created through the service (PostgreSQL + Redis) with mixed TTLs so that their
//! deadlines come at about `--expiry-rate` a second; the lateness of each is read back from the
//! database: the commit timestamp of the row version that closed it when PostgreSQL tracks
//! commit timestamps (`track_commit_timestamp = on`), else its `closed_at`, stamped in the
//! closing transaction. Runs: no payment attempt; a sandbox attempt per order (query + close
//! in-process); a WeChat Pay attempt per order against the simulator over HTTP (signed
//! requests both ways). Then a burst of orders all due in the same millisecond, and the
//! baselines over the schedule of the first run.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Statement};
use serde::Serialize;
use serde_json::json;

use crate::baselines::{self, Planned};
use crate::harness::{now_ms, store_pending_orders, Harness, Service, MERCHANT_KEY};
use crate::load::{client, order_body, record, LoadResult};
use crate::report::{ms, print_table, write_json, Machine, Spread};

#[derive(clap::Args)]
pub struct Args {
    /// Orders of the run without provider calls (and of the baselines).
    #[arg(long, default_value_t = 100_000)]
    orders: u64,
    /// Orders of each run with a payment attempt.
    #[arg(long, default_value_t = 20_000)]
    attempt_orders: u64,
    /// Deadlines per second the TTLs are spread for.
    #[arg(long, default_value_t = 1000)]
    expiry_rate: u64,
    /// The same for the run against the simulator (every pass signs and verifies RSA twice
    /// on both sides, on the same two cores).
    #[arg(long, default_value_t = 200)]
    simulator_expiry_rate: u64,
    /// Orders created per second (at most: the service may be slower).
    #[arg(long, default_value_t = 2000)]
    create_rate: u64,
    /// Orders due in the same millisecond in the burst.
    #[arg(long, default_value_t = 10_000)]
    burst: u64,
    /// AMQP broker of the RabbitMQ baseline.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Runs to leave out: none, sandbox, simulator, burst, baselines.
    #[arg(long = "skip")]
    skip: Vec<String>,
}

#[derive(Serialize)]
struct Row {
    approach: String,
    orders: u64,
    peak_deadlines_per_second: u64,
    lateness: Spread,
    /// Orders not closed when the run ended (stuck, still pending).
    not_closed: u64,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    clock: &'static str,
    rows: Vec<Row>,
    burst: Option<BurstFigures>,
}

#[derive(Serialize)]
struct BurstFigures {
    orders: u64,
    /// From the shared deadline until the last close committed.
    all_committed_after_ms: f64,
    lateness: Spread,
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let skip = |name: &str| args.skip.iter().any(|s| s == name);
    let mut rows = Vec::new();
    let mut clock = "closed_at";
    let mut schedule = Vec::new();
    if !skip("none") {
        let (row, planned, used) = paywarden_run(args, "paywarden, no provider call", args.orders, None).await?;
        rows.push(row);
        schedule = planned;
        clock = used;
    }
    if !skip("sandbox") {
        let (row, _, used) = paywarden_run(
            args,
            "paywarden, sandbox attempt",
            args.attempt_orders,
            Some(Provider::Sandbox),
        )
        .await?;
        rows.push(row);
        clock = used;
    }
    if !skip("simulator") {
        rows.push(
            paywarden_run(
                args,
                "paywarden, WeChat Pay simulator over HTTP",
                args.attempt_orders,
                Some(Provider::Simulator),
            )
            .await?
            .0,
        );
    }
    let burst = if skip("burst") {
        None
    } else {
        Some(burst(args.burst).await?)
    };
    if !skip("baselines") && !schedule.is_empty() {
        eprintln!("expiry: baselines over the same {} deadlines", schedule.len());
        let harness = Harness::new("baselines").await?;
        let peak = peak_per_second(schedule.iter().map(|p| p.created_offset_ms + p.ttl_ms));
        for result in baselines::run(&harness, &schedule, &args.amqp_url).await? {
            rows.push(Row {
                approach: result.name.to_owned(),
                orders: u64::try_from(schedule.len()).unwrap_or(0),
                peak_deadlines_per_second: peak,
                lateness: result.lateness,
                not_closed: 0,
            });
        }
        harness.finish(false).await?;
    }

    print_table(
        "Unpaid orders: close committed − deadline (PostgreSQL + Redis, release build)",
        &[
            "approach",
            "orders",
            "peak deadlines/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "not closed",
        ],
        &rows
            .iter()
            .map(|row| {
                vec![
                    row.approach.clone(),
                    row.orders.to_string(),
                    row.peak_deadlines_per_second.to_string(),
                    ms(row.lateness.p50_ms),
                    ms(row.lateness.p99_ms),
                    ms(row.lateness.p999_ms),
                    ms(row.lateness.max_ms),
                    row.not_closed.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    println!("(lateness clock: {clock})");
    if let Some(burst) = &burst {
        print_table(
            "Burst: orders all due in the same millisecond, no provider call",
            &["orders", "all committed after", "p50 ms", "p99 ms", "max ms"],
            &[vec![
                burst.orders.to_string(),
                format!("{:.0} ms", burst.all_committed_after_ms),
                ms(burst.lateness.p50_ms),
                ms(burst.lateness.p99_ms),
                ms(burst.lateness.max_ms),
            ]],
        );
    }
    write_json(
        out,
        "expiry",
        &Figures {
            machine,
            clock,
            rows,
            burst,
        },
    )
}

#[derive(Clone, Copy)]
enum Provider {
    Sandbox,
    Simulator,
}

/// One run through the service: creates `n` orders paced at `create_rate`, each with a TTL
/// drawn so deadlines come at about `expiry_rate` a second after creation ends, waits until
/// every order is final, and reads the lateness back.
async fn paywarden_run(
    args: &Args,
    label: &str,
    n: u64,
    provider: Option<Provider>,
) -> anyhow::Result<(Row, Vec<Planned>, &'static str)> {
    eprintln!("expiry: {label}, {n} orders");
    let mut harness = Harness::new("expiry").await?;
    let mut env = Vec::new();
    let mut sim = None;
    if let Some(Provider::Simulator) = provider {
        let keys_dir = harness.dir.join("keys");
        paywarden_sim::keys::write_keys(&keys_dir)?;
        let mut config = paywarden_sim::SimConfig::new(paywarden_sim::keys::KeyMaterial::read(&keys_dir)?);
        config.close_too_early_seconds = 0;
        let server = paywarden_sim::SimServer::start(config).await?;
        env = paywarden_fault::node_env(
            0,
            &harness.db.url,
            &harness.redis.url(),
            &harness.key_prefix,
            &server,
            &keys_dir,
        );
        env.extend(harness.service_env());
        for (setting, value) in [
            ("RATE_PER_SECOND", "5000"),
            ("MAX_CONCURRENCY", "256"),
            ("RETRIES", "2"),
        ] {
            env.push((
                format!("PAYWARDEN__PROVIDERS__WECHAT__CALLS__{setting}"),
                value.to_owned(),
            ));
        }
        env.push(("PAYWARDEN__ANOMALIES__AUTO_REFUND".to_owned(), "false".to_owned()));
        sim = Some(server);
    }
    let mut service = harness.node(env)?;
    service.start().await?;

    // Deadlines fall in [start + ttl_min, start + ttl_min + spread] whenever each order was
    // created (its TTL is what is left to the window, plus its draw), so the expiry rate is
    // the one asked for and creation (at the rate this machine is known to sustain for the
    // kind of run) is over before the first deadline.
    let (sustained, expiry_rate) = match provider {
        None => (700, args.expiry_rate),
        Some(Provider::Sandbox) => (250, args.expiry_rate),
        Some(Provider::Simulator) => (120, args.simulator_expiry_rate),
    };
    let create_seconds = n.div_ceil(args.create_rate.min(sustained).max(1));
    let ttl_min = create_seconds + 10;
    let ttl_spread = n.div_ceil(expiry_rate.max(1)).max(1);
    let attempt = provider.map(|p| match p {
        Provider::Sandbox => "sandbox",
        Provider::Simulator => "wechat",
    });
    let created = create_paced(&service, n, args.create_rate, (ttl_min, ttl_spread), attempt).await?;
    eprintln!(
        "  created {} orders in {:.1} s ({} failed{})",
        created.ok,
        created.elapsed.as_secs_f64(),
        created.failed,
        created
            .first_failure
            .as_ref()
            .map(|f| format!("; first: {f}"))
            .unwrap_or_default()
    );
    let clock = wait_until_final(&harness, ttl_min + ttl_spread + 120).await?;
    let (lateness, planned, not_closed) = read_lateness(&harness, clock).await?;
    let peak = peak_per_second(planned.iter().map(|p| p.created_offset_ms + p.ttl_ms));
    service.kill();
    if let Some(sim) = sim {
        sim.stop().await;
    }
    harness.finish(false).await?;
    Ok((
        Row {
            approach: label.to_owned(),
            orders: n,
            peak_deadlines_per_second: peak,
            lateness: Spread::of_micros(lateness),
            not_closed,
        },
        planned,
        clock,
    ))
}

/// Creates `n` orders (and an attempt each at `attempt`), the i-th not before i / `rate`
/// seconds, from 64 clients. TTLs: what is left of `ttl.0` seconds since the start (at least
/// one) plus a uniform draw in `0..=ttl.1`, so every deadline falls in the same window.
async fn create_paced(
    service: &Service,
    n: u64,
    rate: u64,
    ttl: (u64, u64),
    attempt: Option<&'static str>,
) -> anyhow::Result<LoadResult> {
    let connections = 64;
    let http = client(connections)?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks = (0..connections).map(|worker| {
        let http = http.clone();
        let base = service.base();
        let next = next.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::try_from(worker).unwrap_or(0));
            let mut result = LoadResult::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let due = started + Duration::from_micros(i * 1_000_000 / rate.max(1));
                tokio::time::sleep_until(due.into()).await;
                let left = ttl.0.saturating_sub(started.elapsed().as_secs()).max(1);
                let body = order_body(&format!("expiry-{i}"), left + rng.gen_range(0..=ttl.1));
                let sent = Instant::now();
                let response = http
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(MERCHANT_KEY)
                    .json(&body)
                    .send()
                    .await;
                let Some(order) = record(&mut result, sent, response, 201).await else {
                    continue;
                };
                if let (Some(provider), Some(order_no)) = (attempt, order["order_no"].as_str()) {
                    let sent = Instant::now();
                    let response = http
                        .post(format!("{base}/v1/orders/{order_no}/payments"))
                        .bearer_auth(MERCHANT_KEY)
                        .json(&json!({ "provider": provider }))
                        .send()
                        .await;
                    record(&mut result, sent, response, 201).await;
                }
            }
            result
        })
    });
    let mut total = LoadResult::default();
    for result in futures::future::join_all(tasks).await {
        let result = result?;
        total.ok += result.ok;
        total.failed += result.failed;
        total.first_failure = total.first_failure.or(result.first_failure);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Waits until no order is pending (a stuck one is final enough here: it is counted as not
/// closed), printing progress; returns the clock lateness is read with.
async fn wait_until_final(harness: &Harness, limit_seconds: u64) -> anyhow::Result<&'static str> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let pending = harness
            .scalar("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
            .await?;
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(limit_seconds) {
            eprintln!("  {pending} orders still pending after {limit_seconds} s");
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("  {pending} orders pending");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tracked = harness
        .conn
        .query_one(Statement::from_string(
            harness.conn.get_database_backend(),
            "SHOW track_commit_timestamp".to_owned(),
        ))
        .await?
        .and_then(|row| row.try_get_by_index::<String>(0).ok())
        .is_some_and(|value| value == "on");
    Ok(if tracked { "commit timestamp" } else { "closed_at" })
}

/// Lateness (µs) of every closed order, the schedule it followed, and how many orders were
/// not closed.
async fn read_lateness(harness: &Harness, clock: &str) -> anyhow::Result<(Vec<i64>, Vec<Planned>, u64)> {
    let closed_at = if clock == "commit timestamp" {
        "pg_xact_commit_timestamp(xmin)"
    } else {
        "closed_at"
    };
    let rows = harness
        .conn
        .query_all(Statement::from_string(
            harness.conn.get_database_backend(),
            format!(
                "SELECT CAST(EXTRACT(EPOCH FROM created_at) * 1000 AS BIGINT), CAST(EXTRACT(EPOCH FROM expires_at) * 1000 AS BIGINT), \
                 CASE WHEN status = 'closed' THEN CAST(EXTRACT(EPOCH FROM ({closed_at} - expires_at)) * 1000000 AS BIGINT) END \
                 FROM orders ORDER BY created_at"
            ),
        ))
        .await?;
    let first_created = rows
        .first()
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    let (mut lateness, mut planned, mut not_closed) = (Vec::new(), Vec::new(), 0u64);
    for row in rows {
        let created: i64 = row.try_get_by_index(0)?;
        let deadline: i64 = row.try_get_by_index(1)?;
        planned.push(Planned {
            created_offset_ms: created - first_created,
            ttl_ms: deadline - created,
        });
        match row.try_get_by_index::<Option<i64>>(2)? {
            Some(late) => lateness.push(late),
            None => not_closed += 1,
        }
    }
    Ok((lateness, planned, not_closed))
}

/// The most deadlines falling in one second.
fn peak_per_second(deadlines_ms: impl Iterator<Item = i64>) -> u64 {
    let mut buckets = std::collections::HashMap::<i64, u64>::new();
    for at in deadlines_ms {
        *buckets.entry(at.div_euclid(1000)).or_default() += 1;
    }
    buckets.values().copied().max().unwrap_or(0)
}

/// `n` orders stored with the same deadline a little ahead, armed by the service at start-up,
/// all due in the same millisecond.
async fn burst(n: u64) -> anyhow::Result<BurstFigures> {
    eprintln!("expiry: burst of {n} orders due in the same millisecond");
    let mut harness = Harness::new("burst").await?;
    let mut service = harness.node(Vec::new())?;
    let deadline_ms = now_ms() + 20_000 + i64::try_from(n / 1000).unwrap_or(0);
    store_pending_orders(&harness, n, deadline_ms, 0).await?;
    service.start().await?;
    if now_ms() > deadline_ms - 2_000 {
        bail!("the service took too long to start: the burst was not armed ahead of its deadline");
    }
    let clock = wait_until_final(&harness, 120).await?;
    let (lateness, _, not_closed) = read_lateness(&harness, clock).await.context("burst lateness")?;
    service.kill();
    harness.finish(false).await?;
    if not_closed > 0 {
        eprintln!("  {not_closed} orders of the burst were not closed");
    }
    let spread = Spread::of_micros(lateness);
    Ok(BurstFigures {
        orders: n,
        all_committed_after_ms: spread.max_ms,
        lateness: spread,
    })
}
