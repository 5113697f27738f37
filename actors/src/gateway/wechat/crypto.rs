//! WeChat Pay API v3 cryptography as pure functions: request signing, response and
//! notification verification, `AEAD_AES_256_GCM` resource decryption. No I/O and no clock of
//! their own (the caller passes `now`), so every function can be checked against the recorded
//! vectors in `tests/vectors/wechat_v3_*.json`.
//!
//! The RSA key handling here (PEM / bare base64, PKCS#8 / PKCS#1 / SPKI / X.509) and
//! SHA256withRSA are shared with Alipay, whose `RSA2` is the same algorithm; `alipay::crypto`
//! re-exports them rather than keep a second copy.
//!
//! # Message formats
//! - request: `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` (every line LF-terminated, so an
//!   empty body ends in `\n\n`, and a body that ends in LF still gets one more);
//! - response and notification: `TIMESTAMP\nNONCE\nBODY\n`, where the body is the raw bytes as
//!   received (a 204 gives `ts\nnonce\n\n`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::Rng;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use secrecy::{ExposeSecret, SecretString};
use x509_cert::der::{Decode, Encode};

/// The scheme of the `Authorization` header; the algorithm name is part of it.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// A signed timestamp this far from now (either direction) is refused as a replay. The Go SDK
/// rejects at `>= 5 min`, and so do we: 299 s passes, 300 s does not.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// Response and notification header names, lower-cased (HTTP header names are
/// case-insensitive; `NotificationRequest` keeps them lower-cased).
pub const HEADER_TIMESTAMP: &str = "wechatpay-timestamp";
pub const HEADER_NONCE: &str = "wechatpay-nonce";
pub const HEADER_SIGNATURE: &str = "wechatpay-signature";
pub const HEADER_SERIAL: &str = "wechatpay-serial";

/// The APIv3 key is 32 ASCII characters used as raw key bytes (AES-256).
pub const APIV3_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is neither PEM nor bare base64")]
    Encoding,
    #[error(
        "unsupported PEM label '{0}'; expected PRIVATE KEY, RSA PRIVATE KEY, PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE"
    )]
    Label(String),
    #[error("key is not an RSA key in PKCS#8, PKCS#1, SPKI or X.509 form")]
    Der,
    #[error("the APIv3 key must be {APIV3_KEY_LEN} bytes, got {0}")]
    ApiV3KeyLength(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature is not valid base64")]
    Encoding,
    #[error("signature does not match")]
    Mismatch,
    #[error("signing failed")]
    Signing,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WechatVerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("no platform key with serial {0}")]
    UnknownSerial(String),
    #[error("timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("timestamp is {skew_seconds} s away from now; less than {TIMESTAMP_TOLERANCE_SECONDS} s allowed")]
    StaleTimestamp { skew_seconds: i64 },
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("ciphertext is not valid base64")]
    Encoding,
    #[error("nonce must be 12 (or 16) bytes, got {0}")]
    NonceLength(usize),
    #[error("ciphertext failed authentication (wrong key, nonce, associated data or tampered)")]
    Authentication,
}

/// A PEM document or a bare base64 DER blob, unwrapped.
///
/// Hand-rolled rather than `pem-rfc7468` because keys arrive in shapes that strict parser
/// refuses: single-line PEM bodies (Alipay's console), CRLF line ends, and no armor at all.
struct Unarmored {
    label: Option<String>,
    der: Vec<u8>,
}

fn unarmor(text: &str) -> Result<Unarmored, KeyError> {
    let text = text.trim();
    let (label, body) = match text.strip_prefix("-----BEGIN ") {
        Some(rest) => {
            let (label, rest) = rest.split_once("-----").ok_or(KeyError::Encoding)?;
            let end = format!("-----END {label}-----");
            let (body, _) = rest.split_once(end.as_str()).ok_or(KeyError::Encoding)?;
            (Some(label.to_owned()), body)
        }
        None => (None, text),
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(compact).map_err(|_| KeyError::Encoding)?;
    Ok(Unarmored { label, der })
}

/// A merchant (or, in the simulator, a platform) private key ready to sign SHA256withRSA.
///
/// Signing uses `ring`, whose RSA private-key operation is constant-time and blinded; the `rsa`
/// crate's is not (RUSTSEC-2023-0071, the Marvin timing attack, no fixed release), and a
/// provider request is signed on every call, so its timing is observable. Verification
/// ([`RsaVerifyingKey`]) stays on `rsa`: it uses the provider's public key only, which that
/// advisory does not concern.
///
/// `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct RsaSigningKey {
    key: Arc<ring::rsa::KeyPair>,
    public: RsaPublicKey,
}

impl fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaSigningKey(***)")
    }
}

impl RsaSigningKey {
    /// Parses a private key: PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1), wrapped
    /// or on one line, or bare base64 DER of either. The key must be 2048 to 8192 bits (what
    /// `ring` signs with; WeChat Pay and Alipay issue 2048-bit keys).
    ///
    /// # Errors
    /// [`KeyError`] when the text is not one of those forms; the error never quotes the key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let Unarmored { label, der } = unarmor(text)?;
        let key = match label.as_deref() {
            Some("PRIVATE KEY") => ring::rsa::KeyPair::from_pkcs8(&der).map_err(|_| KeyError::Der)?,
            Some("RSA PRIVATE KEY") => ring::rsa::KeyPair::from_der(&der).map_err(|_| KeyError::Der)?,
            Some(other) => return Err(KeyError::Label(other.to_owned())),
            None => ring::rsa::KeyPair::from_pkcs8(&der)
                .or_else(|_| ring::rsa::KeyPair::from_der(&der))
                .map_err(|_| KeyError::Der)?,
        };
        // `ring` gives the public key as PKCS#1 `RSAPublicKey` DER.
        let public = RsaPublicKey::from_pkcs1_der(key.public().as_ref()).map_err(|_| KeyError::Der)?;
        Ok(Self {
            key: Arc::new(key),
            public,
        })
    }

    pub fn verifying_key(&self) -> RsaVerifyingKey {
        RsaVerifyingKey::from_public_key(self.public.clone())
    }

    /// Whether `public` is this key's public half.
    pub fn is_key_of(&self, public: &RsaPublicKey) -> bool {
        &self.public == public
    }

    /// SHA-256 of the public half as SPKI DER, lower-case hex: names the key (as the
    /// provider, which holds the public half, can) without showing anything secret.
    pub fn public_key_fingerprint(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        let der = self
            .public
            .to_public_key_der()
            .map(|der| der.as_bytes().to_vec())
            .unwrap_or_default();
        hex::encode(<Sha256 as rsa::sha2::Digest>::digest(&der))
    }

    /// SHA256withRSA (PKCS#1 v1.5) over `message`, base64 without line breaks. PKCS#1 v1.5 is
    /// deterministic, so the same key and message always give the same signature, which is
    /// what lets the vectors pin it (the random source only blinds the computation).
    ///
    /// CPU work (about a millisecond for 2048 bits): callers on an async path run it in
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`SignatureError::Signing`] if the RSA operation fails.
    pub fn sign(&self, message: &[u8]) -> Result<String, SignatureError> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignatureError::Signing)?;
        Ok(STANDARD.encode(signature))
    }
}

/// A public key that checks SHA256withRSA signatures.
#[derive(Clone, Debug)]
pub struct RsaVerifyingKey {
    key: VerifyingKey<Sha256>,
}

impl RsaVerifyingKey {
    /// Parses a public key: PEM `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) or `CERTIFICATE`
    /// (X.509, the key is taken from it; validity dates and chain are not checked here), or
    /// bare base64 DER of an SPKI or PKCS#1 key (how Alipay's console shows its key).
    ///
    /// # Errors
    /// [`KeyError`] when the text is none of those.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let Unarmored { label, der } = unarmor(text)?;
        let key = match label.as_deref() {
            Some("PUBLIC KEY") => RsaPublicKey::from_public_key_der(&der).map_err(|_| KeyError::Der)?,
            Some("RSA PUBLIC KEY") => RsaPublicKey::from_pkcs1_der(&der).map_err(|_| KeyError::Der)?,
            Some("CERTIFICATE") => public_key_of_certificate(&der)?,
            Some(other) => return Err(KeyError::Label(other.to_owned())),
            None => RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .map_err(|_| KeyError::Der)?,
        };
        Ok(Self::from_public_key(key))
    }

    pub fn from_public_key(key: RsaPublicKey) -> Self {
        Self {
            key: VerifyingKey::new(key),
        }
    }

    /// Checks a base64 SHA256withRSA signature over `message`.
    ///
    /// # Errors
    /// [`SignatureError::Encoding`] for text that is not base64, [`SignatureError::Mismatch`]
    /// for anything else that fails, including WeChat's `WECHATPAY/SIGNTEST/` probes, which
    /// are deliberately invalid and get no special case.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), SignatureError> {
        let raw = STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| SignatureError::Encoding)?;
        let signature = Signature::try_from(raw.as_slice()).map_err(|_| SignatureError::Mismatch)?;
        self.key
            .verify(message, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

fn public_key_of_certificate(der: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let certificate = x509_cert::Certificate::from_der(der).map_err(|_| KeyError::Der)?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| KeyError::Der)?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|_| KeyError::Der)
}

/// The public key of an X.509 certificate in PEM.
///
/// # Errors
/// [`KeyError`] when the text is not a PEM certificate of an RSA key.
pub fn certificate_public_key(pem: &str) -> Result<RsaPublicKey, KeyError> {
    let Unarmored { label, der } = unarmor(pem)?;
    if label.as_deref() != Some("CERTIFICATE") {
        return Err(KeyError::Label(label.unwrap_or_default()));
    }
    public_key_of_certificate(&der)
}

/// The serial number of an X.509 certificate in PEM, as WeChat prints it in `Wechatpay-Serial`
/// (upper-case hex, without the sign byte DER adds when the top bit is set).
///
/// # Errors
/// [`KeyError`] when the text is not a PEM certificate.
pub fn certificate_serial(pem: &str) -> Result<String, KeyError> {
    let Unarmored { label, der } = unarmor(pem)?;
    if label.as_deref() != Some("CERTIFICATE") {
        return Err(KeyError::Label(label.unwrap_or_default()));
    }
    let certificate = x509_cert::Certificate::from_der(&der).map_err(|_| KeyError::Der)?;
    let bytes = certificate.tbs_certificate.serial_number.as_bytes();
    let significant = bytes
        .iter()
        .position(|byte| *byte != 0)
        .map_or(&bytes[bytes.len()..], |first| &bytes[first..]);
    Ok(hex::encode_upper(significant))
}

/// The WeChat Pay platform keys by serial (`Wechatpay-Serial`): during a certificate rotation,
/// or the move from platform certificates to `PUB_KEY_ID_…` public keys, two are live at once.
#[derive(Clone, Debug, Default)]
pub struct WechatPlatformKeys {
    by_serial: HashMap<String, RsaVerifyingKey>,
}

impl WechatPlatformKeys {
    pub fn insert(&mut self, serial: impl Into<String>, key: RsaVerifyingKey) {
        self.by_serial.insert(serial.into(), key);
    }

    /// Adds a key from PEM. `serial` may be left out for a certificate, whose own serial is
    /// then used; a bare public key needs one.
    ///
    /// # Errors
    /// [`KeyError`] when the PEM does not parse, or a public key comes without a serial.
    pub fn insert_pem(&mut self, serial: Option<&str>, pem: &str) -> Result<String, KeyError> {
        let key = RsaVerifyingKey::from_pem(pem)?;
        let serial = match serial {
            Some(serial) => serial.to_owned(),
            None => certificate_serial(pem)?,
        };
        self.by_serial.insert(serial.clone(), key);
        Ok(serial)
    }

    pub fn get(&self, serial: &str) -> Option<&RsaVerifyingKey> {
        self.by_serial.get(serial)
    }

    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }
}

/// The APIv3 key: 32 ASCII characters, used as raw AES-256 key bytes (never hex- or
/// base64-decoded). `Debug` is masked.
#[derive(Clone)]
pub struct WechatApiV3Key(SecretString);

impl fmt::Debug for WechatApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WechatApiV3Key(***)")
    }
}

impl WechatApiV3Key {
    /// # Errors
    /// [`KeyError::ApiV3KeyLength`] unless the key is exactly 32 bytes. The Go SDK's own tests
    /// use 16-byte keys (silently AES-128); `AEAD_AES_256_GCM` does not allow that.
    pub fn parse(key: SecretString) -> Result<Self, KeyError> {
        let len = key.expose_secret().len();
        if len != APIV3_KEY_LEN {
            return Err(KeyError::ApiV3KeyLength(len));
        }
        Ok(Self(key))
    }

    fn cipher12(&self) -> AesGcm<Aes256, U12> {
        AesGcm::<Aes256, U12>::new(GenericArray::from_slice(self.0.expose_secret().as_bytes()))
    }

    fn cipher16(&self) -> AesGcm<Aes256, U16> {
        AesGcm::<Aes256, U16>::new(GenericArray::from_slice(self.0.expose_secret().as_bytes()))
    }
}

/// Decrypts a notification `resource` (or a `/v3/certificates` entry): AES-256-GCM with the
/// APIv3 key, IV = the UTF-8 bytes of `nonce`, AAD = the UTF-8 bytes of `associated_data`
/// (may be empty), input = base64 of ciphertext followed by the 16-byte tag.
///
/// WeChat's nonces are 12 characters. A 16-byte nonce is accepted too (GCM defines it, through
/// GHASH); any other length is refused.
///
/// # Errors
/// [`DecryptError`] for bad base64, a nonce of another length, or a failed tag check.
pub fn decrypt_resource(
    key: &WechatApiV3Key,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, DecryptError> {
    let ciphertext = STANDARD.decode(ciphertext_b64).map_err(|_| DecryptError::Encoding)?;
    let payload = Payload {
        msg: &ciphertext,
        aad: associated_data.as_bytes(),
    };
    let nonce = nonce.as_bytes();
    let plain = match nonce.len() {
        12 => key.cipher12().decrypt(GenericArray::from_slice(nonce), payload),
        16 => key.cipher16().decrypt(GenericArray::from_slice(nonce), payload),
        other => return Err(DecryptError::NonceLength(other)),
    };
    plain.map_err(|_| DecryptError::Authentication)
}

/// The inverse of [`decrypt_resource`], for the simulator: returns base64(ciphertext || tag).
///
/// # Errors
/// [`DecryptError::NonceLength`] for a nonce other than 12 or 16 bytes.
pub fn encrypt_resource(
    key: &WechatApiV3Key,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, DecryptError> {
    let payload = Payload {
        msg: plaintext,
        aad: associated_data.as_bytes(),
    };
    let nonce = nonce.as_bytes();
    let sealed = match nonce.len() {
        12 => key.cipher12().encrypt(GenericArray::from_slice(nonce), payload),
        16 => key.cipher16().encrypt(GenericArray::from_slice(nonce), payload),
        other => return Err(DecryptError::NonceLength(other)),
    };
    sealed
        .map(|bytes| STANDARD.encode(bytes))
        .map_err(|_| DecryptError::Authentication)
}

/// The request signing message. `canonical_url` is the path plus `?` and the raw query exactly
/// as sent; `body` the exact bytes sent (empty for GET).
pub fn request_message(method: &str, canonical_url: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The `Authorization` header value, fields in the order of the official example (WeChat
/// accepts any order).
pub fn authorization(mchid: &str, nonce: &str, signature: &str, timestamp: i64, serial_no: &str) -> String {
    format!(
        "{AUTH_SCHEME} mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// The fields of a parsed `Authorization` header (the simulator checks merchants with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WechatAuthorization {
    pub mchid: String,
    pub nonce: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

/// Parses `WECHATPAY2-SHA256-RSA2048 k="v",...` in any field order; `None` when the scheme
/// differs or a field is missing.
pub fn parse_authorization(header: &str) -> Option<WechatAuthorization> {
    let fields = header.strip_prefix(AUTH_SCHEME)?.strip_prefix(' ')?;
    let mut parsed: HashMap<&str, &str> = HashMap::new();
    for field in fields.split(',') {
        let (name, value) = field.trim().split_once('=')?;
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        parsed.insert(name, value);
    }
    let mut take = |name: &str| parsed.remove(name).map(str::to_owned);
    Some(WechatAuthorization {
        mchid: take("mchid")?,
        nonce: take("nonce_str")?,
        signature: take("signature")?,
        timestamp: take("timestamp")?,
        serial_no: take("serial_no")?,
    })
}

/// The response / notification verification message.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The four signature headers of a response or notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WechatSignatureHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

impl WechatSignatureHeaders {
    /// Collects the headers through `lookup`, which is given lower-case names.
    ///
    /// # Errors
    /// [`WechatVerifyError::MissingHeader`] naming the first one absent.
    pub fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<Self, WechatVerifyError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(str::to_owned)
                .ok_or(WechatVerifyError::MissingHeader(name))
        };
        Ok(Self {
            timestamp: get(HEADER_TIMESTAMP)?,
            nonce: get(HEADER_NONCE)?,
            signature: get(HEADER_SIGNATURE)?,
            serial: get(HEADER_SERIAL)?,
        })
    }
}

/// Refuses a signed timestamp `TIMESTAMP_TOLERANCE_SECONDS` or more away from `now`, in either
/// direction.
///
/// # Errors
/// [`WechatVerifyError::BadTimestamp`] or [`WechatVerifyError::StaleTimestamp`].
pub fn check_timestamp(timestamp: &str, now: DateTime<Utc>) -> Result<(), WechatVerifyError> {
    let signed: i64 = timestamp.trim().parse().map_err(|_| WechatVerifyError::BadTimestamp)?;
    let skew_seconds = now.timestamp().saturating_sub(signed).saturating_abs();
    if skew_seconds >= TIMESTAMP_TOLERANCE_SECONDS {
        return Err(WechatVerifyError::StaleTimestamp { skew_seconds });
    }
    Ok(())
}

/// Verifies a response or notification: the key chosen by `Wechatpay-Serial`, the timestamp
/// window, then the signature over the raw body. The timestamp goes first, as in the Go SDK:
/// a replay is refused without spending an RSA operation on it.
///
/// # Errors
/// [`WechatVerifyError`] saying which check failed.
pub fn verify_signed(
    keys: &WechatPlatformKeys,
    headers: &WechatSignatureHeaders,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), WechatVerifyError> {
    let key = keys
        .get(&headers.serial)
        .ok_or_else(|| WechatVerifyError::UnknownSerial(headers.serial.clone()))?;
    check_timestamp(&headers.timestamp, now)?;
    let message = response_message(&headers.timestamp, &headers.nonce, body);
    key.verify(&message, &headers.signature)?;
    Ok(())
}

/// 32 random upper-case hex characters, as the SDKs use for `nonce_str`.
pub fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode_upper(bytes)
}

/// 12 random alphanumeric characters: the shape of WeChat's notification `resource.nonce`.
pub fn new_resource_nonce() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(12)
        .map(char::from)
        .collect()
}
