//! The engine's Prometheus metrics. Registered once in the service's registry at start-up and
//! shared (behind an `Arc`) by the order actors, which are the only writers.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
}

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
        Ok(metrics)
    }

    pub fn observe_timer_lateness(&self, late_us: i64) {
        let late = Duration::from_micros(u64::try_from(late_us).unwrap_or(0));
        self.timer_lateness.observe(late.as_secs_f64());
    }
}
