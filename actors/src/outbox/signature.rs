//! Signatures of the webhooks paywarden sends downstream.
//!
//! Headers: `Paywarden-Event-Id` (dedupe key), `Paywarden-Timestamp` (unix seconds) and
//! `Paywarden-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`. A receiver
//! recomputes the HMAC over the raw body, compares in constant time, and refuses timestamps
//! too far from its clock so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const EVENT_ID_HEADER: &str = "Paywarden-Event-Id";
pub const TIMESTAMP_HEADER: &str = "Paywarden-Timestamp";
pub const SIGNATURE_HEADER: &str = "Paywarden-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; the fallback cannot happen and would never verify.
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Paywarden-Signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed signature or timestamp header")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the tolerance; possible replay")]
    Stale,
}

/// What a receiver does: checks the signature, then the timestamp against `now`.
///
/// # Errors
/// Which check failed.
pub fn verify(
    secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let timestamp: i64 = timestamp_header.trim().parse().map_err(|_| SignatureError::Malformed)?;
    let hex_signature = signature_header
        .split(',')
        .find_map(|part| part.trim().strip_prefix("v1="))
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_signature).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)?;
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_tampering_or_replay_is_caught() {
        let body = br#"{"type":"order.paid"}"#;
        let signature = sign("whsec_1", 1_700_000_000, body);
        assert_eq!(
            verify("whsec_1", "1700000000", &signature, body, 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify("whsec_1", "1700000000", &signature, b"{}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_2", "1700000000", &signature, body, 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_1", "1700000000", &signature, body, 1_700_009_999, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("whsec_1", "x", &signature, body, 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
