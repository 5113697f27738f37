//! The deadline index: every live order's deadline, persisted outside the actors so they can be
//! re-armed after a restart.
//!
//! Two implementations behind [`DeadlineIndex`]: Redis sorted sets ([`RedisDeadlineIndex`],
//! member = order id, score = deadline in ms; one set, or one per partition in a cluster) and the SQL fallback ([`SqlDeadlineIndex`]) used
//! when no Redis is configured, where the `orders` table itself is the index. The database is
//! the source of truth: [`DeadlineIndex::reconcile`] makes the Redis set hold exactly its live
//! orders (Redis may have been flushed, or have missed writes during a blip); start-up and the
//! admin reconcile both run it, and arm timers from the database's live orders.

mod redis;
mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use entities::{orders, OrderId, OrderStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::cluster::Partitioner;
use serde::Serialize;

pub use self::redis::RedisDeadlineIndex;
pub use self::sql::SqlDeadlineIndex;

#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    #[error("redis error")]
    Redis(#[from] ::redis::RedisError),
    #[error("database error")]
    Db(#[from] DbErr),
}

/// One entry: an order and its deadline in ms since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub order_id: OrderId,
    pub at_ms: i64,
}

/// What a reconcile changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Live orders in the database.
    pub live_orders: u64,
    /// Entries the index was missing and got back.
    pub added: u64,
    /// Entries of orders no longer live, removed.
    pub removed: u64,
}

/// Where pending deadlines are kept so actors come back after a restart. Written when an order
/// is created, removed when its actor finishes; read at start-up and by reconcile. The
/// database stays the source of truth.
#[async_trait]
pub trait DeadlineIndex: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Records (or moves) the deadline of a live order.
    async fn add(&self, deadline: Deadline) -> Result<(), DeadlineError>;

    /// Forgets an order that reached a final state.
    async fn remove(&self, order_id: OrderId) -> Result<(), DeadlineError>;

    /// Makes the index hold exactly the live orders of the database, comparing membership
    /// (never counts: a missed add and a missed remove cancel out in a count). Returns the
    /// live orders it read, which is what timers are armed from.
    ///
    /// The index is read *before* the database: an entry written after the database snapshot
    /// is then not in the index read either, so it is never taken for stale and removed (an
    /// order's row commits before its entry is added, and a final order never becomes live).
    async fn reconcile(&self) -> Result<Reconciled, DeadlineError>;

    /// As [`DeadlineIndex::reconcile`], for the orders of `partitions` only (a cluster node's
    /// share, or the partitions it just took over).
    async fn reconcile_partitions(
        &self,
        partitioner: Partitioner,
        partitions: &[u32],
    ) -> Result<Reconciled, DeadlineError>;
}

/// The outcome of a reconcile.
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    pub report: ReconcileReport,
    /// The live orders of the database, soonest first.
    pub live: Vec<Deadline>,
}

pub fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Orders of `partitions` in `statuses` whose deadline is before `due_before` (all: `None`),
/// soonest first: what a cluster node arms for its share. The partition is computed in SQL
/// ([`Partitioner::sql`]), so only those orders are read.
///
/// # Errors
/// The database error.
pub async fn live_deadlines_in<C: ConnectionTrait>(
    conn: &C,
    partitioner: Partitioner,
    partitions: &[u32],
    due_before: Option<DateTime<Utc>>,
    statuses: &[OrderStatus],
) -> Result<Vec<Deadline>, DbErr> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = partitions.iter().map(u32::to_string).collect();
    let mut query = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .column(orders::Column::ExpiresAt)
        .filter(orders::Column::Status.is_in(statuses.iter().copied()))
        .filter(Expr::cust(format!(
            "{} IN ({})",
            partitioner.sql("id"),
            list.join(", ")
        )));
    if let Some(before) = due_before {
        query = query.filter(orders::Column::ExpiresAt.lt(before));
    }
    let rows: Vec<(OrderId, DateTime<Utc>)> = query.into_tuple().all(conn).await?;
    Ok(sorted(rows))
}

fn sorted(rows: Vec<(OrderId, DateTime<Utc>)>) -> Vec<Deadline> {
    let mut out: Vec<Deadline> = rows
        .into_iter()
        .map(|(order_id, at)| Deadline {
            order_id,
            at_ms: to_ms(at),
        })
        .collect();
    out.sort_unstable_by_key(|d| (d.at_ms, d.order_id));
    out
}

/// Live (pending or stuck) orders with their deadlines, soonest first, in one read.
///
/// One query rather than keyset pages: each page of `status IN (...) AND id > ? ORDER BY id`
/// could be planned as a scan of every live order plus a sort, which made a million pending
/// orders take 100 such scans (25 s instead of about one).
///
/// # Errors
/// The database error.
pub async fn live_deadlines<C: ConnectionTrait>(conn: &C) -> Result<Vec<Deadline>, DbErr> {
    let rows: Vec<(OrderId, DateTime<Utc>)> = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .column(orders::Column::ExpiresAt)
        .filter(orders::Column::Status.is_in(OrderStatus::LIVE))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(sorted(rows))
}
