//! paywarden against the provider simulator, over real HTTP, for WeChat Pay v3 and Alipay:
//! signed requests and responses, encrypted (WeChat) and form-signed (Alipay) notifications.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use paywarden::config::{AlipayProviderSettings, WechatProviderSettings};
use paywarden_sim::{shared_test_keys, SimConfig, SimFaults, SimProvider, SimServer, SimTradeState};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{
    error_code, for_each_provider, order_body, spawn_app_with, test_settings, Backend, TestApp, MERCHANT_A_KEY,
};

/// paywarden configured for both real providers, pointed at a fresh simulator.
pub(crate) struct Rig {
    pub(crate) app: TestApp,
    pub(crate) sim: SimServer,
}

pub(crate) struct RigOptions {
    pub(crate) close_too_early_seconds: u64,
    /// Where the providers send notifications; `None`: paywarden's own webhook routes.
    pub(crate) notify_url: Option<String>,
    pub(crate) rate_per_second: u32,
    /// `anomalies.auto_refund` (off in the test profile).
    pub(crate) auto_refund: bool,
    /// The refund worker asks the provider again only after 30 s (a notification comes first).
    pub(crate) slow_refund_queries: bool,
    /// `refunds.auto_refund_retry_min_delay_milliseconds`, when not the test profile's.
    pub(crate) auto_refund_retry: Option<std::time::Duration>,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            close_too_early_seconds: 0,
            notify_url: None,
            rate_per_second: 100,
            auto_refund: false,
            slow_refund_queries: false,
            auto_refund_retry: None,
        }
    }
}

pub(crate) async fn rig(options: RigOptions) -> Rig {
    let keys = shared_test_keys().expect("simulator keys");
    let mut config = SimConfig::new(keys);
    config.close_too_early_seconds = options.close_too_early_seconds;
    config.notify_speedup = 1000;
    let sim = SimServer::start(config).await.expect("the simulator starts");
    let mut settings = test_settings(Backend::Postgres).await;
    settings.anomalies.auto_refund = options.auto_refund;
    if let Some(delay) = options.auto_refund_retry {
        settings.refunds.auto_retry_min_delay = delay;
    }
    if options.slow_refund_queries {
        settings.refunds.retry_min_delay = std::time::Duration::from_secs(30);
        settings.refunds.retry_max_delay = std::time::Duration::from_secs(60);
    }
    let mut calls = settings.providers.sandbox.calls.clone();
    // RSA signing in a debug build takes tens of milliseconds.
    calls.timeout = std::time::Duration::from_secs(3);
    calls.rate_per_second = options.rate_per_second;
    let notify_url = options.notify_url.clone().unwrap_or_default();
    let wechat = sim.wechat_settings("");
    let platform = wechat.platform_keys.first().expect("a platform key").clone();
    settings.providers.wechat = WechatProviderSettings {
        enabled: true,
        mchid: wechat.mchid,
        appid: wechat.appid,
        merchant_serial_no: wechat.merchant_serial_no,
        merchant_private_key: wechat.merchant_private_key_pem,
        merchant_private_key_path: String::new(),
        platform_public_key: platform.pem,
        platform_public_key_path: String::new(),
        platform_serial: platform.serial.unwrap_or_default(),
        apiv3_key: wechat.apiv3_key,
        apiv3_key_path: String::new(),
        api_base_url: wechat.api_base_url,
        notify_url: notify_url.clone(),
        calls: calls.clone(),
    };
    let alipay = sim.alipay_settings("");
    settings.providers.alipay = AlipayProviderSettings {
        enabled: true,
        app_id: alipay.app_id,
        app_private_key: alipay.app_private_key_pem,
        app_private_key_path: String::new(),
        alipay_public_key: alipay.alipay_public_key_pem,
        alipay_public_key_path: String::new(),
        gateway_url: alipay.gateway_url,
        notify_url,
        seller_id: alipay.seller_id.unwrap_or_default(),
        calls,
    };
    let app = spawn_app_with(settings).await;
    Rig { app, sim }
}

pub(crate) fn sim_provider(provider: &str) -> SimProvider {
    match provider {
        "wechat" => SimProvider::Wechat,
        _ => SimProvider::Alipay,
    }
}

impl Rig {
    pub(crate) async fn order_with_attempt(
        &self,
        provider: &str,
        out_business_id: &str,
        ttl_seconds: i64,
    ) -> (String, Value) {
        let mut body = order_body(out_business_id);
        body["ttl_seconds"] = ttl_seconds.into();
        let order = self.app.create_order(&body).await;
        let order_no = order["order_no"].as_str().unwrap().to_owned();
        let response = self.app.post_payment(MERCHANT_A_KEY, &order_no, provider).await;
        assert_eq!(response.status().as_u16(), 201, "starting a {provider} attempt");
        (order_no, response.json().await.unwrap())
    }

    pub(crate) async fn control(&self, path: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .post(format!("{}{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn buyer_pays(&self, provider: &str, pay_no: &str, body: Value) {
        let response = self
            .control(&format!("/sim/{provider}/trades/{pay_no}/pay"), body)
            .await;
        assert_eq!(response.status().as_u16(), 200, "the buyer pays {pay_no}");
    }

    pub(crate) fn trade(&self, provider: &str, pay_no: &str) -> paywarden_sim::SimTrade {
        self.sim
            .trade(sim_provider(provider), pay_no)
            .expect("the simulator has the trade")
    }
}

for_each_provider!(
    a_paid_trade_notifies_and_the_order_becomes_paid,
    an_unpaid_trade_is_closed_at_the_deadline,
    a_payment_whose_notification_is_dropped_is_compensated_at_the_deadline,
    a_close_answered_already_paid_is_compensated,
    duplicated_notifications_change_the_order_once,
    forged_notifications_are_refused_in_the_providers_form,
    provider_failures_are_retried_within_the_rate_limit_then_resolve,
    a_payment_for_a_trade_of_another_deployment_is_stored_and_acknowledged,
);

async fn a_paid_trade_notifies_and_the_order_becomes_paid(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-1", 600).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    let code_url = attempt["code_url"].as_str().unwrap();
    assert!(!code_url.is_empty());
    assert_eq!(rig.app.get_qr(MERCHANT_A_KEY, pay_no).await.status().as_u16(), 200);
    assert_eq!(rig.trade(provider, pay_no).amount_fen, 2999, "fen on the wire, exactly");

    rig.buyer_pays(provider, pay_no, json!({})).await;
    rig.app
        .wait_for_status(&order_no, "paid", Duration::from_secs(10))
        .await;

    // The simulator records the acknowledgement once paywarden's answer reaches it.
    let started = Instant::now();
    while rig.trade(provider, pay_no).notifications_acknowledged == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the notification was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let trade = rig.trade(provider, pay_no);
    let order = rig.app.admin_order(&order_no).await;
    assert_eq!(order["payments"][0]["status"], "succeeded");
    assert_eq!(
        order["payments"][0]["provider_txn_id"].as_str(),
        trade.provider_trade_no.as_deref()
    );
    assert_eq!(
        trade.notifications_acknowledged, 1,
        "acknowledged at the first delivery"
    );
    assert_eq!(trade.notifications_sent, 1);
    let operator = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.paid")
        .unwrap()["operator"]
        .clone();
    assert_eq!(operator, format!("provider:{provider}"));
}

async fn an_unpaid_trade_is_closed_at_the_deadline(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-2", 2).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    if provider == "alipay" {
        // Scanned, so the trade exists at Alipay (a never-scanned one is the next test).
        rig.control(&format!("/sim/alipay/trades/{pay_no}/scan"), json!({}))
            .await;
    }

    rig.app
        .wait_for_status(&order_no, "closed", Duration::from_secs(10))
        .await;

    let trade = rig.trade(provider, pay_no);
    assert_eq!(trade.state, SimTradeState::Closed);
    assert!(trade.query_count >= 1);
    if provider == "wechat" {
        // WeChat keeps an expired trade NOTPAY: paywarden closed it.
        assert_eq!(trade.close_count, 1);
    }
    let paying = rig
        .control(&format!("/sim/{provider}/trades/{pay_no}/pay"), json!({}))
        .await;
    assert_eq!(paying.status().as_u16(), 409, "the buyer can no longer pay");
}

#[actix_web::test]
async fn a_never_scanned_alipay_trade_is_closed_at_the_deadline() {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt("alipay", "prov-3", 2).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();

    rig.app
        .wait_for_status(&order_no, "closed", Duration::from_secs(10))
        .await;

    assert!(!rig.trade("alipay", pay_no).scanned);
    let events = rig.app.events_of(&order_no).await;
    assert!(events.contains(&"attempt.closed".to_owned()), "{events:?}");
    let order = rig.app.admin_order(&order_no).await;
    let closed = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "attempt.closed")
        .unwrap();
    assert!(
        closed["reason"].as_str().unwrap().contains("unknown to the provider"),
        "{closed}"
    );
}

#[actix_web::test]
async fn a_wechat_trade_that_cannot_be_closed_yet_is_over_once_its_time_expire_passed() {
    // WeChat's 5-minute close rule is on: the close is refused, and the order is closed locally
    // only once the trade's time_expire (its deadline) is past and it still reads unpaid.
    let rig = rig(RigOptions {
        close_too_early_seconds: 300,
        ..RigOptions::default()
    })
    .await;
    let (order_no, attempt) = rig.order_with_attempt("wechat", "prov-4", 2).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();

    rig.app
        .wait_for_status(&order_no, "closed", Duration::from_secs(15))
        .await;

    let trade = rig.trade("wechat", pay_no);
    assert!(trade.close_count >= 1, "paywarden tried to close");
    assert_eq!(trade.state, SimTradeState::Notpay, "the provider refused to close it");
    let paying = rig
        .control(&format!("/sim/wechat/trades/{pay_no}/pay"), json!({}))
        .await;
    assert_eq!(paying.status().as_u16(), 409, "but it can no longer be paid");
    let order = rig.app.admin_order(&order_no).await;
    let closed = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "attempt.closed")
        .unwrap();
    assert!(closed["reason"].as_str().unwrap().contains("time_expire"), "{closed}");

    // A cancel before the deadline cannot close such a trade either: the order stays open.
    let (open_order, _) = rig.order_with_attempt("wechat", "prov-4b", 600).await;
    let cancel = rig
        .app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{open_order}/cancel"), None)
        .await;
    assert_eq!(error_code(cancel, 409).await, "close_not_possible_yet");
    rig.app
        .wait_for_status(&open_order, "pending", Duration::from_secs(1))
        .await;
}

async fn a_payment_whose_notification_is_dropped_is_compensated_at_the_deadline(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-5", 2).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();

    rig.buyer_pays(provider, pay_no, json!({"notify": false})).await;
    rig.app
        .wait_for_status(&order_no, "paid", Duration::from_secs(10))
        .await;

    let trade = rig.trade(provider, pay_no);
    assert_eq!(trade.notifications_sent, 0);
    let order = rig.app.admin_order(&order_no).await;
    assert_eq!(
        order["payments"][0]["provider_txn_id"].as_str(),
        trade.provider_trade_no.as_deref()
    );
    let paid = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"] == "order.paid")
        .unwrap();
    assert_eq!(paid["operator"], "system");
}

async fn a_close_answered_already_paid_is_compensated(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-6", 600).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    // The buyer pays exactly as the merchant's close arrives: query says unpaid, close says paid.
    let armed = rig
        .control(&format!("/sim/{provider}/trades/{pay_no}/pay-at-close"), json!({}))
        .await;
    assert_eq!(armed.status().as_u16(), 200);

    let cancel = rig
        .app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;

    assert_eq!(
        error_code(cancel, 409).await,
        "order_not_pending",
        "the cancel lost to the payment"
    );
    rig.app.wait_for_status(&order_no, "paid", Duration::from_secs(1)).await;
    let trade = rig.trade(provider, pay_no);
    assert_eq!(trade.close_count, 1);
    assert!(trade.query_count >= 2, "queried again after the close answered paid");
    assert_eq!(trade.state, SimTradeState::Success);
}

async fn duplicated_notifications_change_the_order_once(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-7", 600).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();

    // Two copies of the same notification after the first, and one lost first delivery.
    rig.buyer_pays(provider, pay_no, json!({"duplicate": 2, "drop": 1}))
        .await;
    rig.app
        .wait_for_status(&order_no, "paid", Duration::from_secs(10))
        .await;
    let started = Instant::now();
    while rig.trade(provider, pay_no).notifications_acknowledged < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            rig.trade(provider, pay_no)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(rig.app.outbox_count(&order_no, "order.paid").await, 1);
    let paid_logs = rig
        .app
        .events_of(&order_no)
        .await
        .iter()
        .filter(|e| *e == "order.paid")
        .count();
    assert_eq!(paid_logs, 1);
    assert_eq!(rig.app.count("SELECT COUNT(*) FROM webhook_receipts").await, 1);
}

async fn forged_notifications_are_refused_in_the_providers_form(provider: &str) {
    // Arrange: capture the real notification instead of letting it reach paywarden.
    let capture = Capture::start();
    let rig = rig(RigOptions {
        notify_url: Some(capture.url.clone()),
        ..RigOptions::default()
    })
    .await;
    let (order_no, attempt) = rig.order_with_attempt(provider, "prov-8", 600).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    rig.buyer_pays(provider, pay_no, json!({})).await;
    let real = capture.first(Duration::from_secs(10)).await;
    let hook = rig.app.url(&format!("/webhooks/{provider}"));
    let send = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut request = rig.app.client.post(&hook).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    // Act + Assert: tampered copies are refused and change nothing.
    let mut tampered = real.body.clone();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let refused = send(real.headers.clone(), tampered).await.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let refusal = refused.text().await.unwrap();
    if provider == "wechat" {
        let body: Value = serde_json::from_str(&refusal).unwrap();
        assert_eq!(body["code"], "FAIL");
    } else {
        assert_eq!(refusal, "fail");
    }
    rig.app
        .wait_for_status(&order_no, "pending", Duration::from_secs(1))
        .await;

    if provider == "wechat" {
        // A replay long after: re-signed by the platform key itself, but 10 minutes old.
        let stale = restamp_wechat(&real, chrono::Utc::now().timestamp() - 600);
        let refused = send(stale.headers, stale.body).await.unwrap();
        assert_eq!(refused.status().as_u16(), 400, "a stale timestamp is refused");
        rig.app
            .wait_for_status(&order_no, "pending", Duration::from_secs(1))
            .await;
    }

    // The genuine notification is accepted, and a replay of it is a harmless duplicate.
    let accepted = send(real.headers.clone(), real.body.clone()).await.unwrap();
    let expected = if provider == "wechat" { 204 } else { 200 };
    assert_eq!(accepted.status().as_u16(), expected);
    if provider == "alipay" {
        assert_eq!(accepted.text().await.unwrap(), "success");
    }
    rig.app.wait_for_status(&order_no, "paid", Duration::from_secs(1)).await;
    let replay = send(real.headers.clone(), real.body.clone()).await.unwrap();
    assert_eq!(replay.status().as_u16(), expected);
    assert_eq!(rig.app.outbox_count(&order_no, "order.paid").await, 1);
}

async fn provider_failures_are_retried_within_the_rate_limit_then_resolve(provider: &str) {
    let rate = 4;
    let rig = rig(RigOptions {
        rate_per_second: rate,
        ..RigOptions::default()
    })
    .await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(rig.order_with_attempt(provider, &format!("prov-9-{n}"), 2).await);
    }
    rig.sim.set_faults(SimFaults {
        error_rate: 1.0,
        ..SimFaults::default()
    });

    // Every call fails: the orders are retried, then stuck.
    for (order_no, _) in &orders {
        rig.app
            .wait_for_status(order_no, "stuck", Duration::from_secs(20))
            .await;
    }
    let calls = |rig: &Rig| -> u32 {
        orders
            .iter()
            .map(|(_, attempt)| {
                let trade = rig.trade(provider, attempt["pay_no"].as_str().unwrap());
                trade.query_count + trade.close_count
            })
            .sum()
    };
    let before = calls(&rig);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = calls(&rig) - before;
    let allowed = rate * u32::try_from(window.elapsed().as_secs() + 1).unwrap() + rate;
    assert!(during <= allowed, "{during} provider calls in ~2 s at {rate}/s");

    // The provider recovers: a later retry resolves every stuck order.
    rig.sim.set_faults(SimFaults::default());
    for (order_no, _) in &orders {
        rig.app
            .wait_for_status(order_no, "closed", Duration::from_secs(20))
            .await;
    }
}

/// A notification as the provider sent it.
#[derive(Clone, Debug)]
struct Captured {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Stands where paywarden's webhook would be, keeps what arrives, answers as a merchant would.
struct Capture {
    url: String,
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Capture {
    fn start() -> Self {
        let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let shared = seen.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(
                    |req: HttpRequest, body: web::Bytes, seen: web::Data<Arc<Mutex<Vec<Captured>>>>| async move {
                        let headers = req
                            .headers()
                            .iter()
                            .filter(|(name, _)| name.as_str() != "host" && name.as_str() != "content-length")
                            .filter_map(|(name, value)| {
                                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                            })
                            .collect();
                        seen.lock().unwrap().push(Captured {
                            headers,
                            body: body.to_vec(),
                        });
                        // Both providers stop resending on these.
                        HttpResponse::Ok().body("success")
                    },
                ))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/notify"),
            seen,
        }
    }

    async fn first(&self, within: Duration) -> Captured {
        let started = Instant::now();
        loop {
            if let Some(first) = self.seen.lock().unwrap().first().cloned() {
                return first;
            }
            assert!(started.elapsed() < within, "no notification arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The captured WeChat notification, signed again by the platform key at `timestamp`.
fn restamp_wechat(real: &Captured, timestamp: i64) -> Captured {
    use actors::gateway::wechat::crypto::{response_message, RsaSigningKey};
    let keys = shared_test_keys().unwrap();
    let signer = RsaSigningKey::from_pem(keys.platform_private_key_pem.expose_secret()).unwrap();
    let nonce = "restampednonce0000000000000000000";
    let signature = signer
        .sign(&response_message(&timestamp.to_string(), nonce, &real.body))
        .unwrap();
    let headers = real
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match name.as_str() {
                "wechatpay-timestamp" => timestamp.to_string(),
                "wechatpay-nonce" => nonce.to_owned(),
                "wechatpay-signature" => signature.clone(),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    Captured {
        headers,
        body: real.body.clone(),
    }
}

/// Before the fix a cancel that found the Alipay trade unknown (QR never scanned) closed the
/// attempt for good, though the QR stays payable until its time_expire: a payment made then,
/// with its notification lost, was recorded nowhere. Now the trade stays on the follow-up until
/// time_expire plus the margin, and a payment found there is recorded.
#[actix_web::test]
async fn a_trade_unknown_at_cancel_is_followed_until_time_expire_and_a_late_payment_recorded() {
    let rig = rig(RigOptions::default()).await;
    let (order_no, attempt) = rig.order_with_attempt("alipay", "follow-1", 4).await;
    let pay_no = attempt["pay_no"].as_str().unwrap();
    let cancel = rig
        .app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;
    assert_eq!(cancel.status().as_u16(), 200);
    assert_eq!(cancel.json::<Value>().await.unwrap()["status"], "closed");
    assert!(!rig.trade("alipay", pay_no).scanned);

    // The buyer scans the QR code they still hold and pays; the notification is lost.
    rig.buyer_pays("alipay", pay_no, json!({"notify": false})).await;
    rig.app
        .wait_for_status(&order_no, "paid_after_close", Duration::from_secs(10))
        .await;
    assert_eq!(rig.app.outbox_count(&order_no, "order.payment_anomaly").await, 1);
    let followed =
        format!("SELECT COUNT(*) FROM payment_attempts WHERE pay_no = {pay_no} AND follow_up_at IS NOT NULL");
    assert_eq!(rig.app.count(&followed).await, 0, "off the follow-up once recorded");

    // Never paid: followed until time_expire plus the margin, then let go.
    let (quiet_order, attempt) = rig.order_with_attempt("alipay", "follow-2", 2).await;
    let quiet_pay_no = attempt["pay_no"].as_str().unwrap();
    let cancel = rig
        .app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{quiet_order}/cancel"), None)
        .await;
    assert_eq!(cancel.status().as_u16(), 200);
    let followed =
        format!("SELECT COUNT(*) FROM payment_attempts WHERE pay_no = {quiet_pay_no} AND follow_up_at IS NOT NULL");
    assert_eq!(rig.app.count(&followed).await, 1, "followed while payable");
    let started = Instant::now();
    while rig.app.count(&followed).await == 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still followed after time_expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rig.trade("alipay", quiet_pay_no).query_count >= 2,
        "a final query after time_expire"
    );
    rig.app
        .wait_for_status(&quiet_order, "closed", Duration::from_secs(1))
        .await;

    // Scanned after the cancel (the trade now exists, unpaid): the follow-up closes it there.
    let (scanned_order, attempt) = rig.order_with_attempt("alipay", "follow-2b", 600).await;
    let scanned_pay_no = attempt["pay_no"].as_str().unwrap();
    let cancel = rig
        .app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{scanned_order}/cancel"), None)
        .await;
    assert_eq!(cancel.status().as_u16(), 200);
    let scan = rig
        .control(&format!("/sim/alipay/trades/{scanned_pay_no}/scan"), json!({}))
        .await;
    assert_eq!(scan.status().as_u16(), 200);
    let started = Instant::now();
    while rig.trade("alipay", scanned_pay_no).state != SimTradeState::Closed {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the scanned trade was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Before the fix a second attempt of a paid order that the provider would not close yet
/// (WeChat's close rule) was never looked at again: paid later with its notification lost,
/// that money was recorded nowhere. Now it is followed and the payment recorded as an anomaly
/// with a refund owed, once.
#[actix_web::test]
async fn a_second_attempt_the_provider_will_not_close_yet_is_followed_and_its_payment_recorded() {
    let rig = rig(RigOptions {
        close_too_early_seconds: 2,
        ..RigOptions::default()
    })
    .await;
    let (order_no, first) = rig.order_with_attempt("wechat", "follow-3", 600).await;
    let first = first["pay_no"].as_str().unwrap().to_owned();
    let second = rig.app.post_payment(MERCHANT_A_KEY, &order_no, "wechat").await;
    assert_eq!(second.status().as_u16(), 201);
    let second: Value = second.json().await.unwrap();
    let second = second["pay_no"].as_str().unwrap().to_owned();

    rig.buyer_pays("wechat", &first, json!({})).await;
    rig.app
        .wait_for_status(&order_no, "paid", Duration::from_secs(10))
        .await;
    // The close of the other trade was refused (too early); the buyer pays it meanwhile.
    let started = Instant::now();
    while rig.trade("wechat", &second).close_count == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the other trade was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.trade("wechat", &second).state, SimTradeState::Notpay);
    rig.buyer_pays("wechat", &second, json!({"notify": false})).await;

    let anomalies =
        format!("SELECT COUNT(*) FROM order_logs WHERE order_id = {order_no} AND event = 'payment.anomaly'");
    let started = Instant::now();
    while rig.app.count(&anomalies).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the second payment was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.app.count(&anomalies).await, 1, "recorded once");
    let order = rig.app.admin_order(&order_no).await;
    assert_eq!(order["status"], "paid");
    let payments = order["payments"].as_array().unwrap();
    let second_row = payments.iter().find(|p| p["pay_no"] == second.as_str()).unwrap();
    assert_eq!(
        second_row["provider_txn_id"].as_str(),
        rig.trade("wechat", &second).provider_trade_no.as_deref(),
        "the second payment is kept on its attempt"
    );
    let followed =
        format!("SELECT COUNT(*) FROM payment_attempts WHERE order_id = {order_no} AND follow_up_at IS NOT NULL");
    assert_eq!(rig.app.count(&followed).await, 0);
}

/// Before the fix a correctly signed notification whose `out_trade_no` paywarden could not
/// have issued (another deployment on the same merchant account) was refused as malformed: the
/// provider gave up after its retries and the money was recorded nowhere.
async fn a_payment_for_a_trade_of_another_deployment_is_stored_and_acknowledged(provider: &str) {
    let rig = rig(RigOptions::default()).await;
    let foreign = format!("ERP-{provider}-0001");
    let opened = rig
        .control(
            &format!("/sim/{provider}/trades"),
            json!({
                "out_trade_no": foreign,
                "amount_fen": 4321,
                "notify_url": rig.app.url(&format!("/webhooks/{provider}")),
            }),
        )
        .await;
    assert_eq!(opened.status().as_u16(), 201);

    rig.buyer_pays(provider, &foreign, json!({})).await;

    let started = Instant::now();
    while rig.trade(provider, &foreign).notifications_acknowledged == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the notification was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = rig
        .app
        .count(&format!(
            "SELECT COUNT(*) FROM unmatched_notifications WHERE pay_no = '{foreign}' AND trade_state = 'paid' AND amount = 4321"
        ))
        .await;
    assert_eq!(stored, 1, "stored for an operator");
    assert_eq!(rig.app.count("SELECT COUNT(*) FROM orders").await, 0);
}
