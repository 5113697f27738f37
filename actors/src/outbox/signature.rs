//! Signatures of the webhooks paywarden sends downstream, in two schemes chosen per subscriber
//! ([`SignatureScheme`]).
//!
//! **Standard Webhooks v1** (the default): headers `webhook-id` (the event id, the same on
//! every attempt: deduplicate on it), `webhook-timestamp` (unix seconds of this attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The secret is
//! `whsec_<base64 of the key>`; during a secret rotation the header carries one signature per
//! live secret, separated by spaces, and a receiver accepts the request when any of them
//! matches. Any Standard Webhooks library verifies it.
//!
//! **paywarden-v1** (the first scheme, kept for the receivers built on it):
//! `Paywarden-Event-Id`, `Paywarden-Timestamp` and
//! `Paywarden-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`, the secret's bytes
//! being the key; during a rotation several `v1=` values, separated by commas.
//!
//! Either way a receiver recomputes the HMAC over the raw body, compares in constant time, and
//! refuses timestamps too far from its clock so a captured request cannot be replayed later.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use entities::SignatureScheme;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const EVENT_ID_HEADER: &str = "Paywarden-Event-Id";
pub const TIMESTAMP_HEADER: &str = "Paywarden-Timestamp";
pub const SIGNATURE_HEADER: &str = "Paywarden-Signature";

/// Standard Webhooks' headers.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Key bytes of a generated secret (the spec asks for 24 to 64).
const GENERATED_KEY_BYTES: usize = 32;
/// The key lengths a given Standard Webhooks secret may have.
pub const KEY_BYTES_MIN: usize = 24;
pub const KEY_BYTES_MAX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Standard base64, padding optional: secrets made by other tools often leave it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn hmac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length; the fallback cannot happen and would never verify.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    for part in parts {
        mac.update(part);
    }
    mac
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    hmac_of(secret.as_bytes(), &[timestamp.to_string().as_bytes(), b".", body])
}

/// The HMAC key of a Standard Webhooks secret `whsec_<base64>`.
///
/// # Errors
/// The secret lacks the prefix, is not base64, or its key is not 24 to 64 bytes (the message
/// says which, and never repeats the secret).
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("secret must start with '{SECRET_PREFIX}'"))?;
    let key = BASE64
        .decode(encoded)
        .map_err(|_| format!("secret must be '{SECRET_PREFIX}' followed by base64"))?;
    if !(KEY_BYTES_MIN..=KEY_BYTES_MAX).contains(&key.len()) {
        return Err(format!(
            "secret's key must be {KEY_BYTES_MIN} to {KEY_BYTES_MAX} bytes once base64-decoded"
        ));
    }
    Ok(key)
}

/// A new Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes. Receivers of
/// either scheme can use it (paywarden-v1 keys with the whole string).
pub fn generate_secret() -> String {
    let mut key = [0_u8; GENERATED_KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// One Standard Webhooks signature, `v1,<base64>`.
///
/// # Errors
/// The secret is not a Standard Webhooks secret ([`standard_key`]).
pub fn sign_standard(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = standard_key(secret)?;
    let mac = hmac_of(
        &key,
        &[msg_id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body],
    );
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The headers that sign one attempt of a delivery, with every live secret (current first).
///
/// # Errors
/// A secret does not fit the scheme (a Standard Webhooks subscriber whose secret is not
/// `whsec_<base64>`): nothing can be signed.
pub fn signed_headers(
    scheme: SignatureScheme,
    secrets: &[&str],
    event_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, String> {
    match scheme {
        SignatureScheme::StandardWebhooksV1 => {
            let signatures = secrets
                .iter()
                .map(|secret| sign_standard(secret, event_id, timestamp, body))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![
                (WEBHOOK_ID_HEADER, event_id.to_owned()),
                (WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string()),
                (WEBHOOK_SIGNATURE_HEADER, signatures.join(" ")),
            ])
        }
        SignatureScheme::PaywardenV1 => {
            let signatures: Vec<String> = secrets.iter().map(|secret| sign(secret, timestamp, body)).collect();
            Ok(vec![
                (EVENT_ID_HEADER, event_id.to_owned()),
                (TIMESTAMP_HEADER, timestamp.to_string()),
                (SIGNATURE_HEADER, signatures.join(",")),
            ])
        }
    }
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
    // During a rotation there is one `v1=` per live secret: any of them may match.
    let candidates: Vec<Vec<u8>> = signature_header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .map(hex::decode)
        .collect::<Result<_, _>>()
        .map_err(|_| SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if !candidates
        .iter()
        .any(|expected| mac(secret, timestamp, body).verify_slice(expected).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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

    #[test]
    fn during_a_rotation_each_paywarden_secret_verifies_alone() {
        let body = br#"{"type":"order.paid"}"#;
        let headers = signed_headers(
            SignatureScheme::PaywardenV1,
            &["whsec_new_secret_01", "whsec_old_secret_01"],
            "evt",
            1_700_000_000,
            body,
        )
        .unwrap();
        let signature = &headers[2].1;
        for secret in ["whsec_new_secret_01", "whsec_old_secret_01"] {
            assert_eq!(
                verify(secret, "1700000000", signature, body, 1_700_000_000, 300),
                Ok(())
            );
        }
        assert_eq!(
            verify("whsec_other_secret", "1700000000", signature, body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    /// The example of the Standard Webhooks specification's reference libraries: this secret,
    /// id, timestamp and body sign to this value.
    #[test]
    fn a_standard_signature_matches_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signature = sign_standard(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_standard_secret_must_be_whsec_and_base64_of_24_to_64_bytes() {
        let generated = generate_secret();
        assert!(generated.starts_with("whsec_"));
        assert_eq!(standard_key(&generated).unwrap().len(), 32);
        assert_ne!(generate_secret(), generated);
        let short = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7_u8; 23]));
        let long = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7_u8; 65]));
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            short.as_str(),
            long.as_str(),
        ] {
            let refused = standard_key(bad).unwrap_err();
            assert!(!refused.contains(bad), "{refused}");
        }
    }
}
