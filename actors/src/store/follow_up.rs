//! The durable follow-up of trades that may still take money after their order stopped
//! waiting for them (`payment_attempts.follow_up_at`); the rule is
//! [`crate::order::expiry::FollowUp`], the worker [`crate::order::follow_up`].

use chrono::{DateTime, Utc};
use entities::{payment_attempts, AttemptStatus, OrderId, PayNo};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

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

/// Trades due for a look, soonest first.
///
/// # Errors
/// A database error.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<payment_attempts::Model>, DbErr> {
    payment_attempts::Entity::find()
        .filter(payment_attempts::Column::FollowUpAt.lte(now))
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
