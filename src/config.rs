//! Typed configuration, read straight into the settings types the crates use.
//!
//! Layers, lowest precedence first:
//! 1. `config/default.toml`, compiled into the binary: every key, commented, with its default;
//! 2. `config/<profile>.toml` for the profile named by `PAYWARDEN__ENV` (default
//!    `development`), also compiled in;
//! 3. the same two files in a configuration directory, when there is one: `PAYWARDEN_CONFIG_DIR`
//!    (it must exist), else `./config` if present; either file may be missing or partial;
//! 4. environment variables `PAYWARDEN__SECTION__KEY` (e.g. `PAYWARDEN__SERVER__ADDR`).
//!
//! So the binary runs from any directory on its embedded default. Loading fails fast and names
//! the bad key; every section is validated. Secrets are [`SecretString`]s: `Debug` prints a mask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::domain::OrderLimits;
pub use actors::gateway::alipay::AlipayProviderSettings;
pub use actors::gateway::registry::ProviderSettings;
pub use actors::gateway::sandbox::SandboxProviderSettings;
pub use actors::gateway::wechat::WechatProviderSettings;
use actors::order::expiry::ExpirySettings;
use actors::outbox::RelaySettings;
use actors::reconcile::ReconcileSettings;
use actors::refund::RefundSettings;
use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The development credentials shipped in `config/development.toml`, named in the start-up
/// warning. The production profile refuses these and every other value of the shipped files
/// ([`Settings::validate_production`]).
pub const DEV_CLIENT_KEY: &str = "pk_dev_demo";
pub const DEV_ADMIN_TOKEN: &str = "admin_dev";
pub const DEV_SANDBOX_SECRET: &str = "whsec_sandbox_dev";

/// The profiles shipped in `config/`, one overlay file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// SQLite + sandbox with development credentials: the embedded default.
    Development,
    /// The integration tests' profile.
    Test,
    /// The local demo against `paywarden-sim`.
    Simulator,
    /// Real secrets from the environment; refuses the development credentials and the sandbox.
    Production,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Development,
        Profile::Test,
        Profile::Simulator,
        Profile::Production,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Test => "test",
            Profile::Simulator => "simulator",
            Profile::Production => "production",
        }
    }

    /// # Errors
    /// Not one of the shipped profiles; the message lists them.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|profile| profile.name() == name)
            .with_context(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "no configuration profile '{name}' (PAYWARDEN__ENV): expected one of {}",
                    names.join(", ")
                )
            })
    }

    /// The profile's overlay, as compiled into the binary.
    fn embedded(self) -> &'static str {
        match self {
            Profile::Development => include_str!("../config/development.toml"),
            Profile::Test => include_str!("../config/test.toml"),
            Profile::Simulator => include_str!("../config/simulator.toml"),
            Profile::Production => include_str!("../config/production.toml"),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `config/default.toml` as compiled into the binary.
const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The profile these settings were loaded for.
    pub env: Profile,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub cluster: actors::cluster::ClusterSettings,
    pub ids: IdSettings,
    pub auth: AuthSettings,
    pub orders: OrderLimits,
    pub expiry: ExpirySettings,
    pub outbox: RelaySettings,
    pub refunds: RefundSettings,
    pub anomalies: AnomalySettings,
    pub reconciliation: ReconcileSettings,
    pub amqp: AmqpConfig,
    pub providers: ProviderSettings,
    pub checkout: CheckoutSettings,
    pub console: ConsoleSettings,
    /// `[dashboard]`: the console dashboard's activity counts.
    pub dashboard: actors::activity::ActivitySettings,
    pub streams: crate::streams::StreamSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    /// Limits on refused credentials per client address and in total.
    pub throttle: crate::throttle::ThrottleSettings,
    /// `[secrets]`: the master key the provider accounts' secrets are sealed under.
    pub secrets: SecretsSettings,
}

/// The master key of the secrets stored in the database (provider accounts).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The base64 of 32 random bytes (`openssl rand -base64 32`), inline (from the
    /// environment: `PAYWARDEN__SECRETS__MASTER_KEY`) or in the file `master_key_path`.
    pub master_key: SecretString,
    pub master_key_path: String,
    /// Keys values were sealed under before: still opened, until `paywarden secrets rotate`
    /// has re-sealed every row under `master_key`. From the environment, comma-separated
    /// (`PAYWARDEN__SECRETS__PREVIOUS_MASTER_KEYS=key1,key2`).
    #[serde(deserialize_with = "secret_list")]
    pub previous_master_keys: Vec<SecretString>,
    /// Create `master_key_path` with a new random key when the file does not exist (the
    /// development and simulator profiles).
    pub generate: bool,
}

impl SecretsSettings {
    /// The vault of the configured master keys; `None` when no master key is set.
    ///
    /// # Errors
    /// Both `master_key` and `master_key_path` set, a file that cannot be read or written, a
    /// key that is not the base64 of 32 bytes (the setting is named, never the value).
    pub fn vault(&self) -> anyhow::Result<Option<actors::vault::Vault>> {
        let inline = !self.master_key.expose_secret().is_empty();
        let key = match (inline, self.master_key_path.is_empty()) {
            (true, false) => bail!("set secrets.master_key or secrets.master_key_path, not both"),
            (true, true) => self.master_key.clone(),
            (false, true) => return Ok(None),
            (false, false) => self.read_or_generate()?,
        };
        Ok(Some(actors::vault::Vault::new(&key, &self.previous_master_keys)?))
    }

    /// What [`SecretsSettings::vault`] would refuse, without writing anything: a key file to
    /// be generated at start is not made here.
    ///
    /// # Errors
    /// As [`SecretsSettings::vault`].
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.master_key_path.is_empty() && !Path::new(&self.master_key_path).exists() && self.generate {
            if !self.master_key.expose_secret().is_empty() {
                bail!("set secrets.master_key or secrets.master_key_path, not both");
            }
            actors::vault::Vault::new(&actors::vault::Vault::generate_key(), &self.previous_master_keys)?;
            return Ok(());
        }
        self.vault().map(|_| ())
    }

    fn read_or_generate(&self) -> anyhow::Result<SecretString> {
        let path = Path::new(&self.master_key_path);
        if !path.exists() && self.generate {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let key = actors::vault::Vault::generate_key();
            write_private(path, key.expose_secret())
                .with_context(|| format!("secrets.master_key_path: cannot write {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "generated a master key for the provider accounts' secrets; keep this file: without it they cannot be read"
            );
            return Ok(key);
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("secrets.master_key_path: cannot read {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|meta| meta.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the master key file is readable by others than its owner; chmod 600 it"
                );
            }
        }
        Ok(SecretString::from(text.trim().to_owned()))
    }
}

/// A list of secrets, or (from the environment) one text of them separated by commas.
fn secret_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    let items = match Form::deserialize(deserializer)? {
        Form::List(list) => list,
        Form::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .map(SecretString::from)
        .collect())
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// What paywarden does by itself about money no order keeps.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// Refund in full, automatically, a payment taken after its order closed, a second payment
    /// of a settled order, and a payment found by the follow-up. A payment of another amount
    /// is never refunded by itself: an operator decides.
    pub auto_refund: bool,
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
    /// A request's body must arrive whole within this long (`408` otherwise).
    #[serde(rename = "body_read_timeout_milliseconds", with = "actors::settings::millis")]
    pub body_read_timeout: Duration,
    /// Open connections per worker; beyond, new ones wait in the listen backlog.
    pub max_connections: usize,
    pub workers: usize,
    /// Addresses or CIDR networks of the reverse proxies in front of the service: only from
    /// them is `X-Forwarded-For` read for the client's address ([`crate::client_addr`]).
    pub trusted_proxies: Vec<String>,
}

/// `/metrics`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer token a scraper must present. Empty: `/metrics` is open (refused in production).
    pub scrape_token: SecretString,
    /// Gauges read from the database (stuck orders) are read at most this often, whatever
    /// the scrape rate.
    #[serde(rename = "gauge_refresh_milliseconds", with = "actors::settings::millis")]
    pub gauge_refresh: Duration,
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
    /// `single`: `url` is one server. `cluster`: a Redis Cluster, `url` lists seed nodes
    /// separated by commas.
    pub mode: actors::redis_conn::RedisMode,
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

/// The buyers' checkout page (`/checkout/{order_no}?t=<token>`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutSettings {
    /// Key of the HMAC that signs checkout links; at least 32 characters. Every node of a
    /// deployment needs the same one; changing it invalidates the links handed out.
    pub link_secret: SecretString,
    /// How long after its order's deadline a link still opens (showing the final status).
    #[serde(rename = "link_grace_seconds", with = "actors::settings::seconds")]
    pub link_grace: Duration,
}

/// The operator console (`/admin/ui`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// How long a sign-in lasts at most, however it is used.
    #[serde(rename = "session_seconds", with = "actors::settings::seconds")]
    pub session: Duration,
    /// A session unused this long ends.
    #[serde(rename = "idle_seconds", with = "actors::settings::seconds")]
    pub idle: Duration,
    /// Key of the session cookies' and CSRF tokens' MACs: random, at least 32 characters, the
    /// same on every node. Required in production; elsewhere, empty means one is generated at
    /// start (sessions then end with the process and hold on this node only).
    pub session_secret: SecretString,
}

impl ConsoleSettings {
    /// # Errors
    /// Limits out of range, or a session secret missing (production) or too short.
    pub fn validate(&self, env: Profile) -> anyhow::Result<()> {
        if self.session < Duration::from_secs(60) || self.session > Duration::from_secs(7 * 86_400) {
            bail!("console.session_seconds must be between 60 and 604800");
        }
        if self.idle.is_zero() || self.idle > self.session {
            bail!("console.idle_seconds must be positive and at most console.session_seconds");
        }
        let secret = self.session_secret.expose_secret();
        if (env == Profile::Production || !secret.is_empty()) && secret.chars().count() < 32 {
            bail!(
                "console.session_secret must be set to a random value of at least 32 characters (PAYWARDEN__CONSOLE__SESSION_SECRET)"
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Empty: no AMQP sink. Example: amqp://guest:guest@127.0.0.1:5672/%2f
    pub url: SecretString,
    pub exchange: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `RUST_LOG`-style filter used when `RUST_LOG` is unset.
    pub log_filter: String,
    /// One JSON object per line instead of human-readable lines.
    pub json: bool,
    /// Base URL of an OTLP/HTTP collector (`http://collector:4318`): spans are exported to
    /// `{otlp_endpoint}/v1/traces`. Empty: no traces, no cost.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// How long spans wait to be exported in a batch.
    #[serde(rename = "export_delay_milliseconds", with = "actors::settings::millis")]
    pub export_delay: Duration,
}

impl Settings {
    /// The refund worker's settings, with `anomalies.auto_refund`.
    pub fn refunds(&self) -> RefundSettings {
        RefundSettings {
            auto_refund: self.anomalies.auto_refund,
            ..self.refunds.clone()
        }
    }

    /// Loads the layered configuration: embedded defaults and profile, then the configuration
    /// directory (`PAYWARDEN_CONFIG_DIR`, else `./config` when present), then the environment.
    ///
    /// # Errors
    /// An unknown profile, a named configuration directory that does not exist, a value of the
    /// wrong type (the key is named), or a failed validation.
    pub fn load() -> anyhow::Result<Self> {
        let profile = match std::env::var("PAYWARDEN__ENV") {
            Ok(name) => Profile::parse(&name)?,
            Err(_) => Profile::Development,
        };
        let dir = match std::env::var_os("PAYWARDEN_CONFIG_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if !dir.is_dir() {
                    bail!("PAYWARDEN_CONFIG_DIR {} is not a directory", dir.display());
                }
                Some(dir)
            }
            None => Some(PathBuf::from("config")).filter(|dir| dir.is_dir()),
        };
        Self::load_from(dir.as_deref(), profile)
    }

    /// The layered configuration for `profile`, with `dir`'s files (if any) over the embedded
    /// ones.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(dir: Option<&Path>, profile: Profile) -> anyhow::Result<Self> {
        use config::{File, FileFormat};
        let mut builder = config::Config::builder()
            .set_default("env", profile.name())?
            .add_source(File::from_str(EMBEDDED_DEFAULT, FileFormat::Toml))
            .add_source(File::from_str(profile.embedded(), FileFormat::Toml));
        if let Some(dir) = dir {
            for name in ["default.toml".to_owned(), format!("{profile}.toml")] {
                builder = builder.add_source(File::from(dir.join(name)).required(false));
            }
        }
        let raw = builder
            // Explicit separators: the crate's prefix default has changed across versions.
            .add_source(
                config::Environment::with_prefix("PAYWARDEN")
                    .prefix_separator("__")
                    .separator("__")
                    // Values stay text until serde reads them as the field's type: parsing
                    // them here would turn a numeric secret like `00123456` into 123456.
                    .try_parsing(false),
            )
            .build()
            .context("failed to read configuration")?;
        let settings: Settings = serde_path_to_error::deserialize(raw)
            .map_err(|err| anyhow::anyhow!("invalid configuration at '{}': {}", err.path(), err.inner()))?;
        if settings.env != profile {
            bail!(
                "env: the profile is chosen by PAYWARDEN__ENV ({profile}), not set in a file ({})",
                settings.env
            );
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot, section by section.
    ///
    /// # Errors
    /// The first problem, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.max_body_bytes == 0 {
            bail!("server.max_body_bytes must be positive");
        }
        if self.server.body_read_timeout < Duration::from_millis(100) || self.server.max_connections == 0 {
            bail!("server.body_read_timeout_milliseconds must be at least 100 and server.max_connections positive");
        }
        self.validate_streams()?;
        if self.metrics.gauge_refresh.is_zero() {
            bail!("metrics.gauge_refresh_milliseconds must be positive");
        }
        if self.database.url.expose_secret().is_empty() {
            bail!("database.url must be set (PAYWARDEN__DATABASE__URL)");
        }
        if self.database.max_connections == 0 || self.database.connect_timeout_seconds == 0 {
            bail!("database.max_connections and database.connect_timeout_seconds must be positive");
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
        if self.ids.worker_id > actors::ids::MAX_WORKER_ID {
            bail!("ids.worker_id must be at most {}", actors::ids::MAX_WORKER_ID);
        }
        self.orders.validate("orders")?;
        self.expiry.validate("expiry")?;
        if self.cluster.enabled {
            self.cluster.validate("cluster")?;
            if self.redis.url().is_none() {
                bail!("cluster.enabled needs redis.url: the partition leases live in Redis");
            }
            if self.database.is_sqlite() {
                bail!("cluster.enabled needs PostgreSQL (database.url): every node shares one database");
            }
        }
        self.outbox.validate("outbox")?;
        self.refunds.validate("refunds")?;
        self.reconciliation.validate("reconciliation")?;
        crate::client_addr::TrustedProxies::parse(&self.server.trusted_proxies)?;
        self.throttle.validate()?;
        if self.amqp.url().is_some() && self.amqp.exchange.is_empty() {
            bail!("amqp.exchange must be set when amqp.url is");
        }
        let providers = &self.providers;
        for (_, key, section) in providers.sections() {
            section.validate(&key)?;
        }
        if self.checkout.link_secret.expose_secret().len() < 32 {
            bail!("checkout.link_secret must be set to at least 32 characters (PAYWARDEN__CHECKOUT__LINK_SECRET)");
        }
        if self.checkout.link_grace > Duration::from_secs(7 * 86_400) {
            bail!("checkout.link_grace_seconds must be at most 604800 (7 days)");
        }
        self.validate_key_hygiene()?;
        self.validate_cluster_secret()?;
        if self.env == Profile::Production {
            self.validate_production()?;
            for (info, key, section) in providers.sections() {
                if let (true, Some(reason)) = (section.enabled(), info.refused_in_production) {
                    bail!(
                        "{key}.enabled: the production profile refuses {} ({reason})",
                        info.display_name
                    );
                }
            }
            // Its length is held with the other secrets' (`validate_production`).
            if self.metrics.scrape_token.expose_secret().is_empty() {
                bail!("metrics.scrape_token must be set in production (PAYWARDEN__METRICS__SCRAPE_TOKEN): /metrics is not for everyone");
            }
        }
        // After the production checks above, which name what they refuse first.
        self.console.validate(self.env)?;
        self.dashboard.validate()?;
        self.secrets.check()?;
        Ok(())
    }

    /// The `[streams]` limits.
    fn validate_streams(&self) -> anyhow::Result<()> {
        let streams = &self.streams;
        if streams.per_checkout_link == 0 || streams.per_merchant == 0 || streams.per_node == 0 {
            bail!("streams.per_checkout_link, streams.per_merchant and streams.per_node must be positive");
        }
        if streams.keepalive < Duration::from_millis(100) || streams.recheck < Duration::from_millis(100) {
            bail!("streams.keepalive_milliseconds and streams.recheck_milliseconds must be at least 100");
        }
        if streams.max_lifetime < streams.keepalive {
            bail!("streams.max_lifetime_seconds must be at least streams.keepalive_milliseconds");
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

/// Shortest secret the production profile accepts: the admin token, every merchant key, the
/// checkout link secret, the console session secret and the cluster secret.
pub const PRODUCTION_SECRET_MIN_CHARS: usize = 32;

/// The environment variable that sets `key`: `auth.merchant_keys.acme` is
/// `PAYWARDEN__AUTH__MERCHANT_KEYS__ACME`.
pub fn env_var(key: &str) -> String {
    format!("PAYWARDEN__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Every file shipped in `config/`, as compiled into the binary.
fn shipped_files() -> impl Iterator<Item = &'static str> {
    std::iter::once(EMBEDDED_DEFAULT).chain(Profile::ALL.into_iter().map(Profile::embedded))
}

/// Every non-empty string the shipped configuration files hold, as values or in commented-out
/// examples (`# secret = "whsec_..."`): all of them are public, so none may be a production
/// secret. Read from the files themselves, so a value added to one is refused without a list
/// to keep in step.
fn shipped_values() -> &'static std::collections::BTreeSet<String> {
    static VALUES: std::sync::LazyLock<std::collections::BTreeSet<String>> = std::sync::LazyLock::new(|| {
        fn collect(value: &toml::Value, into: &mut std::collections::BTreeSet<String>) {
            match value {
                toml::Value::String(text) if !text.is_empty() => {
                    into.insert(text.clone());
                }
                toml::Value::Array(values) => values.iter().for_each(|value| collect(value, into)),
                toml::Value::Table(table) => table.values().for_each(|value| collect(value, into)),
                _ => {}
            }
        }
        let mut values = std::collections::BTreeSet::new();
        for text in shipped_files() {
            // A file that did not parse would not have loaded (and a test parses each one).
            if let Ok(table) = text.parse::<toml::Table>() {
                table.values().for_each(|value| collect(value, &mut values));
            }
            // Commented-out examples: a line that is a `key = value` once its `#` is gone.
            for line in text.lines() {
                let Some(example) = line.trim_start().strip_prefix('#') else {
                    continue;
                };
                if let Ok(table) = example.trim().parse::<toml::Table>() {
                    table.values().for_each(|value| collect(value, &mut values));
                }
            }
        }
        values
    });
    &VALUES
}

/// A secret setting: its key and its value.
struct SecretSetting<'a> {
    key: String,
    value: &'a SecretString,
}

impl SecretSetting<'_> {
    /// `key (ENV_VAR)`, for one line of an error message; never the value.
    fn named(&self) -> String {
        if self.key.starts_with("outbox.webhooks[") {
            format!("{} (in a configuration file)", self.key)
        } else {
            format!("{} ({})", self.key, env_var(&self.key))
        }
    }

    fn chars(&self) -> usize {
        self.value.expose_secret().chars().count()
    }
}

/// Key hygiene and the production profile's refusals. Kept apart from [`Settings::validate`]'s
/// per-section checks: each rule here looks at several settings at once.
impl Settings {
    /// Every secret setting that is set (empty ones are left to the section checks).
    fn secret_settings(&self) -> Vec<SecretSetting<'_>> {
        let mut secrets = vec![SecretSetting {
            key: "auth.admin_token".to_owned(),
            value: &self.auth.admin_token,
        }];
        secrets.extend(self.auth.merchant_keys.iter().map(|(merchant, key)| SecretSetting {
            key: format!("auth.merchant_keys.{merchant}"),
            value: key,
        }));
        for (section_key, section) in self.providers.sections().map(|(_, key, section)| (key, section)) {
            secrets.extend(section.secrets().into_iter().map(|(key, value)| SecretSetting {
                key: format!("{section_key}.{key}"),
                value,
            }));
        }
        for (key, value) in [
            ("checkout.link_secret", &self.checkout.link_secret),
            ("cluster.secret", &self.cluster.secret),
            ("metrics.scrape_token", &self.metrics.scrape_token),
            ("console.session_secret", &self.console.session_secret),
            ("secrets.master_key", &self.secrets.master_key),
        ] {
            secrets.push(SecretSetting {
                key: key.to_owned(),
                value,
            });
        }
        secrets.extend(
            self.outbox
                .webhooks
                .iter()
                .enumerate()
                .map(|(index, webhook)| SecretSetting {
                    key: format!("outbox.webhooks[{index}].secret"),
                    value: &webhook.secret,
                }),
        );
        secrets.retain(|secret| !secret.value.expose_secret().is_empty());
        secrets
    }

    /// Credentials that would silently mean something else: two merchants with one key become
    /// one merchant (whichever the lookup finds), and a merchant key equal to the admin token
    /// makes that merchant an admin. Checked in every profile.
    ///
    /// # Errors
    /// The first clash, naming both settings and their variables (never the key).
    pub fn validate_key_hygiene(&self) -> anyhow::Result<()> {
        let admin = self.auth.admin_token.expose_secret();
        let keys: Vec<(&String, &SecretString)> = self.auth.merchant_keys.iter().collect();
        for (index, (merchant, key)) in keys.iter().enumerate() {
            let setting = format!("auth.merchant_keys.{merchant}");
            if !admin.is_empty() && key.expose_secret() == admin {
                bail!(
                    "{setting} ({}) is the admin token (auth.admin_token, PAYWARDEN__AUTH__ADMIN_TOKEN): a merchant key must never be an admin key",
                    env_var(&setting)
                );
            }
            for (other, other_key) in &keys[index + 1..] {
                if key.expose_secret() == other_key.expose_secret() {
                    let other = format!("auth.merchant_keys.{other}");
                    bail!(
                        "{setting} ({}) and {other} ({}) are the same key: each merchant needs its own",
                        env_var(&setting),
                        env_var(&other)
                    );
                }
            }
        }
        // One value may serve one purpose only: a session secret equal to the admin token would
        // let a stolen cookie test admin-token guesses offline, a scrape token equal to it
        // would give the admin token an unthrottled door.
        let secrets = self.secret_settings();
        for (index, secret) in secrets.iter().enumerate() {
            if let Some(other) = secrets[index + 1..]
                .iter()
                .find(|other| other.value.expose_secret() == secret.value.expose_secret())
            {
                bail!(
                    "{} and {} are the same value: each secret needs its own",
                    secret.named(),
                    other.named()
                );
            }
        }
        Ok(())
    }

    /// A cluster signs the requests its nodes forward to each other with `cluster.secret`
    /// (`crate::forward`): required, and long, whenever clustering is on.
    ///
    /// # Errors
    /// The secret is missing or shorter than [`PRODUCTION_SECRET_MIN_CHARS`].
    pub fn validate_cluster_secret(&self) -> anyhow::Result<()> {
        let chars = self.cluster.secret.expose_secret().chars().count();
        if self.cluster.enabled && chars < PRODUCTION_SECRET_MIN_CHARS {
            bail!("cluster.secret (PAYWARDEN__CLUSTER__SECRET) must be set to at least {PRODUCTION_SECRET_MIN_CHARS} characters when cluster.enabled is on: it signs the requests nodes forward to each other");
        }
        Ok(())
    }

    /// What the production profile refuses beyond the section checks: a secret published in a
    /// shipped configuration file, a short secret, webhooks to private addresses, and a public
    /// base URL that is not `https://`.
    ///
    /// # Errors
    /// The first problem, as one line naming the setting and its environment variable.
    pub fn validate_production(&self) -> anyhow::Result<()> {
        let secrets = self.secret_settings();
        let published = shipped_values();
        if let Some(secret) = secrets
            .iter()
            .find(|secret| published.contains(secret.value.expose_secret()))
        {
            bail!(
                "{}: the production profile refuses a value published in the shipped config/ files; set a secret of your own",
                secret.named()
            );
        }
        /// Secrets the production profile wants long; a merchant key counts as `auth.merchant_keys`.
        const LONG_SECRETS: [&str; 6] = [
            "auth.admin_token",
            "auth.merchant_keys.",
            "checkout.link_secret",
            "cluster.secret",
            "metrics.scrape_token",
            "console.session_secret",
        ];
        let long = |key: &str| {
            LONG_SECRETS
                .iter()
                .any(|prefix| key == *prefix || (prefix.ends_with('.') && key.starts_with(prefix)))
        };
        if self.auth.admin_token.expose_secret().is_empty() {
            bail!("auth.admin_token (PAYWARDEN__AUTH__ADMIN_TOKEN) must be set in production");
        }
        if let Some(secret) = secrets
            .iter()
            .find(|secret| long(&secret.key) && secret.chars() < PRODUCTION_SECRET_MIN_CHARS)
        {
            bail!(
                "{} must be at least {PRODUCTION_SECRET_MIN_CHARS} characters in production (it has {})",
                secret.named(),
                secret.chars()
            );
        }
        if self.outbox.allow_private_targets {
            bail!("outbox.allow_private_targets (PAYWARDEN__OUTBOX__ALLOW_PRIVATE_TARGETS) must be false in production: webhooks would reach loopback, private and metadata addresses");
        }
        let base = self.server.public_base_url.trim();
        let https = base
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !https {
            bail!("server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL) must be an https:// URL in production: checkout links and the console cookie go over it");
        }
        if self.secrets.generate {
            bail!(
                "secrets.generate: the production profile refuses a master key generated by a node (each node would make its own); set secrets.master_key or secrets.master_key_path, the same on every node"
            );
        }
        Ok(())
    }
}

impl AmqpConfig {
    pub fn url(&self) -> Option<&str> {
        let url = self.url.expose_secret();
        (!url.is_empty()).then_some(url)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn dev() -> Settings {
        Settings::load_from(None, Profile::Development).unwrap()
    }

    #[test]
    fn every_shipped_profile_loads() {
        let dev = Settings::load_from(Some(&config_dir()), Profile::Development).unwrap();
        assert_eq!(dev.server.addr, "127.0.0.1:8080");
        assert!(dev.uses_dev_credentials());
        assert!(Settings::load_from(Some(&config_dir()), Profile::Test).is_ok());
    }

    #[test]
    fn the_embedded_files_are_the_shipped_ones_and_need_no_directory() {
        for profile in [Profile::Development, Profile::Test] {
            let embedded = Settings::load_from(None, profile).unwrap();
            let from_dir = Settings::load_from(Some(&config_dir()), profile).unwrap();
            assert_eq!(format!("{embedded:?}"), format!("{from_dir:?}"), "{profile}");
        }
        assert_eq!(
            dev().database.url.expose_secret(),
            "sqlite://./data/paywarden.db?mode=rwc"
        );
    }

    #[test]
    fn a_directory_layers_partial_files_over_the_embedded_ones() {
        let dir = std::env::temp_dir().join(format!("paywarden-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("development.toml"), "[server]\naddr = \"127.0.0.1:9999\"\n").unwrap();
        let settings = Settings::load_from(Some(&dir), Profile::Development).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(settings.server.addr, "127.0.0.1:9999");
        assert!(
            settings.providers.sandbox.enabled,
            "the rest comes from the embedded files"
        );
    }

    #[test]
    fn production_refuses_a_master_key_generated_by_a_node() {
        let mut settings = production();
        settings.validate().unwrap();
        settings.secrets.generate = true;
        settings.secrets.master_key_path = "./data/master.key".to_owned();
        let err = settings.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("secrets.generate: the production profile refuses"),
            "{err}"
        );
    }

    #[test]
    fn production_refuses_the_development_credentials() {
        // production.toml ships no secrets at all, so it must fail on the first one it checks.
        let err = Settings::load_from(Some(&config_dir()), Profile::Production).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
        let mut dev = dev();
        dev.env = Profile::Production;
        let err = dev.validate().unwrap_err().to_string();
        assert!(err.contains("published in the shipped config/ files"), "{err}");
        assert!(!err.contains(DEV_ADMIN_TOKEN), "the secret is not printed: {err}");
    }

    /// The development profile turned into a production one that passes: long secrets of its
    /// own, no sandbox, public webhook targets, an https base URL.
    fn production() -> Settings {
        let mut settings = dev();
        settings.env = Profile::Production;
        settings.auth.admin_token = SecretString::from("a-real-admin-token-0123456789abcdef");
        settings.auth.merchant_keys = BTreeMap::from([
            (
                "acme".to_owned(),
                SecretString::from("pk_live_acme_0123456789abcdefghijkl"),
            ),
            (
                "globex".to_owned(),
                SecretString::from("pk_live_globex_0123456789abcdefghij"),
            ),
        ]);
        settings.providers.sandbox.enabled = false;
        settings.providers.sandbox.webhook_secret = SecretString::from("");
        settings.checkout.link_secret = SecretString::from("a-real-checkout-link-secret-0123456789");
        settings.outbox.allow_private_targets = false;
        settings.server.public_base_url = "https://pay.example.com".to_owned();
        settings.cluster.secret = SecretString::from("a-real-cluster-secret-0123456789abcdef");
        settings.metrics.scrape_token = SecretString::from("a-real-scrape-token-0123456789abcdef");
        settings.console.session_secret = SecretString::from("a-real-console-session-secret-0123456789");
        // The development profile's generated master key is refused in production.
        settings.secrets.generate = false;
        settings.secrets.master_key_path = String::new();
        settings
    }

    #[test]
    fn the_console_session_secret_is_required_in_production_and_long_wherever_it_is_set() {
        let mut settings = dev();
        settings.console.session_secret = SecretString::from("short");
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("console.session_secret"), "{err}");
        settings.console.session_secret = SecretString::from(String::new());
        settings.validate().unwrap();
        settings.console.idle = settings.console.session + Duration::from_secs(1);
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("console.idle_seconds"));
        settings.console.idle = Duration::from_secs(60);

        let mut settings = production();
        settings.console.session_secret = SecretString::from(String::new());
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("PAYWARDEN__CONSOLE__SESSION_SECRET"), "{err}");
        settings.console.session_secret = SecretString::from("a-real-console-session-secret-0123456789");
        settings.validate().unwrap();
    }

    #[test]
    fn one_value_serving_two_secrets_is_refused_in_every_profile() {
        for mut settings in [dev(), production()] {
            settings.console.session_secret = settings.auth.admin_token.clone();
            let err = settings.validate().unwrap_err().to_string();
            assert!(
                err.contains("auth.admin_token") && err.contains("console.session_secret"),
                "{err}"
            );
            assert!(!err.contains(settings.auth.admin_token.expose_secret()), "{err}");
        }
    }

    #[test]
    fn production_refuses_the_sandbox_even_with_real_secrets() {
        let mut settings = production();
        settings.validate().unwrap();
        settings.providers.sandbox.enabled = true;
        settings.providers.sandbox.webhook_secret = SecretString::from("whsec_real_secret_value");
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("providers.sandbox.enabled"), "{err}");
    }

    #[test]
    fn two_merchants_with_one_key_are_refused_in_every_profile() {
        for mut settings in [dev(), production()] {
            let shared = "pk_live_shared_0123456789abcdefghijk";
            settings.auth.merchant_keys = BTreeMap::from([
                ("acme".to_owned(), SecretString::from(shared)),
                ("globex".to_owned(), SecretString::from(shared)),
            ]);
            let err = settings.validate().unwrap_err().to_string();
            assert!(
                err.contains("auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME)")
                    && err.contains("auth.merchant_keys.globex (PAYWARDEN__AUTH__MERCHANT_KEYS__GLOBEX)"),
                "{}: {err}",
                settings.env
            );
            assert!(!err.contains(shared), "the key is not printed: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn a_merchant_key_equal_to_the_admin_token_is_refused_in_every_profile() {
        for mut settings in [dev(), production()] {
            let admin = settings.auth.admin_token.clone();
            settings.auth.merchant_keys.insert("acme".to_owned(), admin.clone());
            let err = settings.validate().unwrap_err().to_string();
            assert!(
                err.contains("auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME)")
                    && err.contains("PAYWARDEN__AUTH__ADMIN_TOKEN"),
                "{}: {err}",
                settings.env
            );
            assert!(!err.contains(admin.expose_secret()), "the token is not printed: {err}");
        }
    }

    #[test]
    fn production_refuses_secrets_shorter_than_32_characters() {
        type Set = fn(&mut Settings, SecretString);
        let cases: [(&str, &str, Set); 3] = [
            ("auth.admin_token", "PAYWARDEN__AUTH__ADMIN_TOKEN", |s, v| {
                s.auth.admin_token = v
            }),
            (
                "auth.merchant_keys.acme",
                "PAYWARDEN__AUTH__MERCHANT_KEYS__ACME",
                |s, v| {
                    s.auth.merchant_keys.insert("acme".to_owned(), v);
                },
            ),
            ("checkout.link_secret", "PAYWARDEN__CHECKOUT__LINK_SECRET", |s, v| {
                s.checkout.link_secret = v
            }),
        ];
        for (key, var, set) in cases {
            let short = "s3cr3t-but-only-31-characters-x";
            assert_eq!(short.len(), 31);
            let mut settings = production();
            set(&mut settings, SecretString::from(short));
            let err = settings.validate().expect_err(key).to_string();
            assert!(
                err.starts_with(key) && err.contains(var) && err.contains("at least 32 characters"),
                "{key}: {err}"
            );
            assert!(!err.contains(short), "{key}: the secret is not printed: {err}");
            let mut settings = production();
            set(&mut settings, SecretString::from(format!("{short}y")));
            settings
                .validate()
                .unwrap_or_else(|err| panic!("{key} of 32 characters: {err}"));
            // Outside production the section's own minimum applies.
            let mut settings = dev();
            set(&mut settings, SecretString::from("dev-admin-and-keys-are-short-ok"));
            if key != "checkout.link_secret" {
                settings
                    .validate()
                    .unwrap_or_else(|err| panic!("{key} in development: {err}"));
            }
        }
    }

    #[test]
    fn production_refuses_every_value_published_in_the_shipped_files() {
        // The test profile's credentials, the development ones, and an example in a comment.
        let published = [
            "admin_test_token",
            "pk_test_merchant_a",
            "pk_test_merchant_b",
            "checkout_test_link_secret_0123456789abcdef",
            "checkout_dev_link_secret_0123456789abcdef",
            "whsec_sandbox_test",
            "whsec_at_least_16_characters",
            "admin_dev",
            "pk_dev_demo",
        ];
        for value in published {
            assert!(
                shipped_values().contains(value),
                "{value} is read from the shipped files"
            );
        }
        type Set = fn(&mut Settings, SecretString);
        let settings_to_try: [(&str, Set); 4] = [
            ("auth.admin_token (PAYWARDEN__AUTH__ADMIN_TOKEN)", |s, v| {
                s.auth.admin_token = v
            }),
            (
                "auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME)",
                |s, v| {
                    s.auth.merchant_keys.insert("acme".to_owned(), v);
                },
            ),
            ("checkout.link_secret (PAYWARDEN__CHECKOUT__LINK_SECRET)", |s, v| {
                s.checkout.link_secret = v
            }),
            (
                "providers.wechat.apiv3_key (PAYWARDEN__PROVIDERS__WECHAT__APIV3_KEY)",
                |s, v| s.providers.wechat.apiv3_key = v,
            ),
        ];
        for value in published {
            for (named, set) in settings_to_try {
                let mut settings = production();
                set(&mut settings, SecretString::from(value));
                let Err(err) = settings.validate_production() else {
                    panic!("{named} = {value} was accepted");
                };
                let err = err.to_string();
                assert!(
                    err.starts_with(named) && err.contains("published"),
                    "{named} = {value}: {err}"
                );
                assert!(!err.contains(value), "the secret is not printed: {err}");
            }
        }
        // A webhook secret from a file, too.
        let mut settings = production();
        settings.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
            url: "https://erp.example.com/events".to_owned(),
            secret: SecretString::from("whsec_at_least_16_characters"),
            event_types: Vec::new(),
            merchant_id: None,
            signature_scheme: entities::SignatureScheme::PaywardenV1,
        }];
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("outbox.webhooks[0].secret"), "{err}");
    }

    #[test]
    fn every_file_in_config_is_one_of_the_embedded_ones_and_parses() {
        let embedded: Vec<&str> = shipped_files().collect();
        for entry in std::fs::read_dir(config_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    embedded.contains(&text.as_str()),
                    "{} is not compiled in: its values would not be refused in production",
                    path.display()
                );
            }
        }
        for text in embedded {
            text.parse::<toml::Table>().unwrap();
        }
    }

    #[test]
    fn production_refuses_private_webhook_targets_and_a_base_url_without_https() {
        type Spoil = fn(&mut Settings);
        let cases: [(&str, Spoil); 4] = [
            (
                "outbox.allow_private_targets (PAYWARDEN__OUTBOX__ALLOW_PRIVATE_TARGETS)",
                |s| s.outbox.allow_private_targets = true,
            ),
            ("server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL)", |s| {
                s.server.public_base_url = String::new()
            }),
            ("server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL)", |s| {
                s.server.public_base_url = "http://pay.example.com".to_owned()
            }),
            ("server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL)", |s| {
                s.server.public_base_url = "https://".to_owned()
            }),
        ];
        for (named, spoil) in cases {
            let mut settings = production();
            spoil(&mut settings);
            let err = settings.validate().expect_err(named).to_string();
            assert!(err.starts_with(named), "{named}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            // Development keeps both: receivers and the service run locally.
            let mut settings = dev();
            spoil(&mut settings);
            settings.validate().unwrap();
        }
    }

    #[test]
    fn production_serves_metrics_only_behind_a_scrape_token() {
        let mut settings = production();
        settings.validate().unwrap();
        settings.metrics.scrape_token = SecretString::from("");
        let err = settings.validate().unwrap_err();
        assert!(err.to_string().contains("PAYWARDEN__METRICS__SCRAPE_TOKEN"), "{err}");
        settings.metrics.scrape_token = SecretString::from("short");
        assert!(settings.validate().is_err());
    }

    #[test]
    fn every_section_is_validated_and_the_key_named() {
        type Spoil = fn(&mut Settings);
        let cases: [(&str, Spoil); 22] = [
            ("server.body_read_timeout_milliseconds", |s| {
                s.server.body_read_timeout = Duration::ZERO;
            }),
            ("streams.per_checkout_link", |s| s.streams.per_checkout_link = 0),
            ("streams.keepalive_milliseconds", |s| {
                s.streams.keepalive = Duration::ZERO;
            }),
            ("streams.max_lifetime_seconds", |s| {
                s.streams.max_lifetime = Duration::from_millis(200);
            }),
            ("checkout.link_secret", |s| {
                s.checkout.link_secret = SecretString::from("too short");
            }),
            ("checkout.link_grace_seconds", |s| {
                s.checkout.link_grace = Duration::from_secs(8 * 86_400);
            }),
            ("console.session_seconds", |s| {
                s.console.session = Duration::from_secs(5)
            }),
            ("providers.wechat.calls.rate_per_second", |s| {
                s.providers.wechat.calls.rate_per_second = 0
            }),
            ("providers.alipay.calls.max_concurrency", |s| {
                s.providers.alipay.calls.max_concurrency = 0
            }),
            ("providers.sandbox.calls.timeout_milliseconds", |s| {
                s.providers.sandbox.calls.timeout = Duration::ZERO;
            }),
            ("expiry.max_concurrent_passes", |s| s.expiry.max_concurrent_passes = 0),
            ("expiry.actor_reply_timeout_milliseconds", |s| {
                s.expiry.actor_reply_timeout = Duration::from_millis(1);
            }),
            ("outbox.retry_schedule_milliseconds", |s| {
                s.outbox.retry_schedule.clear()
            }),
            ("orders.default_ttl_seconds", |s| {
                s.orders.default_ttl = s.orders.max_ttl * 2
            }),
            ("database.max_connections", |s| s.database.max_connections = 0),
            // A cluster shares one PostgreSQL and keeps its leases in Redis.
            ("cluster.enabled needs redis.url", |s| s.cluster.enabled = true),
            ("cluster.enabled needs PostgreSQL", |s| {
                s.cluster.enabled = true;
                s.redis.url = SecretString::from("redis://127.0.0.1:6379");
            }),
            ("cluster.tick_milliseconds", |s| {
                s.cluster.enabled = true;
                s.cluster.tick = s.cluster.lease_ttl;
            }),
            ("cluster.partitions", |s| {
                s.cluster.enabled = true;
                s.cluster.partitions = 0;
            }),
            ("cluster.secret (PAYWARDEN__CLUSTER__SECRET)", |s| {
                s.cluster.enabled = true;
                s.redis.url = SecretString::from("redis://127.0.0.1:6379");
                s.database.url = SecretString::from("postgres://postgres@127.0.0.1/paywarden");
                s.cluster.secret = SecretString::from("short");
            }),
            ("outbox.webhooks.merchant_id", |s| {
                s.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
                    url: "https://erp.example.com/events".to_owned(),
                    secret: SecretString::from("whsec_at_least_16_characters"),
                    event_types: Vec::new(),
                    merchant_id: Some("not a merchant".to_owned()),
                    signature_scheme: entities::SignatureScheme::PaywardenV1,
                }];
            }),
            ("outbox.webhooks.url", |s| {
                let webhook = actors::outbox::ConfiguredWebhook {
                    url: "https://erp.example.com/events".to_owned(),
                    secret: SecretString::from("whsec_at_least_16_characters"),
                    event_types: Vec::new(),
                    merchant_id: Some("acme".to_owned()),
                    signature_scheme: entities::SignatureScheme::PaywardenV1,
                };
                let mut global = webhook.clone();
                global.merchant_id = None;
                s.outbox.webhooks = vec![webhook, global];
            }),
        ];
        for (key, spoil) in cases {
            let mut settings = dev();
            settings.validate().unwrap();
            spoil(&mut settings);
            let err = settings.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn environment_values_keep_their_text_and_still_fill_typed_fields() {
        // nextest runs each test in its own process, so these variables reach no other test.
        let vars = [
            ("PAYWARDEN__AUTH__ADMIN_TOKEN", "00123456"),
            ("PAYWARDEN__SERVER__WORKERS", "3"),
            ("PAYWARDEN__PROVIDERS__SANDBOX__ENABLED", "false"),
            ("PAYWARDEN__OUTBOX__RETRY_SCHEDULE_MILLISECONDS", "100,200"),
        ];
        for (key, value) in vars {
            std::env::set_var(key, value);
        }
        let loaded = Settings::load_from(None, Profile::Development);
        for (key, _) in vars {
            std::env::remove_var(key);
        }
        let settings = loaded.unwrap();
        assert_eq!(settings.auth.admin_token.expose_secret(), "00123456");
        assert_eq!(settings.server.workers, 3);
        assert!(!settings.providers.sandbox.enabled);
        assert_eq!(
            settings.outbox.retry_schedule,
            vec![Duration::from_millis(100), Duration::from_millis(200)]
        );
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let dev = dev();
        let printed = format!("{dev:?}");
        assert!(!printed.contains(DEV_ADMIN_TOKEN), "{printed}");
        assert!(!printed.contains(DEV_CLIENT_KEY), "{printed}");
        assert!(!printed.contains(DEV_SANDBOX_SECRET), "{printed}");
    }

    #[test]
    fn unknown_profile_is_named_in_the_error() {
        let err = Profile::parse("staging").unwrap_err();
        assert!(err.to_string().contains("staging"), "{err}");
        assert!(
            err.to_string().contains("production"),
            "the known ones are listed: {err}"
        );
    }
}
