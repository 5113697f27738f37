//! Alipay OpenAPI `RSA2` as pure functions: the sign-content rules, request signing,
//! notification verification (rsaCheckV1 / V2), and extraction of the signed text of a
//! synchronous response. Checked against `tests/vectors/alipay_*.json`.
//!
//! `RSA2` is SHA256withRSA (PKCS#1 v1.5), the algorithm WeChat uses, so the key types and the
//! sign / verify primitives are WeChat's, re-exported.

use std::collections::BTreeMap;

pub use crate::gateway::wechat::crypto::{KeyError, RsaSigningKey, RsaVerifyingKey, SignatureError};

/// Keys left out of a request's sign content.
pub const REQUEST_EXCLUDED: &[&str] = &["sign"];
/// Keys left out for payment notifications (rsaCheckV1): `sign_type` is not signed there,
/// although it is in requests.
pub const NOTIFY_V1_EXCLUDED: &[&str] = &["sign", "sign_type"];
/// Keys left out for gateway messages such as `servicemarket_order_notify` (rsaCheckV2).
pub const NOTIFY_V2_EXCLUDED: &[&str] = &["sign"];

/// Java's `StringUtils.isEmpty` as the Alipay SDK defines it: empty or every character
/// `Character.isWhitespace`. That is ASCII whitespace, the separators U+001C..U+001F and the
/// Unicode space separators except the no-break ones; not U+0085, which Rust's
/// `char::is_whitespace` would count. Values are never trimmed otherwise.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}')
            || (c.is_whitespace() && !matches!(c, '\u{85}' | '\u{A0}' | '\u{2007}' | '\u{202F}'))
    })
}

/// The sign content: the parameters minus `excluded` and minus blank values, sorted by key
/// in byte (ASCII) order, joined as `k=v&...` with the raw values (not URL-encoded).
///
/// A key given twice keeps its last value; callers that receive parameters from outside
/// reject duplicates before they get here.
pub fn sign_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, excluded: &[&str]) -> String {
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(key, value)| !excluded.contains(key) && !is_blank(value))
        .collect();
    let mut content = String::new();
    for (index, (key, value)) in sorted.into_iter().enumerate() {
        if index > 0 {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// Signs request parameters (`sign` excluded, `sign_type` included) encoded as UTF-8, the
/// only charset paywarden sends.
///
/// # Errors
/// [`SignatureError::Signing`] if the RSA operation fails.
pub fn sign_request<'a>(
    key: &RsaSigningKey,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, SignatureError> {
    key.sign(sign_content(params, REQUEST_EXCLUDED).as_bytes())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlipayVerifyError {
    #[error("parameter {0} appears more than once")]
    DuplicateParam(String),
    #[error("no sign parameter")]
    MissingSign,
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Finds the one `sign` among form parameters, refusing duplicates of any key: with two
/// values for one key, what we verify and what we act on could differ.
///
/// # Errors
/// [`AlipayVerifyError::DuplicateParam`] or [`AlipayVerifyError::MissingSign`].
pub fn find_sign(params: &[(String, String)]) -> Result<&str, AlipayVerifyError> {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in params {
        if !seen.insert(key.as_str()) {
            return Err(AlipayVerifyError::DuplicateParam(key.clone()));
        }
    }
    params
        .iter()
        .find(|(key, _)| key == "sign")
        .map(|(_, value)| value.as_str())
        .ok_or(AlipayVerifyError::MissingSign)
}

/// Verifies form parameters (already decoded exactly once) with the Alipay public key,
/// leaving out `excluded` ([`NOTIFY_V1_EXCLUDED`] for payment notifications).
///
/// # Errors
/// [`AlipayVerifyError`] for a duplicate key, no `sign`, or a signature that does not match.
pub fn verify_params(
    key: &RsaVerifyingKey,
    params: &[(String, String)],
    excluded: &[&str],
) -> Result<(), AlipayVerifyError> {
    let sign = find_sign(params)?;
    let content = sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), excluded);
    key.verify(content.as_bytes(), sign)?;
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error("response is not a JSON object (at byte {0})")]
    Syntax(usize),
    #[error("response has neither {0} nor error_response")]
    MissingNode(String),
    #[error("response has {0} more than once")]
    Duplicate(String),
    #[error("response node {0} is not an object (encrypted responses are not supported)")]
    NotAnObject(String),
}

/// The signed part of a synchronous response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlipayResponseContent<'a> {
    /// `<method>_response` or `error_response`.
    pub node: String,
    /// The node's value exactly as received, `{` to the matching `}`; this is what the sign
    /// covers, so it is never re-serialized (Alipay escapes `/` as `\/`).
    pub content: &'a str,
    /// The top-level `sign`, JSON-unescaped; `None` when absent (some gateway errors).
    pub sign: Option<String>,
}

/// The response node name for an API method: `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_node(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// Extracts the signed content from a raw response body.
///
/// Reads the top-level members with a small JSON scanner (strings with escapes, nested
/// objects and arrays), so neither `sign` coming first nor a `"sign"` key inside the node
/// confuses it, unlike the "substring up to the last `\"sign\"`" shortcut of some SDKs. The
/// method's node is preferred; `error_response` is the fallback. A node that appears twice is
/// refused, as the official SDK does, since a parser could read the other copy.
///
/// # Errors
/// [`ExtractError`] for a body that is not one JSON object, or lacks / repeats the node.
pub fn extract_response<'a>(raw: &'a str, method: &str) -> Result<AlipayResponseContent<'a>, ExtractError> {
    let wanted = response_node(method);
    let members = top_level_members(raw)?;
    let pick = |name: &str| -> Result<Option<&'a str>, ExtractError> {
        let mut found = members.iter().filter(|(key, _)| key == name).map(|(_, value)| *value);
        let first = found.next();
        if found.next().is_some() {
            return Err(ExtractError::Duplicate(name.to_owned()));
        }
        Ok(first)
    };
    let (node, content) = match pick(&wanted)? {
        Some(content) => (wanted.clone(), content),
        None => match pick("error_response")? {
            Some(content) => ("error_response".to_owned(), content),
            None => return Err(ExtractError::MissingNode(wanted)),
        },
    };
    if !content.starts_with('{') {
        return Err(ExtractError::NotAnObject(node));
    }
    let sign = match pick("sign")? {
        Some(raw_sign) => Some(serde_json::from_str::<String>(raw_sign).map_err(|_| ExtractError::Syntax(0))?),
        None => None,
    };
    Ok(AlipayResponseContent { node, content, sign })
}

/// The members of a top-level JSON object: decoded key, raw value text.
fn top_level_members(raw: &str) -> Result<Vec<(String, &str)>, ExtractError> {
    let mut scanner = Scanner { text: raw, pos: 0 };
    let mut members = Vec::new();
    scanner.skip_ws();
    scanner.expect(b'{')?;
    scanner.skip_ws();
    if scanner.peek() == Some(b'}') {
        scanner.pos += 1;
    } else {
        loop {
            scanner.skip_ws();
            let key_raw = scanner.string()?;
            let key: String = serde_json::from_str(key_raw).map_err(|_| ExtractError::Syntax(scanner.pos))?;
            scanner.skip_ws();
            scanner.expect(b':')?;
            scanner.skip_ws();
            let value = scanner.value()?;
            members.push((key, value));
            scanner.skip_ws();
            match scanner.peek() {
                Some(b',') => scanner.pos += 1,
                Some(b'}') => {
                    scanner.pos += 1;
                    break;
                }
                _ => return Err(ExtractError::Syntax(scanner.pos)),
            }
        }
    }
    scanner.skip_ws();
    if scanner.pos != raw.len() {
        return Err(ExtractError::Syntax(scanner.pos));
    }
    Ok(members)
}

/// A cursor over JSON text that returns raw slices. Positions only ever stop on ASCII bytes
/// (structural characters and quotes), so every slice boundary is a char boundary.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ExtractError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ExtractError::Syntax(self.pos))
        }
    }

    fn slice(&self, start: usize) -> Result<&'a str, ExtractError> {
        self.text.get(start..self.pos).ok_or(ExtractError::Syntax(start))
    }

    /// A string, quotes included; a backslash always takes the next byte with it.
    fn string(&mut self) -> Result<&'a str, ExtractError> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err(ExtractError::Syntax(self.pos)),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return self.slice(start);
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Any value: a string, a balanced object / array (strings inside skipped), or a scalar.
    fn value(&mut self) -> Result<&'a str, ExtractError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut depth: usize = 0;
                loop {
                    match self.peek() {
                        None => return Err(ExtractError::Syntax(self.pos)),
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth = depth.checked_sub(1).ok_or(ExtractError::Syntax(self.pos))?;
                            if depth == 0 {
                                self.pos += 1;
                                return self.slice(start);
                            }
                        }
                        Some(_) => {}
                    }
                    self.pos += 1;
                }
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(ExtractError::Syntax(start));
                }
                self.slice(start)
            }
            None => Err(ExtractError::Syntax(start)),
        }
    }
}

/// Verifies an extracted response with the Alipay public key.
///
/// # Errors
/// [`SignatureError`] when there is no sign or it does not match.
pub fn verify_response(key: &RsaVerifyingKey, response: &AlipayResponseContent<'_>) -> Result<(), SignatureError> {
    let sign = response.sign.as_deref().ok_or(SignatureError::Encoding)?;
    key.verify(response.content.as_bytes(), sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_follows_java_is_whitespace() {
        for (value, blank) in [
            ("", true),
            ("  ", true),
            ("\t\r\n", true),
            ("\u{3000}", true),
            ("\u{A0}", false),
            ("\u{85}", false),
            (" a ", false),
        ] {
            assert_eq!(is_blank(value), blank, "{value:?}");
        }
    }

    #[test]
    fn extraction_rejects_malformed_bodies() {
        for (raw, what) in [
            ("", "empty"),
            ("[]", "array"),
            (r#"{"alipay_trade_query_response":{"code":"10000""#, "truncated"),
            (r#"{"alipay_trade_query_response":{}} trailing"#, "trailing text"),
            (r#"{"other":{}}"#, "no node"),
            (r#"{"alipay_trade_query_response":"b64=="}"#, "encrypted"),
        ] {
            assert!(
                extract_response(raw, "alipay.trade.query").is_err(),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn braces_inside_strings_do_not_end_the_node() {
        let raw = r#"{"alipay_trade_query_response":{"msg":"a}b{\"c","n":[1,{"x":"]"}]},"sign":"c2ln"}"#;
        let got = extract_response(raw, "alipay.trade.query").unwrap();
        assert_eq!(got.content, r#"{"msg":"a}b{\"c","n":[1,{"x":"]"}]}"#);
        assert_eq!(got.sign.as_deref(), Some("c2ln"));
    }
}
