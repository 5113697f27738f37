//! What the metrics' gauges read from the database: the state every node shares, whichever
//! node changed it (stuck orders, the webhook backlog, dead deliveries, open reconciliation
//! differences). Read at most once per `metrics.gauge_refresh_milliseconds`, each by an
//! indexed count.

use chrono::{DateTime, Utc};
use entities::{outbox_deliveries, reconciliation_items, unmatched_notifications, DeliveryStatus, OrderStatus};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

/// One reading of the shared gauges: what waits for an operator, the webhook backlog, and the
/// subscribers the relay disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedGauges {
    /// Stuck orders, unmatched notifications, open differences, dead deliveries.
    pub attention: Attention,
    pub backlog: Backlog,
    /// Webhook subscribers the relay disabled and no operator has enabled again.
    pub subscribers_disabled: u64,
}

/// The deliveries not yet acknowledged nor given up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub deliveries_pending: u64,
    /// When the oldest of them was queued, if any is.
    pub oldest_pending_since: Option<DateTime<Utc>>,
}

impl Backlog {
    /// How long the oldest pending delivery has waited at `now`; zero with none.
    pub fn oldest_pending_age(&self, now: DateTime<Utc>) -> std::time::Duration {
        self.oldest_pending_since
            .and_then(|since| (now - since).to_std().ok())
            .unwrap_or_default()
    }
}

/// Reads every shared gauge: the [`attention`] counts, the [`backlog`], the disabled
/// subscribers.
///
/// # Errors
/// The database error.
pub async fn read<C: ConnectionTrait>(conn: &C) -> Result<SharedGauges, DbErr> {
    Ok(SharedGauges {
        attention: attention(conn).await?,
        backlog: backlog(conn).await?,
        subscribers_disabled: crate::outbox::subscribers::count_disabled(conn).await?,
    })
}

/// Reads the [`Backlog`]: an indexed count and the oldest row.
///
/// # Errors
/// The database error.
pub async fn backlog<C: ConnectionTrait>(conn: &C) -> Result<Backlog, DbErr> {
    let pending =
        || outbox_deliveries::Entity::find().filter(outbox_deliveries::Column::Status.eq(DeliveryStatus::Pending));
    let oldest_pending_since = pending()
        .select_only()
        .column(outbox_deliveries::Column::CreatedAt)
        .order_by_asc(outbox_deliveries::Column::CreatedAt)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?;
    Ok(Backlog {
        deliveries_pending: pending().count(conn).await?,
        oldest_pending_since,
    })
}

/// What waits for an operator, by queue: the console's "needs attention" counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attention {
    pub stuck_orders: u64,
    /// Verified notifications for trades paywarden does not know, not resolved.
    pub unmatched: u64,
    pub open_differences: u64,
    pub dead_deliveries: u64,
}

impl Attention {
    pub fn total(&self) -> u64 {
        self.stuck_orders + self.unmatched + self.open_differences + self.dead_deliveries
    }
}

/// Reads the [`Attention`] counts, each by an indexed count (the differences and unmatched
/// notifications are few by nature).
///
/// # Errors
/// The database error.
pub async fn attention<C: ConnectionTrait>(conn: &C) -> Result<Attention, DbErr> {
    Ok(Attention {
        stuck_orders: super::query::count_by_status(conn, OrderStatus::Stuck).await?,
        unmatched: unmatched_notifications::Entity::find()
            .filter(unmatched_notifications::Column::ResolvedAt.is_null())
            .count(conn)
            .await?,
        open_differences: reconciliation_items::Entity::find()
            .filter(reconciliation_items::Column::ResolvedAt.is_null())
            .count(conn)
            .await?,
        dead_deliveries: outbox_deliveries::Entity::find()
            .filter(outbox_deliveries::Column::Status.eq(DeliveryStatus::Dead))
            .count(conn)
            .await?,
    })
}
