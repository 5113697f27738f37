//! The built-in sandbox provider: a QR payment provider that lives inside paywarden.
//!
//! It keeps its own trade book like a real provider (state per `out_trade_no`: NOTPAY,
//! SUCCESS, CLOSED), lets a person play the buyer ([`SandboxGateway::pay`]), and sends signed
//! notifications to the configured URL, retrying like a real provider would. Its signature is
//! HMAC-SHA256 with a shared secret over `"{timestamp}.{body}"`, sent as
//! `Sandbox-Signature: t=<unix seconds>,v1=<hex>`.
//!
//! Faults can be switched on ([`SandboxFaults`]) so the provider-down paths of the expiry rule
//! can be exercised.
//!
//! The book is in memory: a restart of the service forgets it, and the forgotten trades then
//! answer "not found", which the expiry rule treats as closed (nothing can be paid on them).

pub mod section;
pub mod transformers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use entities::{MinorUnit, PayNo, Provider, RefundNo};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub use section::SandboxProviderSettings;
pub use transformers::{SandboxNotification, SandboxTrade, SandboxTradeState};

use super::bill::{BillFetch, BillRow};
use super::{
    CloseOutcome, Gateway, GatewayError, NotificationError, NotificationRequest, NotificationSubject, QrCreated,
    QrRequest, RefundAnswer, RefundRequest, RefundState, TradeQuery, VerifiedNotification,
};

/// Header that carries the sandbox signature (lower-case, as [`NotificationRequest`] keeps them).
/// The sandbox's facts: any currency (it moves no money).
pub const INFO: super::ProviderInfo = super::ProviderInfo {
    provider: Provider::Sandbox,
    display_name: "Sandbox",
    currencies: &[],
    webhook_path: "sandbox",
    refused_in_production: Some("its attempts can be marked paid through its control routes"),
};

pub const SIGNATURE_HEADER: &str = "sandbox-signature";
/// Notifications older or newer than this are refused as replays.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

/// Pauses between a sandbox account's notification retries (the configured sandbox's are
/// `providers.sandbox.notify_retry_delays_milliseconds`).
pub const DEFAULT_NOTIFY_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

#[derive(Clone, Debug)]
pub struct SandboxSettings {
    pub secret: SecretString,
    /// Where notifications go, e.g. `http://127.0.0.1:8080/webhooks/sandbox`.
    pub notify_url: String,
    /// Base of the `code_url`s handed out, e.g. `http://127.0.0.1:8080`.
    pub public_base_url: String,
    /// Delays between notification attempts; the first attempt is immediate.
    pub notify_retry_delays: Vec<Duration>,
}

/// Injected failures, switched by the sandbox control route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum SandboxFaults {
    #[default]
    None,
    /// Every API call answers a retryable system error.
    Error,
    /// Every API call hangs for this long before answering (longer than any sane timeout).
    Timeout { delay_ms: u64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SandboxPayError {
    #[error("trade {0} does not exist")]
    NotFound(PayNo),
    #[error("trade {0} is closed and can no longer be paid")]
    Closed(PayNo),
    #[error("trade {0} has expired and can no longer be paid")]
    Expired(PayNo),
}

pub struct SandboxGateway {
    settings: SandboxSettings,
    /// The trade book. A std mutex: every critical section is a map lookup, never across await.
    trades: Mutex<HashMap<PayNo, SandboxTrade>>,
    /// Refunds by refund number: a refund sent again with the same number is answered from
    /// here, never made twice.
    refunds: Mutex<HashMap<RefundNo, SandboxRefund>>,
    faults: Mutex<SandboxFaults>,
    http: reqwest::Client,
    txn_seq: AtomicU64,
}

type HmacSha256 = Hmac<Sha256>;

impl SandboxGateway {
    pub fn new(settings: SandboxSettings, http: reqwest::Client) -> Arc<Self> {
        Arc::new(Self {
            settings,
            trades: Mutex::new(HashMap::new()),
            refunds: Mutex::new(HashMap::new()),
            faults: Mutex::new(SandboxFaults::None),
            http,
            txn_seq: AtomicU64::new(1),
        })
    }

    pub fn set_faults(&self, faults: SandboxFaults) {
        *lock(&self.faults) = faults;
    }

    pub fn faults(&self) -> SandboxFaults {
        *lock(&self.faults)
    }

    pub fn trade(&self, pay_no: PayNo) -> Option<SandboxTrade> {
        lock(&self.trades).get(&pay_no).cloned()
    }

    /// The refunds made on `pay_no`, oldest first.
    pub fn refunds_of(&self, pay_no: PayNo) -> Vec<SandboxRefund> {
        let mut refunds: Vec<SandboxRefund> = lock(&self.refunds)
            .values()
            .filter(|refund| refund.out_trade_no == pay_no)
            .cloned()
            .collect();
        refunds.sort_by_key(|refund| refund.refund_id.clone());
        refunds
    }

    /// The buyer scans and pays. With `notify`, a signed notification is sent (in the
    /// background, retried); without, the callback is "lost" and only an active query finds out.
    ///
    /// Paying an already-paid trade is a no-op that answers the trade (and notifies again).
    /// `amount`, when given, is what the buyer pays instead of the trade's amount (a provider
    /// reporting another amount, for trying the amount-mismatch rule).
    ///
    /// # Errors
    /// When the trade does not exist, is closed, or its `time_expire` has passed.
    pub fn pay(
        self: &Arc<Self>,
        pay_no: PayNo,
        notify: bool,
        amount: Option<MinorUnit>,
    ) -> Result<SandboxTrade, SandboxPayError> {
        let trade = {
            let mut trades = lock(&self.trades);
            let trade = trades.get_mut(&pay_no).ok_or(SandboxPayError::NotFound(pay_no))?;
            match trade.trade_state {
                SandboxTradeState::Closed => return Err(SandboxPayError::Closed(pay_no)),
                SandboxTradeState::Success => {}
                SandboxTradeState::Notpay => {
                    let now = Utc::now();
                    if now >= trade.time_expire {
                        return Err(SandboxPayError::Expired(pay_no));
                    }
                    let seq = self.txn_seq.fetch_add(1, Ordering::Relaxed);
                    trade.trade_state = SandboxTradeState::Success;
                    if let Some(amount) = amount {
                        trade.amount = amount;
                    }
                    trade.transaction_id = Some(format!("sbx{}{:06}", now.format("%Y%m%d%H%M%S"), seq));
                    trade.paid_at = Some(now);
                }
            }
            trade.clone()
        };
        if notify {
            if let (Some(txn), Some(paid_at)) = (trade.transaction_id.clone(), trade.paid_at) {
                let notification = SandboxNotification {
                    id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
                    out_trade_no: pay_no,
                    trade_state: SandboxTradeState::Success,
                    transaction_id: txn,
                    amount: trade.amount,
                    paid_at,
                };
                let this = Arc::clone(self);
                tokio::spawn(tracing::Instrument::in_current_span(async move {
                    this.deliver(notification).await
                }));
            }
        }
        Ok(trade)
    }

    /// Signs `body` as the sandbox does: the value of the `Sandbox-Signature` header.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!(
            "t={timestamp},v1={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key
        // (which will never verify) rather than panic.
        let mut mac = HmacSha256::new_from_slice(self.settings.secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    async fn deliver(&self, notification: SandboxNotification) {
        let body = match serde_json::to_vec(&notification) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error.message = %err, "sandbox failed to encode a notification");
                return;
            }
        };
        let delays = std::iter::once(Duration::ZERO).chain(self.settings.notify_retry_delays.iter().copied());
        for (attempt, delay) in delays.enumerate() {
            tokio::time::sleep(delay).await;
            let signature = self.sign(Utc::now().timestamp(), &body);
            let sent = crate::trace::propagate(self.http.post(&self.settings.notify_url))
                .header("content-type", "application/json")
                .header("Sandbox-Signature", signature)
                .body(body.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(pay_no = %notification.out_trade_no, attempt, "sandbox notification acknowledged");
                    return;
                }
                Ok(response) => {
                    tracing::warn!(pay_no = %notification.out_trade_no, attempt, status = %response.status(), "sandbox notification refused")
                }
                Err(err) => {
                    tracing::warn!(pay_no = %notification.out_trade_no, attempt, error.message = %err, "sandbox notification failed")
                }
            }
        }
        tracing::warn!(pay_no = %notification.out_trade_no, "sandbox gave up notifying");
    }

    async fn inject_faults(&self) -> Result<(), GatewayError> {
        match self.faults() {
            SandboxFaults::None => Ok(()),
            SandboxFaults::Error => Err(GatewayError::Provider {
                code: "SYSTEM_ERROR".into(),
                message: "sandbox fault injected".into(),
                retryable: true,
            }),
            SandboxFaults::Timeout { delay_ms } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                Err(GatewayError::Timeout)
            }
        }
    }
}

#[async_trait]
impl Gateway for SandboxGateway {
    fn provider(&self) -> Provider {
        Provider::Sandbox
    }

    async fn create_qr(&self, req: &QrRequest) -> Result<QrCreated, GatewayError> {
        self.inject_faults().await?;
        let mut trades = lock(&self.trades);
        if trades.contains_key(&req.pay_no) {
            return Err(GatewayError::Provider {
                code: "OUT_TRADE_NO_USED".into(),
                message: format!("out_trade_no {} already exists", req.pay_no),
                retryable: false,
            });
        }
        trades.insert(
            req.pay_no,
            SandboxTrade {
                out_trade_no: req.pay_no,
                amount: req.amount,
                currency: req.currency.code().to_owned(),
                subject: req.subject.clone(),
                trade_state: SandboxTradeState::Notpay,
                transaction_id: None,
                created_at: Utc::now(),
                time_expire: req.expires_at,
                paid_at: None,
                query_count: 0,
                close_count: 0,
            },
        );
        Ok(QrCreated {
            code_url: format!(
                "{}/sandbox/trades/{}",
                self.settings.public_base_url.trim_end_matches('/'),
                req.pay_no
            ),
        })
    }

    async fn query(&self, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        self.inject_faults().await?;
        let mut trades = lock(&self.trades);
        match trades.get_mut(&pay_no) {
            None => Ok(TradeQuery {
                state: super::TradeState::NotFound,
                raw: serde_json::json!({"code": "ORDER_NOT_EXIST", "out_trade_no": pay_no}),
            }),
            Some(trade) => {
                trade.query_count = trade.query_count.saturating_add(1);
                Ok(TradeQuery {
                    state: trade.to_state(),
                    raw: serde_json::to_value(&*trade).unwrap_or_default(),
                })
            }
        }
    }

    async fn close(&self, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        self.inject_faults().await?;
        let mut trades = lock(&self.trades);
        let Some(trade) = trades.get_mut(&pay_no) else {
            return Ok(CloseOutcome::NotFound);
        };
        trade.close_count = trade.close_count.saturating_add(1);
        match trade.trade_state {
            SandboxTradeState::Success => Ok(CloseOutcome::AlreadyPaid),
            SandboxTradeState::Notpay | SandboxTradeState::Closed => {
                trade.trade_state = SandboxTradeState::Closed;
                Ok(CloseOutcome::Closed)
            }
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        self.inject_faults().await?;
        // Lock order: trades, then refunds (the only place both are held).
        let trades = lock(&self.trades);
        let mut refunds = lock(&self.refunds);
        if let Some(existing) = refunds.get(&req.refund_no) {
            if existing.out_trade_no != req.pay_no || existing.amount != req.amount {
                return Ok(refund_failed(
                    "DISCORDANT_REPEAT_REQUEST",
                    "the refund number was used with other content",
                ));
            }
            return Ok(existing.answer());
        }
        let Some(trade) = trades.get(&req.pay_no) else {
            return Ok(refund_failed("TRADE_NOT_EXIST", "no such trade"));
        };
        if trade.trade_state != SandboxTradeState::Success {
            return Ok(refund_failed("TRADE_NOT_PAID", "the trade was not paid"));
        }
        let refunded: i64 = refunds
            .values()
            .filter(|refund| refund.out_trade_no == req.pay_no)
            .map(|refund| refund.amount.get())
            .sum();
        if refunded.saturating_add(req.amount.get()) > trade.amount.get() {
            return Ok(refund_failed(
                "REFUND_AMOUNT_EXCEEDED",
                "refunds would exceed what the trade took",
            ));
        }
        let seq = self.txn_seq.fetch_add(1, Ordering::Relaxed);
        let refund = SandboxRefund {
            out_refund_no: req.refund_no,
            out_trade_no: req.pay_no,
            refund_id: format!("sbr{}{seq:06}", Utc::now().format("%Y%m%d%H%M%S")),
            amount: req.amount,
            refunded_at: Utc::now(),
        };
        let answer = refund.answer();
        refunds.insert(req.refund_no, refund);
        Ok(answer)
    }

    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        self.inject_faults().await?;
        Ok(match lock(&self.refunds).get(&req.refund_no) {
            Some(refund) => refund.answer(),
            None => RefundAnswer {
                state: RefundState::NotFound,
                raw: serde_json::json!({"code": "REFUND_NOT_EXIST", "out_refund_no": req.refund_no}),
            },
        })
    }

    /// The sandbox's own book of that day (China time): its paid trades and its refunds. It
    /// keeps its book in memory, so a restart forgets earlier days.
    async fn bill(&self, date: chrono::NaiveDate) -> Result<BillFetch, GatewayError> {
        self.inject_faults().await?;
        let on_day = |at: chrono::DateTime<Utc>| {
            at.with_timezone(&super::wechat::transformers::china_offset())
                .date_naive()
                == date
        };
        let mut rows = Vec::new();
        for trade in lock(&self.trades).values() {
            if let (Some(paid_at), Some(txn)) = (trade.paid_at, &trade.transaction_id) {
                if trade.trade_state == SandboxTradeState::Success && on_day(paid_at) {
                    rows.push(BillRow::Payment {
                        out_trade_no: trade.out_trade_no.to_string(),
                        provider_txn_id: txn.clone(),
                        amount: trade.amount,
                        paid_at: Some(paid_at),
                    });
                }
            }
        }
        for refund in lock(&self.refunds).values().filter(|refund| on_day(refund.refunded_at)) {
            rows.push(BillRow::Refund {
                out_trade_no: refund.out_trade_no.to_string(),
                out_refund_no: refund.out_refund_no.to_string(),
                provider_refund_id: Some(refund.refund_id.clone()),
                amount: refund.amount,
                status: "SUCCESS".into(),
            });
        }
        Ok(BillFetch::Rows(rows))
    }

    fn verify_notification(&self, req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError> {
        let header = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(NotificationError::MissingSignature)?;
        let (timestamp, signature) = parse_signature_header(header).ok_or(NotificationError::MissingSignature)?;
        let expected = hex::decode(signature).map_err(|_| NotificationError::MissingSignature)?;
        self.mac(timestamp, &req.body)
            .verify_slice(&expected)
            .map_err(|_| NotificationError::BadSignature)?;
        // Checked after the signature so an attacker learns nothing from the error.
        if (Utc::now().timestamp() - timestamp).abs() > SIGNATURE_TOLERANCE_SECONDS {
            return Err(NotificationError::StaleTimestamp);
        }
        let notification: SandboxNotification =
            serde_json::from_slice(&req.body).map_err(|err| NotificationError::Malformed(err.to_string()))?;
        Ok(VerifiedNotification {
            event_id: notification.id.clone(),
            out_trade_no: notification.out_trade_no.to_string(),
            subject: NotificationSubject::Trade(notification.to_state()),
            raw: serde_json::to_value(&notification).unwrap_or_default(),
        })
    }
}

/// A refund the sandbox made: it refunds at once (or fails with the injected faults).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SandboxRefund {
    pub out_refund_no: RefundNo,
    pub out_trade_no: PayNo,
    pub refund_id: String,
    pub amount: MinorUnit,
    pub refunded_at: chrono::DateTime<Utc>,
}

impl SandboxRefund {
    fn answer(&self) -> RefundAnswer {
        RefundAnswer {
            state: RefundState::Succeeded {
                provider_refund_id: Some(self.refund_id.clone()),
                at: self.refunded_at,
            },
            raw: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// A refund the sandbox refuses, as its answer (not an error: the refusal is final).
fn refund_failed(code: &str, message: &str) -> RefundAnswer {
    RefundAnswer {
        state: RefundState::Failed {
            code: code.to_owned(),
            message: message.to_owned(),
        },
        raw: serde_json::json!({"code": code, "message": message}),
    }
}

/// Parses `t=<unix seconds>,v1=<hex>`.
fn parse_signature_header(header: &str) -> Option<(i64, &str)> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse().ok(),
            Some(("v1", value)) => signature = Some(value),
            _ => {}
        }
    }
    Some((timestamp?, signature?))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the map half-updated (each
    // critical section is a single insert or field write), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;
    use entities::{Currency, MinorUnit};

    fn gateway() -> Arc<SandboxGateway> {
        SandboxGateway::new(
            SandboxSettings {
                secret: SecretString::from("whsec_test"),
                notify_url: "http://127.0.0.1:9/unused".into(),
                public_base_url: "http://pay.example".into(),
                notify_retry_delays: vec![],
            },
            reqwest::Client::new(),
        )
    }

    fn qr(pay_no: i64) -> QrRequest {
        QrRequest {
            pay_no: PayNo::new(pay_no).unwrap(),
            amount: MinorUnit::new(1999).unwrap(),
            currency: Currency::Cny,
            subject: "Course".into(),
            expires_at: Utc::now() + ChronoDuration::minutes(5),
        }
    }

    fn signed(gw: &SandboxGateway, body: &[u8], timestamp: i64) -> NotificationRequest {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert(SIGNATURE_HEADER.to_owned(), gw.sign(timestamp, body));
        NotificationRequest {
            headers,
            body: body.to_vec(),
        }
    }

    #[tokio::test]
    async fn trade_book_follows_a_real_providers_states() {
        let gw = gateway();
        let created = gw.create_qr(&qr(11)).await.unwrap();
        assert_eq!(created.code_url, "http://pay.example/sandbox/trades/11");
        assert_eq!(
            gw.query(PayNo::new(11).unwrap()).await.unwrap().state,
            super::super::TradeState::NotPaid
        );
        assert_eq!(
            gw.query(PayNo::new(12).unwrap()).await.unwrap().state,
            super::super::TradeState::NotFound
        );
        gw.pay(PayNo::new(11).unwrap(), false, None).unwrap();
        assert!(matches!(
            gw.query(PayNo::new(11).unwrap()).await.unwrap().state,
            super::super::TradeState::Paid(_)
        ));
        assert_eq!(
            gw.close(PayNo::new(11).unwrap()).await.unwrap(),
            CloseOutcome::AlreadyPaid
        );

        gw.create_qr(&qr(13)).await.unwrap();
        assert_eq!(gw.close(PayNo::new(13).unwrap()).await.unwrap(), CloseOutcome::Closed);
        assert_eq!(
            gw.pay(PayNo::new(13).unwrap(), false, None).unwrap_err(),
            SandboxPayError::Closed(PayNo::new(13).unwrap())
        );
        assert_eq!(gw.trade(PayNo::new(11).unwrap()).unwrap().query_count, 2);
    }

    #[tokio::test]
    async fn signed_notifications_verify_and_forged_or_stale_ones_do_not() {
        let gw = gateway();
        let body = serde_json::to_vec(&SandboxNotification {
            id: "evt_1".into(),
            out_trade_no: PayNo::new(42).unwrap(),
            trade_state: SandboxTradeState::Success,
            transaction_id: "sbx1".into(),
            amount: MinorUnit::new(1999).unwrap(),
            paid_at: Utc::now(),
        })
        .unwrap();
        let now = Utc::now().timestamp();
        let ok = gw.verify_notification(&signed(&gw, &body, now)).unwrap();
        assert_eq!(ok.pay_no(), Some(PayNo::new(42).unwrap()));
        assert_eq!(ok.event_id, "evt_1");

        let mut tampered = signed(&gw, &body, now);
        tampered.body = body.iter().map(|b| if *b == b'9' { b'8' } else { *b }).collect();
        assert_eq!(
            gw.verify_notification(&tampered).unwrap_err(),
            NotificationError::BadSignature
        );

        let stale = signed(&gw, &body, now - SIGNATURE_TOLERANCE_SECONDS - 5);
        assert_eq!(
            gw.verify_notification(&stale).unwrap_err(),
            NotificationError::StaleTimestamp
        );

        let unsigned = NotificationRequest {
            headers: Default::default(),
            body,
        };
        assert_eq!(
            gw.verify_notification(&unsigned).unwrap_err(),
            NotificationError::MissingSignature
        );
    }
}
