//! Everything that runs beside the HTTP server, owned in one place and stopped in reverse
//! order of dependency once the server has stopped: first the pollers (the reconciliation,
//! refund and follow-up workers), each finishing the cycle in flight; then the order actors
//! (the pass each has in flight) and the cluster membership; then the outbox relay, after the
//! deliveries in flight (so the events the others wrote last go out); then the idempotency key
//! sweep. Every step is bounded; each says in the log that it stopped, or that it was still
//! busy after its grace (its work is due again after a restart: every claim expires).

use std::time::Duration;

use actix::Addr;
use actors::engine::Engine;
use actors::outbox::OutboxRelay;
use actors::poller::{Drain, Poller};

/// How long each poller gets to finish the cycle in flight.
const POLLER_GRACE: Duration = Duration::from_secs(10);
/// How long order actors get to finish the pass in flight.
const ENGINE_GRACE: Duration = Duration::from_secs(10);
/// How long the outbox relay gets to finish the deliveries in flight.
const RELAY_GRACE: Duration = Duration::from_secs(15);

/// The workers of one node, in the order they were started.
pub struct Background {
    pub(crate) engine: Engine,
    pub(crate) relay: Addr<OutboxRelay>,
    /// `(name, poller)`, in start order.
    pub(crate) pollers: Vec<(&'static str, Addr<Poller>)>,
    pub(crate) sweeper: crate::idempotency::Sweeper,
}

impl Background {
    /// Starts the pollers (after the engine and the relay, which they use).
    pub(crate) fn start_pollers(
        &mut self,
        reconciliation: &actors::reconcile::ReconcileSettings,
        dashboard: &actors::activity::ActivitySettings,
    ) {
        self.pollers.push(("follow_up", self.engine.start_follow_up()));
        self.pollers.push(("refunds", self.engine.start_refunds()));
        let reconcile = actors::reconcile::ReconcileWorker::poller(self.engine.clone(), reconciliation.clone());
        self.pollers.push(("reconciliation", reconcile.start_on_own_arbiter()));
        let activity = actors::activity::ActivityRollup::poller(self.engine.db().clone(), dashboard);
        self.pollers.push(("activity", activity.start_on_own_arbiter()));
    }

    /// Stops every worker, the last started first.
    pub async fn stop(self) {
        for (name, poller) in self.pollers.into_iter().rev() {
            match tokio::time::timeout(POLLER_GRACE, poller.send(Drain)).await {
                Ok(_) => tracing::info!(worker = name, "worker stopped"),
                Err(_) => tracing::warn!(
                    worker = name,
                    "worker still busy after the grace; its claimed work is due again after restart"
                ),
            }
        }
        let late = self.engine.shutdown(ENGINE_GRACE).await;
        if late > 0 {
            tracing::warn!(
                worker = "order_actors",
                late,
                "order actors still busy after the grace; their passes run again after restart"
            );
        } else {
            tracing::info!(worker = "order_actors", "worker stopped");
        }
        match tokio::time::timeout(RELAY_GRACE, self.relay.send(Drain)).await {
            Ok(_) => tracing::info!(worker = "outbox_relay", "worker stopped"),
            Err(_) => tracing::warn!(
                worker = "outbox_relay",
                "outbox relay still delivering after the grace; undelivered events are retried after restart"
            ),
        }
        self.sweeper.stop().await;
        tracing::info!(worker = "idempotency_sweep", "worker stopped");
    }
}
