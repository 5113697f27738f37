//! The order actor: one per live order.
//!
//! It owns its order's expiry timer and serialises every change to the order on this node:
//! timer passes of the expiry rule, notifications, cancels, force-closes, new attempts and
//! refreshes all arrive as messages and run as `AtomicResponse`s, so a notification can never
//! interleave with a close half-way through. Between passes nothing is held: waiting for a
//! retry or a USERPAYING grace is a `run_later`, and other messages are handled meanwhile.
//!
//! State is kept small (ids, deadline, counters): rows stay in the database and each pass
//! reads them fresh. The actor stops itself when its order is final (paid, closed, paid after
//! close); a `stuck` order is still live and keeps its actor.
//!
//! # Layout
//! - [`expiry`]: the expiry rule as pure decisions, and its settings. Start reading there.
//! - `pass`: carries out one pass (provider calls, guarded transactions).
//! - `notify`: applies a verified provider notification.
//! - [`follow_up`]: the worker that watches trades after their order stopped waiting for them.
//! - [`messages`]: what the actor is sent.
//! - [`registry`]: order id -> running actor; starts and stops them.
//! - [`deps`]: what an actor needs (store, providers client, index, settings, metrics).

pub mod closer;
pub mod deps;
pub mod expiry;
pub mod follow_up;
pub mod messages;
pub(crate) mod notify;
pub(crate) mod pass;
pub mod registry;

use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entities::{orders, OrderId, OrderStatus};
use sea_orm::EntityTrait;
use tracing::Instrument;

pub use self::deps::OrderDeps;
use self::expiry::{CloseRefused, Counters, Intent, PassFailure, PassOutcome, Wake};
use self::messages::{
    AcceptPayment, Cancel, Expire, ForceClose, GetSnapshot, PaymentNotified, Refresh, Shutdown, Snapshot, StartAttempt,
};
pub use self::registry::OrderRegistry;
use crate::error::OrderError;
use crate::store::expire_batch::BatchOutcome;
use crate::store::{attempts, Operator};

/// The actor of one live order; started by the [`OrderRegistry`], sent messages by the engine.
pub struct OrderActor {
    id: OrderId,
    /// The order's deadline, ms since the epoch.
    deadline_ms: i64,
    /// When the timer is set to fire; later than the deadline for overdue orders re-armed after
    /// a restart (spread out so they do not stampede the provider).
    fire_at_ms: i64,
    deps: Arc<OrderDeps>,
    /// Weak: the registry owns the actors' addresses, an actor only unregisters itself.
    registry: Weak<OrderRegistry>,
    counters: Counters,
    timer: Option<SpawnHandle>,
    /// An attempt was started through this actor: its expiry needs the full pass (a provider
    /// to ask), so the batched close is not tried. Unknown after a restart (false): the batch
    /// then finds the attempt and hands the order back.
    attempted: bool,
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl OrderActor {
    pub(crate) fn new(
        deps: Arc<OrderDeps>,
        registry: Weak<OrderRegistry>,
        id: OrderId,
        deadline_ms: i64,
        fire_at_ms: i64,
    ) -> Self {
        Self {
            id,
            deadline_ms,
            fire_at_ms,
            deps,
            registry,
            counters: Counters::default(),
            timer: None,
            attempted: false,
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
            actor.deps.metrics.observe_timer_lateness(late_us);
            ctx.notify(Expire);
        }));
    }

    fn arm_after(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.arm(ctx, now_ms().saturating_add(delay_ms));
    }

    fn deadline(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.deadline_ms).unwrap_or_default()
    }

    /// The order is final: drop it from the deadline index and stop.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let id = self.id;
        // Detached: the actor is stopping, and the removal must not die with its context.
        actix::spawn(async move {
            if let Err(err) = deps.index.remove(id).await {
                tracing::warn!(order_id = %id, error.message = %err, "failed to remove a deadline; reconcile will");
            }
        });
        ctx.stop();
    }

    /// After a timer pass: arm the next one as [`expiry::next_wake`] says.
    fn after_expire(&mut self, result: Result<PassOutcome, OrderError>, ctx: &mut Context<Self>) {
        let outcome = match &result {
            Ok(outcome) => Ok(outcome),
            Err(OrderError::NotFound) => Err(PassFailure::OrderGone),
            Err(OrderError::Fenced) => {
                // Another node holds the order's partition now (this node was paused or cut
                // off from Redis past its lease): it runs the order; this actor just stops,
                // leaving the deadline indexed.
                tracing::info!(order_id = %self.id, "the order's partition is no longer this node's; its actor stops");
                ctx.stop();
                return;
            }
            Err(err) => {
                tracing::error!(order_id = %self.id, error.cause_chain = ?err, "expiry pass failed; retrying");
                Err(PassFailure::Error)
            }
        };
        let (wake, counters) = expiry::next_wake(outcome, self.counters, self.deadline(), &self.deps.settings);
        if matches!(result, Ok(PassOutcome::ProviderTrouble { .. })) {
            self.deps.metrics.expiry_outcomes.with_label_values(&["retry"]).inc();
        }
        self.counters = counters;
        match wake {
            Wake::Finish => self.finish(ctx),
            Wake::Park => {
                // Stuck on something no retry fixes: stop retrying; the order stays live and
                // indexed until an operator force-closes it.
                tracing::warn!(order_id = %self.id, "order needs an operator; automatic expiry stopped");
                ctx.stop();
            }
            Wake::At(at) => self.arm(ctx, at.timestamp_millis()),
            Wake::After(delay) => self.arm_after(ctx, delay),
            Wake::Backoff { retry } => {
                let delay = self.deps.settings.retry().delay(retry);
                self.arm_after(ctx, delay);
            }
        }
    }

    /// Runs one requested pass (cancel, force-close, refresh) and maps its outcome to a reply;
    /// a pass that made the order final stops the actor.
    fn pass<R: 'static>(
        &mut self,
        intent: Intent,
        operator: Operator,
        reply: fn(&PassOutcome) -> Result<R, OrderError>,
    ) -> AtomicResponse<Self, Result<R, OrderError>> {
        let deps = self.deps.clone();
        let id = self.id;
        let counters = self.counters;
        AtomicResponse::new(Box::pin(
            async move { pass::run(&deps, id, &intent, counters, &operator).await }
                .in_current_span()
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    let outcome = result?;
                    if let PassOutcome::Final(_) = outcome {
                        actor.finish(ctx);
                    }
                    reply(&outcome)
                }),
        ))
    }
}

/// A refused close as the engine reports it.
impl From<CloseRefused> for OrderError {
    fn from(refused: CloseRefused) -> Self {
        match refused {
            CloseRefused::NotPending(status) => OrderError::NotPending(status),
            CloseRefused::ProviderUnreachable => OrderError::ProviderUnreachable,
            CloseRefused::NotPossibleYet => OrderError::CloseNotPossibleYet,
        }
    }
}

/// Reply of a close request (cancel / force-close).
fn close_reply(outcome: &PassOutcome) -> Result<OrderStatus, OrderError> {
    expiry::close_reply(outcome).map_err(OrderError::from)
}

/// Reply of a refresh.
fn refresh_reply(outcome: &PassOutcome) -> Result<OrderStatus, OrderError> {
    expiry::refresh_reply(outcome).ok_or(OrderError::ProviderUnreachable)
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let fire_at = self.fire_at_ms;
        self.arm(ctx, fire_at);
        self.deps.metrics.armed_timers.inc();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
        self.deps.metrics.live_actors.dec();
        self.deps.metrics.armed_timers.dec();
    }
}

impl Handler<Expire> for OrderActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Expire, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        let id = self.id;
        // The deadline starts a trace of its own: the pass, its provider calls and decisions,
        // its transaction.
        let expiry_span = tracing::info_span!(
            parent: None,
            "expiry pass",
            order_id = %id,
            decisions = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        crate::trace::record_trace_id(&expiry_span);
        let counters = self.counters;
        let plain = counters == Counters::default() && !self.attempted;
        AtomicResponse::new(Box::pin(
            async move {
                // A timer that fires after this node lost the partition (it was paused, say)
                // does nothing: the new owner runs the order.
                if deps.cluster.as_ref().is_some_and(|cluster| !cluster.owns_order(id)) {
                    return Some(Err(OrderError::Fenced));
                }
                // A plain expiry (pending, due, no attempt) is closed with others in one
                // transaction; anything else runs the full pass below.
                if plain {
                    match deps.closer.close(id).await {
                        BatchOutcome::Closed(order) => {
                            deps.feed.changed(order.id, order.status);
                            deps.metrics.expiry_outcomes.with_label_values(&["closed"]).inc();
                            deps.metrics.settled(crate::metrics::Settled::Closed, None);
                            deps.metrics
                                .observe_close(order.expires_at, order.closed_at.unwrap_or_else(chrono::Utc::now));
                            return Some(Ok(PassOutcome::Final(order.status)));
                        }
                        BatchOutcome::Final(status) => return Some(Ok(PassOutcome::Final(status))),
                        BatchOutcome::FullPass => {}
                    }
                }
                // Closed at shutdown: no new pass starts; the restart runs it.
                let _permit = deps.passes.acquire().await.ok()?;
                // Boxed so that a pass waiting for its permit is a few bytes, not the size of
                // the whole pass: in a deadline storm many of them wait at once.
                Some(Box::pin(pass::run(&deps, id, &Intent::Expire, counters, &Operator::System)).await)
            }
            .instrument(expiry_span)
            .into_actor(self)
            .map(|result, actor, ctx| {
                if let Some(result) = result {
                    actor.after_expire(result, ctx);
                }
            }),
        ))
    }
}

// A message from a traced caller is handled inside an `order actor` span, a child of the
// caller's (the HTTP request's, say), so the trace continues through the actor.
crate::trace::traced_handlers!(
    OrderActor,
    |actor, parent, name| tracing::info_span!(
        target: crate::trace::TARGET,
        parent: parent,
        "order actor",
        message = name,
        order_id = %actor.id,
        decisions = tracing::field::Empty,
    ),
    [
        Refresh,
        Cancel,
        ForceClose,
        AcceptPayment,
        PaymentNotified,
        StartAttempt
    ]
);

impl Handler<Refresh> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, _msg: Refresh, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(Intent::Refresh, Operator::System, refresh_reply)
    }
}

impl Handler<Cancel> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, msg: Cancel, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(Intent::Cancel, msg.operator, close_reply)
    }
}

impl Handler<ForceClose> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, msg: ForceClose, _ctx: &mut Self::Context) -> Self::Result {
        self.pass(Intent::ForceClose { reason: msg.reason }, msg.operator, close_reply)
    }
}

impl Handler<AcceptPayment> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderStatus, OrderError>>;

    fn handle(&mut self, msg: AcceptPayment, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move {
                let order = crate::store::payment::accept_mismatched_payment(
                    &deps.db,
                    id,
                    msg.pay_no,
                    &msg.operator,
                    &msg.reason,
                )
                .await?;
                deps.feed.changed(order.id, order.status);
                pass::close_other_attempts(&deps, id, msg.pay_no, &msg.operator).await;
                Ok(order.status)
            }
            .in_current_span()
            .into_actor(self)
            .map(|result, actor, ctx| {
                if result.is_ok() {
                    actor.finish(ctx);
                }
                result
            }),
        ))
    }
}

impl Handler<PaymentNotified> for OrderActor {
    type Result = AtomicResponse<Self, Result<messages::NotifyOutcome, OrderError>>;

    fn handle(&mut self, msg: PaymentNotified, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        AtomicResponse::new(Box::pin(
            async move { notify::apply(&deps, msg.provider, &msg.notification).await }
                .in_current_span()
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
        let deps = self.deps.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move {
                let order = orders::Entity::find_by_id(id)
                    .one(&deps.db)
                    .await?
                    .ok_or(OrderError::NotFound)?;
                let route = msg.route;
                if route.account.is_none() && !deps.providers.has(route.provider) {
                    return Err(OrderError::ProviderUnavailable(route.provider));
                }
                attempts::start_attempt(
                    &deps.db,
                    &deps.ids,
                    &route,
                    &order,
                    &msg.operator,
                    || deps.providers.admit(&route),
                    |request, admission| deps.providers.create_qr(&route, request, admission),
                )
                .await
            }
            .in_current_span()
            .into_actor(self)
            .map(|result, actor, _ctx| {
                // An attempt may now exist (even one the provider refused): the expiry asks.
                if !matches!(
                    result,
                    Err(OrderError::Gateway(crate::gateway::GatewayError::Busy { .. }))
                ) {
                    actor.attempted = true;
                }
                result
            }),
        ))
    }
}

impl Handler<GetSnapshot> for OrderActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(Snapshot {
            deadline: self.deadline(),
            provider_failures: self.counters.provider_failures,
            userpaying_rechecks: self.counters.userpaying_rechecks,
        })
    }
}

impl Handler<Shutdown> for OrderActor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) {
        // The order stays pending and indexed: the next start re-arms it.
        ctx.stop();
    }
}
