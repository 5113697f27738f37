//! `webhooks`: outbox delivery throughput to one local receiver. Events are written straight
//! into the `outbox` table at once (as a burst of commits would leave them), and the figure is
//! how fast the relay fans them out, signs them, POSTs them to a receiver on this machine that
//! answers 204 at once, and records each outcome: events acknowledged per second, from the
//! insert's commit to the last acknowledgement.
//!
//! The subscriber is added through `POST /admin/subscribers` with the service's default
//! signature scheme (or `--scheme`), so the same scenario measures a binary from before a
//! signing change (`PAYWARDEN_BIN=...`) and after it. The service migrates its own database,
//! so an older binary runs on the schema it knows.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::harness::Harness;
use crate::report::{print_table, write_json, Machine};

/// The development profile's admin token (`config/development.toml`).
const ADMIN_TOKEN: &str = "admin_dev";

#[derive(clap::Args)]
pub struct Args {
    /// Events written to the outbox.
    #[arg(long, default_value_t = 3000)]
    events: u64,
    /// `signature_scheme` of the subscriber; absent: the service's default.
    #[arg(long)]
    scheme: Option<String>,
    /// A name for this run in the table and the JSON file (e.g. `before`, `after`).
    #[arg(long, default_value = "current")]
    label: String,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    label: String,
    scheme: String,
    events: u64,
    seconds: f64,
    events_per_second: f64,
    /// Requests the receiver answered (retries and duplicates included).
    requests: u64,
}

/// Event ids seen (under either scheme's id header) and requests received.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    requests: u64,
    last: Option<Instant>,
}

async fn receive(seen: web::Data<Mutex<Seen>>, req: HttpRequest) -> HttpResponse {
    let id = ["webhook-id", "paywarden-event-id"]
        .iter()
        .find_map(|name| req.headers().get(*name))
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.requests += 1;
    if seen.ids.insert(id) {
        seen.last = Some(Instant::now());
    }
    HttpResponse::NoContent().finish()
}

fn start_receiver(seen: Arc<Mutex<Seen>>) -> anyhow::Result<(String, ServerHandle)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind the receiver")?;
    let address = listener.local_addr()?;
    let data = web::Data::from(seen);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/events", web::post().to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((format!("http://{address}/events"), handle))
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let mut harness = Harness::unmigrated("webhooks").await?;
    // Sweeps every 100 ms: the burst is found at once (the service wakes the relay after its
    // own commits only). An empty configuration directory: each binary runs on the profiles
    // compiled into it, so one from before a settings change starts too.
    let mut service = harness.node(vec![
        (
            "PAYWARDEN__OUTBOX__SWEEP_INTERVAL_MILLISECONDS".to_owned(),
            "100".to_owned(),
        ),
        ("PAYWARDEN_CONFIG_DIR".to_owned(), harness.dir.display().to_string()),
    ])?;
    service.start().await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, receiver) = start_receiver(seen.clone())?;
    let mut body = json!({ "url": url });
    if let Some(scheme) = &args.scheme {
        body["signature_scheme"] = json!(scheme);
    }
    let added = service
        .http
        .post(format!("{}/admin/subscribers", service.base()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await?;
    if !added.status().is_success() {
        bail!("POST /admin/subscribers answered {}", added.status());
    }
    let added: serde_json::Value = added.json().await?;
    let scheme = added["signature_scheme"]
        .as_str()
        .unwrap_or("paywarden-v1 (the only scheme then)")
        .to_owned();

    // The burst: one event per order, so per-order ordering holds none of them back.
    let n = args.events.max(1);
    let started = Instant::now();
    harness
        .execute(&format!(
            "INSERT INTO outbox (event_id, event_type, order_id, merchant_id, payload, created_at) \
             SELECT gen_random_uuid(), 'order.created', 2000000000000 + g, 'demo', \
             '{{\"type\":\"order.created\",\"order_no\":\"' || (2000000000000 + g) || '\",\"merchant_id\":\"demo\",\"status\":\"pending\",\"total_amount\":2999,\"currency\":\"CNY\"}}', now() \
             FROM generate_series(CAST(1 AS BIGINT), CAST({n} AS BIGINT)) g"
        ))
        .await?;
    let limit = Duration::from_secs(600);
    let mut last_print = Instant::now();
    let (finished, requests) = loop {
        let (count, last, requests) = {
            let seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                u64::try_from(seen.ids.len()).unwrap_or(u64::MAX),
                seen.last,
                seen.requests,
            )
        };
        if count >= n {
            break (last.unwrap_or_else(Instant::now), requests);
        }
        if started.elapsed() > limit {
            bail!("only {count} of {n} events acknowledged within {limit:?}");
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("  acknowledged {count} / {n}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seconds = finished.duration_since(started).as_secs_f64();
    receiver.stop(true).await;
    service.kill();

    let per_second = crate::report::float_u(n) / seconds.max(f64::EPSILON);
    print_table(
        "outbox delivery to one local receiver (PostgreSQL + Redis, 16 in flight)",
        &["run", "scheme", "events", "seconds", "events/s", "requests"],
        &[vec![
            args.label.clone(),
            scheme.clone(),
            n.to_string(),
            format!("{seconds:.2}"),
            format!("{per_second:.0}"),
            requests.to_string(),
        ]],
    );
    write_json(
        out,
        &format!("webhooks-{}", args.label),
        &Figures {
            machine,
            label: args.label.clone(),
            scheme,
            events: n,
            seconds,
            events_per_second: per_second,
            requests,
        },
    )?;
    harness.finish(false).await
}
