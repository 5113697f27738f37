//! Custom headers a webhook subscriber asks to receive with every delivery (a tenant tag, a
//! routing key for the receiver's gateway).
//!
//! Bounded, and kept off the headers that carry meaning for HTTP or for paywarden: framing and
//! connection headers (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, ...) would
//! let a subscriber smuggle a second request or confuse a proxy; the signature headers
//! (`webhook-*`, `Paywarden-*`) are paywarden's word; credentials (`Authorization`, `Cookie`,
//! `Proxy-Authorization`) would be stored and listed in clear, so a receiver authenticates
//! paywarden by the signature instead (as with `user:password@` in a URL); and origin headers
//! (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) would let a subscriber pose as another client
//! to the receiver's proxy.

use std::collections::BTreeMap;

use crate::domain::ValidationError;

/// Headers a subscriber may add.
pub const HEADERS_MAX: usize = 10;
/// Longest header name.
pub const NAME_MAX_BYTES: usize = 64;
/// Longest header value.
pub const VALUE_MAX_BYTES: usize = 512;
/// All names and values together.
pub const TOTAL_MAX_BYTES: usize = 2048;

/// Refused names, lowercase.
const FORBIDDEN: [&str; 20] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "cookie",
    "set-cookie",
    "forwarded",
    "x-real-ip",
    "user-agent",
];

/// Refused name prefixes, lowercase.
const FORBIDDEN_PREFIXES: [&str; 4] = ["webhook-", "paywarden-", "x-forwarded-", "proxy-"];

/// A subscriber's custom headers, checked: the only way to build one is [`CustomHeaders::parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomHeaders(BTreeMap<String, String>);

fn refuse(message: impl Into<String>) -> ValidationError {
    ValidationError::new("invalid_headers", message)
}

/// A token of RFC 9110: the characters a header name may hold.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl CustomHeaders {
    /// # Errors
    /// `invalid_headers`, naming the header and the rule (never echoing a value).
    pub fn parse(headers: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if headers.len() > HEADERS_MAX {
            return Err(refuse(format!("at most {HEADERS_MAX} headers")));
        }
        let mut checked = BTreeMap::new();
        let mut total = 0_usize;
        for (name, value) in headers {
            if name.is_empty() || name.len() > NAME_MAX_BYTES || !name.chars().all(is_token_char) {
                return Err(refuse(format!(
                    "a header name must be 1 to {NAME_MAX_BYTES} letters, digits or !#$%&'*+-.^_`|~"
                )));
            }
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN.contains(&lower.as_str()) || FORBIDDEN_PREFIXES.iter().any(|p| lower.starts_with(p)) {
                return Err(refuse(format!(
                    "header '{name}' may not be set: framing, connection, credential, origin and signature headers are paywarden's"
                )));
            }
            if value.len() > VALUE_MAX_BYTES
                || value.trim() != value
                || !value.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
            {
                return Err(refuse(format!(
                    "the value of '{name}' must be at most {VALUE_MAX_BYTES} printable ASCII characters, without leading or trailing spaces"
                )));
            }
            if checked.keys().any(|known: &String| known.eq_ignore_ascii_case(&name)) {
                return Err(refuse(format!("header '{name}' is given twice")));
            }
            total = total.saturating_add(name.len()).saturating_add(value.len());
            checked.insert(name, value);
        }
        if total > TOTAL_MAX_BYTES {
            return Err(refuse(format!(
                "the headers together must be at most {TOTAL_MAX_BYTES} bytes"
            )));
        }
        Ok(Self(checked))
    }

    /// Stored as a JSON object; `None` when there is none.
    pub fn to_column(&self) -> Option<String> {
        if self.0.is_empty() {
            None
        } else {
            serde_json::to_string(&self.0).ok()
        }
    }

    /// What [`Self::to_column`] stored (a row written by this code: nothing to refuse).
    pub fn from_column(column: Option<&str>) -> BTreeMap<String, String> {
        column
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn one(name: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn forbidden_long_and_malformed_headers_are_refused() {
        for (name, value, case) in [
            ("Host", "evil.example", "Host"),
            ("content-length", "0", "Content-Length"),
            ("Transfer-Encoding", "chunked", "framing"),
            ("webhook-id", "x", "a signature header"),
            ("Webhook-Signature", "v1,x", "a signature header, any case"),
            ("Paywarden-Signature", "v1=x", "the old signature header"),
            ("Authorization", "Bearer abc", "credentials"),
            ("Cookie", "a=b", "credentials"),
            ("X-Forwarded-For", "1.2.3.4", "origin"),
            ("Proxy-Foo", "x", "proxy"),
            ("X Tenant", "acme", "a space in the name"),
            ("", "acme", "an empty name"),
            ("X-Tenant", "a\r\nHost: evil", "a line break in the value"),
            ("X-Tenant", " acme", "leading space"),
            ("X-Tenant", "caf\u{e9}", "not ASCII"),
        ] {
            assert!(CustomHeaders::parse(one(name, value)).is_err(), "{case}");
        }
        let long_value = "v".repeat(VALUE_MAX_BYTES + 1);
        assert!(CustomHeaders::parse(one("X-Tenant", &long_value)).is_err());
        let many: BTreeMap<String, String> = (0..=HEADERS_MAX).map(|i| (format!("X-H{i}"), "v".to_owned())).collect();
        assert!(CustomHeaders::parse(many).is_err());
        let big: BTreeMap<String, String> = (0..5).map(|i| (format!("X-H{i}"), "v".repeat(500))).collect();
        assert!(CustomHeaders::parse(big).is_err(), "over the total");
        let twice = BTreeMap::from([("X-A".to_owned(), "1".to_owned()), ("x-a".to_owned(), "2".to_owned())]);
        assert!(CustomHeaders::parse(twice).is_err());
    }

    #[test]
    fn accepted_headers_round_trip_through_their_column() {
        let headers = CustomHeaders::parse(BTreeMap::from([
            ("X-Tenant".to_owned(), "acme".to_owned()),
            ("X-Route".to_owned(), "eu-1 primary".to_owned()),
        ]))
        .unwrap();
        let column = headers.to_column();
        assert_eq!(CustomHeaders::from_column(column.as_deref()).len(), 2);
        assert_eq!(CustomHeaders::default().to_column(), None);
        assert!(CustomHeaders::from_column(None).is_empty());
    }
}
