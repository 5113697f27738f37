//! `Idempotency-Key` on the routes that create or change something: a replay answers the first
//! response and changes nothing; the same key for another request, or while the first is in
//! flight, is a 409; keys are per merchant (and the operators'); a bad key is a 400 that writes
//! nothing; an answer that asks to be retried releases the key.

use std::time::Duration;

use actors::store::idempotency_keys::Fingerprint;
use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY, MERCHANT_B_KEY,
};

/// What a test compares between a first answer and its replay.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    replayed: bool,
    body: Value,
}

impl TestApp {
    /// `POST path` as `token` with an `Idempotency-Key`.
    async fn post_keyed(&self, token: &str, path: &str, key: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    async fn keyed(&self, token: &str, path: &str, key: &str, body: Option<&Value>) -> Answer {
        let response = self.post_keyed(token, path, key, body).await;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let status = response.status().as_u16();
        let content_type = header("content-type");
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        Answer {
            status,
            content_type,
            replayed,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    async fn order_no_of(&self, out_business_id: &str, key: &str) -> String {
        let response = self.post_order(key, &order_body(out_business_id)).await;
        assert_eq!(response.status().as_u16(), 201, "creating {out_business_id}");
        let order: Value = response.json().await.unwrap();
        order["order_no"].as_str().unwrap().to_owned()
    }

    async fn attempts_of(&self, order_no: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM payment_attempts a JOIN orders o ON o.id = a.order_id WHERE o.order_no = '{order_no}'"
        ))
        .await
    }

    async fn logs_of(&self, order_no: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM order_logs l JOIN orders o ON o.id = l.order_id WHERE o.order_no = '{order_no}'"
        ))
        .await
    }

    async fn keys_stored(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM idempotency_keys").await
    }
}

fn sandbox() -> Value {
    json!({ "provider": "sandbox" })
}

on_both_backends!(a_replayed_attempt_answers_the_first_response_and_starts_nothing);

async fn a_replayed_attempt_answers_the_first_response_and_starts_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-replay", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");

    // Act
    let first = app.keyed(MERCHANT_A_KEY, &path, "attempt-1", Some(&sandbox())).await;
    let logs = app.logs_of(&order_no).await;
    let again = app.keyed(MERCHANT_A_KEY, &path, "attempt-1", Some(&sandbox())).await;

    // Assert
    assert_eq!(first.status, 201, "{first:?}");
    assert!(!first.replayed);
    assert!(again.replayed, "the replay says so");
    assert_eq!(
        Answer {
            replayed: false,
            ..again
        },
        first,
        "the same status, content type and body"
    );
    assert_eq!(app.attempts_of(&order_no).await, 1, "one attempt");
    assert_eq!(app.logs_of(&order_no).await, logs, "no log row added");
    assert_eq!(app.keys_stored().await, 1);
}

on_both_backends!(the_same_key_with_another_request_is_409_and_does_nothing);

async fn the_same_key_with_another_request_is_409_and_does_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-reuse", MERCHANT_A_KEY).await;
    let other_order = app.order_no_of("idem-reuse-2", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");
    let first = app.keyed(MERCHANT_A_KEY, &path, "k-1", Some(&sandbox())).await;
    assert_eq!(first.status, 201);

    // Act / Assert: another body, another path, another route.
    let cases = [
        (path.clone(), Some(json!({ "provider": "wechat" })), "another body"),
        (
            format!("/v1/orders/{other_order}/payments"),
            Some(sandbox()),
            "another order",
        ),
        (format!("/v1/orders/{order_no}/cancel"), None, "another route"),
    ];
    for (path, body, case) in cases {
        let response = app.post_keyed(MERCHANT_A_KEY, &path, "k-1", body.as_ref()).await;
        assert_eq!(error_code(response, 409).await, "idempotency_key_reused", "{case}");
    }
    assert_eq!(app.attempts_of(&order_no).await, 1);
    assert_eq!(app.attempts_of(&other_order).await, 0);
    let status: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(status["status"], "pending", "the cancel did not run");

    // The same parameters serialized in another key order and layout are the same request.
    let replay = app
        .client
        .post(app.url(&path))
        .bearer_auth(MERCHANT_A_KEY)
        .header("Idempotency-Key", "k-1")
        .header("content-type", "application/json")
        .body("{ \"provider\" :\n \"sandbox\" }")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}

on_both_backends!(a_request_still_in_flight_holds_its_key_until_its_lease_lapses);

/// Another node is running the key's first request (its row in flight, lease live): 409 with
/// Retry-After. The node died (lease lapsed): the retry takes the key over and runs.
async fn a_request_still_in_flight_holds_its_key_until_its_lease_lapses(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-inflight", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");
    let body = serde_json::to_vec(&sandbox()).unwrap();
    let fingerprint = Fingerprint::of("POST", &path, &body);
    let in_flight = |locked_until: &str| {
        format!(
            "INSERT INTO idempotency_keys (principal, key, fingerprint, request_method, request_path, status, \
             lock_token, locked_until, created_at, expires_at) VALUES ('merchant:merchant_a', 'busy', '{}', 'POST', \
             '{path}', 'in_flight', 'other-node', {locked_until}, {}, {})",
            fingerprint.as_str(),
            hours_from_now(backend, 0),
            in_an_hour(backend),
        )
    };
    app.execute(&in_flight(&in_an_hour(backend))).await;

    // Act
    let busy = app.post_keyed(MERCHANT_A_KEY, &path, "busy", Some(&sandbox())).await;

    // Assert
    assert!(busy.headers().contains_key("retry-after"), "{busy:?}");
    assert_eq!(error_code(busy, 409).await, "idempotency_key_in_use");
    assert_eq!(app.attempts_of(&order_no).await, 0);

    // Arrange: the holder's lease lapsed.
    app.execute("DELETE FROM idempotency_keys").await;
    app.execute(&in_flight(&an_hour_ago(backend))).await;

    // Act
    let taken_over = app.keyed(MERCHANT_A_KEY, &path, "busy", Some(&sandbox())).await;
    let replay = app.keyed(MERCHANT_A_KEY, &path, "busy", Some(&sandbox())).await;

    // Assert
    assert_eq!(taken_over.status, 201, "{taken_over:?}");
    assert!(replay.replayed);
    assert_eq!(replay.body, taken_over.body);
    assert_eq!(app.attempts_of(&order_no).await, 1);
}

/// An SQL expression for now plus `hours`, as each backend stores a timestamp.
fn hours_from_now(backend: Backend, hours: i32) -> String {
    match backend {
        Backend::Postgres => format!("CURRENT_TIMESTAMP + INTERVAL '{hours} hours'"),
        Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '{hours:+} hours')"),
    }
}

fn in_an_hour(backend: Backend) -> String {
    hours_from_now(backend, 1)
}

fn an_hour_ago(backend: Backend) -> String {
    hours_from_now(backend, -1)
}

#[actix_web::test]
async fn two_concurrent_requests_with_one_key_run_once_and_the_other_gets_409() {
    // Arrange: the provider takes a while, so the first request is still running.
    let app = spawn_app(Backend::Postgres).await;
    let order_no = app.order_no_of("idem-concurrent", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");
    app.sandbox_faults(json!({ "mode": "timeout", "delay_ms": 1500 })).await;

    // Act
    let body = sandbox();
    let first = app.post_keyed(MERCHANT_A_KEY, &path, "together", Some(&body));
    let second = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_keyed(MERCHANT_A_KEY, &path, "together", Some(&body)).await
    };
    let (first, second) = tokio::join!(first, second);

    // Assert
    assert_ne!(first.status().as_u16(), 409, "the first request ran");
    assert_eq!(error_code(second, 409).await, "idempotency_key_in_use");
    assert_eq!(app.attempts_of(&order_no).await, 1, "one attempt");
}

on_both_backends!(keys_are_per_merchant);

async fn keys_are_per_merchant(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let a_order = app.order_no_of("idem-a", MERCHANT_A_KEY).await;
    let b_order = app.order_no_of("idem-b", MERCHANT_B_KEY).await;

    // Act: both merchants use one key, for their own orders.
    let a = app
        .keyed(
            MERCHANT_A_KEY,
            &format!("/v1/orders/{a_order}/payments"),
            "shared",
            Some(&sandbox()),
        )
        .await;
    let b = app
        .keyed(
            MERCHANT_B_KEY,
            &format!("/v1/orders/{b_order}/payments"),
            "shared",
            Some(&sandbox()),
        )
        .await;
    // B's key replays B's answer, and never A's.
    let b_again = app
        .keyed(
            MERCHANT_B_KEY,
            &format!("/v1/orders/{b_order}/payments"),
            "shared",
            Some(&sandbox()),
        )
        .await;
    let b_on_a = app
        .post_keyed(
            MERCHANT_B_KEY,
            &format!("/v1/orders/{a_order}/payments"),
            "shared",
            Some(&sandbox()),
        )
        .await;

    // Assert
    assert_eq!((a.status, b.status), (201, 201), "{a:?} {b:?}");
    assert_ne!(a.body["pay_no"], b.body["pay_no"]);
    assert_eq!(b_again.body, b.body);
    assert_eq!(error_code(b_on_a, 409).await, "idempotency_key_reused");
    assert_eq!(app.attempts_of(&a_order).await, 1);
    assert_eq!(app.attempts_of(&b_order).await, 1);
    assert_eq!(app.keys_stored().await, 2);
}

on_both_backends!(an_invalid_key_is_a_400_and_writes_nothing);

async fn an_invalid_key_is_a_400_and_writes_nothing(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-invalid", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");
    let before = app.row_counts().await;
    let too_long = "k".repeat(256);
    let cases: Vec<(Vec<&[u8]>, &str)> = vec![
        (vec![&b""[..]], "empty"),
        (vec![too_long.as_bytes()], "256 characters"),
        (vec![&b"tab\tinside"[..]], "a control character"),
        (vec![&b"caf\xc3\xa9"[..]], "not ASCII"),
        (vec![&b"one"[..], &b"two"[..]], "two headers"),
    ];

    for (values, case) in cases {
        // Act
        let mut request = app
            .client
            .post(app.url(&path))
            .bearer_auth(MERCHANT_A_KEY)
            .json(&sandbox());
        for value in values {
            request = request.header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let response = request.send().await.unwrap();

        // Assert
        assert_eq!(error_code(response, 400).await, "invalid_idempotency_key", "{case}");
    }
    assert_eq!(app.row_counts().await, before, "nothing written");
    assert_eq!(app.keys_stored().await, 0);
}

on_both_backends!(a_cancel_with_a_key_is_replayed_rather_than_refused_as_not_pending);

async fn a_cancel_with_a_key_is_replayed_rather_than_refused_as_not_pending(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-cancel", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/cancel");

    // Act
    let first = app.keyed(MERCHANT_A_KEY, &path, "cancel-1", None).await;
    let logs = app.logs_of(&order_no).await;
    let again = app.keyed(MERCHANT_A_KEY, &path, "cancel-1", None).await;
    let without_key = app.post_as(MERCHANT_A_KEY, &path, None).await;

    // Assert
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["status"], "closed");
    assert!(again.replayed);
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(app.logs_of(&order_no).await, logs);
    assert_eq!(
        error_code(without_key, 409).await,
        "order_not_pending",
        "a plain second cancel"
    );
}

on_both_backends!(a_refund_with_a_key_is_replayed_with_its_first_answer);

async fn a_refund_with_a_key_is_replayed_with_its_first_answer(backend: Backend) {
    // Arrange: a paid order.
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("idem-refund", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
    let path = format!("/v1/orders/{order_no}/refunds");
    let body = json!({ "out_refund_id": "r-1", "amount": 100, "reason": "returned" });

    // Act
    let first = app.keyed(MERCHANT_A_KEY, &path, "refund-1", Some(&body)).await;
    let again = app.keyed(MERCHANT_A_KEY, &path, "refund-1", Some(&body)).await;
    let other = json!({ "out_refund_id": "r-2", "amount": 100, "reason": "returned" });
    let reused = app.post_keyed(MERCHANT_A_KEY, &path, "refund-1", Some(&other)).await;

    // Assert: the first answer (201), where the refund's own idempotency would answer 200.
    assert_eq!(first.status, 201, "{first:?}");
    assert!(again.replayed);
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(error_code(reused, 409).await, "idempotency_key_reused");
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 1);
}

on_both_backends!(an_admin_action_with_a_key_is_replayed_and_the_operators_keys_are_their_own);

async fn an_admin_action_with_a_key_is_replayed_and_the_operators_keys_are_their_own(backend: Backend) {
    // Arrange: merchant A already used the key for something else.
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-admin", MERCHANT_A_KEY).await;
    let merchant_use = app
        .keyed(
            MERCHANT_A_KEY,
            &format!("/v1/orders/{order_no}/payments"),
            "op-1",
            Some(&sandbox()),
        )
        .await;
    assert_eq!(merchant_use.status, 201);
    let path = format!("/admin/orders/{order_no}/force-close");
    let body = json!({ "reason": "fraud suspected" });

    // Act
    let first = app.keyed(ADMIN_TOKEN, &path, "op-1", Some(&body)).await;
    let logs = app.logs_of(&order_no).await;
    let again = app.keyed(ADMIN_TOKEN, &path, "op-1", Some(&body)).await;

    // Assert
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["status"], "closed");
    assert!(again.replayed);
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(app.logs_of(&order_no).await, logs, "closed once");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE principal = 'admin'")
            .await,
        1
    );
}

on_both_backends!(an_answer_that_asks_for_a_retry_is_not_stored_and_the_retry_runs);

async fn an_answer_that_asks_for_a_retry_is_not_stored_and_the_retry_runs(backend: Backend) {
    // Arrange: the provider fails.
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-5xx", MERCHANT_A_KEY).await;
    let path = format!("/v1/orders/{order_no}/payments");
    app.sandbox_faults(json!({ "mode": "error" })).await;

    // Act
    let failed = app.keyed(MERCHANT_A_KEY, &path, "retry-me", Some(&sandbox())).await;
    let stored_after_failure = app.keys_stored().await;
    app.sandbox_faults(json!({ "mode": "none" })).await;
    let retried = app.keyed(MERCHANT_A_KEY, &path, "retry-me", Some(&sandbox())).await;
    let replay = app.keyed(MERCHANT_A_KEY, &path, "retry-me", Some(&sandbox())).await;

    // Assert
    assert!(failed.status >= 500, "{failed:?}");
    assert_eq!(stored_after_failure, 0, "the key was released");
    assert_eq!(retried.status, 201, "{retried:?}");
    assert!(!retried.replayed, "the retry ran");
    assert!(replay.replayed);
    assert_eq!(replay.body, retried.body);
}

on_both_backends!(a_key_past_its_retention_is_free_again);

async fn a_key_past_its_retention_is_free_again(backend: Backend) {
    // Arrange: the key was used 25 hours ago.
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-expired", MERCHANT_A_KEY).await;
    let first = app
        .keyed(
            MERCHANT_A_KEY,
            &format!("/v1/orders/{order_no}/payments"),
            "old",
            Some(&sandbox()),
        )
        .await;
    assert_eq!(first.status, 201);
    app.execute(&format!(
        "UPDATE idempotency_keys SET expires_at = {}",
        an_hour_ago(backend)
    ))
    .await;

    // Act: the key for another request.
    let cancel = app
        .keyed(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), "old", None)
        .await;

    // Assert
    assert_eq!(cancel.status, 200, "{cancel:?}");
    assert!(!cancel.replayed);
}

on_both_backends!(the_sweep_deletes_keys_past_their_retention_only);

async fn the_sweep_deletes_keys_past_their_retention_only(backend: Backend) {
    // Arrange: one key in use, one past its retention.
    let app = spawn_app(backend).await;
    let order_no = app.order_no_of("idem-sweep", MERCHANT_A_KEY).await;
    for key in ["live", "old"] {
        let answer = app
            .keyed(
                MERCHANT_A_KEY,
                &format!("/v1/orders/{order_no}/payments"),
                key,
                Some(&sandbox()),
            )
            .await;
        assert_eq!(answer.status, 201);
    }
    app.execute(&format!(
        "UPDATE idempotency_keys SET expires_at = {} WHERE key = 'old'",
        an_hour_ago(backend)
    ))
    .await;

    // Act
    let deleted = actors::store::idempotency_keys::delete_expired(&app.db).await.unwrap();

    // Assert
    assert_eq!(deleted, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'live'")
            .await,
        1
    );
    assert_eq!(app.keys_stored().await, 1);
}
