//! Closing many expired orders in one transaction: the common case of the expiry rule (a
//! pending order past its deadline with no attempt open and no payment of another amount,
//! which the rule closes with reason `expired` without asking anyone), done for a batch.
//!
//! The transaction writes exactly what [`transitions::apply`](super::transitions::apply)
//! writes for each order (the guarded status change, the stock given back, the log lines, the
//! `order.closed` event), with one statement per kind for the whole batch instead of a
//! transaction per order, so a deadline storm costs the database a few round trips per
//! hundred orders. Every order is locked and judged inside the transaction; one that does not
//! qualify is left untouched and reported, and its actor runs the full pass.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entities::{orders, payment_attempts, AttemptStatus, OrderId, OrderStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::create::release_stock;
use super::journal::{event_row, log_row, EventType, LogEntry, LogEvent, Operator, PaymentRef};
use super::transitions::{close_columns, CloseReason, Transition};
use crate::cluster::Ownership;
use crate::error::OrderError;

/// Rows per multi-row INSERT (SQLite binds at most 32,766 values; an outbox row binds 9).
const ROWS_PER_INSERT: usize = 1_000;

/// What the batch did with one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Closed (expired) in this batch; the order as committed.
    Closed(Box<orders::Model>),
    /// Already final: nothing to do.
    Final(OrderStatus),
    /// Not a plain expiry (not due yet, stuck, an attempt open, a payment of another amount):
    /// untouched; the full pass decides.
    FullPass,
}

/// Closes every order of `ids` that is pending, due at `now` and has no attempt open or
/// amount-mismatched, in one transaction; reports what happened to each. In a cluster, an
/// order whose partition's fencing token is no longer this node's is left to its full pass
/// (which is fenced too).
///
/// # Errors
/// A database error: nothing was written; every order is left to its full pass.
#[tracing::instrument(target = "paywarden::trace", name = "db transaction", skip_all, fields(change = "expire_batch", orders = ids.len()))]
pub async fn close_expired(
    db: &DatabaseConnection,
    ids: &[OrderId],
    now: DateTime<Utc>,
    cluster: Option<&Ownership>,
) -> Result<HashMap<OrderId, BatchOutcome>, OrderError> {
    let mut outcomes = HashMap::with_capacity(ids.len());
    let txn = db.begin().await?;
    // Locked in id order, as every batch does, so two batches never wait on each other.
    let locked = orders::Entity::find()
        .filter(orders::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(orders::Column::Id)
        .lock_exclusive()
        .all(&txn)
        .await?;
    let mut due = Vec::with_capacity(locked.len());
    for order in locked {
        if !order.status.is_live() {
            outcomes.insert(order.id, BatchOutcome::Final(order.status));
        } else if order.status == OrderStatus::Pending && order.expires_at <= now {
            due.push(order);
        } else {
            outcomes.insert(order.id, BatchOutcome::FullPass);
        }
    }
    // Any attempt open or holding a payment of another amount: the full pass, which asks the
    // provider (or leaves the order to an operator).
    let attempted: HashSet<OrderId> = if due.is_empty() {
        HashSet::new()
    } else {
        payment_attempts::Entity::find()
            .select_only()
            .column(payment_attempts::Column::OrderId)
            .filter(payment_attempts::Column::OrderId.is_in(due.iter().map(|o| o.id)))
            .filter(payment_attempts::Column::Status.is_in([AttemptStatus::Pending, AttemptStatus::AmountMismatch]))
            .into_tuple::<OrderId>()
            .all(&txn)
            .await?
            .into_iter()
            .collect()
    };
    // In a cluster, only orders of partitions whose fencing token is still this node's.
    let due = match cluster {
        Some(cluster) if !due.is_empty() => {
            let mut fences: Vec<_> = due.iter().filter_map(|order| cluster.fence(order.id)).collect();
            fences.sort_unstable_by_key(|fence| fence.partition);
            fences.dedup();
            let holding: HashSet<u32> = super::fence::holding(&txn, &fences).await?.into_iter().collect();
            let (mine, fenced): (Vec<orders::Model>, Vec<orders::Model>) = due
                .into_iter()
                .partition(|order| holding.contains(&cluster.partition_of(order.id)));
            for order in fenced {
                outcomes.insert(order.id, BatchOutcome::FullPass);
            }
            mine
        }
        Some(_) | None => due,
    };
    let (closing, attempted): (Vec<orders::Model>, Vec<orders::Model>) =
        due.into_iter().partition(|order| !attempted.contains(&order.id));
    for order in attempted {
        outcomes.insert(order.id, BatchOutcome::FullPass);
    }
    if closing.is_empty() {
        txn.commit().await?;
        return Ok(outcomes);
    }

    let reason = CloseReason::Expired.to_string();
    let closed = close_columns(Transition::Closed.guarded(closing.iter().map(|o| o.id)), &reason, now)
        .exec(&txn)
        .await?;
    if closed.rows_affected != u64::try_from(closing.len()).unwrap_or(u64::MAX) {
        // Cannot happen with the rows locked; if it does, nothing of this batch is kept.
        txn.rollback().await?;
        return Ok(ids.iter().map(|id| (*id, BatchOutcome::FullPass)).collect());
    }
    let merchants: Vec<(OrderId, &str)> = closing.iter().map(|o| (o.id, o.merchant_id.as_str())).collect();
    let released = release_stock(&txn, &merchants, now).await?;

    let operator = Operator::System;
    let mut logs = Vec::with_capacity(closing.len());
    let mut events = Vec::with_capacity(closing.len());
    for before in closing {
        if let Some(summary) = released.get(&before.id) {
            logs.push(log_row(
                LogEntry {
                    order_id: before.id,
                    event: LogEvent::StockReleased,
                    from_status: Some(OrderStatus::Pending.as_str()),
                    to_status: OrderStatus::Closed.as_str(),
                    operator: &operator,
                    reason: Some(summary.join(", ")),
                },
                now,
            ));
        }
        logs.push(log_row(
            LogEntry {
                order_id: before.id,
                event: LogEvent::Published(EventType::OrderClosed),
                from_status: Some(OrderStatus::Pending.as_str()),
                to_status: OrderStatus::Closed.as_str(),
                operator: &operator,
                reason: Some(reason.clone()),
            },
            now,
        ));
        let mut after = before;
        after.status = OrderStatus::Closed;
        after.version = after.version.saturating_add(1);
        after.close_reason = Some(reason.clone());
        after.closed_at = Some(now);
        events.push(event_row(EventType::OrderClosed, &after, &PaymentRef::default(), None, now)?.1);
        outcomes.insert(after.id, BatchOutcome::Closed(Box::new(after)));
    }
    for chunk in logs.chunks(ROWS_PER_INSERT) {
        entities::order_logs::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    for chunk in events.chunks(ROWS_PER_INSERT) {
        entities::outbox::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    for outcome in outcomes.values() {
        if let BatchOutcome::Closed(order) = outcome {
            tracing::info!(order_no = %order.order_no, from = %OrderStatus::Pending, to = %OrderStatus::Closed, operator = %operator, %reason, "order changed");
        }
    }
    Ok(outcomes)
}
