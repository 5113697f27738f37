//! Applying a verified provider notification: the passive half of "save pay status", sharing
//! the transitions of the active half (compensation) so both are idempotent together.
//!
//! Runs inside the order actor for a live order, and directly (no actor) for a final one: the
//! receipt's uniqueness and the guarded updates keep both paths correct.

use entities::{orders, payment_attempts, AttemptStatus, OrderId, OrderStatus, PayNo, Provider};
use sea_orm::EntityTrait;

use super::expiry::{self, PaidCheck};
use super::messages::NotifyOutcome;
use super::pass::close_other_attempts;
use super::OrderDeps;
use crate::error::OrderError;
use crate::gateway::{TradeState, VerifiedNotification};
use crate::store::transitions::{self, Applied, OrderUpdate, Receipt};
use crate::store::Operator;

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
    let attempt = payment_attempts::Entity::find_by_id(notification.pay_no)
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
    let TradeState::Paid(trade) = &notification.state else {
        let fresh = transitions::record_receipt_only(&deps.db, order_id, &receipt).await?;
        return Ok(if fresh {
            NotifyOutcome::Ignored
        } else {
            NotifyOutcome::Duplicate
        });
    };
    if expiry::on_paid(attempt.amount, trade) == PaidCheck::AmountMismatch {
        let detail = format!(
            "notification says pay_no {} paid {} but the attempt is for {}; not marked paid",
            attempt.pay_no, trade.amount, attempt.amount
        );
        return Ok(
            match deps
                .record_anomaly(order_id, attempt.pay_no, detail, Some(trade), &operator, Some(&receipt))
                .await?
            {
                Applied::Duplicate => NotifyOutcome::Duplicate,
                Applied::Done(_) | Applied::Lost(_) => NotifyOutcome::AmountMismatch,
            },
        );
    }
    let order = orders::Entity::find_by_id(order_id)
        .one(&deps.db)
        .await?
        .ok_or(OrderError::NotFound)?;
    let raw = notification.raw.to_string();
    let paid = |raw: String| OrderUpdate::Paid {
        pay_no: attempt.pay_no,
        trade: trade.clone(),
        raw,
    };
    let late = |raw: String| OrderUpdate::PaidAfterClose {
        pay_no: attempt.pay_no,
        trade: trade.clone(),
        raw,
    };
    let outcome = match order.status {
        OrderStatus::Pending | OrderStatus::Stuck => {
            match deps
                .apply(order_id, paid(raw.clone()), &operator, Some(&receipt))
                .await?
            {
                Applied::Done(_) => {
                    deps.metrics.notifications.with_label_values(&["paid"]).inc();
                    close_other_attempts(deps, order_id, attempt.pay_no, &operator).await;
                    NotifyOutcome::Paid
                }
                Applied::Duplicate => NotifyOutcome::Duplicate,
                // Closed a moment ago by another node: this is a payment after close.
                Applied::Lost(OrderStatus::Closed) => {
                    after_close(deps, order_id, late(raw), &operator, &receipt).await?
                }
                Applied::Lost(_) => already_settled(deps, order_id, &attempt, trade, &operator, &receipt).await?,
            }
        }
        OrderStatus::Closed => after_close(deps, order_id, late(raw), &operator, &receipt).await?,
        OrderStatus::Paid | OrderStatus::PaidAfterClose => {
            already_settled(deps, order_id, &attempt, trade, &operator, &receipt).await?
        }
    };
    Ok(outcome)
}

async fn after_close(
    deps: &OrderDeps,
    order_id: OrderId,
    update: OrderUpdate,
    operator: &Operator,
    receipt: &Receipt,
) -> Result<NotifyOutcome, OrderError> {
    Ok(match deps.apply(order_id, update, operator, Some(receipt)).await? {
        Applied::Done(_) => {
            deps.metrics
                .notifications
                .with_label_values(&["paid_after_close"])
                .inc();
            NotifyOutcome::PaidAfterClose
        }
        Applied::Duplicate => NotifyOutcome::Duplicate,
        Applied::Lost(_) => NotifyOutcome::Anomaly,
    })
}

/// The order is already paid (or paid after close): the same payment again is a duplicate;
/// another payment is an anomaly (a refund is owed).
async fn already_settled(
    deps: &OrderDeps,
    order_id: OrderId,
    attempt: &payment_attempts::Model,
    trade: &crate::gateway::PaidTrade,
    operator: &Operator,
    receipt: &Receipt,
) -> Result<NotifyOutcome, OrderError> {
    let same_payment = attempt.status == AttemptStatus::Succeeded
        && attempt.provider_txn_id.as_deref() == Some(trade.provider_txn_id.as_str());
    if same_payment {
        transitions::record_receipt_only(&deps.db, order_id, receipt).await?;
        return Ok(NotifyOutcome::Duplicate);
    }
    let detail = format!(
        "pay_no {} paid (txn {}) but the order is already settled: refund owed",
        attempt.pay_no, trade.provider_txn_id
    );
    Ok(
        match deps
            .record_anomaly(order_id, attempt.pay_no, detail, Some(trade), operator, Some(receipt))
            .await?
        {
            Applied::Duplicate => NotifyOutcome::Duplicate,
            Applied::Done(_) | Applied::Lost(_) => {
                deps.metrics.notifications.with_label_values(&["anomaly"]).inc();
                NotifyOutcome::Anomaly
            }
        },
    )
}
