//! Payment notifications, sent to the `notify_url` given when the trade was created and
//! resent on the provider's schedule (divided by `notify_speedup`) until acknowledged.
//!
//! - WeChat: JSON envelope, `resource` encrypted with AEAD_AES_256_GCM under the APIv3 key,
//!   headers signed with the platform key (re-signed per attempt, so a resend is not refused
//!   as stale); acknowledged by any 2xx.
//! - Alipay: form POST of `trade_status_sync` parameters, signed RSA2 over all but `sign` and
//!   `sign_type`; acknowledged only by the literal body `success`. `notify_id` never changes.

use std::sync::Arc;
use std::time::Duration;

use actors::gateway::alipay::crypto as alipay_crypto;
use actors::gateway::alipay::transformers::format_china_datetime;
use actors::gateway::wechat::crypto;
use actors::gateway::wechat::transformers::{
    rfc3339_china, WechatEncryptedResource, WechatNotification, EVENT_TRANSACTION_SUCCESS, RESOURCE_ALGORITHM,
};
use chrono::Utc;

use crate::alipay::yuan;
use crate::book::{SimPayOptions, SimProvider, SimState, SimTrade};
use crate::wechat::transaction;

/// WeChat Pay v3's documented resend intervals (24 h 4 min in all).
pub const WECHAT_RETRY_SECONDS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];
/// Alipay's documented resend intervals (8 notifications within 25 hours).
pub const ALIPAY_RETRY_SECONDS: [u64; 7] = [240, 600, 600, 3600, 7200, 21600, 54000];
/// One delivery attempt gives up after this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts delivering the payment notification of `trade` in the background.
pub(crate) fn spawn(state: Arc<SimState>, trade: SimTrade, options: SimPayOptions) {
    tokio::spawn(async move { deliver(state, trade, options).await });
}

/// A hostile or broken provider: a validly signed payment notification for a paid trade that
/// names another transaction id (a reused `out_trade_no`), sent once. Its trade in the book is
/// unchanged. Returns whether the merchant acknowledged it.
///
/// # Errors
/// A message when the notification cannot be built.
pub(crate) async fn send_conflicting(state: &SimState, trade: &SimTrade) -> Result<bool, String> {
    let mut reused = trade.clone();
    reused.provider_trade_no = Some(format!("conflict-{}", uuid::Uuid::new_v4().simple()));
    let event = build_event(state, &reused)?;
    Ok(send(state, &reused, &event).await)
}

/// One notification event: what stays the same across resends.
enum Event {
    Wechat { body: Vec<u8> },
    Alipay { params: Vec<(String, String)> },
}

async fn deliver(state: Arc<SimState>, trade: SimTrade, options: SimPayOptions) {
    if options.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(options.delay_ms)).await;
    }
    let event = match build_event(&state, &trade) {
        Ok(event) => event,
        Err(err) => {
            tracing::error!(error.message = %err, out_trade_no = %trade.out_trade_no, "simulator could not build a notification");
            return;
        }
    };
    let schedule: &[u64] = match trade.provider {
        SimProvider::Wechat => &WECHAT_RETRY_SECONDS,
        SimProvider::Alipay => &ALIPAY_RETRY_SECONDS,
    };
    let speedup = state.config.notify_speedup.max(1);
    let mut to_drop = options.drop;
    let waits = std::iter::once(0).chain(schedule.iter().copied());
    for (attempt, wait_seconds) in waits.enumerate() {
        tokio::time::sleep(Duration::from_secs(wait_seconds) / speedup).await;
        if to_drop > 0 {
            to_drop -= 1;
            state.record_delivery(trade.provider, &trade.out_trade_no, false);
            tracing::info!(attempt, out_trade_no = %trade.out_trade_no, "simulated notification lost in transit");
            continue;
        }
        let acknowledged = send(&state, &trade, &event).await;
        state.record_delivery(trade.provider, &trade.out_trade_no, acknowledged);
        if acknowledged {
            for _ in 0..options.duplicate {
                let again = send(&state, &trade, &event).await;
                state.record_delivery(trade.provider, &trade.out_trade_no, again);
            }
            return;
        }
        tracing::info!(attempt, out_trade_no = %trade.out_trade_no, "simulated notification not acknowledged");
    }
    tracing::warn!(out_trade_no = %trade.out_trade_no, "simulator gave up notifying");
}

fn build_event(state: &SimState, trade: &SimTrade) -> Result<Event, String> {
    match trade.provider {
        SimProvider::Wechat => {
            let plaintext = serde_json::to_vec(&transaction(state, trade)).map_err(|err| err.to_string())?;
            let nonce = crypto::new_resource_nonce();
            let associated_data = "transaction";
            let ciphertext = crypto::encrypt_resource(&state.keys.apiv3, &nonce, associated_data, &plaintext)
                .map_err(|err| err.to_string())?;
            let envelope = WechatNotification {
                id: uuid::Uuid::new_v4().to_string(),
                create_time: rfc3339_china(Utc::now()),
                resource_type: "encrypt-resource".into(),
                event_type: EVENT_TRANSACTION_SUCCESS.into(),
                summary: "支付成功".into(),
                resource: WechatEncryptedResource {
                    original_type: "transaction".into(),
                    algorithm: RESOURCE_ALGORITHM.into(),
                    ciphertext,
                    associated_data: associated_data.into(),
                    nonce,
                },
            };
            let body = serde_json::to_vec(&envelope).map_err(|err| err.to_string())?;
            Ok(Event::Wechat { body })
        }
        SimProvider::Alipay => {
            let config = &state.config;
            let paid_at = trade.paid_at.unwrap_or_else(Utc::now);
            let amount = yuan(trade.amount_fen);
            let params = [
                ("notify_type", "trade_status_sync".to_owned()),
                ("notify_id", uuid::Uuid::new_v4().simple().to_string()),
                ("app_id", config.alipay_app_id.clone()),
                ("auth_app_id", config.alipay_app_id.clone()),
                ("charset", "utf-8".to_owned()),
                ("version", "1.0".to_owned()),
                ("sign_type", "RSA2".to_owned()),
                ("trade_no", trade.provider_trade_no.clone().unwrap_or_default()),
                ("out_trade_no", trade.out_trade_no.clone()),
                ("buyer_id", "2088000000000002".to_owned()),
                ("buyer_logon_id", "sim***@example.com".to_owned()),
                ("seller_id", config.alipay_seller_id.clone()),
                ("trade_status", "TRADE_SUCCESS".to_owned()),
                ("total_amount", amount.clone()),
                ("receipt_amount", amount.clone()),
                ("buyer_pay_amount", amount.clone()),
                ("invoice_amount", amount.clone()),
                ("point_amount", "0.00".to_owned()),
                ("subject", trade.subject.clone()),
                ("gmt_create", format_china_datetime(trade.created_at)),
                ("gmt_payment", format_china_datetime(paid_at)),
                (
                    "fund_bill_list",
                    format!(r#"[{{"amount":"{amount}","fundChannel":"ALIPAYACCOUNT"}}]"#),
                ),
            ];
            Ok(Event::Alipay {
                params: params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            })
        }
    }
}

/// One delivery attempt; `true` when the merchant acknowledged it as the provider requires.
async fn send(state: &SimState, trade: &SimTrade, event: &Event) -> bool {
    match event {
        Event::Wechat { body } => send_wechat(state, &trade.notify_url, body).await,
        Event::Alipay { params } => send_alipay(state, &trade.notify_url, params).await,
    }
}

/// One WeChat delivery attempt of `body` (headers signed now); acknowledged by any 2xx.
pub(crate) async fn send_wechat(state: &SimState, url: &str, body: &[u8]) -> bool {
    let timestamp = Utc::now().timestamp().to_string();
    let nonce = crypto::new_nonce();
    let message = crypto::response_message(&timestamp, &nonce, body);
    let Some(signature) = sign(state, message).await else {
        return false;
    };
    let request = state
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .header("Wechatpay-Timestamp", timestamp)
        .header("Wechatpay-Nonce", nonce)
        .header("Wechatpay-Signature", signature)
        .header("Wechatpay-Serial", state.keys.platform_serial.clone())
        .body(body.to_vec());
    match request.timeout(ATTEMPT_TIMEOUT).send().await {
        Ok(response) => response.status().is_success(),
        Err(err) => {
            tracing::info!(error.message = %err, "simulated notification could not be delivered");
            false
        }
    }
}

/// One Alipay delivery attempt (`notify_time` and `sign` added now); acknowledged only by the
/// literal body `success`.
async fn send_alipay(state: &SimState, url: &str, params: &[(String, String)]) -> bool {
    let mut params = params.to_vec();
    params.push(("notify_time".into(), format_china_datetime(Utc::now())));
    let content = alipay_crypto::sign_content(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        alipay_crypto::NOTIFY_V1_EXCLUDED,
    );
    let Some(sign) = sign(state, content.into_bytes()).await else {
        return false;
    };
    params.push(("sign".into(), sign));
    let Ok(body) = serde_urlencoded::to_string(&params) else {
        return false;
    };
    let request = state
        .http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body);
    match request.timeout(ATTEMPT_TIMEOUT).send().await {
        Ok(response) => {
            response.status().is_success() && response.bytes().await.is_ok_and(|body| body.as_ref() == b"success")
        }
        Err(err) => {
            tracing::info!(error.message = %err, "simulated notification could not be delivered");
            false
        }
    }
}

async fn sign(state: &SimState, message: Vec<u8>) -> Option<String> {
    let key = Arc::clone(&state.keys.platform);
    match tokio::task::spawn_blocking(move || key.sign(&message)).await {
        Ok(Ok(signature)) => Some(signature),
        Ok(Err(err)) => {
            tracing::error!(error.message = %err, "simulator failed to sign a notification");
            None
        }
        Err(err) => {
            tracing::error!(error.message = %err, "simulator signing task failed");
            None
        }
    }
}
