//! Webhooks as a receiver sees them: Standard Webhooks signing, event filters, pause and
//! custom headers, each delivery checked by the specification's own Python library
//! (`standardwebhooks`, installed by `.ci/run`) in a receiver process
//! (`tests/receiver/standard_webhooks_receiver.py`): never by paywarden's code.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY,
};

/// The Python receiver: started per test, ended with it.
struct LibraryReceiver {
    base: String,
    client: reqwest::Client,
    process: Child,
    /// Held open: the receiver ends when it closes.
    _stdin: Option<ChildStdin>,
}

impl LibraryReceiver {
    fn start() -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/receiver/standard_webhooks_receiver.py"
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut process = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the receiver needs `pip install standardwebhooks`)");
        let stdout = process.stdout.take().expect("the receiver's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let port: u16 = line
            .trim()
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the receiver did not start (is standardwebhooks installed?): {line:?}"));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _stdin: process.stdin.take(),
            process,
        }
    }

    /// A target that answers `status` (the first `fail_first` requests: 500).
    fn hook(&self, status: u16, fail_first: usize) -> String {
        format!("{}/hook/{status}?fail_first={fail_first}", self.base)
    }

    async fn requests(&self) -> Vec<Value> {
        self.client
            .get(format!("{}/_control/requests", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `count` requests arrived.
    async fn wait_for_requests(&self, count: usize, within: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let requests = self.requests().await;
            if requests.len() >= count {
                return requests;
            }
            assert!(
                started.elapsed() < within,
                "only {} of {count} requests arrived",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each recorded request as the library judges it with `secret` alone:
    /// `{webhook_id, ok, error, replay_refused}`.
    async fn verify_with(&self, secret: &str) -> Vec<Value> {
        self.client
            .post(format!("{}/_control/verify", self.base))
            .json(&json!({ "secret": secret }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for LibraryReceiver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn add_subscriber(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/admin/subscribers"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn rotate(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/admin/subscribers/{id}/rotate-secret")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A valid Standard Webhooks secret that paywarden never issued.
const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

on_both_backends!(a_new_subscriber_gets_standard_webhooks_that_the_official_library_verifies,);

async fn a_new_subscriber_gets_standard_webhooks_that_the_official_library_verifies(backend: Backend) {
    // Arrange: a subscriber with a generated secret whose receiver fails twice first.
    let receiver = LibraryReceiver::start();
    let app = spawn_app(backend).await;
    let added = add_subscriber(
        &app,
        &json!({"url": receiver.hook(200, 2), "event_types": ["order.created"]}),
    )
    .await;
    assert_eq!(added.status().as_u16(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["signature_scheme"], "standard-webhooks-v1", "the default");
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed: Value = app
        .get_as(ADMIN_TOKEN, "/admin/subscribers")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once, at creation"
    );

    // Act
    let order = app.create_order(&order_body("std-1")).await;
    let requests = receiver.wait_for_requests(3, Duration::from_secs(10)).await;

    // Assert: three attempts of one event, each signed for its own timestamp.
    let event_id = requests[0]["headers"]["webhook-id"].as_str().unwrap().to_owned();
    let body: Value = serde_json::from_str(requests[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["event_id"], event_id.as_str(), "webhook-id is the event id");
    assert_eq!(body["order_no"], order["order_no"]);
    assert!(
        requests.iter().all(|r| r["headers"]["webhook-id"] == event_id.as_str()),
        "retries keep the id: {requests:?}"
    );
    assert!(requests
        .iter()
        .all(|r| r["headers"].get("paywarden-signature").is_none()));
    let verified = receiver.verify_with(&secret).await;
    for result in &verified {
        assert_eq!(result["ok"], true, "the library verifies every attempt: {result}");
        assert_eq!(
            result["replay_refused"], true,
            "replayed six minutes later, the library refuses it: {result}"
        );
    }
    for result in receiver.verify_with(OTHER_SECRET).await {
        assert_eq!(result["ok"], false, "another secret is refused: {result}");
    }
}

#[actix_web::test]
async fn during_a_rotation_each_secret_verifies_alone_and_after_the_overlap_only_the_new_one() {
    // Arrange
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Postgres).await;
    let added: Value = add_subscriber(
        &app,
        &json!({"url": receiver.hook(200, 0), "event_types": ["order.created"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap();
    let old_secret = added["secret"].as_str().unwrap().to_owned();

    // Act: rotate with a three-second overlap, then deliver one event inside it.
    let rotated = rotate(&app, id, &json!({"overlap_seconds": 3})).await;
    assert_eq!(rotated.status().as_u16(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    app.create_order(&order_body("rot-1")).await;
    let during = receiver.wait_for_requests(1, Duration::from_secs(10)).await;

    // Assert: two signatures, each secret verifies on its own.
    let signatures = during[0]["headers"]["webhook-signature"].as_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert_eq!(receiver.verify_with(&new_secret).await[0]["ok"], true);
    assert_eq!(receiver.verify_with(&old_secret).await[0]["ok"], true);
    assert_eq!(receiver.verify_with(OTHER_SECRET).await[0]["ok"], false);

    // Act: once the overlap is over, another event.
    let expires_at: chrono::DateTime<chrono::Utc> =
        rotated["previous_secret_expires_at"].as_str().unwrap().parse().unwrap();
    let wait = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    app.create_order(&order_body("rot-2")).await;
    let after = receiver.wait_for_requests(2, Duration::from_secs(10)).await;

    // Assert: the new secret alone, and the old one deleted.
    let signatures = after[1]["headers"]["webhook-signature"].as_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 1, "{signatures}");
    assert_eq!(receiver.verify_with(&new_secret).await[1]["ok"], true);
    assert_eq!(receiver.verify_with(&old_secret).await[1]["ok"], false);
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriber_secrets").await, 0);
}

#[actix_web::test]
async fn a_paywarden_v1_subscriber_keeps_the_paywarden_headers_through_a_rotation() {
    // Arrange
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Sqlite).await;
    let old_secret = "whsec_old_receiver_secret_01";
    let added: Value = add_subscriber(
        &app,
        &json!({"url": receiver.hook(200, 0), "secret": old_secret, "signature_scheme": "paywarden-v1", "event_types": ["order.created"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(added["signature_scheme"], "paywarden-v1");
    let rotated: Value = rotate(&app, added["id"].as_str().unwrap(), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();

    // Act
    app.create_order(&order_body("pw-1")).await;
    let request = &receiver.wait_for_requests(1, Duration::from_secs(10)).await[0];

    // Assert: the old headers, one v1= per live secret; each verifies alone.
    let headers = &request["headers"];
    assert!(headers.get("webhook-signature").is_none(), "{headers}");
    let body = request["body"].as_str().unwrap();
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(headers["paywarden-event-id"], event["event_id"]);
    let timestamp = headers["paywarden-timestamp"].as_str().unwrap();
    let signature = headers["paywarden-signature"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    for secret in [old_secret, new_secret] {
        actors::outbox::signature::verify(secret, timestamp, signature, body.as_bytes(), now, 300)
            .unwrap_or_else(|err| panic!("{err}"));
    }
}

/// Each refused request answers 422 (or 409) and changes nothing.
#[actix_web::test]
async fn bad_signing_input_is_refused_and_nothing_is_stored() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let url = "http://127.0.0.1:9/hook/200";
    let short_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La"; // 18 bytes
    let cases = [
        (
            json!({"url": url, "signature_scheme": "v2"}),
            "invalid_signature_scheme",
            "an unknown scheme",
        ),
        (
            json!({"url": url, "secret": "whsec_test_receiver_0001"}),
            "invalid_secret",
            "not base64",
        ),
        (
            json!({"url": url, "secret": "plain-secret-of-32-characters-00"}),
            "invalid_secret",
            "no whsec_ prefix",
        ),
        (
            json!({"url": url, "secret": short_key}),
            "invalid_secret",
            "a key under 24 bytes",
        ),
        (
            json!({"url": "https://ops:pw@hooks.example.com/h"}),
            "invalid_url",
            "credentials in the URL",
        ),
        (
            json!({"url": url, "event_types": ["order.shipped"]}),
            "unknown_event_type",
            "an unknown event type",
        ),
    ];

    // Act / Assert
    for (body, code, case) in cases {
        let refused = add_subscriber(&app, &body).await;
        assert_eq!(error_code(refused, 422).await, code, "{case}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM subscribers").await, 0, "nothing stored");

    let added: Value = add_subscriber(&app, &json!({ "url": url })).await.json().await.unwrap();
    let id = added["id"].as_str().unwrap();
    let secret = added["secret"].as_str().unwrap();
    for overlap in [0, 604_801] {
        let refused = rotate(&app, id, &json!({ "overlap_seconds": overlap })).await;
        assert_eq!(error_code(refused, 422).await, "invalid_overlap", "{overlap}");
    }
    let refused = rotate(&app, id, &json!({ "overlap": 60 })).await;
    assert_eq!(error_code(refused, 400).await, "invalid_json");
    let missing = rotate(&app, "sub_missing", &json!({})).await;
    assert_eq!(error_code(missing, 404).await, "not_found");
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriber_secrets").await, 0);
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM subscribers WHERE secret = '{secret}'"))
            .await,
        1,
        "the secret is unchanged"
    );
    // A secret does not reach the rotation's refusals.
    for _ in 0..3 {
        assert_eq!(rotate(&app, id, &json!({})).await.status().as_u16(), 200);
    }
    let refused = rotate(&app, id, &json!({})).await;
    let status = refused.status().as_u16();
    let text = refused.text().await.unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("too_many_live_secrets") && !text.contains("whsec_"),
        "{text}"
    );
}

async fn update(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/admin/subscribers/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Creates an order of merchant A and cancels it: `order.created`, then `order.closed`.
async fn created_and_closed(app: &TestApp, out_business_id: &str) -> String {
    let order = app.create_order(&order_body(out_business_id)).await;
    let order_no = order["order_no"].as_str().unwrap().to_owned();
    let cancelled = app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;
    assert_eq!(cancelled.status().as_u16(), 200, "cancelling {order_no}");
    order_no
}

/// `(order_no, type)` of each request, in arrival order.
fn events_of(requests: &[Value]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|request| {
            let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
            (
                body["order_no"].as_str().unwrap().to_owned(),
                body["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_paused_subscriber_keeps_its_events_and_gets_them_in_order_on_resume() {
    // Arrange: a paused subscriber, and a control one that is not.
    let held = LibraryReceiver::start();
    let control = LibraryReceiver::start();
    let app = spawn_app(Backend::Postgres).await;
    let added: Value = add_subscriber(&app, &json!({ "url": held.hook(200, 0) }))
        .await
        .json()
        .await
        .unwrap();
    let id = added["id"].as_str().unwrap();
    let secret = added["secret"].as_str().unwrap();
    let paused = update(&app, id, &json!({"paused": true})).await;
    assert_eq!(paused.status().as_u16(), 200);
    assert_eq!(paused.json::<Value>().await.unwrap()["paused"], true);
    add_subscriber(&app, &json!({ "url": control.hook(200, 0) })).await;

    // Act: two orders, each created then closed, while paused.
    let first = created_and_closed(&app, "pause-1").await;
    let second = created_and_closed(&app, "pause-2").await;
    control.wait_for_requests(4, Duration::from_secs(10)).await;

    // Assert: nothing sent, everything kept.
    assert!(held.requests().await.is_empty(), "a paused subscriber receives nothing");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM outbox_deliveries WHERE subscriber_id = '{id}' AND status = 'pending'"
        ))
        .await,
        4
    );

    // Act: resume.
    let resumed = update(&app, id, &json!({"paused": false})).await;
    assert_eq!(resumed.status().as_u16(), 200);
    let requests = held.wait_for_requests(4, Duration::from_secs(10)).await;

    // Assert: each order's events in the order they were written, each verified.
    let events = events_of(&requests);
    for order_no in [&first, &second] {
        let types: Vec<&str> = events
            .iter()
            .filter(|(no, _)| no == order_no)
            .map(|(_, event_type)| event_type.as_str())
            .collect();
        assert_eq!(types, ["order.created", "order.closed"], "{order_no}: {events:?}");
    }
    for result in held.verify_with(secret).await {
        assert_eq!(result["ok"], true, "{result}");
    }
}

#[actix_web::test]
async fn a_subscriber_gets_only_the_event_types_it_chose() {
    // Arrange: one subscriber for order.closed (and a refund type), one for everything.
    let filtered = LibraryReceiver::start();
    let control = LibraryReceiver::start();
    let app = spawn_app(Backend::Sqlite).await;
    let added = add_subscriber(
        &app,
        &json!({"url": filtered.hook(200, 0), "event_types": ["order.closed", "refund.succeeded"]}),
    )
    .await;
    assert_eq!(added.status().as_u16(), 201, "refund types can be chosen too");
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["event_types"], "order.closed,refund.succeeded");
    let refused = add_subscriber(
        &app,
        &json!({"url": filtered.hook(200, 0), "event_types": ["order.shipped"]}),
    )
    .await;
    assert_eq!(refused.status().as_u16(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "unknown_event_type");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("order.created") && message.contains("refund.failed"),
        "the valid types are listed: {message}"
    );
    add_subscriber(&app, &json!({ "url": control.hook(200, 0) })).await;

    // Act
    let order_no = created_and_closed(&app, "filter-1").await;
    control.wait_for_requests(2, Duration::from_secs(10)).await;
    let received = filtered.wait_for_requests(1, Duration::from_secs(10)).await;

    // Assert
    assert_eq!(events_of(&received), [(order_no, "order.closed".to_owned())]);

    // Act: the choice changed to order.created.
    let changed = update(
        &app,
        added["id"].as_str().unwrap(),
        &json!({"event_types": ["order.created"]}),
    )
    .await;
    assert_eq!(changed.status().as_u16(), 200);
    let order_no = created_and_closed(&app, "filter-2").await;
    control.wait_for_requests(4, Duration::from_secs(10)).await;
    let received = filtered.wait_for_requests(2, Duration::from_secs(10)).await;

    // Assert
    assert_eq!(events_of(&received)[1], (order_no, "order.created".to_owned()));
}

#[actix_web::test]
async fn custom_headers_arrive_and_forbidden_or_oversized_ones_are_refused() {
    // Arrange
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Sqlite).await;
    let url = receiver.hook(200, 0);
    let long_value = "v".repeat(513);
    let many: serde_json::Map<String, Value> = (0..11).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let refused_maps = [
        (json!({"Host": "evil.example"}), "Host"),
        (json!({"Content-Length": "0"}), "Content-Length"),
        (json!({"Transfer-Encoding": "chunked"}), "framing"),
        (json!({"webhook-signature": "v1,forged"}), "a signature header"),
        (json!({"Paywarden-Event-Id": "x"}), "the old signature headers"),
        (json!({"Authorization": "Bearer abc"}), "credentials"),
        (json!({"X-Forwarded-For": "10.0.0.1"}), "an origin header"),
        (json!({"X-Tenant": "a\r\nHost: evil"}), "a line break"),
        (json!({"X Tenant": "acme"}), "a malformed name"),
        (json!({"X-Tenant": long_value}), "a value over 512 bytes"),
        (Value::Object(many), "11 headers"),
    ];

    // Act / Assert: refusals store nothing.
    for (headers, case) in &refused_maps {
        let refused = add_subscriber(&app, &json!({"url": url, "headers": headers})).await;
        assert_eq!(error_code(refused, 422).await, "invalid_headers", "{case}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM subscribers").await, 0, "nothing stored");
    let added: Value = add_subscriber(
        &app,
        &json!({"url": url, "headers": {"X-Tenant": "acme", "X-Route": "eu-1 primary"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap();
    assert_eq!(added["headers"]["X-Tenant"], "acme");
    for (headers, case) in &refused_maps {
        let refused = update(&app, id, &json!({ "headers": headers })).await;
        assert_eq!(error_code(refused, 422).await, "invalid_headers", "{case}");
    }
    let refused = update(&app, id, &json!({"paused": true, "event_types": ["order.shipped"]})).await;
    assert_eq!(error_code(refused, 422).await, "unknown_event_type");

    // Act: a delivery, with the headers as they were (no refusal changed them).
    app.create_order(&order_body("headers-1")).await;
    let request = &receiver.wait_for_requests(1, Duration::from_secs(10)).await[0];

    // Assert
    assert_eq!(request["headers"]["x-tenant"], "acme");
    assert_eq!(request["headers"]["x-route"], "eu-1 primary");
    let secret = added["secret"].as_str().unwrap();
    assert_eq!(receiver.verify_with(secret).await[0]["ok"], true);
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get_as(ADMIN_TOKEN, path).await;
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// Waits until the subscriber's delivery log shows `count` deliveries in `status`.
async fn wait_for_logged(app: &TestApp, id: &str, status: &str, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let listed = get_json(app, &format!("/admin/subscribers/{id}/deliveries?status={status}")).await;
        let deliveries = listed["deliveries"].as_array().unwrap().clone();
        if deliveries.len() >= count {
            return deliveries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {} {status} deliveries logged",
            deliveries.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn every_attempt_is_logged_and_listed_per_subscriber_and_per_event() {
    // Arrange: a receiver that fails twice first.
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Postgres).await;
    let added: Value = add_subscriber(
        &app,
        &json!({"url": receiver.hook(200, 2), "event_types": ["order.created"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap();

    // Act
    app.create_order(&order_body("log-1")).await;
    let delivered = wait_for_logged(&app, id, "delivered", 1).await;

    // Assert: three attempts, each with its status, latency, answer and error.
    let attempts = delivered[0]["attempts"].as_array().unwrap();
    let codes: Vec<i64> = attempts.iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 200], "{attempts:?}");
    for attempt in attempts {
        assert!(attempt["latency_ms"].as_i64().unwrap() >= 0);
        assert!(attempt["attempted_at"].is_string());
        assert!(attempt["response_body"].as_str().unwrap().contains("answered"));
    }
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(attempts[2]["error"], Value::Null);
    let event_id = delivered[0]["event_id"].as_str().unwrap();
    let requests = receiver.requests().await;
    assert!(requests.iter().all(|r| r["headers"]["webhook-id"] == event_id));
    let by_event = get_json(&app, &format!("/admin/events/{event_id}/deliveries")).await;
    assert_eq!(by_event["deliveries"][0]["attempts"].as_array().unwrap().len(), 3);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let since_future = format!("since={future}");
    for (query, expected) in [
        ("status=dead", 0),
        ("event_type=order.paid", 0),
        ("event_type=order.created", 1),
        (since_future.as_str(), 0),
        ("", 1),
    ] {
        let listed = get_json(&app, &format!("/admin/subscribers/{id}/deliveries?{query}")).await;
        assert_eq!(listed["deliveries"].as_array().unwrap().len(), expected, "{query}");
    }
    let refused = app
        .get_as(ADMIN_TOKEN, &format!("/admin/subscribers/{id}/deliveries?status=lost"))
        .await;
    assert_eq!(error_code(refused, 400).await, "invalid_query");
    let missing = app.get_as(ADMIN_TOKEN, "/admin/subscribers/sub_none/deliveries").await;
    assert_eq!(error_code(missing, 404).await, "not_found");
}

async fn replay(app: &TestApp, id: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/admin/subscribers/{id}/replay")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_replay_resends_a_range_in_order_with_the_original_ids() {
    // Arrange: two orders' events delivered, with a moment between them.
    let receiver = LibraryReceiver::start();
    let mut settings = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.outbox.replay_max_events = 3;
    let app = crate::helpers::spawn_app_with(settings).await;
    let added: Value = add_subscriber(&app, &json!({ "url": receiver.hook(200, 0) }))
        .await
        .json()
        .await
        .unwrap();
    let id = added["id"].as_str().unwrap();
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let first = created_and_closed(&app, "replay-1").await;
    let original = receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let between = chrono::Utc::now();
    created_and_closed(&app, "replay-2").await;
    receiver.wait_for_requests(4, Duration::from_secs(10)).await;
    let ended = chrono::Utc::now() + chrono::Duration::seconds(1);

    // Act: the first order's range again.
    let replayed = replay(&app, id, &json!({"since": started, "until": between})).await;

    // Assert: its two events, again in order, with their original ids.
    assert_eq!(replayed.status().as_u16(), 202);
    assert_eq!(replayed.json::<Value>().await.unwrap()["count"], 2);
    let requests = receiver.wait_for_requests(6, Duration::from_secs(10)).await;
    assert_eq!(
        events_of(&requests[4..]),
        [
            (first.clone(), "order.created".to_owned()),
            (first, "order.closed".to_owned())
        ]
    );
    for (again, before) in requests[4..].iter().zip(&original) {
        assert_eq!(again["headers"]["webhook-id"], before["headers"]["webhook-id"]);
    }
    for result in receiver.verify_with(added["secret"].as_str().unwrap()).await {
        assert_eq!(result["ok"], true, "{result}");
    }

    // Act / Assert: one type over the whole range.
    let replayed = replay(
        &app,
        id,
        &json!({"since": started, "until": ended, "event_types": ["order.closed"]}),
    )
    .await;
    assert_eq!(replayed.json::<Value>().await.unwrap()["count"], 2);
    let requests = receiver.wait_for_requests(8, Duration::from_secs(10)).await;
    assert!(events_of(&requests[6..]).iter().all(|(_, t)| t == "order.closed"));

    // Bad ranges change nothing.
    for (body, code, case) in [
        (json!({"since": between, "until": started}), "invalid_range", "reversed"),
        (
            json!({"since": started, "until": ended}),
            "invalid_range",
            "over replay_max_events (3)",
        ),
        (
            json!({"since": started, "until": between, "event_types": ["order.shipped"]}),
            "unknown_event_type",
            "an unknown type",
        ),
    ] {
        assert_eq!(error_code(replay(&app, id, &body).await, 422).await, code, "{case}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'pending'")
            .await,
        0,
        "nothing queued"
    );
}

#[actix_web::test]
async fn a_subscriber_failing_for_the_configured_time_is_disabled_and_kept() {
    // Arrange: disabled after one second of failures (retries at 0.2, 0.4, 0.8 s).
    let receiver = LibraryReceiver::start();
    let mut settings = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.outbox.disable_after_failing = Duration::from_secs(1);
    let app = crate::helpers::spawn_app_with(settings).await;
    let added: Value = add_subscriber(&app, &json!({ "url": receiver.hook(503, 0) }))
        .await
        .json()
        .await
        .unwrap();
    let id = added["id"].as_str().unwrap();

    // Act
    app.create_order(&order_body("failing-1")).await;
    let started = Instant::now();
    let subscriber = loop {
        let listed = get_json(&app, "/admin/subscribers").await;
        let subscriber = listed["subscribers"][0].clone();
        if subscriber["enabled"] == false {
            break subscriber;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never disabled: {subscriber}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Assert: disabled with its reason, kept and counted.
    assert_eq!(subscriber["id"], id);
    assert!(subscriber["disabled_reason"].as_str().unwrap().contains("failed since"));
    assert!(subscriber["disabled_at"].is_string());
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.ends_with("webhook_subscribers_disabled 1")),
        "{metrics}"
    );

    // Act: an operator enables it again.
    let sent = receiver.requests().await.len();
    let enabled = update(&app, id, &json!({"enabled": true})).await;
    assert_eq!(enabled.status().as_u16(), 200);
    let enabled: Value = enabled.json().await.unwrap();
    app.create_order(&order_body("failing-2")).await;

    // Assert: its record cleared, and the next event goes out.
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    let requests = receiver.wait_for_requests(sent + 1, Duration::from_secs(10)).await;
    let body: Value = serde_json::from_str(requests[sent]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["out_business_id"], "failing-2");
}

#[actix_web::test]
async fn a_receiver_answering_410_gone_disables_the_endpoint_at_once() {
    // Arrange
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Sqlite).await;
    let added: Value = add_subscriber(
        &app,
        &json!({"url": receiver.hook(410, 0), "event_types": ["order.created"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap();

    // Act
    app.create_order(&order_body("gone-1")).await;
    let dead = wait_for_logged(&app, id, "dead", 1).await;

    // Assert: one attempt, no retry, the subscriber disabled with the reason.
    assert_eq!(dead[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(receiver.requests().await.len(), 1);
    let listed = get_json(&app, "/admin/subscribers").await;
    let subscriber = &listed["subscribers"][0];
    assert_eq!(subscriber["enabled"], false);
    assert!(subscriber["disabled_reason"].as_str().unwrap().contains("410"));
}

#[actix_web::test]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked() {
    // Arrange: the first answer is 429 with Retry-After: 2 (the test schedule says 0.2 s).
    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("{}&fail_status=429&retry_after=2", receiver.hook(200, 1));
    add_subscriber(&app, &json!({"url": url, "event_types": ["order.created"]})).await;

    // Act
    app.create_order(&order_body("later-1")).await;
    let requests = receiver.wait_for_requests(2, Duration::from_secs(10)).await;

    // Assert
    assert_eq!(requests[0]["answered"], 429);
    assert_eq!(requests[1]["answered"], 200);
    let waited = requests[1]["received_at"].as_f64().unwrap() - requests[0]["received_at"].as_f64().unwrap();
    assert!(waited >= 1.9, "retried after {waited} s");
}

/// A merchant's request with its API key; DELETE has no body.
async fn delete_as(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client.delete(app.url(path)).bearer_auth(key).send().await.unwrap()
}

#[actix_web::test]
async fn a_merchant_manages_its_own_endpoints_and_sees_only_its_events() {
    use crate::helpers::MERCHANT_B_KEY;

    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Postgres).await;

    // Bad input is refused and stores nothing.
    for (body, code) in [
        (json!({"url": "https://user:pass@shop.example/hook"}), "invalid_url"),
        (
            json!({"url": receiver.hook(200, 0), "event_types": ["order.teleported"]}),
            "unknown_event_type",
        ),
        (
            json!({"url": receiver.hook(200, 0), "headers": {"Host": "elsewhere"}}),
            "invalid_headers",
        ),
    ] {
        let refused = app.post_as(MERCHANT_A_KEY, "/v1/webhook-endpoints", Some(&body)).await;
        assert_eq!(error_code(refused, 422).await, code, "{body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM subscribers").await, 0);

    // Merchant A adds an endpoint with its API key; the secret is shown once.
    let created = app
        .post_as(
            MERCHANT_A_KEY,
            "/v1/webhook-endpoints",
            Some(&json!({"url": receiver.hook(200, 0), "event_types": ["order.created"]})),
        )
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["merchant_id"], "merchant_a");
    assert_eq!(created["signature_scheme"], "standard-webhooks-v1");
    let listed: Value = app
        .get_as(MERCHANT_A_KEY, "/v1/webhook-endpoints")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["subscribers"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret), "never listed with its secret");

    // Another merchant neither sees nor touches it.
    let theirs: Value = app
        .get_as(MERCHANT_B_KEY, "/v1/webhook-endpoints")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["subscribers"], json!([]));
    let path = format!("/v1/webhook-endpoints/{id}");
    assert_eq!(
        error_code(delete_as(&app, MERCHANT_B_KEY, &path).await, 404).await,
        "not_found"
    );
    let rotate = app
        .post_as(MERCHANT_B_KEY, &format!("{path}/rotate-secret"), Some(&json!({})))
        .await;
    assert_eq!(error_code(rotate, 404).await, "not_found");
    let ping = app.post_as(MERCHANT_B_KEY, &format!("{path}/test"), None).await;
    assert_eq!(error_code(ping, 404).await, "not_found");
    assert!(receiver.requests().await.is_empty(), "nothing was sent for merchant B");

    // The test ping arrives signed: the library verifies it with the endpoint's secret.
    let ping = app.post_as(MERCHANT_A_KEY, &format!("{path}/test"), None).await;
    assert_eq!(ping.status().as_u16(), 200);
    let ping: Value = ping.json().await.unwrap();
    assert_eq!(
        (ping["status_code"].as_u64(), ping["delivered"].as_bool()),
        (Some(200), Some(true))
    );
    let requests = receiver.wait_for_requests(1, Duration::from_secs(5)).await;
    let body: Value = serde_json::from_str(requests[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["endpoint_id"].as_str()),
        (Some("ping"), Some(id.as_str()))
    );
    assert_eq!(receiver.verify_with(&secret).await[0]["ok"], true);

    // Merchant B's order does not reach it; merchant A's does.
    let other = app.post_order(MERCHANT_B_KEY, &order_body("endpoint-b")).await;
    assert_eq!(other.status().as_u16(), 201);
    let mine = app.create_order(&order_body("endpoint-a")).await;
    let requests = receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let event: Value = serde_json::from_str(requests[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (event["order_no"].clone(), event["merchant_id"].as_str()),
        (mine["order_no"].clone(), Some("merchant_a"))
    );
    // B's event was fanned out before A's (the relay goes in outbox order): it went nowhere.
    assert_eq!(receiver.requests().await.len(), 2, "merchant B's event never came");

    // Rotation, within its bounds only; then removal.
    let refused = app
        .post_as(
            MERCHANT_A_KEY,
            &format!("{path}/rotate-secret"),
            Some(&json!({"overlap_seconds": 0})),
        )
        .await;
    assert_eq!(error_code(refused, 422).await, "invalid_overlap");
    let rotated = app
        .post_as(MERCHANT_A_KEY, &format!("{path}/rotate-secret"), Some(&json!({})))
        .await;
    assert_eq!(rotated.status().as_u16(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    assert_eq!(delete_as(&app, MERCHANT_A_KEY, &path).await.status().as_u16(), 204);
    let listed: Value = app
        .get_as(MERCHANT_A_KEY, "/v1/webhook-endpoints")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["subscribers"], json!([]));
}

#[actix_web::test]
async fn the_console_shows_a_subscriber_s_log_and_sends_a_test_ping_and_a_replay() {
    use crate::console::{csrf_of, page, sign_in};

    let receiver = LibraryReceiver::start();
    let app = spawn_app(Backend::Postgres).await;
    let added: Value = add_subscriber(
        &app,
        &json!({"url": receiver.hook(200, 0), "event_types": ["order.created"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    let secret = added["secret"].as_str().unwrap().to_owned();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    app.create_order(&order_body("console-log")).await;
    let first = receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let event_id = first[0]["headers"]["webhook-id"].as_str().unwrap().to_owned();
    let cookie = sign_in(&app, "alice").await;
    let path = format!("/admin/ui/subscribers/{id}");

    // The log: the delivery, its event and the receiver's answer.
    let started = Instant::now();
    let html = loop {
        let (status, html) = page(&app, &cookie, &path).await;
        assert_eq!(status, 200);
        if html.contains("<strong>200</strong>") {
            break html;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the attempt is not logged: {html}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(html.contains("order.created") && html.contains(&event_id));
    let csrf = csrf_of(&html);
    let post = |action: &str, fields: Vec<(&'static str, String)>| {
        let request = app
            .client
            .post(app.url(&format!("{path}/{action}")))
            .header("Cookie", cookie.clone())
            .form(&fields);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // The test button: a signed ping, and the receiver's answer on the page.
    let (status, html) = post("test", vec![("csrf", csrf.clone())]).await;
    assert_eq!(status, 200);
    assert!(html.contains("The receiver answered 200"), "{html}");
    let requests = receiver.wait_for_requests(2, Duration::from_secs(5)).await;
    let ping: Value = serde_json::from_str(requests[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(ping["type"], "ping");

    // The replay: the event again, under its own id; a range that does not read is refused.
    let format = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%S").to_string();
    let (status, _) = post(
        "replay",
        vec![
            ("csrf", csrf.clone()),
            ("since", "yesterday".to_owned()),
            ("until", format(chrono::Utc::now())),
        ],
    )
    .await;
    assert_eq!(status, 422);
    let until = chrono::Utc::now() + chrono::Duration::seconds(5);
    let (status, html) = post(
        "replay",
        vec![("csrf", csrf), ("since", format(before)), ("until", format(until))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("1 event(s) queued again"), "{html}");
    let requests = receiver.wait_for_requests(3, Duration::from_secs(10)).await;
    assert_eq!(requests[2]["headers"]["webhook-id"], event_id.as_str());
    for verified in receiver.verify_with(&secret).await {
        assert_eq!(verified["ok"], true, "{verified}");
    }
}

#[actix_web::test]
async fn a_disabled_endpoint_is_announced_to_the_merchant_s_other_endpoints() {
    // Arrange: two endpoints of merchant A; the failing one is disabled after a second. The
    // healthy one takes only `order.paid`, so the announcement is all it gets.
    let failing = LibraryReceiver::start();
    let healthy = LibraryReceiver::start();
    let mut settings = crate::helpers::test_settings(Backend::Postgres).await;
    settings.outbox.disable_after_failing = Duration::from_secs(1);
    let app = crate::helpers::spawn_app_with(settings).await;
    let add = |url: String, types: Value| {
        let app = &app;
        async move {
            let added = app
                .post_as(
                    MERCHANT_A_KEY,
                    "/v1/webhook-endpoints",
                    Some(&json!({"url": url, "event_types": types})),
                )
                .await;
            assert_eq!(added.status().as_u16(), 201);
            added.json::<Value>().await.unwrap()
        }
    };
    let broken = add(failing.hook(503, 0), json!(["order.created"])).await;
    let other = add(healthy.hook(200, 0), json!(["order.paid"])).await;

    // Act
    app.create_order(&order_body("announce-1")).await;

    // Assert: the other endpoint hears of it, signed with its own secret.
    let requests = healthy.wait_for_requests(1, Duration::from_secs(15)).await;
    let body: Value = serde_json::from_str(requests[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "webhook_endpoint.disabled");
    assert_eq!(body["endpoint_id"], broken["id"]);
    assert_eq!(body["merchant_id"], "merchant_a");
    assert!(body["reason"].as_str().unwrap().contains("failed since"), "{body}");
    assert_eq!(
        healthy.verify_with(other["secret"].as_str().unwrap()).await[0]["ok"],
        true
    );
}
