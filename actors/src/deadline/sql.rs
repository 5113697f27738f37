//! The SQL fallback: the `orders` table is the index (status + deadline, indexed together), so
//! adding and removing are no-ops — the order's own transaction already wrote it.

use async_trait::async_trait;
use entities::{OrderId, OrderStatus};
use sea_orm::DatabaseConnection;

use crate::cluster::Partitioner;

use super::{live_deadlines, live_deadlines_in, Deadline, DeadlineError, DeadlineIndex, ReconcileReport, Reconciled};

/// The deadline index without Redis (the embedded default): the `orders` table itself, whose
/// pending rows and `expires_at` already are the index. Adds and removes are no-ops.
pub struct SqlDeadlineIndex {
    db: DatabaseConnection,
}

impl SqlDeadlineIndex {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl DeadlineIndex for SqlDeadlineIndex {
    fn name(&self) -> &'static str {
        "sql"
    }

    async fn add(&self, _deadline: Deadline) -> Result<(), DeadlineError> {
        Ok(())
    }

    async fn remove(&self, _order_id: OrderId) -> Result<(), DeadlineError> {
        Ok(())
    }

    async fn reconcile(&self) -> Result<Reconciled, DeadlineError> {
        // The table is the index: nothing to add or remove.
        let live = live_deadlines(&self.db).await?;
        Ok(unchanged(live))
    }

    async fn reconcile_partitions(
        &self,
        partitioner: Partitioner,
        partitions: &[u32],
    ) -> Result<Reconciled, DeadlineError> {
        let live = live_deadlines_in(&self.db, partitioner, partitions, None, &OrderStatus::LIVE).await?;
        Ok(unchanged(live))
    }
}

fn unchanged(live: Vec<Deadline>) -> Reconciled {
    Reconciled {
        report: ReconcileReport {
            live_orders: u64::try_from(live.len()).unwrap_or(u64::MAX),
            added: 0,
            removed: 0,
        },
        live,
    }
}
