//! The engine's Prometheus metrics. Registered once in the service's registry at start-up and
//! shared (behind an `Arc`) by the order actors, which are the only writers.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Engine metrics, registered in the service's Prometheus registry.
pub struct EngineMetrics {
    pub expiry_outcomes: IntCounterVec,
    pub notifications: IntCounterVec,
    pub timer_lateness: Histogram,
    pub live_actors: IntGauge,
    /// Order actors whose timer is armed (started; a benchmark waits on it after a restart).
    pub armed_timers: IntGauge,
    /// Refund steps by outcome: succeeded, failed, processing, uncertain, resent.
    pub refund_steps: IntCounterVec,
    /// In a cluster: partitions this node owns now.
    pub partitions_owned: IntGauge,
    /// Partitions this node took whose last holder was another node.
    pub takeovers: IntCounter,
    /// Partitions this node stopped acting on because their lease could not be renewed.
    pub leases_lost: IntCounter,
    /// Requests for orders another node owns, by outcome: forwarded, failed, no_owner.
    pub forwarded: IntCounterVec,
    /// Money situations an operator must look at, by kind (an alert on any increase):
    /// `conflicting_report` (a report contradicting a recorded payment),
    /// `auto_refund_parked` (an automatic refund that failed too often),
    /// `refunded_beyond_paid` (a refund recorded failed succeeded after all, beyond the payment).
    pub money_anomalies: IntCounterVec,
    /// Orders that reached a final state, by how (`paid`, `closed`) and the provider of the
    /// attempt that decided it (`none`: closed with no attempt): the payment success rate.
    pub orders_settled: IntCounterVec,
    /// Close committed − deadline, for every close by the expiry rule.
    pub close_lateness: Histogram,
}

/// How an order that reached a final state got there, for [`EngineMetrics::orders_settled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Paid,
    Closed,
}

/// The `provider` label of an order closed without any attempt.
pub const NO_PROVIDER: &str = "none";

/// The kinds of [`EngineMetrics::money_anomalies`].
pub const MONEY_ANOMALY_KINDS: [&str; 3] = ["conflicting_report", "auto_refund_parked", "refunded_beyond_paid"];

impl EngineMetrics {
    /// # Errors
    /// A name clash in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            expiry_outcomes: IntCounterVec::new(
                Opts::new(
                    "expiry_outcomes_total",
                    "Outcomes of expiry passes: closed, compensated, retry, stuck",
                ),
                &["outcome"],
            )?,
            notifications: IntCounterVec::new(
                Opts::new(
                    "provider_notifications_total",
                    "Provider notifications applied, by outcome",
                ),
                &["outcome"],
            )?,
            timer_lateness: Histogram::with_opts(
                HistogramOpts::new("expiry_timer_lateness_seconds", "How late order timers fire")
                    .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )?,
            live_actors: IntGauge::new("order_actors_live", "Order actors running")?,
            armed_timers: IntGauge::new("order_timers_armed", "Order actors started with their timer armed")?,
            refund_steps: IntCounterVec::new(
                Opts::new(
                    "refund_steps_total",
                    "Refund worker steps by outcome: succeeded, failed, processing, uncertain, resent",
                ),
                &["outcome"],
            )?,
            partitions_owned: IntGauge::new("cluster_partitions_owned", "Partitions this node owns")?,
            takeovers: IntCounter::new(
                "cluster_takeovers_total",
                "Partitions taken over whose last holder was another node",
            )?,
            leases_lost: IntCounter::new(
                "cluster_leases_lost_total",
                "Partitions given up because their lease could not be renewed in time",
            )?,
            forwarded: IntCounterVec::new(
                Opts::new(
                    "cluster_forwarded_total",
                    "Requests for orders owned by another node, by outcome: forwarded, failed, no_owner",
                ),
                &["outcome"],
            )?,
            money_anomalies: IntCounterVec::new(
                Opts::new(
                    "money_anomalies_total",
                    "Money situations waiting for an operator, by kind: conflicting_report, auto_refund_parked, refunded_beyond_paid",
                ),
                &["kind"],
            )?,
            orders_settled: IntCounterVec::new(
                Opts::new(
                    "orders_settled_total",
                    "Orders that reached a final state, by outcome (paid, closed) and the provider of the attempt that decided it (none: no attempt)",
                ),
                &["outcome", "provider"],
            )?,
            close_lateness: Histogram::with_opts(
                HistogramOpts::new(
                    "close_lateness_seconds",
                    "Close committed minus the order's deadline, for each close by the expiry rule",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0]),
            )?,
        };
        // Every kind exported from the start (at 0), so an alert on an increase sees the first.
        for kind in MONEY_ANOMALY_KINDS {
            metrics.money_anomalies.with_label_values(&[kind]);
        }
        registry.register(Box::new(metrics.money_anomalies.clone()))?;
        registry.register(Box::new(metrics.partitions_owned.clone()))?;
        registry.register(Box::new(metrics.takeovers.clone()))?;
        registry.register(Box::new(metrics.leases_lost.clone()))?;
        registry.register(Box::new(metrics.forwarded.clone()))?;
        registry.register(Box::new(metrics.expiry_outcomes.clone()))?;
        registry.register(Box::new(metrics.notifications.clone()))?;
        registry.register(Box::new(metrics.timer_lateness.clone()))?;
        registry.register(Box::new(metrics.live_actors.clone()))?;
        registry.register(Box::new(metrics.armed_timers.clone()))?;
        registry.register(Box::new(metrics.refund_steps.clone()))?;
        registry.register(Box::new(metrics.orders_settled.clone()))?;
        registry.register(Box::new(metrics.close_lateness.clone()))?;
        Ok(metrics)
    }

    /// Counts an order that reached a final state; `provider` is the attempt's (`None`: the
    /// order had none).
    pub fn settled(&self, outcome: Settled, provider: Option<entities::Provider>) {
        let outcome = match outcome {
            Settled::Paid => "paid",
            Settled::Closed => "closed",
        };
        let provider = provider.map_or(NO_PROVIDER, entities::Provider::as_str);
        self.orders_settled.with_label_values(&[outcome, provider]).inc();
    }

    /// Observes a close by the expiry rule committed at `committed` for an order due at
    /// `deadline`.
    pub fn observe_close(&self, deadline: chrono::DateTime<chrono::Utc>, committed: chrono::DateTime<chrono::Utc>) {
        let late = (committed - deadline).to_std().unwrap_or_default();
        self.close_lateness.observe(late.as_secs_f64());
    }

    pub fn observe_timer_lateness(&self, late_us: i64) {
        let late = Duration::from_micros(u64::try_from(late_us).unwrap_or(0));
        self.timer_lateness.observe(late.as_secs_f64());
    }
}

/// The calls to each provider, recorded by its provider actor.
pub struct ProviderMetrics {
    /// By provider, operation and outcome: `ok`, `refused` (a business answer that is not
    /// retried), `failed` (transport or provider error), `timeout`, `circuit_open`, `crashed`.
    pub calls: IntCounterVec,
    pub duration: HistogramVec,
    /// 1 while the provider's circuit breaker refuses calls.
    pub breaker_open: IntGaugeVec,
}

impl ProviderMetrics {
    /// # Errors
    /// A name clash in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            calls: IntCounterVec::new(
                Opts::new(
                    "provider_calls_total",
                    "Calls to payment providers by provider, operation and outcome (ok, refused, failed, timeout, circuit_open, crashed)",
                ),
                &["provider", "operation", "outcome"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "provider_call_duration_seconds",
                    "Latency of each call sent to a payment provider",
                )
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["provider", "operation"],
            )?,
            breaker_open: IntGaugeVec::new(
                Opts::new(
                    "provider_breaker_open",
                    "1 while the provider's circuit breaker refuses calls",
                ),
                &["provider"],
            )?,
        };
        registry.register(Box::new(metrics.calls.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.breaker_open.clone()))?;
        Ok(metrics)
    }
}
