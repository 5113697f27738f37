//! The expiry rule end to end: real HTTP, the sandbox provider, PostgreSQL / SQLite, Redis.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, spawn_app, spawn_app_with_redis, Backend, ADMIN_TOKEN, MERCHANT_A, MERCHANT_A_KEY,
};

on_both_backends!(
    an_unpaid_order_is_queried_closed_at_the_provider_and_closed_on_time,
    a_paid_order_is_not_queried_at_its_deadline,
    a_dropped_notification_is_compensated_at_the_deadline,
    refresh_finds_a_payment_whose_notification_was_dropped,
    cancel_closes_at_the_provider_then_locally,
    force_close_goes_through_the_actor_and_needs_the_admin_token,
    orders_due_together_are_closed_together_each_with_its_log_event_and_stock,
);

async fn an_unpaid_order_is_queried_closed_at_the_provider_and_closed_on_time(backend: Backend) {
    // Arrange
    let app = spawn_app_with_redis(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 10).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-1", 1).await;
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 8);

    // Act
    let status = app.wait_for_status(&order_no, "closed", Duration::from_secs(5)).await;

    // Assert
    assert_eq!(status["close_reason"], "expired");
    let order = app.admin_order(&order_no).await;
    let expires_at = chrono::DateTime::parse_from_rfc3339(order["expires_at"].as_str().unwrap()).unwrap();
    let closed_at = chrono::DateTime::parse_from_rfc3339(order["closed_at"].as_str().unwrap()).unwrap();
    let lateness = closed_at - expires_at;
    assert!(
        lateness >= chrono::Duration::zero(),
        "closed before its deadline: {lateness}"
    );
    assert!(
        lateness < chrono::Duration::milliseconds(1500),
        "closed {lateness} late"
    );
    let trade = app.sandbox_trade(&pay_no).await;
    assert_eq!(trade["query_count"], 1, "queried once");
    assert_eq!(trade["close_count"], 1, "closed once at the provider");
    assert_eq!(trade["trade_state"], "CLOSED");
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 10, "stock came back");
    let events = app.events_of(&order_no).await;
    assert!(events.contains(&"attempt.closed".to_owned()), "{events:?}");
    assert!(events.contains(&"stock.released".to_owned()), "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "order.closed").count(), 1, "{events:?}");
    assert_eq!(app.outbox_count(&order_no, "order.closed").await, 1);
    assert_eq!(order["payments"][0]["status"], "closed");
}

async fn a_paid_order_is_not_queried_at_its_deadline(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-2", 1).await;

    app.sandbox_pay(&pay_no, true).await;
    let status = app.wait_for_status(&order_no, "paid", Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert!(status["paid_at"].is_string());
    let trade = app.sandbox_trade(&pay_no).await;
    assert_eq!(trade["query_count"], 0, "a paid order needs no provider call");
    assert_eq!(trade["close_count"], 0);
    let order = app.admin_order(&order_no).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["payments"][0]["status"], "succeeded");
    assert_eq!(order["payments"][0]["provider_txn_id"], trade["transaction_id"]);
    assert_eq!(app.outbox_count(&order_no, "order.paid").await, 1);
}

async fn a_dropped_notification_is_compensated_at_the_deadline(backend: Backend) {
    let app = spawn_app_with_redis(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 10).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-3", 1).await;

    let trade = app.sandbox_pay(&pay_no, false).await;
    assert_eq!(
        app.get_status(MERCHANT_A_KEY, &order_no)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "pending"
    );
    app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;

    let order = app.admin_order(&order_no).await;
    assert_eq!(order["payments"][0]["provider_txn_id"], trade["transaction_id"]);
    assert_eq!(order["payments"][0]["status"], "succeeded");
    let paid_log = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.paid")
        .unwrap();
    assert_eq!(paid_log["operator"], "system", "compensated by the expiry rule");
    assert_eq!(
        app.sku_available(MERCHANT_A, "sku-book").await,
        8,
        "a paid order keeps its stock"
    );
    assert_eq!(app.sandbox_trade(&pay_no).await["close_count"], 0);
}

async fn refresh_finds_a_payment_whose_notification_was_dropped(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-4", 60).await;
    app.sandbox_pay(&pay_no, false).await;

    let plain: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    let refreshed: Value = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/status?refresh=true"))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(plain["status"], "pending");
    assert_eq!(refreshed["status"], "paid");
    assert_eq!(app.sandbox_trade(&pay_no).await["query_count"], 1);
}

async fn cancel_closes_at_the_provider_then_locally(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 4).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-5", 600).await;
    let cancel_path = format!("/v1/orders/{order_no}/cancel");

    let first = app.post_as(MERCHANT_A_KEY, &cancel_path, None).await;
    let second = app.post_as(MERCHANT_A_KEY, &cancel_path, None).await;

    assert_eq!(first.status().as_u16(), 200);
    let status: Value = first.json().await.unwrap();
    assert_eq!(status["status"], "closed");
    assert_eq!(status["close_reason"], "cancelled");
    assert_eq!(error_code(second, 409).await, "order_not_pending");
    assert_eq!(app.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 4);
    let order = app.admin_order(&order_no).await;
    let closed = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.closed")
        .unwrap();
    assert_eq!(closed["operator"], "merchant:merchant_a");
    // Paying the closed trade is refused by the provider itself.
    let pay = app
        .client
        .post(app.url(&format!("/sandbox/trades/{pay_no}/pay")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status().as_u16(), 409);
}

async fn force_close_goes_through_the_actor_and_needs_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-6", 600).await;
    let path = format!("/admin/orders/{order_no}/force-close");

    let as_client = app.post_as(MERCHANT_A_KEY, &path, Some(&json!({"reason": "x"}))).await;
    let empty_reason = app.post_as(ADMIN_TOKEN, &path, Some(&json!({"reason": " "}))).await;
    let closed = app
        .post_as(ADMIN_TOKEN, &path, Some(&json!({"reason": "fraud suspected"})))
        .await;

    assert_eq!(error_code(as_client, 401).await, "unauthorized");
    assert_eq!(error_code(empty_reason, 422).await, "invalid_field");
    assert_eq!(closed.status().as_u16(), 200);
    let order: Value = closed.json().await.unwrap();
    assert_eq!(order["status"], "closed");
    assert_eq!(order["close_reason"], "force-closed: fraud suspected");
    let log = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.closed")
        .unwrap();
    assert_eq!(log["operator"], "admin:admin");
    assert_eq!(app.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
}

on_both_backends!(a_provider_that_stays_down_makes_the_order_stuck_until_it_is_back);

async fn a_provider_that_stays_down_makes_the_order_stuck_until_it_is_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("exp-7", 1).await;
    let (timeout_order, _) = app.order_with_attempt("exp-7b", 1).await;

    // Every call hangs past the call timeout (300 ms in the test profile).
    app.sandbox_faults(json!({"mode": "timeout", "delay_ms": 2000})).await;
    app.wait_for_status(&order_no, "stuck", Duration::from_secs(20)).await;
    app.wait_for_status(&timeout_order, "stuck", Duration::from_secs(20))
        .await;
    let stuck: Value = app
        .get_as(ADMIN_TOKEN, "/admin/orders?status=stuck")
        .await
        .json()
        .await
        .unwrap();
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(stuck["orders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["order_no"] == order_no.as_str()));
    assert!(
        metrics.contains("paywarden_expiry_outcomes_total{outcome=\"stuck\"} 2")
            && metrics.contains("paywarden_orders_stuck 2"),
        "{metrics}"
    );
    assert_eq!(app.outbox_count(&order_no, "order.stuck").await, 1);

    // The provider comes back: the next retry resolves the stuck order.
    app.sandbox_faults(json!({"mode": "none"})).await;
    let status = app.wait_for_status(&order_no, "closed", Duration::from_secs(10)).await;
    assert_eq!(status["close_reason"], "expired");
    app.wait_for_status(&timeout_order, "closed", Duration::from_secs(10))
        .await;
    assert_eq!(app.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
    assert_eq!(
        app.events_of(&order_no)
            .await
            .iter()
            .filter(|e| *e == "order.closed")
            .count(),
        1
    );
}

on_both_backends!(an_amount_mismatch_is_recorded_once_and_an_operator_settles_it);

/// Before the fix the mismatched attempt stayed pending: every pass (each refresh, each
/// restart or reconcile) queried it and wrote another `order.payment_anomaly`, force-close
/// answered 409, and no operator action could settle the order.
async fn an_amount_mismatch_is_recorded_once_and_an_operator_settles_it(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 10).await;
    let pay_wrong = |pay_no: String, amount: i64, notify: bool| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url(&format!("/sandbox/trades/{pay_no}/pay?notify={notify}&amount={amount}")))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
        }
    };
    let anomalies = |order_no: String| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM order_logs WHERE order_id = {order_no} AND event = 'payment.anomaly'"
            ))
            .await
        }
    };

    // Found by a query (the callback lost): one anomaly, however many passes follow.
    let (order_no, pay_no) = app.order_with_attempt("mismatch-1", 600).await;
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 8);
    pay_wrong(pay_no.clone(), 1000, false).await;
    for _ in 0..3 {
        let status: Value = app
            .get_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/status?refresh=true"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["status"], "stuck", "{status}");
    }
    let reconciled = app.post_as(ADMIN_TOKEN, "/admin/deadlines/reconcile", None).await;
    assert_eq!(reconciled.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(anomalies(order_no.clone()).await, 1, "one anomaly, deduplicated");
    assert_eq!(app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
    assert_eq!(
        app.sandbox_trade(&pay_no).await["query_count"],
        1,
        "queried once, then out of the open set"
    );
    let order = app.admin_order(&order_no).await;
    assert_eq!(order["status"], "stuck");
    assert_eq!(order["payments"][0]["status"], "amount_mismatch");
    let cancel = app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;
    assert_eq!(error_code(cancel, 409).await, "order_not_pending");

    // The operator force-closes it: closed, stock back, still one anomaly (refund owed).
    let closed = app
        .post_as(
            ADMIN_TOKEN,
            &format!("/admin/orders/{order_no}/force-close"),
            Some(&json!({"reason": "buyer paid the wrong amount; refund by hand"})),
        )
        .await;
    assert_eq!(closed.status().as_u16(), 200);
    assert_eq!(closed.json::<Value>().await.unwrap()["status"], "closed");
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 10);
    assert_eq!(anomalies(order_no.clone()).await, 1);

    // Reported by a notification; the operator accepts the payment instead.
    let (order_no, pay_no) = app.order_with_attempt("mismatch-2", 600).await;
    pay_wrong(pay_no.clone(), 2000, true).await;
    app.wait_for_status(&order_no, "stuck", Duration::from_secs(5)).await;
    let path = format!("/admin/orders/{order_no}/accept-payment");
    let (_, other_pay_no) = app.order_with_attempt("mismatch-3", 600).await;
    let wrong = app
        .post_as(
            ADMIN_TOKEN,
            &path,
            Some(&json!({"pay_no": other_pay_no, "reason": "r"})),
        )
        .await;
    assert_eq!(error_code(wrong, 422).await, "not_a_mismatched_payment");
    let accepted = app
        .post_as(
            ADMIN_TOKEN,
            &path,
            Some(&json!({"pay_no": pay_no, "reason": "difference settled with the buyer"})),
        )
        .await;
    assert_eq!(accepted.status().as_u16(), 200);
    let order: Value = accepted.json().await.unwrap();
    assert_eq!(order["status"], "paid");
    assert_eq!(order["payments"][0]["status"], "succeeded");
    let log = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "payment.accepted")
        .expect("the acceptance is logged");
    assert_eq!(log["operator"], "admin:admin");
    assert!(
        log["reason"]
            .as_str()
            .unwrap()
            .contains("difference settled with the buyer"),
        "{log}"
    );
    assert_eq!(app.outbox_count(&order_no, "order.paid").await, 1);
    let reports_what_was_taken = app
        .count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE order_id = {order_no} AND event_type = 'order.paid' AND payload LIKE '%\"paid_amount\":2000%'"
        ))
        .await;
    assert_eq!(reports_what_was_taken, 1, "the event carries the amount really paid");
    assert_eq!(anomalies(order_no).await, 1);
}

/// Plain expiries falling together are closed in shared transactions (the expiry closer):
/// each order still gets exactly what a close of its own writes, its stock comes back once,
/// and an order with an attempt among them still goes through the provider.
async fn orders_due_together_are_closed_together_each_with_its_log_event_and_stock(backend: Backend) {
    // Arrange: 40 orders of 2 books each from a stock of 100, and one with a sandbox attempt,
    // all due in the same second.
    let app = spawn_app_with_redis(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 100).await;
    let mut plain = Vec::new();
    for n in 0..40 {
        let mut body = crate::helpers::order_body(&format!("together-{n}"));
        body["ttl_seconds"] = 2.into();
        plain.push(app.create_order(&body).await["order_no"].as_str().unwrap().to_owned());
    }
    let (attempted, pay_no) = app.order_with_attempt("together-attempt", 2).await;
    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 100 - 41 * 2);

    // Act
    for order_no in plain.iter().chain([&attempted]) {
        app.wait_for_status(order_no, "closed", Duration::from_secs(10)).await;
    }

    // Assert
    assert_eq!(
        app.sku_available(MERCHANT_A, "sku-book").await,
        100,
        "every reservation came back once"
    );
    for order_no in &plain {
        let order = app.admin_order(order_no).await;
        assert_eq!(order["close_reason"], "expired");
        let events: Vec<&str> = order["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|log| log["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["order.created", "stock.reserved", "stock.released", "order.closed"],
            "order {order_no}"
        );
        assert_eq!(app.outbox_count(order_no, "order.closed").await, 1, "order {order_no}");
    }
    let trade = app.sandbox_trade(&pay_no).await;
    assert_eq!(
        trade["trade_state"], "CLOSED",
        "the attempted order was closed at the provider first"
    );
    assert_eq!(app.outbox_count(&attempted, "order.closed").await, 1);
}
