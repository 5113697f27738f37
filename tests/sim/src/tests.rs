//! The gateways against the simulator over real HTTP: the whole path, signing to
//! notification, with no mock in between.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actors::gateway::alipay::AlipayGateway;
use actors::gateway::wechat::WechatGateway;
use actors::gateway::{
    CloseOutcome, Gateway, GatewayError, NotificationRequest, NotificationSubject, QrRequest, TradeState,
};
use chrono::Utc;
use entities::{Currency, MinorUnit, PayNo};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::keys::KeyMaterial;
use crate::{SimConfig, SimProvider, SimServer, SimTrade, SimTradeState};

fn vector(name: &str) -> Value {
    let path = format!(concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/{}"), name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Test keys from the vector files (the WeChat doc key as merchant, the Java SDK platform key
/// as platform), so these tests need no RSA key generation.
fn vector_keys() -> KeyMaterial {
    let sign = vector("wechat_v3_sign.json");
    let merchant = &sign["keys"]["doc_test_key"];
    let response = vector("wechat_v3_response_verify.json");
    let platform = &response["platform_keys"]["java_sdk_wechat_pay"];
    let decrypt = vector("wechat_v3_notify_decrypt.json");
    let text = |v: &Value, key: &str| v[key].as_str().unwrap().to_owned();
    KeyMaterial {
        merchant_private_key_pem: SecretString::from(text(merchant, "private_key_pem")),
        merchant_public_key_pem: text(merchant, "public_key_pem"),
        platform_private_key_pem: SecretString::from(text(platform, "private_key_pem")),
        platform_public_key_pem: text(platform, "public_key_pem"),
        apiv3_key: SecretString::from(text(&decrypt["vectors"][0], "apiv3_key")),
    }
}

async fn start_sim(close_too_early_seconds: u64) -> SimServer {
    let mut config = SimConfig::new(vector_keys());
    config.close_too_early_seconds = close_too_early_seconds;
    // 15 s becomes 15 ms, 4 min 240 ms.
    config.notify_speedup = 1000;
    SimServer::start(config).await.unwrap()
}

/// A merchant endpoint that records notifications; the first `fail_first` get a 500.
#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<NotificationRequest>>>,
    fail_first: Arc<AtomicU32>,
}

impl Inbox {
    async fn start(fail_first: u32) -> (String, Inbox) {
        let inbox = Inbox {
            received: Arc::default(),
            fail_first: Arc::new(AtomicU32::new(fail_first)),
        };
        let data = web::Data::new(inbox.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/{provider}", web::post().to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0];
        tokio::spawn(server.run());
        (format!("http://{address}"), inbox)
    }

    async fn wait_for(&self, count: usize) -> Vec<NotificationRequest> {
        for _ in 0..500 {
            {
                let received = self.received.lock().unwrap();
                if received.len() >= count {
                    return received.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} notifications, got {}",
            self.received.lock().unwrap().len()
        );
    }
}

async fn receive(
    inbox: web::Data<Inbox>,
    req: HttpRequest,
    body: web::Bytes,
    provider: web::Path<String>,
) -> HttpResponse {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    inbox.received.lock().unwrap().push(NotificationRequest {
        headers,
        body: body.to_vec(),
    });
    let fail = inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
        .is_ok();
    match (provider.as_str(), fail) {
        (_, true) => HttpResponse::InternalServerError().json(json!({"code": "FAIL", "message": "busy"})),
        ("alipay", false) => HttpResponse::Ok().body("success"),
        (_, false) => HttpResponse::NoContent().finish(),
    }
}

fn qr(pay_no: i64, expires_in: chrono::Duration) -> QrRequest {
    QrRequest {
        pay_no: PayNo::new(pay_no).unwrap(),
        amount: MinorUnit::new(1999).unwrap(),
        currency: Currency::Cny,
        subject: "Course / 课程".into(),
        expires_at: Utc::now() + expires_in,
    }
}

async fn control(sim: &SimServer, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn sim_trade(sim: &SimServer, provider: &str, no: i64) -> SimTrade {
    control(
        sim,
        reqwest::Method::GET,
        &format!("/sim/{provider}/trades/{no}"),
        json!({}),
    )
    .await
    .json()
    .await
    .unwrap()
}

fn wechat(sim: &SimServer, notify_url: &str) -> WechatGateway {
    WechatGateway::new(sim.wechat_settings(notify_url), reqwest::Client::new()).unwrap()
}

fn alipay(sim: &SimServer, notify_url: &str) -> AlipayGateway {
    AlipayGateway::new(sim.alipay_settings(notify_url), reqwest::Client::new()).unwrap()
}

#[tokio::test]
async fn wechat_trade_goes_from_prepay_to_paid_with_a_verified_notification() {
    // Arrange
    let sim = start_sim(300).await;
    let (inbox_url, inbox) = Inbox::start(0).await;
    let gateway = wechat(&sim, &format!("{inbox_url}/wechat"));

    // Act / Assert: prepay, unpaid, too early to close
    let created = gateway
        .create_qr(&qr(1001, chrono::Duration::minutes(10)))
        .await
        .unwrap();
    assert!(created.code_url.starts_with("weixin://wxpay/bizpayurl?pr="));
    assert_eq!(
        gateway.query(PayNo::new(1001).unwrap()).await.unwrap().state,
        TradeState::NotPaid
    );
    match gateway.close(PayNo::new(1001).unwrap()).await.unwrap() {
        CloseOutcome::TooEarly { retry_at } => assert!(retry_at > Utc::now() + chrono::Duration::seconds(200)),
        other => panic!("expected too early, got {other:?}"),
    }

    // The buyer pays; the notification arrives signed and encrypted.
    let paid = control(&sim, reqwest::Method::POST, "/sim/wechat/trades/1001/pay", json!({})).await;
    assert_eq!(paid.status(), 200);
    let received = inbox.wait_for(1).await;
    let verified = gateway.verify_notification(&received[0]).unwrap();
    assert_eq!(verified.pay_no(), Some(PayNo::new(1001).unwrap()));
    match verified.subject {
        NotificationSubject::Trade(TradeState::Paid(trade)) => assert_eq!(trade.amount, MinorUnit::new(1999).unwrap()),
        other => panic!("expected paid, got {other:?}"),
    }

    assert!(matches!(
        gateway.query(PayNo::new(1001).unwrap()).await.unwrap().state,
        TradeState::Paid(_)
    ));
    assert_eq!(
        gateway.close(PayNo::new(1001).unwrap()).await.unwrap(),
        CloseOutcome::AlreadyPaid
    );
    let trade = sim_trade(&sim, "wechat", 1001).await;
    assert_eq!((trade.query_count, trade.close_count), (2, 2));
    assert_eq!(trade.notifications_acknowledged, 1);
    sim.stop().await;
}

#[tokio::test]
async fn wechat_close_succeeds_after_the_window_and_unknown_trades_are_not_found() {
    let sim = start_sim(0).await;
    let gateway = wechat(&sim, "http://127.0.0.1:9/unused");
    gateway
        .create_qr(&qr(1002, chrono::Duration::minutes(10)))
        .await
        .unwrap();

    assert_eq!(
        gateway.close(PayNo::new(1002).unwrap()).await.unwrap(),
        CloseOutcome::Closed
    );
    assert_eq!(
        gateway.query(PayNo::new(1002).unwrap()).await.unwrap().state,
        TradeState::Closed
    );
    assert_eq!(
        gateway.query(PayNo::new(9999).unwrap()).await.unwrap().state,
        TradeState::NotFound
    );
    assert_eq!(
        gateway.close(PayNo::new(9999).unwrap()).await.unwrap(),
        CloseOutcome::NotFound
    );
    let paid = control(&sim, reqwest::Method::POST, "/sim/wechat/trades/1002/pay", json!({})).await;
    assert_eq!(paid.status(), 409, "a closed trade was paid");
    sim.stop().await;
}

#[tokio::test]
async fn wechat_refuses_a_bad_merchant_signature_with_an_unsigned_401() {
    let sim = start_sim(300).await;
    // Signed with the wrong private key.
    let mut settings = sim.wechat_settings("http://127.0.0.1:9/unused");
    settings.merchant_private_key_pem = sim.config().keys.platform_private_key_pem.clone();
    let gateway = WechatGateway::new(settings, reqwest::Client::new()).unwrap();

    match gateway.create_qr(&qr(1003, chrono::Duration::minutes(10))).await {
        Err(GatewayError::Provider { code, retryable, .. }) => {
            assert_eq!(code, "SIGN_ERROR");
            assert!(!retryable);
        }
        other => panic!("expected SIGN_ERROR, got {other:?}"),
    }
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/v3/pay/transactions/out-trade-no/1003?mchid=1900000001",
            sim.base_url()
        ))
        .header("Authorization", "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\"")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    assert!(raw.headers().get("wechatpay-signature").is_none());
    sim.stop().await;
}

#[tokio::test]
async fn alipay_trade_exists_only_once_the_buyer_scans() {
    // Arrange
    let sim = start_sim(300).await;
    let (inbox_url, inbox) = Inbox::start(0).await;
    let gateway = alipay(&sim, &format!("{inbox_url}/alipay"));

    // Precreated, never scanned: Alipay does not know it.
    let created = gateway
        .create_qr(&qr(2001, chrono::Duration::minutes(10)))
        .await
        .unwrap();
    assert!(created.code_url.starts_with("https://qr.alipay.com/"));
    assert_eq!(
        gateway.query(PayNo::new(2001).unwrap()).await.unwrap().state,
        TradeState::NotFound
    );
    assert_eq!(
        gateway.close(PayNo::new(2001).unwrap()).await.unwrap(),
        CloseOutcome::NotFound
    );

    // Scanned: waiting for the buyer.
    let scanned = control(&sim, reqwest::Method::POST, "/sim/alipay/trades/2001/scan", json!({})).await;
    assert_eq!(scanned.status(), 200);
    assert_eq!(
        gateway.query(PayNo::new(2001).unwrap()).await.unwrap().state,
        TradeState::NotPaid
    );

    // Paid: a signed form notification, acknowledged with `success`.
    control(&sim, reqwest::Method::POST, "/sim/alipay/trades/2001/pay", json!({})).await;
    let received = inbox.wait_for(1).await;
    let verified = gateway.verify_notification(&received[0]).unwrap();
    assert_eq!(verified.pay_no(), Some(PayNo::new(2001).unwrap()));
    assert!(
        matches!(verified.subject, NotificationSubject::Trade(TradeState::Paid(ref trade)) if trade.amount == MinorUnit::new(1999).unwrap())
    );
    match gateway.query(PayNo::new(2001).unwrap()).await.unwrap().state {
        TradeState::Paid(trade) => assert_eq!(trade.amount, MinorUnit::new(1999).unwrap()),
        other => panic!("expected paid, got {other:?}"),
    }
    assert_eq!(
        gateway.close(PayNo::new(2001).unwrap()).await.unwrap(),
        CloseOutcome::AlreadyPaid
    );
    let trade = sim_trade(&sim, "alipay", 2001).await;
    assert_eq!(trade.state, SimTradeState::Success);
    assert_eq!(trade.notifications_acknowledged, 1);
    sim.stop().await;
}

#[tokio::test]
async fn alipay_refuses_a_bad_app_signature() {
    let sim = start_sim(300).await;
    let mut settings = sim.alipay_settings("http://127.0.0.1:9/unused");
    settings.app_private_key_pem = sim.config().keys.platform_private_key_pem.clone();
    let gateway = AlipayGateway::new(settings, reqwest::Client::new()).unwrap();

    match gateway.query(PayNo::new(2002).unwrap()).await {
        Err(GatewayError::Provider { code, retryable, .. }) => {
            assert_eq!(code, "isv.invalid-signature");
            assert!(!retryable);
        }
        other => panic!("expected isv.invalid-signature, got {other:?}"),
    }
    sim.stop().await;
}

#[tokio::test]
async fn notifications_are_resent_until_acknowledged_and_copies_keep_their_id() {
    let sim = start_sim(300).await;
    let (inbox_url, inbox) = Inbox::start(1).await;
    let gateway = wechat(&sim, &format!("{inbox_url}/wechat"));
    gateway
        .create_qr(&qr(1004, chrono::Duration::minutes(10)))
        .await
        .unwrap();

    // Lost once, refused once (500), delivered, then one duplicate.
    let options = json!({"drop": 1, "duplicate": 1});
    control(&sim, reqwest::Method::POST, "/sim/wechat/trades/1004/pay", options).await;
    let received = inbox.wait_for(3).await;

    let ids: Vec<String> = received
        .iter()
        .map(|request| gateway.verify_notification(request).unwrap().event_id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "event ids differ: {ids:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let trade = sim_trade(&sim, "wechat", 1004).await;
    assert_eq!((trade.notifications_sent, trade.notifications_acknowledged), (4, 2));
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_become_retryable_errors_and_timeouts() {
    let sim = start_sim(300).await;
    let wechat_gateway = wechat(&sim, "http://127.0.0.1:9/unused");
    let alipay_gateway = alipay(&sim, "http://127.0.0.1:9/unused");

    let set = control(&sim, reqwest::Method::PUT, "/sim/faults", json!({"error_rate": 1.0})).await;
    assert_eq!(set.status(), 200);
    let error = wechat_gateway.query(PayNo::new(1).unwrap()).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    let error = alipay_gateway.query(PayNo::new(1).unwrap()).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");

    control(
        &sim,
        reqwest::Method::PUT,
        "/sim/faults",
        json!({"timeout_rate": 1.0, "timeout_ms": 2000}),
    )
    .await;
    let impatient = WechatGateway::new(
        sim.wechat_settings("http://127.0.0.1:9/unused"),
        reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        impatient.query(PayNo::new(1).unwrap()).await,
        Err(GatewayError::Timeout)
    ));

    let invalid = control(&sim, reqwest::Method::PUT, "/sim/faults", json!({"error_rate": 2.0})).await;
    assert_eq!(invalid.status(), 400);
    sim.stop().await;
}

/// WeChat keeps an expired trade NOTPAY (the merchant still closes it) but refuses the payment.
#[tokio::test]
async fn an_expired_trade_cannot_be_paid_and_still_reads_unpaid() {
    let sim = start_sim(0).await;
    let gateway = wechat(&sim, "http://127.0.0.1:9/unused");
    gateway
        .create_qr(&qr(1005, chrono::Duration::seconds(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let paid = control(&sim, reqwest::Method::POST, "/sim/wechat/trades/1005/pay", json!({})).await;
    assert_eq!(paid.status(), 409);
    assert_eq!(
        gateway.query(PayNo::new(1005).unwrap()).await.unwrap().state,
        TradeState::NotPaid
    );
    assert_eq!(
        sim.trade(SimProvider::Wechat, "1005").map(|trade| trade.state),
        Some(SimTradeState::Notpay)
    );
    sim.stop().await;
}

/// The whole book, both providers, each trade as the control route shows it.
#[tokio::test]
async fn the_whole_trade_book_can_be_read_with_time_expire_applied() {
    let sim = start_sim(0).await;
    wechat(&sim, "http://127.0.0.1:9/unused")
        .create_qr(&qr(1006, chrono::Duration::minutes(10)))
        .await
        .unwrap();
    let alipay = alipay(&sim, "http://127.0.0.1:9/unused");
    alipay.create_qr(&qr(2006, chrono::Duration::seconds(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut book: Vec<(SimProvider, String, SimTradeState)> = sim
        .trades()
        .into_iter()
        .map(|trade| (trade.provider, trade.out_trade_no, trade.state))
        .collect();
    book.sort_by(|a, b| a.1.cmp(&b.1));

    assert_eq!(
        book,
        vec![
            (SimProvider::Wechat, "1006".to_owned(), SimTradeState::Notpay),
            // Alipay closes an unpaid trade once its time_expire passed.
            (SimProvider::Alipay, "2006".to_owned(), SimTradeState::Closed),
        ]
    );
    sim.stop().await;
}
