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
        let child = Command::new(env!("CARGO_BIN_EXE_paywarden"))
            .env("PAYWARDEN_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("PAYWARDEN__ENV", "test")
            .env("PAYWARDEN__SERVER__ADDR", format!("127.0.0.1:{port}"))
            .env("PAYWARDEN__DATABASE__URL", database_url)
            .env("PAYWARDEN__REDIS__URL", redis_url())
            .env("PAYWARDEN__REDIS__KEY_PREFIX", key_prefix)
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
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
        loop {
            let status: Value = client
                .get(format!("{}/v1/orders/{order_no}/status", service.base))
                .bearer_auth(MERCHANT_A_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status["status"] == "closed" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "order {order_no} is {}",
                status["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

async fn count(db: &migration::sea_orm::DatabaseConnection, sql: &str) -> i64 {
    use migration::sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}
