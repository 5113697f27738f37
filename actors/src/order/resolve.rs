//! The expiry rule (seeds 000 and 001), one pass at a time.
//!
//! A pass reads the order, and if it is still live asks the provider about each open attempt:
//! paid -> compensate; user paying -> wait a bounded grace; unpaid -> close at the provider
//! (an "already paid" answer is queried again and compensated); closed or unknown -> the
//! attempt is closed. When every attempt is closed, the order is closed in one guarded
//! transaction with its stock released. Provider failures end the pass early; the actor
//! schedules the next one with backoff, and marks the order `stuck` when the budget is spent.
//!
//! Passes never sleep: waiting is the actor's job (`run_later`), so a notification can be
//! handled between two passes.

use chrono::{DateTime, Utc};
use entities::{orders, payment_attempts, AttemptStatus, OrderId, OrderStatus, PayNo};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::engine::EngineCore;
use crate::error::OrderError;
use crate::gateway::{CloseOutcome, PaidTrade, TradeState};
use crate::orders::transitions::{self, Applied, OrderUpdate};
use crate::orders::Operator;

#[derive(Clone, Debug)]
pub(crate) enum Intent {
    /// The deadline passed. `provider_failures` so far decides when the order becomes stuck;
    /// once `userpaying_exhausted`, a trade still in USERPAYING is closed like an unpaid one.
    Expire {
        provider_failures: u32,
        userpaying_exhausted: bool,
    },
    Cancel {
        operator: Operator,
    },
    ForceClose {
        operator: Operator,
        reason: String,
    },
    /// Query only: compensate if paid, never close.
    Refresh,
}

impl Intent {
    fn operator(&self) -> Operator {
        match self {
            Intent::Expire { .. } | Intent::Refresh => Operator::System,
            Intent::Cancel { operator } | Intent::ForceClose { operator, .. } => operator.clone(),
        }
    }

    fn close_reason(&self) -> String {
        match self {
            Intent::Expire { .. } | Intent::Refresh => "expired".to_owned(),
            Intent::Cancel { .. } => "cancelled".to_owned(),
            Intent::ForceClose { reason, .. } => format!("force-closed: {reason}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PassOutcome {
    /// The order is final (or was already): the actor stops.
    Final(OrderStatus),
    /// An `Expire` came before the deadline: re-arm.
    NotYet { at: DateTime<Utc> },
    /// A provider could not be reached; `stuck` says whether the order is now stuck.
    ProviderTrouble { stuck: bool },
    /// A trade is in USERPAYING: look again after the grace.
    UserPaying,
    /// The provider will not close yet (WeChat's first 5 minutes): try again then.
    TooEarly { retry_at: DateTime<Utc> },
    /// Something only an operator can settle (a paid amount that differs): the order is stuck
    /// and automatic passes stop.
    NeedsOperator,
    /// A refresh found the order still open.
    Open(OrderStatus),
}

/// Runs one pass for `order_id`.
///
/// # Errors
/// Database errors (the actor retries the pass) and [`OrderError::NotFound`].
pub(crate) async fn run(core: &EngineCore, order_id: OrderId, intent: &Intent) -> Result<PassOutcome, OrderError> {
    let order = orders::Entity::find_by_id(order_id)
        .one(&core.db)
        .await?
        .ok_or(OrderError::NotFound)?;
    // Rule 1: a final order needs no provider call.
    if !order.status.is_live() {
        return Ok(PassOutcome::Final(order.status));
    }
    if matches!(intent, Intent::Expire { .. }) && Utc::now() < order.expires_at {
        return Ok(PassOutcome::NotYet { at: order.expires_at });
    }
    let operator = intent.operator();
    let refresh_only = matches!(intent, Intent::Refresh);
    let userpaying_exhausted = matches!(
        intent,
        Intent::Expire {
            userpaying_exhausted: true,
            ..
        }
    );
    let attempts = open_attempts(core, order_id).await?;

    let mut trouble = false;
    let mut userpaying = false;
    let mut too_early: Option<DateTime<Utc>> = None;
    for attempt in &attempts {
        let query = match core.query(attempt.provider, attempt.pay_no).await {
            Ok(query) => query,
            Err(err) => {
                tracing::warn!(order_no = %order.order_no, pay_no = %attempt.pay_no, error.message = %err, "provider query failed");
                trouble = true;
                continue;
            }
        };
        let unpaid = match query.state {
            TradeState::Paid(trade) => {
                return compensate(core, &order, attempt, trade, query.raw.to_string(), &operator).await;
            }
            TradeState::UserPaying if !userpaying_exhausted => {
                userpaying = true;
                false
            }
            TradeState::UserPaying | TradeState::NotPaid => true,
            TradeState::Closed | TradeState::NotFound => {
                if !refresh_only {
                    let why = if query.state == TradeState::Closed {
                        "closed at the provider"
                    } else {
                        "unknown to the provider"
                    };
                    transitions::close_attempt(&core.db, order_id, attempt.pay_no, why, &operator).await?;
                }
                false
            }
        };
        if !unpaid || refresh_only {
            continue;
        }
        match core.close(attempt.provider, attempt.pay_no).await {
            Ok(CloseOutcome::Closed) => {
                transitions::close_attempt(&core.db, order_id, attempt.pay_no, "closed at the provider", &operator)
                    .await?;
            }
            Ok(CloseOutcome::NotFound) => {
                transitions::close_attempt(&core.db, order_id, attempt.pay_no, "unknown to the provider", &operator)
                    .await?;
            }
            Ok(CloseOutcome::AlreadyPaid) => {
                // Paid between our query and our close: query again and compensate.
                match core.query(attempt.provider, attempt.pay_no).await {
                    Ok(again) => match again.state {
                        TradeState::Paid(trade) => {
                            return compensate(core, &order, attempt, trade, again.raw.to_string(), &operator).await;
                        }
                        TradeState::NotPaid | TradeState::UserPaying | TradeState::Closed | TradeState::NotFound => {
                            trouble = true;
                        }
                    },
                    Err(_) => trouble = true,
                }
            }
            Ok(CloseOutcome::TooEarly { retry_at }) => {
                // The provider will not close yet (WeChat: not in the first 5 minutes). The
                // trade was created with `time_expire` = the order's deadline, so once that has
                // passed (plus a margin for clock skew) and the query still says unpaid, the
                // provider can no longer take the payment: the attempt is over.
                let margin = chrono::Duration::from_std(core.settings.provider_clock_margin)
                    .unwrap_or_else(|_| chrono::Duration::seconds(30));
                if unpaid_past_time_expire(&order, Utc::now(), margin) {
                    transitions::close_attempt(
                        &core.db,
                        order_id,
                        attempt.pay_no,
                        "unpaid after its time_expire at the provider",
                        &operator,
                    )
                    .await?;
                } else {
                    // Look again when the provider accepts a close, or when time_expire is
                    // safely past, whichever comes first.
                    let next = retry_at.min(order.expires_at + margin + chrono::Duration::milliseconds(100));
                    too_early = Some(too_early.map_or(next, |t| t.max(next)));
                }
            }
            Err(err) => {
                tracing::warn!(order_no = %order.order_no, pay_no = %attempt.pay_no, error.message = %err, "provider close failed");
                trouble = true;
            }
        }
    }

    if refresh_only {
        return Ok(PassOutcome::Open(order.status));
    }
    if trouble {
        return Ok(match intent {
            Intent::Expire { provider_failures, .. }
                if order.status == OrderStatus::Pending
                    && provider_failures.saturating_add(1) >= core.settings.retry_budget =>
            {
                let reason = format!(
                    "provider unreachable after {} attempts",
                    provider_failures.saturating_add(1)
                );
                let stuck = matches!(
                    core.apply(order_id, OrderUpdate::Stuck { reason }, &Operator::System, None)
                        .await?,
                    Applied::Done(_)
                );
                core.metrics.expiry_outcomes.with_label_values(&["stuck"]).inc();
                PassOutcome::ProviderTrouble { stuck }
            }
            _ => PassOutcome::ProviderTrouble {
                stuck: order.status == OrderStatus::Stuck,
            },
        });
    }
    if userpaying {
        return Ok(PassOutcome::UserPaying);
    }
    if let Some(retry_at) = too_early {
        return Ok(PassOutcome::TooEarly { retry_at });
    }
    let update = OrderUpdate::Closed {
        reason: intent.close_reason(),
    };
    match core.apply(order_id, update, &operator, None).await? {
        Applied::Done(_) => {
            core.metrics.expiry_outcomes.with_label_values(&["closed"]).inc();
            Ok(PassOutcome::Final(OrderStatus::Closed))
        }
        Applied::Lost(status) if !status.is_live() => Ok(PassOutcome::Final(status)),
        Applied::Lost(_) | Applied::Duplicate => Ok(PassOutcome::ProviderTrouble { stuck: false }),
    }
}

async fn open_attempts(core: &EngineCore, order_id: OrderId) -> Result<Vec<payment_attempts::Model>, OrderError> {
    Ok(payment_attempts::Entity::find()
        .filter(payment_attempts::Column::OrderId.eq(order_id))
        .filter(payment_attempts::Column::Status.eq(AttemptStatus::Pending))
        .order_by_asc(payment_attempts::Column::PayNo)
        .all(&core.db)
        .await?)
}

/// The provider says `attempt` is paid: verify the amount, mark attempt and order paid, then
/// close every other open attempt so the buyer cannot pay twice.
pub(crate) async fn compensate(
    core: &EngineCore,
    order: &orders::Model,
    attempt: &payment_attempts::Model,
    trade: PaidTrade,
    raw: String,
    operator: &Operator,
) -> Result<PassOutcome, OrderError> {
    if trade.amount != attempt.amount {
        let detail = format!(
            "provider reports pay_no {} paid {} but the attempt is for {}",
            attempt.pay_no, trade.amount, attempt.amount
        );
        core.record_anomaly(order.id, attempt.pay_no, detail.clone(), Some(&trade), operator, None)
            .await?;
        if order.status == OrderStatus::Pending {
            core.apply(order.id, OrderUpdate::Stuck { reason: detail }, operator, None)
                .await?;
        }
        return Ok(PassOutcome::NeedsOperator);
    }
    let paid = OrderUpdate::Paid {
        pay_no: attempt.pay_no,
        trade: trade.clone(),
        raw: raw.clone(),
    };
    match core.apply(order.id, paid, operator, None).await? {
        Applied::Done(_) => {
            core.metrics.expiry_outcomes.with_label_values(&["compensated"]).inc();
            close_other_attempts(core, order.id, attempt.pay_no, operator).await;
            Ok(PassOutcome::Final(OrderStatus::Paid))
        }
        Applied::Lost(OrderStatus::Closed) => {
            let late = OrderUpdate::PaidAfterClose {
                pay_no: attempt.pay_no,
                trade,
                raw,
            };
            core.apply(order.id, late, operator, None).await?;
            Ok(PassOutcome::Final(OrderStatus::PaidAfterClose))
        }
        Applied::Lost(status) => Ok(PassOutcome::Final(status)),
        Applied::Duplicate => Ok(PassOutcome::Final(OrderStatus::Paid)),
    }
}

/// Best effort: a trade left open here still expires at the provider at its `time_expire`,
/// and a payment on it would arrive as an anomaly, not be lost.
pub(crate) async fn close_other_attempts(core: &EngineCore, order_id: OrderId, paid: PayNo, operator: &Operator) {
    let Ok(others) = open_attempts(core, order_id).await else {
        return;
    };
    for other in others.into_iter().filter(|a| a.pay_no != paid) {
        match core.close(other.provider, other.pay_no).await {
            Ok(CloseOutcome::Closed | CloseOutcome::NotFound) => {
                if let Err(err) = transitions::close_attempt(
                    &core.db,
                    order_id,
                    other.pay_no,
                    "order paid by another attempt",
                    operator,
                )
                .await
                {
                    tracing::warn!(pay_no = %other.pay_no, error.message = %err, "failed to record a closed attempt");
                }
            }
            Ok(CloseOutcome::AlreadyPaid) => {
                let detail = format!(
                    "pay_no {} was also paid; the order was already paid by {paid}: refund owed",
                    other.pay_no
                );
                if let Err(err) = core
                    .record_anomaly(order_id, other.pay_no, detail, None, operator, None)
                    .await
                {
                    tracing::error!(pay_no = %other.pay_no, error.message = %err, "failed to record a double payment");
                }
            }
            Ok(CloseOutcome::TooEarly { .. }) | Err(_) => {
                tracing::warn!(pay_no = %other.pay_no, "could not close a second attempt of a paid order; it expires at the provider");
            }
        }
    }
}

/// Whether a trade created with `time_expire` = the order's deadline can no longer be paid.
fn unpaid_past_time_expire(order: &orders::Model, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
    now > order.expires_at + margin
}
