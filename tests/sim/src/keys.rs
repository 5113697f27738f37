//! Key material for local use: a merchant and a platform RSA-2048 key pair plus a WeChat
//! APIv3 key, written as PEM files readable by the owner only.
//!
//! The merchant pair is what paywarden signs with (WeChat merchant key, Alipay app key); the
//! platform pair is what the simulator signs its answers and notifications with (the WeChat
//! platform key, the "Alipay public key"). `paywarden-sim keys --dir DIR` writes them;
//! `paywarden-sim --keys-dir DIR` and the gateway settings read them. Generated keys are
//! local test material and never belong in the repository.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use secrecy::{ExposeSecret, SecretString};

pub const MERCHANT_PRIVATE_KEY_FILE: &str = "merchant_private_key.pem";
pub const MERCHANT_PUBLIC_KEY_FILE: &str = "merchant_public_key.pem";
pub const PLATFORM_PRIVATE_KEY_FILE: &str = "platform_private_key.pem";
pub const PLATFORM_PUBLIC_KEY_FILE: &str = "platform_public_key.pem";
pub const APIV3_KEY_FILE: &str = "apiv3_key.txt";

const RSA_BITS: usize = 2048;
const APIV3_KEY_LEN: usize = 32;

/// The two key pairs and the APIv3 key, in the text forms the settings take. Private parts
/// are `SecretString`, so `Debug` masks them.
#[derive(Clone, Debug)]
pub struct KeyMaterial {
    /// PKCS#8 PEM: what paywarden signs requests with.
    pub merchant_private_key_pem: SecretString,
    pub merchant_public_key_pem: String,
    /// PKCS#8 PEM: what the simulator signs responses and notifications with.
    pub platform_private_key_pem: SecretString,
    pub platform_public_key_pem: String,
    /// 32 ASCII letters and digits.
    pub apiv3_key: SecretString,
}

impl KeyMaterial {
    /// Generates fresh keys. Two RSA-2048 key generations: about a second each in an
    /// optimised build, several in a debug one.
    ///
    /// # Errors
    /// When key generation or PEM encoding fails.
    pub fn generate() -> anyhow::Result<Self> {
        let (merchant_private_key_pem, merchant_public_key_pem) = generate_pair().context("merchant key pair")?;
        let (platform_private_key_pem, platform_public_key_pem) = generate_pair().context("platform key pair")?;
        let apiv3_key: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(APIV3_KEY_LEN)
            .map(char::from)
            .collect();
        Ok(Self {
            merchant_private_key_pem,
            merchant_public_key_pem,
            platform_private_key_pem,
            platform_public_key_pem,
            apiv3_key: SecretString::from(apiv3_key),
        })
    }

    /// Reads what [`write_keys`] wrote.
    ///
    /// # Errors
    /// When a file is missing or unreadable.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))
        };
        Ok(Self {
            merchant_private_key_pem: SecretString::from(read(MERCHANT_PRIVATE_KEY_FILE)?),
            merchant_public_key_pem: read(MERCHANT_PUBLIC_KEY_FILE)?,
            platform_private_key_pem: SecretString::from(read(PLATFORM_PRIVATE_KEY_FILE)?),
            platform_public_key_pem: read(PLATFORM_PUBLIC_KEY_FILE)?,
            apiv3_key: SecretString::from(read(APIV3_KEY_FILE)?.trim().to_owned()),
        })
    }
}

fn generate_pair() -> anyhow::Result<(SecretString, String)> {
    let private = RsaPrivateKey::new(&mut rand::thread_rng(), RSA_BITS).context("failed to generate an RSA key")?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .context("failed to encode a private key")?;
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("failed to encode a public key")?;
    Ok((SecretString::from(private_pem.to_string()), public_pem))
}

/// Generates keys into `dir` (created if needed), each file mode 0600. Refuses to overwrite
/// an existing file: replacing a key silently would break whatever was configured with it.
///
/// # Errors
/// When a file already exists or cannot be written.
pub fn write_keys(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let files = [
        MERCHANT_PRIVATE_KEY_FILE,
        MERCHANT_PUBLIC_KEY_FILE,
        PLATFORM_PRIVATE_KEY_FILE,
        PLATFORM_PUBLIC_KEY_FILE,
        APIV3_KEY_FILE,
    ];
    if let Some(existing) = files.iter().map(|name| dir.join(name)).find(|path| path.exists()) {
        anyhow::bail!(
            "{} already exists; remove it or choose another directory",
            existing.display()
        );
    }
    let keys = KeyMaterial::generate()?;
    let contents = [
        keys.merchant_private_key_pem.expose_secret().to_owned(),
        keys.merchant_public_key_pem.clone(),
        keys.platform_private_key_pem.expose_secret().to_owned(),
        keys.platform_public_key_pem.clone(),
        format!("{}\n", keys.apiv3_key.expose_secret()),
    ];
    let mut written = Vec::new();
    for (name, content) in files.iter().zip(contents) {
        let path = dir.join(name);
        write_private(&path, content.as_bytes())?;
        written.push(path);
    }
    tracing::info!(dir = %dir.display(), "key material written");
    Ok(written)
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(content)
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::gateway::wechat::crypto::{RsaSigningKey, RsaVerifyingKey, WechatApiV3Key};

    #[test]
    fn written_keys_are_private_usable_and_never_overwritten() {
        // Arrange
        let dir = std::env::temp_dir().join(format!("paywarden-keys-{}", uuid::Uuid::new_v4().simple()));

        // Act
        let written = write_keys(&dir).unwrap();
        let keys = KeyMaterial::read(&dir).unwrap();

        // Assert
        assert_eq!(written.len(), 5);
        #[cfg(unix)]
        for path in &written {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        for (private, public) in [
            (&keys.merchant_private_key_pem, &keys.merchant_public_key_pem),
            (&keys.platform_private_key_pem, &keys.platform_public_key_pem),
        ] {
            let signature = RsaSigningKey::from_pem(private.expose_secret())
                .unwrap()
                .sign(b"probe")
                .unwrap();
            RsaVerifyingKey::from_pem(public)
                .unwrap()
                .verify(b"probe", &signature)
                .unwrap();
        }
        WechatApiV3Key::parse(keys.apiv3_key.clone()).unwrap();
        assert!(write_keys(&dir).is_err(), "existing keys were overwritten");
        assert!(
            !format!("{keys:?}").contains("PRIVATE KEY"),
            "Debug leaks a private key"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
