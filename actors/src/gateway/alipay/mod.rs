//! Alipay OpenAPI (`RSA2`, public-key mode), face-to-face QR payments, as a [`Gateway`].
//!
//! Requests go to one gateway URL with the method in a parameter; the public parameters travel
//! in the query string and `biz_content` in the form body, as the official SDKs send them.
//! Responses are verified over the exact raw text of their `*_response` node before they are
//! parsed. Certificate mode (`app_cert_sn`, `alipay_root_cert_sn`) is not supported.
//!
//! # Layout
//! - [`crypto`]: sign content, signing, response extraction and verification.
//! - [`transformers`]: wire structs, exact yuan amounts, status and `sub_code` mapping.

pub mod bill;
pub mod crypto;
pub mod section;
pub mod transformers;

pub use section::AlipayProviderSettings;

use std::sync::Arc;

use async_trait::async_trait;
use entities::{PayNo, Provider};
use reqwest::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use self::crypto::{AlipayVerifyError, KeyError, RsaSigningKey, RsaVerifyingKey, NOTIFY_V1_EXCLUDED};
use self::transformers::{
    classify_failure, format_china_datetime, parse_china_datetime, trade_state, AlipayAmount, AlipayCloseResponse,
    AlipayFailure, AlipayNotification, AlipayPrecreateBiz, AlipayPrecreateResponse, AlipayQueryResponse,
    AlipayRefundBiz, AlipayRefundQueryBiz, AlipayRefundQueryResponse, AlipayRefundResponse, AlipayResponseStatus,
    AlipayTradeBiz, ALIPAY_SUCCESS, REFUND_SUCCESS,
};
use super::bill::{
    bill_download_url, read_capped, BillExpectation, BillFetch, BILL_TIMEOUT, MAX_BILL_BYTES, MAX_UNZIPPED_BILL_BYTES,
};
use super::{
    Clock, CloseOutcome, Gateway, GatewayError, NotificationError, NotificationRequest, NotificationSubject, QrCreated,
    QrRequest, RefundAnswer, RefundRequest, RefundState, SystemClock, TradeQuery, VerifiedNotification,
};

/// Alipay's facts: face-to-face payments settle in CNY (yuan, two decimals).
pub const INFO: super::ProviderInfo = super::ProviderInfo {
    provider: Provider::Alipay,
    display_name: "Alipay",
    currencies: &[entities::Currency::Cny],
    webhook_path: "alipay",
    refused_in_production: None,
};

/// Alipay's acknowledgement: the literal `success`, or `fail` (Alipay sends it again).
pub fn acknowledge(received: super::Received<'_>) -> super::Acknowledgement {
    let (status, body) = match received {
        super::Received::Accepted => (200, "success"),
        super::Received::Rejected(_) => (400, "fail"),
        super::Received::Failed => (500, "fail"),
    };
    super::Acknowledgement {
        status,
        content_type: Some("text/plain"),
        body: body.to_owned(),
    }
}

pub const DEFAULT_GATEWAY_URL: &str = "https://openapi.alipay.com/gateway.do";
pub const METHOD_PRECREATE: &str = "alipay.trade.precreate";
pub const METHOD_QUERY: &str = "alipay.trade.query";
pub const METHOD_CLOSE: &str = "alipay.trade.close";
pub const METHOD_REFUND: &str = "alipay.trade.refund";
pub const METHOD_REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
pub const METHOD_BILL_URL: &str = "alipay.data.dataservice.bill.downloadurl.query";
/// The sub_code of a bill not published (yet, or ever for a day without trades: Alipay does
/// not tell the two apart).
pub const BILL_NOT_EXIST: &str = "isp.bill_not_exist";
/// The only charset paywarden sends, and so the one notifications come back in.
pub const CHARSET: &str = "utf-8";
/// What a notification handler must answer, byte for byte, or Alipay resends.
pub const NOTIFICATION_ACK: &str = "success";
const USER_AGENT_VALUE: &str = concat!("paywarden/", env!("CARGO_PKG_VERSION"));
/// Alipay's `subject` limit.
const SUBJECT_MAX_CHARS: usize = 256;

/// Everything needed to talk to Alipay as one app. `Debug` masks the private key.
#[derive(Clone, Debug, Deserialize)]
pub struct AlipaySettings {
    pub app_id: String,
    /// The app private key: PEM (PKCS#8 or PKCS#1, wrapped or single-line) or bare base64.
    pub app_private_key_pem: SecretString,
    /// The Alipay public key (not the app's): PEM, certificate PEM, or bare base64 as the
    /// console shows it.
    pub alipay_public_key_pem: String,
    /// `https://openapi.alipay.com/gateway.do` in production; the simulator's in tests.
    #[serde(default = "default_gateway_url")]
    pub gateway_url: String,
    /// Where Alipay posts `trade_status_sync` notifications.
    pub notify_url: String,
    /// When set, notifications for another seller are refused.
    #[serde(default)]
    pub seller_id: Option<String>,
}

fn default_gateway_url() -> String {
    DEFAULT_GATEWAY_URL.to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum AlipayConfigError {
    #[error("alipay app private key is invalid")]
    AppKey(#[source] KeyError),
    #[error("alipay public key is invalid")]
    AlipayKey(#[source] KeyError),
}

pub struct AlipayGateway {
    settings: AlipaySettings,
    /// Shared with the blocking signing task.
    signing_key: Arc<RsaSigningKey>,
    alipay_key: RsaVerifyingKey,
    http: reqwest::Client,
    /// Time for the `timestamp` parameter and the fallback payment time; injectable.
    clock: Arc<dyn Clock>,
}

impl AlipayGateway {
    /// Parses the keys (once, at start-up) and builds the gateway.
    ///
    /// # Errors
    /// [`AlipayConfigError`] naming the key that does not parse.
    pub fn new(settings: AlipaySettings, http: reqwest::Client) -> Result<Self, AlipayConfigError> {
        let signing_key =
            RsaSigningKey::from_pem(settings.app_private_key_pem.expose_secret()).map_err(AlipayConfigError::AppKey)?;
        let alipay_key =
            RsaVerifyingKey::from_pem(&settings.alipay_public_key_pem).map_err(AlipayConfigError::AlipayKey)?;
        Ok(Self {
            settings,
            signing_key: Arc::new(signing_key),
            alipay_key,
            http,
            clock: Arc::new(SystemClock),
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Signs and sends one API call; returns the verified response node, parsed, or the
    /// failure it carries.
    #[tracing::instrument(skip_all, fields(method = %method))]
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        biz_content: String,
        notify_url: Option<&str>,
    ) -> Result<Result<T, AlipayResponseStatus>, GatewayError> {
        let timestamp = format_china_datetime(self.clock.now());
        let mut public: Vec<(&str, &str)> = vec![
            ("app_id", self.settings.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", CHARSET),
            ("sign_type", "RSA2"),
            ("timestamp", timestamp.as_str()),
            ("version", "1.0"),
        ];
        if let Some(url) = notify_url {
            public.push(("notify_url", url));
        }
        let content = crypto::sign_content(
            public
                .iter()
                .copied()
                .chain(std::iter::once(("biz_content", biz_content.as_str()))),
            crypto::REQUEST_EXCLUDED,
        );
        // RSA signing is a millisecond of CPU: off the async worker, keeping the span.
        let key = Arc::clone(&self.signing_key);
        let span = tracing::Span::current();
        let sign = tokio::task::spawn_blocking(move || span.in_scope(|| key.sign(content.as_bytes())))
            .await
            .map_err(|_| GatewayError::Crashed)?
            .map_err(|_| GatewayError::NotConfigured(Provider::Alipay))?;
        public.push(("sign", sign.as_str()));
        let query = serde_urlencoded::to_string(&public).map_err(GatewayError::malformed)?;
        let form =
            serde_urlencoded::to_string([("biz_content", biz_content.as_str())]).map_err(GatewayError::malformed)?;

        let response = crate::trace::propagate(self.http.post(format!("{}?{query}", self.settings.gateway_url)))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded;charset=utf-8")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(form)
            .send()
            .await
            .map_err(GatewayError::from_transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(GatewayError::from_transport)?;
        if !status.is_success() {
            return Err(GatewayError::Provider {
                code: format!("HTTP_{}", status.as_u16()),
                message: "alipay gateway answered an HTTP error".into(),
                retryable: status.is_server_error(),
            });
        }
        let raw = std::str::from_utf8(&bytes).map_err(GatewayError::malformed)?;
        let extracted =
            crypto::extract_response(raw, method).map_err(|err| GatewayError::Verification(err.to_string()))?;
        let node_status: AlipayResponseStatus =
            serde_json::from_str(extracted.content).map_err(GatewayError::malformed)?;
        if extracted.sign.is_none() && extracted.node == "error_response" && node_status.code != ALIPAY_SUCCESS {
            // The gateway leaves some errors unsigned (it cannot sign for an app id it does
            // not know). An unsigned answer is only ever a non-retryable failure, never a
            // "not found" that would let an order close.
            return Err(GatewayError::Provider {
                code: node_status.sub_code.unwrap_or(node_status.code),
                message: node_status.sub_msg.unwrap_or(node_status.msg),
                retryable: false,
            });
        }
        crypto::verify_response(&self.alipay_key, &extracted)
            .map_err(|err| GatewayError::Verification(err.to_string()))?;
        if node_status.code != ALIPAY_SUCCESS {
            tracing::debug!(code = %node_status.code, sub_code = ?node_status.sub_code, "alipay answered a failure");
            return Ok(Err(node_status));
        }
        serde_json::from_str(extracted.content)
            .map(Ok)
            .map_err(GatewayError::malformed)
    }
}

/// The answer node of `alipay.data.dataservice.bill.downloadurl.query`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AlipayBillUrlResponse {
    #[serde(flatten)]
    status: AlipayResponseStatus,
    #[serde(default)]
    bill_download_url: Option<String>,
}

fn biz<T: serde::Serialize>(biz: &T) -> Result<String, GatewayError> {
    serde_json::to_string(biz).map_err(GatewayError::malformed)
}

#[async_trait]
impl Gateway for AlipayGateway {
    fn provider(&self) -> Provider {
        Provider::Alipay
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", pay_no = %req.pay_no))]
    async fn create_qr(&self, req: &QrRequest) -> Result<QrCreated, GatewayError> {
        let total_amount = AlipayAmount::from_minor(req.amount);
        let biz_content = biz(&AlipayPrecreateBiz {
            out_trade_no: req.pay_no.to_string(),
            total_amount,
            subject: req.subject.chars().take(SUBJECT_MAX_CHARS).collect(),
            time_expire: Some(format_china_datetime(req.expires_at)),
            timeout_express: None,
        })?;
        let answer: Result<AlipayPrecreateResponse, _> = self
            .call(METHOD_PRECREATE, biz_content, Some(&self.settings.notify_url))
            .await?;
        match answer {
            Ok(created) => created
                .qr_code
                .map(|code_url| QrCreated { code_url })
                .ok_or_else(|| GatewayError::malformed("precreate succeeded without qr_code")),
            Err(status) => Err(classify_failure(&status).into_gateway_error()),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", pay_no = %pay_no))]
    async fn query(&self, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        let biz_content = biz(&AlipayTradeBiz {
            out_trade_no: pay_no.to_string(),
        })?;
        let answer: Result<AlipayQueryResponse, _> = self.call(METHOD_QUERY, biz_content, None).await?;
        match answer {
            Ok(found) => {
                if found.out_trade_no.as_deref().is_some_and(|no| no != pay_no.to_string()) {
                    return Err(GatewayError::Verification(format!(
                        "asked for out_trade_no {pay_no}, got {:?}",
                        found.out_trade_no
                    )));
                }
                let status = found
                    .trade_status
                    .ok_or_else(|| GatewayError::malformed("query succeeded without trade_status"))?;
                let paid_at = found.send_pay_date.as_deref().and_then(parse_china_datetime);
                let state = trade_state(
                    status,
                    found.trade_no.as_deref(),
                    found.total_amount,
                    paid_at,
                    self.clock.now(),
                )
                .map_err(GatewayError::malformed)?;
                Ok(TradeQuery {
                    state,
                    raw: serde_json::to_value(&found).unwrap_or(serde_json::Value::Null),
                })
            }
            Err(status) => Ok(TradeQuery {
                raw: serde_json::to_value(&status).unwrap_or(serde_json::Value::Null),
                state: classify_failure(&status).into_query_state()?,
            }),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", pay_no = %pay_no))]
    async fn close(&self, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        let biz_content = biz(&AlipayTradeBiz {
            out_trade_no: pay_no.to_string(),
        })?;
        let answer: Result<AlipayCloseResponse, _> = self.call(METHOD_CLOSE, biz_content, None).await?;
        match answer {
            Ok(_) => Ok(CloseOutcome::Closed),
            Err(status) => classify_failure(&status).into_close_outcome(),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", refund_no = %req.refund_no))]
    async fn refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let biz_content = biz(&AlipayRefundBiz {
            out_trade_no: req.pay_no.to_string(),
            refund_amount: AlipayAmount::from_minor(req.amount),
            out_request_no: req.refund_no.to_string(),
            refund_reason: Some(req.reason.clone()).filter(|reason| !reason.is_empty()),
        })?;
        let answer: Result<AlipayRefundResponse, _> = self.call(METHOD_REFUND, biz_content, None).await?;
        match answer {
            Ok(refunded) => {
                let raw = serde_json::to_value(&refunded).unwrap_or(serde_json::Value::Null);
                // `Y`: money moved now. Anything else is confirmed by the refund query.
                let state = if refunded.fund_change.as_deref() == Some("Y") {
                    RefundState::Succeeded {
                        // Alipay gives a refund no id of its own (`trade_no` is the payment's).
                        provider_refund_id: None,
                        at: refunded
                            .gmt_refund_pay
                            .as_deref()
                            .and_then(parse_china_datetime)
                            .unwrap_or_else(|| self.clock.now()),
                    }
                } else {
                    RefundState::Processing {
                        provider_refund_id: None,
                    }
                };
                Ok(RefundAnswer { state, raw })
            }
            Err(status) => {
                let raw = serde_json::to_value(&status).unwrap_or(serde_json::Value::Null);
                match classify_failure(&status) {
                    // ACQ.SYSTEM_ERROR, code 20000: the outcome is unknown.
                    failure @ AlipayFailure::Error { retryable: true, .. } => Err(failure.into_gateway_error()),
                    // Every other business failure (balance, amount, trade status, a number
                    // reused with other content) is final: no money moved.
                    failure => {
                        let GatewayError::Provider { code, message, .. } = failure.into_gateway_error() else {
                            return Err(GatewayError::malformed("unclassified alipay refund failure"));
                        };
                        Ok(RefundAnswer {
                            state: RefundState::Failed { code, message },
                            raw,
                        })
                    }
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", refund_no = %req.refund_no))]
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let biz_content = biz(&AlipayRefundQueryBiz {
            out_trade_no: req.pay_no.to_string(),
            out_request_no: req.refund_no.to_string(),
            query_options: vec!["gmt_refund_pay".into()],
        })?;
        let answer: Result<AlipayRefundQueryResponse, _> = self.call(METHOD_REFUND_QUERY, biz_content, None).await?;
        match answer {
            Ok(found) => {
                let raw = serde_json::to_value(&found).unwrap_or(serde_json::Value::Null);
                if found
                    .out_request_no
                    .as_deref()
                    .is_some_and(|no| no != req.refund_no.to_string())
                {
                    return Err(GatewayError::Verification(format!(
                        "asked for out_request_no {}, got {:?}",
                        req.refund_no, found.out_request_no
                    )));
                }
                let state = if found.refund_status.as_deref() == Some(REFUND_SUCCESS) {
                    RefundState::Succeeded {
                        provider_refund_id: None,
                        at: found
                            .gmt_refund_pay
                            .as_deref()
                            .and_then(parse_china_datetime)
                            .unwrap_or_else(|| self.clock.now()),
                    }
                } else {
                    RefundState::NotFound
                };
                Ok(RefundAnswer { state, raw })
            }
            Err(status) => match classify_failure(&status) {
                // The trade itself is unknown: so is any refund of it.
                AlipayFailure::NotFound => Ok(RefundAnswer {
                    state: RefundState::NotFound,
                    raw: serde_json::to_value(&status).unwrap_or(serde_json::Value::Null),
                }),
                // A refused query says nothing about the refund: ask again later.
                failure => Err(match failure.into_gateway_error() {
                    GatewayError::Provider { code, message, .. } => GatewayError::Provider {
                        code,
                        message,
                        retryable: true,
                    },
                    other => other,
                }),
            },
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "alipay", %date))]
    async fn bill(&self, date: chrono::NaiveDate) -> Result<BillFetch, GatewayError> {
        let biz_content = serde_json::json!({
            "bill_type": "trade",
            "bill_date": date.format("%Y-%m-%d").to_string(),
        })
        .to_string();
        let answer: Result<AlipayBillUrlResponse, _> = self.call(METHOD_BILL_URL, biz_content, None).await?;
        let url = match answer {
            Ok(found) => found
                .bill_download_url
                .ok_or_else(|| GatewayError::malformed("bill query succeeded without bill_download_url"))?,
            Err(status) if status.sub_code.as_deref() == Some(BILL_NOT_EXIST) => return Ok(BillFetch::NotReady),
            Err(status) => return Err(classify_failure(&status).into_gateway_error()),
        };
        // A plain GET of a short-lived link (30 s): the archive is not signed, so it is taken
        // only over https or from the gateway's own origin, never through a redirect (the
        // client follows none), within its own time limit and size cap.
        let url = bill_download_url(&url, &self.settings.gateway_url).map_err(GatewayError::BadBill)?;
        let response = crate::trace::propagate(self.http.get(url))
            .header(USER_AGENT, USER_AGENT_VALUE)
            .timeout(BILL_TIMEOUT)
            .send()
            .await
            .map_err(GatewayError::from_transport)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(GatewayError::BadBill(format!(
                "the bill download answered a redirect ({}), which is refused",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(GatewayError::Provider {
                code: format!("HTTP_{}", status.as_u16()),
                message: "the bill download failed".into(),
                retryable: true,
            });
        }
        let bytes = read_capped(response, MAX_BILL_BYTES).await?;
        let expect = BillExpectation {
            date,
            account: self.settings.seller_id.as_deref(),
        };
        bill::parse_bill_zip(&bytes, &expect, MAX_UNZIPPED_BILL_BYTES)
            .map(BillFetch::Rows)
            .map_err(|err| GatewayError::BadBill(err.to_string()))
    }

    fn verify_notification(&self, req: &NotificationRequest) -> Result<VerifiedNotification, NotificationError> {
        // Decoded exactly once, here: `passback_params` may legitimately contain `%XX` and
        // `+`, and a second decoding would corrupt it (and the signature check with it).
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&req.body).map_err(|err| NotificationError::Malformed(err.to_string()))?;
        crypto::verify_params(&self.alipay_key, &params, NOTIFY_V1_EXCLUDED).map_err(|err| match err {
            AlipayVerifyError::MissingSign => NotificationError::MissingSignature,
            AlipayVerifyError::DuplicateParam(key) => {
                NotificationError::Malformed(format!("duplicate parameter {key}"))
            }
            AlipayVerifyError::Signature(_) => NotificationError::BadSignature,
        })?;
        let notification: AlipayNotification =
            serde_urlencoded::from_bytes(&req.body).map_err(|err| NotificationError::Malformed(err.to_string()))?;
        if notification
            .charset
            .as_deref()
            .is_some_and(|charset| !charset.eq_ignore_ascii_case(CHARSET))
        {
            return Err(NotificationError::Malformed(format!(
                "charset {:?} is not utf-8",
                notification.charset
            )));
        }
        if notification.app_id != self.settings.app_id {
            return Err(NotificationError::UnknownAccount);
        }
        if let Some(expected) = &self.settings.seller_id {
            if notification.seller_id.as_deref() != Some(expected.as_str()) {
                return Err(NotificationError::UnknownAccount);
            }
        }
        let out_trade_no = notification.out_trade_no.clone();
        let amount = notification
            .total_amount
            .as_deref()
            .map(AlipayAmount::parse)
            .transpose()
            .map_err(|err| NotificationError::Malformed(err.to_string()))?;
        let paid_at = notification
            .gmt_payment
            .as_deref()
            .or(notification.notify_time.as_deref())
            .and_then(parse_china_datetime);
        let state = trade_state(
            notification.trade_status,
            notification.trade_no.as_deref(),
            amount,
            paid_at,
            self.clock.now(),
        )
        .map_err(|err| NotificationError::Malformed(err.to_string()))?;
        let raw: serde_json::Map<String, serde_json::Value> = params
            .into_iter()
            .filter(|(key, _)| key != "sign")
            .map(|(key, value)| (key, serde_json::Value::String(value)))
            .collect();
        Ok(VerifiedNotification {
            event_id: notification.notify_id,
            out_trade_no,
            subject: NotificationSubject::Trade(state),
            raw: serde_json::Value::Object(raw),
        })
    }
}
