//! Test harness: a real paywarden server on a random port, against a fresh database per test
//! (a new PostgreSQL database, or a new SQLite file), driven over real HTTP.

use std::sync::LazyLock;

use migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use paywarden::config::{Profile, Settings};
use paywarden::startup::Application;
use secrecy::SecretString;
use serde_json::{json, Value};

/// Where the tests find PostgreSQL; each test creates its own database there.
fn postgres_base() -> String {
    std::env::var("PAYWARDEN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    // Logs only when asked for: TEST_LOG=1 cargo nextest run ...
    if std::env::var("TEST_LOG").is_ok() {
        let settings = paywarden::config::TelemetrySettings {
            log_filter: "info,sqlx=warn".to_owned(),
            json: false,
            otlp_endpoint: String::new(),
            service_name: "paywarden".to_owned(),
            export_delay: std::time::Duration::from_secs(5),
        };
        // No exporter to stop: nothing is exported without an endpoint.
        paywarden::telemetry::init(&settings)
            .expect("logging without an exporter always installs")
            .shutdown();
    }
});

pub const MERCHANT_A_KEY: &str = "pk_test_merchant_a";
pub const MERCHANT_B_KEY: &str = "pk_test_merchant_b";
/// The merchants those keys belong to.
pub const MERCHANT_A: &str = "merchant_a";
pub const MERCHANT_B: &str = "merchant_b";
pub const ADMIN_TOKEN: &str = "admin_test_token";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn postgres() {
                super::$name(crate::helpers::Backend::Postgres).await
            }

            #[actix_web::test]
            async fn sqlite() {
                super::$name(crate::helpers::Backend::Sqlite).await
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// Generates one test per real provider (against the simulator) from
/// `async fn name(provider: &str)`.
macro_rules! for_each_provider {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn wechat() {
                super::$name("wechat").await
            }

            #[actix_web::test]
            async fn alipay() {
                super::$name("alipay").await
            }
        }
    )*};
}
pub(crate) use for_each_provider;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A second connection to the test's database, to check what was (not) written.
    pub db: DatabaseConnection,
    pub settings: Settings,
}

/// Settings of the `test` profile, pointed at a fresh database.
pub async fn test_settings(backend: Backend) -> Settings {
    LazyLock::force(&TRACING);
    let config_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut settings = Settings::load_from(Some(&config_dir), Profile::Test).expect("the test profile loads");
    settings.server.workers = 1;
    let name = format!("pw_test_{}", uuid::Uuid::new_v4().simple());
    settings.database.url = SecretString::from(match backend {
        Backend::Postgres => {
            let admin = Database::connect(format!("{}/postgres", postgres_base()))
                .await
                .expect("PostgreSQL answers (is it running on 127.0.0.1:5432?)");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("a test database can be created");
            admin.close().await.expect("closing the admin connection");
            format!("{}/{name}", postgres_base())
        }
        Backend::Sqlite => {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite");
            std::fs::create_dir_all(&dir).expect("a directory for test databases");
            format!("sqlite://{}/{name}.db?mode=rwc", dir.display())
        }
    });
    settings.redis.key_prefix = name;
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(test_settings(backend).await).await
}

/// Where the tests find Redis; each test uses its own key prefix.
pub fn redis_url() -> String {
    std::env::var("PAYWARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Like [`spawn_app`], with the Redis deadline index.
pub async fn spawn_app_with_redis(backend: Backend) -> TestApp {
    let mut settings = test_settings(backend).await;
    settings.redis.url = SecretString::from(redis_url());
    spawn_app_with(settings).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("the application builds");
    let address = app.base_url().to_owned();
    actix_web::rt::spawn(app.run_until_stopped());
    let db = Database::connect(secrecy::ExposeSecret::expose_secret(&settings.database.url))
        .await
        .expect("the test can open its own connection");
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // The service closes a connection idle for 5 s (actix-web's keep-alive); a pooled
            // one reused as it closes fails the request (`IncompleteMessage`), seen when a
            // browser step kept a test away for seconds. Reuse only connections idle < 2 s.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("an HTTP client"),
        db,
        settings,
    }
}

/// A valid order body; tests change what they need.
pub fn order_body(out_business_id: &str) -> Value {
    json!({
        "out_business_id": out_business_id,
        "user_id": "user-1",
        "subject": "Rust course",
        "items": [
            {"sku_id": "sku-course", "name": "Rust course", "unit_price": 1999, "quantity": 1},
            {"sku_id": "sku-book", "name": "Book", "unit_price": 500, "quantity": 2}
        ]
    })
}

/// Row counts of the tables a request could write, to check that a refused one wrote nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct RowCounts {
    pub orders: i64,
    pub order_items: i64,
    pub payment_attempts: i64,
    pub order_logs: i64,
    pub outbox: i64,
    pub stock_available: i64,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path` with `key` as the bearer token.
    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with a JSON body (`None`: no body) and `key` as the bearer token.
    pub async fn post_as(&self, key: &str, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post_order(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/orders"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates an order for merchant A and returns its JSON (asserting 201).
    pub async fn create_order(&self, body: &Value) -> Value {
        let response = self.post_order(MERCHANT_A_KEY, body).await;
        assert_eq!(response.status().as_u16(), 201, "creating an order");
        response.json().await.expect("order JSON")
    }

    pub async fn get_order(&self, key: &str, order_no: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/orders/{order_no}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_status(&self, key: &str, order_no: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/orders/{order_no}/status")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_payment(&self, key: &str, order_no: &str, provider: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/orders/{order_no}/payments")))
            .bearer_auth(key)
            .json(&json!({ "provider": provider }))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_qr(&self, key: &str, pay_no: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/payments/{pay_no}/qr.png")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// Sets `merchant_id`'s tracked stock of `sku_id`.
    pub async fn put_sku(&self, merchant_id: &str, sku_id: &str, available: i64) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/admin/merchants/{merchant_id}/skus/{sku_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "available": available }))
            .send()
            .await
            .expect("request sent")
    }

    /// `merchant_id`'s tracked stock of `sku_id` (asserting it is tracked).
    pub async fn sku_available(&self, merchant_id: &str, sku_id: &str) -> i64 {
        let response = self
            .client
            .get(self.url(&format!("/admin/merchants/{merchant_id}/skus/{sku_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("sku JSON");
        body["available"].as_i64().expect("available is an integer")
    }

    pub async fn admin_order(&self, order_no: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/admin/orders/{order_no}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("order JSON")
    }

    /// The Prometheus exposition, as a scrape reads it.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one(Statement::from_string(self.db.get_database_backend(), sql.to_owned()))
            .await
            .expect("count query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("an integer count")
    }

    pub async fn row_counts(&self) -> RowCounts {
        RowCounts {
            orders: self.count("SELECT COUNT(*) FROM orders").await,
            order_items: self.count("SELECT COUNT(*) FROM order_items").await,
            payment_attempts: self.count("SELECT COUNT(*) FROM payment_attempts").await,
            order_logs: self.count("SELECT COUNT(*) FROM order_logs").await,
            outbox: self.count("SELECT COUNT(*) FROM outbox").await,
            stock_available: self
                .count("SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM skus")
                .await,
        }
    }

    /// Runs a statement against the test database (to arrange states the API cannot reach yet).
    pub async fn execute(&self, sql: &str) {
        self.db
            .execute(Statement::from_string(self.db.get_database_backend(), sql.to_owned()))
            .await
            .expect("statement runs");
    }
}

/// The `error.code` of an error response, asserting the status.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let body: Value = response.json().await.expect("error JSON");
    body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned()
}

impl TestApp {
    /// Polls the order's status until it is `expected`, or panics after `within`.
    pub async fn wait_for_status(&self, order_no: &str, expected: &str, within: std::time::Duration) -> Value {
        let started = std::time::Instant::now();
        loop {
            let status: Value = self
                .get_status(MERCHANT_A_KEY, order_no)
                .await
                .json()
                .await
                .expect("status JSON");
            if status["status"] == expected {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "order {order_no} is {} after {within:?}, expected {expected}",
                status["status"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Creates an order with `ttl_seconds` and starts a sandbox attempt; returns (order_no, pay_no).
    pub async fn order_with_attempt(&self, out_business_id: &str, ttl_seconds: i64) -> (String, String) {
        let mut body = order_body(out_business_id);
        body["ttl_seconds"] = ttl_seconds.into();
        let order = self.create_order(&body).await;
        let order_no = order["order_no"].as_str().expect("order_no").to_owned();
        let response = self.post_payment(MERCHANT_A_KEY, &order_no, "sandbox").await;
        assert_eq!(response.status().as_u16(), 201, "starting a sandbox attempt");
        let attempt: Value = response.json().await.expect("attempt JSON");
        (order_no, attempt["pay_no"].as_str().expect("pay_no").to_owned())
    }

    /// The sandbox provider's view of a trade.
    pub async fn sandbox_trade(&self, pay_no: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/sandbox/trades/{pay_no}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200, "sandbox trade {pay_no}");
        response.json().await.expect("trade JSON")
    }

    /// The buyer pays at the sandbox; `notify` false drops the callback.
    pub async fn sandbox_pay(&self, pay_no: &str, notify: bool) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/sandbox/trades/{pay_no}/pay?notify={notify}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200, "paying {pay_no}");
        response.json().await.expect("trade JSON")
    }

    pub async fn sandbox_faults(&self, faults: Value) {
        let response = self
            .client
            .put(self.url("/sandbox/faults"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&faults)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
    }

    /// Posts a sandbox notification signed with `secret` (the right one unless testing forgery).
    pub async fn post_sandbox_notification(&self, body: &Value, secret: &str, timestamp: i64) -> reqwest::Response {
        use hmac::{Hmac, Mac};
        let body = body.to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{timestamp}.{body}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        self.client
            .post(self.url("/webhooks/sandbox"))
            .header("content-type", "application/json")
            .header("Sandbox-Signature", format!("t={timestamp},v1={signature}"))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn events_of(&self, order_no: &str) -> Vec<String> {
        self.admin_order(order_no).await["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|log| log["event"].as_str().expect("event").to_owned())
            .collect()
    }

    pub async fn outbox_count(&self, order_no: &str, event_type: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE order_id = {order_no} AND event_type = '{event_type}'"
        ))
        .await
    }
}

pub const SANDBOX_SECRET: &str = "whsec_sandbox_test";
