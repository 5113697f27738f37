//! The durable follow-up of trades that may still take money after their order stopped
//! waiting for them (`payment_attempts.follow_up_at`); the rule is
//! [`crate::order::expiry::FollowUp`], the worker [`crate::order::follow_up`].

use chrono::{DateTime, Utc};
use entities::{orders, payment_attempts, AttemptStatus, OrderId, OrderStatus, PayNo};
use sea_orm::sea_query::{Condition, Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::cluster::Partitioner;

/// How long after a payment its order's other open attempts wait for the follow-up: the
/// payment's own close of them usually settles them well before.
pub const AFTER_PAYMENT: chrono::Duration = chrono::Duration::seconds(30);

/// Puts every other open attempt of `order_id` on the follow-up at `at` (inside the payment's
/// transaction, so no crash can leave one unwatched).
///
/// # Errors
/// A database error.
pub async fn schedule_others<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    paid: PayNo,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(payment_attempts::Entity::update_many()
        .col_expr(payment_attempts::Column::FollowUpAt, Expr::value(at))
        .filter(payment_attempts::Column::OrderId.eq(order_id))
        .filter(payment_attempts::Column::PayNo.ne(paid))
        .filter(payment_attempts::Column::Status.eq(AttemptStatus::Pending))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Moves one trade's next look to `at` (`None`: off the follow-up).
///
/// # Errors
/// A database error.
pub async fn reschedule<C: ConnectionTrait>(conn: &C, pay_no: PayNo, at: Option<DateTime<Utc>>) -> Result<(), DbErr> {
    payment_attempts::Entity::update_many()
        .col_expr(payment_attempts::Column::FollowUpAt, Expr::value(at))
        .filter(payment_attempts::Column::PayNo.eq(pay_no))
        .filter(payment_attempts::Column::FollowUpAt.is_not_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// The trades a cluster node follows up: those of final orders (any node, claimed one at a
/// time) and those of live orders in the partitions it owns (the owner's alone: its actors
/// query and close the same trades).
#[derive(Clone, Copy, Debug)]
pub struct OwnedScope<'a> {
    pub partitioner: Partitioner,
    pub partitions: &'a [u32],
}

/// Trades due for a look, soonest first; on a cluster node (`owned`), only those it may look at.
///
/// # Errors
/// A database error.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
    owned: Option<OwnedScope<'_>>,
) -> Result<Vec<payment_attempts::Model>, DbErr> {
    let mut query = payment_attempts::Entity::find().filter(payment_attempts::Column::FollowUpAt.lte(now));
    if let Some(owned) = owned {
        let final_orders = Query::select()
            .column(orders::Column::Id)
            .from(orders::Entity)
            .and_where(orders::Column::Status.is_not_in(OrderStatus::LIVE))
            .to_owned();
        let mut scope = Condition::any().add(payment_attempts::Column::OrderId.in_subquery(final_orders));
        if !owned.partitions.is_empty() {
            let list: Vec<String> = owned.partitions.iter().map(u32::to_string).collect();
            scope = scope.add(Expr::cust(format!(
                "{} IN ({})",
                owned.partitioner.sql("order_id"),
                list.join(", ")
            )));
        }
        query = query.filter(scope);
    }
    query
        .order_by_asc(payment_attempts::Column::FollowUpAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Takes one due trade for this node until `until` (the next look if this one dies), unless
/// another node took it first (its `follow_up_at` moved).
///
/// # Errors
/// A database error.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    attempt: &payment_attempts::Model,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let Some(seen) = attempt.follow_up_at else {
        return Ok(false);
    };
    Ok(payment_attempts::Entity::update_many()
        .col_expr(payment_attempts::Column::FollowUpAt, Expr::value(until))
        .filter(payment_attempts::Column::PayNo.eq(attempt.pay_no))
        .filter(payment_attempts::Column::FollowUpAt.eq(seen))
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}
