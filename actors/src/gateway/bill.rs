//! A provider's daily trade bill, as paywarden reads it: one row per payment and per refund,
//! amounts exactly in minor units. Each provider's file format is parsed in its own module
//! (`wechat::bill`, `alipay::bill`); reconciliation compares these rows with paywarden's own.

use chrono::{DateTime, NaiveDateTime, Utc};
use entities::MinorUnit;
use serde::{Deserialize, Serialize};

/// One row of a trade bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BillRow {
    /// A payment settled that day.
    Payment {
        out_trade_no: String,
        provider_txn_id: String,
        amount: MinorUnit,
        /// When it was paid, as the bill says (China time in the file).
        paid_at: Option<DateTime<Utc>>,
    },
    /// A refund accepted that day (WeChat lists it on the day it was accepted, with the status
    /// it had when the bill was made).
    Refund {
        out_trade_no: String,
        out_refund_no: String,
        provider_refund_id: Option<String>,
        amount: MinorUnit,
        /// As the bill writes it (`SUCCESS`, `PROCESSING`; empty when the provider gives none).
        status: String,
    },
}

/// The answer to "give me the bill of that day".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillFetch {
    /// The provider has not published it yet (WeChat `STATEMENT_CREATING`, Alipay
    /// `isp.bill_not_exist`): ask again later.
    NotReady,
    /// The day's rows (none for a day without trades).
    Rows(Vec<BillRow>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BillError {
    #[error("the bill has no header row with the column {0}")]
    MissingColumn(&'static str),
    #[error("bill line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("the bill file is not readable: {0}")]
    Unreadable(String),
    #[error("the bill's SHA-1 {actual} is not the announced {expected}")]
    Digest { expected: String, actual: String },
}

/// Parses a yuan amount as bills write it (`12.34`, `0.01`, `-5.00` for an Alipay refund, a
/// `¥` or spaces around it); the sign is returned apart, the amount exactly in fen.
///
/// # Errors
/// A message naming the text.
pub fn parse_yuan(text: &str) -> Result<(bool, MinorUnit), String> {
    let text = text.trim().trim_start_matches('¥');
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Two decimals at most (`0.60%` rates and 5-decimal fees are never read as money here).
    super::alipay::transformers::AlipayAmount::parse(digits)
        .map(|amount| (negative, amount.minor()))
        .map_err(|err| err.to_string())
}

/// Reads a bill's `YYYY-MM-DD HH:MM:SS` (China time).
pub fn parse_china_time(text: &str) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    local
        .and_local_timezone(super::wechat::transformers::china_offset())
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// The columns of a header row, by name: where each of `wanted` is.
pub(crate) fn columns<const N: usize>(header: &[&str], wanted: [&'static str; N]) -> Result<[usize; N], BillError> {
    let mut found = [0; N];
    for (slot, name) in found.iter_mut().zip(wanted) {
        *slot = header
            .iter()
            .position(|column| column.trim() == name)
            .ok_or(BillError::MissingColumn(name))?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn yuan_amounts_are_read_exactly_with_their_sign_apart() {
        let fen = |n| MinorUnit::new(n).unwrap();
        assert_eq!(parse_yuan("0.01"), Ok((false, fen(1))));
        assert_eq!(parse_yuan(" 29.99\t"), Ok((false, fen(2999))));
        assert_eq!(parse_yuan("-29.99"), Ok((true, fen(2999))));
        assert_eq!(parse_yuan("1000"), Ok((false, fen(100_000))));
        assert!(
            parse_yuan("0.01000").is_err(),
            "a fee's five decimals are not money here"
        );
        assert!(parse_yuan("1e3").is_err());
        assert!(parse_yuan("").is_err());
    }
}
