//! Carries out one pass of the expiry rule: reads the order, asks the providers, commits what
//! [`expiry`](super::expiry) decides. Every decision is made there; this file only does the
//! I/O, in order, and never sleeps (waiting is the actor's job, so a notification can be
//! handled between two passes).

use chrono::Utc;
use entities::{orders, payment_attempts, AttemptStatus, OrderId, OrderStatus, PayNo};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::expiry::{
    self, Conclusion, Counters, Failed, FollowUpContext, Holds, Intent, PassContext, PassOutcome, Start, Step,
};
use super::OrderDeps;
use crate::error::OrderError;
use crate::gateway::{CloseOutcome, PaidTrade};
use crate::metrics::Settled;
use crate::provider::Route;
use crate::store::transitions::{self, Applied, AttemptCloseReason, AttemptUpdate, OrderUpdate};
use crate::store::{record_payment, Operator, PaymentDecision, PaymentRecorded};

/// Passes run back to back at most this often when attempts keep appearing while they close
/// the order; then the actor backs off as for a provider failure.
const MAX_RERUNS: usize = 3;

/// Runs one pass for `order_id`, again at once if an attempt appeared while it ran.
///
/// # Errors
/// Database errors (the actor runs the pass again), [`OrderError::NotFound`], and
/// [`OrderError::Fenced`] once this node no longer holds the order's partition.
pub(crate) async fn run(
    deps: &OrderDeps,
    order_id: OrderId,
    intent: &Intent,
    counters: Counters,
    operator: &Operator,
) -> Result<PassOutcome, OrderError> {
    if deps
        .cluster
        .as_ref()
        .is_some_and(|cluster| !cluster.owns_order(order_id))
    {
        // Another node holds the partition now: it decides; nothing is asked or written here.
        return Err(OrderError::Fenced);
    }
    for _ in 0..MAX_RERUNS {
        if let Some(outcome) = run_once(deps, order_id, intent, counters, operator).await? {
            return Ok(outcome);
        }
        tracing::info!(order_id = %order_id, "an attempt appeared while the order was closing; running the pass again");
    }
    Ok(PassOutcome::ProviderTrouble { stuck: false })
}

/// One pass; `None` when the close found an attempt the pass had not seen.
async fn run_once(
    deps: &OrderDeps,
    order_id: OrderId,
    intent: &Intent,
    counters: Counters,
    operator: &Operator,
) -> Result<Option<PassOutcome>, OrderError> {
    let order = orders::Entity::find_by_id(order_id)
        .one(&deps.db)
        .await?
        .ok_or(OrderError::NotFound)?;
    let now = Utc::now();
    match expiry::start(intent, order.status, order.expires_at, now) {
        Start::Final(status) => return Ok(Some(PassOutcome::Final(status))),
        Start::NotYet { at } => return Ok(Some(PassOutcome::NotYet { at })),
        Start::Proceed => {}
    }
    // One read serves the gate and the pass: the open attempts and any payment of another
    // amount.
    let (mismatched, open): (Vec<_>, Vec<_>) =
        attempts_in(deps, order_id, &[AttemptStatus::Pending, AttemptStatus::AmountMismatch])
            .await?
            .into_iter()
            .partition(|attempt| attempt.status == AttemptStatus::AmountMismatch);
    if !mismatched.is_empty() {
        if let Some(outcome) = expiry::on_mismatched_payment(intent) {
            return Ok(Some(outcome));
        }
    }
    let ctx = PassContext {
        intent,
        status: order.status,
        deadline: order.expires_at,
        now,
        counters,
        settings: &deps.settings,
    };
    // The provider the order was being paid at, for the success-rate metric.
    let provider = open.last().map(|attempt| attempt.provider);
    let mut holds = Holds::default();
    // The decisions of this pass, in order, for its trace (the span's `decisions` field).
    let mut decisions: Vec<&'static str> = Vec::new();
    let record = |decisions: &[&str]| {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("decisions", decisions.join(",").as_str());
        }
    };
    for attempt in open {
        let route = Route::of_attempt(&attempt);
        let answer = deps.providers.query(&route, attempt.pay_no).await;
        log_failure(&order, &attempt, "query", answer.as_ref().err());
        let mut step = expiry::on_query(&ctx, answer.as_ref().map(|q| &q.state).map_err(|_| Failed));
        let mut raw = answer.map(|q| q.raw.to_string()).unwrap_or_default();
        // At most three provider calls per attempt: query, close, query again.
        loop {
            decisions.push(step.name());
            if matches!(step, Step::Compensate(_)) {
                record(&decisions);
            }
            match step {
                Step::Compensate(trade) => {
                    return compensate(deps, &order, &attempt, trade, raw, operator).await.map(Some);
                }
                Step::CloseAtProvider => {
                    let answer = deps.providers.close(&route, attempt.pay_no).await;
                    log_failure(&order, &attempt, "close", answer.as_ref().err());
                    step = expiry::on_close(&ctx, answer.as_ref().map_err(|_| Failed));
                }
                Step::QueryAgain => {
                    let answer = deps.providers.query(&route, attempt.pay_no).await;
                    log_failure(&order, &attempt, "query", answer.as_ref().err());
                    step = expiry::on_requery(answer.as_ref().map(|q| &q.state).map_err(|_| Failed));
                    raw = answer.map(|q| q.raw.to_string()).unwrap_or_default();
                }
                Step::MarkClosed(why) => {
                    let follow_up = expiry::follow_up_after_close(&follow_up_context(deps, &order), why);
                    let closed = AttemptUpdate::Closed(why);
                    transitions::apply_attempt_following(
                        &deps.db,
                        order_id,
                        attempt.pay_no,
                        closed,
                        operator,
                        follow_up,
                    )
                    .await?;
                    break;
                }
                Step::Hold(hold) => {
                    holds.add(hold);
                    break;
                }
            }
        }
    }

    let conclusion = expiry::conclude(&ctx, &holds);
    decisions.push(conclusion.name());
    record(&decisions);
    let outcome = match conclusion {
        Conclusion::Open => PassOutcome::Open(order.status),
        Conclusion::ProviderTrouble {
            mark_stuck: Some(reason),
        } => {
            let applied = deps
                .apply(order_id, OrderUpdate::Stuck { reason }, &Operator::System, None)
                .await?;
            deps.metrics.expiry_outcomes.with_label_values(&["stuck"]).inc();
            PassOutcome::ProviderTrouble {
                stuck: matches!(applied, Applied::Done(_)),
            }
        }
        Conclusion::ProviderTrouble { mark_stuck: None } => PassOutcome::ProviderTrouble {
            stuck: order.status == OrderStatus::Stuck,
        },
        Conclusion::UserPaying => PassOutcome::UserPaying,
        Conclusion::TooEarly { retry_at } => PassOutcome::TooEarly { retry_at },
        Conclusion::CloseOrder(reason) => match deps
            .apply(order_id, OrderUpdate::Closed { reason }, operator, None)
            .await?
        {
            Applied::Done(_) => {
                deps.metrics.expiry_outcomes.with_label_values(&["closed"]).inc();
                deps.metrics.settled(Settled::Closed, provider);
                if matches!(intent, Intent::Expire) {
                    deps.metrics.observe_close(order.expires_at, Utc::now());
                }
                PassOutcome::Final(OrderStatus::Closed)
            }
            Applied::AttemptsOpen => return Ok(None),
            Applied::Lost(status) if !status.is_live() => PassOutcome::Final(status),
            Applied::Lost(_) | Applied::Duplicate => PassOutcome::ProviderTrouble { stuck: false },
        },
    };
    Ok(Some(outcome))
}

/// The facts a follow-up of one of `order`'s trades decides on, now.
pub(crate) fn follow_up_context(deps: &OrderDeps, order: &orders::Model) -> FollowUpContext {
    FollowUpContext {
        now: Utc::now(),
        safely_past: expiry::time_expire_safely_past(order.expires_at, &deps.settings),
        interval: deps.settings.follow_up_interval,
    }
}

fn log_failure(
    order: &orders::Model,
    attempt: &payment_attempts::Model,
    call: &'static str,
    err: Option<&crate::gateway::GatewayError>,
) {
    if let Some(err) = err {
        tracing::warn!(order_no = %order.order_no, pay_no = %attempt.pay_no, call, error.message = %err, "provider call failed");
    }
}

async fn open_attempts(deps: &OrderDeps, order_id: OrderId) -> Result<Vec<payment_attempts::Model>, OrderError> {
    attempts_in(deps, order_id, &[AttemptStatus::Pending]).await
}

/// The order's attempts in one of `statuses`, in creation order.
async fn attempts_in(
    deps: &OrderDeps,
    order_id: OrderId,
    statuses: &[AttemptStatus],
) -> Result<Vec<payment_attempts::Model>, OrderError> {
    Ok(payment_attempts::Entity::find()
        .filter(payment_attempts::Column::OrderId.eq(order_id))
        .filter(payment_attempts::Column::Status.is_in(statuses.iter().copied()))
        .order_by_asc(payment_attempts::Column::PayNo)
        .all(&deps.db)
        .await?)
}

/// The provider says `attempt` is paid: record it ([`record_payment`] decides on the order's
/// current status), then close every other open attempt so the buyer cannot pay twice.
pub(crate) async fn compensate(
    deps: &OrderDeps,
    order: &orders::Model,
    attempt: &payment_attempts::Model,
    trade: PaidTrade,
    raw: String,
    operator: &Operator,
) -> Result<PassOutcome, OrderError> {
    let recorded = record_payment(
        &deps.db,
        attempt.pay_no,
        &trade,
        raw,
        operator,
        None,
        deps.auto_refund(),
    )
    .await?;
    let PaymentRecorded::Committed { decision, order: now } = recorded else {
        // Only a notification carries a receipt.
        return Err(OrderError::Concurrent);
    };
    match decision {
        PaymentDecision::MarkPaid => {
            deps.feed.changed(now.id, now.status);
            deps.metrics.expiry_outcomes.with_label_values(&["compensated"]).inc();
            deps.metrics.settled(Settled::Paid, Some(attempt.provider));
            close_other_attempts(deps, order.id, attempt.pay_no, operator).await;
            Ok(PassOutcome::Final(OrderStatus::Paid))
        }
        PaymentDecision::MarkPaidAfterClose => {
            deps.feed.changed(now.id, now.status);
            Ok(PassOutcome::Final(OrderStatus::PaidAfterClose))
        }
        // Recorded by someone else first (another node, a notification): final, or a payment
        // of another amount that left the order waiting for an operator.
        PaymentDecision::AlreadyRecorded if now.status.is_live() => Ok(PassOutcome::NeedsOperator),
        PaymentDecision::AlreadyRecorded => Ok(PassOutcome::Final(now.status)),
        PaymentDecision::SecondPayment => {
            deps.feed.wake_relay();
            Ok(PassOutcome::Final(now.status))
        }
        PaymentDecision::AmountMismatch => {
            // Recorded with the attempt out of the open set and the order stuck, in one
            // transaction.
            deps.feed.changed(now.id, now.status);
            Ok(PassOutcome::NeedsOperator)
        }
        PaymentDecision::ConflictingReport => {
            deps.feed.wake_relay();
            deps.metrics
                .money_anomalies
                .with_label_values(&["conflicting_report"])
                .inc();
            Ok(if now.status.is_live() {
                PassOutcome::NeedsOperator
            } else {
                PassOutcome::Final(now.status)
            })
        }
    }
}

/// Closes the other open attempts of a paid order at their providers, so the buyer cannot pay
/// twice. Each is already on the follow-up (scheduled in the payment's transaction), so one
/// this cannot close now (the provider refuses yet, fails, or does not know the trade) is
/// looked at again until it is closed or can no longer be paid; a payment found there is
/// recorded, never lost.
pub(crate) async fn close_other_attempts(deps: &OrderDeps, order_id: OrderId, paid: PayNo, operator: &Operator) {
    let Ok(others) = open_attempts(deps, order_id).await else {
        return;
    };
    for other in others.into_iter().filter(|a| a.pay_no != paid) {
        match deps.providers.close(&Route::of_attempt(&other), other.pay_no).await {
            Ok(CloseOutcome::Closed) => {
                let closed = AttemptUpdate::Closed(AttemptCloseReason::PaidByAnotherAttempt);
                if let Err(err) = transitions::apply_attempt(&deps.db, order_id, other.pay_no, closed, operator).await {
                    tracing::warn!(pay_no = %other.pay_no, error.cause_chain = ?err, "failed to record a closed attempt; the follow-up will");
                }
            }
            Ok(CloseOutcome::TooEarly { retry_at }) => {
                if let Err(err) = crate::store::follow_up::reschedule(&deps.db, other.pay_no, Some(retry_at)).await {
                    tracing::warn!(pay_no = %other.pay_no, error.cause_chain = ?err, "failed to reschedule a follow-up");
                }
            }
            Ok(CloseOutcome::AlreadyPaid | CloseOutcome::NotFound) | Err(_) => {
                tracing::info!(pay_no = %other.pay_no, "a second attempt of a paid order is left to the follow-up");
            }
        }
    }
}
