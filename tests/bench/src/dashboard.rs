//! `dashboard`: the console's landing page with N orders in PostgreSQL, spread over the last
//! seven days (70 % paid at one of three providers, 30 % closed by the expiry rule), each with
//! its log rows as the service writes them. Measured: how long the service's activity rollup
//! takes to count what it finds at its first start, then the dashboard's response time for each
//! span, next to the bare `count(*)` of the orders created in the same seven days (what a
//! dashboard reading the orders themselves would pay for one figure).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::harness::Harness;
use crate::report::{print_table, write_json, Machine, Spread};

/// The development profile's admin token (`config/development.toml`).
const ADMIN_TOKEN: &str = "admin_dev";
const WEEK_SECONDS: u64 = 7 * 86_400;

#[derive(clap::Args)]
pub struct Args {
    /// Orders stored over the last seven days.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Loads of each span's page.
    #[arg(long, default_value_t = 200)]
    loads: usize,
}

#[derive(Serialize)]
struct Row {
    span: &'static str,
    load: Spread,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    orders: u64,
    log_rows: i64,
    store_s: f64,
    first_rollup_s: f64,
    bare_count_week: Spread,
    rows: Vec<Row>,
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let mut harness = Harness::new("dashboard").await?;
    let stored = Instant::now();
    store_final_orders(&harness, args.orders).await?;
    let store_s = stored.elapsed().as_secs_f64();
    let log_rows = harness.scalar("SELECT COUNT(*) FROM order_logs").await?;
    eprintln!(
        "dashboard: stored {} orders, {log_rows} log rows in {store_s:.1} s",
        args.orders
    );

    let mut service = harness.node(vec![(
        "PAYWARDEN__DASHBOARD__ROLLUP_INTERVAL_MILLISECONDS".to_owned(),
        "1000".to_owned(),
    )])?;
    let started = Instant::now();
    service.start().await?;
    // The first rollup counts the week it finds, a batch per cycle.
    loop {
        let behind = harness
            .scalar(
                "SELECT COALESCE(EXTRACT(EPOCH FROM now() - counted_until)::bigint, 999999) FROM activity_rollup WHERE id = 1",
            )
            .await?;
        if behind <= 30 {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the rollup did not catch up within 30 minutes ({behind} s behind)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first_rollup_s = started.elapsed().as_secs_f64();
    eprintln!("  the rollup counted the week in {first_rollup_s:.1} s");
    let counted = harness
        .scalar("SELECT COALESCE(SUM(tally), 0)::bigint FROM activity_counts WHERE resolution_seconds = 3600 AND series = 'created'")
        .await?;
    if counted != i64::try_from(args.orders)? {
        bail!("the rollup counted {counted} orders created, not {}", args.orders);
    }

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let cookie = sign_in(&client, &service.base()).await?;
    let mut rows = Vec::new();
    for span in ["hour", "day", "week"] {
        let url = format!("{}/admin/ui?span={span}", service.base());
        let mut samples = Vec::with_capacity(args.loads);
        for _ in 0..args.loads {
            let sent = Instant::now();
            let response = client.get(&url).header("Cookie", &cookie).send().await?;
            let status = response.status();
            let body = response.text().await?;
            samples.push(i64::try_from(sent.elapsed().as_micros())?);
            if !status.is_success() || !body.contains("id=\"chart-created\"") {
                bail!("{url} answered {status}");
            }
        }
        eprintln!("  {span}: {} loads", samples.len());
        rows.push(Row {
            span,
            load: Spread::of_micros(samples),
        });
    }
    let mut bare = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        harness
            .scalar(&format!(
                "SELECT COUNT(*) FROM orders WHERE created_at >= now() - interval '{WEEK_SECONDS} seconds'"
            ))
            .await?;
        bare.push(i64::try_from(sent.elapsed().as_micros())?);
    }
    service.kill();
    let figures = Figures {
        machine,
        orders: args.orders,
        log_rows,
        store_s,
        first_rollup_s,
        bare_count_week: Spread::of_micros(bare),
        rows,
    };
    let mut table: Vec<Vec<String>> = figures
        .rows
        .iter()
        .map(|row| {
            vec![
                format!("GET /admin/ui?span={}", row.span),
                row.load.count.to_string(),
                format!("{:.1} ms", row.load.p50_ms),
                format!("{:.1} ms", row.load.p99_ms),
                format!("{:.1} ms", row.load.max_ms),
            ]
        })
        .collect();
    table.push(vec![
        "baseline: SELECT count(*) of a week's orders".to_owned(),
        figures.bare_count_week.count.to_string(),
        format!("{:.1} ms", figures.bare_count_week.p50_ms),
        format!("{:.1} ms", figures.bare_count_week.p99_ms),
        format!("{:.1} ms", figures.bare_count_week.max_ms),
    ]);
    print_table(
        &format!(
            "Dashboard loads with {} orders ({} log rows) in PostgreSQL; first rollup {:.1} s",
            figures.orders, figures.log_rows, figures.first_rollup_s
        ),
        &["request", "n", "p50", "p99", "max"],
        &table,
    );
    write_json(out, "dashboard", &figures)?;
    harness.finish(false).await
}

/// Signs in to the console; the session cookie.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/admin/ui/login"))
        .form(&[("token", ADMIN_TOKEN), ("name", "bench")])
        .send()
        .await?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .context("the console sign-in set no cookie")?
        .to_str()?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// `n` final orders created over the last week, as the service writes them: the order, its
/// item, its log rows (created; paid or closed), and a succeeded attempt for the paid ones.
async fn store_final_orders(harness: &Harness, n: u64) -> anyhow::Result<()> {
    let chunk = 100_000u64;
    let mut from = 1u64;
    while from <= n {
        let to = (from + chunk - 1).min(n);
        let series = format!(
            "SELECT g, 2000000000000 + g AS id, \
             date_trunc('milliseconds', now() - make_interval(secs => {WEEK_SECONDS}.0 * g / {n})) AS created, \
             g % 10 < 7 AS paid, \
             (ARRAY['sandbox', 'wechat', 'alipay'])[1 + g % 3] AS provider \
             FROM generate_series(CAST({from} AS BIGINT), CAST({to} AS BIGINT)) g"
        );
        harness
            .execute(&format!(
                "INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, subject, \
                 total_amount, currency, status, close_reason, expires_at, created_at, paid_at, closed_at, version, refunded_amount) \
                 SELECT id, id::text, 'demo', 'dash-' || g, 'x', 'u', 'bench order', 2999, 'CNY', \
                 CASE WHEN paid THEN 'paid' ELSE 'closed' END, CASE WHEN paid THEN NULL ELSE 'expired' END, \
                 created + interval '15 minutes', created, \
                 CASE WHEN paid THEN created + interval '30 seconds' END, \
                 CASE WHEN paid THEN NULL ELSE created + interval '15 minutes 8 milliseconds' END, 1, 0 \
                 FROM ({series}) s"
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO order_items (order_id, sku_id, name, unit_price, quantity, amount, reserved_quantity) \
                 SELECT id, 'sku-1', 'bench item', 2999, 1, 2999, 0 FROM ({series}) s"
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO payment_attempts (pay_no, order_id, provider, status, amount, currency, created_at, updated_at, paid_at, paid_amount) \
                 SELECT 1000000000000 + id, id, provider, 'succeeded', 2999, 'CNY', created + interval '5 seconds', \
                 created + interval '30 seconds', created + interval '30 seconds', 2999 FROM ({series}) s WHERE paid"
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO order_logs (order_id, event, from_status, to_status, operator, created_at) \
                 SELECT id, 'order.created', NULL, 'pending', 'merchant:demo', created FROM ({series}) s \
                 UNION ALL \
                 SELECT id, CASE WHEN paid THEN 'order.paid' ELSE 'order.closed' END, 'pending', \
                 CASE WHEN paid THEN 'paid' ELSE 'closed' END, CASE WHEN paid THEN 'provider:' || provider ELSE 'system' END, \
                 CASE WHEN paid THEN created + interval '30 seconds' ELSE created + interval '15 minutes 8 milliseconds' END \
                 FROM ({series}) s"
            ))
            .await?;
        eprintln!("  stored {to} of {n} orders");
        from = to + 1;
    }
    harness.execute("ANALYZE").await
}
