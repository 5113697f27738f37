//! A provider's daily trade bill, as paywarden reads it: one row per payment and per refund,
//! amounts exactly in minor units. Each provider's file format is parsed in its own module
//! (`wechat::bill`, `alipay::bill`); reconciliation compares these rows with paywarden's own.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use entities::MinorUnit;
use serde::{Deserialize, Serialize};

use super::GatewayError;

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
    /// The file contradicts itself or what was asked for (another account, another day, rows
    /// that do not add up to its own totals): nothing of it can be trusted.
    #[error("the bill does not check out: {0}")]
    Inconsistent(String),
    #[error("the bill is larger than {limit} bytes{what}")]
    TooLarge { limit: u64, what: &'static str },
}

/// What a bill must say about itself to be read at all.
#[derive(Clone, Copy, Debug)]
pub struct BillExpectation<'a> {
    /// The day asked for (China time).
    pub date: NaiveDate,
    /// The merchant account it must be of (WeChat `mchid`; Alipay the seller's PID), when the
    /// configuration names one.
    pub account: Option<&'a str>,
}

/// The largest bill file paywarden downloads (the archive as sent, or WeChat's CSV).
pub const MAX_BILL_BYTES: u64 = 128 * 1024 * 1024;
/// The most an Alipay bill archive may hold once unzipped, all its files together.
pub const MAX_UNZIPPED_BILL_BYTES: u64 = 512 * 1024 * 1024;

/// Limit of one bill fetch (apply, download, parse), and of the download request itself: a
/// day's file can be large, far beyond an API call's timeout.
pub const BILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Reads a bill download's body, refusing more than `limit` bytes (announced or streamed).
///
/// # Errors
/// [`BillError::TooLarge`] (as a [`GatewayError::BadBill`]) beyond the limit; a transport
/// error while reading.
pub(crate) async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, GatewayError> {
    let too_large = || GatewayError::BadBill(BillError::TooLarge { limit, what: "" }.to_string());
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(GatewayError::from_transport)? {
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Where an Alipay bill archive may be fetched from: an `https` address, or the configured
/// gateway's own scheme, host and port (the simulator's plain `http` on a loopback address);
/// a plain `http` address elsewhere (Alipay documents `http://dwbillcenter.alipay.com/...`) is
/// fetched over `https` instead, so the unsigned file never travels in clear text.
///
/// # Errors
/// A message when the address is not an absolute `http(s)` URL.
pub fn bill_download_url(url: &str, gateway_url: &str) -> Result<url::Url, String> {
    let mut parsed = url::Url::parse(url).map_err(|err| format!("the bill address does not parse: {err}"))?;
    let gateway = url::Url::parse(gateway_url).ok();
    let same_origin = gateway.is_some_and(|gateway| gateway.origin() == parsed.origin());
    match parsed.scheme() {
        "https" => Ok(parsed),
        _ if same_origin => Ok(parsed),
        "http" => {
            parsed
                .set_scheme("https")
                .map_err(|()| "the bill address cannot be fetched over https".to_owned())?;
            if parsed.port() == Some(80) {
                parsed
                    .set_port(None)
                    .map_err(|()| "the bill address cannot be fetched over https".to_owned())?;
            }
            Ok(parsed)
        }
        other => Err(format!("the bill address uses {other}, not https")),
    }
}

/// Sums amounts exactly, refusing an overflow.
pub(crate) fn add_fen(total: i64, amount: i64) -> Result<i64, BillError> {
    total
        .checked_add(amount)
        .ok_or_else(|| BillError::Inconsistent("the bill's amounts overflow".into()))
}

/// A signed yuan amount in fen (`-0.04` is -4).
pub(crate) fn signed_fen(text: &str) -> Result<i64, String> {
    let (negative, amount) = parse_yuan(text)?;
    Ok(if negative { -amount.get() } else { amount.get() })
}

/// Writes fen as yuan with two decimals, sign kept, for messages.
pub(crate) fn yuan_text(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
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

    #[test]
    fn a_bill_is_fetched_over_https_or_from_the_gateways_own_origin_only() {
        let gateway = "https://openapi.alipay.com/gateway.do";
        let fetched = |url: &str, gateway: &str| bill_download_url(url, gateway).map(|url| url.to_string());
        assert_eq!(
            fetched("https://dwbillcenter.alipay.com/downloadBillFile.resource?x=1", gateway).unwrap(),
            "https://dwbillcenter.alipay.com/downloadBillFile.resource?x=1"
        );
        // Documented as plain http: fetched over https.
        assert_eq!(
            fetched("http://dwbillcenter.alipay.com/downloadBillFile.resource?x=1", gateway).unwrap(),
            "https://dwbillcenter.alipay.com/downloadBillFile.resource?x=1"
        );
        // The simulator: plain http on the gateway's own origin, as it is.
        let sim = "http://127.0.0.1:4100/gateway.do";
        assert_eq!(
            fetched("http://127.0.0.1:4100/sim/alipay/bill-files/t", sim).unwrap(),
            "http://127.0.0.1:4100/sim/alipay/bill-files/t"
        );
        // Another port of the same host is another origin: not in clear text.
        assert_eq!(
            fetched("http://127.0.0.1:4200/file", sim).unwrap(),
            "https://127.0.0.1:4200/file"
        );
        assert!(fetched("ftp://example.com/bill.zip", gateway).is_err());
        assert!(fetched("file:///etc/passwd", gateway).is_err());
        assert!(fetched("not a url", gateway).is_err());
    }
}
