//! The allowed state changes of an order, each one transaction guarded by the expected current
//! status (`UPDATE orders ... WHERE id = ? AND status IN (...)`), writing the order, its
//! attempts, an `order_logs` row and an `outbox` row together.
//!
//! A guard that matches no row means another actor or node changed the order first; the caller
//! gets [`Applied::Lost`] with the status it lost to and decides from there.

use chrono::{DateTime, Utc};
use entities::{orders, payment_attempts, webhook_receipts, AttemptStatus, OrderId, OrderStatus, PayNo, Provider};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};

use super::create::release_stock;
use super::journal::{write_event, write_log, EventType, LogEntry, LogEvent, Operator, PaymentRef};
use crate::cluster::Fence;
use crate::domain::OperatorReason;
use crate::error::OrderError;
use crate::gateway::PaidTrade;

/// The transitions, one variant each.
#[derive(Clone, Debug)]
pub enum OrderUpdate {
    /// pending|stuck -> paid: the attempt succeeded (by notification or compensation).
    Paid {
        pay_no: PayNo,
        trade: PaidTrade,
        raw: String,
    },
    /// pending|stuck -> closed: every attempt is closed at the provider (guarded: no attempt
    /// may still be open); stock comes back.
    Closed { reason: CloseReason },
    /// pending -> stuck: the retry budget ran out; an operator should look.
    Stuck { reason: String },
    /// closed -> paid_after_close: money arrived for a closed order; a refund is owed.
    PaidAfterClose {
        pay_no: PayNo,
        trade: PaidTrade,
        raw: String,
    },
}

/// Why an order was closed, as stored in `orders.close_reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Its deadline passed unpaid.
    Expired,
    /// The buyer or merchant cancelled it.
    Cancelled,
    /// An operator closed it, giving this reason.
    ForceClosed(OperatorReason),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Expired => f.write_str("expired"),
            CloseReason::Cancelled => f.write_str("cancelled"),
            CloseReason::ForceClosed(reason) => write!(f, "{}{reason}", OperatorReason::FORCE_CLOSED_PREFIX),
        }
    }
}

/// Why an attempt was closed, as recorded in its log row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptCloseReason {
    /// The provider closed the trade (our close, or its own expiry).
    ClosedAtProvider,
    /// The provider never heard of the trade (its QR code was never scanned).
    UnknownToProvider,
    /// The provider would not close it yet, but its `time_expire` has passed and a query still
    /// said unpaid: it can no longer be paid.
    UnpaidAfterTimeExpire,
    /// Another attempt paid the order.
    PaidByAnotherAttempt,
}

impl std::fmt::Display for AttemptCloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttemptCloseReason::ClosedAtProvider => "closed at the provider",
            AttemptCloseReason::UnknownToProvider => "unknown to the provider",
            AttemptCloseReason::UnpaidAfterTimeExpire => "unpaid after its time_expire at the provider",
            AttemptCloseReason::PaidByAnotherAttempt => "order paid by another attempt",
        })
    }
}

/// The allowed changes of one payment attempt, one variant each.
#[derive(Clone, Debug)]
pub enum AttemptUpdate {
    /// -> succeeded: the provider reports the trade paid. Applied inside the order's own
    /// transition ([`OrderUpdate::Paid`], [`OrderUpdate::PaidAfterClose`]); an attempt closed
    /// here can still turn out paid.
    Succeeded { trade: PaidTrade, raw: String },
    /// pending -> closed: the trade can no longer be paid.
    Closed(AttemptCloseReason),
    /// pending -> failed: the provider refused or failed to create the trade.
    Failed { cause: String },
    /// -> amount_mismatch: the provider reports the trade paid with another amount. Applied
    /// inside [`crate::store::record_payment`], with the anomaly it records.
    AmountMismatch { trade: PaidTrade, raw: String },
    /// -> closed, holding the payment: the trade was paid but the order was already settled by
    /// another (a refund is owed; the anomaly is recorded with it). Keeping the provider's
    /// transaction id here is what makes the same payment recorded once.
    SecondPayment { trade: PaidTrade, raw: String },
}

impl AttemptUpdate {
    fn allowed_from(&self) -> &'static [AttemptStatus] {
        match self {
            AttemptUpdate::Succeeded { .. } => &[
                AttemptStatus::Pending,
                AttemptStatus::Closed,
                AttemptStatus::Failed,
                // An operator accepted the mismatched payment.
                AttemptStatus::AmountMismatch,
            ],
            AttemptUpdate::AmountMismatch { .. } | AttemptUpdate::SecondPayment { .. } => {
                &[AttemptStatus::Pending, AttemptStatus::Closed, AttemptStatus::Failed]
            }
            AttemptUpdate::Closed(_) | AttemptUpdate::Failed { .. } => &[AttemptStatus::Pending],
        }
    }

    fn to_status(&self) -> AttemptStatus {
        match self {
            AttemptUpdate::Succeeded { .. } => AttemptStatus::Succeeded,
            AttemptUpdate::Closed(_) => AttemptStatus::Closed,
            AttemptUpdate::Failed { .. } => AttemptStatus::Failed,
            AttemptUpdate::AmountMismatch { .. } => AttemptStatus::AmountMismatch,
            AttemptUpdate::SecondPayment { .. } => AttemptStatus::Closed,
        }
    }

    /// The log row of a change made on its own (a success is logged by the order's change).
    fn log(&self, pay_no: PayNo) -> Option<(LogEvent, String)> {
        match self {
            AttemptUpdate::Succeeded { .. }
            | AttemptUpdate::AmountMismatch { .. }
            | AttemptUpdate::SecondPayment { .. } => None,
            AttemptUpdate::Closed(why) => Some((LogEvent::AttemptClosed, format!("pay_no {pay_no}: {why}"))),
            AttemptUpdate::Failed { cause } => Some((LogEvent::AttemptFailed, format!("pay_no {pay_no}: {cause}"))),
        }
    }
}

/// The order's state machine: every change of an order's status, with the statuses it may
/// start from and the one it leads to. Every status change of an order goes through one of
/// these (as a guarded `UPDATE ... WHERE status IN (from)`); the test below fails when a
/// status is added that no transition reaches, or a live one that none leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The attempt succeeded (by notification or compensation).
    Paid,
    /// Every attempt is closed at the provider; stock comes back.
    Closed,
    /// The retry budget ran out; an operator should look.
    Stuck,
    /// Money arrived for a closed order; a refund is owed.
    PaidAfterClose,
    /// The order's payment was refunded in full.
    Refunded,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 5] = [
        Transition::Paid,
        Transition::Closed,
        Transition::Stuck,
        Transition::PaidAfterClose,
        Transition::Refunded,
    ];

    pub fn from(self) -> &'static [OrderStatus] {
        match self {
            Transition::Paid | Transition::Closed => &OrderStatus::LIVE,
            Transition::Stuck => &[OrderStatus::Pending],
            Transition::PaidAfterClose => &[OrderStatus::Closed],
            Transition::Refunded => &[OrderStatus::Paid, OrderStatus::PaidAfterClose],
        }
    }

    pub fn to(self) -> OrderStatus {
        match self {
            Transition::Paid => OrderStatus::Paid,
            Transition::Closed => OrderStatus::Closed,
            Transition::Stuck => OrderStatus::Stuck,
            Transition::PaidAfterClose => OrderStatus::PaidAfterClose,
            Transition::Refunded => OrderStatus::Refunded,
        }
    }

    /// The guarded update of this transition for the orders `ids`: the new status, the
    /// version bumped, only where the status is one this transition starts from. The caller
    /// adds the transition's own columns and checks the rows affected.
    pub(crate) fn guarded(self, ids: impl IntoIterator<Item = OrderId>) -> sea_orm::UpdateMany<orders::Entity> {
        orders::Entity::update_many()
            .col_expr(orders::Column::Status, Expr::value(self.to()))
            .col_expr(orders::Column::Version, Expr::col(orders::Column::Version).add(1))
            .filter(orders::Column::Id.is_in(ids))
            .filter(orders::Column::Status.is_in(self.from().iter().copied()))
    }
}

/// The columns a close writes besides the status: why, and when. Shared by the single close
/// and the batched one ([`super::expire_batch`]).
pub(crate) fn close_columns(
    update: sea_orm::UpdateMany<orders::Entity>,
    reason: &str,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<orders::Entity> {
    update
        .col_expr(orders::Column::CloseReason, Expr::value(reason.to_owned()))
        .col_expr(orders::Column::ClosedAt, Expr::value(now))
}

impl OrderUpdate {
    pub fn transition(&self) -> Transition {
        match self {
            OrderUpdate::Paid { .. } => Transition::Paid,
            OrderUpdate::Closed { .. } => Transition::Closed,
            OrderUpdate::Stuck { .. } => Transition::Stuck,
            OrderUpdate::PaidAfterClose { .. } => Transition::PaidAfterClose,
        }
    }
}

/// A provider notification to record in `webhook_receipts` in the same transaction.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub provider: Provider,
    pub event_id: String,
}

#[derive(Debug)]
pub enum Applied {
    /// The change committed; the order as it is now.
    Done(Box<orders::Model>),
    /// The guard matched nothing: the order is in this status instead.
    Lost(OrderStatus),
    /// The notification's receipt already existed: nothing was changed.
    Duplicate,
    /// A close found an attempt still open (created after the pass listed them): nothing was
    /// changed; the pass runs again and closes it at the provider first.
    AttemptsOpen,
}

/// Applies `update` to `order_id` in its own transaction; with a `fence` (in a cluster), only
/// while the partition's token is still the caller's.
///
/// The order row is read locked (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite serialises
/// writers), so a lost guard reports the status the order is in now, not one read before
/// another transaction committed.
///
/// # Errors
/// A database error (the transaction is rolled back) or [`OrderError::NotFound`].
#[tracing::instrument(target = "paywarden::trace", name = "db transaction", skip_all, fields(change = "order", order_id = %order_id, to = %update.transition().to().as_str()))]
pub async fn apply(
    db: &DatabaseConnection,
    order_id: OrderId,
    update: OrderUpdate,
    operator: &Operator,
    receipt: Option<&Receipt>,
    fence: Option<Fence>,
) -> Result<Applied, OrderError> {
    let now = Utc::now();
    let Some((txn, before)) = begin(db, order_id, receipt, now).await? else {
        return Ok(Applied::Duplicate);
    };
    if let Some(fence) = fence {
        if super::fence::holding(&txn, &[fence]).await?.is_empty() {
            // Another node took the partition: this one's decision must not commit.
            return Err(OrderError::Fenced);
        }
    }
    let applied = apply_in(&txn, before, update, operator, now).await?;
    if let Applied::Done(_) = &applied {
        txn.commit().await?;
    }
    // A lost guard drops the transaction: the receipt rolls back too, so a retry can apply.
    Ok(applied)
}

/// Applies `update` inside the caller's transaction, to `before`, the order as read (locked)
/// in it. The caller commits.
pub(crate) async fn apply_in(
    txn: &DatabaseTransaction,
    before: orders::Model,
    update: OrderUpdate,
    operator: &Operator,
    now: DateTime<Utc>,
) -> Result<Applied, OrderError> {
    let order_id = before.id;
    let to = update.transition().to();
    let mut guarded = update.transition().guarded([order_id]);
    let mut after = before.clone();
    after.status = to;
    after.version = before.version.saturating_add(1);
    match &update {
        OrderUpdate::Paid { trade, .. } | OrderUpdate::PaidAfterClose { trade, .. } => {
            guarded = guarded.col_expr(orders::Column::PaidAt, Expr::value(trade.paid_at));
            after.paid_at = Some(trade.paid_at);
        }
        OrderUpdate::Closed { reason } => {
            let reason = reason.to_string();
            guarded = close_columns(guarded, &reason, now);
            after.close_reason = Some(reason);
            after.closed_at = Some(now);
        }
        OrderUpdate::Stuck { .. } => {}
    }
    if matches!(update, OrderUpdate::Closed { .. }) && has_open_attempts(txn, order_id).await? {
        // An attempt was created after the pass listed the attempts: its trade exists at the
        // provider and its QR code was handed out, so it must be closed there first.
        return Ok(Applied::AttemptsOpen);
    }
    if guarded.exec(txn).await?.rows_affected != 1 {
        return Ok(Applied::Lost(before.status));
    }

    let (event, reason, payment) = match &update {
        OrderUpdate::Paid { pay_no, trade, raw } | OrderUpdate::PaidAfterClose { pay_no, trade, raw } => {
            let succeeded = AttemptUpdate::Succeeded {
                trade: trade.clone(),
                raw: raw.clone(),
            };
            update_attempt(txn, *pay_no, &succeeded, now).await?.required()?;
            let payment = PaymentRef {
                pay_no: Some(*pay_no),
                provider: attempt_provider(txn, *pay_no).await?,
                provider_txn_id: Some(trade.provider_txn_id.clone()),
                paid_amount: Some(trade.amount),
            };
            let (event, text) = if matches!(update, OrderUpdate::Paid { .. }) {
                (
                    EventType::OrderPaid,
                    format!("paid by pay_no {pay_no}, txn {}", trade.provider_txn_id),
                )
            } else {
                (
                    EventType::OrderPaymentAnomaly,
                    format!(
                        "payment received after close: pay_no {pay_no}, txn {}, amount {}; refund owed",
                        trade.provider_txn_id, trade.amount
                    ),
                )
            };
            (event, text, payment)
        }
        OrderUpdate::Closed { reason } => {
            let released = release_stock(txn, &[(order_id, before.merchant_id.as_str())], now).await?;
            if let Some(summary) = released.get(&order_id) {
                write_log(
                    txn,
                    LogEntry {
                        order_id,
                        event: LogEvent::StockReleased,
                        from_status: Some(before.status.as_str()),
                        to_status: to.as_str(),
                        operator,
                        reason: Some(summary.join(", ")),
                    },
                    now,
                )
                .await?;
            }
            (EventType::OrderClosed, reason.to_string(), PaymentRef::default())
        }
        OrderUpdate::Stuck { reason } => (EventType::OrderStuck, reason.clone(), PaymentRef::default()),
    };
    write_log(
        txn,
        LogEntry {
            order_id,
            event: LogEvent::Published(event),
            from_status: Some(before.status.as_str()),
            to_status: to.as_str(),
            operator,
            reason: Some(reason.clone()),
        },
        now,
    )
    .await?;
    write_event(txn, event, &after, &payment, now).await?;
    tracing::info!(order_no = %after.order_no, from = %before.status, to = %to, %operator, reason = %reason, "order changed");
    Ok(Applied::Done(Box::new(after)))
}

/// An anomaly that changes no order status (amount mismatch, a second payment for a paid
/// order), recorded in the log and the outbox inside the caller's transaction so nothing is
/// dropped.
pub(crate) async fn anomaly_in(
    txn: &DatabaseTransaction,
    order: orders::Model,
    pay_no: PayNo,
    detail: String,
    trade: Option<&PaidTrade>,
    operator: &Operator,
    now: DateTime<Utc>,
) -> Result<Applied, OrderError> {
    write_log(
        txn,
        LogEntry {
            order_id: order.id,
            event: LogEvent::PaymentAnomaly,
            from_status: Some(order.status.as_str()),
            to_status: order.status.as_str(),
            operator,
            reason: Some(detail.clone()),
        },
        now,
    )
    .await?;
    let payment = PaymentRef {
        pay_no: Some(pay_no),
        provider: attempt_provider(txn, pay_no).await?,
        provider_txn_id: trade.map(|t| t.provider_txn_id.clone()),
        paid_amount: trade.map(|t| t.amount),
    };
    write_event(txn, EventType::OrderPaymentAnomaly, &order, &payment, now).await?;
    tracing::warn!(order_no = %order.order_no, %pay_no, detail = %detail, "payment anomaly recorded");
    Ok(Applied::Done(Box::new(order)))
}

/// Records a notification that needs no change (a duplicate delivery of something already
/// applied, or a non-payment state). Returns false when it was seen before.
///
/// # Errors
/// A database error.
pub async fn record_receipt_only(
    db: &DatabaseConnection,
    order_id: OrderId,
    receipt: &Receipt,
) -> Result<bool, OrderError> {
    let txn = db.begin().await?;
    let fresh = insert_receipt(&txn, receipt, order_id, Utc::now()).await?;
    txn.commit().await?;
    Ok(fresh)
}

/// Applies `update` to one attempt of `order_id` on its own, with its log row. A guard that
/// matches nothing (the attempt already left `pending`) changes nothing; returns whether it
/// applied.
///
/// # Errors
/// A database error.
pub async fn apply_attempt(
    db: &DatabaseConnection,
    order_id: OrderId,
    pay_no: PayNo,
    update: AttemptUpdate,
    operator: &Operator,
) -> Result<bool, OrderError> {
    apply_attempt_following(db, order_id, pay_no, update, operator, None).await
}

/// As [`apply_attempt`], leaving the trade on the follow-up at `follow_up_at` (`None`: off
/// it), in the same transaction. Locks the order row before the attempt's, the lock order of
/// every other change.
///
/// # Errors
/// A database error.
#[tracing::instrument(target = "paywarden::trace", name = "db transaction", skip_all, fields(change = "attempt", order_id = %order_id, pay_no = %pay_no))]
pub async fn apply_attempt_following(
    db: &DatabaseConnection,
    order_id: OrderId,
    pay_no: PayNo,
    update: AttemptUpdate,
    operator: &Operator,
    follow_up_at: Option<DateTime<Utc>>,
) -> Result<bool, OrderError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    // The order first, as every order transition locks it before its attempts: taking the
    // attempt first and the order second (the log row's foreign key check) could deadlock
    // with a transition holding the order and reaching for this attempt.
    lock_order(&txn, order_id).await?;
    let applied = update_attempt_following(&txn, pay_no, &update, now, follow_up_at).await?;
    if let (true, Some((event, reason))) = (applied, update.log(pay_no)) {
        let from = update.allowed_from().first().copied().unwrap_or(AttemptStatus::Pending);
        write_log(
            &txn,
            LogEntry {
                order_id,
                event,
                from_status: Some(from.as_str()),
                to_status: update.to_status().as_str(),
                operator,
                reason: Some(reason),
            },
            now,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(applied)
}

/// Opens the transaction of a change: records the notification's receipt first (`None` when
/// it was seen before: nothing to do), then reads the order locked, as it is now.
pub(crate) async fn begin(
    db: &DatabaseConnection,
    order_id: OrderId,
    receipt: Option<&Receipt>,
    now: DateTime<Utc>,
) -> Result<Option<(DatabaseTransaction, orders::Model)>, OrderError> {
    let txn = db.begin().await?;
    if let Some(receipt) = receipt {
        if !insert_receipt(&txn, receipt, order_id, now).await? {
            return Ok(None);
        }
    }
    let order = lock_order(&txn, order_id).await?;
    Ok(Some((txn, order)))
}

/// Reads the order inside `txn`, locked until the commit on PostgreSQL (`FOR UPDATE`), so every
/// decision taken in the transaction is taken on the status it will commit against. SQLite
/// has no row locks; it serialises writers, and paywarden keeps one connection to it.
pub(crate) async fn lock_order(txn: &DatabaseTransaction, order_id: OrderId) -> Result<orders::Model, OrderError> {
    orders::Entity::find_by_id(order_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(OrderError::NotFound)
}

pub(crate) async fn insert_receipt(
    txn: &DatabaseTransaction,
    receipt: &Receipt,
    order_id: OrderId,
    now: DateTime<Utc>,
) -> Result<bool, OrderError> {
    // ON CONFLICT DO NOTHING rather than catching the violation: on PostgreSQL a failed
    // statement would poison the whole transaction.
    let inserted = webhook_receipts::Entity::insert(webhook_receipts::ActiveModel {
        id: NotSet,
        provider: Set(receipt.provider),
        event_id: Set(receipt.event_id.clone()),
        order_id: Set(Some(order_id)),
        received_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([webhook_receipts::Column::Provider, webhook_receipts::Column::EventId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(inserted == 1)
}

/// Whether `order_id` has an attempt still pending.
async fn has_open_attempts<C: ConnectionTrait>(conn: &C, order_id: OrderId) -> Result<bool, OrderError> {
    let open = payment_attempts::Entity::find()
        .filter(payment_attempts::Column::OrderId.eq(order_id))
        .filter(payment_attempts::Column::Status.eq(AttemptStatus::Pending))
        .count(conn)
        .await?;
    Ok(open > 0)
}

/// Whether a guarded update matched its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct Matched(pub bool);

impl Matched {
    /// For an update the caller's decision depends on: one that matched nothing fails the
    /// transaction (nothing is committed; the caller retries on fresh state) instead of
    /// letting the rest of it act on a change that did not happen.
    pub(crate) fn required(self) -> Result<(), OrderError> {
        if self.0 {
            Ok(())
        } else {
            Err(OrderError::Concurrent)
        }
    }
}

/// The guarded column update of an attempt change, inside the caller's transaction.
pub(crate) async fn update_attempt<C: ConnectionTrait>(
    conn: &C,
    pay_no: PayNo,
    update: &AttemptUpdate,
    now: DateTime<Utc>,
) -> Result<Matched, OrderError> {
    update_attempt_following(conn, pay_no, update, now, None)
        .await
        .map(Matched)
}

/// As [`update_attempt`], leaving the trade on the follow-up at `follow_up_at` (`None`: off it).
pub(crate) async fn update_attempt_following<C: ConnectionTrait>(
    conn: &C,
    pay_no: PayNo,
    update: &AttemptUpdate,
    now: DateTime<Utc>,
    follow_up_at: Option<DateTime<Utc>>,
) -> Result<bool, OrderError> {
    let mut guarded = payment_attempts::Entity::update_many()
        .col_expr(payment_attempts::Column::Status, Expr::value(update.to_status()))
        .col_expr(payment_attempts::Column::UpdatedAt, Expr::value(now))
        .col_expr(payment_attempts::Column::FollowUpAt, Expr::value(follow_up_at))
        .filter(payment_attempts::Column::PayNo.eq(pay_no))
        .filter(payment_attempts::Column::Status.is_in(update.allowed_from().iter().copied()));
    if let AttemptUpdate::Succeeded { trade, raw }
    | AttemptUpdate::AmountMismatch { trade, raw }
    | AttemptUpdate::SecondPayment { trade, raw } = update
    {
        guarded = guarded
            .col_expr(
                payment_attempts::Column::ProviderTxnId,
                Expr::value(trade.provider_txn_id.clone()),
            )
            .col_expr(payment_attempts::Column::PaidAt, Expr::value(trade.paid_at))
            .col_expr(payment_attempts::Column::PaidAmount, Expr::value(trade.amount))
            .col_expr(payment_attempts::Column::RawPayload, Expr::value(raw.clone()));
    }
    Ok(guarded.exec(conn).await?.rows_affected == 1)
}

async fn attempt_provider<C: ConnectionTrait>(conn: &C, pay_no: PayNo) -> Result<Option<Provider>, OrderError> {
    Ok(payment_attempts::Entity::find_by_id(pay_no)
        .one(conn)
        .await?
        .map(|attempt| attempt.provider))
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;

    /// Adding a status means deciding how orders reach it and, if it is live, how they leave
    /// it: this fails until the table says so.
    #[test]
    fn every_status_is_reached_by_a_transition_and_every_live_one_is_left_by_one() {
        for status in OrderStatus::iter() {
            let reached = Transition::ALL.iter().any(|t| t.to() == status);
            assert!(
                reached || status == OrderStatus::Pending,
                "no transition leads to {status:?}: add it to Transition"
            );
            if status.is_live() {
                assert!(
                    Transition::ALL.iter().any(|t| t.from().contains(&status)),
                    "{status:?} is live but no transition leaves it"
                );
            }
        }
        for transition in Transition::ALL {
            assert!(
                !transition.from().contains(&transition.to()),
                "{transition:?} changes nothing"
            );
        }
    }

    #[test]
    fn final_statuses_are_left_only_towards_money_owed_or_refunded() {
        let leaving_final: Vec<(OrderStatus, OrderStatus)> = Transition::ALL
            .iter()
            .flat_map(|t| {
                t.from()
                    .iter()
                    .filter(|from| !from.is_live())
                    .map(move |from| (*from, t.to()))
            })
            .collect();
        assert_eq!(
            leaving_final,
            [
                (OrderStatus::Closed, OrderStatus::PaidAfterClose),
                (OrderStatus::Paid, OrderStatus::Refunded),
                (OrderStatus::PaidAfterClose, OrderStatus::Refunded),
            ]
        );
    }
}
