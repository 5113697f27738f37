//! The follow-up worker: looks at every trade on the durable follow-up when it is due, and
//! applies [`expiry::FollowUp`](super::expiry::FollowUp) — record a payment found, close a
//! trade still open, let go of one that can no longer be paid, or look again later.
//!
//! One per node. Due trades are read from `payment_attempts.follow_up_at` and each is claimed
//! by moving that time forward (a guarded update), so two nodes never look at one trade at
//! once and a node that dies mid-look only delays it. Every effect is one of the guarded
//! transactions the order actors use, so a look that races an actor is harmless.
//!
//! In a cluster a node looks only at trades of final orders and of live orders in the
//! partitions it owns: a live order's trades are queried and closed by its actor, on its owner,
//! and a second node calling the provider for them would race it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entities::{orders, payment_attempts};
use sea_orm::EntityTrait;

use super::expiry::{self, Failed, FollowUp};
use super::pass::follow_up_context;
use super::OrderDeps;
use crate::error::OrderError;
use crate::provider::Route;
use crate::store::transitions::{self, AttemptUpdate};
use crate::store::{follow_up, record_payment, Operator, PaymentRecorded};

/// Trades looked at per cycle.
const BATCH: u64 = 32;

/// The follow-up's cycles: every `expiry.follow_up_interval_milliseconds` (between 100 ms and
/// 5 s), on its own thread ([`crate::poller::Poller`]).
pub struct FollowUpWorker {
    deps: Arc<OrderDeps>,
}

impl FollowUpWorker {
    /// The follow-up's poller, not yet started.
    pub fn poller(deps: Arc<OrderDeps>) -> crate::poller::Poller {
        let poll = deps
            .settings
            .follow_up_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        crate::poller::Poller::new(Self { deps }, poll, false)
    }
}

#[async_trait::async_trait]
impl crate::poller::Job for FollowUpWorker {
    fn name(&self) -> &'static str {
        "follow_up"
    }

    async fn cycle(&self) -> Result<bool, String> {
        cycle(&self.deps)
            .await
            .map(|()| false)
            .map_err(|err| format!("{err:?}"))
    }
}

async fn cycle(deps: &OrderDeps) -> Result<(), OrderError> {
    // Each claim holds its trade for longer than one look can take (query, close, record);
    // then it is due again. Taken per claim: earlier looks of the batch take time.
    let hold = deps.settings.provider_reply_timeout.saturating_mul(3) + deps.settings.follow_up_interval;
    let hold = chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::minutes(5));
    let owned = deps
        .cluster
        .as_ref()
        .map(|ownership| (ownership.partitioner(), ownership.owned()));
    let scope = owned.as_ref().map(|(partitioner, partitions)| follow_up::OwnedScope {
        partitioner: *partitioner,
        partitions,
    });
    for attempt in follow_up::due(&deps.db, Utc::now(), BATCH, scope).await? {
        if !follow_up::claim(&deps.db, &attempt, Utc::now() + hold).await? {
            continue;
        }
        if let Err(err) = look(deps, &attempt).await {
            tracing::warn!(pay_no = %attempt.pay_no, error.cause_chain = ?err, "follow-up look failed; it is due again later");
        }
    }
    Ok(())
}

/// One look at one trade.
async fn look(deps: &OrderDeps, attempt: &payment_attempts::Model) -> Result<(), OrderError> {
    let order = orders::Entity::find_by_id(attempt.order_id)
        .one(&deps.db)
        .await?
        .ok_or(OrderError::NotFound)?;
    if order.status.is_live()
        && deps
            .cluster
            .as_ref()
            .is_some_and(|ownership| !ownership.owns_order(order.id))
    {
        // The partition moved on since the trades were read: its new owner looks at once.
        follow_up::reschedule(&deps.db, attempt.pay_no, Some(Utc::now())).await?;
        return Ok(());
    }
    let ctx = follow_up_context(deps, &order);
    let route = Route::of_attempt(attempt);
    let answer = deps.providers.query(&route, attempt.pay_no).await;
    let raw = answer.as_ref().map(|q| q.raw.to_string()).unwrap_or_default();
    let mut step = expiry::follow_up_on_query(&ctx, answer.as_ref().map(|q| &q.state).map_err(|_| Failed));
    if step == FollowUp::CloseAtProvider {
        let closed = deps.providers.close(&route, attempt.pay_no).await;
        step = expiry::follow_up_on_close(&ctx, closed.as_ref().map_err(|_| Failed));
    }
    let pay_no = attempt.pay_no;
    match step {
        FollowUp::Record(trade) => {
            let recorded = record_payment(
                &deps.db,
                pay_no,
                &trade,
                raw,
                &Operator::System,
                None,
                deps.auto_refund(),
            )
            .await?;
            if let PaymentRecorded::Committed { decision, order } = recorded {
                tracing::warn!(%pay_no, ?decision, "the follow-up found a payment; recorded");
                if decision == crate::store::payment::PaymentDecision::ConflictingReport {
                    deps.metrics
                        .money_anomalies
                        .with_label_values(&["conflicting_report"])
                        .inc();
                }
                deps.feed.changed(order.id, order.status);
            }
            follow_up::reschedule(&deps.db, pay_no, None).await?;
        }
        FollowUp::Done(why) => {
            let closed = AttemptUpdate::Closed(why);
            let applied = transitions::apply_attempt(&deps.db, order.id, pay_no, closed, &Operator::System).await?;
            if !applied {
                // Already closed here (followed only for a late payment): let go of it.
                follow_up::reschedule(&deps.db, pay_no, None).await?;
            }
        }
        FollowUp::Again(at) => follow_up::reschedule(&deps.db, pay_no, Some(at)).await?,
        FollowUp::CloseAtProvider => follow_up::reschedule(&deps.db, pay_no, Some(Utc::now())).await?,
    }
    Ok(())
}
