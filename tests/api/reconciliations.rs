//! Reconciliation against the providers' bills, WeChat Pay and Alipay through the simulator
//! (whose files are shaped like the real ones: WeChat's BOM, CRLF and summary; Alipay's GBK
//! ZIP with TAB-padded cells, period and totals): a clean day, a payment the provider settled
//! while paywarden closed the order (found, confirmed by a query, compensated), an amount
//! difference, a refund difference, a bill not published yet, and a re-run of the same day;
//! and what a hostile network or a broken provider does to a bill: rows added for trades never
//! paid, rows duplicated, other transaction ids, files of another account or day or whose rows
//! do not add up, redirected and slow downloads.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{for_each_provider, TestApp, ADMIN_TOKEN};
use crate::providers::{rig, Rig, RigOptions};

/// Today, China time: the bill day of everything a test does.
fn today() -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    chrono::Utc::now().with_timezone(&china).format("%Y-%m-%d").to_string()
}

impl TestApp {
    async fn reconcile(&self, provider: &str, date: &str) -> Value {
        let response = self
            .client
            .post(self.url("/admin/reconciliations"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"provider": provider, "date": date}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "reconciling {provider} {date}");
        response.json().await.unwrap()
    }

    async fn reconciliation(&self, id: i64) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/admin/reconciliations/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }
}

impl Rig {
    /// The bill day (China time) of the trade's payment at the simulator: the day its
    /// reconciliation is for, even when the test runs across midnight.
    fn bill_day(&self, provider: &str, pay_no: &str) -> String {
        let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        self.trade(provider, pay_no)
            .paid_at
            .expect("paid at the simulator")
            .with_timezone(&china)
            .format("%Y-%m-%d")
            .to_string()
    }

    async fn sim_put(&self, path: &str, body: Value) {
        let response = self
            .app
            .client
            .put(format!("{}{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
}

impl Rig {
    async fn tamper(&self, provider: &str, tampering: Value) {
        self.sim_put(&format!("/sim/{provider}/bill-tampering"), tampering)
            .await;
    }
}

/// Every order event of the test's database, in order.
async fn order_events(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM outbox WHERE event_type LIKE 'order.%'")
        .await
}

fn kinds(run: &Value) -> Vec<(String, String)> {
    run["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["kind"].as_str().unwrap().to_owned(),
                item["reference"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

for_each_provider!(
    a_bill_row_for_a_trade_never_paid_is_an_item_and_pays_nothing,
    a_bill_of_another_account_or_day_or_that_does_not_add_up_fails_the_run_and_changes_nothing,
    a_duplicated_row_and_another_transaction_id_are_items,
    a_clean_day_has_no_difference_and_equal_totals,
    a_payment_settled_at_the_provider_after_the_order_closed_is_found_and_compensated,
    amount_and_refund_differences_are_items_and_a_rerun_adds_none,
    a_bill_not_published_yet_is_asked_for_again_until_it_is,
);

/// A bill is unsigned (Alipay's comes from whatever address the API names): a row for a trade
/// the buyer never paid (a tampering proxy, a broken provider) is checked by a query, and the
/// provider's signed "not paid" wins: an item for an operator, no payment, no event.
async fn a_bill_row_for_a_trade_never_paid_is_an_item_and_pays_nothing(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "rec-forged", 600).await;
    let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
    rig.paid(provider, "rec-forged-real").await;
    rig.tamper(
        provider,
        json!({"add_payments": [{"out_trade_no": pay_no, "amount_fen": 2999, "trade_id": "forged-txn-1"}]}),
    )
    .await;
    let events = order_events(&rig.app).await;

    let run = rig.app.reconcile(provider, &today()).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        kinds(&run),
        vec![("bill_says_paid_provider_says_not".to_owned(), pay_no.clone())],
        "{run}"
    );
    let item = &run["differences"][0];
    assert!(item["action"].as_str().unwrap().starts_with("not recorded"), "{item}");
    assert!(item["detail"].as_str().unwrap().contains("forged-txn-1"), "{item}");
    let status: Value = rig
        .app
        .get_status(crate::helpers::MERCHANT_A_KEY, &order_no)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "pending", "{status}");
    assert_eq!(order_events(&rig.app).await, events, "no order event");
    assert_eq!(
        rig.app
            .count(&format!(
                "SELECT COUNT(*) FROM payment_attempts WHERE pay_no = {pay_no} AND provider_txn_id IS NOT NULL"
            ))
            .await,
        0
    );
}

/// A file that contradicts what was asked for or itself is not used at all: the run fails with
/// a clear reason and no item; once the provider sends a proper file, the same day completes.
async fn a_bill_of_another_account_or_day_or_that_does_not_add_up_fails_the_run_and_changes_nothing(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (_, pay_no) = rig.paid(provider, "rec-selfcheck").await;
    let day = rig.bill_day(provider, &pay_no);
    let events = order_events(&rig.app).await;
    for (tampering, reason) in [
        (json!({"account": "20889999999999990156"}), "account"),
        (json!({"account": "1900000999"}), "merchant"),
        (json!({"day_offset_days": -1}), "day"),
        (json!({"summary_extra_fen": 100}), "add up"),
    ] {
        // The account is named in Alipay's title lines, in every row of WeChat's.
        if (provider == "wechat" && reason == "account") || (provider == "alipay" && reason == "merchant") {
            continue;
        }
        rig.tamper(provider, tampering.clone()).await;
        let run = rig.app.reconcile(provider, &day).await;
        assert_eq!(run["status"], "failed", "{tampering}: {run}");
        let error = run["last_error"].as_str().unwrap();
        assert!(error.contains(reason), "{tampering}: {error}");
        assert_eq!(run["items"], 0, "{run}");
        assert!(run["next_attempt_at"].is_null(), "{run}");
    }
    assert_eq!(rig.app.count("SELECT COUNT(*) FROM reconciliation_items").await, 0);
    assert_eq!(order_events(&rig.app).await, events);

    rig.tamper(provider, json!({})).await;
    let run = rig.app.reconcile(provider, &day).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run["last_error"].is_null(), "{run}");
    assert_eq!(run["items"], 0, "{run}");
}

/// The same trade listed twice is an item (not silently collapsed); a payment whose
/// transaction id differs from the recorded one is an item even though the amounts match.
async fn a_duplicated_row_and_another_transaction_id_are_items(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (_, pay_a) = rig.paid(provider, "rec-dup-a").await;
    let (_, pay_b) = rig.paid(provider, "rec-dup-b").await;
    rig.tamper(
        provider,
        json!({"duplicate": [pay_a], "trade_ids": {pay_b.clone(): "other-txn"}}),
    )
    .await;
    let run = rig.app.reconcile(provider, &rig.bill_day(provider, &pay_a)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        kinds(&run),
        vec![
            ("duplicate_in_bill".to_owned(), pay_a.clone()),
            ("txn_differs".to_owned(), pay_b.clone()),
        ],
        "{run}"
    );
    assert_eq!(run["summary"]["provider_payments"]["count"], 3);
    assert_eq!(run["summary"]["local_payments"]["count"], 2);
}

/// Alipay's archive is fetched where the API said, never through a redirect; and with its own
/// time limit, longer than an API call's (a bill of 11 s completes).
#[actix_web::test]
async fn an_alipay_bill_is_not_fetched_through_a_redirect_and_a_slow_one_completes() {
    let rig = rig(RigOptions::default()).await;
    let (_, pay_no) = rig.paid("alipay", "rec-fetch").await;
    let day = rig.bill_day("alipay", &pay_no);
    rig.tamper("alipay", json!({"redirect": true})).await;
    let run = rig.app.reconcile("alipay", &day).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["last_error"].as_str().unwrap().contains("redirect"), "{run}");

    rig.tamper("alipay", json!({"download_delay_ms": 11_000})).await;
    let run = rig.app.reconcile("alipay", &day).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["summary"]["provider_payments"]["count"], 1, "{run}");
}

async fn a_clean_day_has_no_difference_and_equal_totals(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, pay_no) = rig.paid(provider, "rec-clean-1").await;
    rig.paid(provider, "rec-clean-2").await;
    let refund = rig.app.refund(&order_no, "rec-clean-r", 999).await;
    rig.app
        .wait_for_refund(
            refund["refund_no"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(10),
        )
        .await;

    let run = rig.app.reconcile(provider, &rig.bill_day(provider, &pay_no)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["items"], 0, "{run}");
    assert!(run["differences"].as_array().unwrap().is_empty());
    let summary = &run["summary"];
    assert_eq!(summary["provider_payments"], json!({"count": 2, "total": 5998}));
    assert_eq!(summary["provider_payments"], summary["local_payments"]);
    assert_eq!(summary["provider_refunds"], json!({"count": 1, "total": 999}));
    assert_eq!(summary["provider_refunds"], summary["local_refunds"]);
}

async fn a_payment_settled_at_the_provider_after_the_order_closed_is_found_and_compensated(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "rec-lost", 2).await;
    let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
    // The buyer scanned (an Alipay trade exists from then on), never paid in time.
    let scanned = rig
        .control(&format!("/sim/{provider}/trades/{pay_no}/scan"), json!({}))
        .await;
    assert_eq!(scanned.status().as_u16(), 200);
    rig.app
        .wait_for_status(&order_no, "closed", Duration::from_secs(10))
        .await;
    // The provider's books say paid anyway, and nobody was told.
    let settled = rig
        .control(&format!("/sim/{provider}/trades/{pay_no}/settle-silently"), json!({}))
        .await;
    assert_eq!(settled.status().as_u16(), 200);
    // A trade paywarden never issued, paid on the same account.
    let foreign = rig
        .control(
            &format!("/sim/{provider}/trades"),
            json!({"out_trade_no": "OTHER-DEPLOYMENT-1", "amount_fen": 500, "notify_url": "http://127.0.0.1:9/"}),
        )
        .await;
    assert!(foreign.status().is_success());
    rig.buyer_pays(provider, "OTHER-DEPLOYMENT-1", json!({"notify": false}))
        .await;

    let day = rig.bill_day(provider, &pay_no);
    let run = rig.app.reconcile(provider, &day).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        kinds(&run),
        vec![
            ("missing_here".to_owned(), pay_no.clone()),
            ("unknown_trade".to_owned(), "OTHER-DEPLOYMENT-1".to_owned()),
        ]
    );
    let missing = &run["differences"][0];
    assert_eq!(missing["provider_amount"], 2999);
    assert!(
        missing["action"].as_str().unwrap().starts_with("compensated"),
        "{missing}"
    );
    // Compensated like a lost callback: money taken after close, recorded once.
    let status = rig
        .app
        .wait_for_status(&order_no, "paid_after_close", Duration::from_secs(5))
        .await;
    assert!(status["paid_at"].is_string());
    assert_eq!(rig.app.outbox_count(&order_no, "order.payment_anomaly").await, 1);

    // Again: the payment is recorded now, nothing new is found, nothing recorded twice.
    let again = rig.app.reconcile(provider, &day).await;
    assert_eq!(again["id"], run["id"], "one run per provider and day");
    assert_eq!(kinds(&again), kinds(&run));
    assert_eq!(rig.app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
}

async fn amount_and_refund_differences_are_items_and_a_rerun_adds_none(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (_, pay_a) = rig.paid(provider, "rec-diff-a").await;
    let (order_b, _) = rig.paid(provider, "rec-diff-b").await;
    let refund = rig.app.refund(&order_b, "rec-diff-r", 1000).await;
    let refund_no = refund["refund_no"].as_str().unwrap().to_owned();
    rig.app
        .wait_for_refund(&refund_no, "succeeded", Duration::from_secs(10))
        .await;
    // The bill says otherwise: 29.98 for payment A, 9.00 for the refund.
    for body in [
        json!({"out_trade_no": pay_a, "amount_fen": 2998}),
        json!({"out_refund_no": refund_no, "amount_fen": 900}),
    ] {
        let adjusted = rig.control(&format!("/sim/{provider}/bill-adjustments"), body).await;
        assert_eq!(adjusted.status().as_u16(), 200);
    }

    let day = rig.bill_day(provider, &pay_a);
    let run = rig.app.reconcile(provider, &day).await;
    assert_eq!(
        kinds(&run),
        vec![
            ("amount_differs".to_owned(), pay_a.clone()),
            ("refund_differs".to_owned(), refund_no.clone()),
        ],
        "{run}"
    );
    let amount = &run["differences"][0];
    assert_eq!(
        (amount["provider_amount"].clone(), amount["local_amount"].clone()),
        (json!(2998), json!(2999))
    );
    assert!(amount["action"].is_null(), "an amount difference waits for an operator");
    let refund_item = &run["differences"][1];
    assert_eq!(
        (
            refund_item["provider_amount"].clone(),
            refund_item["local_amount"].clone()
        ),
        (json!(900), json!(1000))
    );
    assert_eq!(run["summary"]["provider_payments"]["total"], 5997);
    assert_eq!(run["summary"]["local_payments"]["total"], 5998);

    // An operator resolves one, with a note; once.
    let item_id = amount["id"].as_i64().unwrap();
    let resolve = |note: &'static str| {
        rig.app
            .client
            .post(rig.app.url(&format!("/admin/reconciliation-items/{item_id}/resolve")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"note": note}))
            .send()
    };
    let resolved = resolve("the provider corrected its bill").await.unwrap();
    assert_eq!(resolved.status().as_u16(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["resolved_by"], "admin:admin");
    assert_eq!(resolved["resolution"], "the provider corrected its bill");
    assert_eq!(resolve("again").await.unwrap().status().as_u16(), 409);

    // The same day again: the same run, no item twice, the resolution kept.
    let again = rig.app.reconcile(provider, &day).await;
    assert_eq!(again["id"], run["id"]);
    assert_eq!(kinds(&again), kinds(&run));
    assert_eq!(again["items"], 2);
    assert_eq!(again["differences"][0]["resolution"], "the provider corrected its bill");
    let items = rig.app.count("SELECT COUNT(*) FROM reconciliation_items").await;
    assert_eq!(items, 2);
}

async fn a_bill_not_published_yet_is_asked_for_again_until_it_is(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (_, pay_no) = rig.paid(provider, "rec-wait").await;
    rig.sim_put(&format!("/sim/{provider}/bill-ready"), json!({"ready": false}))
        .await;

    let run = rig.app.reconcile(provider, &rig.bill_day(provider, &pay_no)).await;
    assert_eq!(run["status"], "waiting", "{run}");
    assert!(run["last_error"].as_str().unwrap().contains("not published"), "{run}");
    assert!(run["next_attempt_at"].is_string());
    let id = run["id"].as_i64().unwrap();
    // Still held back: asked again (retry interval 1 s in the test profile), still waiting.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let waiting = rig.app.reconciliation(id).await;
    assert_eq!(waiting["status"], "waiting");
    assert!(waiting["attempts"].as_i64().unwrap() >= 2, "{waiting}");

    rig.sim_put(&format!("/sim/{provider}/bill-ready"), json!({"ready": true}))
        .await;
    let started = Instant::now();
    loop {
        let now = rig.app.reconciliation(id).await;
        if now["status"] == "completed" {
            assert_eq!(now["items"], 0, "{now}");
            assert_eq!(now["summary"]["provider_payments"]["count"], 1);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never completed: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: Value = rig
        .app
        .client
        .get(
            rig.app
                .url(&format!("/admin/reconciliations?provider={provider}&status=completed")),
        )
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);
}

/// Bad requests are refused with nothing written.
#[actix_web::test]
async fn a_reconciliation_of_the_future_or_of_a_disabled_provider_is_refused() {
    let rig = rig(RigOptions::default()).await;
    let post = |body: Value| {
        rig.app
            .client
            .post(rig.app.url("/admin/reconciliations"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    for (body, status) in [
        (json!({"provider": "wechat", "date": tomorrow}), 422),
        (json!({"provider": "wechat", "date": "30/11/2026"}), 422),
        (json!({"provider": "wechat", "date": "2001-01-01"}), 422),
        (json!({"provider": "paypal", "date": today()}), 400),
        (json!({"provider": "wechat"}), 400),
    ] {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
    }
    assert_eq!(rig.app.count("SELECT COUNT(*) FROM reconciliation_runs").await, 0);
}

/// With `reconciliation.daily`, once `run_after` (China time) has passed the worker creates
/// yesterday's run of every enabled provider by itself (here the sandbox's, an empty day).
#[actix_web::test]
async fn the_daily_schedule_reconciles_yesterday_by_itself() {
    let mut settings = crate::helpers::test_settings(crate::helpers::Backend::Sqlite).await;
    settings.reconciliation.daily = true;
    settings.reconciliation.run_after = chrono::NaiveTime::MIN;
    let app = crate::helpers::spawn_app_with(settings).await;
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let yesterday = (chrono::Utc::now().with_timezone(&china).date_naive() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let started = Instant::now();
    loop {
        let listed: Value = app
            .client
            .get(app.url("/admin/reconciliations?provider=sandbox"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let runs = listed["runs"].as_array().unwrap();
        if let Some(run) = runs.iter().find(|run| run["status"] == "completed") {
            assert_eq!(run["date"], yesterday.as_str());
            assert_eq!(run["operator"], "system");
            assert_eq!(run["items"], 0);
            assert_eq!(
                runs.len(),
                1,
                "one run per provider and day, however often the worker looks"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no daily run: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A day whose bill is still not published `empty_after_days` later (Alipay says "no bill" for
/// a day without trades) is compared as an empty bill instead of waiting for ever.
#[actix_web::test]
async fn a_day_long_without_a_bill_is_compared_as_empty() {
    let rig = rig(RigOptions::default()).await;
    rig.sim_put("/sim/alipay/bill-ready", json!({"ready": false})).await;
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let old = (chrono::Utc::now().with_timezone(&china).date_naive() - chrono::Duration::days(5))
        .format("%Y-%m-%d")
        .to_string();
    let run = rig.app.reconcile("alipay", &old).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["summary"]["provider_payments"]["count"], 0);
    assert_eq!(run["items"], 0);
    // Yesterday's is still waited for.
    let yesterday = (chrono::Utc::now().with_timezone(&china).date_naive() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let run = rig.app.reconcile("alipay", &yesterday).await;
    assert_eq!(run["status"], "waiting", "{run}");
}
