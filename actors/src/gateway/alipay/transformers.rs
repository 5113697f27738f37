//! Alipay OpenAPI wire types, exact yuan amounts, and the mapping of trade statuses and
//! `code` / `sub_code` onto [`TradeState`], [`CloseOutcome`] and [`GatewayError`].

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use entities::MinorUnit;
use serde::{Deserialize, Serialize};

use crate::gateway::wechat::transformers::china_offset;
use crate::gateway::{CloseOutcome, GatewayError, PaidTrade, TradeState};

/// `timestamp`, `time_expire`, `gmt_payment`...: China time, no zone in the text.
pub const CHINA_DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub fn format_china_datetime(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_offset())
        .format(CHINA_DATETIME_FORMAT)
        .to_string()
}

/// Reads a `yyyy-MM-dd HH:mm:ss` China time. A fixed offset has no gaps or folds, so the
/// local time is never ambiguous.
pub fn parse_china_datetime(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), CHINA_DATETIME_FORMAT).ok()?;
    china_offset()
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("'{0}' is not a yuan amount; expected digits with at most 2 decimals, like 19.99")]
    Format(String),
    #[error("'{0}' is too large")]
    Overflow(String),
}

/// An amount (non-negative, as every [`MinorUnit`] is) that Alipay writes in yuan (`"19.99"`)
/// and we keep in fen.
///
/// Converted through integers only: `19.99` as an `f64` is 19.989999…, and one fen lost in a
/// float round trip is an amount mismatch on a paid order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlipayAmount(MinorUnit);

impl AlipayAmount {
    /// Parses `digits[.d[d]]`: no sign, no exponent, no spaces, no leading zeros (`0.50` is
    /// fine, `00.50` is not), at most two decimals. `"1.5"` is 150 fen.
    ///
    /// # Errors
    /// [`AmountError`] for anything else, or a value beyond `i64` fen.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let format = || AmountError::Format(text.to_owned());
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
        if !all_digits(whole) || (whole.len() > 1 && whole.starts_with('0')) {
            return Err(format());
        }
        let fen_part: i64 = match fraction {
            None => 0,
            Some(fraction) if all_digits(fraction) && fraction.len() <= 2 => {
                let value: i64 = fraction.parse().map_err(|_| format())?;
                if fraction.len() == 1 {
                    value * 10
                } else {
                    value
                }
            }
            Some(_) => return Err(format()),
        };
        let overflow = || AmountError::Overflow(text.to_owned());
        let yuan: i64 = whole.parse().map_err(|_| overflow())?;
        let fen = yuan
            .checked_mul(100)
            .and_then(|fen| fen.checked_add(fen_part))
            .ok_or_else(overflow)?;
        // Digits only, so `fen` is never negative: this refusal is unreachable.
        MinorUnit::new(fen).map(Self).map_err(|_| format())
    }

    /// Any amount can be sent: a negative one cannot be built in the first place.
    pub fn from_minor(amount: MinorUnit) -> Self {
        Self(amount)
    }

    pub fn minor(self) -> MinorUnit {
        self.0
    }
}

impl fmt::Display for AlipayAmount {
    /// Always two decimals: 1999 fen is `19.99`, 5 fen `0.05`, 100 fen `1.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0.get() / 100, self.0.get() % 100)
    }
}

impl Serialize for AlipayAmount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlipayAmount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `biz_content` of `alipay.trade.precreate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayPrecreateBiz {
    pub out_trade_no: String,
    pub total_amount: AlipayAmount,
    pub subject: String,
    /// Absolute deadline, China time: the order's own, so provider and expiry rule agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Relative alternative (`15m`); the simulator honours it when `time_expire` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_express: Option<String>,
}

/// `biz_content` of `alipay.trade.query` and `alipay.trade.close`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayTradeBiz {
    pub out_trade_no: String,
}

/// `biz_content` of `alipay.trade.refund`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayRefundBiz {
    pub out_trade_no: String,
    /// Yuan, two decimals: this refund.
    pub refund_amount: AlipayAmount,
    /// paywarden's refund number: the same number refunds once.
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayRefundQueryBiz {
    pub out_trade_no: String,
    pub out_request_no: String,
    /// `["gmt_refund_pay"]`: without it the refund time is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_options: Vec<String>,
}

/// The answer node of `alipay.trade.refund`. `refund_fee` is the trade's *cumulative*
/// refunded amount; `fund_change` `Y` means this request moved money now, `N` that it did
/// not (a repeat of a refund already made, or not made yet): confirm with the refund query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayRefundResponse {
    #[serde(flatten)]
    pub status: AlipayResponseStatus,
    #[serde(default)]
    pub trade_no: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub buyer_logon_id: Option<String>,
    #[serde(default)]
    pub fund_change: Option<String>,
    #[serde(default)]
    pub refund_fee: Option<AlipayAmount>,
    #[serde(default)]
    pub gmt_refund_pay: Option<String>,
}

/// The answer node of `alipay.trade.fastpay.refund.query`. A refund that was made has
/// `refund_status` `REFUND_SUCCESS`; without it, no refund was made under this number and
/// sending it again is safe.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayRefundQueryResponse {
    #[serde(flatten)]
    pub status: AlipayResponseStatus,
    #[serde(default)]
    pub trade_no: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub out_request_no: Option<String>,
    #[serde(default)]
    pub total_amount: Option<AlipayAmount>,
    #[serde(default)]
    pub refund_amount: Option<AlipayAmount>,
    #[serde(default)]
    pub refund_status: Option<String>,
    #[serde(default)]
    pub gmt_refund_pay: Option<String>,
}

/// `refund_status` of a refund that was made.
pub const REFUND_SUCCESS: &str = "REFUND_SUCCESS";

/// The fields every response node has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayResponseStatus {
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_msg: Option<String>,
}

/// The success code; anything else is a failure described by `sub_code`.
pub const ALIPAY_SUCCESS: &str = "10000";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayPrecreateResponse {
    #[serde(flatten)]
    pub status: AlipayResponseStatus,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub qr_code: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayQueryResponse {
    #[serde(flatten)]
    pub status: AlipayResponseStatus,
    #[serde(default)]
    pub trade_no: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub trade_status: Option<AlipayTradeStatus>,
    #[serde(default)]
    pub total_amount: Option<AlipayAmount>,
    /// When the payment went through, China time.
    #[serde(default)]
    pub send_pay_date: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayCloseResponse {
    #[serde(flatten)]
    pub status: AlipayResponseStatus,
    #[serde(default)]
    pub trade_no: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlipayTradeStatus {
    WaitBuyerPay,
    /// Closed unpaid (timeout, close call) or fully refunded.
    TradeClosed,
    TradeSuccess,
    /// Final, no longer refundable: still paid.
    TradeFinished,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlipayMappingError {
    #[error("a paid trade lacks {0}")]
    MissingField(&'static str),
}

/// Maps a trade status. A paid trade needs its `trade_no` and amount; `paid_at` falls back
/// to `fallback_paid_at` (the time we learned of it) when Alipay leaves the date out.
///
/// # Errors
/// [`AlipayMappingError`] when a paid trade lacks its id or amount.
pub fn trade_state(
    status: AlipayTradeStatus,
    trade_no: Option<&str>,
    amount: Option<AlipayAmount>,
    paid_at: Option<DateTime<Utc>>,
    fallback_paid_at: DateTime<Utc>,
) -> Result<TradeState, AlipayMappingError> {
    match status {
        AlipayTradeStatus::WaitBuyerPay => Ok(TradeState::NotPaid),
        AlipayTradeStatus::TradeClosed => Ok(TradeState::Closed),
        AlipayTradeStatus::TradeSuccess | AlipayTradeStatus::TradeFinished => Ok(TradeState::Paid(PaidTrade {
            provider_txn_id: trade_no.ok_or(AlipayMappingError::MissingField("trade_no"))?.to_owned(),
            amount: amount.ok_or(AlipayMappingError::MissingField("total_amount"))?.minor(),
            paid_at: paid_at.unwrap_or(fallback_paid_at),
        })),
    }
}

/// The `sub_code`s paywarden tells apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlipaySubCode {
    TradeNotExist,
    TradeStatusError,
    TradeHasSuccess,
    SystemError,
    /// `isp.unknow-error` / `aop.unknow-error` (sic): the gateway itself is unwell.
    UnknownError,
    InvalidSignature,
    InvalidAppId,
    Other(String),
}

impl AlipaySubCode {
    pub fn parse(sub_code: &str) -> Self {
        match sub_code {
            "ACQ.TRADE_NOT_EXIST" => Self::TradeNotExist,
            "ACQ.TRADE_STATUS_ERROR" => Self::TradeStatusError,
            "ACQ.TRADE_HAS_SUCCESS" => Self::TradeHasSuccess,
            "ACQ.SYSTEM_ERROR" => Self::SystemError,
            "isp.unknow-error" | "aop.unknow-error" => Self::UnknownError,
            "isv.invalid-signature" => Self::InvalidSignature,
            "isv.invalid-app-id" => Self::InvalidAppId,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What a non-`10000` answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlipayFailure {
    NotFound,
    /// `ACQ.TRADE_STATUS_ERROR` (on close: the trade is no longer waiting, typically paid) or
    /// `ACQ.TRADE_HAS_SUCCESS`.
    WrongStatus,
    Error {
        code: String,
        message: String,
        retryable: bool,
    },
}

pub fn classify_failure(status: &AlipayResponseStatus) -> AlipayFailure {
    let sub_code = status.sub_code.as_deref().unwrap_or_default();
    let error = |retryable: bool| AlipayFailure::Error {
        code: if sub_code.is_empty() {
            status.code.clone()
        } else {
            sub_code.to_owned()
        },
        message: status.sub_msg.clone().unwrap_or_else(|| status.msg.clone()),
        retryable,
    };
    match AlipaySubCode::parse(sub_code) {
        AlipaySubCode::TradeNotExist => AlipayFailure::NotFound,
        AlipaySubCode::TradeStatusError | AlipaySubCode::TradeHasSuccess => AlipayFailure::WrongStatus,
        AlipaySubCode::SystemError | AlipaySubCode::UnknownError => error(true),
        AlipaySubCode::InvalidSignature | AlipaySubCode::InvalidAppId => error(false),
        // Code 20000 is "service unavailable": retry. Other codes are the caller's mistake.
        AlipaySubCode::Other(_) => error(status.code == "20000"),
    }
}

impl AlipayFailure {
    pub fn into_gateway_error(self) -> GatewayError {
        match self {
            AlipayFailure::NotFound => GatewayError::Provider {
                code: "ACQ.TRADE_NOT_EXIST".into(),
                message: "trade does not exist".into(),
                retryable: false,
            },
            AlipayFailure::WrongStatus => GatewayError::Provider {
                code: "ACQ.TRADE_STATUS_ERROR".into(),
                message: "trade status does not allow this call".into(),
                retryable: false,
            },
            AlipayFailure::Error {
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

    /// # Errors
    /// The [`GatewayError`] unless the failure is an answer to a close.
    pub fn into_close_outcome(self) -> Result<CloseOutcome, GatewayError> {
        match self {
            AlipayFailure::NotFound => Ok(CloseOutcome::NotFound),
            // Only WAIT_BUYER_PAY trades can be closed; the usual other state is paid. The
            // caller queries after AlreadyPaid, which also settles the rarer "already closed".
            AlipayFailure::WrongStatus => Ok(CloseOutcome::AlreadyPaid),
            failure @ AlipayFailure::Error { .. } => Err(failure.into_gateway_error()),
        }
    }

    /// # Errors
    /// The [`GatewayError`] unless the failure is an answer to a query.
    pub fn into_query_state(self) -> Result<TradeState, GatewayError> {
        match self {
            // Also what a precreated trade answers before the buyer scans the code.
            AlipayFailure::NotFound => Ok(TradeState::NotFound),
            failure @ (AlipayFailure::WrongStatus | AlipayFailure::Error { .. }) => Err(failure.into_gateway_error()),
        }
    }
}

/// The fields of a `trade_status_sync` notification paywarden reads. Everything else stays in
/// the raw parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlipayNotification {
    /// Stays the same across Alipay's resends: the deduplication key.
    pub notify_id: String,
    #[serde(default)]
    pub notify_type: String,
    pub app_id: String,
    #[serde(default)]
    pub seller_id: Option<String>,
    #[serde(default)]
    pub charset: Option<String>,
    pub out_trade_no: String,
    #[serde(default)]
    pub trade_no: Option<String>,
    pub trade_status: AlipayTradeStatus,
    #[serde(default)]
    pub total_amount: Option<String>,
    #[serde(default)]
    pub gmt_payment: Option<String>,
    #[serde(default)]
    pub notify_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_convert_to_fen_exactly() {
        for (text, fen) in [
            ("0", 0),
            ("0.01", 1),
            ("0.1", 10),
            ("0.10", 10),
            ("1", 100),
            ("1.5", 150),
            ("19.99", 1999),
            ("88.88", 8888),
            ("100000000.00", 10_000_000_000),
            ("92233720368547758.07", i64::MAX),
        ] {
            assert_eq!(
                AlipayAmount::parse(text),
                Ok(AlipayAmount(MinorUnit::new(fen).unwrap())),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_yuan_strings_are_rejected() {
        for (text, why) in [
            ("", "empty"),
            ("1.234", "three decimals"),
            ("1.", "dot without decimals"),
            (".5", "no whole part"),
            ("-1.00", "negative"),
            ("+1.00", "explicit sign"),
            ("1e2", "exponent"),
            (" 1.00", "leading space"),
            ("1.00 ", "trailing space"),
            ("01.00", "leading zero"),
            ("1,00", "comma"),
            ("1.0.0", "two dots"),
            ("NaN", "not a number"),
            ("92233720368547758.08", "overflows i64 fen"),
            ("１.00", "full-width digit"),
        ] {
            assert!(AlipayAmount::parse(text).is_err(), "'{text}' ({why}) was accepted");
        }
    }

    #[test]
    fn fen_print_as_two_decimal_yuan_and_round_trip() {
        for (fen, text) in [(0, "0.00"), (5, "0.05"), (10, "0.10"), (100, "1.00"), (1999, "19.99")] {
            let amount = AlipayAmount::from_minor(MinorUnit::new(fen).unwrap());
            assert_eq!(amount.to_string(), text);
            assert_eq!(AlipayAmount::parse(text).unwrap(), amount);
        }
        // A negative amount cannot reach `from_minor`: it is refused when the `MinorUnit` is built.
        assert!(MinorUnit::new(-1).is_err());
    }

    #[test]
    fn china_datetimes_round_trip() {
        let at = parse_china_datetime("2024-01-01 12:00:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2024-01-01T04:00:00+00:00");
        assert_eq!(format_china_datetime(at), "2024-01-01 12:00:00");
        assert!(parse_china_datetime("2024-01-01T12:00:00").is_none());
    }

    #[test]
    fn sub_codes_map_as_documented() {
        let status = |code: &str, sub_code: &str| AlipayResponseStatus {
            code: code.into(),
            msg: "m".into(),
            sub_code: Some(sub_code.into()),
            sub_msg: None,
        };
        assert_eq!(
            classify_failure(&status("40004", "ACQ.TRADE_NOT_EXIST"))
                .into_close_outcome()
                .unwrap(),
            CloseOutcome::NotFound
        );
        assert_eq!(
            classify_failure(&status("40004", "ACQ.TRADE_STATUS_ERROR"))
                .into_close_outcome()
                .unwrap(),
            CloseOutcome::AlreadyPaid
        );
        assert_eq!(
            classify_failure(&status("40004", "ACQ.TRADE_NOT_EXIST"))
                .into_query_state()
                .unwrap(),
            TradeState::NotFound
        );
        assert!(classify_failure(&status("40004", "ACQ.SYSTEM_ERROR"))
            .into_gateway_error()
            .is_retryable());
        assert!(classify_failure(&status("20000", "isp.whatever"))
            .into_gateway_error()
            .is_retryable());
        assert!(!classify_failure(&status("40002", "isv.invalid-signature"))
            .into_gateway_error()
            .is_retryable());
    }
}
