//! Provider notifications: verified, deduplicated, amount-checked, and consistent with the
//! expiry close in either order of events.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{error_code, on_both_backends, spawn_app, Backend, TestApp, ADMIN_TOKEN, SANDBOX_SECRET};

on_both_backends!(
    a_duplicated_notification_is_acknowledged_and_changes_nothing,
    a_forged_or_stale_notification_is_rejected_and_changes_nothing,
    an_amount_mismatch_is_not_marked_paid_and_is_recorded,
    a_payment_notified_after_the_close_is_recorded_as_paid_after_close,
    a_notification_before_the_deadline_wins_over_the_expiry,
    an_authentic_payment_for_an_unknown_trade_is_stored_once_and_resolved_by_an_operator,
);

fn notification(pay_no: &str, amount: i64, event_id: &str) -> Value {
    json!({
        "id": event_id,
        "out_trade_no": pay_no,
        "trade_state": "SUCCESS",
        "transaction_id": format!("sbx-test-{event_id}"),
        "amount": amount,
        "paid_at": chrono::Utc::now(),
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn counts(app: &TestApp, order_no: &str) -> (i64, i64, i64) {
    (
        app.count(&format!("SELECT COUNT(*) FROM order_logs WHERE order_id = {order_no}"))
            .await,
        app.count(&format!("SELECT COUNT(*) FROM outbox WHERE order_id = {order_no}"))
            .await,
        app.count("SELECT COUNT(*) FROM webhook_receipts").await,
    )
}

async fn a_duplicated_notification_is_acknowledged_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("ntf-1", 60).await;
    let body = notification(&pay_no, 2999, "evt_dup_1");

    let first = app.post_sandbox_notification(&body, SANDBOX_SECRET, now()).await;
    let after_first = counts(&app, &order_no).await;
    let second = app.post_sandbox_notification(&body, SANDBOX_SECRET, now()).await;

    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["outcome"], "Paid");
    assert_eq!(second.status().as_u16(), 200, "a duplicate is still acknowledged");
    assert_eq!(second.json::<Value>().await.unwrap()["outcome"], "Duplicate");
    assert_eq!(counts(&app, &order_no).await, after_first);
    assert_eq!(app.outbox_count(&order_no, "order.paid").await, 1);
    app.wait_for_status(&order_no, "paid", Duration::from_secs(1)).await;
}

async fn a_forged_or_stale_notification_is_rejected_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("ntf-2", 60).await;
    let before = counts(&app, &order_no).await;

    let forged = app
        .post_sandbox_notification(
            &notification(&pay_no, 2999, "evt_forged"),
            "whsec_not_the_secret",
            now(),
        )
        .await;
    let stale = app
        .post_sandbox_notification(&notification(&pay_no, 2999, "evt_stale"), SANDBOX_SECRET, now() - 3600)
        .await;
    let unsigned = app
        .client
        .post(app.url("/webhooks/sandbox"))
        .json(&notification(&pay_no, 2999, "evt_unsigned"))
        .send()
        .await
        .unwrap();

    for (response, what) in [(forged, "forged"), (stale, "stale"), (unsigned, "unsigned")] {
        assert_eq!(response.status().as_u16(), 400, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_notification", "{what}");
    }
    assert_eq!(counts(&app, &order_no).await, before);
    app.wait_for_status(&order_no, "pending", Duration::from_secs(1)).await;
}

async fn an_amount_mismatch_is_not_marked_paid_and_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("ntf-3", 60).await;

    let response = app
        .post_sandbox_notification(&notification(&pay_no, 1, "evt_short"), SANDBOX_SECRET, now())
        .await;

    assert_eq!(response.status().as_u16(), 200, "recorded, so acknowledged");
    assert_eq!(response.json::<Value>().await.unwrap()["outcome"], "AmountMismatch");
    // Not paid; stuck with the reason shown until an operator force-closes or accepts it (it
    // stayed pending before, and every later pass recorded the anomaly again).
    app.wait_for_status(&order_no, "stuck", Duration::from_secs(1)).await;
    let order = app.admin_order(&order_no).await;
    let stuck = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.stuck")
        .expect("the reason is shown in the log");
    assert!(stuck["reason"].as_str().unwrap().contains("instead of"), "{stuck}");
    assert!(app.events_of(&order_no).await.contains(&"payment.anomaly".to_owned()));
    assert_eq!(app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
    assert_eq!(app.outbox_count(&order_no, "order.paid").await, 0);
}

async fn a_payment_notified_after_the_close_is_recorded_as_paid_after_close(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("ntf-4", 1).await;
    app.wait_for_status(&order_no, "closed", Duration::from_secs(5)).await;

    // The provider says the buyer paid anyway (the close and the payment crossed).
    let response = app
        .post_sandbox_notification(&notification(&pay_no, 2999, "evt_late"), SANDBOX_SECRET, now())
        .await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["outcome"], "PaidAfterClose");
    let status = app
        .wait_for_status(&order_no, "paid_after_close", Duration::from_secs(1))
        .await;
    assert!(status["paid_at"].is_string());
    assert_eq!(app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
    let order = app.admin_order(&order_no).await;
    assert_eq!(order["payments"][0]["status"], "succeeded");
}

async fn a_notification_before_the_deadline_wins_over_the_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("ntf-5", 1).await;

    let response = app
        .post_sandbox_notification(&notification(&pay_no, 2999, "evt_first"), SANDBOX_SECRET, now())
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(response.status().as_u16(), 200);
    app.wait_for_status(&order_no, "paid", Duration::from_secs(1)).await;
    let events = app.events_of(&order_no).await;
    assert!(!events.contains(&"order.closed".to_owned()), "{events:?}");
    assert_eq!(app.sandbox_trade(&pay_no).await["query_count"], 0);
}

/// Every late payment on a closed order is recorded, whatever the interleaving: each one is
/// acknowledged only after its effect (the paid-after-close change, or an anomaly owing a
/// refund) committed with its receipt. On PostgreSQL (READ COMMITTED, many connections) the
/// notifications really race.
#[actix_web::test]
async fn concurrent_late_payments_on_a_closed_order_are_each_recorded_exactly_once() {
    // Arrange: a closed order with eight attempts the buyer paid anyway.
    let app = spawn_app(Backend::Postgres).await;
    let order = app.create_order(&crate::helpers::order_body("late-many")).await;
    let order_no = order["order_no"].as_str().unwrap().to_owned();
    let mut pay_nos = Vec::new();
    for _ in 0..8 {
        let payment: Value = app
            .post_payment(crate::helpers::MERCHANT_A_KEY, &order_no, "sandbox")
            .await
            .json()
            .await
            .unwrap();
        pay_nos.push(payment["pay_no"].as_str().unwrap().to_owned());
    }
    let cancelled = app
        .post_as(
            crate::helpers::MERCHANT_A_KEY,
            &format!("/v1/orders/{order_no}/cancel"),
            None,
        )
        .await;
    assert_eq!(cancelled.status().as_u16(), 200);

    // Act: the eight payment notifications arrive at once.
    let bodies: Vec<Value> = pay_nos
        .iter()
        .enumerate()
        .map(|(n, pay_no)| notification(pay_no, 2999, &format!("evt_late_many_{n}")))
        .collect();
    let responses = futures::future::join_all(
        bodies
            .iter()
            .map(|body| app.post_sandbox_notification(body, SANDBOX_SECRET, now())),
    )
    .await;

    // Assert: each acknowledged, each recorded once (receipt, log row, anomaly event).
    for response in responses {
        assert_eq!(response.status().as_u16(), 200);
    }
    app.wait_for_status(&order_no, "paid_after_close", Duration::from_secs(1))
        .await;
    for (n, pay_no) in pay_nos.iter().enumerate() {
        let receipts = app
            .count(&format!(
                "SELECT COUNT(*) FROM webhook_receipts WHERE event_id = 'evt_late_many_{n}'"
            ))
            .await;
        assert_eq!(receipts, 1, "receipt of pay_no {pay_no}");
        let logged = app
            .count(&format!(
                "SELECT COUNT(*) FROM order_logs WHERE order_id = {order_no} \
                 AND event IN ('order.payment_anomaly', 'payment.anomaly') AND reason LIKE '%pay_no {pay_no}%'"
            ))
            .await;
        assert_eq!(logged, 1, "log row of pay_no {pay_no}");
        let events = app
            .count(&format!(
                "SELECT COUNT(*) FROM outbox WHERE order_id = {order_no} \
                 AND event_type = 'order.payment_anomaly' AND payload LIKE '%\"pay_no\":\"{pay_no}\"%'"
            ))
            .await;
        assert_eq!(events, 1, "anomaly event of pay_no {pay_no}");
    }
}

/// Before the fix a correctly signed notification for a `pay_no` paywarden does not know got a
/// 404 and a log line: the money it reports was recorded nowhere an operator would look.
async fn an_authentic_payment_for_an_unknown_trade_is_stored_once_and_resolved_by_an_operator(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown_pay_no = "3828000000000000001";
    let body = notification(unknown_pay_no, 4200, "evt_orphan_1");

    let first = app.post_sandbox_notification(&body, SANDBOX_SECRET, now()).await;
    let again = app.post_sandbox_notification(&body, SANDBOX_SECRET, now()).await;

    assert_eq!(first.status().as_u16(), 200, "acknowledged once stored");
    assert_eq!(first.json::<Value>().await.unwrap()["outcome"], "Unmatched");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM unmatched_notifications").await,
        1,
        "stored once"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0, "no order invented");

    let list = |query: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .get(app.url(&format!("/admin/unmatched-notifications{query}")))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()["notifications"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let open = list("").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["pay_no"], unknown_pay_no);
    assert_eq!(open[0]["provider"], "sandbox");
    assert_eq!(open[0]["trade_state"], "paid");
    assert_eq!(open[0]["amount"], 4200);
    assert_eq!(open[0]["provider_txn_id"], "sbx-test-evt_orphan_1");
    let id = open[0]["id"].as_i64().unwrap();

    let resolve = |reason: &str| {
        let app = &app;
        let body = json!({ "reason": reason });
        async move {
            app.client
                .post(app.url(&format!("/admin/unmatched-notifications/{id}/resolve")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(error_code(resolve(" ").await, 422).await, "invalid_field");
    let resolved = resolve("refunded by hand, ticket 42").await;
    assert_eq!(resolved.status().as_u16(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["resolved_by"], "admin:admin");
    assert_eq!(resolved["resolution"], "refunded by hand, ticket 42");
    assert_eq!(error_code(resolve("twice").await, 409).await, "already_resolved");
    assert!(list("").await.is_empty(), "no open ones left");
    assert_eq!(list("?all=true").await.len(), 1);
}
