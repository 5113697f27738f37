//! The engine and its order actors against a fake provider, reached through the
//! `ProviderClient` trait: no provider actor, no HTTP, an in-memory SQLite database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::unwrap_in_result)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::deadline::SqlDeadlineIndex;
use actors::domain::{ItemRequest, MerchantId, NewOrder, OrderLimits, OrderRequest};
use actors::engine::{Engine, EngineParts};
use actors::gateway::{
    CloseOutcome, GatewayError, PaidTrade, QrCreated, QrRequest, RefundAnswer, RefundRequest, TradeQuery, TradeState,
};
use actors::ids::Snowflake;
use actors::metrics::EngineMetrics;
use actors::order::expiry::ExpirySettings;
use actors::provider::{Admission, ProviderClient, Route};
use actors::store::{Created, Operator};
use async_trait::async_trait;
use entities::{orders, payment_attempts, AttemptStatus, Currency, MinorUnit, OrderId, OrderStatus, PayNo, Provider};
use migration::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, EntityTrait};

/// A provider whose answers the test sets, and which counts the calls it gets.
#[derive(Default)]
struct FakeProvider {
    state: Mutex<Option<TradeState>>,
    failing: Mutex<bool>,
    calls: Mutex<HashMap<&'static str, u32>>,
    /// Calls per pay_no, as `"query:<pay_no>"` / `"close:<pay_no>"`.
    per_trade: Mutex<HashMap<String, u32>>,
    /// A new attempt row written while the first close is in flight, as another node (or a
    /// request racing the pass) would.
    insert_on_close: Mutex<Option<(DatabaseConnection, payment_attempts::Model)>>,
}

impl FakeProvider {
    fn answer(&self, state: TradeState) {
        *self.state.lock().unwrap() = Some(state);
    }

    fn count(&self, call: &'static str) -> u32 {
        self.calls.lock().unwrap().get(call).copied().unwrap_or(0)
    }

    fn trade_calls(&self, call: &str, pay_no: PayNo) -> u32 {
        let key = format!("{call}:{pay_no}");
        self.per_trade.lock().unwrap().get(&key).copied().unwrap_or(0)
    }

    fn called_on(&self, call: &'static str, pay_no: PayNo) -> Result<(), GatewayError> {
        *self
            .per_trade
            .lock()
            .unwrap()
            .entry(format!("{call}:{pay_no}"))
            .or_default() += 1;
        self.called(call)
    }

    fn called(&self, call: &'static str) -> Result<(), GatewayError> {
        *self.calls.lock().unwrap().entry(call).or_default() += 1;
        if *self.failing.lock().unwrap() {
            return Err(GatewayError::Timeout);
        }
        Ok(())
    }
}

#[async_trait]
impl ProviderClient for FakeProvider {
    fn has(&self, provider: Provider) -> bool {
        provider == Provider::Sandbox
    }

    async fn query(&self, _route: &Route, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        self.called_on("query", pay_no)?;
        let state = self.state.lock().unwrap().clone().unwrap_or(TradeState::NotPaid);
        Ok(TradeQuery {
            state,
            raw: serde_json::json!({"fake": true}),
        })
    }

    async fn close(&self, _route: &Route, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        self.called_on("close", pay_no)?;
        let insert = self.insert_on_close.lock().unwrap().take();
        if let Some((db, attempt)) = insert {
            payment_attempts::Entity::insert(payment_attempts::ActiveModel::from(attempt))
                .exec_without_returning(&db)
                .await
                .unwrap();
        }
        Ok(CloseOutcome::Closed)
    }

    async fn admit(&self, _route: &Route) -> Result<Admission, GatewayError> {
        Ok(Admission::unlimited())
    }

    async fn create_qr(
        &self,
        _route: &Route,
        request: QrRequest,
        _admission: Admission,
    ) -> Result<QrCreated, GatewayError> {
        self.called("create_qr")?;
        Ok(QrCreated {
            code_url: format!("fake://{}", request.pay_no),
        })
    }

    // The order actor never refunds: refunds are the refund worker's, tested over HTTP.
    async fn refund(&self, route: &Route, _request: RefundRequest) -> Result<RefundAnswer, GatewayError> {
        self.called("refund")?;
        Err(GatewayError::NotConfigured(route.provider))
    }

    async fn query_refund(&self, route: &Route, _request: RefundRequest) -> Result<RefundAnswer, GatewayError> {
        self.called("query_refund")?;
        Err(GatewayError::NotConfigured(route.provider))
    }

    async fn bill(
        &self,
        route: &Route,
        _date: chrono::NaiveDate,
    ) -> Result<actors::gateway::bill::BillFetch, GatewayError> {
        self.called("bill")?;
        Err(GatewayError::NotConfigured(route.provider))
    }
}

fn settings() -> ExpirySettings {
    ExpirySettings {
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(50),
        retry_budget: 2,
        stuck_retry_interval: Duration::from_secs(60),
        userpaying_grace: Duration::from_millis(100),
        userpaying_max_rechecks: 1,
        provider_reply_timeout: Duration::from_secs(2),
        actor_reply_timeout: Duration::from_secs(5),
        overdue_per_second: 100,
        arbiters: 1,
        provider_clock_margin: Duration::from_millis(100),
        max_concurrent_passes: 4,
        follow_up_interval: Duration::from_millis(200),
    }
}

async fn engine(provider: Arc<FakeProvider>) -> (Engine, DatabaseConnection) {
    let mut options = ConnectOptions::new("sqlite::memory:");
    // An in-memory database lives in its one connection.
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    let engine = Engine::start(EngineParts {
        cluster: None,
        db: db.clone(),
        ids: Snowflake::new(1).unwrap(),
        providers: provider,
        index: Arc::new(SqlDeadlineIndex::new(db.clone())),
        settings: settings(),
        refunds: actors::refund::RefundSettings::default(),
        metrics: EngineMetrics::register(&prometheus::Registry::new()).unwrap(),
    });
    (engine, db)
}

fn merchant() -> MerchantId {
    MerchantId::parse("acme").unwrap()
}

/// A pending order due in `ttl_seconds`, with one attempt at the fake provider.
async fn order_with_attempt(engine: &Engine, ttl_seconds: i64) -> (OrderId, PayNo) {
    let limits = OrderLimits {
        default_ttl: Duration::from_secs(60),
        min_ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(3600),
        max_items: 10,
        max_total: MinorUnit::new(1_000_000).unwrap(),
    };
    let request = OrderRequest {
        out_business_id: format!("fake-{}", uuid::Uuid::new_v4()),
        user_id: "user-1".into(),
        subject: "Rust course".into(),
        currency: None,
        ttl_seconds: Some(ttl_seconds),
        return_url: None,
        items: vec![ItemRequest {
            sku_id: "sku-course".into(),
            name: "Rust course".into(),
            unit_price: 1999,
            quantity: 1,
        }],
    };
    let new = NewOrder::parse(merchant(), request, &limits).unwrap();
    let Created::New(order) = engine.create_order(&new).await.unwrap() else {
        panic!("a new order was expected");
    };
    let attempt = engine
        .start_attempt(order.id, Provider::Sandbox, None, Operator::Merchant(merchant()))
        .await
        .unwrap();
    (order.id, attempt.pay_no)
}

async fn wait_for(db: &DatabaseConnection, id: OrderId, status: OrderStatus) -> orders::Model {
    let started = Instant::now();
    loop {
        let order = orders::Entity::find_by_id(id).one(db).await.unwrap().unwrap();
        if order.status == status {
            return order;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "order is {} rather than {status}",
            order.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn an_unpaid_order_is_queried_closed_at_the_provider_and_closed_at_its_deadline() {
    // Arrange
    let provider = Arc::new(FakeProvider::default());
    let (engine, db) = engine(provider.clone()).await;
    let (order_id, _) = order_with_attempt(&engine, 1).await;

    // Act: the deadline passes.
    let order = wait_for(&db, order_id, OrderStatus::Closed).await;

    // Assert
    assert_eq!(order.close_reason.as_deref(), Some("expired"));
    assert_eq!(provider.count("query"), 1);
    assert_eq!(provider.count("close"), 1);
    engine.shutdown(Duration::from_secs(2)).await;
}

#[actix::test]
async fn a_payment_the_callback_never_reported_is_compensated_at_the_deadline() {
    // Arrange: the provider holds the payment; no notification ever arrives.
    let provider = Arc::new(FakeProvider::default());
    let (engine, db) = engine(provider.clone()).await;
    let (order_id, _) = order_with_attempt(&engine, 1).await;
    provider.answer(TradeState::Paid(PaidTrade {
        provider_txn_id: "txn-fake-1".into(),
        amount: MinorUnit::new(1999).unwrap(),
        paid_at: chrono::Utc::now(),
    }));

    // Act
    wait_for(&db, order_id, OrderStatus::Paid).await;

    // Assert: compensated from the query alone, never closed.
    assert_eq!(provider.count("close"), 0);
    engine.shutdown(Duration::from_secs(2)).await;
}

#[actix::test]
async fn a_provider_that_keeps_failing_leaves_the_order_stuck_after_the_retry_budget() {
    // Arrange
    let provider = Arc::new(FakeProvider::default());
    let (engine, db) = engine(provider.clone()).await;
    let (order_id, _) = order_with_attempt(&engine, 1).await;
    *provider.failing.lock().unwrap() = true;

    // Act
    wait_for(&db, order_id, OrderStatus::Stuck).await;

    // Assert: one query per pass, as many passes as the budget.
    assert_eq!(provider.count("query"), settings().retry_budget);
    assert_eq!(provider.count("close"), 0);
    let snapshot = engine.snapshot(order_id).await.expect("a stuck order keeps its actor");
    assert_eq!(snapshot.provider_failures, settings().retry_budget);
    engine.shutdown(Duration::from_secs(2)).await;
}

#[actix::test]
async fn an_attempt_created_while_the_pass_runs_is_closed_at_the_provider_before_the_order_closes() {
    // Arrange: while the pass closes the first trade, a second attempt appears (its QR code was
    // handed out, so its trade exists at the provider).
    let provider = Arc::new(FakeProvider::default());
    let (engine, db) = engine(provider.clone()).await;
    let (order_id, first) = order_with_attempt(&engine, 1).await;
    let now = chrono::Utc::now();
    let late = payment_attempts::Model {
        pay_no: PayNo::new(first.get() + 1).unwrap(),
        order_id,
        provider: Provider::Sandbox,
        status: AttemptStatus::Pending,
        amount: MinorUnit::new(1999).unwrap(),
        currency: Currency::Cny,
        code_url: Some("fake://late".into()),
        provider_txn_id: None,
        raw_payload: None,
        created_at: now,
        updated_at: now,
        paid_at: None,
        follow_up_at: None,
        paid_amount: None,
        account_id: None,
    };
    *provider.insert_on_close.lock().unwrap() = Some((db.clone(), late.clone()));

    // Act
    wait_for(&db, order_id, OrderStatus::Closed).await;

    // Assert: the late trade was asked about and closed at the provider, not just marked closed.
    assert_eq!(provider.trade_calls("query", late.pay_no), 1);
    assert_eq!(provider.trade_calls("close", late.pay_no), 1);
    assert_eq!(provider.trade_calls("close", first), 1);
    engine.shutdown(Duration::from_secs(2)).await;
}
