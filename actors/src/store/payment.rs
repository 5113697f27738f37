//! Recording a payment the provider reports, by notification or found by a query.
//!
//! One transaction: the notification's receipt (if any), then the order row locked, then a
//! decision on the status it is in *now* ([`decide`]), then that decision's rows. So whatever
//! the interleaving of notifications, passes and nodes, every paid trade the provider reports
//! is recorded exactly once — as the order's payment, as money taken after close, or as an
//! anomaly owing a refund — and a notification is acknowledged only after that committed.

use chrono::Utc;
use entities::{orders, payment_attempts, AttemptStatus, OrderStatus, PayNo};
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};

use super::journal::Operator;
use super::transitions::{anomaly_in, apply_in, insert_receipt, lock_order, Applied, OrderUpdate, Receipt};
use crate::error::OrderError;
use crate::gateway::PaidTrade;

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
}

/// The decision for `trade` reported on `attempt` of an order in `status`.
pub fn decide(status: OrderStatus, attempt: &payment_attempts::Model, trade: &PaidTrade) -> PaymentDecision {
    if trade.amount != attempt.amount {
        return PaymentDecision::AmountMismatch;
    }
    let same_payment = attempt.status == AttemptStatus::Succeeded
        && attempt.provider_txn_id.as_deref() == Some(trade.provider_txn_id.as_str());
    if same_payment {
        return PaymentDecision::AlreadyRecorded;
    }
    match status {
        OrderStatus::Pending | OrderStatus::Stuck => PaymentDecision::MarkPaid,
        OrderStatus::Closed => PaymentDecision::MarkPaidAfterClose,
        OrderStatus::Paid | OrderStatus::PaidAfterClose => PaymentDecision::SecondPayment,
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
/// it (deduplicated on the provider's event id).
///
/// # Errors
/// [`OrderError::AttemptNotFound`] for an unknown pay_no, a database error (nothing is
/// committed; the provider retries a notification, the actor re-runs a pass).
pub async fn record_payment(
    db: &DatabaseConnection,
    pay_no: PayNo,
    trade: &PaidTrade,
    raw: String,
    operator: &Operator,
    receipt: Option<&Receipt>,
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
        PaymentDecision::SecondPayment => {
            let detail = format!(
                "pay_no {pay_no} paid (txn {}) but the order is already settled: refund owed",
                trade.provider_txn_id
            );
            anomaly_in(&txn, order, pay_no, detail, Some(trade), operator, now).await?
        }
        PaymentDecision::AmountMismatch => {
            let detail = format!(
                "provider reports pay_no {pay_no} paid {} but the attempt is for {}; not marked paid",
                trade.amount, attempt.amount
            );
            anomaly_in(&txn, order, pay_no, detail, Some(trade), operator, now).await?
        }
    };
    let Applied::Done(order) = applied else {
        // The row is locked and the decision matched its status, so the guard cannot lose; if
        // it ever does, nothing is committed and the caller retries.
        return Err(OrderError::Concurrent);
    };
    txn.commit().await?;
    Ok(PaymentRecorded::Committed { decision, order })
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
        ];
        for (row, status, attempt, amount, expected) in rows {
            assert_eq!(decide(status, attempt, &trade(amount)), expected, "{row}");
        }
    }
}
