//! Recording a payment the provider reports, by notification or found by a query.
//!
//! One transaction: the notification's receipt (if any), then the order row locked, then a
//! decision on the status it is in *now* ([`decide`]), then that decision's rows. So whatever
//! the interleaving of notifications, passes and nodes, every paid trade the provider reports
//! is recorded exactly once — as the order's payment, as money taken after close, or as an
//! anomaly owing a refund — and a notification is acknowledged only after that committed.

use chrono::Utc;
use entities::{orders, payment_attempts, AttemptStatus, OrderStatus, PayNo};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};

use super::follow_up::{schedule_others, AFTER_PAYMENT};
use super::journal::Operator;
use super::journal::{write_log, LogEntry, LogEvent};
use super::refunds::create_auto_refund;
use super::transitions::{
    anomaly_in, apply_in, insert_receipt, lock_order, update_attempt, Applied, AttemptUpdate, OrderUpdate, Receipt,
};
use crate::domain::{OperatorReason, ValidationError};
use crate::error::OrderError;
use crate::gateway::PaidTrade;
use crate::ids::Snowflake;

/// What a reported payment does, decided on the order's current status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentDecision {
    /// The order was live: it is paid by this attempt.
    MarkPaid,
    /// The order was closed: money taken after close, a refund is owed.
    MarkPaidAfterClose,
    /// This very payment is already recorded (the attempt succeeded with this transaction).
    AlreadyRecorded,
    /// The order is already settled by another payment: an anomaly, a refund is owed.
    SecondPayment,
    /// The paid amount differs from the attempt's: never marked paid; an operator decides.
    AmountMismatch,
    /// The attempt already holds a payment under another transaction id: the provider's
    /// reports contradict each other (a reused `out_trade_no`, a forged or broken report). An
    /// anomaly for an operator; nothing changes and nothing is refunded, since the money the
    /// report speaks of may be the order's own payment.
    ConflictingReport,
}

/// The decision for `trade` reported on `attempt` of an order in `status`.
pub fn decide(status: OrderStatus, attempt: &payment_attempts::Model, trade: &PaidTrade) -> PaymentDecision {
    // This very payment, recorded before (as the order's payment, as a mismatch, or as a
    // second payment owing a refund): once. A pending attempt holds no payment yet.
    let same_payment = attempt.status != AttemptStatus::Pending
        && attempt.provider_txn_id.as_deref() == Some(trade.provider_txn_id.as_str());
    if same_payment {
        return PaymentDecision::AlreadyRecorded;
    }
    let holds_another = attempt.status != AttemptStatus::Pending && attempt.provider_txn_id.is_some();
    if holds_another {
        return PaymentDecision::ConflictingReport;
    }
    if trade.amount != attempt.amount {
        return PaymentDecision::AmountMismatch;
    }
    match status {
        OrderStatus::Pending | OrderStatus::Stuck => PaymentDecision::MarkPaid,
        OrderStatus::Closed => PaymentDecision::MarkPaidAfterClose,
        OrderStatus::Paid | OrderStatus::PaidAfterClose | OrderStatus::Refunded => PaymentDecision::SecondPayment,
    }
}

/// What recording did.
#[derive(Debug)]
pub enum PaymentRecorded {
    /// The receipt was seen before: nothing changed.
    DuplicateReceipt,
    /// Committed as decided; the order as it is now.
    Committed {
        decision: PaymentDecision,
        order: Box<orders::Model>,
    },
}

/// Records `trade` as paid on attempt `pay_no`, with `receipt` when a notification reported
/// it (deduplicated on the provider's event id). With `auto_refund` (the id generator, when
/// `anomalies.auto_refund` is on), money no order keeps — paid after close, a second payment
/// — gets its full refund created in the same transaction, so it is never forgotten.
///
/// # Errors
/// [`OrderError::AttemptNotFound`] for an unknown pay_no, a database error (nothing is
/// committed; the provider retries a notification, the actor re-runs a pass).
#[tracing::instrument(target = "paywarden::trace", name = "db transaction", skip_all, fields(change = "payment", pay_no = %pay_no))]
pub async fn record_payment(
    db: &DatabaseConnection,
    pay_no: PayNo,
    trade: &PaidTrade,
    raw: String,
    operator: &Operator,
    receipt: Option<&Receipt>,
    auto_refund: Option<&Snowflake>,
) -> Result<PaymentRecorded, OrderError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let order_id = payment_attempts::Entity::find_by_id(pay_no)
        .one(&txn)
        .await?
        .ok_or(OrderError::AttemptNotFound)?
        .order_id;
    if let Some(receipt) = receipt {
        if !insert_receipt(&txn, receipt, order_id, now).await? {
            return Ok(PaymentRecorded::DuplicateReceipt);
        }
    }
    // The order first, then the attempt: every change locks in that order, and the attempt is
    // read after the lock so its status is the committed one.
    let order = lock_order(&txn, order_id).await?;
    let attempt = payment_attempts::Entity::find_by_id(pay_no)
        .one(&txn)
        .await?
        .ok_or(OrderError::AttemptNotFound)?;
    let decision = decide(order.status, &attempt, trade);
    let applied = match decision {
        PaymentDecision::MarkPaid => {
            let paid = OrderUpdate::Paid {
                pay_no,
                trade: trade.clone(),
                raw,
            };
            // The order's other trades may still take money: watched until closed.
            schedule_others(&txn, order_id, pay_no, now + AFTER_PAYMENT).await?;
            apply_in(&txn, order, paid, operator, now).await?
        }
        PaymentDecision::MarkPaidAfterClose => {
            let late = OrderUpdate::PaidAfterClose {
                pay_no,
                trade: trade.clone(),
                raw,
            };
            apply_in(&txn, order, late, operator, now).await?
        }
        PaymentDecision::AlreadyRecorded => Applied::Done(Box::new(order)),
        PaymentDecision::ConflictingReport => {
            let detail = format!(
                "pay_no {pay_no} holds txn {} ({}), the provider now reports txn {} ({}): contradicting reports, nothing changed and nothing refunded; an operator must look",
                attempt.provider_txn_id.as_deref().unwrap_or_default(),
                attempt.paid_amount.unwrap_or(attempt.amount),
                trade.provider_txn_id,
                trade.amount
            );
            anomaly_in(&txn, order, pay_no, detail, Some(trade), operator, now).await?
        }
        PaymentDecision::SecondPayment => {
            let second = AttemptUpdate::SecondPayment {
                trade: trade.clone(),
                raw,
            };
            update_attempt(&txn, pay_no, &second, now).await?.required()?;
            let detail = format!(
                "pay_no {pay_no} paid (txn {}) but the order is already settled: refund owed",
                trade.provider_txn_id
            );
            anomaly_in(&txn, order, pay_no, detail, Some(trade), operator, now).await?
        }
        PaymentDecision::AmountMismatch => {
            // The attempt leaves the open set with the anomaly, so no pass queries it again
            // and no second anomaly is written; a live order waits for an operator.
            let mismatch = AttemptUpdate::AmountMismatch {
                trade: trade.clone(),
                raw,
            };
            update_attempt(&txn, pay_no, &mismatch, now).await?.required()?;
            // The order waits for an operator, and no pass looks at its other trades meanwhile:
            // the follow-up closes them, or records a payment made on one.
            schedule_others(&txn, order_id, pay_no, now + AFTER_PAYMENT).await?;
            let detail = format!(
                "provider reports pay_no {pay_no} paid {} but the attempt is for {}; not marked paid: refund owed, or accept it",
                trade.amount, attempt.amount
            );
            let applied = anomaly_in(&txn, order, pay_no, detail, Some(trade), operator, now).await?;
            match applied {
                Applied::Done(order) if order.status == OrderStatus::Pending => {
                    let reason = format!(
                        "pay_no {pay_no} paid {} instead of {}: force-close or accept the payment",
                        trade.amount, attempt.amount
                    );
                    apply_in(&txn, *order, OrderUpdate::Stuck { reason }, operator, now).await?
                }
                other => other,
            }
        }
    };
    let Applied::Done(order) = applied else {
        // The row is locked and the decision matched its status, so the guard cannot lose; if
        // it ever does, nothing is committed and the caller retries.
        return Err(OrderError::Concurrent);
    };
    let why = match decision {
        PaymentDecision::MarkPaidAfterClose => Some("automatic: money taken after the order closed"),
        PaymentDecision::SecondPayment => Some("automatic: a second payment of a settled order"),
        // An amount that differs waits for an operator: never refunded by itself.
        // A contradicting report may speak of the order's own money: never refunded by itself.
        PaymentDecision::MarkPaid
        | PaymentDecision::AlreadyRecorded
        | PaymentDecision::AmountMismatch
        | PaymentDecision::ConflictingReport => None,
    };
    if let (Some(ids), Some(why)) = (auto_refund, why) {
        let refund_no = ids.next_typed().await?;
        if let Some(refund) = create_auto_refund(&txn, refund_no, &order, pay_no, why, now).await? {
            tracing::warn!(order_no = %order.order_no, %pay_no, refund_no = %refund.refund_no, amount = %refund.amount, "automatic refund created");
        }
    }
    txn.commit().await?;
    Ok(PaymentRecorded::Committed { decision, order })
}

/// An operator accepts the payment of an attempt in `amount_mismatch` as the order's payment
/// (the order was `stuck` waiting for this or a force-close): the order becomes `paid` by that
/// attempt, with the usual `order.paid` event, and a `payment.accepted` log row carries the
/// operator and the reason. One locked transaction, like every other payment.
///
/// # Errors
/// [`OrderError::NotPending`] for a final order, a [`ValidationError`] when the attempt is not
/// this order's or is not in `amount_mismatch`, or a database error.
pub async fn accept_mismatched_payment(
    db: &DatabaseConnection,
    order_id: entities::OrderId,
    pay_no: PayNo,
    operator: &Operator,
    reason: &OperatorReason,
) -> Result<orders::Model, OrderError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let order = lock_order(&txn, order_id).await?;
    if !order.status.is_live() {
        return Err(OrderError::NotPending(order.status));
    }
    let attempt = payment_attempts::Entity::find_by_id(pay_no)
        .one(&txn)
        .await?
        .filter(|attempt| attempt.order_id == order_id && attempt.status == AttemptStatus::AmountMismatch)
        .ok_or_else(|| {
            OrderError::Validation(ValidationError::new(
                "not_a_mismatched_payment",
                format!("pay_no {pay_no} is not a payment of this order with a differing amount"),
            ))
        })?;
    // A payment an operator refunded (or is refunding) cannot become the order's payment.
    let refunded = entities::refunds::Entity::find()
        .filter(entities::refunds::Column::PayNo.eq(pay_no))
        .filter(entities::refunds::Column::Status.ne(entities::RefundStatus::Failed))
        .count(&txn)
        .await?;
    if refunded > 0 {
        return Err(OrderError::Validation(ValidationError::new(
            "not_a_mismatched_payment",
            format!("pay_no {pay_no} was refunded (or is being refunded): it cannot pay the order"),
        )));
    }
    let trade = PaidTrade {
        provider_txn_id: attempt.provider_txn_id.clone().unwrap_or_default(),
        // What was really taken, which the order's event reports.
        amount: attempt.paid_amount.unwrap_or(attempt.amount),
        paid_at: attempt.paid_at.unwrap_or(now),
    };
    let from = order.status;
    schedule_others(&txn, order_id, pay_no, now + AFTER_PAYMENT).await?;
    let paid = OrderUpdate::Paid {
        pay_no,
        trade,
        raw: attempt.raw_payload.clone().unwrap_or_default(),
    };
    let Applied::Done(order) = apply_in(&txn, order, paid, operator, now).await? else {
        return Err(OrderError::Concurrent);
    };
    write_log(
        &txn,
        LogEntry {
            order_id,
            event: LogEvent::PaymentAccepted,
            from_status: Some(from.as_str()),
            to_status: order.status.as_str(),
            operator,
            reason: Some(format!("pay_no {pay_no} accepted: {reason}")),
        },
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(*order)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use entities::{Currency, MinorUnit, OrderId, Provider};

    use super::*;

    fn attempt(status: AttemptStatus, txn: Option<&str>) -> payment_attempts::Model {
        let now = Utc::now();
        payment_attempts::Model {
            pay_no: PayNo::new(2).unwrap(),
            order_id: OrderId::new(1).unwrap(),
            provider: Provider::Sandbox,
            status,
            amount: MinorUnit::new(2999).unwrap(),
            currency: Currency::Cny,
            code_url: None,
            provider_txn_id: txn.map(str::to_owned),
            raw_payload: None,
            created_at: now,
            updated_at: now,
            paid_at: None,
            follow_up_at: None,
            paid_amount: None,
            account_id: None,
        }
    }

    fn trade(amount: i64) -> PaidTrade {
        PaidTrade {
            provider_txn_id: "txn-1".into(),
            amount: MinorUnit::new(amount).unwrap(),
            paid_at: Utc::now(),
        }
    }

    #[test]
    fn a_reported_payment_is_decided_on_the_orders_current_status() {
        use OrderStatus::{Closed, Paid, PaidAfterClose, Pending, Stuck};
        use PaymentDecision::*;
        let open = attempt(AttemptStatus::Pending, None);
        let closed = attempt(AttemptStatus::Closed, None);
        let this_one = attempt(AttemptStatus::Succeeded, Some("txn-1"));
        let mismatched = attempt(AttemptStatus::AmountMismatch, Some("txn-1"));
        let rows = [
            ("live order: paid", Pending, &open, 2999, MarkPaid),
            ("stuck order: paid", Stuck, &open, 2999, MarkPaid),
            (
                "closed order: paid after close",
                Closed,
                &closed,
                2999,
                MarkPaidAfterClose,
            ),
            (
                "paid by another attempt: second payment",
                Paid,
                &open,
                2999,
                SecondPayment,
            ),
            (
                "paid after close by another: second payment",
                PaidAfterClose,
                &closed,
                2999,
                SecondPayment,
            ),
            (
                "the same payment again: already recorded",
                Paid,
                &this_one,
                2999,
                AlreadyRecorded,
            ),
            ("a different amount: mismatch", Pending, &open, 2998, AmountMismatch),
            (
                "a different amount after close: mismatch",
                Closed,
                &closed,
                1,
                AmountMismatch,
            ),
            (
                "the same mismatched payment again (a query, a new event id): recorded once",
                Stuck,
                &mismatched,
                2998,
                AlreadyRecorded,
            ),
        ];
        for (row, status, attempt, amount, expected) in rows {
            assert_eq!(decide(status, attempt, &trade(amount)), expected, "{row}");
        }
        // The attempt already holds a payment: another transaction id on the same pay_no
        // contradicts it, whatever the amount or the order's status (never a second payment,
        // which would refund the order's own money).
        let other = |amount: i64| PaidTrade {
            provider_txn_id: "txn-2".into(),
            ..trade(amount)
        };
        let second_kept = attempt(AttemptStatus::Closed, Some("txn-1"));
        let rows = [
            ("paid by this attempt, another txn", Paid, &this_one, 2999),
            ("refunded, another txn", OrderStatus::Refunded, &this_one, 2999),
            ("paid by this attempt, another txn and amount", Paid, &this_one, 1),
            ("a mismatch held, another txn", Stuck, &mismatched, 2999),
            ("a second payment kept, another txn", Paid, &second_kept, 2999),
        ];
        for (row, status, attempt, amount) in rows {
            assert_eq!(decide(status, attempt, &other(amount)), ConflictingReport, "{row}");
        }
    }
}
