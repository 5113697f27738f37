//! Applying a verified provider notification: the passive half of "save pay status", sharing
//! [`record_payment`] with the active half (compensation) so both are idempotent together.
//!
//! Runs inside the order actor for a live order, and directly (no actor) for a final one: the
//! receipt's uniqueness and the locked, decide-on-current-status transaction keep both paths
//! correct, and the reply comes only after the effect committed.

use entities::{payment_attempts, OrderId, PayNo, Provider};
use sea_orm::EntityTrait;

use super::messages::NotifyOutcome;
use super::pass::close_other_attempts;
use super::OrderDeps;
use crate::error::OrderError;
use crate::gateway::{NotificationSubject, TradeState, VerifiedNotification};
use crate::store::transitions::{self, Receipt};
use crate::store::{record_payment, Operator, PaymentDecision, PaymentRecorded};

/// The order a notification's `pay_no` belongs to.
///
/// # Errors
/// [`OrderError::AttemptNotFound`] for a trade paywarden never created.
pub(crate) async fn owning_order(deps: &OrderDeps, pay_no: PayNo) -> Result<OrderId, OrderError> {
    payment_attempts::Entity::find_by_id(pay_no)
        .one(&deps.db)
        .await?
        .map(|attempt| attempt.order_id)
        .ok_or(OrderError::AttemptNotFound)
}

pub(crate) async fn apply(
    deps: &OrderDeps,
    provider: Provider,
    notification: &VerifiedNotification,
) -> Result<NotifyOutcome, OrderError> {
    let pay_no = notification.pay_no().ok_or(OrderError::AttemptNotFound)?;
    let attempt = payment_attempts::Entity::find_by_id(pay_no)
        .one(&deps.db)
        .await?
        .ok_or(OrderError::AttemptNotFound)?;
    if attempt.provider != provider {
        return Err(OrderError::AttemptNotFound);
    }
    let order_id = attempt.order_id;
    let receipt = Receipt {
        provider,
        event_id: notification.event_id.clone(),
    };
    let operator = Operator::Provider(provider);
    let NotificationSubject::Trade(TradeState::Paid(trade)) = &notification.subject else {
        let fresh = transitions::record_receipt_only(&deps.db, order_id, &receipt).await?;
        return Ok(if fresh {
            NotifyOutcome::Ignored
        } else {
            NotifyOutcome::Duplicate
        });
    };
    let recorded = record_payment(
        &deps.db,
        attempt.pay_no,
        trade,
        notification.raw.to_string(),
        &operator,
        Some(&receipt),
        deps.auto_refund(),
    )
    .await?;
    let PaymentRecorded::Committed { decision, order } = recorded else {
        return Ok(NotifyOutcome::Duplicate);
    };
    let outcome = match decision {
        PaymentDecision::MarkPaid => {
            deps.feed.changed(order.id, order.status);
            deps.metrics.notifications.with_label_values(&["paid"]).inc();
            deps.metrics.settled(crate::metrics::Settled::Paid, Some(provider));
            close_other_attempts(deps, order_id, attempt.pay_no, &operator).await;
            NotifyOutcome::Paid
        }
        PaymentDecision::MarkPaidAfterClose => {
            deps.feed.changed(order.id, order.status);
            deps.feed.wake_refunds();
            deps.metrics
                .notifications
                .with_label_values(&["paid_after_close"])
                .inc();
            NotifyOutcome::PaidAfterClose
        }
        PaymentDecision::AlreadyRecorded => NotifyOutcome::Duplicate,
        PaymentDecision::SecondPayment => {
            deps.feed.wake_relay();
            deps.feed.wake_refunds();
            deps.metrics.notifications.with_label_values(&["anomaly"]).inc();
            NotifyOutcome::Anomaly
        }
        PaymentDecision::AmountMismatch => {
            // The order is stuck now (when it was live): status watchers see it.
            deps.feed.changed(order.id, order.status);
            NotifyOutcome::AmountMismatch
        }
        PaymentDecision::ConflictingReport => {
            deps.feed.wake_relay();
            deps.metrics.notifications.with_label_values(&["anomaly"]).inc();
            deps.metrics
                .money_anomalies
                .with_label_values(&["conflicting_report"])
                .inc();
            NotifyOutcome::Anomaly
        }
    };
    Ok(outcome)
}
