//! The refund worker: takes every pending refund to a final status, across restarts.
//!
//! One per node. A refund is committed before the provider hears of it (`store::refunds`);
//! its `next_attempt_at` is the durable timer this worker follows. Each due refund is claimed
//! by moving that time forward (a guarded update), so two nodes never step one refund at once
//! and a node that dies mid-call only delays it. A step either **sends** the refund (always
//! with the same `refund_no`: the provider refunds once per number) or, once the provider may
//! hold it, **queries** it:
//!
//! | answer | next |
//! |---|---|
//! | succeeded | settled `succeeded` (order `refunded_amount`, `refunded` when in full) |
//! | refused (to a send) | noted, then queried: the provider holds nothing → `failed` (its amount is free again); it holds the refund → as its state |
//! | closed (the provider's word on the refund) | settled `failed` |
//! | an **automatic** refund settled `failed` | made again under a new number for what is left, after `auto_refund_retry_min_delay` doubling; after `auto_refund_max_tries` parked for an operator (payment anomaly, `money_anomalies_total{kind="auto_refund_parked"}`) |
//! | a refund recorded `failed` reported succeeded later | settled `succeeded` after all (its amount counted again, unsent automatic retries withdrawn); refunded beyond the payment → anomaly (`refunded_beyond_paid`) |
//! | processing, WeChat `ABNORMAL` (waits for the merchant platform) | query again after a backoff; the amount stays reserved |
//! | timeout, 5xx, unverifiable answer | uncertain: query after a backoff |
//! | the query finds nothing | it never arrived: send it again at once |
//!
//! Provider notifications (WeChat `REFUND.*`) settle a refund through the same guarded
//! transaction ([`apply_notice`]); whichever comes first wins, the other changes nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entities::{payment_attempts, refunds, Provider, RefundNo};
use sea_orm::EntityTrait;

use crate::error::OrderError;
use crate::gateway::{GatewayError, RefundAnswer, RefundRequest, RefundState, VerifiedNotification};
use crate::order::messages::NotifyOutcome;
use crate::order::OrderDeps;
use crate::provider::Route;
use crate::retry::RetrySchedule;
use crate::settings::{check, Invalid};
use crate::store::refunds::{self as store, RefundOutcome, Settled};
use crate::store::transitions::{self, Receipt};
use crate::store::Operator;

/// Refunds stepped per cycle.
const BATCH: u64 = 32;

/// The `refunds` table of the configuration (with `anomalies.auto_refund`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    /// How often the worker looks for due refunds (it is also woken when one is committed).
    #[serde(rename = "poll_interval_milliseconds", with = "crate::settings::millis")]
    pub poll_interval: Duration,
    /// Backoff between steps of a refund that is processing or uncertain...
    #[serde(rename = "retry_min_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_min_delay: Duration,
    /// ...up to this; a refund is never given up: it is queried until final.
    #[serde(rename = "retry_max_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_max_delay: Duration,
    /// Refund money no order keeps (paid after close, a second payment, a payment found by the
    /// follow-up) in full, automatically. Set from `anomalies.auto_refund`.
    #[serde(skip, default = "default_auto_refund")]
    pub auto_refund: bool,
    /// An automatic refund that ends failed (closed by the provider) is made again under a new
    /// number after this delay, doubling with each try...
    #[serde(
        rename = "auto_refund_retry_min_delay_milliseconds",
        with = "crate::settings::millis",
        default = "default_auto_retry_delay"
    )]
    pub auto_retry_min_delay: Duration,
    /// ...until this many automatic refunds of one payment failed: then it is parked for an
    /// operator (a payment anomaly and an alert metric).
    #[serde(rename = "auto_refund_max_tries", default = "default_auto_max_tries")]
    pub auto_max_tries: u32,
}

fn default_auto_retry_delay() -> Duration {
    Duration::from_secs(600)
}

fn default_auto_max_tries() -> u32 {
    5
}

fn default_auto_refund() -> bool {
    true
}

impl Default for RefundSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            retry_min_delay: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(600),
            auto_refund: true,
            auto_retry_min_delay: default_auto_retry_delay(),
            auto_max_tries: default_auto_max_tries(),
        }
    }
}

impl RefundSettings {
    /// # Errors
    /// The first unusable value, named by its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(
            !self.poll_interval.is_zero(),
            section,
            "poll_interval_milliseconds",
            "must be positive",
        )?;
        check(
            !self.retry_min_delay.is_zero() && self.retry_min_delay <= self.retry_max_delay,
            section,
            "retry_min_delay_milliseconds",
            "must be positive and not above retry_max_delay_milliseconds",
        )?;
        check(
            !self.auto_retry_min_delay.is_zero(),
            section,
            "auto_refund_retry_min_delay_milliseconds",
            "must be positive",
        )?;
        check(
            (1..=100).contains(&self.auto_max_tries),
            section,
            "auto_refund_max_tries",
            "must be between 1 and 100",
        )
    }

    /// Doubling from the first delay for every try (10 min, 20, 40, ... by default).
    fn auto_schedule(&self) -> RetrySchedule {
        RetrySchedule {
            min_delay: self.auto_retry_min_delay,
            max_delay: self.auto_retry_min_delay.saturating_mul(64),
        }
    }

    fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            min_delay: self.retry_min_delay,
            max_delay: self.retry_max_delay,
        }
    }
}

/// The refund worker's cycles: every `refunds.poll_interval_milliseconds` and when a refund
/// is committed, on its own thread ([`crate::poller::Poller`]); refunds the previous run of
/// this node left pending are due at start.
pub struct RefundWorker {
    deps: Arc<OrderDeps>,
}

impl RefundWorker {
    /// The refund worker's poller, not yet started.
    pub fn poller(deps: Arc<OrderDeps>) -> crate::poller::Poller {
        let poll = deps.refunds.poll_interval;
        crate::poller::Poller::new(Self { deps }, poll, true)
    }
}

#[async_trait::async_trait]
impl crate::poller::Job for RefundWorker {
    fn name(&self) -> &'static str {
        "refunds"
    }

    async fn cycle(&self) -> Result<bool, String> {
        cycle(&self.deps)
            .await
            .map(|()| false)
            .map_err(|err| format!("{err:?}"))
    }
}

async fn cycle(deps: &OrderDeps) -> Result<(), OrderError> {
    // A claim holds its refund for longer than one step can take (one provider call, bounded
    // by the reply timeout, and one write); then it is due again, so a node that dies mid-step
    // delays the refund by this much. Sending it twice is harmless (same number), settling it
    // twice impossible (guarded on `pending`).
    let hold = deps.settings.provider_reply_timeout + deps.refunds.poll_interval.max(Duration::from_secs(1));
    let hold = chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::minutes(5));
    loop {
        let due = store::due(&deps.db, Utc::now(), BATCH).await?;
        let full = u64::try_from(due.len()).is_ok_and(|n| n == BATCH);
        for refund in due {
            if !store::claim(&deps.db, &refund, Utc::now() + hold).await? {
                continue;
            }
            if let Err(err) = step(deps, &refund).await {
                tracing::warn!(refund_no = %refund.refund_no, error.cause_chain = ?err, "refund step failed; it is due again later");
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// One step of one claimed refund: send it, or ask how it went, and act on the answer.
async fn step(deps: &OrderDeps, refund: &refunds::Model) -> Result<(), OrderError> {
    let attempt = payment_attempts::Entity::find_by_id(refund.pay_no)
        .one(&deps.db)
        .await?
        .ok_or(OrderError::AttemptNotFound)?;
    let request = RefundRequest {
        refund_no: refund.refund_no,
        pay_no: refund.pay_no,
        amount: refund.amount,
        paid_amount: attempt.paid_amount.unwrap_or(attempt.amount),
        currency: refund.currency,
        reason: refund.reason.clone(),
    };
    let answer = if refund.submitted {
        deps.providers.query_refund(&Route::of_attempt(&attempt), request).await
    } else {
        deps.providers.refund(&Route::of_attempt(&attempt), request).await
    };
    // `attempts` counts this step too (the claim added it).
    let steps = u32::try_from(refund.attempts).unwrap_or(u32::MAX);
    let later = Utc::now() + chrono::Duration::from_std(deps.refunds.schedule().delay(steps)).unwrap_or_default();
    let outcome = |label: &str| deps.metrics.refund_steps.with_label_values(&[label]).inc();
    match answer {
        Ok(RefundAnswer { state, raw }) => match state {
            RefundState::Succeeded { provider_refund_id, at } => {
                outcome("succeeded");
                let done = RefundOutcome::Succeeded { provider_refund_id, at };
                settle(deps, refund.refund_no, &done, raw.to_string(), refund.provider, None).await?;
            }
            RefundState::Failed { code, message } if !refund.submitted => {
                // A refusal to a send is not believed at once: the send may repeat one that
                // reached the provider (a quick retry after a timeout, another node), and its
                // refusal ("already refunded", "trade closed") says nothing about that one.
                // Noted, then the query decides.
                outcome("refused");
                let reason = format!("{code}: {message}");
                tracing::warn!(refund_no = %refund.refund_no, %reason, "refund refused; asking the provider before believing it");
                store::note_refusal(&deps.db, refund.refund_no, later, &reason, raw.to_string()).await?;
            }
            RefundState::Failed { code, message } => {
                // The provider's own word on this refund (closed): final.
                outcome("failed");
                let done = RefundOutcome::Failed {
                    reason: format!("{code}: {message}"),
                };
                settle(deps, refund.refund_no, &done, raw.to_string(), refund.provider, None).await?;
            }
            RefundState::Processing { provider_refund_id } => {
                outcome("processing");
                let id = provider_refund_id.as_deref();
                store::reschedule(&deps.db, refund.refund_no, true, later, id, Some(raw.to_string())).await?;
            }
            RefundState::NotFound if refund.submitted => match &refund.failure {
                // Refused, and the provider holds no refund under this number: it failed. An
                // automatic refund is money paywarden keeps for nobody: never given up, sent
                // again under the same number after the backoff (a balance topped up, a
                // provider fixed), as the providers advise for a refused refund. (One the
                // provider closes ends failed and is made again under a new number.)
                Some(reason) if refund.operator != Operator::System.to_string() => {
                    outcome("failed");
                    let done = RefundOutcome::Failed { reason: reason.clone() };
                    settle(deps, refund.refund_no, &done, raw.to_string(), refund.provider, None).await?;
                }
                // Refused because its money went back through another refund meanwhile (one
                // recorded failed succeeded after all): settled failed, nothing is owed.
                Some(reason) if store::covered_elsewhere(&deps.db, refund).await? => {
                    outcome("failed");
                    let done = RefundOutcome::Failed {
                        reason: format!("superseded: the payment was refunded by another refund ({reason})"),
                    };
                    settle(deps, refund.refund_no, &done, raw.to_string(), refund.provider, None).await?;
                }
                Some(reason) => {
                    outcome("refused");
                    tracing::error!(refund_no = %refund.refund_no, %reason, "an automatic refund is refused; sending it again later");
                    store::reschedule(&deps.db, refund.refund_no, false, later, None, Some(raw.to_string())).await?;
                }
                // The refund never arrived: sent again at once, with the same number.
                None => {
                    outcome("resent");
                    store::reschedule(
                        &deps.db,
                        refund.refund_no,
                        false,
                        Utc::now(),
                        None,
                        Some(raw.to_string()),
                    )
                    .await?;
                }
            },
            RefundState::NotFound => {
                // A send answered "no such refund": treated as a refusal, confirmed by a query.
                outcome("refused");
                let reason = "the provider does not know the payment";
                store::note_refusal(&deps.db, refund.refund_no, later, reason, raw.to_string()).await?;
            }
        },
        Err(err) => {
            outcome("uncertain");
            // A refund that may have reached the provider is queried before it is sent again;
            // one that surely did not (refused locally, not configured) is sent again.
            let surely_unsent = matches!(
                err,
                GatewayError::CircuitOpen
                    | GatewayError::RateLimited
                    | GatewayError::Busy { .. }
                    | GatewayError::NotConfigured(_)
            );
            let submitted = refund.submitted || !surely_unsent;
            tracing::warn!(refund_no = %refund.refund_no, error.message = %err, steps, "refund outcome unknown; asking again later");
            store::reschedule(&deps.db, refund.refund_no, submitted, later, None, None).await?;
        }
    }
    Ok(())
}

async fn settle(
    deps: &OrderDeps,
    refund_no: RefundNo,
    outcome: &RefundOutcome,
    raw: String,
    provider: Provider,
    receipt: Option<&Receipt>,
) -> Result<Settled, OrderError> {
    let operator = if receipt.is_some() {
        Operator::Provider(provider)
    } else {
        Operator::System
    };
    let retry = store::AutoRetry {
        ids: &deps.ids,
        schedule: deps.refunds.auto_schedule(),
        max_tries: deps.refunds.auto_max_tries,
    };
    // With `anomalies.auto_refund` off, a failed automatic refund (made while it was on) is
    // left to an operator like every other refund.
    let retry = deps.refunds.auto_refund.then_some(&retry);
    let settled = store::settle(&deps.db, refund_no, outcome, raw, &operator, receipt, retry).await?;
    if let Settled::Done {
        order,
        next,
        beyond_paid,
        ..
    } = &settled
    {
        deps.feed.changed(order.id, order.status);
        let anomaly = |kind: &str| deps.metrics.money_anomalies.with_label_values(&[kind]).inc();
        match next {
            store::AutoFollowUp::Parked { .. } => anomaly("auto_refund_parked"),
            store::AutoFollowUp::Retried { .. } => deps.feed.wake_refunds(),
            store::AutoFollowUp::None => {}
        }
        if *beyond_paid {
            anomaly("refunded_beyond_paid");
        }
    }
    Ok(settled)
}

/// Applies a verified refund notification (`out_refund_no` is ours when it parses as a refund
/// number of a refund of that trade at that provider).
///
/// # Errors
/// [`OrderError::AttemptNotFound`] for a refund paywarden does not know (the caller stores it
/// for an operator), or a database error (nothing is acknowledged; the provider retries).
pub async fn apply_notice(
    deps: &OrderDeps,
    provider: Provider,
    notification: &VerifiedNotification,
    out_refund_no: &str,
    state: &RefundState,
) -> Result<NotifyOutcome, OrderError> {
    let refund_no: RefundNo = out_refund_no.parse().map_err(|_| OrderError::AttemptNotFound)?;
    let refund = match store::find(&deps.db, refund_no, None).await {
        Ok(refund) if refund.provider == provider && refund.pay_no.to_string() == notification.out_trade_no => refund,
        Ok(_) | Err(OrderError::Refund(crate::error::RefundError::NotFound)) => {
            return Err(OrderError::AttemptNotFound)
        }
        Err(err) => return Err(err),
    };
    let receipt = Receipt {
        provider,
        event_id: notification.event_id.clone(),
    };
    let raw = notification.raw.to_string();
    let done = match state {
        RefundState::Succeeded { provider_refund_id, at } => RefundOutcome::Succeeded {
            provider_refund_id: provider_refund_id.clone(),
            at: *at,
        },
        RefundState::Failed { code, message } => RefundOutcome::Failed {
            reason: format!("{code}: {message}"),
        },
        RefundState::Processing { .. } | RefundState::NotFound => {
            let fresh = transitions::record_receipt_only(&deps.db, refund.order_id, &receipt).await?;
            return Ok(if fresh {
                NotifyOutcome::Ignored
            } else {
                NotifyOutcome::Duplicate
            });
        }
    };
    Ok(
        match settle(deps, refund.refund_no, &done, raw, provider, Some(&receipt)).await? {
            Settled::Done { refund, .. } => {
                deps.metrics.notifications.with_label_values(&["refund"]).inc();
                match refund.status {
                    entities::RefundStatus::Succeeded => NotifyOutcome::Refunded,
                    _ => NotifyOutcome::RefundFailed,
                }
            }
            Settled::AlreadyFinal(_) | Settled::Duplicate => NotifyOutcome::Duplicate,
        },
    )
}
