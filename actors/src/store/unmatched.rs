//! Authentic notifications for trades paywarden does not know: stored, listed, resolved.
//!
//! A correctly signed notification whose `pay_no` matches no attempt (a restored database,
//! another deployment's trade) may report money taken. It is kept here, once per provider
//! event id, and only then acknowledged, so the provider keeps retrying until it is stored. An
//! operator lists the open ones and resolves each with a reason (refunded by hand, matched to
//! a restored order, ...); the resolution records who and why.

use chrono::Utc;
use entities::unmatched_notifications;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::OperatorReason;
use crate::gateway::{NotificationSubject, RefundState, TradeState, VerifiedNotification};
use crate::store::Operator;

/// Characters `unmatched_notifications.pay_no` holds: the longest `out_trade_no` either
/// provider allows (Alipay: 64).
const PAY_NO_MAX_CHARS: usize = 64;

/// Whether [`record`] stored a new row or found the event already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    New,
    AlreadyStored,
}

/// Stores an authentic notification for an unknown trade (once per provider event id).
///
/// # Errors
/// A database error: the notification must then not be acknowledged.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    route: &crate::provider::Route,
    notification: &VerifiedNotification,
) -> Result<Stored, DbErr> {
    let (trade_state, amount, provider_txn_id) = match &notification.subject {
        NotificationSubject::Trade(TradeState::Paid(trade)) => {
            ("paid", Some(trade.amount), Some(trade.provider_txn_id.clone()))
        }
        NotificationSubject::Trade(TradeState::NotPaid) => ("not_paid", None, None),
        NotificationSubject::Trade(TradeState::UserPaying) => ("user_paying", None, None),
        NotificationSubject::Trade(TradeState::Closed) => ("closed", None, None),
        NotificationSubject::Trade(TradeState::NotFound) => ("not_found", None, None),
        // A refund paywarden did not ask for (or of a trade it does not know).
        NotificationSubject::Refund { state, .. } => (
            match state {
                RefundState::Succeeded { .. } => "refund_succeeded",
                RefundState::Processing { .. } => "refund_processing",
                RefundState::Failed { .. } => "refund_failed",
                RefundState::NotFound => "refund_not_found",
            },
            None,
            None,
        ),
    };
    let row = unmatched_notifications::ActiveModel {
        provider: Set(route.provider),
        account_id: Set(route.account_id()),
        event_id: Set(notification.event_id.clone()),
        pay_no: Set(notification.out_trade_no.chars().take(PAY_NO_MAX_CHARS).collect()),
        trade_state: Set(trade_state.to_owned()),
        amount: Set(amount),
        provider_txn_id: Set(provider_txn_id),
        payload: Set(notification.raw.to_string()),
        received_at: Set(Utc::now()),
        ..Default::default()
    };
    let inserted = unmatched_notifications::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                unmatched_notifications::Column::Provider,
                unmatched_notifications::Column::EventId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(if inserted == 0 {
        Stored::AlreadyStored
    } else {
        Stored::New
    })
}

/// The stored notifications, newest first: the unresolved ones only, or all.
///
/// # Errors
/// A database error.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    unresolved_only: bool,
    limit: u64,
) -> Result<Vec<unmatched_notifications::Model>, DbErr> {
    let mut query = unmatched_notifications::Entity::find();
    if unresolved_only {
        query = query.filter(unmatched_notifications::Column::ResolvedAt.is_null());
    }
    query
        .order_by_desc(unmatched_notifications::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// Why a resolve did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no such unmatched notification")]
    NotFound,
    #[error("already resolved")]
    AlreadyResolved,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Marks one resolved, recording the operator and the reason (guarded: once).
///
/// # Errors
/// [`ResolveError::NotFound`], [`ResolveError::AlreadyResolved`] or a database error.
pub async fn resolve<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    operator: &Operator,
    reason: &OperatorReason,
) -> Result<unmatched_notifications::Model, ResolveError> {
    let updated = unmatched_notifications::Entity::update_many()
        .col_expr(
            unmatched_notifications::Column::ResolvedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .col_expr(
            unmatched_notifications::Column::ResolvedBy,
            sea_orm::sea_query::Expr::value(operator.to_string()),
        )
        .col_expr(
            unmatched_notifications::Column::Resolution,
            sea_orm::sea_query::Expr::value(reason.as_str().to_owned()),
        )
        .filter(unmatched_notifications::Column::Id.eq(id))
        .filter(unmatched_notifications::Column::ResolvedAt.is_null())
        .exec(conn)
        .await?;
    let row = unmatched_notifications::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(ResolveError::NotFound)?;
    if updated.rows_affected == 0 {
        return Err(ResolveError::AlreadyResolved);
    }
    Ok(row)
}
