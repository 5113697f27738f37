//! Secrets at rest: provider account secrets are sealed with AES-256-GCM under the deployment's
//! master key before they reach the database, and opened only to build a gateway.
//!
//! A sealed value names the key that sealed it (`pwv1.<key id>.<nonce>.<ciphertext>`, base64url
//! without padding), so a node can read values sealed under a previous master key while
//! `paywarden secrets rotate` re-seals every row under the current one. The key id is derived
//! from the key (the first 8 bytes of a SHA-256 over a label and the key, in hex): nothing to
//! configure beside the keys, and it reveals nothing usable about them. Each value is bound to
//! the row that holds it (the associated data, e.g. the account id), so a ciphertext copied
//! into another row does not open there.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};

const VERSION: &str = "pwv1";
const NONCE_BYTES: usize = 12;

/// Why a value did not seal or open, or a key did not load.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{setting}: must be the base64 of exactly 32 random bytes")]
    BadKey { setting: String },
    #[error("not a sealed value")]
    Malformed,
    #[error(
        "sealed under master key {key_id}, which is neither secrets.master_key nor one of secrets.previous_master_keys"
    )]
    UnknownKey { key_id: String },
    #[error("does not open under master key {key_id} (a wrong key of the same id, or the value was altered)")]
    Undecryptable { key_id: String },
    #[error("the sealed value is not text")]
    NotText,
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    fn parse(setting: &str, encoded: &SecretString) -> Result<Self, VaultError> {
        let bad = || VaultError::BadKey {
            setting: setting.to_owned(),
        };
        let bytes = SecretSlice::from(STANDARD.decode(encoded.expose_secret().trim()).map_err(|_| bad())?);
        let key: [u8; 32] = bytes.expose_secret().try_into().map_err(|_| bad())?;
        let mut id = Sha256::new();
        id.update(b"paywarden master key id\0");
        id.update(key);
        Ok(Self {
            id: hex::encode(&id.finalize()[..8]),
            cipher: Aes256Gcm::new(&key.into()),
        })
    }
}

/// The master key that seals, and the previous ones that still open.
pub struct Vault {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("current", &self.current.id)
            .field("previous", &self.previous.iter().map(|key| &key.id).collect::<Vec<_>>())
            .finish()
    }
}

impl Vault {
    /// A vault sealing under `current` and opening under it and `previous`.
    ///
    /// # Errors
    /// A key that is not the base64 of 32 bytes (the setting is named, the value never).
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Result<Self, VaultError> {
        let current = MasterKey::parse("secrets.master_key", current)?;
        let previous = previous
            .iter()
            .enumerate()
            .map(|(i, key)| MasterKey::parse(&format!("secrets.previous_master_keys[{i}]"), key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { current, previous })
    }

    /// A new random master key, base64 (what `secrets.master_key` takes).
    pub fn generate_key() -> SecretString {
        let mut key = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        SecretString::from(STANDARD.encode(key))
    }

    /// The id of the key values are sealed under now.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// `plaintext` sealed under the current key, bound to `context` (the row's id).
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let mut nonce = [0_u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only past AES-GCM's length limit (64 GiB), far beyond any secret.
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        format!(
            "{VERSION}.{}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ciphertext)
        )
    }

    /// The key id a sealed value names.
    ///
    /// # Errors
    /// Not a sealed value.
    pub fn key_id_of(sealed: &str) -> Result<&str, VaultError> {
        let mut parts = sealed.split('.');
        match (parts.next(), parts.next()) {
            (Some(VERSION), Some(id)) => Ok(id),
            _ => Err(VaultError::Malformed),
        }
    }

    /// The plaintext of `sealed`, which must have been sealed for `context`.
    ///
    /// # Errors
    /// Malformed, sealed under a key this vault lacks, or not opening (wrong key, altered value,
    /// another row's value).
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, VaultError> {
        let parts: Vec<&str> = sealed.split('.').collect();
        let [VERSION, key_id, nonce, ciphertext] = parts[..] else {
            return Err(VaultError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == key_id)
            .ok_or_else(|| VaultError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| VaultError::Malformed)?;
        let ciphertext = URL_SAFE_NO_PAD.decode(ciphertext).map_err(|_| VaultError::Malformed)?;
        if nonce.len() != NONCE_BYTES {
            return Err(VaultError::Malformed);
        }
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Undecryptable {
                key_id: key_id.to_owned(),
            })?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| VaultError::NotText)
    }

    /// Whether `sealed` is under the current key already (rotation skips it).
    pub fn is_current(&self, sealed: &str) -> bool {
        Self::key_id_of(sealed).is_ok_and(|id| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> (Vault, SecretString) {
        let key = Vault::generate_key();
        (Vault::new(&key, &[]).unwrap(), key)
    }

    #[test]
    fn a_sealed_secret_opens_for_its_row_only_and_shows_nothing_of_itself() {
        let (vault, key) = vault();
        let sealed = vault.seal("-----BEGIN PRIVATE KEY-----abc", "acct_1");
        assert!(!sealed.contains("PRIVATE"), "{sealed}");
        assert!(sealed.starts_with(&format!("pwv1.{}.", vault.current_key_id())));
        assert_eq!(
            vault.open(&sealed, "acct_1").unwrap().expose_secret(),
            "-----BEGIN PRIVATE KEY-----abc"
        );
        assert!(matches!(
            vault.open(&sealed, "acct_2"),
            Err(VaultError::Undecryptable { .. })
        ));
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(vault.seal("x", "a"), vault.seal("x", "a"));
        let shown = format!("{vault:?}");
        assert!(!shown.contains(key.expose_secret()), "{shown}");
        assert!(shown.contains(vault.current_key_id()), "{shown}");
    }

    #[test]
    fn an_altered_value_or_another_key_does_not_open() {
        let (vault, _) = vault();
        let sealed = vault.seal("secret", "row");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(vault.open(&altered, "row").is_err());
        let (other, _) = self::vault();
        assert!(matches!(other.open(&sealed, "row"), Err(VaultError::UnknownKey { .. })));
        assert!(matches!(vault.open("plain text", "row"), Err(VaultError::Malformed)));
    }

    #[test]
    fn a_previous_key_opens_what_it_sealed_until_rotation_reseals_under_the_current() {
        let (old, old_key) = vault();
        let sealed = old.seal("apiv3", "row");
        let new = Vault::new(&Vault::generate_key(), &[old_key]).unwrap();
        assert!(!new.is_current(&sealed));
        let plain = new.open(&sealed, "row").unwrap();
        let resealed = new.seal(plain.expose_secret(), "row");
        assert!(new.is_current(&resealed));
        assert_eq!(new.open(&resealed, "row").unwrap().expose_secret(), "apiv3");
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64_and_its_value_is_never_told() {
        for bad in ["", "not base64!", &STANDARD.encode([7_u8; 16])] {
            let err = Vault::new(&SecretString::from(bad.to_owned()), &[])
                .unwrap_err()
                .to_string();
            assert_eq!(err, "secrets.master_key: must be the base64 of exactly 32 random bytes");
        }
        let good = Vault::generate_key();
        let err = Vault::new(&good, &[SecretString::from("short".to_owned())])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("secrets.previous_master_keys[0]"), "{err}");
    }
}
