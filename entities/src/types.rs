//! Typed column values: ids, money and statuses.
//!
//! Ids are snowflakes (`i64`) but never travel as bare integers: they have their own types so an
//! order id cannot be passed where a pay_no is expected, and they print as decimal strings, which
//! is how JSON carries them (a 64-bit integer loses precision in JavaScript).

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use sea_orm::TryFromU64;
use serde::{Deserialize, Serialize};

/// An integer (or text) that is not an id: ids are positive integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidId {
    id_type: &'static str,
    /// The integer refused; `None` when the text was not an integer at all.
    value: Option<i64>,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(value) => write!(f, "{} must be a positive integer, got {value}", self.id_type),
            None => write!(f, "{} must be a positive decimal integer", self.id_type),
        }
    }
}

impl std::error::Error for InvalidId {}

macro_rules! snowflake_id {
    ($(#[$doc:meta])* $name:ident, $id_type:literal) => {
        $(#[$doc])*
        ///
        /// Built only through [`Self::new`] (or `TryFrom<i64>`, `FromStr`, serde), so it is always
        /// positive. The field is private; `DeriveValueType` reads it from this module.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
        pub struct $name(i64);

        impl $name {
            /// # Errors
            /// [`InvalidId`] when `value` is zero or negative.
            pub fn new(value: i64) -> Result<Self, InvalidId> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(InvalidId {
                        id_type: $id_type,
                        value: Some(value),
                    })
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = InvalidId;

            fn try_from(value: i64) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Parses the decimal form; only positive ids exist.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let value: i64 = s.parse().map_err(|_| InvalidId {
                    id_type: $id_type,
                    value: None,
                })?;
                Self::new(value)
            }
        }

        impl TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, DbErr> {
                i64::try_from(n)
                    .ok()
                    .and_then(|value| Self::new(value).ok())
                    .ok_or(DbErr::ConvertFromU64(stringify!($name)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

snowflake_id!(
    /// Primary key of `orders`; its decimal form is the public `order_no`.
    OrderId,
    "order id"
);
snowflake_id!(
    /// Primary key of `payment_attempts`, and the `out_trade_no` the provider sees.
    PayNo,
    "pay_no"
);
snowflake_id!(
    /// Primary key of `refunds`, and the refund number the provider sees (WeChat's
    /// `out_refund_no`, Alipay's `out_request_no`): every retry of one refund sends it again,
    /// so the provider refunds once.
    RefundNo,
    "refund_no"
);

/// A negative amount of money: paywarden's amounts (totals, unit prices, paid amounts) never are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidAmount(i64);

impl fmt::Display for InvalidAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "amount must be a non-negative number of minor units, got {}", self.0)
    }
}

impl std::error::Error for InvalidAmount {}

/// An amount of money in the currency's minor unit (fen, cents). Never a float, never negative.
///
/// Built only through [`MinorUnit::new`] (or `TryFrom<i64>`, serde) and the checked arithmetic,
/// each of which refuses a negative result. The field is private; `DeriveValueType` reads it
/// from this module.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, DeriveValueType, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct MinorUnit(i64);

impl MinorUnit {
    pub const ZERO: MinorUnit = MinorUnit(0);

    /// # Errors
    /// [`InvalidAmount`] when `value` is negative.
    pub fn new(value: i64) -> Result<Self, InvalidAmount> {
        if value >= 0 {
            Ok(Self(value))
        } else {
            Err(InvalidAmount(value))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// `None` on overflow.
    pub fn checked_add(self, other: MinorUnit) -> Option<MinorUnit> {
        self.0.checked_add(other.0).map(MinorUnit)
    }

    /// `None` on overflow or a negative `factor` (which would make a negative amount).
    pub fn checked_mul(self, factor: i64) -> Option<MinorUnit> {
        if factor < 0 {
            return None;
        }
        self.0.checked_mul(factor).map(MinorUnit)
    }
}

impl TryFrom<i64> for MinorUnit {
    type Error = InvalidAmount;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<MinorUnit> for i64 {
    fn from(amount: MinorUnit) -> i64 {
        amount.0
    }
}

impl fmt::Display for MinorUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lifecycle of an order. Two states are live (they still have an order actor and a deadline
/// in the index): `pending`, and `stuck`, which waits for an operator or a later successful
/// retry. `paid`, `closed`, `paid_after_close` and `refunded` are final (a paid order still
/// takes refunds, and becomes `refunded` once its payment is refunded in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "paid")]
    Paid,
    #[sea_orm(string_value = "closed")]
    Closed,
    #[sea_orm(string_value = "paid_after_close")]
    PaidAfterClose,
    #[sea_orm(string_value = "stuck")]
    Stuck,
    /// The order's payment was refunded in full.
    #[sea_orm(string_value = "refunded")]
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::PaidAfterClose => "paid_after_close",
            OrderStatus::Stuck => "stuck",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// The statuses of a live order: it can still change without an operator, and it has (or
    /// may get) an actor. The one definition of "live"; every other is read from it.
    pub const LIVE: [OrderStatus; 2] = [OrderStatus::Pending, OrderStatus::Stuck];

    /// Whether the order is live ([`OrderStatus::LIVE`]).
    pub fn is_live(self) -> bool {
        Self::LIVE.contains(&self)
    }

    /// Whether the order's payment can be refunded (what is left of it).
    pub fn is_refundable(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PaidAfterClose)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(OrderStatus::Pending),
            "paid" => Ok(OrderStatus::Paid),
            "closed" => Ok(OrderStatus::Closed),
            "paid_after_close" => Ok(OrderStatus::PaidAfterClose),
            "stuck" => Ok(OrderStatus::Stuck),
            "refunded" => Ok(OrderStatus::Refunded),
            other => Err(format!(
                "unknown order status '{other}'; expected pending, paid, closed, paid_after_close, stuck or refunded"
            )),
        }
    }
}

/// Lifecycle of one payment attempt (one provider trade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "closed")]
    Closed,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// The provider reports the trade paid with another amount than the attempt's: money was
    /// taken, but it does not pay the order. Out of the open set (never queried again); the
    /// order waits for an operator (force-close, or accept this payment).
    #[sea_orm(string_value = "amount_mismatch")]
    AmountMismatch,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Pending => "pending",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Closed => "closed",
            AttemptStatus::Failed => "failed",
            AttemptStatus::AmountMismatch => "amount_mismatch",
        }
    }
}

impl fmt::Display for AttemptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle of one refund: `pending` until the provider gives a final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Committed here; the provider has not confirmed it yet (or has not been asked yet).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The provider confirmed the money went back.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// The provider refused it or gave up on it: no money went back; its amount is free again.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the first request with an idempotency key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyStatus {
    /// Running on some node (its lease in `locked_until`); a retry is told to wait.
    #[sea_orm(string_value = "in_flight")]
    InFlight,
    /// Finished; its response is stored and replayed.
    #[sea_orm(string_value = "completed")]
    Completed,
}

/// Payment providers paywarden can start an attempt at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[sea_orm(string_value = "sandbox")]
    Sandbox,
    #[sea_orm(string_value = "wechat")]
    Wechat,
    #[sea_orm(string_value = "alipay")]
    Alipay,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Wechat => "wechat",
            Provider::Alipay => "alipay",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sandbox" => Ok(Provider::Sandbox),
            "wechat" => Ok(Provider::Wechat),
            "alipay" => Ok(Provider::Alipay),
            other => Err(format!(
                "unknown provider '{other}'; expected sandbox, wechat or alipay"
            )),
        }
    }
}

/// ISO 4217 currencies paywarden accepts, all with two minor-unit digits except JPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(3))")]
pub enum Currency {
    #[sea_orm(string_value = "CNY")]
    #[serde(rename = "CNY")]
    Cny,
    #[sea_orm(string_value = "HKD")]
    #[serde(rename = "HKD")]
    Hkd,
    #[sea_orm(string_value = "USD")]
    #[serde(rename = "USD")]
    Usd,
    #[sea_orm(string_value = "EUR")]
    #[serde(rename = "EUR")]
    Eur,
    #[sea_orm(string_value = "GBP")]
    #[serde(rename = "GBP")]
    Gbp,
    #[sea_orm(string_value = "JPY")]
    #[serde(rename = "JPY")]
    Jpy,
    #[sea_orm(string_value = "SGD")]
    #[serde(rename = "SGD")]
    Sgd,
}

impl Currency {
    /// Digits of the minor unit: an amount of 1999 is 19.99 CNY but 1999 JPY (ISO 4217).
    pub fn minor_digits(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            Currency::Cny | Currency::Hkd | Currency::Usd | Currency::Eur | Currency::Gbp | Currency::Sgd => 2,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Hkd => "HKD",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Jpy => "JPY",
            Currency::Sgd => "SGD",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = String;

    /// Upper-case ISO codes only: `cny` is refused like any unknown code.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "CNY" => Ok(Currency::Cny),
            "HKD" => Ok(Currency::Hkd),
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            "GBP" => Ok(Currency::Gbp),
            "JPY" => Ok(Currency::Jpy),
            "SGD" => Ok(Currency::Sgd),
            other => Err(format!(
                "currency '{other}' is not supported; expected one of CNY, HKD, USD, EUR, GBP, JPY, SGD"
            )),
        }
    }
}

/// State of one outbox event's delivery to one subscriber: `pending` until acknowledged
/// (`delivered`) or out of retries (`dead`, listed for admins and redeliverable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "dead")]
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "dead" => Ok(DeliveryStatus::Dead),
            other => Err(format!(
                "unknown delivery status '{other}'; expected pending, delivered or dead"
            )),
        }
    }
}

/// How a subscriber receives events: a signed HTTP webhook, or the AMQP sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum SubscriberKind {
    #[sea_orm(string_value = "webhook")]
    Webhook,
    #[sea_orm(string_value = "amqp")]
    Amqp,
}

impl SubscriberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberKind::Webhook => "webhook",
            SubscriberKind::Amqp => "amqp",
        }
    }
}

impl fmt::Display for SubscriberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriberKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(SubscriberKind::Webhook),
            "amqp" => Ok(SubscriberKind::Amqp),
            other => Err(format!("unknown subscriber kind '{other}'; expected webhook or amqp")),
        }
    }
}

/// How a webhook subscriber's deliveries are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum SignatureScheme {
    /// Standard Webhooks v1: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key
    /// being the base64 part of a `whsec_` secret. The default for new subscribers.
    #[sea_orm(string_value = "standard-webhooks-v1")]
    #[serde(rename = "standard-webhooks-v1")]
    StandardWebhooksV1,
    /// paywarden's first scheme: `Paywarden-Event-Id`, `Paywarden-Timestamp` and
    /// `Paywarden-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`, kept for the
    /// receivers built on it.
    #[sea_orm(string_value = "paywarden-v1")]
    #[serde(rename = "paywarden-v1")]
    PaywardenV1,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::StandardWebhooksV1 => "standard-webhooks-v1",
            SignatureScheme::PaywardenV1 => "paywarden-v1",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureScheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard-webhooks-v1" => Ok(SignatureScheme::StandardWebhooksV1),
            "paywarden-v1" => Ok(SignatureScheme::PaywardenV1),
            other => Err(format!(
                "unknown signature scheme '{other}'; expected standard-webhooks-v1 or paywarden-v1"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;

    #[test]
    fn ids_travel_as_decimal_strings() {
        let id = OrderId(7_301_234_567_890_123_456);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"7301234567890123456\"");
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
    }

    #[test]
    fn non_positive_or_garbage_ids_are_rejected() {
        for bad in ["0", "-5", "abc", "", "99999999999999999999"] {
            assert!(bad.parse::<PayNo>().is_err(), "'{bad}' parsed as an id");
        }
    }

    #[test]
    fn money_arithmetic_reports_overflow() {
        assert_eq!(MinorUnit(i64::MAX).checked_add(MinorUnit(1)), None);
        assert_eq!(MinorUnit(i64::MAX / 2 + 1).checked_mul(2), None);
        assert_eq!(MinorUnit(250).checked_mul(3), Some(MinorUnit(750)));
    }

    #[test]
    fn ids_are_positive_only() {
        assert_eq!(OrderId::new(1).map(OrderId::get), Ok(1));
        assert_eq!(PayNo::try_from(i64::MAX).map(i64::from), Ok(i64::MAX));
        for bad in [0, -1, i64::MIN] {
            let err = OrderId::new(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("order id must be a positive integer, got {bad}")
            );
            assert!(PayNo::try_from(bad).is_err(), "{bad} became a pay_no");
        }
        assert_eq!(
            "abc".parse::<OrderId>().unwrap_err().to_string(),
            "order id must be a positive decimal integer"
        );
        assert!(<OrderId as TryFromU64>::try_from_u64(0).is_err());
        assert!(<OrderId as TryFromU64>::try_from_u64(u64::MAX).is_err());
        assert_eq!(<PayNo as TryFromU64>::try_from_u64(42).map(PayNo::get), Ok(42));
    }

    #[test]
    fn deserialising_an_id_refuses_a_non_positive_one() {
        for bad in ["\"0\"", "\"-7\"", "\"x\"", "7"] {
            assert!(serde_json::from_str::<PayNo>(bad).is_err(), "{bad} became a pay_no");
        }
        let id = PayNo::new(42).unwrap();
        assert_eq!(
            serde_json::from_str::<PayNo>(&serde_json::to_string(&id).unwrap()).unwrap(),
            id
        );
    }

    #[test]
    fn negative_money_is_refused() {
        assert_eq!(MinorUnit::new(0), Ok(MinorUnit::ZERO));
        assert_eq!(MinorUnit::new(1999).map(MinorUnit::get), Ok(1999));
        let err = MinorUnit::new(-5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "amount must be a non-negative number of minor units, got -5"
        );
        assert!(MinorUnit::try_from(i64::MIN).is_err());
        assert_eq!(MinorUnit::default(), MinorUnit::ZERO);
    }

    #[test]
    fn money_arithmetic_never_goes_negative() {
        let amount = MinorUnit::new(250).unwrap();
        assert_eq!(amount.checked_mul(-1), None);
        assert_eq!(amount.checked_mul(i64::MIN), None);
        assert_eq!(amount.checked_mul(0), Some(MinorUnit::ZERO));
        assert_eq!(MinorUnit::ZERO.checked_mul(-3), None);
        assert_eq!(amount.checked_add(MinorUnit::ZERO), Some(amount));
    }

    #[test]
    fn money_travels_as_a_json_integer_and_a_negative_one_is_refused() {
        let amount = MinorUnit::new(1999).unwrap();
        let json = serde_json::to_string(&amount).unwrap();
        assert_eq!(json, "1999");
        assert_eq!(serde_json::from_str::<MinorUnit>(&json).unwrap(), amount);
        let err = serde_json::from_str::<MinorUnit>("-1").unwrap_err();
        assert!(err.to_string().contains("non-negative"), "{err}");
        assert!(serde_json::from_str::<MinorUnit>("\"1999\"").is_err());
    }

    #[test]
    fn currency_codes_round_trip_and_unknown_ones_are_refused() {
        for currency in Currency::iter() {
            assert_eq!(currency.code().parse::<Currency>(), Ok(currency));
            assert_eq!(currency.to_value(), currency.code());
            assert_eq!(serde_json::to_value(currency).unwrap(), currency.code());
        }
        assert_eq!(
            "cny".parse::<Currency>().unwrap_err(),
            "currency 'cny' is not supported; expected one of CNY, HKD, USD, EUR, GBP, JPY, SGD"
        );
    }

    #[test]
    fn delivery_statuses_and_subscriber_kinds_keep_their_stored_strings() {
        for status in DeliveryStatus::iter() {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
            assert_eq!(status.to_value(), status.as_str());
        }
        assert!("bogus".parse::<DeliveryStatus>().is_err());
        for kind in SubscriberKind::iter() {
            assert_eq!(kind.as_str().parse::<SubscriberKind>(), Ok(kind));
            assert_eq!(kind.to_value(), kind.as_str());
        }
        assert!("smtp".parse::<SubscriberKind>().is_err());
    }
}
