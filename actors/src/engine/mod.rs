//! The engine: what the HTTP facade calls, and the only module that knows every other.
//!
//! It takes ids and domain values, never rows: it finds the order, checks that the operator may
//! touch it (a merchant only its own), routes every change of a live order through that order's
//! actor, and answers with the order as it is afterwards. Nothing below it imports it.
//!
//! # Layout
//! - this file: [`Engine`], the facade.
//! - `recovery`: re-arming every pending order at start-up, and reconciling the deadline
//!   index with the database.

mod cluster;
mod recovery;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use entities::{orders, payment_attempts, OrderId, Provider};
use sea_orm::{DatabaseConnection, EntityTrait};

pub use self::cluster::{ClusterParts, ClusterStartError, ClusterView, NodeView, OrderPlacement};
pub use self::recovery::RehydrateReport;
use crate::changes::{ChangeFeed, OrderChanged};
use crate::deadline::{to_ms, Deadline, DeadlineIndex};
use crate::domain::{NewOrder, OperatorReason};
use crate::error::OrderError;
use crate::gateway::{NotificationSubject, VerifiedNotification};
use crate::ids::Snowflake;
use crate::metrics::EngineMetrics;
use crate::order::expiry::ExpirySettings;
use crate::order::messages::{
    AcceptPayment, Cancel, ForceClose, NotifyOutcome, PaymentNotified, Refresh, Snapshot, StartAttempt,
};
use crate::order::{notify, OrderActor, OrderDeps, OrderRegistry};
use crate::outbox::Wake;
use crate::provider::ProviderClient;
use crate::provider::Route;
use crate::store::{create_order, Created, Operator};

/// What the engine is built from.
pub struct EngineParts {
    pub db: DatabaseConnection,
    pub ids: Snowflake,
    /// How orders reach the providers: the supervised provider actors
    /// ([`crate::provider::start_providers`]), or a fake in a test.
    pub providers: Arc<dyn ProviderClient>,
    pub index: Arc<dyn DeadlineIndex>,
    pub settings: ExpirySettings,
    pub refunds: crate::refund::RefundSettings,
    pub metrics: EngineMetrics,
    /// Present when this node is one of a cluster ([`Engine::start_cluster`] then runs it).
    pub cluster: Option<ClusterParts>,
}

/// The facade the HTTP layer (and the benchmark) drives. Owns the order registry, and through
/// it the order actors and their dependencies; cheap to clone, every clone drives the same
/// actors. Dropping the last clone after [`Engine::shutdown`] frees everything.
#[derive(Clone)]
pub struct Engine {
    registry: Arc<OrderRegistry>,
    cluster: Option<Arc<cluster::ClusterState>>,
}

impl Engine {
    /// Starts the order arbiters. Orders get their actors as they are created or re-armed.
    pub fn start(parts: EngineParts) -> Self {
        let arbiters = parts.settings.arbiters;
        let cluster = parts.cluster.map(|parts| Arc::new(cluster::ClusterState::new(parts)));
        let ownership = cluster.as_ref().map(|state| state.ownership.clone());
        let closer = crate::order::closer::ExpiryCloser::start(parts.db.clone(), ownership.clone());
        let deps = OrderDeps {
            db: parts.db,
            ids: Arc::new(parts.ids),
            providers: parts.providers,
            index: parts.index,
            feed: ChangeFeed::default(),
            passes: tokio::sync::Semaphore::new(parts.settings.max_concurrent_passes.max(1)),
            closer,
            settings: parts.settings,
            refunds: parts.refunds,
            metrics: Arc::new(parts.metrics),
            cluster: ownership,
        };
        Self {
            registry: OrderRegistry::new(Arc::new(deps), arbiters),
            cluster,
        }
    }

    fn deps(&self) -> &OrderDeps {
        self.registry.deps()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.deps().db
    }

    /// Connects the outbox relay, woken after every commit that writes an event. Once.
    /// Starts this node's follow-up worker (trades watched after their order stopped waiting
    /// for them), on its own thread.
    pub fn start_follow_up(&self) -> Addr<crate::poller::Poller> {
        crate::order::follow_up::FollowUpWorker::poller(self.registry.deps().clone()).start_on_own_arbiter()
    }

    /// Starts this node's refund worker (every pending refund stepped to a final status), on
    /// its own thread, woken whenever a refund is committed.
    pub fn start_refunds(&self) -> Addr<crate::poller::Poller> {
        let worker = crate::refund::RefundWorker::poller(self.registry.deps().clone()).start_on_own_arbiter();
        self.deps().feed.attach_refunds(worker.clone().recipient());
        worker
    }

    /// Creates a refund of an order's payment (a merchant only of its own orders), committed
    /// before the provider is asked; the refund worker takes it from there.
    ///
    /// # Errors
    /// As [`crate::store::refunds::create_refund`].
    pub async fn create_refund(
        &self,
        order_id: OrderId,
        scope: Option<&crate::domain::MerchantId>,
        request: &crate::domain::NewRefund,
        operator: &Operator,
    ) -> Result<crate::store::refunds::RefundCreated, OrderError> {
        let deps = self.deps();
        let created =
            crate::store::refunds::create_refund(&deps.db, &deps.ids, order_id, scope, request, operator).await?;
        if let crate::store::refunds::RefundCreated::New(_) = &created {
            deps.feed.wake_refunds();
        }
        Ok(created)
    }

    pub fn attach_relay(&self, relay: Recipient<Wake>, pending: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.deps().feed.attach_relay(relay, pending);
    }

    /// Wakes the outbox relay (after an admin redelivery, say).
    pub fn wake_relay(&self) {
        self.deps().feed.wake_relay();
    }

    /// Every order status change from now on (on this node).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<OrderChanged> {
        self.deps().feed.subscribe()
    }

    pub fn index_name(&self) -> &'static str {
        self.deps().index.name()
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.deps().metrics
    }

    pub fn live_actors(&self) -> usize {
        self.registry.len()
    }

    /// The providers this node can call.
    pub fn providers(&self) -> Vec<Provider> {
        crate::gateway::registry::PROVIDERS
            .iter()
            .map(|info| info.provider)
            .filter(|provider| self.has_provider(*provider))
            .collect()
    }

    /// A provider's trade bill of one day, through its provider actor.
    ///
    /// # Errors
    /// The provider's failure.
    pub async fn fetch_bill(
        &self,
        route: &Route,
        date: chrono::NaiveDate,
    ) -> Result<crate::gateway::bill::BillFetch, crate::gateway::GatewayError> {
        self.deps().providers.bill(route, date).await
    }

    /// Asks the provider for a trade's state (a signed, verified answer), through its provider
    /// actor. Reads nothing and changes nothing here.
    ///
    /// # Errors
    /// The provider's failure.
    pub async fn query_trade(
        &self,
        route: &Route,
        pay_no: entities::PayNo,
    ) -> Result<crate::gateway::TradeQuery, crate::gateway::GatewayError> {
        self.deps().providers.query(route, pay_no).await
    }

    /// Where a trade paywarden started lives (its attempt's account); `None` for a trade
    /// number no attempt has.
    ///
    /// # Errors
    /// The database.
    pub async fn trade_route(&self, pay_no: entities::PayNo) -> Result<Option<Route>, OrderError> {
        Ok(payment_attempts::Entity::find_by_id(pay_no)
            .one(&self.deps().db)
            .await?
            .map(|attempt| Route::of_attempt(&attempt)))
    }

    pub fn has_provider(&self, provider: Provider) -> bool {
        self.deps().providers.has(provider)
    }

    /// Creates the order (idempotently); a new one is indexed and gets its actor.
    ///
    /// # Errors
    /// As [`create_order`].
    pub async fn create_order(&self, order: &NewOrder) -> Result<Created, OrderError> {
        let deps = self.deps();
        let created = create_order(&deps.db, &deps.ids, order).await?;
        if let Created::New(model) = &created {
            deps.feed.created(model.id, model.status, to_ms(model.expires_at));
            self.track(model).await;
        }
        Ok(created)
    }

    /// Indexes a live order's deadline and makes sure its actor runs, here when this node
    /// owns its partition (in a cluster the owner arms it when it hears of the creation).
    async fn track(&self, order: &orders::Model) {
        let deadline = Deadline {
            order_id: order.id,
            at_ms: to_ms(order.expires_at),
        };
        if let Err(err) = self.deps().index.add(deadline).await {
            // The actor below still fires on time; reconcile restores the index entry.
            tracing::warn!(order_no = %order.order_no, error.message = %err, "failed to index a deadline");
        }
        if self.ownership().is_some_and(|o| !o.owns_order(order.id)) {
            return;
        }
        self.registry.get_or_spawn(order.id, deadline.at_ms, deadline.at_ms);
    }

    /// The order `order_id` as `operator` may see it: a merchant sees only its own orders.
    ///
    /// # Errors
    /// [`OrderError::NotFound`] for a missing order or another merchant's.
    pub async fn load(&self, order_id: OrderId, operator: &Operator) -> Result<orders::Model, OrderError> {
        let order = orders::Entity::find_by_id(order_id)
            .one(&self.deps().db)
            .await?
            .ok_or(OrderError::NotFound)?;
        match operator {
            Operator::Merchant(merchant) if order.merchant_id != merchant.as_str() => Err(OrderError::NotFound),
            Operator::Merchant(_) | Operator::Admin(_) | Operator::Provider(_) | Operator::Buyer | Operator::System => {
                Ok(order)
            }
        }
    }

    /// Sends a message to the actor of a live order, activating it from the row when it is not
    /// running. In a cluster, an order of a partition another node owns is
    /// [`OrderError::Elsewhere`] (the HTTP layer forwards the request to its owner). An actor that stopped between lookup and send (its order just became final) is
    /// looked up once more from a fresh read. `Ok(None)`: the order is final, nothing was sent.
    async fn ask<M, R>(
        &self,
        mut order: orders::Model,
        make: impl Fn() -> M,
    ) -> Result<(Option<R>, orders::Model), OrderError>
    where
        M: Message<Result = Result<R, OrderError>> + Send + 'static,
        R: Send + 'static,
        OrderActor: Handler<crate::trace::Traced<M>>,
    {
        for _ in 0..2 {
            if !order.status.is_live() {
                return Ok((None, order));
            }
            if let Some(ownership) = self.ownership() {
                let partition = ownership.partition_of(order.id);
                if !ownership.owns(partition) {
                    return Err(OrderError::Elsewhere(self.owner_now(partition).await));
                }
            }
            let deadline = to_ms(order.expires_at);
            let addr = self
                .registry
                .get_or_spawn(order.id, deadline, deadline)
                .ok_or(OrderError::Unavailable)?;
            match addr
                .send(crate::trace::Traced::new(make()))
                .timeout(self.deps().settings.actor_reply_timeout)
                .await
            {
                Ok(result) => return result.map(|reply| (Some(reply), order)),
                Err(MailboxError::Timeout) => return Err(OrderError::Unavailable),
                Err(MailboxError::Closed) => {
                    order = orders::Entity::find_by_id(order.id)
                        .one(&self.deps().db)
                        .await?
                        .ok_or(OrderError::NotFound)?;
                }
            }
        }
        Err(OrderError::Unavailable)
    }

    /// The order again, after a change.
    async fn reload(&self, order_id: OrderId) -> Result<orders::Model, OrderError> {
        orders::Entity::find_by_id(order_id)
            .one(&self.deps().db)
            .await?
            .ok_or(OrderError::NotFound)
    }

    /// A new payment attempt, through the order's actor, at the order's merchant's enabled
    /// account of `provider` (`account_id` chooses when it has several; the oldest otherwise),
    /// or the deployment's configured provider when the merchant has no account of it at all
    /// (one whose accounts are all disabled pays nowhere: never into the deployment's own).
    ///
    /// # Errors
    /// [`OrderError::NotFound`] (not `operator`'s order), [`OrderError::NotPending`] for a final
    /// order, [`OrderError::ProviderUnavailable`] (neither the merchant nor the deployment has
    /// the provider), `invalid_field` for an `account_id` that is not one of the merchant's
    /// enabled accounts of `provider`, else as the attempt creation.
    pub async fn start_attempt(
        &self,
        order_id: OrderId,
        provider: Provider,
        account_id: Option<&str>,
        operator: Operator,
    ) -> Result<payment_attempts::Model, OrderError> {
        let order = self.load(order_id, &operator).await?;
        use crate::store::accounts::{choose, Choice};
        let route = match choose(&self.deps().db, &order.merchant_id, provider, account_id).await? {
            Choice::Account(account) => Route::account(provider, &account),
            Choice::Deployment if self.has_provider(provider) => Route::configured(provider),
            Choice::Deployment | Choice::Nowhere => return Err(OrderError::ProviderUnavailable(provider)),
        };
        let make = || StartAttempt {
            route: route.clone(),
            operator: operator.clone(),
        };
        let (attempt, order) = self.ask(order, make).await?;
        attempt.ok_or(OrderError::NotPending(order.status))
    }

    /// Queries the provider now; compensates if it finds the order paid. Answers the order as
    /// it is afterwards (a final order is answered as it is, with no provider call).
    ///
    /// # Errors
    /// [`OrderError::NotFound`]; [`OrderError::ProviderUnreachable`] when the provider cannot be
    /// asked.
    pub async fn refresh(&self, order_id: OrderId, operator: &Operator) -> Result<orders::Model, OrderError> {
        let order = self.load(order_id, operator).await?;
        match self.ask(order, || Refresh).await? {
            (Some(_), _) => self.reload(order_id).await,
            (None, order) => Ok(order),
        }
    }

    /// Closes a pending order at the provider(s), then locally, before its deadline.
    ///
    /// # Errors
    /// [`OrderError::NotFound`]; [`OrderError::NotPending`] for a final order; provider errors
    /// leave it open.
    pub async fn cancel(&self, order_id: OrderId, operator: Operator) -> Result<orders::Model, OrderError> {
        let order = self.load(order_id, &operator).await?;
        let make = || Cancel {
            operator: operator.clone(),
        };
        self.close_with(order, make).await
    }

    /// An operator's close, through the actor.
    ///
    /// # Errors
    /// As [`Engine::cancel`].
    pub async fn force_close(
        &self,
        order_id: OrderId,
        operator: Operator,
        reason: OperatorReason,
    ) -> Result<orders::Model, OrderError> {
        let order = self.load(order_id, &operator).await?;
        let make = || ForceClose {
            operator: operator.clone(),
            reason: reason.clone(),
        };
        self.close_with(order, make).await
    }

    /// An operator accepts a payment of another amount (attempt `pay_no`, in
    /// `amount_mismatch`) as the order's payment, through the actor.
    ///
    /// # Errors
    /// [`OrderError::NotPending`] for a final order, a validation error when `pay_no` is not
    /// such a payment of this order, database errors.
    pub async fn accept_payment(
        &self,
        order_id: OrderId,
        operator: Operator,
        pay_no: entities::PayNo,
        reason: OperatorReason,
    ) -> Result<orders::Model, OrderError> {
        let order = self.load(order_id, &operator).await?;
        let make = || AcceptPayment {
            operator: operator.clone(),
            pay_no,
            reason: reason.clone(),
        };
        self.close_with(order, make).await
    }

    async fn close_with<M>(&self, order: orders::Model, make: impl Fn() -> M) -> Result<orders::Model, OrderError>
    where
        M: Message<Result = Result<entities::OrderStatus, OrderError>> + Send + 'static,
        OrderActor: Handler<crate::trace::Traced<M>>,
    {
        let order_id = order.id;
        match self.ask(order, make).await? {
            (Some(_), _) => self.reload(order_id).await,
            (None, order) => Err(OrderError::NotPending(order.status)),
        }
    }

    /// Applies a verified provider notification: through the order's actor when the order is
    /// live, directly when it is final (a payment after close is still recorded). One for a
    /// trade paywarden does not know (or of another provider) is stored for an operator, with
    /// the account it arrived for ([`NotifyOutcome::Unmatched`]): it may report money taken
    /// there.
    ///
    /// # Errors
    /// Database errors: nothing is acknowledged then, and the provider retries.
    pub async fn notify(&self, route: &Route, notification: VerifiedNotification) -> Result<NotifyOutcome, OrderError> {
        let provider = route.provider;
        match self.notify_known(provider, &notification).await {
            Err(OrderError::AttemptNotFound) => {
                let stored = crate::store::unmatched::record(&self.deps().db, route, &notification).await?;
                if stored == crate::store::unmatched::Stored::New {
                    self.deps()
                        .metrics
                        .notifications
                        .with_label_values(&["unmatched"])
                        .inc();
                    tracing::warn!(
                        %route,
                        out_trade_no = %notification.out_trade_no,
                        event_id = %notification.event_id,
                        "authentic notification for an unknown trade; stored for an operator"
                    );
                }
                Ok(NotifyOutcome::Unmatched)
            }
            other => other,
        }
    }

    async fn notify_known(
        &self,
        provider: Provider,
        notification: &VerifiedNotification,
    ) -> Result<NotifyOutcome, OrderError> {
        if let NotificationSubject::Refund { out_refund_no, state } = &notification.subject {
            // The order is final: the refund's own guarded transaction, no actor.
            return crate::refund::apply_notice(self.deps(), provider, notification, out_refund_no, state).await;
        }
        let pay_no = notification.pay_no().ok_or(OrderError::AttemptNotFound)?;
        let order_id = notify::owning_order(self.deps(), pay_no).await?;
        let order = self.reload(order_id).await?;
        if self.ownership().is_some_and(|o| !o.owns_order(order_id)) {
            // Another node runs the order: the same guarded transaction its actor would run,
            // here, so the provider is answered after the commit whichever node it reached.
            // The owner hears of a final status on the change bus and stops its actor.
            let outcome = notify::apply(self.deps(), provider, notification).await?;
            if matches!(outcome, NotifyOutcome::Paid | NotifyOutcome::PaidAfterClose) {
                if let Err(err) = self.deps().index.remove(order_id).await {
                    tracing::warn!(order_id = %order_id, error.message = %err, "failed to unindex a settled order; reconcile removes it");
                }
            }
            return Ok(outcome);
        }
        let make = || PaymentNotified {
            provider,
            notification: notification.clone(),
        };
        match self.ask(order, make).await? {
            (Some(outcome), _) => Ok(outcome),
            (None, _) => notify::apply(self.deps(), provider, notification).await,
        }
    }

    /// The running actor's view, if one runs.
    pub async fn snapshot(&self, order_id: OrderId) -> Option<Snapshot> {
        let addr = self.registry.get(order_id)?;
        addr.send(crate::order::messages::GetSnapshot).await.ok()
    }

    /// Stops every order actor after its pass in flight (for at most `grace`) and the order
    /// threads. Pending orders stay indexed; the next start re-arms them. Returns the actors
    /// that did not stop in time.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let live = self.registry.len();
        let late = self.registry.shutdown(grace).await;
        tracing::info!(live, late, "order actors stopped");
        self.leave_cluster().await;
        late
    }
}
