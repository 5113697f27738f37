//! WeChat Pay API v3 wire types and their mapping onto [`TradeState`], [`CloseOutcome`] and
//! [`GatewayError`].
//!
//! Response structs do not deny unknown fields: WeChat adds fields without notice, and a new
//! field must not turn a paid order into an error. Request structs are exactly what we send.

use chrono::{DateTime, FixedOffset, Offset as _, SecondsFormat, Utc};
use entities::MinorUnit;
use serde::{Deserialize, Serialize};

use crate::gateway::{CloseOutcome, GatewayError, PaidTrade, RefundState, TradeState};

/// China Standard Time, UTC+8 all year (no daylight saving since 1991), so a fixed offset is
/// exact and needs no time-zone database.
pub const CHINA_UTC_OFFSET_SECONDS: i32 = 8 * 3600;

pub fn china_offset() -> FixedOffset {
    // `east_opt` fails only for offsets of a day or more; the constant is 8 hours.
    FixedOffset::east_opt(CHINA_UTC_OFFSET_SECONDS).unwrap_or_else(|| Utc.fix())
}

/// RFC 3339 in China time (`2024-01-01T12:00:00+08:00`), as WeChat writes and expects dates.
pub fn rfc3339_china(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_offset())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Body of `POST /v3/pay/transactions/native`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatNativeRequest {
    pub appid: String,
    pub mchid: String,
    /// At most 127 characters.
    pub description: String,
    pub out_trade_no: String,
    /// RFC 3339; after it the buyer can no longer pay. We pass the order's deadline so the
    /// provider and the expiry rule agree on when the trade dies.
    pub time_expire: String,
    pub notify_url: String,
    pub amount: WechatAmount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatAmount {
    /// In fen.
    pub total: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatNativeResponse {
    pub code_url: String,
}

/// Body of `POST /v3/pay/transactions/out-trade-no/{no}/close`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatCloseRequest {
    pub mchid: String,
}

/// `trade_state` of a transaction. `REVOKED`, `USERPAYING` and `PAYERROR` occur only for
/// micropay (付款码); `ACCEPT` only in the Java SDK's enum. All are listed so the mapping below
/// is total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WechatTradeState {
    Success,
    Refund,
    Notpay,
    Closed,
    Revoked,
    Userpaying,
    Payerror,
    Accept,
}

/// A transaction, as the query answers it and as a decrypted `TRANSACTION.SUCCESS` resource.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatTransaction {
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub mchid: Option<String>,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    pub trade_state: WechatTradeState,
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    /// RFC 3339, present once paid.
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub amount: Option<WechatTransactionAmount>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatTransactionAmount {
    #[serde(default)]
    pub total: Option<i64>,
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payer_currency: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WechatMappingError {
    #[error("a paid transaction lacks {0}")]
    MissingField(&'static str),
    #[error("success_time '{0}' is not RFC 3339")]
    BadTime(String),
    #[error("amount.total {0} is negative; expected a non-negative number of fen")]
    NegativeAmount(i64),
}

impl WechatTransaction {
    /// # Errors
    /// [`WechatMappingError`] when a paid transaction lacks its id, amount or payment time, or
    /// its amount is negative: we refuse to record a payment we cannot describe.
    pub fn to_trade_state(&self) -> Result<TradeState, WechatMappingError> {
        match self.trade_state {
            // REFUND means it was paid and (part of) it went back: for the expiry rule it was
            // paid, and refunds are another flow.
            WechatTradeState::Success | WechatTradeState::Refund => self.paid().map(TradeState::Paid),
            WechatTradeState::Notpay => Ok(TradeState::NotPaid),
            // A failed micropay attempt leaves the order unpaid; the buyer may try again.
            WechatTradeState::Payerror => Ok(TradeState::NotPaid),
            // ACCEPT: received, waiting for the debit, the same "do not close yet" as USERPAYING.
            WechatTradeState::Userpaying | WechatTradeState::Accept => Ok(TradeState::UserPaying),
            WechatTradeState::Closed | WechatTradeState::Revoked => Ok(TradeState::Closed),
        }
    }

    fn paid(&self) -> Result<PaidTrade, WechatMappingError> {
        let provider_txn_id = self
            .transaction_id
            .clone()
            .ok_or(WechatMappingError::MissingField("transaction_id"))?;
        let total = self
            .amount
            .as_ref()
            .and_then(|amount| amount.total)
            .ok_or(WechatMappingError::MissingField("amount.total"))?;
        let amount = MinorUnit::new(total).map_err(|_| WechatMappingError::NegativeAmount(total))?;
        let success_time = self
            .success_time
            .as_deref()
            .ok_or(WechatMappingError::MissingField("success_time"))?;
        let paid_at = DateTime::parse_from_rfc3339(success_time)
            .map_err(|_| WechatMappingError::BadTime(success_time.to_owned()))?
            .with_timezone(&Utc);
        Ok(PaidTrade {
            provider_txn_id,
            amount,
            paid_at,
        })
    }
}

/// The error body of a 4xx/5xx: `{"code":"PARAM_ERROR","message":"...","detail":{...}}`.
/// Branch on `code` only; one code comes with several messages.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WechatErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The error codes paywarden tells apart. Both spellings of "order does not exist" occur in
/// the wild (`ORDER_NOT_EXIST` in the docs, `ORDERNOTEXIST` in SDK comments, `ORDER_NOT_EXISTS`
/// in the Java README), and so do `ORDERPAID` and `ORDER_PAID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WechatErrorCode {
    OrderNotExist,
    OrderPaid,
    OrderClosed,
    SystemError,
    ServiceUnavailable,
    FrequencyLimited,
    /// `RULE_LIMIT` on close: the order is younger than the close window.
    RuleLimit,
    SignError,
    ParamError,
    InvalidRequest,
    NoAuth,
    TradeError,
    OutTradeNoUsed,
    Other(String),
}

impl WechatErrorCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "ORDER_NOT_EXIST" | "ORDERNOTEXIST" | "ORDER_NOT_EXISTS" => Self::OrderNotExist,
            "ORDERPAID" | "ORDER_PAID" => Self::OrderPaid,
            "ORDER_CLOSED" | "ORDERCLOSED" => Self::OrderClosed,
            "SYSTEM_ERROR" | "SYSTEMERROR" => Self::SystemError,
            "SERVICE_UNAVAILABLE" => Self::ServiceUnavailable,
            "FREQUENCY_LIMITED" | "RATELIMIT_EXCEEDED" => Self::FrequencyLimited,
            "RULE_LIMIT" => Self::RuleLimit,
            "SIGN_ERROR" => Self::SignError,
            "PARAM_ERROR" => Self::ParamError,
            "INVALID_REQUEST" => Self::InvalidRequest,
            "NO_AUTH" => Self::NoAuth,
            "TRADE_ERROR" => Self::TradeError,
            "OUT_TRADE_NO_USED" => Self::OutTradeNoUsed,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What a failed call means, before the call-specific reading (query and close turn some of
/// these into answers rather than errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WechatFailure {
    NotFound,
    AlreadyPaid,
    AlreadyClosed,
    TooEarly,
    Error {
        code: String,
        message: String,
        retryable: bool,
    },
    RateLimited,
}

/// Classifies an error response by status and code. Only a documented not-exist code means
/// "not found": a 404 without one (a proxy's or load balancer's page, a wrong base URL) says
/// nothing about the trade, so it is a retryable provider failure, never a reason to close.
/// When the code is unknown the status decides: 429 is a rate limit, 404 and 5xx retryable.
pub fn classify_error(status: u16, body: &WechatErrorBody) -> WechatFailure {
    let error = |retryable: bool| WechatFailure::Error {
        code: if body.code.is_empty() {
            format!("HTTP_{status}")
        } else {
            body.code.clone()
        },
        message: body.message.clone(),
        retryable,
    };
    match WechatErrorCode::parse(&body.code) {
        WechatErrorCode::OrderNotExist => WechatFailure::NotFound,
        WechatErrorCode::OrderPaid => WechatFailure::AlreadyPaid,
        WechatErrorCode::OrderClosed => WechatFailure::AlreadyClosed,
        WechatErrorCode::RuleLimit => WechatFailure::TooEarly,
        WechatErrorCode::FrequencyLimited => WechatFailure::RateLimited,
        WechatErrorCode::SystemError | WechatErrorCode::ServiceUnavailable => error(true),
        WechatErrorCode::SignError
        | WechatErrorCode::ParamError
        | WechatErrorCode::InvalidRequest
        | WechatErrorCode::NoAuth
        | WechatErrorCode::TradeError
        | WechatErrorCode::OutTradeNoUsed => error(false),
        WechatErrorCode::Other(_) => match status {
            429 => WechatFailure::RateLimited,
            404 | 500..=599 => error(true),
            _ => error(false),
        },
    }
}

impl WechatFailure {
    /// The failure as an error, for calls where it is not an answer (prepay).
    pub fn into_gateway_error(self) -> GatewayError {
        let not_retryable = |code: &str, message: &str| GatewayError::Provider {
            code: code.to_owned(),
            message: message.to_owned(),
            retryable: false,
        };
        match self {
            WechatFailure::NotFound => not_retryable("ORDER_NOT_EXIST", "order does not exist"),
            WechatFailure::AlreadyPaid => not_retryable("ORDER_PAID", "order already paid"),
            WechatFailure::AlreadyClosed => not_retryable("ORDER_CLOSED", "order already closed"),
            WechatFailure::TooEarly => GatewayError::Provider {
                code: "RULE_LIMIT".into(),
                message: "call refused by a provider rule; try later".into(),
                retryable: true,
            },
            WechatFailure::RateLimited => GatewayError::RateLimited,
            WechatFailure::Error {
                code,
                message,
                retryable,
            } => GatewayError::Provider {
                code,
                message,
                retryable,
            },
        }
    }

    /// The failure as the answer to a close: "paid", "not found" and "too early" are answers.
    ///
    /// # Errors
    /// The [`GatewayError`] for everything else.
    pub fn into_close_outcome(self, retry_at: DateTime<Utc>) -> Result<CloseOutcome, GatewayError> {
        match self {
            WechatFailure::NotFound => Ok(CloseOutcome::NotFound),
            WechatFailure::AlreadyPaid => Ok(CloseOutcome::AlreadyPaid),
            // Closing a closed order is a success: the goal state holds.
            WechatFailure::AlreadyClosed => Ok(CloseOutcome::Closed),
            WechatFailure::TooEarly => Ok(CloseOutcome::TooEarly { retry_at }),
            failure @ (WechatFailure::Error { .. } | WechatFailure::RateLimited) => Err(failure.into_gateway_error()),
        }
    }

    /// The failure as the answer to a query: "not found" is an answer.
    ///
    /// # Errors
    /// The [`GatewayError`] for everything else.
    pub fn into_query_state(self) -> Result<TradeState, GatewayError> {
        match self {
            WechatFailure::NotFound => Ok(TradeState::NotFound),
            failure @ (WechatFailure::AlreadyPaid
            | WechatFailure::AlreadyClosed
            | WechatFailure::TooEarly
            | WechatFailure::Error { .. }
            | WechatFailure::RateLimited) => Err(failure.into_gateway_error()),
        }
    }
}

/// A notification envelope, as POSTed to `notify_url`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatNotification {
    /// Unique per event; retries of the same event keep it.
    pub id: String,
    pub create_time: String,
    #[serde(default)]
    pub resource_type: String,
    pub event_type: String,
    #[serde(default)]
    pub summary: String,
    pub resource: WechatEncryptedResource,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatEncryptedResource {
    #[serde(default)]
    pub original_type: String,
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
}

/// Body of `POST /v3/refund/domestic/refunds` (refund by `out_trade_no`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatRefundRequest {
    pub out_trade_no: String,
    /// paywarden's refund number; WeChat refunds once per number.
    pub out_refund_no: String,
    /// At most 80 characters; shown to the buyer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where `REFUND.*` notifications go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub amount: WechatRefundRequestAmount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatRefundRequestAmount {
    /// In fen: this refund.
    pub refund: i64,
    /// In fen: what the trade took.
    pub total: i64,
    pub currency: String,
}

/// `status` of a refund (`refund_status` in its notification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WechatRefundStatus {
    Success,
    Closed,
    Processing,
    Abnormal,
}

/// A refund, as the create and query calls answer it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatRefund {
    pub refund_id: String,
    pub out_refund_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub user_received_account: Option<String>,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub create_time: Option<String>,
    pub status: WechatRefundStatus,
    #[serde(default)]
    pub amount: Option<WechatRefundAmount>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WechatRefundAmount {
    #[serde(default)]
    pub total: Option<i64>,
    #[serde(default)]
    pub refund: Option<i64>,
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub payer_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The decrypted resource of a `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED`
/// notification. Its status field is `refund_status` (the API's is `status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WechatRefundResource {
    #[serde(default)]
    pub mchid: Option<String>,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_status: WechatRefundStatus,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub user_received_account: Option<String>,
    #[serde(default)]
    pub amount: Option<WechatRefundAmount>,
}

/// A refund's status as [`RefundState`]. A success without a readable `success_time` is
/// stamped `now`: the money went back, and the time is only for the record.
pub fn refund_state(
    status: WechatRefundStatus,
    refund_id: &str,
    success_time: Option<&str>,
    now: DateTime<Utc>,
) -> RefundState {
    let provider_refund_id = Some(refund_id.to_owned());
    match status {
        WechatRefundStatus::Success => RefundState::Succeeded {
            provider_refund_id,
            at: success_time
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map_or(now, |at| at.with_timezone(&Utc)),
        },
        WechatRefundStatus::Processing => RefundState::Processing { provider_refund_id },
        WechatRefundStatus::Closed => RefundState::Failed {
            code: "CLOSED".into(),
            message: "the refund was closed by WeChat Pay".into(),
        },
        // The money left the merchant but did not reach the buyer's account; the merchant
        // platform sends it on by hand. Not a failure: the amount stays reserved, and the
        // refund is asked about until WeChat says SUCCESS (or CLOSED).
        WechatRefundStatus::Abnormal => RefundState::Processing { provider_refund_id },
    }
}

/// An error answer to a refund call, classified by [`classify_error`] first. `SYSTEM_ERROR`
/// and 5xx leave the outcome unknown (query, then send again with the same number),
/// `FREQUENCY_LIMITED` was not accepted (try again); any other documented refusal is final,
/// `RESOURCE_NOT_EXISTS` (the trade is unknown) included.
///
/// # Errors
/// The [`GatewayError`] of a failure that is not an answer.
pub fn refund_failure(failure: WechatFailure, body: &WechatErrorBody) -> Result<RefundState, GatewayError> {
    match failure {
        WechatFailure::RateLimited => Err(GatewayError::RateLimited),
        WechatFailure::Error { code, message, .. }
            if body.code == REFUND_NOT_EXISTS || body.code == "MCH_NOT_EXISTS" =>
        {
            Ok(RefundState::Failed { code, message })
        }
        WechatFailure::Error {
            code,
            message,
            retryable: true,
        } => Err(GatewayError::Provider {
            code,
            message,
            retryable: true,
        }),
        WechatFailure::Error { code, message, .. } => Ok(RefundState::Failed { code, message }),
        WechatFailure::NotFound
        | WechatFailure::AlreadyPaid
        | WechatFailure::AlreadyClosed
        | WechatFailure::TooEarly => Ok(RefundState::Failed {
            code: body.code.clone(),
            message: body.message.clone(),
        }),
    }
}

/// The error code of a refund query for a refund WeChat never accepted.
pub const REFUND_NOT_EXISTS: &str = "RESOURCE_NOT_EXISTS";

/// The only resource algorithm WeChat Pay API v3 uses.
pub const RESOURCE_ALGORITHM: &str = "AEAD_AES_256_GCM";
/// The payment event paywarden acts on.
pub const EVENT_TRANSACTION_SUCCESS: &str = "TRANSACTION.SUCCESS";
/// Refund events (`original_type` `refund`): there is no `REFUND.PROCESSING`.
pub const EVENT_REFUND_SUCCESS: &str = "REFUND.SUCCESS";
pub const EVENT_REFUND_ABNORMAL: &str = "REFUND.ABNORMAL";
pub const EVENT_REFUND_CLOSED: &str = "REFUND.CLOSED";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trade_state_maps_as_documented() {
        let tx = |state: WechatTradeState| WechatTransaction {
            appid: None,
            mchid: None,
            out_trade_no: "1".into(),
            transaction_id: Some("4200".into()),
            trade_state: state,
            trade_state_desc: None,
            success_time: Some("2018-06-08T10:34:56+08:00".into()),
            amount: Some(WechatTransactionAmount {
                total: Some(100),
                payer_total: None,
                currency: None,
                payer_currency: None,
            }),
        };
        let cases = [
            (WechatTradeState::Notpay, "not_paid"),
            (WechatTradeState::Payerror, "not_paid"),
            (WechatTradeState::Userpaying, "user_paying"),
            (WechatTradeState::Accept, "user_paying"),
            (WechatTradeState::Closed, "closed"),
            (WechatTradeState::Revoked, "closed"),
            (WechatTradeState::Success, "paid"),
            (WechatTradeState::Refund, "paid"),
        ];
        for (state, expected) in cases {
            let got = match tx(state).to_trade_state().unwrap() {
                TradeState::NotPaid => "not_paid",
                TradeState::UserPaying => "user_paying",
                TradeState::Paid(_) => "paid",
                TradeState::Closed => "closed",
                TradeState::NotFound => "not_found",
            };
            assert_eq!(got, expected, "{state:?}");
        }
    }

    #[test]
    fn a_success_without_a_transaction_id_is_refused() {
        let tx: WechatTransaction =
            serde_json::from_str(r#"{"out_trade_no":"1","trade_state":"SUCCESS","amount":{"total":1}}"#).unwrap();
        assert!(tx.to_trade_state().is_err());
    }

    #[test]
    fn a_success_with_a_negative_amount_is_refused() {
        let tx: WechatTransaction = serde_json::from_str(
            r#"{"out_trade_no":"1","transaction_id":"4200","trade_state":"SUCCESS","success_time":"2018-06-08T10:34:56+08:00","amount":{"total":-1}}"#,
        )
        .unwrap();
        assert_eq!(tx.to_trade_state(), Err(WechatMappingError::NegativeAmount(-1)));
    }

    #[test]
    fn a_404_without_a_not_exist_code_is_a_provider_failure_not_a_missing_trade() {
        // A proxy's 404 page (no JSON body, so no code) or a JSON body with some other code must
        // never read as "trade not found": that answer closes the attempt without a close call.
        for code in ["", "MCH_NOT_EXISTS", "NOT_FOUND"] {
            let body = WechatErrorBody {
                code: code.into(),
                message: "<html>404 Not Found</html>".into(),
                detail: None,
            };
            let failure = classify_error(404, &body);
            assert!(
                matches!(failure, WechatFailure::Error { retryable: true, .. }),
                "404 with code {code:?}: {failure:?}"
            );
            assert!(failure.clone().into_query_state().is_err(), "{code:?}");
            assert!(failure.into_close_outcome(Utc::now()).is_err(), "{code:?}");
        }
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        let body = |code: &str| WechatErrorBody {
            code: code.into(),
            message: "m".into(),
            detail: None,
        };
        assert_eq!(classify_error(404, &body("ORDER_NOT_EXIST")), WechatFailure::NotFound);
        assert_eq!(classify_error(400, &body("ORDERNOTEXIST")), WechatFailure::NotFound);
        assert_eq!(classify_error(400, &body("ORDERPAID")), WechatFailure::AlreadyPaid);
        assert_eq!(classify_error(400, &body("ORDER_PAID")), WechatFailure::AlreadyPaid);
        assert_eq!(
            classify_error(429, &body("FREQUENCY_LIMITED")),
            WechatFailure::RateLimited
        );
        assert_eq!(classify_error(429, &body("")), WechatFailure::RateLimited);
        assert_eq!(classify_error(403, &body("RULE_LIMIT")), WechatFailure::TooEarly);
        assert!(matches!(
            classify_error(500, &body("SYSTEM_ERROR")),
            WechatFailure::Error { retryable: true, .. }
        ));
        assert!(matches!(
            classify_error(502, &body("WHATEVER")),
            WechatFailure::Error { retryable: true, .. }
        ));
        assert!(matches!(
            classify_error(400, &body("PARAM_ERROR")),
            WechatFailure::Error { retryable: false, .. }
        ));
    }

    #[test]
    fn time_expire_is_written_in_china_time() {
        let at = DateTime::parse_from_rfc3339("2024-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_china(at), "2024-01-01T12:00:00+08:00");
    }
}
