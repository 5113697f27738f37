//! Typed configuration.
//!
//! Layers, lowest precedence first:
//! 1. `config/default.toml` — every key, commented, with its default;
//! 2. `config/<profile>.toml` — the profile named by `PAYWARDEN__ENV` (default `development`);
//! 3. environment variables `PAYWARDEN__SECTION__KEY` (e.g. `PAYWARDEN__SERVER__ADDR`).
//!
//! The directory is `./config`, or `PAYWARDEN_CONFIG_DIR` when set. Loading fails fast and
//! names the bad key. Secrets are [`SecretString`]s: `Debug` prints a mask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The development credentials shipped in `config/development.toml`; a production profile
/// refuses to start while any of them is in use.
pub const DEV_CLIENT_KEY: &str = "pk_dev_demo";
pub const DEV_ADMIN_TOKEN: &str = "admin_dev";
pub const DEV_SANDBOX_SECRET: &str = "whsec_sandbox_dev";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The profile these settings were loaded for (`development`, `production`, ...).
    pub env: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub ids: IdSettings,
    pub auth: AuthSettings,
    pub orders: OrderSettings,
    pub expiry: ExpiryConfig,
    pub outbox: OutboxConfig,
    pub amqp: AmqpConfig,
    pub providers: ProviderSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port` to listen on; port 0 picks a free one.
    pub addr: String,
    /// Base URL clients reach this service at, for absolute links (QR images, sandbox
    /// notifications). Empty: `http://<bound address>`.
    pub public_base_url: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub workers: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`. May hold a password.
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Empty: no Redis; the deadline index is the `orders` table itself.
    pub url: SecretString,
    /// Prefix of every key this deployment writes, so deployments can share a Redis.
    pub key_prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdSettings {
    /// Snowflake worker id, unique per running instance (0..=1023).
    pub worker_id: u16,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_token: SecretString,
    /// Merchant id -> client API key. Environment variables lower-case the merchant id
    /// (`PAYWARDEN__AUTH__MERCHANT_KEYS__ACME=pk_...` binds merchant `acme`).
    #[serde(default)]
    pub merchant_keys: BTreeMap<String, SecretString>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSettings {
    pub default_ttl_seconds: u64,
    pub min_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub max_items: usize,
    /// A `MinorUnit`, so a negative value is refused as the file is read; zero by `validate`.
    pub max_total_minor_units: entities::MinorUnit,
}

/// The expiry rule's retry and timing knobs (see `actors::order::expiry::ExpirySettings`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryConfig {
    pub retry_min_delay_milliseconds: u64,
    pub retry_max_delay_milliseconds: u64,
    pub retry_budget: u32,
    pub stuck_retry_interval_seconds: u64,
    pub userpaying_grace_milliseconds: u64,
    pub userpaying_max_rechecks: u32,
    pub provider_reply_timeout_milliseconds: u64,
    pub actor_reply_timeout_milliseconds: u64,
    pub overdue_per_second: u32,
    pub arbiters: usize,
    pub max_concurrent_passes: usize,
    pub provider_clock_margin_milliseconds: u64,
}

/// Delivery of outbox events to subscribers (see `actors::outbox::RelaySettings`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    pub batch_size: u64,
    pub sweep_interval_milliseconds: u64,
    pub lease_seconds: u64,
    /// Pause after the n-th failed delivery; when spent the delivery is dead.
    pub retry_schedule_milliseconds: Vec<u64>,
    pub webhook_timeout_milliseconds: u64,
    pub concurrency: usize,
    /// Webhook subscribers declared in configuration (admins can add more at run time).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: SecretString,
    /// Empty: every event type.
    #[serde(default)]
    pub event_types: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Empty: no AMQP sink. Example: amqp://guest:guest@127.0.0.1:5672/%2f
    pub url: SecretString,
    pub exchange: String,
}

/// How paywarden talks to one provider (see `actors::provider::ProviderCallSettings`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCallConfig {
    pub timeout_milliseconds: u64,
    pub max_concurrency: usize,
    pub rate_per_second: u32,
    pub retries: u32,
    pub retry_min_delay_milliseconds: u64,
    pub retry_max_delay_milliseconds: u64,
    pub breaker_failure_threshold: u32,
    pub breaker_open_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub sandbox: SandboxProviderSettings,
    pub wechat: WechatProviderSettings,
    pub alipay: AlipayProviderSettings,
}

/// A secret given inline (from the environment, say) or as a file path; never both.
fn read_secret(key: &str, inline: &SecretString, path: &str) -> anyhow::Result<SecretString> {
    match (inline.expose_secret().is_empty(), path.is_empty()) {
        (false, true) => Ok(inline.clone()),
        (true, false) => std::fs::read_to_string(path)
            .map(|text| SecretString::from(text.trim().to_owned()))
            .with_context(|| format!("{key}_path: cannot read {path}")),
        (true, true) => bail!("{key} (or {key}_path) must be set"),
        (false, false) => bail!("set {key} or {key}_path, not both"),
    }
}

/// Public key material given inline or as a file path; never both.
fn read_public(key: &str, inline: &str, path: &str) -> anyhow::Result<String> {
    match (inline.is_empty(), path.is_empty()) {
        (false, true) => Ok(inline.to_owned()),
        (true, false) => std::fs::read_to_string(path).with_context(|| format!("{key}_path: cannot read {path}")),
        (true, true) => bail!("{key} (or {key}_path) must be set"),
        (false, false) => bail!("set {key} or {key}_path, not both"),
    }
}

/// WeChat Pay API v3 merchant settings. Secrets come from files or the environment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatProviderSettings {
    pub enabled: bool,
    pub mchid: String,
    pub appid: String,
    /// Serial of the merchant API certificate (`serial_no` of requests).
    pub merchant_serial_no: String,
    pub merchant_private_key: SecretString,
    pub merchant_private_key_path: String,
    /// The platform public key or certificate (PEM) that signs responses and notifications,
    /// inline or as a file.
    pub platform_public_key: String,
    pub platform_public_key_path: String,
    /// Its `Wechatpay-Serial` (`PUB_KEY_ID_…` or the certificate serial; empty: from the certificate).
    pub platform_serial: String,
    /// The 32-character APIv3 key that encrypts notifications.
    pub apiv3_key: SecretString,
    pub apiv3_key_path: String,
    pub api_base_url: String,
    /// Empty: this service's `/webhooks/wechat`.
    pub notify_url: String,
    pub calls: ProviderCallConfig,
}

/// Alipay OpenAPI (RSA2) app settings. Secrets come from files or the environment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipayProviderSettings {
    pub enabled: bool,
    pub app_id: String,
    pub app_private_key: SecretString,
    pub app_private_key_path: String,
    /// The Alipay public key (PEM, certificate PEM or the console's bare base64), inline or as
    /// a file.
    pub alipay_public_key: String,
    pub alipay_public_key_path: String,
    pub gateway_url: String,
    /// Empty: this service's `/webhooks/alipay`.
    pub notify_url: String,
    /// When set, notifications for another seller are refused.
    pub seller_id: String,
    pub calls: ProviderCallConfig,
}

impl WechatProviderSettings {
    /// The gateway's settings, reading key files.
    ///
    /// # Errors
    /// A missing or unreadable key.
    pub fn gateway_settings(&self, base_url: &str) -> anyhow::Result<actors::gateway::wechat::WechatSettings> {
        let key = "providers.wechat";
        Ok(actors::gateway::wechat::WechatSettings {
            mchid: self.mchid.clone(),
            appid: self.appid.clone(),
            merchant_serial_no: self.merchant_serial_no.clone(),
            merchant_private_key_pem: read_secret(
                &format!("{key}.merchant_private_key"),
                &self.merchant_private_key,
                &self.merchant_private_key_path,
            )?,
            platform_keys: vec![actors::gateway::wechat::WechatPlatformKeySettings {
                serial: (!self.platform_serial.is_empty()).then(|| self.platform_serial.clone()),
                pem: read_public(
                    &format!("{key}.platform_public_key"),
                    &self.platform_public_key,
                    &self.platform_public_key_path,
                )?,
            }],
            apiv3_key: read_secret(&format!("{key}.apiv3_key"), &self.apiv3_key, &self.apiv3_key_path)?,
            api_base_url: self.api_base_url.clone(),
            notify_url: if self.notify_url.is_empty() {
                format!("{base_url}/webhooks/wechat")
            } else {
                self.notify_url.clone()
            },
            close_retry_after_seconds: actors::gateway::wechat::DEFAULT_CLOSE_RETRY_AFTER_SECONDS,
        })
    }
}

impl AlipayProviderSettings {
    /// The gateway's settings, reading key files.
    ///
    /// # Errors
    /// A missing or unreadable key.
    pub fn gateway_settings(&self, base_url: &str) -> anyhow::Result<actors::gateway::alipay::AlipaySettings> {
        let key = "providers.alipay";
        Ok(actors::gateway::alipay::AlipaySettings {
            app_id: self.app_id.clone(),
            app_private_key_pem: read_secret(
                &format!("{key}.app_private_key"),
                &self.app_private_key,
                &self.app_private_key_path,
            )?,
            alipay_public_key_pem: read_public(
                &format!("{key}.alipay_public_key"),
                &self.alipay_public_key,
                &self.alipay_public_key_path,
            )?,
            gateway_url: self.gateway_url.clone(),
            notify_url: if self.notify_url.is_empty() {
                format!("{base_url}/webhooks/alipay")
            } else {
                self.notify_url.clone()
            },
            seller_id: (!self.seller_id.is_empty()).then(|| self.seller_id.clone()),
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxProviderSettings {
    pub enabled: bool,
    /// HMAC key the sandbox signs its notifications with.
    pub webhook_secret: SecretString,
    /// Where the sandbox sends notifications. Empty: this service's `/webhooks/sandbox`.
    pub notify_url: String,
    /// Pauses between notification retries (the first try is immediate).
    pub notify_retry_delays_milliseconds: Vec<u64>,
    pub calls: ProviderCallConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `RUST_LOG`-style filter used when `RUST_LOG` is unset.
    pub log_filter: String,
    /// One JSON object per line instead of human-readable lines.
    pub json: bool,
}

impl Settings {
    /// Loads the layered configuration from `./config` (or `PAYWARDEN_CONFIG_DIR`).
    ///
    /// # Errors
    /// A missing file, a value of the wrong type (the key is named), or a failed validation.
    pub fn load() -> anyhow::Result<Self> {
        let dir = std::env::var_os("PAYWARDEN_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let profile = std::env::var("PAYWARDEN__ENV").unwrap_or_else(|_| "development".to_owned());
        Self::load_from(&dir, &profile)
    }

    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(dir: &Path, profile: &str) -> anyhow::Result<Self> {
        if profile.is_empty()
            || !profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("PAYWARDEN__ENV must be a profile name like 'development' or 'production', got '{profile}'");
        }
        let default = dir.join("default.toml");
        let overlay = dir.join(format!("{profile}.toml"));
        if !default.is_file() {
            bail!(
                "configuration file {} not found (set PAYWARDEN_CONFIG_DIR or run from the project root)",
                default.display()
            );
        }
        if !overlay.is_file() {
            bail!("no configuration profile '{profile}': {} not found", overlay.display());
        }
        let raw = config::Config::builder()
            .set_default("env", profile)?
            .add_source(config::File::from(default))
            .add_source(config::File::from(overlay))
            // Explicit separators: the crate's prefix default has changed across versions.
            .add_source(
                config::Environment::with_prefix("PAYWARDEN")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("providers.sandbox.notify_retry_delays_milliseconds"),
            )
            .build()
            .context("failed to read configuration")?;
        let settings: Settings = serde_path_to_error::deserialize(raw)
            .map_err(|err| anyhow::anyhow!("invalid configuration at '{}': {}", err.path(), err.inner()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    ///
    /// # Errors
    /// The first problem, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.database.url.expose_secret().is_empty() {
            bail!("database.url must be set (PAYWARDEN__DATABASE__URL)");
        }
        if self.auth.admin_token.expose_secret().len() < 8 {
            bail!("auth.admin_token must be set to at least 8 characters");
        }
        for (merchant, key) in &self.auth.merchant_keys {
            actors::domain::MerchantId::parse(merchant).map_err(|err| anyhow::anyhow!("auth.merchant_keys: {err}"))?;
            if key.expose_secret().len() < 8 {
                bail!("auth.merchant_keys.{merchant} must be at least 8 characters");
            }
        }
        let o = &self.orders;
        if o.min_ttl_seconds == 0 || o.min_ttl_seconds > o.max_ttl_seconds {
            bail!("orders.min_ttl_seconds must be at least 1 and not above orders.max_ttl_seconds");
        }
        if o.default_ttl_seconds < o.min_ttl_seconds || o.default_ttl_seconds > o.max_ttl_seconds {
            bail!("orders.default_ttl_seconds must lie between orders.min_ttl_seconds and orders.max_ttl_seconds");
        }
        if o.max_items == 0 || o.max_total_minor_units == entities::MinorUnit::ZERO {
            bail!("orders.max_items and orders.max_total_minor_units must be positive");
        }
        let e = &self.expiry;
        if e.retry_budget == 0
            || e.retry_min_delay_milliseconds == 0
            || e.retry_min_delay_milliseconds > e.retry_max_delay_milliseconds
        {
            bail!("expiry.retry_budget must be positive and expiry.retry_min_delay_milliseconds between 1 and expiry.retry_max_delay_milliseconds");
        }
        if e.overdue_per_second == 0 || e.arbiters == 0 {
            bail!("expiry.overdue_per_second and expiry.arbiters must be positive");
        }
        let calls = &self.providers.sandbox.calls;
        if calls.rate_per_second == 0 || calls.max_concurrency == 0 || calls.timeout_milliseconds == 0 {
            bail!(
                "providers.sandbox.calls: rate_per_second, max_concurrency and timeout_milliseconds must be positive"
            );
        }
        let o = &self.outbox;
        if o.batch_size == 0 || o.sweep_interval_milliseconds == 0 || o.concurrency == 0 || o.lease_seconds == 0 {
            bail!("outbox.batch_size, sweep_interval_milliseconds, lease_seconds and concurrency must be positive");
        }
        if self.amqp.url().is_some() && self.amqp.exchange.is_empty() {
            bail!("amqp.exchange must be set when amqp.url is");
        }
        if self.ids.worker_id > actors::ids::MAX_WORKER_ID {
            bail!("ids.worker_id must be at most {}", actors::ids::MAX_WORKER_ID);
        }
        if self.providers.sandbox.enabled && self.providers.sandbox.webhook_secret.expose_secret().len() < 8 {
            bail!("providers.sandbox.webhook_secret must be at least 8 characters when the sandbox is enabled");
        }
        if self.env == "production" {
            let dev_key = self
                .auth
                .merchant_keys
                .values()
                .any(|key| key.expose_secret() == DEV_CLIENT_KEY);
            let dev_admin = self.auth.admin_token.expose_secret() == DEV_ADMIN_TOKEN;
            let dev_sandbox = self.providers.sandbox.enabled
                && self.providers.sandbox.webhook_secret.expose_secret() == DEV_SANDBOX_SECRET;
            if dev_key || dev_admin || dev_sandbox {
                bail!("the production profile refuses the development credentials (pk_dev_demo, admin_dev, the sandbox dev secret); set real ones");
            }
        }
        Ok(())
    }

    /// Whether any of the shipped development credentials is in use (said at start-up).
    pub fn uses_dev_credentials(&self) -> bool {
        self.auth.admin_token.expose_secret() == DEV_ADMIN_TOKEN
            || self
                .auth
                .merchant_keys
                .values()
                .any(|key| key.expose_secret() == DEV_CLIENT_KEY)
    }
}

impl OrderSettings {
    pub fn limits(&self) -> actors::domain::OrderLimits {
        actors::domain::OrderLimits {
            default_ttl: Duration::from_secs(self.default_ttl_seconds),
            min_ttl: Duration::from_secs(self.min_ttl_seconds),
            max_ttl: Duration::from_secs(self.max_ttl_seconds),
            max_items: self.max_items,
            max_total: self.max_total_minor_units,
        }
    }
}

impl ExpiryConfig {
    pub fn settings(&self) -> actors::order::expiry::ExpirySettings {
        actors::order::expiry::ExpirySettings {
            retry: actors::retry::RetrySchedule {
                min_delay: Duration::from_millis(self.retry_min_delay_milliseconds),
                max_delay: Duration::from_millis(self.retry_max_delay_milliseconds),
            },
            retry_budget: self.retry_budget,
            stuck_retry_interval: Duration::from_secs(self.stuck_retry_interval_seconds),
            userpaying_grace: Duration::from_millis(self.userpaying_grace_milliseconds),
            userpaying_max_rechecks: self.userpaying_max_rechecks,
            provider_reply_timeout: Duration::from_millis(self.provider_reply_timeout_milliseconds),
            actor_reply_timeout: Duration::from_millis(self.actor_reply_timeout_milliseconds),
            overdue_per_second: self.overdue_per_second,
            arbiters: self.arbiters,
            max_concurrent_passes: self.max_concurrent_passes,
            provider_clock_margin: Duration::from_millis(self.provider_clock_margin_milliseconds),
        }
    }
}

impl OutboxConfig {
    pub fn settings(&self) -> actors::outbox::RelaySettings {
        actors::outbox::RelaySettings {
            batch_size: self.batch_size,
            sweep_interval: Duration::from_millis(self.sweep_interval_milliseconds),
            lease: Duration::from_secs(self.lease_seconds),
            retry_schedule: self
                .retry_schedule_milliseconds
                .iter()
                .copied()
                .map(Duration::from_millis)
                .collect(),
            webhook_timeout: Duration::from_millis(self.webhook_timeout_milliseconds),
            concurrency: self.concurrency,
        }
    }
}

impl AmqpConfig {
    pub fn url(&self) -> Option<&str> {
        let url = self.url.expose_secret();
        (!url.is_empty()).then_some(url)
    }
}

impl ProviderCallConfig {
    pub fn settings(&self) -> actors::provider::ProviderCallSettings {
        actors::provider::ProviderCallSettings {
            timeout: Duration::from_millis(self.timeout_milliseconds),
            max_concurrency: self.max_concurrency,
            rate_per_second: self.rate_per_second,
            retries: self.retries,
            retry: actors::retry::RetrySchedule {
                min_delay: Duration::from_millis(self.retry_min_delay_milliseconds),
                max_delay: Duration::from_millis(self.retry_max_delay_milliseconds),
            },
            breaker_failure_threshold: self.breaker_failure_threshold,
            breaker_open_for: Duration::from_secs(self.breaker_open_seconds),
        }
    }
}

impl DatabaseSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.expose_secret().starts_with("sqlite:")
    }
}

impl RedisSettings {
    pub fn url(&self) -> Option<&str> {
        let url = self.url.expose_secret();
        (!url.is_empty()).then_some(url)
    }
}

impl SandboxProviderSettings {
    pub fn notify_retry_delays(&self) -> Vec<Duration> {
        self.notify_retry_delays_milliseconds
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn every_shipped_profile_loads() {
        let dev = Settings::load_from(&config_dir(), "development").unwrap();
        assert_eq!(dev.server.addr, "127.0.0.1:8080");
        assert!(dev.uses_dev_credentials());
        assert!(Settings::load_from(&config_dir(), "test").is_ok());
    }

    #[test]
    fn production_refuses_the_development_credentials() {
        // production.toml ships no secrets at all, so it must fail on the first one it checks.
        let err = Settings::load_from(&config_dir(), "production").unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
        let mut dev = Settings::load_from(&config_dir(), "development").unwrap();
        dev.env = "production".into();
        let err = dev.validate().unwrap_err();
        assert!(err.to_string().contains("development credentials"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let dev = Settings::load_from(&config_dir(), "development").unwrap();
        let printed = format!("{dev:?}");
        assert!(!printed.contains(DEV_ADMIN_TOKEN), "{printed}");
        assert!(!printed.contains(DEV_CLIENT_KEY), "{printed}");
        assert!(!printed.contains(DEV_SANDBOX_SECRET), "{printed}");
    }

    #[test]
    fn unknown_profile_is_named_in_the_error() {
        let err = Settings::load_from(&config_dir(), "staging").unwrap_err();
        assert!(err.to_string().contains("staging"), "{err}");
    }
}
