//! The order actor: one per live order.
//!
//! It owns its order's expiry timer and serialises every change to the order on this node:
//! timer passes of the expiry rule, notifications, cancels, force-closes, new attempts and
//! refreshes all arrive as messages and run as `AtomicResponse`s, so a notification can never
//! interleave with a close half-way through. Between passes nothing is held: waiting for a
//! retry or a USERPAYING grace is a `run_later`, and other messages are handled meanwhile.
//!
//! State is kept small (ids, deadline, counters): rows stay in the database and each pass
//! reads them fresh. The actor stops itself when its order is final.

pub mod expiry;
pub mod messages;
pub(crate) mod notify;
pub(crate) mod resolve;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entities::{orders, OrderId, OrderStatus};
use sea_orm::EntityTrait;

use self::messages::{Cancel, Expire, ForceClose, GetSnapshot, PaymentNotified, Refresh, Snapshot, StartAttempt};
use self::resolve::{Intent, PassOutcome};
use crate::engine::EngineCore;
use crate::error::OrderError;
use crate::orders::attempts;

pub struct OrderActor {
    id: OrderId,
    /// The order's deadline, ms since the epoch.
    deadline_ms: i64,
    /// When the timer is set to fire; later than the deadline for overdue orders re-armed after
    /// a restart (spread out so they do not stampede the provider).
    fire_at_ms: i64,
    core: Arc<EngineCore>,
    /// Consecutive passes that failed on a provider; decides backoff and `stuck`.
    provider_failures: u32,
    /// USERPAYING re-checks done; bounded by configuration.
    userpaying_rechecks: u32,
    timer: Option<SpawnHandle>,
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl OrderActor {
    pub(crate) fn new(core: Arc<EngineCore>, id: OrderId, deadline_ms: i64, fire_at_ms: i64) -> Self {
        Self {
            id,
            deadline_ms,
            fire_at_ms,
            core,
            provider_failures: 0,
            userpaying_rechecks: 0,
            timer: None,
        }
    }

    /// (Re)arms the timer to fire at `at_ms`.
    fn arm(&mut self, ctx: &mut Context<Self>, at_ms: i64) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.fire_at_ms = at_ms;
        let delay = Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0));
        self.timer = Some(ctx.run_later(delay, |actor, ctx| {
            actor.timer = None;
            let late_us = Utc::now()
                .timestamp_micros()
                .saturating_sub(actor.fire_at_ms.saturating_mul(1000));
            actor.core.metrics.observe_timer_lateness(late_us);
            ctx.notify(Expire);
        }));
    }

    fn arm_after(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.arm(ctx, now_ms().saturating_add(delay_ms));
    }

    /// The order is final: drop it from the deadline index and stop.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let id = self.id;
        // Detached: the actor is stopping, and the removal must not die with its context.
        actix::spawn(async move {
            if let Err(err) = core.index.remove(id).await {
                tracing::warn!(order_id = %id, error.message = %err, "failed to remove a deadline; reconcile will");
            }
        });
        ctx.stop();
    }

    fn after_expire(&mut self, result: Result<PassOutcome, OrderError>, ctx: &mut Context<Self>) {
        let settings = &self.core.settings;
        match result {
            Ok(PassOutcome::Final(_)) | Err(OrderError::NotFound) => self.finish(ctx),
            Ok(PassOutcome::NotYet { at }) => self.arm(ctx, at.timestamp_millis()),
            Ok(PassOutcome::ProviderTrouble { stuck }) => {
                self.provider_failures = self.provider_failures.saturating_add(1);
                let delay = if stuck {
                    settings.stuck_retry_interval
                } else {
                    settings.retry.delay(self.provider_failures.saturating_sub(1))
                };
                self.core.metrics.expiry_outcomes.with_label_values(&["retry"]).inc();
                self.arm_after(ctx, delay);
            }
            Ok(PassOutcome::UserPaying) => {
                self.userpaying_rechecks = self.userpaying_rechecks.saturating_add(1);
                let grace = settings.userpaying_grace;
                self.arm_after(ctx, grace);
            }
            Ok(PassOutcome::TooEarly { retry_at }) => self.arm(ctx, retry_at.timestamp_millis()),
            Ok(PassOutcome::NeedsOperator) => {
                // Stuck on something no retry fixes: stop retrying; the order stays live and
                // indexed until an operator force-closes it.
                tracing::warn!(order_id = %self.id, "order needs an operator; automatic expiry stopped");
                ctx.stop();
            }
            Ok(PassOutcome::Open(_)) => {
                let deadline = self.deadline_ms;
                self.arm(ctx, deadline);
            }
            Err(err) => {
                self.provider_failures = self.provider_failures.saturating_add(1);
                tracing::error!(order_id = %self.id, error.cause_chain = ?err, "expiry pass failed; retrying");
                let delay = settings.retry.delay(self.provider_failures.saturating_sub(1));
                self.arm_after(ctx, delay);
            }
        }
    }

    /// Runs one pass with `intent`, applying its outcome to the actor and mapping it to a reply.
    fn pass<R: 'static>(
        &mut self,
        intent: Intent,
        reply: fn(&PassOutcome) -> Result<R, OrderError>,
    ) -> AtomicResponse<Self, Result<R, OrderError>> {
        let core = self.core.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move { resolve::run(&core, id, &intent).await }
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    let answer = match &result {
                        Ok(outcome) => reply(outcome),
                        Err(err) => Err(clone_error(err)),
                    };
                    if let Ok(PassOutcome::Final(_)) = result {
                        actor.finish(ctx);
                    }
                    answer
                }),
        ))
    }
}

/// Errors cross the reply boundary by value; database errors are not `Clone`, so they travel
/// as their message.
fn clone_error(err: &OrderError) -> OrderError {
    match err {
        OrderError::NotFound => OrderError::NotFound,
        OrderError::NotPending(status) => OrderError::NotPending(*status),
        other => OrderError::Db(sea_orm::DbErr::Custom(other.to_string())),
    }
}

/// Reply of a close request (cancel / force-close) from the pass outcome.
fn close_reply(outcome: &PassOutcome) -> Result<OrderStatus, OrderError> {
    match outcome {
        PassOutcome::Final(OrderStatus::Closed) => Ok(OrderStatus::Closed),
        PassOutcome::Final(status) | PassOutcome::Open(status) => Err(OrderError::NotPending(*status)),
        PassOutcome::ProviderTrouble { .. } => Err(OrderError::ProviderUnreachable),
        PassOutcome::UserPaying | PassOutcome::TooEarly { .. } | PassOutcome::NotYet { .. } => {
            Err(OrderError::CloseNotPossibleYet)
        }
        PassOutcome::NeedsOperator => Err(OrderError::NotPending(OrderStatus::Stuck)),
    }
}

fn refresh_reply(outcome: &PassOutcome) -> Result<OrderStatus, OrderError> {
    match outcome {
        PassOutcome::Final(status) | PassOutcome::Open(status) => Ok(*status),
        PassOutcome::NeedsOperator => Ok(OrderStatus::Stuck),
        PassOutcome::ProviderTrouble { .. } => Err(OrderError::ProviderUnreachable),
        PassOutcome::UserPaying | PassOutcome::TooEarly { .. } | PassOutcome::NotYet { .. } => Ok(OrderStatus::Pending),
    }
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let fire_at = self.fire_at_ms;
        self.arm(ctx, fire_at);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.core.registry.remove(self.id);
        self.core.metrics.live_actors.dec();
    }
}

impl Handler<Expire> for OrderActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Expire, _ctx: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        let id = self.id;
        let intent = Intent::Expire {
            provider_failures: self.provider_failures,
            userpaying_exhausted: self.userpaying_rechecks >= core.settings.userpaying_max_rechecks,
        };
        AtomicResponse::new(Box::pin(
            async move {
                let _permit = core.passes.acquire().await.map_err(|_| OrderError::Unavailable)?;
                // Boxed so that a pass waiting for its permit is a few bytes, not the size of
                // the whole pass: in a deadline storm many of them wait at once.
                Box::pin(resolve::run(&core, id, &intent)).await
            }
            .into_actor(self)
            .map(|result, actor, ctx| actor.after_expire(result, ctx)),
        ))
    }
}

impl Handler<Refresh> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, _msg: Refresh, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(Intent::Refresh, refresh_reply)
    }
}

impl Handler<Cancel> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, msg: Cancel, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(Intent::Cancel { operator: msg.operator }, close_reply)
    }
}

impl Handler<ForceClose> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, msg: ForceClose, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(
            Intent::ForceClose {
                operator: msg.operator,
                reason: msg.reason,
            },
            close_reply,
        )
    }
}

impl Handler<PaymentNotified> for OrderActor {
    type Result = AtomicResponse<Self, Result<messages::NotifyOutcome, OrderError>>;

    fn handle(&mut self, msg: PaymentNotified, _ctx: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        AtomicResponse::new(Box::pin(
            async move { notify::apply(&core, msg.provider, &msg.notification).await }
                .into_actor(self)
                .map(|result, actor, ctx| {
                    if let Ok(messages::NotifyOutcome::Paid | messages::NotifyOutcome::PaidAfterClose) = result {
                        actor.finish(ctx);
                    }
                    result
                }),
        ))
    }
}

impl Handler<StartAttempt> for OrderActor {
    type Result = AtomicResponse<Self, Result<entities::payment_attempts::Model, OrderError>>;

    fn handle(&mut self, msg: StartAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move {
                let order = orders::Entity::find_by_id(id)
                    .one(&core.db)
                    .await?
                    .ok_or(OrderError::NotFound)?;
                let provider = msg.provider;
                if !core.has_provider(provider) {
                    return Err(OrderError::ProviderUnavailable(provider));
                }
                attempts::start_attempt(&core.db, &core.ids, provider, &order, &msg.operator, |request| {
                    core.create_qr(provider, request)
                })
                .await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<GetSnapshot> for OrderActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(Snapshot {
            deadline: DateTime::<Utc>::from_timestamp_millis(self.deadline_ms).unwrap_or_default(),
            provider_failures: self.provider_failures,
            userpaying_rechecks: self.userpaying_rechecks,
        })
    }
}
