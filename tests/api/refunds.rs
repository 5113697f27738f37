//! Refunds over HTTP: the API and its checks (sandbox, both backends), WeChat Pay and Alipay
//! through the simulator (wire formats, deduplication on the refund number, uncertain
//! outcomes, processing refunds and their notifications), automatic refunds, and a hard kill
//! between a refund's commit and its provider call.

use std::process::Command;
use std::time::{Duration, Instant};

use paywarden_sim::refunds::{SimRefundBehaviour, SimRefundMode};
use paywarden_sim::{SimConfig, SimFaults, SimProvider, SimServer};
use serde_json::{json, Value};

use crate::helpers::{
    error_code, for_each_provider, on_both_backends, order_body, redis_url, spawn_app_with, test_settings, Backend,
    TestApp, ADMIN_TOKEN, MERCHANT_A_KEY, MERCHANT_B_KEY,
};
use crate::providers::{rig, sim_provider, Rig, RigOptions};
use crate::restart::{free_port, ServiceProcess};

impl TestApp {
    pub(crate) async fn post_refund(&self, key: &str, order_no: &str, body: &Value) -> reqwest::Response {
        self.post_as(key, &format!("/v1/orders/{order_no}/refunds"), Some(body))
            .await
    }

    /// Refunds and expects a 201; returns the refund.
    pub(crate) async fn refund(&self, order_no: &str, out_refund_id: &str, amount: i64) -> Value {
        let body = json!({"out_refund_id": out_refund_id, "amount": amount, "reason": "returned"});
        let response = self.post_refund(MERCHANT_A_KEY, order_no, &body).await;
        assert_eq!(response.status().as_u16(), 201, "refund {out_refund_id}");
        let refund: Value = response.json().await.unwrap();
        assert_eq!(
            refund["status"], "pending",
            "answered once committed, before the provider"
        );
        refund
    }

    /// Polls the refund until it is `expected`.
    pub(crate) async fn wait_for_refund(&self, refund_no: &str, expected: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let refund: Value = self
                .get_as(MERCHANT_A_KEY, &format!("/v1/refunds/{refund_no}"))
                .await
                .json()
                .await
                .unwrap();
            if refund["status"] == expected {
                return refund;
            }
            assert!(
                started.elapsed() < within,
                "refund {refund_no} is {refund} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn refunds_of(&self, order_no: &str) -> Value {
        let response = self
            .get_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/refunds"))
            .await;
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }

    /// A sandbox order of 2999 paid by its attempt; returns (order_no, pay_no).
    async fn paid_order(&self, out_business_id: &str) -> (String, String) {
        let (order_no, pay_no) = self.order_with_attempt(out_business_id, 600).await;
        self.sandbox_pay(&pay_no, true).await;
        self.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
        (order_no, pay_no)
    }

    async fn refund_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM refunds").await
    }
}

async fn spawn_refunding_app(backend: Backend) -> TestApp {
    let mut settings = test_settings(backend).await;
    settings.anomalies.auto_refund = true;
    spawn_app_with(settings).await
}

on_both_backends!(
    a_full_refund_is_made_once_and_the_order_becomes_refunded,
    partial_refunds_never_exceed_what_was_paid,
    the_same_out_refund_id_answers_the_same_refund_and_other_content_conflicts,
    bad_refund_requests_are_refused_with_nothing_written,
    a_payment_of_another_amount_is_never_refunded_by_itself,
    a_report_contradicting_a_recorded_payment_is_an_anomaly_never_a_refund,
);

async fn a_full_refund_is_made_once_and_the_order_becomes_refunded(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (order_no, pay_no) = app.paid_order("rf-full").await;

    let refund = app.refund(&order_no, "rf-full-1", 2999).await;
    let refund_no = refund["refund_no"].as_str().unwrap();
    assert_eq!(refund["pay_no"], pay_no.as_str());
    assert_eq!(refund["operator"], "merchant:merchant_a");

    let done = app
        .wait_for_refund(refund_no, "succeeded", Duration::from_secs(5))
        .await;
    assert!(done["provider_refund_id"].as_str().unwrap().starts_with("sbr"));
    assert!(done["succeeded_at"].is_string());
    let status = app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
    assert_eq!(status["status"], "refunded");
    let order: Value = app.get_order(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(order["refunded_amount"], 2999);

    // At the provider: one refund, under paywarden's refund number.
    let trade = app.sandbox_trade(&pay_no).await;
    let refunds = trade["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{trade}");
    assert_eq!(refunds[0]["out_refund_no"], refund_no);
    assert_eq!(refunds[0]["amount"], 2999);

    // The log and the outbox carry the whole story.
    let events = app.events_of(&order_no).await;
    assert!(events.contains(&"refund.created".to_owned()), "{events:?}");
    assert!(events.contains(&"refund.succeeded".to_owned()), "{events:?}");
    assert_eq!(app.outbox_count(&order_no, "refund.created").await, 1);
    assert_eq!(app.outbox_count(&order_no, "refund.succeeded").await, 1);
    let payload = app
        .count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE order_id = {order_no} AND event_type = 'refund.succeeded' \
             AND payload LIKE '%\"status\":\"refunded\"%' AND payload LIKE '%\"refund_no\":\"{refund_no}\"%'"
        ))
        .await;
    assert_eq!(payload, 1, "the event names the refund and the order's new status");

    // Nothing is left to refund.
    let more = app
        .post_refund(
            MERCHANT_A_KEY,
            &order_no,
            &json!({"out_refund_id": "rf-full-2", "amount": 1, "reason": "again"}),
        )
        .await;
    assert_eq!(error_code(more, 409).await, "order_not_refundable");
}

async fn partial_refunds_never_exceed_what_was_paid(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (order_no, _) = app.paid_order("rf-part").await;

    let first = app.refund(&order_no, "rf-part-1", 1000).await;
    let second = app.refund(&order_no, "rf-part-2", 999).await;
    let too_much = json!({"out_refund_id": "rf-part-3", "amount": 1001, "reason": "too much"});
    // Pending refunds count: 1000 is left, whether the two above succeeded yet or not.
    let early = app.post_refund(MERCHANT_A_KEY, &order_no, &too_much).await;
    assert_eq!(error_code(early, 422).await, "refund_exceeds_paid");
    for refund in [&first, &second] {
        app.wait_for_refund(
            refund["refund_no"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(5),
        )
        .await;
    }
    let before = app.row_counts().await;
    let refunds_before = app.refund_rows().await;
    let late = app.post_refund(MERCHANT_A_KEY, &order_no, &too_much).await;
    assert_eq!(late.status().as_u16(), 422);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "refund_exceeds_paid");
    assert!(body["error"]["message"].as_str().unwrap().contains("1000"), "{body}");
    assert_eq!(app.row_counts().await, before, "nothing written");
    assert_eq!(app.refund_rows().await, refunds_before);
    // Partly refunded: still paid, the amount shown.
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["status"], "paid");
    assert_eq!(list["refunded_amount"], 1999);
    assert_eq!(list["refunds"].as_array().unwrap().len(), 2);

    let last = app.refund(&order_no, "rf-part-3", 1000).await;
    app.wait_for_refund(last["refund_no"].as_str().unwrap(), "succeeded", Duration::from_secs(5))
        .await;
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["status"], "refunded");
    assert_eq!(list["refunded_amount"], 2999);
}

async fn the_same_out_refund_id_answers_the_same_refund_and_other_content_conflicts(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (order_no, pay_no) = app.paid_order("rf-idem").await;
    let body = json!({"out_refund_id": "rf-idem-1", "amount": 500, "reason": "returned"});
    let first = app.post_refund(MERCHANT_A_KEY, &order_no, &body).await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();

    let again = app.post_refund(MERCHANT_A_KEY, &order_no, &body).await;
    assert_eq!(again.status().as_u16(), 200, "a replay");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["refund_no"], first["refund_no"]);
    app.wait_for_refund(
        first["refund_no"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;

    let before = app.row_counts().await;
    let refunds_before = app.refund_rows().await;
    let other = json!({"out_refund_id": "rf-idem-1", "amount": 501, "reason": "returned"});
    let conflict = app.post_refund(MERCHANT_A_KEY, &order_no, &other).await;
    assert_eq!(error_code(conflict, 409).await, "refund_conflict");
    assert_eq!(app.row_counts().await, before);
    assert_eq!(app.refund_rows().await, refunds_before);

    let replay_after = app.post_refund(MERCHANT_A_KEY, &order_no, &body).await;
    assert_eq!(replay_after.status().as_u16(), 200);
    assert_eq!(replay_after.json::<Value>().await.unwrap()["status"], "succeeded");
    let trade = app.sandbox_trade(&pay_no).await;
    assert_eq!(
        trade["refunds"].as_array().unwrap().len(),
        1,
        "one refund at the provider"
    );
}

async fn bad_refund_requests_are_refused_with_nothing_written(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (paid, _) = app.paid_order("rf-bad").await;
    let (pending, _) = app.order_with_attempt("rf-bad-pending", 600).await;
    let before = app.row_counts().await;

    let cases = [
        (
            json!({"out_refund_id": "a", "amount": 0, "reason": "r"}),
            422,
            "invalid_amount",
        ),
        (
            json!({"out_refund_id": "a", "amount": -5, "reason": "r"}),
            422,
            "invalid_amount",
        ),
        (
            json!({"out_refund_id": "", "amount": 5, "reason": "r"}),
            422,
            "invalid_field",
        ),
        (
            json!({"out_refund_id": "a".repeat(65), "amount": 5, "reason": "r"}),
            422,
            "invalid_field",
        ),
        (
            json!({"out_refund_id": "auto:1", "amount": 5, "reason": "r"}),
            422,
            "invalid_field",
        ),
        (
            json!({"out_refund_id": "a", "amount": 5, "reason": ""}),
            422,
            "invalid_field",
        ),
        (
            json!({"out_refund_id": "a", "amount": 5, "reason": "é".repeat(81)}),
            422,
            "invalid_field",
        ),
        (json!({"out_refund_id": "a", "amount": 5}), 400, "invalid_json"),
        (
            json!({"out_refund_id": "a", "amount": 5, "reason": "r", "pay_no": "1"}),
            400,
            "invalid_json",
        ),
        (
            json!({"out_refund_id": "a", "amount": 1.5, "reason": "r"}),
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post_refund(MERCHANT_A_KEY, &paid, &body).await;
        assert_eq!(error_code(response, status).await, code, "{body}");
    }
    let ok = json!({"out_refund_id": "a", "amount": 5, "reason": "r"});
    let not_paid = app.post_refund(MERCHANT_A_KEY, &pending, &ok).await;
    assert_eq!(error_code(not_paid, 409).await, "order_not_refundable");
    let not_theirs = app.post_refund(MERCHANT_B_KEY, &paid, &ok).await;
    assert_eq!(error_code(not_theirs, 404).await, "not_found");
    let no_order = app.post_refund(MERCHANT_A_KEY, "123", &ok).await;
    assert_eq!(error_code(no_order, 404).await, "not_found");
    assert_eq!(app.row_counts().await, before, "nothing written");
    assert_eq!(app.refund_rows().await, 0);

    // Another merchant cannot read a refund either.
    let refund = app.refund(&paid, "rf-bad-ok", 5).await;
    let refund_no = refund["refund_no"].as_str().unwrap();
    let response = app.get_as(MERCHANT_B_KEY, &format!("/v1/refunds/{refund_no}")).await;
    assert_eq!(error_code(response, 404).await, "not_found");
    let response = app.get_as(MERCHANT_B_KEY, &format!("/v1/orders/{paid}/refunds")).await;
    assert_eq!(error_code(response, 404).await, "not_found");
}

async fn a_payment_of_another_amount_is_never_refunded_by_itself(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("rf-mismatch", 600).await;
    let response = app
        .client
        .post(app.url(&format!("/sandbox/trades/{pay_no}/pay?notify=true&amount=2000")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    app.wait_for_status(&order_no, "stuck", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.refund_rows().await, 0, "an operator decides");

    // The operator refunds that payment by name.
    let response = app
        .client
        .post(app.url(&format!("/admin/orders/{order_no}/refunds")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"out_refund_id": "op-1", "amount": 2000, "reason": "wrong amount", "pay_no": pay_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let refund: Value = response.json().await.unwrap();
    assert_eq!(refund["operator"], "admin:admin");
    app.wait_for_refund(
        refund["refund_no"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;
    // Not the order's own payment: the order waits as it was.
    let status: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(status["status"], "stuck");
    // A payment that went back cannot then pay the order.
    let accept = app
        .client
        .post(app.url(&format!("/admin/orders/{order_no}/accept-payment")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"pay_no": pay_no, "reason": "accept it after all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(accept, 422).await, "not_a_mismatched_payment");
    let status: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(status["status"], "stuck");
}

/// A validly signed report of the same trade (pay_no) with another transaction id, after the
/// order was paid by it: the reports contradict each other, and the money they speak of may be
/// the order's own. Before, it was taken for a second payment and the order's own payment was
/// refunded automatically (the order ended `refunded`). Now: an anomaly for an operator (log,
/// event, metric), the payment kept as recorded, nothing refunded.
async fn a_report_contradicting_a_recorded_payment_is_an_anomaly_never_a_refund(backend: Backend) {
    let app = spawn_refunding_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("rf-conflict", 600).await;
    let report = |event_id: &str, txn: &str| {
        json!({
            "id": event_id,
            "out_trade_no": pay_no,
            "trade_state": "SUCCESS",
            "transaction_id": txn,
            "amount": 2999,
            "paid_at": chrono::Utc::now(),
        })
    };
    let now = chrono::Utc::now().timestamp();
    let first = app
        .post_sandbox_notification(
            &report("evt-first", "sbx-txn-first"),
            crate::helpers::SANDBOX_SECRET,
            now,
        )
        .await;
    assert_eq!(first.json::<Value>().await.unwrap()["outcome"], "Paid");
    let second = app
        .post_sandbox_notification(
            &report("evt-reused", "sbx-txn-other"),
            crate::helpers::SANDBOX_SECRET,
            now,
        )
        .await;
    assert_eq!(second.status().as_u16(), 200, "recorded, so acknowledged");
    assert_eq!(second.json::<Value>().await.unwrap()["outcome"], "Anomaly");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.refund_rows().await, 0, "no money the order keeps is refunded");
    let status: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(status["status"], "paid");
    let order = app.admin_order(&order_no).await;
    assert_eq!(order["payments"][0]["provider_txn_id"], "sbx-txn-first", "{order}");
    let anomaly = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|log| log["event"] == "payment.anomaly")
        .expect("an anomaly row for the operator");
    assert!(
        anomaly["reason"].as_str().unwrap().contains("sbx-txn-other"),
        "{anomaly}"
    );
    assert_eq!(app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("paywarden_money_anomalies_total{kind=\"conflicting_report\"} 1"),
        "{metrics}"
    );
}

/// Ten requests at once for 2000 each of a 2999 payment: the check and the insert are one
/// locked transaction, so exactly one passes.
#[actix_web::test]
async fn concurrent_refunds_of_one_payment_cannot_together_exceed_it() {
    let app = spawn_refunding_app(Backend::Postgres).await;
    let (order_no, _) = app.paid_order("rf-race").await;
    let requests = (0..10).map(|n| {
        let body = json!({"out_refund_id": format!("rf-race-{n}"), "amount": 2000, "reason": "race"});
        let app = &app;
        let order_no = order_no.clone();
        async move {
            app.post_refund(MERCHANT_A_KEY, &order_no, &body)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 422).count(), 9, "{statuses:?}");
    assert_eq!(app.refund_rows().await, 1);
}

/// A provider that fails keeps the refund pending (never failed, never lost); it is sent again
/// with the same number once the provider is back.
#[actix_web::test]
async fn a_refund_is_retried_with_its_number_until_the_provider_answers() {
    let app = spawn_refunding_app(Backend::Postgres).await;
    let (order_no, pay_no) = app.paid_order("rf-retry").await;
    app.sandbox_faults(json!({"mode": "error"})).await;
    let refund = app.refund(&order_no, "rf-retry-1", 2999).await;
    let refund_no = refund["refund_no"].as_str().unwrap();
    let started = Instant::now();
    while app
        .count(&format!(
            "SELECT CAST(attempts AS BIGINT) FROM refunds WHERE refund_no = {refund_no}"
        ))
        .await
        < 3
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refund was not retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still: Value = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/refunds/{refund_no}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "pending");

    app.sandbox_faults(json!({"mode": "none"})).await;
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(5))
        .await;
    let trade = app.sandbox_trade(&pay_no).await;
    let refunds = trade["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["out_refund_no"], refund_no);
}

// ---- WeChat Pay and Alipay through the simulator ----

for_each_provider!(
    full_and_partial_refunds_are_made_at_the_provider_and_never_exceed_the_payment,
    the_same_out_refund_id_resent_is_one_refund_at_the_provider,
    a_refund_whose_answer_is_lost_is_found_by_query_and_made_once,
    a_refund_the_provider_refuses_fails_and_frees_its_amount,
);

impl Rig {
    /// An order of 2999 paid at `provider`; returns (order_no, pay_no).
    pub(crate) async fn paid(&self, provider: &str, out_business_id: &str) -> (String, String) {
        let (order_no, attempt) = self.order_with_attempt(provider, out_business_id, 600).await;
        let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
        self.buyer_pays(provider, &pay_no, json!({})).await;
        self.app
            .wait_for_status(&order_no, "paid", Duration::from_secs(10))
            .await;
        (order_no, pay_no)
    }

    /// A WeChat order that closed unpaid, whose trade WeChat then settled and notified (money
    /// taken after close); returns (order_no, pay_no) once the notification is sent.
    async fn wechat_paid_after_close(&self, out_business_id: &str) -> (String, String) {
        let (order_no, attempt) = self.order_with_attempt("wechat", out_business_id, 2).await;
        let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
        self.app
            .wait_for_status(&order_no, "closed", Duration::from_secs(10))
            .await;
        assert_eq!(
            self.trade("wechat", &pay_no).state,
            paywarden_sim::SimTradeState::Closed
        );
        let settled = self
            .control(&format!("/sim/wechat/trades/{pay_no}/settle-silently"), json!({}))
            .await;
        assert_eq!(settled.status().as_u16(), 200);
        // Its notification arrives now.
        self.buyer_pays("wechat", &pay_no, json!({})).await;
        (order_no, pay_no)
    }

    /// A paid order whose full refund the provider accepts as processing; returns (order_no,
    /// pay_no, refund_no) once the refund reached the provider.
    async fn processing_refund(&self, provider: &str, out_business_id: &str) -> (String, String, String) {
        let (order_no, pay_no) = self.paid(provider, out_business_id).await;
        self.sim.set_refund_behaviour(SimRefundBehaviour {
            mode: SimRefundMode::Processing,
            hang_ms: 0,
        });
        let refund = self.app.refund(&order_no, &format!("{out_business_id}-1"), 2999).await;
        let refund_no = refund["refund_no"].as_str().unwrap().to_owned();
        let started = Instant::now();
        while self.sim.refund(sim_provider(provider), &refund_no).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the refund never reached {provider}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (order_no, pay_no, refund_no)
    }

    /// The simulator's refunds of trade `pay_no`.
    fn sim_refunds(&self, provider: &str, pay_no: &str) -> Vec<paywarden_sim::refunds::SimRefund> {
        let provider = sim_provider(provider);
        self.sim
            .refunds()
            .into_iter()
            .filter(|refund| refund.provider == provider && refund.out_trade_no == pay_no)
            .collect()
    }
}

async fn refunding_rig() -> Rig {
    rig(RigOptions {
        auto_refund: true,
        ..RigOptions::default()
    })
    .await
}

async fn full_and_partial_refunds_are_made_at_the_provider_and_never_exceed_the_payment(provider: &str) {
    let rig = refunding_rig().await;
    let app = &rig.app;

    // In full.
    let (order_no, pay_no) = rig.paid(provider, "prf-full").await;
    let refund = app.refund(&order_no, "prf-full-1", 2999).await;
    let refund_no = refund["refund_no"].as_str().unwrap();
    let done = app
        .wait_for_refund(refund_no, "succeeded", Duration::from_secs(10))
        .await;
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
    let at_sim = rig.sim_refunds(provider, &pay_no);
    assert_eq!(at_sim.len(), 1);
    assert_eq!(
        at_sim[0].out_refund_no, refund_no,
        "the provider's number is paywarden's refund_no"
    );
    assert_eq!(at_sim[0].amount_fen, 2999, "fen on the wire, exactly");
    assert_eq!(at_sim[0].requests, 1);
    // WeChat names its refunds; Alipay gives a refund no id of its own.
    assert_eq!(done["provider_refund_id"].is_string(), provider == "wechat", "{done}");

    // Two partial refunds, then one that would exceed what is left.
    let (order_no, pay_no) = rig.paid(provider, "prf-part").await;
    let first = app.refund(&order_no, "prf-part-1", 1000).await;
    let second = app.refund(&order_no, "prf-part-2", 1500).await;
    for refund in [&first, &second] {
        app.wait_for_refund(
            refund["refund_no"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(10),
        )
        .await;
    }
    let before = app.row_counts().await;
    let too_much = app
        .post_refund(
            MERCHANT_A_KEY,
            &order_no,
            &json!({"out_refund_id": "prf-part-3", "amount": 500, "reason": "too much"}),
        )
        .await;
    assert_eq!(error_code(too_much, 422).await, "refund_exceeds_paid");
    assert_eq!(app.row_counts().await, before, "nothing written");
    let at_sim = rig.sim_refunds(provider, &pay_no);
    let mut amounts: Vec<i64> = at_sim.iter().map(|refund| refund.amount_fen).collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        vec![1000, 1500],
        "only the two accepted refunds reached the provider"
    );
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["status"], "paid");
    assert_eq!(list["refunded_amount"], 2500);
}

async fn the_same_out_refund_id_resent_is_one_refund_at_the_provider(provider: &str) {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no) = rig.paid(provider, "prf-idem").await;
    let body = json!({"out_refund_id": "prf-idem-1", "amount": 700, "reason": "returned"});
    let first: Value = app
        .post_refund(MERCHANT_A_KEY, &order_no, &body)
        .await
        .json()
        .await
        .unwrap();
    let refund_no = first["refund_no"].as_str().unwrap();
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(10))
        .await;
    for _ in 0..3 {
        let again = app.post_refund(MERCHANT_A_KEY, &order_no, &body).await;
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(again.json::<Value>().await.unwrap()["refund_no"], refund_no);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_sim = rig.sim_refunds(provider, &pay_no);
    assert_eq!(at_sim.len(), 1);
    assert_eq!(at_sim[0].requests, 1, "a replay never reaches the provider again");
    assert_eq!(app.refund_rows().await, 1);
}

async fn a_refund_whose_answer_is_lost_is_found_by_query_and_made_once(provider: &str) {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no) = rig.paid(provider, "prf-lost").await;
    // The provider makes the refund, but answers every refund call only after paywarden
    // stopped waiting (3 s): the outcome can only be learnt by asking.
    rig.sim.set_refund_behaviour(SimRefundBehaviour {
        mode: SimRefundMode::Succeed,
        hang_ms: 5000,
    });
    let refund = app.refund(&order_no, "prf-lost-1", 2999).await;
    let refund_no = refund["refund_no"].as_str().unwrap();
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(20))
        .await;
    let at_sim = rig.sim_refunds(provider, &pay_no);
    assert_eq!(at_sim.len(), 1, "one refund at the provider");
    assert!(at_sim[0].queries >= 1, "found by asking how it went");
    let attempts = app
        .count(&format!(
            "SELECT CAST(attempts AS BIGINT) FROM refunds WHERE refund_no = {refund_no}"
        ))
        .await;
    assert!(attempts >= 2, "a refund call, then a query: {attempts}");
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
}

async fn a_refund_the_provider_refuses_fails_and_frees_its_amount(provider: &str) {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no) = rig.paid(provider, "prf-refused").await;
    rig.sim.set_refund_behaviour(SimRefundBehaviour {
        mode: SimRefundMode::Refuse,
        hang_ms: 0,
    });
    let refund = app.refund(&order_no, "prf-refused-1", 2999).await;
    let failed = app
        .wait_for_refund(refund["refund_no"].as_str().unwrap(), "failed", Duration::from_secs(10))
        .await;
    let failure = failed["failure"].as_str().unwrap();
    assert!(
        failure.contains("NOT_ENOUGH") || failure.contains("SELLER_BALANCE_NOT_ENOUGH"),
        "{failure}"
    );
    assert_eq!(app.outbox_count(&order_no, "refund.failed").await, 1);
    assert!(rig.sim_refunds(provider, &pay_no).is_empty());

    // The failed amount is free again.
    rig.sim.set_refund_behaviour(SimRefundBehaviour::default());
    let again = app.refund(&order_no, "prf-refused-2", 2999).await;
    app.wait_for_refund(
        again["refund_no"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(10),
    )
    .await;
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
}

/// WeChat Pay: a refund accepted as PROCESSING is settled by its `REFUND.SUCCESS`
/// notification (queries are slowed so the notification comes first); duplicates of the
/// notification change nothing.
#[actix_web::test]
async fn a_wechat_refund_processing_is_settled_by_its_notification() {
    let mut settings_rig = RigOptions {
        auto_refund: true,
        ..RigOptions::default()
    };
    settings_rig.slow_refund_queries = true;
    let rig = rig(settings_rig).await;
    let app = &rig.app;
    let (order_no, pay_no, refund_no) = rig.processing_refund("wechat", "wrf-proc").await;
    let refund_no = refund_no.as_str();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending: Value = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/refunds/{refund_no}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending", "processing at the provider");

    let completed = rig
        .control(
            &format!("/sim/wechat/refunds/{refund_no}/complete"),
            json!({"status": "SUCCESS", "duplicate": 2}),
        )
        .await;
    assert_eq!(completed.status().as_u16(), 200);
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(5))
        .await;
    let started = Instant::now();
    while rig
        .sim
        .refund(SimProvider::Wechat, refund_no)
        .unwrap()
        .notifications_sent
        < 3
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the duplicates were not sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let order = app.admin_order(&order_no).await;
    let settled = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|log| log["event"] == "refund.succeeded")
        .expect("logged");
    assert_eq!(settled["operator"], "provider:wechat", "settled by the notification");
    assert_eq!(app.outbox_count(&order_no, "refund.succeeded").await, 1, "once");
    assert_eq!(order["status"], "refunded");
    assert_eq!(rig.sim_refunds("wechat", &pay_no).len(), 1);
}

/// Alipay confirms a refund it did not move money for at once (`fund_change` `N`) through
/// `alipay.trade.fastpay.refund.query`.
#[actix_web::test]
async fn an_alipay_refund_not_confirmed_at_once_is_confirmed_by_query() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no, refund_no) = rig.processing_refund("alipay", "arf-proc").await;
    let refund_no = refund_no.as_str();
    let started = Instant::now();
    while rig
        .sim
        .refund(SimProvider::Alipay, refund_no)
        .is_none_or(|refund| refund.queries < 2)
    {
        assert!(started.elapsed() < Duration::from_secs(10), "never queried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending: Value = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/refunds/{refund_no}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending");
    let completed = rig
        .control(
            &format!("/sim/alipay/refunds/{refund_no}/complete"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(completed.status().as_u16(), 200);
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(5))
        .await;
    // A query without `refund_status` means "not refunded": the refund is sent again, with the
    // same number, which Alipay refunds once.
    let at_sim = rig.sim_refunds("alipay", &pay_no);
    assert_eq!(at_sim.len(), 1, "one refund at the provider");
    assert_eq!(at_sim[0].out_refund_no, refund_no);
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
}

/// WeChat Pay: a second payment of a paid order (a trade WeChat would not close yet) is
/// refunded in full by itself; the order keeps its own payment.
#[actix_web::test]
async fn a_second_wechat_payment_is_refunded_automatically() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, first) = rig.order_with_attempt("wechat", "wrf-second", 600).await;
    let second = app.post_payment(MERCHANT_A_KEY, &order_no, "wechat").await;
    assert_eq!(second.status().as_u16(), 201);
    let second: Value = second.json().await.unwrap();
    let first = first["pay_no"].as_str().unwrap();
    let second = second["pay_no"].as_str().unwrap();
    // Both QR codes were handed out; the buyer pays both, before the second can be closed.
    rig.buyer_pays("wechat", first, json!({})).await;
    app.wait_for_status(&order_no, "paid", Duration::from_secs(10)).await;
    let paid_twice = rig
        .control(&format!("/sim/wechat/trades/{second}/pay"), json!({}))
        .await;
    if paid_twice.status().as_u16() != 200 {
        // The order's payment closed the second trade first: nothing was taken twice.
        assert_eq!(rig.trade("wechat", second).state, paywarden_sim::SimTradeState::Closed);
        return;
    }
    let started = Instant::now();
    loop {
        let list = app.refunds_of(&order_no).await;
        let refunds = list["refunds"].as_array().unwrap().clone();
        if refunds.iter().any(|refund| refund["status"] == "succeeded") {
            assert_eq!(refunds.len(), 1, "{list}");
            assert_eq!(refunds[0]["pay_no"], second);
            assert_eq!(refunds[0]["operator"], "system");
            assert_eq!(refunds[0]["out_refund_id"], format!("auto:{second}"));
            assert_eq!(refunds[0]["amount"], 2999);
            assert_eq!(list["status"], "paid", "the order keeps its own payment");
            assert_eq!(list["refunded_amount"], 0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no automatic refund: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.sim_refunds("wechat", second).len(), 1);
    assert!(rig.sim_refunds("wechat", first).is_empty());
}

/// Alipay: a QR code never scanned stays payable after a cancel; a payment made then (its
/// notification lost) is found by the follow-up, recorded `paid_after_close`, and refunded in
/// full by itself: the order ends `refunded`.
#[actix_web::test]
async fn an_alipay_payment_after_close_is_refunded_automatically() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, attempt) = rig.order_with_attempt("alipay", "arf-late", 4).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    let cancel = app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;
    assert_eq!(cancel.status().as_u16(), 200);
    rig.buyer_pays("alipay", pay_no, json!({"notify": false})).await;
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(15))
        .await;
    let events = app.events_of(&order_no).await;
    let position = |event: &str| {
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("{event} in {events:?}"))
    };
    assert!(position("order.payment_anomaly") < position("refund.created"));
    assert!(position("refund.created") < position("refund.succeeded"));
    let at_sim = rig.sim_refunds("alipay", pay_no);
    assert_eq!(at_sim.len(), 1);
    assert_eq!(at_sim[0].amount_fen, 2999);
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["refunded_amount"], 2999);
    assert_eq!(list["refunds"][0]["operator"], "system");
}

/// A hard kill while the refund's provider call is in flight (committed, not answered): after
/// a restart the refund worker picks it up from the database and it completes, once, under the
/// same refund number.
#[actix_web::test]
async fn a_refund_interrupted_by_a_hard_kill_completes_once_after_restart() {
    let keys_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("refund-kill-keys")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&keys_dir).unwrap();
    paywarden_sim::keys::write_keys(&keys_dir).unwrap();
    let keys = paywarden_sim::keys::KeyMaterial::read(&keys_dir).unwrap();
    let mut config = SimConfig::new(keys);
    config.close_too_early_seconds = 0;
    config.notify_speedup = 1000;
    let sim = SimServer::start(config).await.unwrap();
    let settings = test_settings(Backend::Postgres).await;
    let database_url = secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned();
    let prefix = settings.redis.key_prefix.clone();
    let port = free_port();
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paywarden"));
        let key = |name: &str| keys_dir.join(name).display().to_string();
        let sim_config = sim.config();
        command
            .env("PAYWARDEN_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .env("PAYWARDEN__ENV", "test")
            .env("PAYWARDEN__DATABASE__URL", &database_url)
            .env("PAYWARDEN__REDIS__URL", redis_url())
            .env("PAYWARDEN__REDIS__KEY_PREFIX", &prefix)
            .env("PAYWARDEN__ANOMALIES__AUTO_REFUND", "true")
            .env("PAYWARDEN__PROVIDERS__WECHAT__ENABLED", "true")
            .env("PAYWARDEN__PROVIDERS__WECHAT__MCHID", &sim_config.wechat_mchid)
            .env("PAYWARDEN__PROVIDERS__WECHAT__APPID", &sim_config.wechat_appid)
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__MERCHANT_SERIAL_NO",
                &sim_config.wechat_merchant_serial_no,
            )
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__MERCHANT_PRIVATE_KEY_PATH",
                key(paywarden_sim::keys::MERCHANT_PRIVATE_KEY_FILE),
            )
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__PLATFORM_PUBLIC_KEY_PATH",
                key(paywarden_sim::keys::PLATFORM_PUBLIC_KEY_FILE),
            )
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__PLATFORM_SERIAL",
                sim.wechat_platform_serial(),
            )
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__APIV3_KEY_PATH",
                key(paywarden_sim::keys::APIV3_KEY_FILE),
            )
            .env("PAYWARDEN__PROVIDERS__WECHAT__API_BASE_URL", sim.base_url())
            .env(
                "PAYWARDEN__PROVIDERS__WECHAT__NOTIFY_URL",
                format!("http://127.0.0.1:{port}/webhooks/wechat"),
            )
            .env("PAYWARDEN__PROVIDERS__WECHAT__CALLS__TIMEOUT_MILLISECONDS", "5000")
            .env("PAYWARDEN__EXPIRY__PROVIDER_REPLY_TIMEOUT_MILLISECONDS", "6000");
        command
    };
    let mut service = ServiceProcess::spawn(command(), port).await;
    let client = reqwest::Client::new();
    let order: Value = client
        .post(format!("{}/v1/orders", service.base))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&order_body("rf-kill"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_no = order["order_no"].as_str().unwrap().to_owned();
    let attempt: Value = client
        .post(format!("{}/v1/orders/{order_no}/payments", service.base))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&json!({"provider": "wechat"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
    let paid = client
        .post(format!("{}/sim/wechat/trades/{pay_no}/pay", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    service
        .wait_for_status(MERCHANT_A_KEY, &order_no, "paid", Duration::from_secs(10), "paid")
        .await;

    // Every provider call now takes 4 s before the provider looks at it.
    sim.set_faults(SimFaults {
        latency_ms: 4000,
        ..SimFaults::default()
    });
    let refund: Value = client
        .post(format!("{}/v1/orders/{order_no}/refunds", service.base))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&json!({"out_refund_id": "rf-kill-1", "amount": 2999, "reason": "returned"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refund["status"], "pending");
    let refund_no = refund["refund_no"].as_str().unwrap().to_owned();
    // The worker has sent it: the call is in flight, unanswered.
    tokio::time::sleep(Duration::from_millis(800)).await;
    service.kill();

    sim.set_faults(SimFaults::default());
    let service = ServiceProcess::spawn(command(), port).await;
    let started = Instant::now();
    loop {
        let now: Value = client
            .get(format!("{}/v1/refunds/{refund_no}", service.base))
            .bearer_auth(MERCHANT_A_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if now["status"] == "succeeded" {
            break;
        }
        assert_eq!(now["status"], "pending", "{now}");
        // The dead node's claim lapses after the reply timeout plus a second (7 s here).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not completed after the restart: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service
        .wait_for_status(
            MERCHANT_A_KEY,
            &order_no,
            "refunded",
            Duration::from_secs(2),
            "refunded",
        )
        .await;
    let at_sim: Vec<_> = sim
        .refunds()
        .into_iter()
        .filter(|refund| refund.out_trade_no == pay_no)
        .collect();
    assert_eq!(at_sim.len(), 1, "one refund at the provider: {at_sim:?}");
    assert_eq!(at_sim[0].out_refund_no, refund_no, "under the committed number");
    assert_eq!(at_sim[0].amount_fen, 2999);
    let _ = std::fs::remove_dir_all(&keys_dir);
}

/// WeChat Pay: the provider takes the money of a trade paywarden had closed (its books say
/// paid after all) and notifies: recorded `paid_after_close`, refunded in full by itself.
#[actix_web::test]
async fn a_wechat_payment_after_close_is_refunded_automatically() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no) = rig.wechat_paid_after_close("wrf-late").await;
    let pay_no = pay_no.as_str();
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(10))
        .await;
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["refunded_amount"], 2999);
    assert_eq!(list["refunds"][0]["out_refund_id"], format!("auto:{pay_no}"));
    let at_sim = rig.sim_refunds("wechat", pay_no);
    assert_eq!(at_sim.len(), 1);
    assert_eq!(at_sim[0].amount_fen, 2999);
    assert_eq!(app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
}

/// An automatic refund the provider refuses (the balance is short) is not given up: it stays
/// pending with the provider's words, and is sent again (same number) until it succeeds.
#[actix_web::test]
async fn a_refused_automatic_refund_is_sent_again_until_it_succeeds() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    rig.sim.set_refund_behaviour(SimRefundBehaviour {
        mode: SimRefundMode::Refuse,
        hang_ms: 0,
    });
    let (order_no, pay_no) = rig.wechat_paid_after_close("wrf-auto-refused").await;
    let pay_no = pay_no.as_str();
    app.wait_for_status(&order_no, "paid_after_close", Duration::from_secs(10))
        .await;
    // Refused again and again (NOT_ENOUGH): pending, with the reason, never failed.
    let started = Instant::now();
    loop {
        let list = app.refunds_of(&order_no).await;
        let refund = &list["refunds"][0];
        assert_eq!(refund["status"], "pending", "{list}");
        if refund["failure"].as_str().is_some_and(|f| f.contains("NOT_ENOUGH"))
            && app.count("SELECT CAST(attempts AS BIGINT) FROM refunds").await >= 4
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rig.sim_refunds("wechat", pay_no).is_empty());
    // The balance is topped up: the next send goes through.
    rig.sim.set_refund_behaviour(SimRefundBehaviour::default());
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(10))
        .await;
    let list = app.refunds_of(&order_no).await;
    assert_eq!(list["refunds"].as_array().unwrap().len(), 1, "one refund, sent again");
    assert!(list["refunds"][0]["failure"].is_null(), "{list}");
    assert_eq!(rig.sim_refunds("wechat", pay_no).len(), 1);
}

impl TestApp {
    /// Waits until `check` holds for the order's refunds.
    async fn wait_for_refunds(&self, order_no: &str, within: Duration, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let list = self.refunds_of(order_no).await;
            let refunds = list["refunds"].as_array().unwrap().clone();
            if check(&refunds) {
                return refunds;
            }
            assert!(started.elapsed() < within, "{list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An automatic refund WeChat closes (no money moved) is made again under a new number after
/// a backoff, for the whole payment, until one succeeds. Before, it ended `failed` and the
/// buyer's money stayed with the merchant (`auto:<pay_no>` existed, so nothing was made again).
#[actix_web::test]
async fn an_automatic_refund_the_provider_closes_is_made_again_under_a_new_number_until_it_succeeds() {
    // The new try waits 2 s: time to see the first fail and let the provider refund again.
    let rig = rig(RigOptions {
        auto_refund: true,
        auto_refund_retry: Some(Duration::from_secs(2)),
        ..RigOptions::default()
    })
    .await;
    let app = &rig.app;
    rig.sim.set_refund_behaviour(SimRefundBehaviour {
        mode: SimRefundMode::Close,
        hang_ms: 0,
    });
    let (order_no, pay_no) = rig.wechat_paid_after_close("wrf-auto-closed").await;
    let refunds = app
        .wait_for_refunds(&order_no, Duration::from_secs(10), |refunds| {
            refunds.first().is_some_and(|first| first["status"] == "failed")
        })
        .await;
    assert!(
        refunds[0]["failure"].as_str().unwrap().contains("CLOSED"),
        "{refunds:?}"
    );
    rig.sim.set_refund_behaviour(SimRefundBehaviour::default());
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(10))
        .await;
    let refunds = app.refunds_of(&order_no).await["refunds"].as_array().unwrap().clone();
    let outcome: Vec<(&str, &str, i64)> = refunds
        .iter()
        .map(|refund| {
            (
                refund["out_refund_id"].as_str().unwrap(),
                refund["status"].as_str().unwrap(),
                refund["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    let first = format!("auto:{pay_no}");
    let second = format!("auto:{pay_no}:2");
    assert_eq!(
        outcome,
        vec![(first.as_str(), "failed", 2999), (second.as_str(), "succeeded", 2999)]
    );
    assert_ne!(refunds[0]["refund_no"], refunds[1]["refund_no"]);
    let at_provider: Vec<_> = rig
        .sim_refunds("wechat", &pay_no)
        .into_iter()
        .map(|refund| (refund.out_refund_no, refund.status))
        .collect();
    assert_eq!(at_provider.len(), 2, "{at_provider:?}");
    assert_eq!(
        at_provider
            .iter()
            .filter(|(_, status)| *status == paywarden_sim::refunds::SimRefundStatus::Success)
            .count(),
        1
    );
}

/// Closed every time: after `auto_refund_max_tries` (3 in the test profile) the money is
/// parked for an operator — an anomaly on the order (the console lists it), an alert metric —
/// and nothing more is sent.
#[actix_web::test]
async fn an_automatic_refund_failing_every_time_is_parked_for_an_operator() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    rig.sim.set_refund_behaviour(SimRefundBehaviour {
        mode: SimRefundMode::Close,
        hang_ms: 0,
    });
    let (order_no, pay_no) = rig.wechat_paid_after_close("wrf-auto-parked").await;
    let started = Instant::now();
    let parked = loop {
        let order = app.admin_order(&order_no).await;
        let parked = order["logs"].as_array().unwrap().iter().any(|log| {
            log["event"] == "payment.anomaly" && log["reason"].as_str().unwrap_or_default().contains("parked")
        });
        if parked {
            break order;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{order}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refunds = app.refunds_of(&order_no).await["refunds"].as_array().unwrap().clone();
    assert_eq!(refunds.len(), 3, "{refunds:?}");
    assert!(refunds.iter().all(|refund| refund["status"] == "failed"), "{refunds:?}");
    assert_eq!(rig.sim_refunds("wechat", &pay_no).len(), 3);
    assert_eq!(parked["status"], "paid_after_close");
    assert!(
        app.metrics()
            .await
            .contains("paywarden_money_anomalies_total{kind=\"auto_refund_parked\"} 1"),
        "the alert metric"
    );
    let listed = app
        .client
        .get(app.url("/admin/orders?status=paid_after_close"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
}

/// A refund recorded failed too soon (as an Alipay query right after a refusal can make it)
/// that the provider then reports succeeded: its amount is taken back (succeeded, order
/// refunded), the merchant cannot refund that money again, and since another refund of the
/// same money was made meanwhile, the payment refunded beyond what it took is an anomaly.
/// Before, the success was only logged: the order said nothing was refunded.
#[actix_web::test]
async fn a_refund_recorded_failed_that_succeeds_later_is_counted_and_refunding_beyond_is_an_anomaly() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no, first) = rig.processing_refund("wechat", "wrf-late").await;
    // Recorded failed while WeChat still holds it (processing).
    app.execute(&format!(
        "UPDATE refunds SET status = 'failed', failure = 'not found by a query', next_attempt_at = NULL WHERE refund_no = {first}"
    ))
    .await;
    // Its amount was free again: the merchant refunds it once more; the provider is
    // unreachable meanwhile, so that one stays pending.
    rig.sim.set_faults(SimFaults {
        error_rate: 1.0,
        ..SimFaults::default()
    });
    let second = app.refund(&order_no, "wrf-late-2", 2999).await;
    let second = second["refund_no"].as_str().unwrap().to_owned();

    let done = rig
        .control(
            &format!("/sim/wechat/refunds/{first}/complete"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(done.status().as_u16(), 200);
    app.wait_for_refund(&first, "succeeded", Duration::from_secs(10)).await;
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
    let order = app.admin_order(&order_no).await;
    assert!(
        order["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|log| log["event"] == "payment.anomaly"
                && log["reason"].as_str().unwrap_or_default().contains("now total")),
        "{order}"
    );
    assert!(app
        .metrics()
        .await
        .contains("paywarden_money_anomalies_total{kind=\"refunded_beyond_paid\"} 1"));
    // The same money cannot be refunded a third time: the order is refunded now, and even an
    // operator naming the payment finds nothing left of it.
    let third = app
        .post_refund(
            MERCHANT_A_KEY,
            &order_no,
            &json!({"out_refund_id": "wrf-late-3", "amount": 1, "reason": "again"}),
        )
        .await;
    assert_eq!(error_code(third, 409).await, "order_not_refundable");
    let by_operator = app
        .client
        .post(app.url(&format!("/admin/orders/{order_no}/refunds")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"out_refund_id": "wrf-late-4", "amount": 1, "reason": "again", "pay_no": pay_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(by_operator, 422).await, "refund_exceeds_paid");

    // The provider back: it refuses the second refund beyond what the trade took; the payment
    // was refunded once at the provider.
    rig.sim.set_faults(SimFaults::default());
    app.wait_for_refund(&second, "failed", Duration::from_secs(10)).await;
    let at_provider: i64 = rig
        .sim_refunds("wechat", &pay_no)
        .iter()
        .filter(|refund| refund.status == paywarden_sim::refunds::SimRefundStatus::Success)
        .map(|refund| refund.amount_fen)
        .sum();
    assert_eq!(at_provider, 2999);
    let status: Value = app.get_status(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    assert_eq!(status["status"], "refunded");
}

/// WeChat `ABNORMAL` (the money left but did not reach the buyer) is not a failure: the refund
/// stays pending and its amount reserved until WeChat reports it succeeded.
#[actix_web::test]
async fn a_wechat_refund_abnormal_stays_pending_with_its_amount_reserved() {
    let rig = refunding_rig().await;
    let app = &rig.app;
    let (order_no, pay_no, refund_no) = rig.processing_refund("wechat", "wrf-abnormal").await;
    let refund_no = refund_no.as_str();
    let abnormal = rig
        .control(
            &format!("/sim/wechat/refunds/{refund_no}/complete"),
            json!({"status": "ABNORMAL"}),
        )
        .await;
    assert_eq!(abnormal.status().as_u16(), 200);
    let started = Instant::now();
    while rig
        .sim
        .refund(SimProvider::Wechat, refund_no)
        .unwrap()
        .notifications_sent
        == 0
        || rig.sim.refund(SimProvider::Wechat, refund_no).unwrap().queries < 2
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still: Value = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/refunds/{refund_no}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "pending", "{still}");
    let again = app
        .post_refund(
            MERCHANT_A_KEY,
            &order_no,
            &json!({"out_refund_id": "wrf-abnormal-2", "amount": 1, "reason": "again"}),
        )
        .await;
    assert_eq!(
        error_code(again, 422).await,
        "refund_exceeds_paid",
        "the amount stays reserved"
    );

    let done = rig
        .control(
            &format!("/sim/wechat/refunds/{refund_no}/complete"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(done.status().as_u16(), 200);
    app.wait_for_refund(refund_no, "succeeded", Duration::from_secs(5))
        .await;
    app.wait_for_status(&order_no, "refunded", Duration::from_secs(1)).await;
    assert_eq!(rig.sim_refunds("wechat", &pay_no).len(), 1);
}
