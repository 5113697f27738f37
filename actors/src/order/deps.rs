//! What an order actor needs, and nothing more: the database (through the store's guarded
//! transitions), an id generator, a providers client, the deadline index, the change feed,
//! the expiry settings and metrics. Built once by the engine and shared by every order actor;
//! nothing in it refers back to the engine or the registry, so dropping the engine frees it.

use std::sync::Arc;

use entities::OrderId;
use sea_orm::DatabaseConnection;

use super::expiry::ExpirySettings;
use crate::changes::ChangeFeed;
use crate::cluster::Ownership;
use crate::deadline::DeadlineIndex;
use crate::error::OrderError;
use crate::ids::Snowflake;
use crate::metrics::EngineMetrics;
use crate::provider::ProviderClient;
use crate::store::transitions::{self, Applied, OrderUpdate, Receipt};
use crate::store::Operator;

/// Shared by every order actor of a node (behind an `Arc`).
pub struct OrderDeps {
    pub db: DatabaseConnection,
    pub ids: Arc<Snowflake>,
    /// The only way order code reaches a provider; a test may hand in a fake.
    pub providers: Arc<dyn ProviderClient>,
    pub index: Arc<dyn DeadlineIndex>,
    /// Told after each commit, so the relay and live status streams hear of it at once.
    pub feed: ChangeFeed,
    pub settings: ExpirySettings,
    pub metrics: Arc<EngineMetrics>,
    /// How refunds are stepped, and whether money no order keeps is refunded by itself.
    pub refunds: crate::refund::RefundSettings,
    /// Timer-driven passes running at once; the rest wait their turn cheaply instead of all
    /// holding database work in flight when many deadlines fall together. Closed at shutdown.
    pub passes: tokio::sync::Semaphore,
    /// Plain expiries (nothing to ask a provider) are closed here in batches.
    pub closer: super::closer::ExpiryCloser,
    /// In a cluster: which partitions this node owns, and their fencing tokens.
    pub cluster: Option<Arc<Ownership>>,
}

impl OrderDeps {
    /// The id generator for automatic refunds, when `anomalies.auto_refund` is on.
    pub fn auto_refund(&self) -> Option<&Snowflake> {
        self.refunds.auto_refund.then_some(&*self.ids)
    }

    /// [`transitions::apply`], announcing a committed change. In a cluster the change is
    /// fenced: it commits only while this node still holds the order's partition.
    ///
    /// # Errors
    /// As [`transitions::apply`]; [`OrderError::Fenced`] when the partition is not this
    /// node's any more.
    pub async fn apply(
        &self,
        order_id: OrderId,
        update: OrderUpdate,
        operator: &Operator,
        receipt: Option<&Receipt>,
    ) -> Result<Applied, OrderError> {
        let fence = match &self.cluster {
            Some(cluster) => Some(cluster.fence(order_id).ok_or(OrderError::Fenced)?),
            None => None,
        };
        let applied = transitions::apply(&self.db, order_id, update, operator, receipt, fence).await?;
        if let Applied::Done(order) = &applied {
            self.feed.changed(order.id, order.status);
        }
        Ok(applied)
    }
}
