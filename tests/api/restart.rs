//! Durability of the deadlines: a hard kill of the service process, and a flushed Redis.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{
    order_body, redis_url, spawn_app_with_redis, test_settings, Backend, ADMIN_TOKEN, MERCHANT_A_KEY,
};

/// The service as a separate process (so it can be killed with SIGKILL), on PostgreSQL + Redis.
pub(crate) struct ServiceProcess {
    child: Child,
    pub(crate) base: String,
}

impl ServiceProcess {
    pub(crate) async fn start(database_url: &str, key_prefix: &str, port: u16) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paywarden"));
        command
            .env("PAYWARDEN_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("PAYWARDEN__ENV", "test")
            .env("PAYWARDEN__DATABASE__URL", database_url)
            .env("PAYWARDEN__REDIS__URL", redis_url())
            .env("PAYWARDEN__REDIS__KEY_PREFIX", key_prefix);
        Self::spawn(command, port).await
    }

    /// Like [`ServiceProcess::start`], with its log (at `info`) written to `log`.
    pub(crate) async fn start_logged(database_url: &str, key_prefix: &str, port: u16, log: &std::path::Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paywarden"));
        let file = std::fs::File::create(log).expect("a log file");
        command
            .env("PAYWARDEN_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("PAYWARDEN__ENV", "test")
            .env("PAYWARDEN__DATABASE__URL", database_url)
            .env("PAYWARDEN__REDIS__URL", redis_url())
            .env("PAYWARDEN__REDIS__KEY_PREFIX", key_prefix)
            .env("PAYWARDEN__TELEMETRY__LOG_FILTER", "info,sqlx=warn");
        let out = file.try_clone().expect("a second handle of the log file");
        Self::spawn_with_output(command, port, out.into(), file.into()).await
    }

    /// Runs `command` (the paywarden binary, set up by the caller) listening on `port`, and
    /// waits until it answers. Its output is dropped (shown with `TEST_LOG` set).
    pub(crate) async fn spawn(command: Command, port: u16) -> Self {
        let quiet = || {
            if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        Self::spawn_with_output(command, port, quiet(), quiet()).await
    }

    /// [`ServiceProcess::spawn`] with its output where the caller says.
    pub(crate) async fn spawn_with_output(mut command: Command, port: u16, stdout: Stdio, stderr: Stdio) -> Self {
        let child = command
            .env("PAYWARDEN__SERVER__ADDR", format!("127.0.0.1:{port}"))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the paywarden binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the service did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base }
    }

    /// Polls the order's status with `key` until it reads `expected`; fails after `within`,
    /// saying `what` was waited for.
    pub(crate) async fn wait_for_status(
        &self,
        key: &str,
        order_no: &str,
        expected: &str,
        within: Duration,
        what: &str,
    ) -> Value {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let status: Value = client
                .get(format!("{}/v1/orders/{order_no}/status", self.base))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status["status"] == expected {
                return status;
            }
            assert!(started.elapsed() < within, "{what}: order {order_no} is {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    pub(crate) async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM could not be sent");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the service") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the service did not exit within {limit:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the service");
        self.child.wait().expect("reap the service");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_web::test]
async fn orders_pending_when_the_service_is_killed_resolve_after_restart_exactly_once() {
    // Arrange: a service process with orders whose deadlines fall while it is down.
    let settings = test_settings(Backend::Postgres).await;
    let url = settings.database.url.expose_secret().to_owned();
    let prefix = settings.redis.key_prefix.clone();
    let port = free_port();
    let mut service = ServiceProcess::start(&url, &prefix, port).await;
    let client = reqwest::Client::new();
    let mut order_nos = Vec::new();
    for n in 0..8 {
        let mut body = order_body(&format!("restart-{n}"));
        body["ttl_seconds"] = (2 + n % 3).into();
        let order: Value = client
            .post(format!("{}/v1/orders", service.base))
            .bearer_auth(MERCHANT_A_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let order_no = order["order_no"].as_str().unwrap().to_owned();
        if n % 2 == 0 {
            let attempt = client
                .post(format!("{}/v1/orders/{order_no}/payments", service.base))
                .bearer_auth(MERCHANT_A_KEY)
                .json(&serde_json::json!({"provider": "sandbox"}))
                .send()
                .await
                .unwrap();
            assert_eq!(attempt.status().as_u16(), 201);
        }
        order_nos.push(order_no);
    }

    // Act: kill -9, wait past some deadlines, start again.
    service.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let service = ServiceProcess::start(&url, &prefix, free_port()).await;

    // Assert: every order closes, each exactly once.
    let db = migration::sea_orm::Database::connect(&url).await.unwrap();
    let started = Instant::now();
    for order_no in &order_nos {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        service
            .wait_for_status(MERCHANT_A_KEY, order_no, "closed", left, "every order closes")
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for order_no in &order_nos {
        let closes = count(
            &db,
            &format!("SELECT COUNT(*) FROM order_logs WHERE order_id = {order_no} AND event = 'order.closed'"),
        )
        .await;
        assert_eq!(closes, 1, "order {order_no} closed {closes} times");
        let events = count(
            &db,
            &format!("SELECT COUNT(*) FROM outbox WHERE order_id = {order_no} AND event_type = 'order.closed'"),
        )
        .await;
        assert_eq!(events, 1, "order {order_no} has {events} order.closed events");
    }
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let left: u64 = redis::cmd("ZCARD")
            .arg(format!("{prefix}:deadlines"))
            .query_async(&mut redis)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "final orders leave the deadline index; {left} left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_flushed_redis_index_is_rebuilt_by_reconcile_and_the_orders_still_resolve() {
    // Arrange
    let app = spawn_app_with_redis(Backend::Postgres).await;
    let key = format!("{}:deadlines", app.settings.redis.key_prefix);
    let mut order_nos = Vec::new();
    for n in 0..5 {
        let mut body = order_body(&format!("flush-{n}"));
        body["ttl_seconds"] = 3.into();
        order_nos.push(app.create_order(&body).await["order_no"].as_str().unwrap().to_owned());
    }
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let indexed: u64 = redis::cmd("ZCARD").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(indexed, 5);

    // Act: Redis loses everything of this deployment, then an admin reconciles.
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    let report: Value = app
        .post_as(ADMIN_TOKEN, "/admin/deadlines/reconcile", None)
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(report["live_orders"], 5);
    assert_eq!(report["added"], 5);
    let restored: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut members: Vec<String> = restored.iter().map(|(m, _)| m.clone()).collect();
    members.sort();
    let mut expected = order_nos.clone();
    expected.sort();
    assert_eq!(members, expected);
    for order_no in &order_nos {
        app.wait_for_status(order_no, "closed", Duration::from_secs(8)).await;
    }
    // Each actor drops its entry right after its close commits.
    let started = Instant::now();
    loop {
        let left: u64 = redis::cmd("ZCARD").arg(&key).query_async(&mut redis).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{left} entries left in the index"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn sigterm_under_load_exits_cleanly_with_nothing_half_committed_and_a_restart_resumes_every_order() {
    // Arrange: a service process, tracked stock, and clients creating orders and attempts.
    let settings = test_settings(Backend::Postgres).await;
    let url = settings.database.url.expose_secret().to_owned();
    let prefix = settings.redis.key_prefix.clone();
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{prefix}.log"));
    let mut service = ServiceProcess::start_logged(&url, &prefix, free_port(), &log).await;
    let client = reqwest::Client::new();
    const STOCK: i64 = 10_000;
    for sku in ["sku-course", "sku-book"] {
        let set = client
            .put(format!("{}/admin/merchants/merchant_a/skus/{sku}", service.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "available": STOCK }))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status().as_u16(), 200);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (client, base, stop) = (client.clone(), service.base.clone(), stop.clone());
        clients.push(actix_web::rt::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut body = order_body(&format!("term-{worker}-{n}"));
                body["ttl_seconds"] = 2.into();
                n += 1;
                // Refused connections once the server stops are expected: keep going until told.
                let Ok(created) = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(MERCHANT_A_KEY)
                    .json(&body)
                    .send()
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok(order) = created.json::<Value>().await else {
                    continue;
                };
                let Some(order_no) = order["order_no"].as_str() else {
                    continue;
                };
                let _ = client
                    .post(format!("{base}/v1/orders/{order_no}/payments"))
                    .bearer_auth(MERCHANT_A_KEY)
                    .json(&serde_json::json!({"provider": "sandbox"}))
                    .send()
                    .await;
            }
        }));
    }

    // Act: SIGTERM while the clients are busy and the first deadlines fall.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let status = service.terminate(Duration::from_secs(40)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for handle in clients {
        handle.await.unwrap();
    }

    // Assert: a clean exit, every worker said it stopped (in reverse order of start), and
    // every order as a whole or not at all.
    assert!(status.success(), "the service exited with {status}");
    let said = std::fs::read_to_string(&log).unwrap();
    let stopped: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("worker stopped"))
        .filter_map(|line| {
            [
                "reconciliation",
                "refunds",
                "follow_up",
                "order_actors",
                "outbox_relay",
                "idempotency_sweep",
            ]
            .into_iter()
            .find(|name| line.contains(name))
        })
        .collect();
    assert_eq!(
        stopped,
        [
            "reconciliation",
            "refunds",
            "follow_up",
            "order_actors",
            "outbox_relay",
            "idempotency_sweep"
        ],
        "{said}"
    );
    let db = migration::sea_orm::Database::connect(&url).await.unwrap();
    let orders = count(&db, "SELECT COUNT(*) FROM orders").await;
    assert!(orders > 10, "the load created only {orders} orders");
    assert_half_committed_nothing(&db, STOCK).await;

    // Act: start again; every order left pending resolves.
    let _service = ServiceProcess::start(&url, &prefix, free_port()).await;
    let started = Instant::now();
    loop {
        let live = count(&db, "SELECT COUNT(*) FROM orders WHERE status IN ('pending', 'stuck')").await;
        if live == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{live} orders still live after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_half_committed_nothing(&db, STOCK).await;
    let closed_once = count(
        &db,
        "SELECT COUNT(*) FROM orders o WHERE o.status = 'closed' AND \
         (SELECT COUNT(*) FROM order_logs l WHERE l.order_id = o.id AND l.event = 'order.closed') = 1",
    )
    .await;
    let closed = count(&db, "SELECT COUNT(*) FROM orders WHERE status = 'closed'").await;
    assert_eq!(closed_once, closed, "every closed order has exactly one close");
}

#[actix_web::test]
async fn a_pending_order_missing_from_redis_is_armed_at_start_up_even_when_the_counts_agree() {
    // Arrange: one order pending, one closed; then Redis misses the first one's add and the
    // second one's remove (a blip), so the index holds as many entries as there are live
    // orders, just not the right ones.
    let settings = test_settings(Backend::Postgres).await;
    let url = settings.database.url.expose_secret().to_owned();
    let prefix = settings.redis.key_prefix.clone();
    let key = format!("{prefix}:deadlines");
    let mut service = ServiceProcess::start(&url, &prefix, free_port()).await;
    let client = reqwest::Client::new();
    let create = |out_business_id: &'static str, ttl: i64| {
        let (client, base) = (client.clone(), service.base.clone());
        async move {
            let mut body = order_body(out_business_id);
            body["ttl_seconds"] = ttl.into();
            let order: Value = client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(MERCHANT_A_KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            order["order_no"].as_str().unwrap().to_owned()
        }
    };
    let pending = create("blip-pending", 4).await;
    let closed = create("blip-closed", 60).await;
    let cancel = client
        .post(format!("{}/v1/orders/{closed}/cancel", service.base))
        .bearer_auth(MERCHANT_A_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 200);
    service.kill();
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ZREM")
        .arg(&key)
        .arg(&pending)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&key)
        .arg(chrono::Utc::now().timestamp_millis())
        .arg(&closed)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Act
    let service = ServiceProcess::start(&url, &prefix, free_port()).await;

    // Assert: the pending order still closes at its deadline, and the index is right again.
    service
        .wait_for_status(
            MERCHANT_A_KEY,
            &pending,
            "closed",
            Duration::from_secs(10),
            "the pending order was never armed",
        )
        .await;
    let stale: Option<f64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg(&closed)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stale, None, "the closed order's stale entry is removed");
}

/// The invariants a stop must not break: each order has its creation rows exactly once, each
/// final order exactly one final log row and event, each paid order one succeeded attempt, and
/// the tracked stock equals what the orders still holding it reserved (each order takes one
/// `sku-course` and two `sku-book`).
async fn assert_half_committed_nothing(db: &migration::sea_orm::DatabaseConnection, stock: i64) {
    let broken = [
        (
            "orders without exactly one order.created log row",
            "SELECT COUNT(*) FROM orders o WHERE (SELECT COUNT(*) FROM order_logs l WHERE l.order_id = o.id AND l.event = 'order.created') <> 1",
        ),
        (
            "orders without exactly one order.created event",
            "SELECT COUNT(*) FROM orders o WHERE (SELECT COUNT(*) FROM outbox e WHERE e.order_id = o.id AND e.event_type = 'order.created') <> 1",
        ),
        (
            "orders without their two items",
            "SELECT COUNT(*) FROM orders o WHERE (SELECT COUNT(*) FROM order_items i WHERE i.order_id = o.id) <> 2",
        ),
        (
            "closed orders without exactly one close (log row, event, closed_at)",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'closed' AND (o.closed_at IS NULL \
             OR (SELECT COUNT(*) FROM order_logs l WHERE l.order_id = o.id AND l.event = 'order.closed') <> 1 \
             OR (SELECT COUNT(*) FROM outbox e WHERE e.order_id = o.id AND e.event_type = 'order.closed') <> 1)",
        ),
        (
            "paid orders without exactly one payment (log row, event, succeeded attempt)",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'paid' AND (o.paid_at IS NULL \
             OR (SELECT COUNT(*) FROM order_logs l WHERE l.order_id = o.id AND l.event = 'order.paid') <> 1 \
             OR (SELECT COUNT(*) FROM outbox e WHERE e.order_id = o.id AND e.event_type = 'order.paid') <> 1 \
             OR (SELECT COUNT(*) FROM payment_attempts a WHERE a.order_id = o.id AND a.status = 'succeeded') <> 1)",
        ),
        (
            "closed orders with an attempt still open",
            "SELECT COUNT(*) FROM payment_attempts a JOIN orders o ON o.id = a.order_id WHERE o.status = 'closed' AND a.status = 'pending'",
        ),
    ];
    for (what, sql) in broken {
        assert_eq!(count(db, sql).await, 0, "{what}");
    }
    let holding = count(
        db,
        "SELECT COUNT(*) FROM orders WHERE status IN ('pending', 'stuck', 'paid')",
    )
    .await;
    let course = count(db, "SELECT available FROM skus WHERE sku_id = 'sku-course'").await;
    let book = count(db, "SELECT available FROM skus WHERE sku_id = 'sku-book'").await;
    assert_eq!(course, stock - holding, "sku-course stock");
    assert_eq!(book, stock - 2 * holding, "sku-book stock");
}

async fn count(db: &migration::sea_orm::DatabaseConnection, sql: &str) -> i64 {
    use migration::sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}
