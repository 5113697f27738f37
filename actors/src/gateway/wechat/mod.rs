//! WeChat Pay API v3, Native (QR code) payments, as a [`Gateway`].
//!
//! Every call is signed with the merchant key (`Authorization: WECHATPAY2-SHA256-RSA2048 ...`)
//! and every successful response is verified with the platform key named by
//! `Wechatpay-Serial` before its body is read. Error responses (4xx) carry no signature
//! headers, so the status is checked first and an error body is only ever turned into a
//! failure, never into a state that could mark an order paid.
//!
//! # Layout
//! - [`crypto`]: signing, verification, resource decryption (pure functions, vector-tested).
//! - [`transformers`]: wire structs and the mapping onto `TradeState` / `CloseOutcome` /
//!   `GatewayError`.

pub mod bill;
pub mod crypto;
pub mod section;
pub mod transformers;

pub use section::WechatProviderSettings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use entities::{PayNo, Provider};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use self::crypto::{
    KeyError, RsaSigningKey, WechatApiV3Key, WechatPlatformKeys, WechatSignatureHeaders, WechatVerifyError,
};
use self::transformers::{
    classify_error, refund_failure, refund_state, rfc3339_china, WechatAmount, WechatCloseRequest, WechatErrorBody,
    WechatFailure, WechatNativeRequest, WechatNativeResponse, WechatNotification, WechatRefund, WechatRefundRequest,
    WechatRefundRequestAmount, WechatRefundResource, WechatTransaction, EVENT_REFUND_ABNORMAL, EVENT_REFUND_CLOSED,
    EVENT_REFUND_SUCCESS, EVENT_TRANSACTION_SUCCESS, REFUND_NOT_EXISTS, RESOURCE_ALGORITHM,
};
use super::bill::{read_capped, BillExpectation, BillFetch, BILL_TIMEOUT, MAX_BILL_BYTES};
use super::{
    Clock, CloseOutcome, Gateway, GatewayError, NotificationError, NotificationRequest, NotificationSubject, QrCreated,
    QrRequest, RefundAnswer, RefundRequest, RefundState, SystemClock, TradeQuery, VerifiedNotification,
};

/// The production API host.
/// WeChat Pay's facts: Native payments settle in CNY (fen).
pub const INFO: super::ProviderInfo = super::ProviderInfo {
    provider: Provider::Wechat,
    display_name: "WeChat Pay",
    currencies: &[entities::Currency::Cny],
    webhook_path: "wechat",
    refused_in_production: None,
};

/// WeChat Pay's acknowledgement: `204` with no body, or `{"code":"FAIL","message":...}` with
/// a 4xx (not authentic) or 5xx (retry), which WeChat Pay sends again.
pub fn acknowledge(received: super::Received<'_>) -> super::Acknowledgement {
    let fail = |status, message: &str| super::Acknowledgement {
        status,
        content_type: Some("application/json"),
        body: serde_json::json!({"code": "FAIL", "message": message}).to_string(),
    };
    match received {
        super::Received::Accepted => super::Acknowledgement {
            status: 204,
            content_type: None,
            body: String::new(),
        },
        super::Received::Rejected(message) => fail(400, message),
        super::Received::Failed => fail(500, "internal error; retry"),
    }
}

pub const DEFAULT_API_BASE_URL: &str = "https://api.mch.weixin.qq.com";
/// Some endpoints answer `400 INVALID_REQUEST` to a request without a `User-Agent`.
const USER_AGENT_VALUE: &str = concat!("paywarden/", env!("CARGO_PKG_VERSION"));
/// WeChat truncates nothing: a longer `description` is a `PARAM_ERROR`.
const DESCRIPTION_MAX_CHARS: usize = 127;
/// The same for a refund's `reason`.
const REFUND_REASON_MAX_CHARS: usize = 80;
/// When a close is refused as too early without a `Retry-After`, try again after this long.
pub const DEFAULT_CLOSE_RETRY_AFTER_SECONDS: u64 = 60;

/// Everything needed to talk to WeChat Pay as one merchant. Secrets are `SecretString`, so
/// `Debug` of this struct prints masks.
#[derive(Clone, Debug, Deserialize)]
pub struct WechatSettings {
    pub mchid: String,
    /// The app id bound to the merchant (`appid` in the prepay body).
    pub appid: String,
    /// Serial of the merchant API certificate: `serial_no` in `Authorization`, which tells
    /// WeChat which merchant key to verify with. Not the platform serial.
    pub merchant_serial_no: String,
    /// PEM (PKCS#8 or PKCS#1) or bare base64 DER.
    pub merchant_private_key_pem: SecretString,
    /// The platform keys that sign responses and notifications; at least one.
    pub platform_keys: Vec<WechatPlatformKeySettings>,
    /// 32 ASCII characters: the AES-256 key of notification resources.
    pub apiv3_key: SecretString,
    /// `https://api.mch.weixin.qq.com` in production; the simulator's URL in tests.
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
    /// Where WeChat posts notifications (sent with each prepay).
    pub notify_url: String,
    #[serde(default = "default_close_retry_after_seconds")]
    pub close_retry_after_seconds: u64,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

fn default_close_retry_after_seconds() -> u64 {
    DEFAULT_CLOSE_RETRY_AFTER_SECONDS
}

/// One platform key: a PEM public key (`PUB_KEY_ID_…` mode) or an X.509 certificate.
#[derive(Clone, Debug, Deserialize)]
pub struct WechatPlatformKeySettings {
    /// The `Wechatpay-Serial` it answers to; may be omitted for a certificate, whose own
    /// serial is used.
    #[serde(default)]
    pub serial: Option<String>,
    /// Public material, so a plain string.
    pub pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WechatConfigError {
    #[error("wechat merchant private key is invalid")]
    MerchantKey(#[source] KeyError),
    #[error("wechat platform key #{index} is invalid")]
    PlatformKey {
        index: usize,
        #[source]
        source: KeyError,
    },
    #[error("no wechat platform key configured; responses could not be verified")]
    NoPlatformKey,
    #[error("wechat apiv3 key is invalid")]
    ApiV3Key(#[source] KeyError),
}

pub struct WechatGateway {
    settings: WechatSettings,
    /// Shared with the blocking signing task, hence the `Arc`.
    signing_key: Arc<RsaSigningKey>,
    platform_keys: WechatPlatformKeys,
    apiv3_key: WechatApiV3Key,
    http: reqwest::Client,
    /// Time for request timestamps and the five-minute window; injected for the vectors.
    clock: Arc<dyn Clock>,
}

/// A notification that passed every check, decrypted.
#[derive(Clone, Debug)]
pub struct WechatOpenedNotification {
    pub envelope: WechatNotification,
    pub resource: WechatResource,
    /// The decrypted resource as received, for the audit trail.
    pub plaintext: Vec<u8>,
}

/// A decrypted notification resource: a payment's transaction or a refund.
#[derive(Clone, Debug)]
pub enum WechatResource {
    Transaction(WechatTransaction),
    Refund(WechatRefundResource),
}

impl WechatOpenedNotification {
    /// The transaction of a payment notification.
    pub fn transaction(&self) -> Option<&WechatTransaction> {
        match &self.resource {
            WechatResource::Transaction(transaction) => Some(transaction),
            WechatResource::Refund(_) => None,
        }
    }
}

/// What one signed exchange is: an API call (its answer verified) or a bill file download
/// (unsigned, checked by its digest; its own time limit and size cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    Api,
    BillFile,
}

/// The answer to `GET /v3/bill/tradebill`.
#[derive(Debug, Deserialize)]
struct WechatBillAnswer {
    hash_type: String,
    hash_value: String,
    download_url: String,
}

/// A call's outcome once the transport worked: a verified success body, or a provider failure.
enum WechatReply {
    Success(Vec<u8>),
    Failed {
        failure: WechatFailure,
        retry_after: Option<Duration>,
        raw: serde_json::Value,
    },
}

impl WechatGateway {
    /// Parses the key material (once, at start-up) and builds the gateway.
    ///
    /// # Errors
    /// [`WechatConfigError`] naming the key that does not parse.
    pub fn new(settings: WechatSettings, http: reqwest::Client) -> Result<Self, WechatConfigError> {
        use secrecy::ExposeSecret;
        let signing_key = RsaSigningKey::from_pem(settings.merchant_private_key_pem.expose_secret())
            .map_err(WechatConfigError::MerchantKey)?;
        let mut platform_keys = WechatPlatformKeys::default();
        for (index, key) in settings.platform_keys.iter().enumerate() {
            platform_keys
                .insert_pem(key.serial.as_deref(), &key.pem)
                .map_err(|source| WechatConfigError::PlatformKey { index, source })?;
        }
        if platform_keys.is_empty() {
            return Err(WechatConfigError::NoPlatformKey);
        }
        let apiv3_key = WechatApiV3Key::parse(settings.apiv3_key.clone()).map_err(WechatConfigError::ApiV3Key)?;
        Ok(Self {
            settings,
            signing_key: Arc::new(signing_key),
            platform_keys,
            apiv3_key,
            http,
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the wall clock (tests, recorded vectors).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn base_url(&self) -> &str {
        self.settings.api_base_url.trim_end_matches('/')
    }

    /// Signs and sends one request; verifies a successful response.
    async fn call(&self, method: Method, path_and_query: String, body: Vec<u8>) -> Result<WechatReply, GatewayError> {
        self.exchange(method, path_and_query, body, Exchange::Api).await
    }

    /// Signs and sends one request; a successful API answer is verified (a bill file is not:
    /// WeChat sends it unsigned and we check it by its SHA-1, within the bill's own time limit
    /// and size cap).
    #[tracing::instrument(skip_all, fields(method = %method, path = %path_and_query, status = tracing::field::Empty))]
    async fn exchange(
        &self,
        method: Method,
        path_and_query: String,
        body: Vec<u8>,
        kind: Exchange,
    ) -> Result<WechatReply, GatewayError> {
        let timestamp = self.clock.now().timestamp();
        let nonce = crypto::new_nonce();
        let message = crypto::request_message(method.as_str(), &path_and_query, timestamp, &nonce, &body);
        // RSA signing is a millisecond of CPU per call: off the async worker (and the actor
        // threads behind it), keeping the span so the log lines stay attached to the call.
        let key = Arc::clone(&self.signing_key);
        let span = tracing::Span::current();
        let signature = tokio::task::spawn_blocking(move || span.in_scope(|| key.sign(&message)))
            .await
            .map_err(|_| GatewayError::Crashed)?
            .map_err(|_| GatewayError::NotConfigured(Provider::Wechat))?;
        let authorization = crypto::authorization(
            &self.settings.mchid,
            &nonce,
            &signature,
            timestamp,
            &self.settings.merchant_serial_no,
        );

        let url = format!("{}{}", self.base_url(), path_and_query);
        let mut request = crate::trace::propagate(self.http.request(method, url))
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        if kind == Exchange::BillFile {
            request = request.timeout(BILL_TIMEOUT);
        }
        let response = request.send().await.map_err(GatewayError::from_transport)?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        let headers = response.headers().clone();
        let bytes = if kind == Exchange::BillFile && status.is_success() {
            read_capped(response, MAX_BILL_BYTES).await?
        } else {
            response.bytes().await.map_err(GatewayError::from_transport)?.to_vec()
        };

        if status.is_success() {
            // Verification is a public-key operation (e = 65537), tens of microseconds: not
            // worth a thread hop.
            if kind == Exchange::Api {
                self.verify_response(&headers, &bytes)
                    .map_err(|err| GatewayError::Verification(err.to_string()))?;
            }
            return Ok(WechatReply::Success(bytes));
        }
        // Error responses are unsigned: read the code, never trust them for a state change
        // beyond "failed", "not found" and "paid, go and query".
        let error: WechatErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let raw = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        tracing::debug!(code = %error.code, "wechat answered an error");
        Ok(WechatReply::Failed {
            failure: classify_error(status.as_u16(), &error),
            retry_after,
            raw,
        })
    }

    fn verify_response(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WechatVerifyError> {
        let signature =
            WechatSignatureHeaders::from_lookup(|name| headers.get(name).and_then(|value| value.to_str().ok()))?;
        crypto::verify_signed(&self.platform_keys, &signature, body, self.clock.now())
    }

    /// Checks a notification (signature, timestamp window, event, merchant) and decrypts its
    /// resource, without deciding whether the order is ours: the part of
    /// [`Gateway::verify_notification`] the recorded vectors can go through, since their
    /// `out_trade_no`s are not paywarden pay numbers.
    ///
    /// # Errors
    /// [`NotificationError`] for a missing or bad signature, a stale timestamp, an event other
    /// than `TRANSACTION.SUCCESS` and `REFUND.*`, a resource that does not decrypt, or another
    /// merchant.
    pub fn open_notification(&self, req: &NotificationRequest) -> Result<WechatOpenedNotification, NotificationError> {
        let signature = WechatSignatureHeaders::from_lookup(|name| req.headers.get(name).map(String::as_str))
            .map_err(|_| NotificationError::MissingSignature)?;
        crypto::verify_signed(&self.platform_keys, &signature, &req.body, self.clock.now()).map_err(
            |err| match err {
                WechatVerifyError::MissingHeader(_) => NotificationError::MissingSignature,
                WechatVerifyError::BadTimestamp | WechatVerifyError::StaleTimestamp { .. } => {
                    NotificationError::StaleTimestamp
                }
                WechatVerifyError::UnknownSerial(_) | WechatVerifyError::Signature(_) => {
                    NotificationError::BadSignature
                }
            },
        )?;

        let envelope: WechatNotification =
            serde_json::from_slice(&req.body).map_err(|err| NotificationError::Malformed(err.to_string()))?;
        let is_refund =
            [EVENT_REFUND_SUCCESS, EVENT_REFUND_ABNORMAL, EVENT_REFUND_CLOSED].contains(&envelope.event_type.as_str());
        if envelope.event_type != EVENT_TRANSACTION_SUCCESS && !is_refund {
            return Err(NotificationError::Malformed(format!(
                "unsupported event_type {}",
                envelope.event_type
            )));
        }
        if envelope.resource.algorithm != RESOURCE_ALGORITHM {
            return Err(NotificationError::Malformed(format!(
                "unsupported resource algorithm {}",
                envelope.resource.algorithm
            )));
        }
        let plain = crypto::decrypt_resource(
            &self.apiv3_key,
            &envelope.resource.nonce,
            &envelope.resource.associated_data,
            &envelope.resource.ciphertext,
        )
        .map_err(|err| NotificationError::Malformed(err.to_string()))?;
        let malformed = |err: serde_json::Error| NotificationError::Malformed(err.to_string());
        let resource = if is_refund {
            let refund: WechatRefundResource = serde_json::from_slice(&plain).map_err(malformed)?;
            // The refund resource's `mchid` is documented and sent; one for another merchant
            // account is refused like a payment's.
            if refund.mchid.as_deref() != Some(self.settings.mchid.as_str()) {
                return Err(NotificationError::UnknownAccount);
            }
            WechatResource::Refund(refund)
        } else {
            let transaction: WechatTransaction = serde_json::from_slice(&plain).map_err(malformed)?;
            if transaction.mchid.as_deref() != Some(self.settings.mchid.as_str()) {
                return Err(NotificationError::UnknownAccount);
            }
            if transaction
                .appid
                .as_deref()
                .is_some_and(|appid| appid != self.settings.appid)
            {
                return Err(NotificationError::UnknownAccount);
            }
            WechatResource::Transaction(transaction)
        };
        Ok(WechatOpenedNotification {
            envelope,
            resource,
            plaintext: plain,
        })
    }

    /// Reads the answer to a refund or a refund query.
    fn refund_answer(
        &self,
        req: &RefundRequest,
        reply: WechatReply,
        query: bool,
    ) -> Result<RefundAnswer, GatewayError> {
        match reply {
            WechatReply::Success(bytes) => {
                let refund: WechatRefund = serde_json::from_slice(&bytes).map_err(GatewayError::malformed)?;
                if refund.out_refund_no != req.refund_no.to_string() {
                    return Err(GatewayError::Verification(format!(
                        "asked for out_refund_no {}, got {}",
                        req.refund_no, refund.out_refund_no
                    )));
                }
                let state = refund_state(
                    refund.status,
                    &refund.refund_id,
                    refund.success_time.as_deref(),
                    self.clock.now(),
                );
                let raw = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                Ok(RefundAnswer { state, raw })
            }
            WechatReply::Failed { failure, raw, .. } => {
                let code = raw.get("code").and_then(serde_json::Value::as_str).unwrap_or_default();
                if query && code == REFUND_NOT_EXISTS {
                    return Ok(RefundAnswer {
                        state: RefundState::NotFound,
                        raw,
                    });
                }
                let body: WechatErrorBody = serde_json::from_value(raw.clone()).unwrap_or_default();
                let state = refund_failure(failure, &body)?;
                if query {
                    // A query that is refused says nothing about the refund itself.
                    if let RefundState::Failed { code, message } = state {
                        return Err(GatewayError::Provider {
                            code,
                            message,
                            retryable: true,
                        });
                    }
                }
                Ok(RefundAnswer { state, raw })
            }
        }
    }

    fn query_path(&self, pay_no: PayNo) -> String {
        // Encoded once, here; the same string is signed and sent.
        let query = serde_urlencoded::to_string([("mchid", self.settings.mchid.as_str())]).unwrap_or_default();
        format!("/v3/pay/transactions/out-trade-no/{pay_no}?{query}")
    }
}

#[async_trait]
impl Gateway for WechatGateway {
    fn provider(&self) -> Provider {
        Provider::Wechat
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", pay_no = %req.pay_no))]
    async fn create_qr(&self, req: &QrRequest) -> Result<QrCreated, GatewayError> {
        let body = WechatNativeRequest {
            appid: self.settings.appid.clone(),
            mchid: self.settings.mchid.clone(),
            description: req.subject.chars().take(DESCRIPTION_MAX_CHARS).collect(),
            out_trade_no: req.pay_no.to_string(),
            time_expire: rfc3339_china(req.expires_at),
            notify_url: self.settings.notify_url.clone(),
            amount: WechatAmount {
                total: req.amount.get(),
                currency: req.currency.code().to_owned(),
            },
        };
        let body = serde_json::to_vec(&body).map_err(GatewayError::malformed)?;
        match self
            .call(Method::POST, "/v3/pay/transactions/native".into(), body)
            .await?
        {
            WechatReply::Success(bytes) => {
                let created: WechatNativeResponse = serde_json::from_slice(&bytes).map_err(GatewayError::malformed)?;
                Ok(QrCreated {
                    code_url: created.code_url,
                })
            }
            WechatReply::Failed { failure, .. } => Err(failure.into_gateway_error()),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", pay_no = %pay_no))]
    async fn query(&self, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        match self.call(Method::GET, self.query_path(pay_no), Vec::new()).await? {
            WechatReply::Success(bytes) => {
                let transaction: WechatTransaction = serde_json::from_slice(&bytes).map_err(GatewayError::malformed)?;
                if transaction.out_trade_no != pay_no.to_string() {
                    return Err(GatewayError::Verification(format!(
                        "asked for out_trade_no {pay_no}, got {}",
                        transaction.out_trade_no
                    )));
                }
                let state = transaction.to_trade_state().map_err(GatewayError::malformed)?;
                let raw = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                Ok(TradeQuery { state, raw })
            }
            WechatReply::Failed { failure, raw, .. } => Ok(TradeQuery {
                state: failure.into_query_state()?,
                raw,
            }),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", pay_no = %pay_no))]
    async fn close(&self, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        let body = serde_json::to_vec(&WechatCloseRequest {
            mchid: self.settings.mchid.clone(),
        })
        .map_err(GatewayError::malformed)?;
        let path = format!("/v3/pay/transactions/out-trade-no/{pay_no}/close");
        match self.call(Method::POST, path, body).await? {
            // 204, verified over the empty body.
            WechatReply::Success(_) => Ok(CloseOutcome::Closed),
            WechatReply::Failed {
                failure, retry_after, ..
            } => {
                let wait = retry_after.unwrap_or(Duration::from_secs(self.settings.close_retry_after_seconds));
                // Saturating: an absurd Retry-After must not overflow the date arithmetic.
                let retry_at = chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|wait| self.clock.now().checked_add_signed(wait))
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
                failure.into_close_outcome(retry_at)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", refund_no = %req.refund_no))]
    async fn refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let body = WechatRefundRequest {
            out_trade_no: req.pay_no.to_string(),
            out_refund_no: req.refund_no.to_string(),
            reason: Some(req.reason.chars().take(REFUND_REASON_MAX_CHARS).collect()).filter(|r: &String| !r.is_empty()),
            notify_url: Some(self.settings.notify_url.clone()),
            amount: WechatRefundRequestAmount {
                refund: req.amount.get(),
                total: req.paid_amount.get(),
                currency: req.currency.code().to_owned(),
            },
        };
        let body = serde_json::to_vec(&body).map_err(GatewayError::malformed)?;
        let reply = self
            .call(Method::POST, "/v3/refund/domestic/refunds".into(), body)
            .await?;
        self.refund_answer(req, reply, false)
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", refund_no = %req.refund_no))]
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let path = format!("/v3/refund/domestic/refunds/{}", req.refund_no);
        let reply = self.call(Method::GET, path, Vec::new()).await?;
        self.refund_answer(req, reply, true)
    }

    #[tracing::instrument(skip_all, fields(provider = "wechat", %date))]
    async fn bill(&self, date: chrono::NaiveDate) -> Result<BillFetch, GatewayError> {
        let query = serde_urlencoded::to_string([
            ("bill_date", date.format("%Y-%m-%d").to_string()),
            ("bill_type", "ALL".to_owned()),
        ])
        .map_err(GatewayError::malformed)?;
        let applied = match self
            .call(Method::GET, format!("/v3/bill/tradebill?{query}"), Vec::new())
            .await?
        {
            WechatReply::Success(bytes) => {
                serde_json::from_slice::<WechatBillAnswer>(&bytes).map_err(GatewayError::malformed)?
            }
            WechatReply::Failed { failure, raw, .. } => {
                let code = raw.get("code").and_then(serde_json::Value::as_str).unwrap_or_default();
                return match code {
                    // Not made yet: ask again later.
                    "STATEMENT_CREATING" => Ok(BillFetch::NotReady),
                    // No trade and no refund that day.
                    "NO_STATEMENT_EXIST" => Ok(BillFetch::Rows(Vec::new())),
                    _ => Err(failure.into_gateway_error()),
                };
            }
        };
        // The download is signed like any call, over the URL's own path and query; the file
        // comes back unsigned and is checked against the SHA-1 announced above.
        let url = url::Url::parse(&applied.download_url).map_err(GatewayError::malformed)?;
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let file = match self
            .exchange(Method::GET, path_and_query, Vec::new(), Exchange::BillFile)
            .await?
        {
            WechatReply::Success(bytes) => bytes,
            WechatReply::Failed { failure, .. } => return Err(failure.into_gateway_error()),
        };
        if !applied.hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(GatewayError::malformed(format!(
                "unknown bill hash_type {}",
                applied.hash_type
            )));
        }
        bill::check_digest(&file, &applied.hash_value).map_err(|err| GatewayError::Verification(err.to_string()))?;
        let text =
            String::from_utf8(file).map_err(|err| GatewayError::BadBill(format!("the bill is not UTF-8: {err}")))?;
        let expect = BillExpectation {
            date,
            account: Some(self.settings.mchid.as_str()),
        };
        bill::parse_trade_bill(&text, &expect)
            .map(BillFetch::Rows)
            .map_err(|err| GatewayError::BadBill(err.to_string()))
    }

    fn verify_notification(&self, req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError> {
        let WechatOpenedNotification {
            envelope,
            resource,
            plaintext,
        } = self.open_notification(req)?;
        let (out_trade_no, subject) = match resource {
            WechatResource::Transaction(transaction) => {
                let state = transaction
                    .to_trade_state()
                    .map_err(|err| NotificationError::Malformed(err.to_string()))?;
                (transaction.out_trade_no, NotificationSubject::Trade(state))
            }
            WechatResource::Refund(refund) => {
                let state = refund_state(
                    refund.refund_status,
                    &refund.refund_id,
                    refund.success_time.as_deref(),
                    self.clock.now(),
                );
                let subject = NotificationSubject::Refund {
                    out_refund_no: refund.out_refund_no,
                    state,
                };
                (refund.out_trade_no, subject)
            }
        };
        Ok(VerifiedNotification {
            event_id: envelope.id.clone(),
            out_trade_no,
            subject,
            raw: serde_json::json!({
                "id": envelope.id,
                "event_type": envelope.event_type,
                "create_time": envelope.create_time,
                "summary": envelope.summary,
                "resource": serde_json::from_slice::<serde_json::Value>(&plaintext).unwrap_or(serde_json::Value::Null),
            }),
        })
    }
}
