//! Bringing every pending order back after a restart, and keeping the deadline index in step
//! with the database (the source of truth).

use serde::Serialize;

use super::Engine;
use crate::deadline::{Deadline, DeadlineError, ReconcileReport};
use crate::order::now_ms;

/// What a start-up rehydration did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RehydrateReport {
    pub armed: u64,
    pub overdue: u64,
    /// The index was missing entries, or held stale ones, and was corrected first.
    pub index_rebuilt: bool,
}

impl Engine {
    /// Re-arms an actor for every live order of the database (start-up), after making the
    /// deadline index hold exactly those orders (by membership: whatever Redis lost or kept
    /// too long). Overdue orders are spread at `overdue_per_second`.
    ///
    /// # Errors
    /// The index or the database could not be read.
    pub async fn rehydrate(&self) -> Result<RehydrateReport, DeadlineError> {
        if self.ownership().is_some() {
            // A cluster node arms its partitions as it takes them (`Engine::start_cluster`).
            return Ok(RehydrateReport::default());
        }
        let deps = self.deps();
        let reconciled = deps.index.reconcile().await?;
        let fixed = reconciled.report.added + reconciled.report.removed;
        if fixed > 0 {
            tracing::warn!(
                added = reconciled.report.added,
                removed = reconciled.report.removed,
                index = deps.index.name(),
                "deadline index was out of step with the database; corrected"
            );
        }
        let (armed, overdue) = self.arm_all(&reconciled.live);
        Ok(RehydrateReport {
            armed,
            overdue,
            index_rebuilt: fixed > 0,
        })
    }

    /// Makes the deadline index hold exactly the live orders of the database and makes sure
    /// every one has an armed actor (`POST /admin/deadlines/reconcile`); on a cluster node,
    /// those of the partitions it owns.
    ///
    /// # Errors
    /// The index or the database could not be read.
    pub async fn reconcile(&self) -> Result<ReconcileReport, DeadlineError> {
        let reconciled = match self.ownership() {
            // A cluster node: its own partitions.
            Some(ownership) => {
                self.deps()
                    .index
                    .reconcile_partitions(ownership.partitioner(), &ownership.owned())
                    .await?
            }
            None => self.deps().index.reconcile().await?,
        };
        self.arm_all(&reconciled.live);
        let report = reconciled.report;
        tracing::info!(
            live = report.live_orders,
            added = report.added,
            removed = report.removed,
            "deadline index reconciled"
        );
        Ok(report)
    }

    /// Returns (armed, overdue). Actors are started in batches ([`OrderRegistry::arm_batch`]).
    ///
    /// [`OrderRegistry::arm_batch`]: crate::order::OrderRegistry::arm_batch
    pub(super) fn arm_all(&self, deadlines: &[Deadline]) -> (u64, u64) {
        const BATCH: usize = 10_000;
        let now = now_ms();
        let rate = i64::from(self.deps().settings.overdue_per_second.max(1));
        let total = deadlines.len();
        let progress_every = (total / 10).max(100_000);
        let (mut armed, mut overdue) = (0u64, 0u64);
        let mut batch = Vec::with_capacity(BATCH.min(total));
        for (n, deadline) in deadlines.iter().enumerate() {
            let running = self.registry.get(deadline.order_id).is_some();
            let fire_at = if running {
                // Left as it is by `arm_batch`; only the order's place in the batch matters.
                deadline.at_ms
            } else if deadline.at_ms <= now {
                // The k-th overdue order fires k/rate seconds from now.
                let offset_ms = i64::try_from(overdue).unwrap_or(i64::MAX).saturating_mul(1000) / rate;
                overdue += 1;
                now.saturating_add(offset_ms)
            } else {
                deadline.at_ms
            };
            batch.push((deadline.order_id, deadline.at_ms, fire_at));
            if batch.len() == BATCH || n + 1 == total {
                // `None`: shutting down; the next start arms the rest.
                let Some(started) = self.registry.arm_batch(&batch) else {
                    break;
                };
                armed += u64::try_from(started).unwrap_or(0);
                batch.clear();
            }
            if (n + 1) % progress_every == 0 {
                tracing::info!(done = n + 1, total, "re-arming order timers");
            }
        }
        tracing::info!(armed, overdue, total, "order timers armed");
        (armed, overdue)
    }
}
