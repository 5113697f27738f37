//! Closed-loop HTTP load: `connections` clients, each sending its next request when the last
//! one answered, for a fixed time or a fixed number of requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::MERCHANT_KEY;

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    /// Latency of each answered request, µs.
    pub latencies_us: Vec<i64>,
    pub elapsed: Duration,
    /// The first failure's status and body, to say what went wrong.
    pub first_failure: Option<String>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        crate::report::float_u(self.ok) / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// An order of one item, TTL `ttl_seconds`, under a unique key.
pub fn order_body(key: &str, ttl_seconds: u64) -> Value {
    json!({
        "out_business_id": key,
        "user_id": "bench-user",
        "subject": "bench order",
        "ttl_seconds": ttl_seconds,
        "items": [{"sku_id": "sku-1", "name": "bench item", "unit_price": 2999, "quantity": 1}]
    })
}

pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// `POST /v1/orders` from `connections` clients for `duration`.
pub async fn create_orders(
    base: &str,
    connections: usize,
    duration: Duration,
    run: &str,
) -> anyhow::Result<LoadResult> {
    let http = client(connections)?;
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + duration;
    let tasks = (0..connections).map(|_| {
        let http = http.clone();
        let url = format!("{base}/v1/orders");
        let counter = counter.clone();
        let run = run.to_owned();
        tokio::spawn(async move {
            let mut result = LoadResult::default();
            while Instant::now() < stop_at {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = order_body(&format!("{run}-{n}"), 3600);
                let sent = Instant::now();
                let response = http.post(&url).bearer_auth(MERCHANT_KEY).json(&body).send().await;
                record(&mut result, sent, response, 201).await;
            }
            result
        })
    });
    let results = futures::future::join_all(tasks).await;
    let mut total = LoadResult {
        elapsed: started.elapsed(),
        ..LoadResult::default()
    };
    for result in results {
        let result = result?;
        total.ok += result.ok;
        total.failed += result.failed;
        total.latencies_us.extend(result.latencies_us);
        total.first_failure = total.first_failure.or(result.first_failure);
    }
    Ok(total)
}

/// Counts `response` as answered (status `expected`) or failed, with its latency since `sent`.
pub async fn record(
    result: &mut LoadResult,
    sent: Instant,
    response: reqwest::Result<reqwest::Response>,
    expected: u16,
) -> Option<Value> {
    match response {
        Ok(response) if response.status().as_u16() == expected => {
            let body = response.json::<Value>().await.ok();
            result.ok += 1;
            result
                .latencies_us
                .push(i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX));
            body
        }
        Ok(response) => {
            result.failed += 1;
            if result.first_failure.is_none() {
                let status = response.status();
                result.first_failure = Some(format!("{status}: {}", response.text().await.unwrap_or_default()));
            }
            None
        }
        Err(err) => {
            result.failed += 1;
            result.first_failure.get_or_insert_with(|| err.to_string());
            None
        }
    }
}
