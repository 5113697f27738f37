use serde_json::Value;

use crate::helpers::{error_code, on_both_backends, order_body, spawn_app, Backend, MERCHANT_A_KEY};

on_both_backends!(
    every_payment_attempt_gets_a_new_pay_no,
    payment_attempt_is_refused_when_the_order_is_not_pending,
    payment_attempt_is_refused_after_the_deadline,
    qr_png_decodes_back_to_the_code_url,
    unknown_provider_is_refused_and_writes_nothing,
    a_provider_failure_reaches_the_client_as_an_opaque_error_with_a_request_id,
);

async fn start_payment(app: &crate::helpers::TestApp, order_no: &str) -> Value {
    let response = app.post_payment(MERCHANT_A_KEY, order_no, "sandbox").await;
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

async fn every_payment_attempt_gets_a_new_pay_no(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.create_order(&order_body("pay-1")).await;
    let order_no = order["order_no"].as_str().unwrap();

    let first = start_payment(&app, order_no).await;
    let second = start_payment(&app, order_no).await;

    assert_ne!(first["pay_no"], second["pay_no"]);
    for attempt in [&first, &second] {
        assert_eq!(attempt["provider"], "sandbox");
        assert_eq!(attempt["status"], "pending");
        assert_eq!(attempt["amount"], 2999);
        let pay_no = attempt["pay_no"].as_str().expect("pay_no is a string");
        assert!(attempt["code_url"].as_str().unwrap().ends_with(pay_no));
        assert!(attempt["qr_png_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/payments/{pay_no}/qr.png")));
    }
    let fetched: Value = app.get_order(MERCHANT_A_KEY, order_no).await.json().await.unwrap();
    assert_eq!(fetched["payments"].as_array().unwrap().len(), 2);
    let logged = app.admin_order(order_no).await["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|log| log["event"] == "attempt.created")
        .count();
    assert_eq!(logged, 2);
}

async fn payment_attempt_is_refused_when_the_order_is_not_pending(backend: Backend) {
    let app = spawn_app(backend).await;
    for status in ["paid", "closed"] {
        let order = app.create_order(&order_body(&format!("pay-2-{status}"))).await;
        let order_no = order["order_no"].as_str().unwrap();
        // Arrange a final order directly: the API reaches these states through the expiry
        // flow, which is not what this test is about.
        app.execute(&format!("UPDATE orders SET status = '{status}' WHERE id = {order_no}"))
            .await;
        let before = app.row_counts().await;

        let response = app.post_payment(MERCHANT_A_KEY, order_no, "sandbox").await;

        assert_eq!(error_code(response, 409).await, "order_not_pending", "order {status}");
        assert_eq!(app.row_counts().await, before);
    }
}

async fn payment_attempt_is_refused_after_the_deadline(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = order_body("pay-3");
    body["ttl_seconds"] = 1.into();
    let order = app.create_order(&body).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let response = app
        .post_payment(MERCHANT_A_KEY, order["order_no"].as_str().unwrap(), "sandbox")
        .await;

    // Either the order actor has already closed it, or its close is under way.
    let code = error_code(response, 409).await;
    assert!(
        ["order_expired", "order_not_pending"].contains(&code.as_str()),
        "{code}"
    );
    assert_eq!(app.row_counts().await.payment_attempts, 0);
}

async fn qr_png_decodes_back_to_the_code_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.create_order(&order_body("pay-4")).await;
    let attempt = start_payment(&app, order["order_no"].as_str().unwrap()).await;

    let response = app.get_qr(MERCHANT_A_KEY, attempt["pay_no"].as_str().unwrap()).await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap();
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("a valid PNG")
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, content) = grids[0].decode().expect("the QR code decodes");
    assert_eq!(content, attempt["code_url"].as_str().unwrap());
}

async fn unknown_provider_is_refused_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.create_order(&order_body("pay-5")).await;
    let order_no = order["order_no"].as_str().unwrap();
    let before = app.row_counts().await;

    let unknown = app.post_payment(MERCHANT_A_KEY, order_no, "paypal").await;
    let not_enabled = app.post_payment(MERCHANT_A_KEY, order_no, "wechat").await;

    assert_eq!(error_code(unknown, 422).await, "unknown_provider");
    assert_eq!(error_code(not_enabled, 422).await, "provider_unavailable");
    assert_eq!(app.row_counts().await, before);
}

/// Before the fix the gateway's own text reached the client ("the payment provider failed:
/// SYSTEM_ERROR: ..."); for Alipay that text can hold the signed request.
async fn a_provider_failure_reaches_the_client_as_an_opaque_error_with_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.create_order(&order_body("opaque-1")).await;
    let order_no = order["order_no"].as_str().unwrap();
    app.sandbox_faults(serde_json::json!({"mode": "error"})).await;

    let response = app.post_payment(MERCHANT_A_KEY, order_no, "sandbox").await;

    assert_eq!(response.status().as_u16(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_error");
    let message = body["error"]["message"].as_str().unwrap();
    for leaked in ["SYSTEM_ERROR", "sandbox fault injected", "http://", "sign="] {
        assert!(!message.contains(leaked), "{leaked} leaked: {message}");
    }
    let request_id = body["error"]["request_id"].as_str().unwrap();
    assert_eq!(request_id.len(), 32, "{request_id}");
}

/// An attempt's own change (here: closed at the provider) and an order transition that holds
/// the order and then touches the attempt must not deadlock on PostgreSQL. Before the fix the
/// attempt change locked the attempt row first and the order second (the log row's foreign
/// key), the opposite order of every order transition; PostgreSQL then aborted one of the two
/// with a deadlock.
#[actix_web::test]
async fn an_attempt_change_and_an_order_transition_take_their_locks_in_the_same_order() {
    use actors::store::transitions::apply_attempt;
    use actors::store::{AttemptCloseReason, AttemptUpdate, Operator};
    use sea_orm::{ConnectionTrait, TransactionTrait};

    // Arrange: an order with a pending attempt; a transaction that holds the order as an order
    // transition does.
    let app = spawn_app(Backend::Postgres).await;
    let (order_no, pay_no) = app.order_with_attempt("lock-order", 600).await;
    let order_id: entities::OrderId = order_no.parse().unwrap();
    let pay: entities::PayNo = pay_no.parse().unwrap();
    let transition = app.db.begin().await.unwrap();
    transition
        .execute_unprepared(&format!("SELECT id FROM orders WHERE id = {order_no} FOR UPDATE"))
        .await
        .unwrap();

    // Act: the attempt change starts while the order is held, then the transition touches the
    // attempt and commits.
    let db = app.db.clone();
    let change = tokio::spawn(async move {
        apply_attempt(
            &db,
            order_id,
            pay,
            AttemptUpdate::Closed(AttemptCloseReason::ClosedAtProvider),
            &Operator::System,
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let touched = transition
        .execute_unprepared(&format!(
            "UPDATE payment_attempts SET updated_at = updated_at WHERE pay_no = {pay_no}"
        ))
        .await;
    let committed = transition.commit().await;

    // Assert: both went through.
    touched.expect("the order transition touches the attempt");
    committed.expect("the order transition commits");
    let applied = change.await.unwrap().expect("the attempt change commits");
    assert!(applied);
    let detail = app.admin_order(&order_no).await;
    assert_eq!(detail["payments"][0]["status"], "closed");
}

/// Before the fix an attempt beyond the provider's rate limit waited for the limiter, then for
/// the call: clients got their QR code seconds late or, past the reply timeout, a 502
/// "provider call timed out" with a failed attempt written.
#[actix_web::test]
async fn an_attempt_beyond_the_provider_budget_is_refused_at_once_with_retry_after_and_writes_nothing() {
    // Arrange: a sandbox that may be called twice a second; twelve orders.
    let mut settings = crate::helpers::test_settings(Backend::Postgres).await;
    settings.providers.sandbox.calls.rate_per_second = 2;
    settings.expiry.provider_reply_timeout = std::time::Duration::from_millis(1500);
    let app = crate::helpers::spawn_app_with(settings).await;
    let mut order_nos = Vec::new();
    for n in 0..12 {
        let order = app.create_order(&order_body(&format!("busy-{n}"))).await;
        order_nos.push(order["order_no"].as_str().unwrap().to_owned());
    }
    let before = app.row_counts().await;

    // Act: all twelve attempts at once.
    let started = std::time::Instant::now();
    let responses = futures::future::join_all(
        order_nos
            .iter()
            .map(|order_no| app.post_payment(MERCHANT_A_KEY, order_no, "sandbox")),
    )
    .await;
    let elapsed = started.elapsed();

    // Assert: the burst's two get their code, the rest a prompt 503 saying when to come back.
    let (mut created, mut busy) = (0, 0);
    for response in responses {
        match response.status().as_u16() {
            201 => created += 1,
            503 => {
                let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
                assert_eq!(error_code(response, 503).await, "provider_busy");
                busy += 1;
            }
            other => panic!("status {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(created, 2, "the burst of the rate limit");
    assert_eq!(busy, 10);
    assert!(
        elapsed < std::time::Duration::from_millis(1500),
        "answered within the reply timeout: {elapsed:?}"
    );
    let after = app.row_counts().await;
    assert_eq!(
        after.payment_attempts,
        before.payment_attempts + 2,
        "a refused attempt writes nothing"
    );
}
