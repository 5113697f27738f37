//! A provider's configuration section, `[providers.<name>]`: its settings type lives in the
//! provider's folder and implements [`ProviderSection`]: whether it is on, its call budget,
//! its own checks, its secrets (for the key-hygiene rules), and how its gateway is built.
//! [`super::registry::ProviderSettings`] holds one section per registered provider, so start-up
//! and validation walk the registry instead of naming providers.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::Gateway;
use crate::provider::calls::ProviderCallSettings;
use crate::settings::Invalid;

/// What building a gateway needs besides its own section.
pub struct GatewayContext<'a> {
    /// The base URL clients (and providers) reach this service at, for default notify URLs.
    pub base_url: &'a str,
    /// The one client every provider call goes through.
    pub http: &'a reqwest::Client,
}

impl GatewayContext<'_> {
    /// `configured`, or this service's `/webhooks/{path}` when it is empty.
    pub fn notify_url(&self, configured: &str, path: &str) -> String {
        if configured.is_empty() {
            format!("{}/webhooks/{path}", self.base_url)
        } else {
            configured.to_owned()
        }
    }
}

/// Why a section did not make a gateway.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{key}_path: cannot read {path}")]
    Unreadable {
        key: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The key material does not parse (the provider's own error says which key).
    #[error("invalid {section} settings")]
    Keys {
        section: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One provider's configuration section.
pub trait ProviderSection: Send + Sync {
    fn enabled(&self) -> bool;

    /// The budget of calls to the provider (rate, concurrency, timeouts, breaker).
    fn calls(&self) -> &ProviderCallSettings;

    /// Checks that need no file: the call budget always, the required keys when enabled.
    ///
    /// # Errors
    /// The first unusable key, named under `section` (`providers.<name>`).
    fn validate(&self, section: &str) -> Result<(), Invalid>;

    /// Its secret settings that are set, by key under the section.
    fn secrets(&self) -> Vec<(&'static str, &SecretString)>;

    /// Builds the gateway, reading key files.
    ///
    /// # Errors
    /// A key that is missing, unreadable or does not parse.
    fn gateway(&self, section: &str, context: &GatewayContext<'_>) -> Result<Arc<dyn Gateway>, SectionError>;
}

/// A secret given inline (from the environment, say) or as a file path; never both.
///
/// # Errors
/// Neither or both given, or the file cannot be read.
pub fn read_secret(key: &str, inline: &SecretString, path: &str) -> Result<SecretString, SectionError> {
    read_either(key, inline.expose_secret(), path).map(SecretString::from)
}

/// Public key material given inline or as a file path; never both.
///
/// # Errors
/// Neither or both given, or the file cannot be read.
pub fn read_public(key: &str, inline: &str, path: &str) -> Result<String, SectionError> {
    read_either(key, inline, path)
}

fn read_either(key: &str, inline: &str, path: &str) -> Result<String, SectionError> {
    match (inline.is_empty(), path.is_empty()) {
        (false, true) => Ok(inline.to_owned()),
        (true, false) => std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|source| SectionError::Unreadable {
                key: key.to_owned(),
                path: path.to_owned(),
                source,
            }),
        (true, true) => Err(Invalid::new("", key, format!("must be set (or {key}_path)")).into()),
        (false, false) => Err(Invalid::new("", key, format!("set {key} or {key}_path, not both")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_comes_inline_or_from_a_file_never_both_nor_neither() {
        let dir = std::env::temp_dir().join(format!("pw-section-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.pem");
        std::fs::write(&file, "  from-file\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(read_public("k", "inline", "").unwrap(), "inline");
        assert_eq!(
            read_secret("k", &SecretString::from(""), path).unwrap().expose_secret(),
            "from-file"
        );
        let both = read_public("p.k", "inline", path).unwrap_err().to_string();
        assert!(both.contains("not both"), "{both}");
        let neither = read_public("p.k", "", "").unwrap_err().to_string();
        assert!(neither.starts_with("p.k: must be set"), "{neither}");
        let missing = read_public("p.k", "", "/nonexistent/key.pem").unwrap_err().to_string();
        assert_eq!(missing, "p.k_path: cannot read /nonexistent/key.pem");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
