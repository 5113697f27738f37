//! The engine: what the HTTP facade calls. It owns the provider actors, the order registry,
//! the deadline index and the expiry settings, and routes every change of a live order through
//! that order's actor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use entities::{orders, payment_attempts, OrderId, OrderStatus, PayNo, Provider};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde::Serialize;

use crate::deadline::{to_ms, Deadline, DeadlineError, DeadlineIndex, ReconcileReport};
use crate::domain::NewOrder;
use crate::error::OrderError;
use crate::gateway::{CloseOutcome, GatewayError, Gateways, QrCreated, QrRequest, TradeQuery, VerifiedNotification};
use crate::ids::Snowflake;
use crate::order::messages::{Cancel, ForceClose, NotifyOutcome, PaymentNotified, Refresh, StartAttempt};
use crate::order::{notify, now_ms, OrderActor};
use crate::orders::transitions::{self, Applied, OrderUpdate, Receipt};
use crate::orders::{create_order, Created, Operator};
use crate::outbox::Wake;
use crate::provider::{CloseTrade, CreateQr, ProviderActor, ProviderCallSettings, QueryTrade};
use crate::registry::OrderRegistry;
pub use crate::order::expiry::ExpirySettings;

/// Engine metrics, registered in the service's Prometheus registry.
pub struct EngineMetrics {
    pub expiry_outcomes: IntCounterVec,
    pub notifications: IntCounterVec,
    pub timer_lateness: Histogram,
    pub live_actors: IntGauge,
    /// Every timer's lateness in µs, when a benchmark asks for exact percentiles.
    pub lateness_samples: Option<Arc<std::sync::Mutex<Vec<i64>>>>,
}

impl EngineMetrics {
    /// # Errors
    /// A name clash in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            expiry_outcomes: IntCounterVec::new(
                Opts::new(
                    "expiry_outcomes_total",
                    "Outcomes of expiry passes: closed, compensated, retry, stuck",
                ),
                &["outcome"],
            )?,
            notifications: IntCounterVec::new(
                Opts::new(
                    "provider_notifications_total",
                    "Provider notifications applied, by outcome",
                ),
                &["outcome"],
            )?,
            timer_lateness: Histogram::with_opts(
                HistogramOpts::new("expiry_timer_lateness_seconds", "How late order timers fire")
                    .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )?,
            live_actors: IntGauge::new("order_actors_live", "Order actors running")?,
            lateness_samples: None,
        };
        registry.register(Box::new(metrics.expiry_outcomes.clone()))?;
        registry.register(Box::new(metrics.notifications.clone()))?;
        registry.register(Box::new(metrics.timer_lateness.clone()))?;
        registry.register(Box::new(metrics.live_actors.clone()))?;
        Ok(metrics)
    }

    pub(crate) fn observe_timer_lateness(&self, late_us: i64) {
        let late = Duration::from_micros(u64::try_from(late_us).unwrap_or(0));
        self.timer_lateness.observe(late.as_secs_f64());
        if let Some(samples) = &self.lateness_samples {
            samples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(late_us);
        }
    }
}

pub(crate) struct EngineCore {
    pub(crate) db: DatabaseConnection,
    pub(crate) ids: Snowflake,
    providers: HashMap<Provider, Addr<ProviderActor>>,
    pub(crate) index: Arc<dyn DeadlineIndex>,
    pub(crate) registry: OrderRegistry,
    pub(crate) settings: ExpirySettings,
    pub(crate) metrics: EngineMetrics,
    pub(crate) passes: tokio::sync::Semaphore,
    /// The outbox relay, woken after each commit that wrote an event.
    relay: std::sync::OnceLock<Recipient<Wake>>,
    /// Status changes of orders, for live status streams.
    changes: tokio::sync::broadcast::Sender<OrderChanged>,
}

/// An order's status changed (sent after the commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderChanged {
    pub order_id: OrderId,
    pub status: OrderStatus,
}

impl EngineCore {
    /// Wakes the outbox relay. A lost wake-up is harmless: the relay also sweeps.
    pub(crate) fn wake_relay(&self) {
        if let Some(relay) = self.relay.get() {
            relay.do_send(Wake);
        }
    }

    /// After a commit that changed `order_id` to `status` (and wrote an event).
    pub(crate) fn changed(&self, order_id: OrderId, status: OrderStatus) {
        self.wake_relay();
        // No receiver is fine: nobody is watching this order.
        let _ = self.changes.send(OrderChanged { order_id, status });
    }

    /// [`transitions::apply`], announcing a committed change.
    pub(crate) async fn apply(
        &self,
        order_id: OrderId,
        update: OrderUpdate,
        operator: &Operator,
        receipt: Option<&Receipt>,
    ) -> Result<Applied, OrderError> {
        let applied = transitions::apply(&self.db, order_id, update, operator, receipt).await?;
        if let Applied::Done(order) = &applied {
            self.changed(order.id, order.status);
        }
        Ok(applied)
    }

    /// [`transitions::record_anomaly`], waking the relay for its event.
    pub(crate) async fn record_anomaly(
        &self,
        order_id: OrderId,
        pay_no: PayNo,
        detail: String,
        trade: Option<&crate::gateway::PaidTrade>,
        operator: &Operator,
        receipt: Option<&Receipt>,
    ) -> Result<Applied, OrderError> {
        let applied = transitions::record_anomaly(&self.db, order_id, pay_no, detail, trade, operator, receipt).await?;
        if matches!(applied, Applied::Done(_)) {
            self.wake_relay();
        }
        Ok(applied)
    }

    pub(crate) fn has_provider(&self, provider: Provider) -> bool {
        self.providers.contains_key(&provider)
    }

    fn provider(&self, provider: Provider) -> Result<&Addr<ProviderActor>, GatewayError> {
        self.providers
            .get(&provider)
            .ok_or(GatewayError::NotConfigured(provider))
    }

    pub(crate) async fn query(&self, provider: Provider, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        let addr = self.provider(provider)?;
        flatten(
            addr.send(QueryTrade(pay_no))
                .timeout(self.settings.provider_reply_timeout)
                .await,
        )
    }

    pub(crate) async fn close(&self, provider: Provider, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        let addr = self.provider(provider)?;
        flatten(
            addr.send(CloseTrade(pay_no))
                .timeout(self.settings.provider_reply_timeout)
                .await,
        )
    }

    pub(crate) async fn create_qr(&self, provider: Provider, request: QrRequest) -> Result<QrCreated, GatewayError> {
        let addr = self.provider(provider)?;
        flatten(
            addr.send(CreateQr(request))
                .timeout(self.settings.provider_reply_timeout)
                .await,
        )
    }
}

/// A provider actor that is restarting or too slow counts as a retryable provider failure.
fn flatten<T>(reply: Result<Result<T, GatewayError>, MailboxError>) -> Result<T, GatewayError> {
    match reply {
        Ok(result) => result,
        Err(MailboxError::Timeout) => Err(GatewayError::Timeout),
        Err(MailboxError::Closed) => Err(GatewayError::Crashed),
    }
}

/// What a start-up rehydration did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RehydrateReport {
    pub armed: u64,
    pub overdue: u64,
    /// The index was missing entries and was rebuilt first.
    pub index_rebuilt: bool,
}

#[derive(Clone)]
pub struct Engine {
    core: Arc<EngineCore>,
    /// Kept so the order arbiters live as long as the engine.
    _arbiters: Arc<Vec<Arbiter>>,
}

impl Engine {
    /// Starts the provider actors (supervised) and the order arbiters.
    pub fn start(
        db: DatabaseConnection,
        ids: Snowflake,
        gateways: &Gateways,
        calls: &HashMap<Provider, ProviderCallSettings>,
        index: Arc<dyn DeadlineIndex>,
        settings: ExpirySettings,
        metrics: EngineMetrics,
    ) -> Self {
        let mut providers = HashMap::new();
        for provider in gateways.providers() {
            if let (Some(gateway), Some(call_settings)) = (gateways.get(provider), calls.get(&provider)) {
                let addr = ProviderActor::new(gateway.clone(), call_settings.clone()).start_supervised();
                providers.insert(provider, addr);
            }
        }
        let arbiters: Vec<Arbiter> = (0..settings.arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        Self {
            core: Arc::new(EngineCore {
                db,
                ids,
                providers,
                index,
                registry: OrderRegistry::new(handles),
                passes: tokio::sync::Semaphore::new(settings.max_concurrent_passes.max(1)),
                relay: std::sync::OnceLock::new(),
                changes: tokio::sync::broadcast::channel(1024).0,
                settings,
                metrics,
            }),
            _arbiters: Arc::new(arbiters),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.core.db
    }

    /// Connects the outbox relay, woken after every commit that writes an event. Once.
    pub fn attach_relay(&self, relay: Recipient<Wake>) {
        let _ = self.core.relay.set(relay);
    }

    /// Wakes the outbox relay (after an admin redelivery, say).
    pub fn wake_relay(&self) {
        self.core.wake_relay();
    }

    /// Every order status change from now on (on this node).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<OrderChanged> {
        self.core.changes.subscribe()
    }

    pub fn index_name(&self) -> &'static str {
        self.core.index.name()
    }

    pub fn live_actors(&self) -> usize {
        self.core.registry.len()
    }

    pub fn has_provider(&self, provider: Provider) -> bool {
        self.core.has_provider(provider)
    }

    /// Creates the order (idempotently); a new one is indexed and gets its actor.
    ///
    /// # Errors
    /// As [`create_order`].
    pub async fn create_order(&self, order: &NewOrder) -> Result<Created, OrderError> {
        let created = create_order(&self.core.db, &self.core.ids, order).await?;
        if let Created::New(model) = &created {
            self.core.changed(model.id, model.status);
            self.track(model).await;
        }
        Ok(created)
    }

    /// Indexes a live order's deadline and makes sure its actor runs.
    async fn track(&self, order: &orders::Model) {
        let deadline = Deadline {
            order_id: order.id,
            at_ms: to_ms(order.expires_at),
        };
        if let Err(err) = self.core.index.add(deadline).await {
            // The actor below still fires on time; reconcile restores the index entry.
            tracing::warn!(order_no = %order.order_no, error.message = %err, "failed to index a deadline");
        }
        self.core
            .registry
            .get_or_spawn(&self.core, order.id, deadline.at_ms, deadline.at_ms);
    }

    /// The actor of a live order, activated from the row if it is not running.
    fn actor_for(&self, order: &orders::Model) -> Option<Addr<OrderActor>> {
        if !order.status.is_live() {
            return None;
        }
        let deadline = to_ms(order.expires_at);
        Some(
            self.core
                .registry
                .get_or_spawn(&self.core, order.id, deadline, deadline),
        )
    }

    /// Sends a message to the order's actor. An actor that stopped between lookup and send
    /// (its order just became final) is looked up once more from a fresh read.
    async fn ask<M, R>(&self, order: &orders::Model, make: impl Fn() -> M) -> Result<Option<R>, OrderError>
    where
        M: Message<Result = Result<R, OrderError>> + Send + 'static,
        R: Send + 'static,
        OrderActor: Handler<M>,
    {
        let mut current = order.clone();
        for _ in 0..2 {
            let Some(addr) = self.actor_for(&current) else {
                return Ok(None);
            };
            match addr.send(make()).timeout(self.core.settings.actor_reply_timeout).await {
                Ok(result) => return result.map(Some),
                Err(MailboxError::Timeout) => return Err(OrderError::Unavailable),
                Err(MailboxError::Closed) => {
                    current = orders::Entity::find_by_id(order.id)
                        .one(&self.core.db)
                        .await?
                        .ok_or(OrderError::NotFound)?;
                }
            }
        }
        Err(OrderError::Unavailable)
    }

    /// A new payment attempt, through the order's actor.
    ///
    /// # Errors
    /// [`OrderError::NotPending`] for a final order, else as the attempt creation.
    pub async fn start_attempt(
        &self,
        order: &orders::Model,
        provider: Provider,
        operator: Operator,
    ) -> Result<payment_attempts::Model, OrderError> {
        if !self.has_provider(provider) {
            return Err(OrderError::ProviderUnavailable(provider));
        }
        let make = || StartAttempt {
            provider,
            operator: operator.clone(),
        };
        self.ask(order, make).await?.ok_or(OrderError::NotPending(order.status))
    }

    /// Queries the provider now; compensates if it finds the order paid.
    ///
    /// # Errors
    /// [`OrderError::ProviderUnreachable`] when the provider cannot be asked.
    pub async fn refresh(&self, order: &orders::Model) -> Result<OrderStatus, OrderError> {
        Ok(self.ask(order, || Refresh).await?.unwrap_or(order.status))
    }

    /// Closes a pending order at the provider(s), then locally, before its deadline.
    ///
    /// # Errors
    /// [`OrderError::NotPending`] for a final order; provider errors leave it open.
    pub async fn cancel(&self, order: &orders::Model, operator: Operator) -> Result<OrderStatus, OrderError> {
        let make = || Cancel {
            operator: operator.clone(),
        };
        self.ask(order, make).await?.ok_or(OrderError::NotPending(order.status))
    }

    /// An operator's close, through the actor.
    ///
    /// # Errors
    /// As [`Engine::cancel`].
    pub async fn force_close(
        &self,
        order: &orders::Model,
        operator: Operator,
        reason: String,
    ) -> Result<OrderStatus, OrderError> {
        let make = || ForceClose {
            operator: operator.clone(),
            reason: reason.clone(),
        };
        self.ask(order, make).await?.ok_or(OrderError::NotPending(order.status))
    }

    /// Applies a verified provider notification: through the order's actor when the order is
    /// live, directly when it is final (a payment after close is still recorded).
    ///
    /// # Errors
    /// [`OrderError::AttemptNotFound`] for an unknown trade; database errors (the provider
    /// should retry then).
    pub async fn notify(
        &self,
        provider: Provider,
        notification: VerifiedNotification,
    ) -> Result<NotifyOutcome, OrderError> {
        let order_id = notify::owning_order(&self.core, notification.pay_no).await?;
        let order = orders::Entity::find_by_id(order_id)
            .one(&self.core.db)
            .await?
            .ok_or(OrderError::NotFound)?;
        let make = || PaymentNotified {
            provider,
            notification: notification.clone(),
        };
        match self.ask(&order, make).await? {
            Some(outcome) => Ok(outcome),
            None => notify::apply(&self.core, provider, &notification).await,
        }
    }

    /// Re-arms an actor for every pending deadline (start-up). The index is rebuilt first if it
    /// is missing entries. Overdue orders are spread at `overdue_per_second`.
    ///
    /// # Errors
    /// The index or the database could not be read.
    pub async fn rehydrate(&self) -> Result<RehydrateReport, DeadlineError> {
        let live = count_live(&self.core.db).await?;
        let indexed = self.core.index.count().await?;
        let mut report = RehydrateReport::default();
        if indexed != live {
            tracing::warn!(
                indexed,
                live,
                index = self.core.index.name(),
                "deadline index out of step with the database; rebuilding"
            );
            let rebuilt = self.core.index.reconcile().await?;
            tracing::info!(
                added = rebuilt.added,
                removed = rebuilt.removed,
                "deadline index rebuilt"
            );
            report.index_rebuilt = true;
        }
        let deadlines = self.core.index.all().await?;
        let (armed, overdue) = self.arm_all(&deadlines);
        report.armed = armed;
        report.overdue = overdue;
        Ok(report)
    }

    /// Rebuilds the deadline index from the database and makes sure every live order has an
    /// armed actor (`POST /admin/deadlines/reconcile`).
    ///
    /// # Errors
    /// The index or the database could not be read.
    pub async fn reconcile(&self) -> Result<ReconcileReport, DeadlineError> {
        let report = self.core.index.reconcile().await?;
        let deadlines = self.core.index.all().await?;
        self.arm_all(&deadlines);
        tracing::info!(
            live = report.live_orders,
            added = report.added,
            removed = report.removed,
            "deadline index reconciled"
        );
        Ok(report)
    }

    /// Returns (armed, overdue).
    fn arm_all(&self, deadlines: &[Deadline]) -> (u64, u64) {
        let now = now_ms();
        let rate = i64::from(self.core.settings.overdue_per_second.max(1));
        let total = deadlines.len();
        let progress_every = (total / 10).max(10_000);
        let (mut armed, mut overdue) = (0u64, 0u64);
        for (n, deadline) in deadlines.iter().enumerate() {
            if self.core.registry.get(deadline.order_id).is_some() {
                continue;
            }
            let fire_at = if deadline.at_ms <= now {
                // The k-th overdue order fires k/rate seconds from now.
                let offset_ms = i64::try_from(overdue).unwrap_or(i64::MAX).saturating_mul(1000) / rate;
                overdue += 1;
                now.saturating_add(offset_ms)
            } else {
                deadline.at_ms
            };
            self.core
                .registry
                .get_or_spawn(&self.core, deadline.order_id, deadline.at_ms, fire_at);
            armed += 1;
            if (n + 1) % progress_every == 0 {
                tracing::info!(done = n + 1, total, "re-arming order timers");
            }
        }
        tracing::info!(armed, overdue, total, "order timers armed");
        (armed, overdue)
    }

    /// The running actor's view, if one runs.
    pub async fn snapshot(&self, order_id: OrderId) -> Option<crate::order::messages::Snapshot> {
        let addr = self.core.registry.get(order_id)?;
        addr.send(crate::order::messages::GetSnapshot).await.ok()
    }
}

async fn count_live(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    orders::Entity::find()
        .filter(orders::Column::Status.is_in([OrderStatus::Pending, OrderStatus::Stuck]))
        .count(db)
        .await
}
