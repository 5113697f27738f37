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

macro_rules! snowflake_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            /// Parses the decimal form; only positive ids exist.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let value: i64 = s.parse()?;
                if value <= 0 {
                    // Reuse the integer parser's error for "not a valid id".
                    return "-".parse::<i64>().map(Self);
                }
                Ok(Self(value))
            }
        }

        impl TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, DbErr> {
                i64::try_from(n)
                    .map(Self)
                    .map_err(|_| DbErr::ConvertFromU64(stringify!($name)))
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
    OrderId
);
snowflake_id!(
    /// Primary key of `payment_attempts`, and the `out_trade_no` the provider sees.
    PayNo
);

/// An amount of money in the currency's minor unit (fen, cents). Never a float.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, DeriveValueType, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MinorUnit(pub i64);

impl MinorUnit {
    pub const ZERO: MinorUnit = MinorUnit(0);

    pub fn checked_add(self, other: MinorUnit) -> Option<MinorUnit> {
        self.0.checked_add(other.0).map(MinorUnit)
    }

    pub fn checked_mul(self, factor: i64) -> Option<MinorUnit> {
        self.0.checked_mul(factor).map(MinorUnit)
    }
}

impl fmt::Display for MinorUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lifecycle of an order. Two states are live (they still have an order actor and a deadline
/// in the index): `pending`, and `stuck`, which waits for an operator or a later successful
/// retry. `paid`, `closed` and `paid_after_close` are final.
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
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::PaidAfterClose => "paid_after_close",
            OrderStatus::Stuck => "stuck",
        }
    }

    /// Whether the order can still change without an operator.
    pub fn is_live(self) -> bool {
        match self {
            OrderStatus::Pending | OrderStatus::Stuck => true,
            OrderStatus::Paid | OrderStatus::Closed | OrderStatus::PaidAfterClose => false,
        }
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
            other => Err(format!(
                "unknown order status '{other}'; expected pending, paid, closed, paid_after_close or stuck"
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
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Pending => "pending",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Closed => "closed",
            AttemptStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for AttemptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
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
}
