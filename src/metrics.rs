//! Prometheus metrics: HTTP request counts and latencies per route, plus business counters.
//!
//! The `prometheus` crate keeps the registry and renders the text format; the middleware here
//! only records. Every label a client can influence comes from a closed set, so no request can
//! grow the registry: the method is one of the standard ones or `other` (HTTP allows any token
//! as a method), the route is the matched pattern (`/v1/orders/{order_no}`, never the concrete
//! path) or `unmatched`, the status is the code answered.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use sha2::Digest as _;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub orders_created: IntCounterVec,
    /// The state every node shares, read from the database at most once per
    /// `metrics.gauge_refresh_milliseconds` ([`actors::store::gauges`]).
    pub shared: SharedGaugeSet,
    /// When the database gauges were last read.
    gauges_read_at: std::sync::Mutex<Option<Instant>>,
    pub payment_attempts: IntCounterVec,
}

impl Metrics {
    /// # Errors
    /// Only if two metrics share a name, which is a programming error caught by the tests.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new_custom(Some("paywarden".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route pattern").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let orders_created = IntCounterVec::new(
            Opts::new("orders_created_total", "Orders created, and idempotent replays"),
            &["outcome"],
        )?;
        let payment_attempts = IntCounterVec::new(
            Opts::new(
                "payment_attempts_total",
                "Payment attempts started, by provider and outcome",
            ),
            &["provider", "outcome"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        let shared = SharedGaugeSet::register(&registry)?;
        registry.register(Box::new(orders_created.clone()))?;
        registry.register(Box::new(payment_attempts.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            orders_created,
            shared,
            payment_attempts,
            gauges_read_at: std::sync::Mutex::new(None),
        })
    }

    /// Whether the database gauges are due for a read (at most once per `every`, whatever
    /// the scrape rate and however many scrapes arrive together); marks them read if so.
    pub(crate) fn gauges_due(&self, every: std::time::Duration) -> bool {
        let mut read_at = self
            .gauges_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if read_at.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *read_at = Some(now);
        true
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Each provider's calls as this node counted them since it started, for the console's
    /// dashboard: all calls, the failed ones (`failed`, `timeout`, `circuit_open`, `crashed`;
    /// a business refusal is an answer, not a failure) and whether its breaker is open now.
    pub fn provider_calls(&self) -> std::collections::BTreeMap<String, ProviderCalls> {
        let mut by_provider: std::collections::BTreeMap<String, ProviderCalls> = std::collections::BTreeMap::new();
        for family in self.registry.gather() {
            // Named with the registry's prefix.
            let name = family.name().strip_prefix("paywarden_").unwrap_or(family.name());
            if name != "provider_calls_total" && name != "provider_breaker_open" {
                continue;
            }
            for metric in family.get_metric() {
                let label = |wanted: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|pair| pair.name() == wanted)
                        .map(|pair| pair.value().to_owned())
                        .unwrap_or_default()
                };
                let entry = by_provider.entry(label("provider")).or_default();
                if name == "provider_breaker_open" {
                    entry.breaker_open = metric.get_gauge().get_value() > 0.0;
                    continue;
                }
                // An integer counter's value, carried as a float by the exposition model: whole
                // and exact below 2^53.
                #[allow(clippy::as_conversions, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let count = metric.get_counter().get_value() as u64;
                entry.calls += count;
                if matches!(
                    label("outcome").as_str(),
                    "failed" | "timeout" | "circuit_open" | "crashed"
                ) {
                    entry.failed += count;
                }
            }
        }
        by_provider
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|err| format!("# encoding failed: {err}\n"))
    }
}

/// One provider's calls on this node since it started ([`Metrics::provider_calls`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderCalls {
    pub calls: u64,
    pub failed: u64,
    pub breaker_open: bool,
}

/// The gauges of [`actors::store::gauges::SharedGauges`].
pub struct SharedGaugeSet {
    /// Orders waiting for an operator (or a provider to come back).
    orders_stuck: prometheus::IntGauge,
    deliveries_pending: prometheus::IntGauge,
    oldest_pending_age: prometheus::Gauge,
    deliveries_dead: prometheus::IntGauge,
    open_differences: prometheus::IntGauge,
    /// Webhook subscribers the relay disabled (failing too long, or 410 Gone) and no operator
    /// has enabled again.
    subscribers_disabled: prometheus::IntGauge,
}

impl SharedGaugeSet {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let set = Self {
            orders_stuck: prometheus::IntGauge::new("orders_stuck", "Orders in the stuck status")?,
            deliveries_pending: prometheus::IntGauge::new(
                "outbox_deliveries_pending",
                "Webhook and AMQP deliveries not yet acknowledged nor given up",
            )?,
            oldest_pending_age: prometheus::Gauge::new(
                "outbox_oldest_pending_age_seconds",
                "How long the oldest pending delivery has waited (0 with none)",
            )?,
            deliveries_dead: prometheus::IntGauge::new(
                "outbox_deliveries_dead",
                "Deliveries out of retries, waiting for an operator's redelivery",
            )?,
            open_differences: prometheus::IntGauge::new(
                "reconciliation_open_differences",
                "Differences between the providers' bills and paywarden's records that no operator has resolved",
            )?,
            subscribers_disabled: prometheus::IntGauge::new(
                "webhook_subscribers_disabled",
                "Webhook subscribers disabled by the relay (failing for outbox.disable_after_failing_seconds, or 410 Gone)",
            )?,
        };
        registry.register(Box::new(set.orders_stuck.clone()))?;
        registry.register(Box::new(set.deliveries_pending.clone()))?;
        registry.register(Box::new(set.oldest_pending_age.clone()))?;
        registry.register(Box::new(set.deliveries_dead.clone()))?;
        registry.register(Box::new(set.open_differences.clone()))?;
        registry.register(Box::new(set.subscribers_disabled.clone()))?;
        Ok(set)
    }

    /// Sets every gauge from one reading.
    pub fn set(&self, read: &actors::store::gauges::SharedGauges, now: chrono::DateTime<chrono::Utc>) {
        let count = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.orders_stuck.set(count(read.attention.stuck_orders));
        self.deliveries_pending.set(count(read.backlog.deliveries_pending));
        self.oldest_pending_age
            .set(read.backlog.oldest_pending_age(now).as_secs_f64());
        self.deliveries_dead.set(count(read.attention.dead_deliveries));
        self.open_differences.set(count(read.attention.open_differences));
        self.subscribers_disabled.set(count(read.subscribers_disabled));
    }
}

/// App-wide middleware recording every request.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = method_label(req.method());
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(response) => response.status().as_u16().to_string(),
            Err(err) => err.as_response_error().status_code().as_u16().to_string(),
        };
        metrics
            .http_requests
            .with_label_values(&[method, &route, &status])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[method, &route])
            .observe(started.elapsed().as_secs_f64());
    }
    result
}

/// The method as a label: one of the standard methods, or `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// Who may read `/metrics`, and how often its database gauges are read.
pub struct MetricsAccess {
    /// The scrape token's SHA-256 digest.
    pub scrape_token: Option<[u8; 32]>,
    pub gauge_refresh: std::time::Duration,
}

impl MetricsAccess {
    pub fn from_settings(settings: &crate::config::MetricsSettings) -> Self {
        let token = secrecy::ExposeSecret::expose_secret(&settings.scrape_token);
        Self {
            scrape_token: (!token.is_empty()).then(|| sha2::Sha256::digest(token.as_bytes()).into()),
            gauge_refresh: settings.gauge_refresh,
        }
    }
}
