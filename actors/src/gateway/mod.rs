//! The `Gateway` trait: what paywarden needs from a payment provider.
//!
//! One implementation per provider, each in its own module (`sandbox` here; WeChat Pay and
//! Alipay speak their own wire formats behind the same trait). The provider actors wrap a
//! gateway with timeouts, rate limits and retries; nothing else calls one directly.

pub mod account;
pub mod alipay;
pub mod bill;
pub mod registry;
pub mod sandbox;
pub mod section;
pub mod wechat;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use entities::{Currency, MinorUnit, PayNo, Provider, RefundNo};

/// Where gateways read the time when they check a signed timestamp (WeChat's five-minute
/// window) or stamp a request. Injected so the recorded vectors, whose timestamps are years
/// old, can be verified as if they had just arrived.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant, for tests and recorded vectors.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Ask the provider for a QR-code trade.
#[derive(Clone, Debug)]
pub struct QrRequest {
    pub pay_no: PayNo,
    pub amount: MinorUnit,
    pub currency: Currency,
    pub subject: String,
    /// The order's deadline: the provider stops accepting the payment then, too.
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct QrCreated {
    /// What the buyer's app scans.
    pub code_url: String,
}

/// A trade as the provider sees it, mapped onto what the expiry rule distinguishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeState {
    /// Created, not paid (WeChat `NOTPAY`, Alipay `WAIT_BUYER_PAY`).
    NotPaid,
    /// The buyer is entering a password right now (WeChat `USERPAYING`).
    UserPaying,
    Paid(PaidTrade),
    /// Closed or revoked at the provider: it can no longer be paid.
    Closed,
    /// The provider has never heard of it (the QR code was never scanned, for Alipay).
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaidTrade {
    pub provider_txn_id: String,
    pub amount: MinorUnit,
    pub paid_at: DateTime<Utc>,
}

/// The answer to a query, with the provider's raw payload kept for the audit trail.
#[derive(Clone, Debug)]
pub struct TradeQuery {
    pub state: TradeState,
    pub raw: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    /// The close was refused because the buyer already paid: query and compensate.
    AlreadyPaid,
    /// The provider does not know the trade; nothing to close.
    NotFound,
    /// The provider does not accept a close yet (WeChat: not within 5 minutes of creation);
    /// try again at the given time.
    TooEarly {
        retry_at: DateTime<Utc>,
    },
}

/// Ask the provider to refund (part of) a paid trade, or how that refund went.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    /// The provider deduplicates on it (WeChat `out_refund_no`, Alipay `out_request_no`).
    pub refund_no: RefundNo,
    /// The trade refunded (`out_trade_no`).
    pub pay_no: PayNo,
    pub amount: MinorUnit,
    /// What the trade took: WeChat wants it with every refund.
    pub paid_amount: MinorUnit,
    pub currency: Currency,
    pub reason: String,
}

/// A refund as the provider sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundState {
    /// The money went back (WeChat `SUCCESS`, Alipay `fund_change=Y` / `REFUND_SUCCESS`).
    Succeeded {
        provider_refund_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// Accepted, not final yet (WeChat `PROCESSING`, Alipay `fund_change=N`): ask again later.
    Processing { provider_refund_id: Option<String> },
    /// Refused or given up (WeChat `CLOSED` / `ABNORMAL` or a business error, an Alipay
    /// business failure): no money went back.
    Failed { code: String, message: String },
    /// The provider holds no refund with this number: it never arrived, and sending it again
    /// (with the same number) is safe.
    NotFound,
}

/// The answer to a refund or a refund query, with the provider's raw payload for audits.
#[derive(Clone, Debug)]
pub struct RefundAnswer {
    pub state: RefundState,
    pub raw: serde_json::Value,
}

/// A provider notification as received: headers (names lower-cased) and the raw body bytes,
/// which are what the signature covers.
#[derive(Clone, Debug, Default)]
pub struct NotificationRequest {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A notification whose signature checked out.
#[derive(Clone, Debug)]
pub struct VerifiedNotification {
    /// The provider's id of this notification, for deduplication.
    pub event_id: String,
    /// The trade number the provider reports, as sent. Ours are [`PayNo`]s; another
    /// deployment's trade on the same merchant account may be anything, and is still money.
    pub out_trade_no: String,
    pub subject: NotificationSubject,
    pub raw: serde_json::Value,
}

/// What a notification reports on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationSubject {
    /// The state of the payment trade `out_trade_no`.
    Trade(TradeState),
    /// The outcome of a refund of that trade, by the refund number paywarden sent.
    Refund { out_refund_no: String, state: RefundState },
}

impl VerifiedNotification {
    /// The attempt it reports on, when the trade number is one paywarden could have issued.
    pub fn pay_no(&self) -> Option<PayNo> {
        self.out_trade_no.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("provider call timed out")]
    Timeout,
    #[error("provider unreachable: {0}")]
    Transport(String),
    #[error("provider rate limit reached")]
    RateLimited,
    #[error("provider error {code}: {message}")]
    Provider {
        code: String,
        message: String,
        /// Whether the same call may succeed later (a system error) or never will (bad request).
        retryable: bool,
    },
    #[error("provider response failed verification: {0}")]
    Verification(String),
    #[error("provider is not configured: {0}")]
    NotConfigured(Provider),
    #[error("provider circuit is open after repeated failures")]
    CircuitOpen,
    /// This service's own budget of calls to the provider (rate or calls in flight) is spent;
    /// a call may succeed after `retry_after`. Nothing was sent.
    #[error("provider call budget spent; retry after {retry_after:?}")]
    Busy { retry_after: std::time::Duration },
    #[error("provider call crashed; the provider actor restarted")]
    Crashed,
    /// A bill that cannot be used as it is (does not read, contradicts itself or what was
    /// asked for, too large, fetched from where it may not be): asking again gives the same.
    #[error("the provider's bill is unusable: {0}")]
    BadBill(String),
}

impl GatewayError {
    /// A failed HTTP exchange with the provider: a timeout, or a transport failure.
    pub fn from_transport(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            GatewayError::Timeout
        } else {
            GatewayError::Transport(err.to_string())
        }
    }

    /// A provider answer that does not parse; retrying the same call will not help.
    pub fn malformed(what: impl std::fmt::Display) -> Self {
        GatewayError::Provider {
            code: "MALFORMED_RESPONSE".into(),
            message: what.to_string(),
            retryable: false,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::Timeout
            | GatewayError::Transport(_)
            | GatewayError::RateLimited
            | GatewayError::CircuitOpen
            | GatewayError::Busy { .. }
            | GatewayError::Crashed => true,
            GatewayError::Provider { retryable, .. } => *retryable,
            GatewayError::Verification(_) | GatewayError::NotConfigured(_) | GatewayError::BadBill(_) => false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotificationError {
    #[error("missing or malformed signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("notification timestamp is outside the allowed window")]
    StaleTimestamp,
    #[error("notification body is malformed: {0}")]
    Malformed(String),
    #[error("notification is for another merchant account")]
    UnknownAccount,
}

#[async_trait]
pub trait Gateway: std::any::Any + Send + Sync {
    fn provider(&self) -> Provider;

    /// Creates a QR-code trade whose `out_trade_no` is `req.pay_no`.
    async fn create_qr(&self, req: &QrRequest) -> Result<QrCreated, GatewayError>;

    async fn query(&self, pay_no: PayNo) -> Result<TradeQuery, GatewayError>;

    async fn close(&self, pay_no: PayNo) -> Result<CloseOutcome, GatewayError>;

    /// Refunds (part of) a paid trade. Sent again with the same `refund_no` after an uncertain
    /// outcome: the provider refunds once.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError>;

    /// How the refund `req.refund_no` went.
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError>;

    /// The provider's trade bill of one day (China time): every payment and refund it
    /// settled that day, or "not ready yet".
    async fn bill(&self, date: chrono::NaiveDate) -> Result<bill::BillFetch, GatewayError>;

    /// Checks a notification's authenticity and parses it. Pure: no I/O, so it can be called
    /// on the request path before anything is written.
    fn verify_notification(&self, req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError>;
}

/// What became of a provider's notification, for its acknowledgement.
#[derive(Clone, Copy, Debug)]
pub enum Received<'a> {
    /// Recorded (or a duplicate of one recorded).
    Accepted,
    /// Not authentic or not readable: nothing changed, and retrying will not help.
    Rejected(&'a str),
    /// Authentic, but recording it failed: the provider should send it again.
    Failed,
}

/// The answer a provider expects to a notification, in its own format: each real provider's
/// folder has its `acknowledge` (the sandbox's route answers with paywarden's own error
/// envelope, which names the error's code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub status: u16,
    /// `None`: no body.
    pub content_type: Option<&'static str>,
    pub body: String,
}

/// One provider's facts.
#[derive(Debug)]
pub struct ProviderInfo {
    pub provider: Provider,
    /// What buyers read on the checkout page.
    pub display_name: &'static str,
    /// The currencies it takes; empty: any.
    pub currencies: &'static [Currency],
    /// Its notifications arrive at `/webhooks/{webhook_path}`.
    pub webhook_path: &'static str,
    /// Why the production profile refuses to enable it; `None`: it may.
    pub refused_in_production: Option<&'static str>,
}

impl ProviderInfo {
    /// Whether it takes payments in `currency`.
    pub fn accepts(&self, currency: Currency) -> bool {
        self.currencies.is_empty() || self.currencies.contains(&currency)
    }
}

/// The enabled gateways, by provider.
#[derive(Clone, Default)]
pub struct Gateways {
    by_provider: std::collections::HashMap<Provider, std::sync::Arc<dyn Gateway>>,
}

impl Gateways {
    pub fn insert(&mut self, gateway: std::sync::Arc<dyn Gateway>) {
        self.by_provider.insert(gateway.provider(), gateway);
    }

    pub fn get(&self, provider: Provider) -> Option<&std::sync::Arc<dyn Gateway>> {
        self.by_provider.get(&provider)
    }

    /// The enabled providers, in the registry's order.
    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        registry::PROVIDERS
            .iter()
            .map(|info| info.provider)
            .filter(|provider| self.by_provider.contains_key(provider))
    }
}
