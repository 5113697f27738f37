//! The provider actor: one per configured provider, under an actix `Supervisor`.
//!
//! It owns the *manners* of talking to a provider, so order actors never need to: a timeout on
//! every call, a bound on calls in flight and a per-provider rate limit (`governor`), shared
//! by two lanes ([`limits`]: payment attempts admitted now or refused at once, background calls
//! queued behind their own share), quick retries of transient failures with backoff and
//! jitter, and a circuit breaker that fails fast while the provider is down.
//!
//! A call that panics inside the gateway is caught: its caller gets [`GatewayError::Crashed`]
//! and the actor stops, which makes the supervisor restart it with a fresh breaker. Requests in
//! flight at that moment are cancelled; their senders see a `MailboxError` and retry on their own
//! schedule, so nothing is lost.

pub mod accounts;
pub mod breaker;
pub mod calls;
pub mod client;
pub mod limits;
pub mod messages;
pub mod route;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::FutureExt;
use tracing::Instrument;

pub use breaker::{BreakerState, CircuitBreaker};
pub use calls::ProviderCallSettings;
pub use client::{ProviderClient, ProviderMailboxes, Providers};
pub use limits::{Admission, BudgetShare, CallLimits};
pub use messages::{CloseTrade, CreateQr, FetchBill, QueryRefund, QueryTrade, RefundTrade};
pub use route::Route;

use crate::gateway::{CloseOutcome, Gateway, GatewayError, QrCreated, RefundAnswer, TradeQuery};

/// One per configured provider, under an actix `Supervisor`, on its own thread. Owns the
/// provider's [`Gateway`] and the protections around every call to it: rate limit, concurrency
/// bound, timeout, retries with backoff, circuit breaker. Order actors reach it only through a
/// [`ProviderClient`]; a panic in a gateway call stops it and the supervisor restarts it.
pub struct ProviderActor {
    gateway: Arc<dyn Gateway>,
    settings: ProviderCallSettings,
    /// Shared with the [`ProviderClient`], which admits payment attempts before they are
    /// written.
    limits: Arc<CallLimits>,
    /// Shared with the calls in flight, which record their outcome in it. A std mutex: every
    /// critical section is a few field updates.
    breaker: Arc<Mutex<CircuitBreaker>>,
    /// How many times the supervisor restarted this actor (read by tests and metrics).
    restarts: Arc<AtomicU32>,
    metrics: Option<Arc<crate::metrics::ProviderMetrics>>,
    /// Whether this actor's breaker is the one `provider_breaker_open{provider}` shows (the
    /// configured provider's; a merchant account's breaker is its own and shows nowhere).
    breaker_gauge: bool,
}

impl ProviderActor {
    pub fn new(gateway: Arc<dyn Gateway>, settings: ProviderCallSettings) -> Self {
        Self {
            gateway,
            limits: Arc::new(CallLimits::new(&settings)),
            breaker: Arc::new(Mutex::new(CircuitBreaker::new(
                settings.breaker_failure_threshold,
                settings.breaker_open_for,
            ))),
            settings,
            restarts: Arc::new(AtomicU32::new(0)),
            metrics: None,
            breaker_gauge: false,
        }
    }

    /// Records every call in `metrics` (counts by outcome, latency, the breaker's state).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::ProviderMetrics>) -> Self {
        metrics
            .breaker_open
            .with_label_values(&[self.gateway.provider().as_str()])
            .set(0);
        self.metrics = Some(metrics);
        self.breaker_gauge = true;
        self
    }

    /// Counts every call in `metrics` (by outcome, latency) under its provider, leaving the
    /// provider's breaker gauge to the configured provider's actor: a merchant account's actor.
    #[must_use]
    pub fn with_call_metrics(mut self, metrics: Arc<crate::metrics::ProviderMetrics>) -> Self {
        self.metrics = Some(metrics);
        self.breaker_gauge = false;
        self
    }

    /// Starts the actor under a supervisor on its own arbiter (thread).
    pub fn start_supervised(self) -> Addr<Self> {
        let arbiter = Arbiter::new();
        self.start_supervised_in(&arbiter.handle())
    }

    /// Starts the actor under a supervisor on `arbiter`, which other actors share.
    pub fn start_supervised_in(self, arbiter: &actix::ArbiterHandle) -> Addr<Self> {
        Supervisor::start_in_arbiter(arbiter, move |_| self)
    }

    pub fn restart_counter(&self) -> Arc<AtomicU32> {
        self.restarts.clone()
    }

    pub fn limits(&self) -> Arc<CallLimits> {
        self.limits.clone()
    }

    /// Runs `op` with the timeout, breaker and retries, within the call budget: `admitted`
    /// (a payment attempt, admitted by the client before anything was written) or a turn in
    /// the background lane, waited for here. Nothing is sent once `deadline` (when the caller
    /// stops waiting) has passed: the caller answers its own timeout, and the call would act on
    /// an order that may have moved to another node meanwhile.
    fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        admitted: Option<Admission>,
        deadline: Option<tokio::time::Instant>,
        op: F,
    ) -> ResponseActFuture<Self, Result<T, GatewayError>>
    where
        T: 'static,
        F: Fn(Arc<dyn Gateway>) -> Fut + 'static,
        Fut: Future<Output = Result<T, GatewayError>> + 'static,
    {
        let gateway = self.gateway.clone();
        let limits = self.limits.clone();
        let breaker = self.breaker.clone();
        let settings = self.settings.clone();
        // A child of the caller's span (the order actor's, the refund worker's): provider,
        // operation, outcome and latency, never a request or an answer.
        let span = tracing::info_span!(
            target: crate::trace::TARGET,
            "provider call",
            provider = self.gateway.provider().as_str(),
            operation,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let record = CallRecord {
            metrics: self.metrics.clone(),
            breaker_gauge: self.breaker_gauge,
            provider: self.gateway.provider().as_str(),
            operation,
            span: span.clone(),
        };
        let work = async move {
            if !lock(&breaker).allow(Instant::now()) {
                record.outcome("circuit_open", None);
                return Err(GatewayError::CircuitOpen);
            }
            let _admission = match admitted {
                Some(admission) => admission,
                None => until(deadline, limits.wait()).await??,
            };
            let mut attempt = 0;
            loop {
                if attempt > 0 {
                    if !lock(&breaker).allow(Instant::now()) {
                        record.outcome("circuit_open", None);
                        return Err(GatewayError::CircuitOpen);
                    }
                    until(deadline, limits.retry_ready()).await?;
                }
                if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                    tracing::debug!("provider call not sent: its caller stopped waiting");
                    return Err(GatewayError::Timeout);
                }
                let sent = Instant::now();
                let outcome = AssertUnwindSafe(tokio::time::timeout(settings.timeout, op(gateway.clone())))
                    .catch_unwind()
                    .await;
                let result = match outcome {
                    Err(_panic) => {
                        record.outcome("crashed", Some(sent));
                        record.breaker(&lock(&breaker).failed(Instant::now()));
                        return Err(GatewayError::Crashed);
                    }
                    Ok(Err(_elapsed)) => Err(GatewayError::Timeout),
                    Ok(Ok(result)) => result,
                };
                match &result {
                    Err(err) if err.is_retryable() => {
                        let outcome = if matches!(err, GatewayError::Timeout) {
                            "timeout"
                        } else {
                            "failed"
                        };
                        record.outcome(outcome, Some(sent));
                        record.breaker(&lock(&breaker).failed(Instant::now()));
                        if attempt < settings.retries {
                            tokio::time::sleep(settings.retry().delay(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                    }
                    // A business answer (even a refusal) means the provider is up.
                    Ok(_) | Err(_) => {
                        record.outcome(if result.is_ok() { "ok" } else { "refused" }, Some(sent));
                        record.breaker(&lock(&breaker).succeeded());
                    }
                }
                return result;
            }
        };
        Box::pin(work.instrument(span).into_actor(self).map(|result, actor, ctx| {
            if matches!(result, Err(GatewayError::Crashed)) {
                tracing::error!(provider = %actor.gateway.provider(), "provider call panicked; restarting the provider actor");
                ctx.stop();
            }
            result
        }))
    }
}

/// What one call records in the provider metrics, when the actor has them.
struct CallRecord {
    metrics: Option<Arc<crate::metrics::ProviderMetrics>>,
    breaker_gauge: bool,
    provider: &'static str,
    operation: &'static str,
    /// The call's span: its last outcome and latency.
    span: tracing::Span,
}

impl CallRecord {
    /// Counts an outcome; with `sent`, the latency of the call sent then.
    fn outcome(&self, outcome: &str, sent: Option<Instant>) {
        self.span.record("outcome", outcome);
        if let Some(sent) = sent {
            self.span.record(
                "latency_ms",
                u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
        }
        let Some(metrics) = &self.metrics else { return };
        metrics
            .calls
            .with_label_values(&[self.provider, self.operation, outcome])
            .inc();
        if let Some(sent) = sent {
            metrics
                .duration
                .with_label_values(&[self.provider, self.operation])
                .observe(sent.elapsed().as_secs_f64());
        }
    }

    fn breaker(&self, state: &BreakerState) {
        if let Some(metrics) = self.metrics.as_ref().filter(|_| self.breaker_gauge) {
            let open = i64::from(!matches!(state, BreakerState::Closed));
            metrics.breaker_open.with_label_values(&[self.provider]).set(open);
        }
    }
}

/// `future`, or [`GatewayError::Timeout`] once `deadline` passed (the caller stopped waiting).
async fn until<T>(deadline: Option<tokio::time::Instant>, future: impl Future<Output = T>) -> Result<T, GatewayError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future)
            .await
            .map_err(|_elapsed| GatewayError::Timeout),
        None => Ok(future.await),
    }
}

/// Starts a supervised provider actor for every gateway that has call settings, and returns
/// the client order code uses to reach them.
pub fn start_providers(
    gateways: &crate::gateway::Gateways,
    calls: &std::collections::HashMap<entities::Provider, ProviderCallSettings>,
    reply_timeout: Duration,
    metrics: &Arc<crate::metrics::ProviderMetrics>,
) -> Providers {
    let mut mailboxes = std::collections::HashMap::new();
    for provider in gateways.providers() {
        if let (Some(gateway), Some(settings)) = (gateways.get(provider), calls.get(&provider)) {
            let actor = ProviderActor::new(gateway.clone(), settings.clone()).with_metrics(metrics.clone());
            let limits = actor.limits();
            let addr = actor.start_supervised();
            mailboxes.insert(provider, ProviderMailboxes::of(&addr, limits));
        }
    }
    Providers::new(mailboxes, reply_timeout)
}

fn lock(breaker: &Mutex<CircuitBreaker>) -> std::sync::MutexGuard<'_, CircuitBreaker> {
    breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(provider = %self.gateway.provider(), "provider actor started");
    }
}

impl Supervised for ProviderActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
        lock(&self.breaker).reset();
        if let Some(metrics) = self.metrics.as_ref().filter(|_| self.breaker_gauge) {
            metrics
                .breaker_open
                .with_label_values(&[self.gateway.provider().as_str()])
                .set(0);
        }
        tracing::warn!(provider = %self.gateway.provider(), "provider actor restarting");
    }
}

// A call from a traced caller is handled inside the caller's span, so the call's own span
// is its child.
crate::trace::traced_handlers!(
    ProviderActor,
    |_actor, parent, _name| parent.clone(),
    [CreateQr, QueryTrade, CloseTrade, RefundTrade, QueryRefund, FetchBill]
);

impl Handler<CreateQr> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<QrCreated, GatewayError>>;

    fn handle(&mut self, msg: CreateQr, _ctx: &mut Self::Context) -> Self::Result {
        let CreateQr(request, admission, deadline) = msg;
        self.call("create_qr", Some(admission), deadline, move |gateway| {
            let request = request.clone();
            async move { gateway.create_qr(&request).await }
        })
    }
}

impl Handler<QueryTrade> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<TradeQuery, GatewayError>>;

    fn handle(&mut self, msg: QueryTrade, _ctx: &mut Self::Context) -> Self::Result {
        let QueryTrade(pay_no, deadline) = msg;
        self.call("query", None, deadline, move |gateway| async move {
            gateway.query(pay_no).await
        })
    }
}

impl Handler<CloseTrade> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<CloseOutcome, GatewayError>>;

    fn handle(&mut self, msg: CloseTrade, _ctx: &mut Self::Context) -> Self::Result {
        let CloseTrade(pay_no, deadline) = msg;
        self.call("close", None, deadline, move |gateway| async move {
            gateway.close(pay_no).await
        })
    }
}

impl Handler<RefundTrade> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<RefundAnswer, GatewayError>>;

    fn handle(&mut self, msg: RefundTrade, _ctx: &mut Self::Context) -> Self::Result {
        let RefundTrade(request, deadline) = msg;
        self.call("refund", None, deadline, move |gateway| {
            let request = request.clone();
            async move { gateway.refund(&request).await }
        })
    }
}

impl Handler<QueryRefund> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<RefundAnswer, GatewayError>>;

    fn handle(&mut self, msg: QueryRefund, _ctx: &mut Self::Context) -> Self::Result {
        let QueryRefund(request, deadline) = msg;
        self.call("query_refund", None, deadline, move |gateway| {
            let request = request.clone();
            async move { gateway.query_refund(&request).await }
        })
    }
}

pub use crate::gateway::bill::BILL_TIMEOUT;

impl Handler<FetchBill> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<crate::gateway::bill::BillFetch, GatewayError>>;

    /// In the background lane, under [`BILL_TIMEOUT`]; no quick
    /// retries (the reconciliation worker asks again later) and outside the circuit breaker: a
    /// slow bill says nothing about the payment and refund calls.
    fn handle(&mut self, msg: FetchBill, _ctx: &mut Self::Context) -> Self::Result {
        let FetchBill(date, deadline) = msg;
        let gateway = self.gateway.clone();
        let limits = self.limits.clone();
        let work = async move {
            let _admission = until(deadline, limits.wait()).await??;
            match AssertUnwindSafe(tokio::time::timeout(BILL_TIMEOUT, gateway.bill(date)))
                .catch_unwind()
                .await
            {
                Err(_panic) => Err(GatewayError::Crashed),
                Ok(Err(_elapsed)) => Err(GatewayError::Timeout),
                Ok(Ok(result)) => result,
            }
        };
        Box::pin(work.into_actor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{NotificationError, NotificationRequest, QrRequest, TradeState, VerifiedNotification};
    use async_trait::async_trait;
    use entities::{PayNo, Provider};
    use std::sync::atomic::AtomicUsize;

    /// Panics on the first query, fails the next `fail` ones, then answers NOTPAY.
    struct FlakyGateway {
        calls: AtomicUsize,
        panic_first: bool,
        fail: usize,
    }

    #[async_trait]
    impl Gateway for FlakyGateway {
        fn provider(&self) -> Provider {
            Provider::Sandbox
        }
        async fn create_qr(&self, _req: &QrRequest) -> Result<QrCreated, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn query(&self, _pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.panic_first && call == 0 {
                panic!("gateway bug");
            }
            if call < self.fail + usize::from(self.panic_first) {
                return Err(GatewayError::Transport("connection reset".into()));
            }
            Ok(TradeQuery {
                state: TradeState::NotPaid,
                raw: serde_json::Value::Null,
            })
        }
        async fn close(&self, _pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
            Ok(CloseOutcome::Closed)
        }
        async fn refund(&self, _req: &crate::gateway::RefundRequest) -> Result<RefundAnswer, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn query_refund(&self, _req: &crate::gateway::RefundRequest) -> Result<RefundAnswer, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn bill(&self, _date: chrono::NaiveDate) -> Result<crate::gateway::bill::BillFetch, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        fn verify_notification(&self, _req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError> {
            Err(NotificationError::BadSignature)
        }
    }

    fn settings(rate_per_second: u32, retries: u32) -> ProviderCallSettings {
        ProviderCallSettings {
            timeout: Duration::from_millis(500),
            max_concurrency: 4,
            rate_per_second,
            background_share_percent: 100,
            retries,
            retry_min_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(50),
            breaker_failure_threshold: 100,
            breaker_open_for: Duration::from_secs(1),
        }
    }

    fn gateway(panic_first: bool, fail: usize) -> Arc<FlakyGateway> {
        Arc::new(FlakyGateway {
            calls: AtomicUsize::new(0),
            panic_first,
            fail,
        })
    }

    #[actix::test]
    async fn a_panicking_call_restarts_the_actor_and_later_calls_succeed() {
        let actor = ProviderActor::new(gateway(true, 0), settings(100, 0));
        let restarts = actor.restart_counter();
        let addr = actor.start_supervised();

        let first = addr.send(QueryTrade(PayNo::new(1).unwrap(), None)).await;
        let second = addr.send(QueryTrade(PayNo::new(1).unwrap(), None)).await;

        assert!(matches!(first, Ok(Err(GatewayError::Crashed))), "{first:?}");
        assert!(matches!(second, Ok(Ok(_))), "{second:?}");
        assert_eq!(restarts.load(Ordering::SeqCst), 1);
    }

    #[actix::test]
    async fn transient_failures_are_retried_within_one_request() {
        let flaky = gateway(false, 2);
        let addr = ProviderActor::new(flaky.clone(), settings(100, 3)).start_supervised();

        let result = addr.send(QueryTrade(PayNo::new(1).unwrap(), None)).await.unwrap();

        assert!(result.is_ok(), "{result:?}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    }

    #[actix::test]
    async fn calls_are_held_to_the_rate_limit() {
        let flaky = gateway(false, 0);
        let addr = ProviderActor::new(flaky.clone(), settings(5, 0)).start_supervised();
        let started = Instant::now();

        let calls = (0..10).map(|n| addr.send(QueryTrade(PayNo::new(n + 1).unwrap(), None)));
        let results = futures::future::join_all(calls).await;

        assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)))));
        // A burst of 5, then 5 more at 5 per second: about one second.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    /// Answers every query NOTPAY after `delay`, counting the queries it received.
    struct SlowGateway {
        delay: Duration,
        queries: AtomicUsize,
    }

    #[async_trait]
    impl Gateway for SlowGateway {
        fn provider(&self) -> Provider {
            Provider::Sandbox
        }
        async fn create_qr(&self, _req: &QrRequest) -> Result<QrCreated, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn query(&self, _pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            Ok(TradeQuery {
                state: TradeState::NotPaid,
                raw: serde_json::Value::Null,
            })
        }
        async fn close(&self, _pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
            Ok(CloseOutcome::Closed)
        }
        async fn refund(&self, _req: &crate::gateway::RefundRequest) -> Result<RefundAnswer, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn query_refund(&self, _req: &crate::gateway::RefundRequest) -> Result<RefundAnswer, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        async fn bill(&self, _date: chrono::NaiveDate) -> Result<crate::gateway::bill::BillFetch, GatewayError> {
            Err(GatewayError::Transport("unused".into()))
        }
        fn verify_notification(&self, _req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError> {
            Err(NotificationError::BadSignature)
        }
    }

    #[actix::test]
    async fn a_call_whose_caller_gave_up_while_it_waited_for_its_turn_is_never_sent() {
        // Arrange: one call in flight at a time; the first one takes 300 ms, callers wait 100 ms.
        let slow = Arc::new(SlowGateway {
            delay: Duration::from_millis(300),
            queries: AtomicUsize::new(0),
        });
        let mut one_at_a_time = settings(100, 0);
        one_at_a_time.max_concurrency = 1;
        let actor = ProviderActor::new(slow.clone(), one_at_a_time);
        let limits = actor.limits();
        let addr = actor.start_supervised();
        let providers = Providers::new(
            std::collections::HashMap::from([(Provider::Sandbox, ProviderMailboxes::of(&addr, limits))]),
            Duration::from_millis(100),
        );

        // Act: the second call waits for the first one's slot and its caller gives up.
        let sandbox = Route::configured(Provider::Sandbox);
        let (first, second) = futures::join!(
            providers.query(&sandbox, PayNo::new(1).unwrap()),
            providers.query(&sandbox, PayNo::new(2).unwrap()),
        );
        // Past the moment the slot frees.
        tokio::time::sleep(Duration::from_millis(400)).await;

        // Assert
        assert!(matches!(first, Err(GatewayError::Timeout)), "{first:?}");
        assert!(matches!(second, Err(GatewayError::Timeout)), "{second:?}");
        assert_eq!(slow.queries.load(Ordering::SeqCst), 1, "the abandoned call was sent");
    }
}
