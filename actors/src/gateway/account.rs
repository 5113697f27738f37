//! A merchant's account at a provider, as data: what an operator sends
//! (`POST /admin/merchants/{id}/provider-accounts`), how it is checked, which of its fields
//! are public and which are sealed at rest, and the gateway it makes.
//!
//! The fields are those of the provider's configuration section, given inline (PEM text):
//! - WeChat Pay (public-key mode): `mchid`, `appid`, `merchant_serial_no`,
//!   `merchant_private_key_pem`, `platform_public_key_pem`, `platform_serial`, `apiv3_key`,
//!   optional `api_base_url` and `merchant_certificate_pem` (when given, the private key must
//!   be the certificate's and its serial `merchant_serial_no`);
//! - Alipay: `app_id`, `app_private_key_pem`, `alipay_public_key_pem`, optional `gateway_url`
//!   and `seller_id`;
//! - the sandbox: `webhook_secret`.
//!
//! The secret fields (private keys, the APIv3 key, the sandbox's secret) are
//! [`SecretString`]s: no `Debug` output, no `Serialize`; [`AccountConfig::split`] hands them
//! out only as the JSON the vault seals.

use std::sync::Arc;

use entities::Provider;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::alipay::{AlipayConfigError, AlipayGateway, AlipaySettings};
use super::sandbox::{SandboxGateway, SandboxSettings};
use super::section::GatewayContext;
use super::wechat::crypto::{certificate_public_key, certificate_serial, KeyError, RsaSigningKey};
use super::wechat::{WechatConfigError, WechatGateway, WechatPlatformKeySettings, WechatSettings};
use super::Gateway;
use crate::domain::ValidationError;

/// The code of every refused account configuration.
pub const INVALID: &str = "invalid_provider_config";

fn invalid(field: &str, message: impl std::fmt::Display) -> ValidationError {
    ValidationError::new(INVALID, format!("config.{field}: {message}"))
}

/// Where an account's provider endpoints may point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// `https://` only (production, the test-less profiles).
    HttpsOnly,
    /// `http://` too: the development and simulator profiles, the tests.
    AllowHttp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatAccount {
    pub mchid: String,
    pub appid: String,
    pub merchant_serial_no: String,
    pub merchant_private_key_pem: SecretString,
    pub platform_public_key_pem: String,
    pub platform_serial: String,
    pub apiv3_key: SecretString,
    #[serde(default)]
    pub api_base_url: Option<String>,
    #[serde(default)]
    pub merchant_certificate_pem: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipayAccount {
    pub app_id: String,
    pub app_private_key_pem: SecretString,
    pub alipay_public_key_pem: String,
    #[serde(default)]
    pub gateway_url: Option<String>,
    #[serde(default)]
    pub seller_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxAccount {
    pub webhook_secret: SecretString,
}

/// One account's whole configuration, secrets included.
pub enum AccountConfig {
    Wechat(WechatAccount),
    Alipay(AlipayAccount),
    Sandbox(SandboxAccount),
}

/// The secret field names of each provider: never shown, sealed at rest.
fn secret_fields(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Wechat => &["merchant_private_key_pem", "apiv3_key"],
        Provider::Alipay => &["app_private_key_pem"],
        Provider::Sandbox => &["webhook_secret"],
    }
}

/// What checking an account found: the fingerprint of its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// SHA-256 of the merchant's (app's) public key, SPKI DER, hex: the key the provider
    /// holds for it, so an operator can match the two; for the sandbox, of its secret's
    /// digest.
    pub fingerprint: String,
}

impl AccountConfig {
    /// The configuration `config` gives for `provider`.
    ///
    /// # Errors
    /// `invalid_provider_config`: not an object of that provider's fields (a missing or
    /// unknown field, a wrong type).
    pub fn parse(provider: Provider, config: Value) -> Result<Self, ValidationError> {
        if !config.is_object() {
            return Err(ValidationError::new(INVALID, "config must be an object"));
        }
        let refused = |err: serde_json::Error| ValidationError::new(INVALID, format!("config: {}", shape_error(&err)));
        Ok(match provider {
            Provider::Wechat => Self::Wechat(serde_json::from_value(config).map_err(refused)?),
            Provider::Alipay => Self::Alipay(serde_json::from_value(config).map_err(refused)?),
            Provider::Sandbox => Self::Sandbox(serde_json::from_value(config).map_err(refused)?),
        })
    }

    /// The configuration stored as `public` (the row's `config`) and `secrets` (opened).
    ///
    /// # Errors
    /// `invalid_provider_config` when the two do not make a configuration (never for what
    /// [`AccountConfig::split`] wrote).
    pub fn join(provider: Provider, public: &str, secrets: &SecretString) -> Result<Self, ValidationError> {
        let corrupt = || ValidationError::new(INVALID, "the stored configuration does not read");
        let mut all: Map<String, Value> = serde_json::from_str(public).map_err(|_| corrupt())?;
        let secrets: Map<String, Value> = serde_json::from_str(secrets.expose_secret()).map_err(|_| corrupt())?;
        all.extend(secrets);
        Self::parse(provider, Value::Object(all))
    }

    /// `patch`'s fields over this configuration's (a key rotation sends the new key alone).
    ///
    /// # Errors
    /// `invalid_provider_config`: `patch` is not an object, or the result is not a
    /// configuration of the provider.
    pub fn patched(&self, patch: Value) -> Result<Self, ValidationError> {
        let Value::Object(patch) = patch else {
            return Err(ValidationError::new(INVALID, "config must be an object"));
        };
        let (public, secrets) = self.split();
        let mut all = public;
        all.extend(
            secrets
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.expose_secret().to_owned()))),
        );
        all.extend(patch);
        let patched = Self::parse(self.provider(), Value::Object(all))?;
        for ((field, before), (_, after)) in self.identity().into_iter().zip(patched.identity()) {
            if before != after {
                return Err(invalid(
                    field,
                    "an account's identity at the provider does not change (its trades, refunds and bills live there); add a new account instead",
                ));
            }
        }
        Ok(patched)
    }

    /// The fields that name the account at the provider: every trade started there lives
    /// there, so a patch may change keys, serials and endpoints, never these.
    fn identity(&self) -> Vec<(&'static str, &str)> {
        match self {
            Self::Wechat(account) => vec![("mchid", &account.mchid), ("appid", &account.appid)],
            Self::Alipay(account) => vec![("app_id", &account.app_id)],
            Self::Sandbox(_) => Vec::new(),
        }
    }

    pub fn provider(&self) -> Provider {
        match self {
            Self::Wechat(_) => Provider::Wechat,
            Self::Alipay(_) => Provider::Alipay,
            Self::Sandbox(_) => Provider::Sandbox,
        }
    }

    /// The public fields (stored in the clear, shown by `GET`), and the secret ones.
    pub fn split(&self) -> (Map<String, Value>, Vec<(String, SecretString)>) {
        let mut public = Map::new();
        let mut put = |name: &str, value: &str| {
            public.insert(name.to_owned(), Value::String(value.to_owned()));
        };
        let secrets: Vec<(&str, &SecretString)> = match self {
            Self::Wechat(account) => {
                put("mchid", &account.mchid);
                put("appid", &account.appid);
                put("merchant_serial_no", &account.merchant_serial_no);
                put("platform_public_key_pem", &account.platform_public_key_pem);
                put("platform_serial", &account.platform_serial);
                if let Some(url) = &account.api_base_url {
                    put("api_base_url", url);
                }
                if let Some(certificate) = &account.merchant_certificate_pem {
                    put("merchant_certificate_pem", certificate);
                }
                vec![
                    ("merchant_private_key_pem", &account.merchant_private_key_pem),
                    ("apiv3_key", &account.apiv3_key),
                ]
            }
            Self::Alipay(account) => {
                put("app_id", &account.app_id);
                put("alipay_public_key_pem", &account.alipay_public_key_pem);
                if let Some(url) = &account.gateway_url {
                    put("gateway_url", url);
                }
                if let Some(seller) = &account.seller_id {
                    put("seller_id", seller);
                }
                vec![("app_private_key_pem", &account.app_private_key_pem)]
            }
            Self::Sandbox(account) => vec![("webhook_secret", &account.webhook_secret)],
        };
        debug_assert_eq!(
            secrets.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            secret_fields(self.provider())
        );
        let secrets = secrets
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect();
        (public, secrets)
    }

    /// The secret fields as one JSON object, for the vault to seal.
    pub fn secrets_json(&self) -> SecretString {
        let (_, secrets) = self.split();
        let object: Map<String, Value> = secrets
            .into_iter()
            .map(|(name, value)| (name, Value::String(value.expose_secret().to_owned())))
            .collect();
        SecretString::from(Value::Object(object).to_string())
    }

    /// Checks every field: required ones set, keys that parse, a private key that is its
    /// certificate's (when one is given), an APIv3 key of 32 bytes, endpoints that are URLs
    /// (`https://` under [`EndpointPolicy::HttpsOnly`]).
    ///
    /// # Errors
    /// `invalid_provider_config` naming the first field refused; never quoting a secret.
    pub fn check(&self, policy: EndpointPolicy) -> Result<Checked, ValidationError> {
        match self {
            Self::Wechat(account) => {
                for (field, value) in [
                    ("mchid", &account.mchid),
                    ("appid", &account.appid),
                    ("merchant_serial_no", &account.merchant_serial_no),
                    ("platform_serial", &account.platform_serial),
                ] {
                    required(field, value)?;
                }
                if account.apiv3_key.expose_secret().len() != 32 {
                    return Err(invalid(
                        "apiv3_key",
                        "must be 32 bytes (the APIv3 key set in the merchant platform)",
                    ));
                }
                if let Some(url) = &account.api_base_url {
                    endpoint("api_base_url", url, policy)?;
                }
                let key = RsaSigningKey::from_pem(account.merchant_private_key_pem.expose_secret())
                    .map_err(|err| invalid("merchant_private_key_pem", key_error(&err)))?;
                super::wechat::crypto::RsaVerifyingKey::from_pem(&account.platform_public_key_pem)
                    .map_err(|err| invalid("platform_public_key_pem", key_error(&err)))?;
                if let Some(certificate) = &account.merchant_certificate_pem {
                    let serial = certificate_serial(certificate)
                        .map_err(|err| invalid("merchant_certificate_pem", key_error(&err)))?;
                    if !serial.eq_ignore_ascii_case(account.merchant_serial_no.trim_start_matches('0'))
                        && !serial.eq_ignore_ascii_case(&account.merchant_serial_no)
                    {
                        return Err(invalid(
                            "merchant_serial_no",
                            format!("is not the serial of merchant_certificate_pem ({serial})"),
                        ));
                    }
                    let public = certificate_public_key(certificate)
                        .map_err(|err| invalid("merchant_certificate_pem", key_error(&err)))?;
                    if !key.is_key_of(&public) {
                        return Err(invalid(
                            "merchant_private_key_pem",
                            "is not the private key of merchant_certificate_pem (the certificate of merchant_serial_no)",
                        ));
                    }
                }
                Ok(Checked {
                    fingerprint: key.public_key_fingerprint(),
                })
            }
            Self::Alipay(account) => {
                required("app_id", &account.app_id)?;
                if let Some(url) = &account.gateway_url {
                    endpoint("gateway_url", url, policy)?;
                }
                let key = RsaSigningKey::from_pem(account.app_private_key_pem.expose_secret())
                    .map_err(|err| invalid("app_private_key_pem", key_error(&err)))?;
                super::wechat::crypto::RsaVerifyingKey::from_pem(&account.alipay_public_key_pem)
                    .map_err(|err| invalid("alipay_public_key_pem", key_error(&err)))?;
                Ok(Checked {
                    fingerprint: key.public_key_fingerprint(),
                })
            }
            Self::Sandbox(account) => {
                if account.webhook_secret.expose_secret().len() < 8 {
                    return Err(invalid("webhook_secret", "must be at least 8 characters"));
                }
                let mut digest = Sha256::new();
                digest.update(b"paywarden sandbox account\0");
                digest.update(account.webhook_secret.expose_secret().as_bytes());
                Ok(Checked {
                    fingerprint: hex::encode(digest.finalize()),
                })
            }
        }
    }

    /// The gateway of this account; its notifications go to `/webhooks/{provider}/{account_id}`.
    ///
    /// # Errors
    /// A key that does not parse ([`AccountConfig::check`] refuses those first).
    pub fn gateway(&self, account_id: &str, context: &GatewayContext<'_>) -> Result<Arc<dyn Gateway>, ValidationError> {
        let notify_url = format!(
            "{}/webhooks/{}/{account_id}",
            context.base_url,
            super::registry::info(self.provider()).webhook_path
        );
        Ok(match self {
            Self::Wechat(account) => Arc::new(
                WechatGateway::new(
                    WechatSettings {
                        mchid: account.mchid.clone(),
                        appid: account.appid.clone(),
                        merchant_serial_no: account.merchant_serial_no.clone(),
                        merchant_private_key_pem: account.merchant_private_key_pem.clone(),
                        platform_keys: vec![WechatPlatformKeySettings {
                            serial: Some(account.platform_serial.clone()),
                            pem: account.platform_public_key_pem.clone(),
                        }],
                        apiv3_key: account.apiv3_key.clone(),
                        api_base_url: account
                            .api_base_url
                            .clone()
                            .unwrap_or_else(|| super::wechat::DEFAULT_API_BASE_URL.to_owned()),
                        notify_url,
                        close_retry_after_seconds: super::wechat::DEFAULT_CLOSE_RETRY_AFTER_SECONDS,
                    },
                    context.http.clone(),
                )
                .map_err(|err| match err {
                    WechatConfigError::MerchantKey(err) => invalid("merchant_private_key_pem", key_error(&err)),
                    WechatConfigError::PlatformKey { source, .. } => {
                        invalid("platform_public_key_pem", key_error(&source))
                    }
                    WechatConfigError::NoPlatformKey => invalid("platform_public_key_pem", "must be set"),
                    WechatConfigError::ApiV3Key(err) => invalid("apiv3_key", key_error(&err)),
                })?,
            ),
            Self::Alipay(account) => Arc::new(
                AlipayGateway::new(
                    AlipaySettings {
                        app_id: account.app_id.clone(),
                        app_private_key_pem: account.app_private_key_pem.clone(),
                        alipay_public_key_pem: account.alipay_public_key_pem.clone(),
                        gateway_url: account
                            .gateway_url
                            .clone()
                            .unwrap_or_else(|| super::alipay::DEFAULT_GATEWAY_URL.to_owned()),
                        notify_url,
                        seller_id: account.seller_id.clone(),
                    },
                    context.http.clone(),
                )
                .map_err(|err| match err {
                    AlipayConfigError::AppKey(err) => invalid("app_private_key_pem", key_error(&err)),
                    AlipayConfigError::AlipayKey(err) => invalid("alipay_public_key_pem", key_error(&err)),
                })?,
            ),
            Self::Sandbox(account) => SandboxGateway::new(
                SandboxSettings {
                    secret: account.webhook_secret.clone(),
                    notify_url,
                    public_base_url: context.base_url.to_owned(),
                    notify_retry_delays: super::sandbox::DEFAULT_NOTIFY_RETRY_DELAYS.to_vec(),
                },
                context.http.clone(),
            ),
        })
    }
}

/// What is wrong with a configuration's shape, without a value of it: serde's own message for
/// a missing or unknown field (it names the field only); otherwise only that a field is not a
/// string, since serde would quote the value, which may be a secret.
fn shape_error(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let message = message.split(" at line ").next().unwrap_or_default();
    if message.starts_with("missing field") || message.starts_with("unknown field") {
        message.to_owned()
    } else {
        "every field is a string (a PEM, an id, a key)".to_owned()
    }
}

fn required(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(invalid(field, "must be 1 to 128 characters without control characters"));
    }
    Ok(())
}

fn endpoint(field: &str, value: &str, policy: EndpointPolicy) -> Result<(), ValidationError> {
    let url = url::Url::parse(value).map_err(|_| invalid(field, "must be an absolute URL"))?;
    let scheme_ok = match policy {
        EndpointPolicy::HttpsOnly => url.scheme() == "https",
        EndpointPolicy::AllowHttp => matches!(url.scheme(), "https" | "http"),
    };
    if !scheme_ok {
        return Err(invalid(field, "must be an https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "must not hold credentials"));
    }
    Ok(())
}

/// What is wrong with a key, without quoting it.
fn key_error(err: &KeyError) -> String {
    format!("{err}")
}

/// What a verification call found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The keys did what they are for.
    pub ok: bool,
    /// `trade_not_found` (the expected answer), `trade_found`, `refused` (the provider turned
    /// the call down: its code in `detail`), `unverified_answer` (its signature did not check
    /// out), `unreachable`, `failed`.
    pub outcome: &'static str,
    /// What this proves, for people; never a secret, never the provider's raw answer.
    pub detail: String,
}

/// Proves an account's keys work: queries `probe`, a trade number that does not exist, and
/// reads the answer the way every query is read (a signed answer is verified first).
pub async fn verify(gateway: &dyn Gateway, probe: entities::PayNo) -> Verification {
    use super::{GatewayError, TradeState};
    let provider = gateway.provider();
    match gateway.query(probe).await {
        Ok(answer) if answer.state == TradeState::NotFound => Verification {
            ok: true,
            outcome: "trade_not_found",
            detail: match provider {
                Provider::Wechat => format!(
                    "WeChat Pay accepted the request signed with merchant_private_key_pem under merchant_serial_no for this mchid and answered that trade {probe} does not exist (its error answers are unsigned: platform_public_key_pem is used from the first successful answer on, and apiv3_key from the first notification)"
                ),
                Provider::Alipay => format!(
                    "Alipay accepted the request signed with app_private_key_pem, and its signed answer that trade {probe} does not exist verified with alipay_public_key_pem"
                ),
                Provider::Sandbox => format!("the sandbox answered that trade {probe} does not exist"),
            },
        },
        Ok(_) => Verification {
            ok: true,
            outcome: "trade_found",
            detail: format!("the provider answered (its answer verified) and knows a trade {probe}"),
        },
        Err(GatewayError::Verification(_)) => Verification {
            ok: false,
            outcome: "unverified_answer",
            detail: "the provider answered, but its signature does not verify with the account's provider public key".to_owned(),
        },
        Err(GatewayError::Provider { code, .. }) => Verification {
            ok: false,
            outcome: "refused",
            detail: format!(
                "the provider refused the call with {}: check the account's ids and keys",
                code.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>()
            ),
        },
        Err(GatewayError::Timeout | GatewayError::Transport(_)) => Verification {
            ok: false,
            outcome: "unreachable",
            detail: "the provider could not be reached (check the endpoint URL)".to_owned(),
        },
        Err(other) => Verification {
            ok: false,
            outcome: "failed",
            detail: format!("the call failed: {}", other_kind(&other)),
        },
    }
}

fn other_kind(err: &super::GatewayError) -> &'static str {
    use super::GatewayError;
    match err {
        GatewayError::RateLimited => "the provider's rate limit",
        GatewayError::CircuitOpen | GatewayError::Busy { .. } => "the call budget is spent",
        GatewayError::NotConfigured(_) => "the provider is not configured",
        GatewayError::Crashed => "the call crashed",
        _ => "the answer could not be read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_takes_https_endpoints_only_and_no_credentials_in_them() {
        assert!(endpoint(
            "gateway_url",
            "https://openapi.alipay.com/gateway.do",
            EndpointPolicy::HttpsOnly
        )
        .is_ok());
        let http = endpoint("api_base_url", "http://127.0.0.1:9000", EndpointPolicy::HttpsOnly).unwrap_err();
        assert_eq!(http.code, INVALID);
        assert_eq!(http.message, "config.api_base_url: must be an https:// URL");
        assert!(endpoint("api_base_url", "http://127.0.0.1:9000", EndpointPolicy::AllowHttp).is_ok());
        assert!(endpoint("api_base_url", "ftp://example.com", EndpointPolicy::AllowHttp).is_err());
        let credentials =
            endpoint("gateway_url", "https://user:pw@example.com", EndpointPolicy::HttpsOnly).unwrap_err();
        assert!(!credentials.message.contains("pw@"), "{}", credentials.message);
        assert!(endpoint("gateway_url", "not a url", EndpointPolicy::AllowHttp).is_err());
    }

    #[test]
    fn a_patch_replaces_only_the_fields_it_names_and_secrets_never_reach_the_public_half() {
        let config = AccountConfig::parse(
            Provider::Sandbox,
            serde_json::json!({"webhook_secret": "whsec_first_secret"}),
        )
        .unwrap();
        let (public, secrets) = config.split();
        assert!(public.is_empty());
        assert_eq!(secrets.len(), 1);
        let patched = config
            .patched(serde_json::json!({"webhook_secret": "whsec_second_secret"}))
            .unwrap();
        assert!(patched.secrets_json().expose_secret().contains("whsec_second_secret"));
        assert!(config.patched(serde_json::json!({"unknown": 1})).is_err());
        let alipay = AccountConfig::Alipay(AlipayAccount {
            app_id: "2021000000000001".to_owned(),
            app_private_key_pem: SecretString::from("key".to_owned()),
            alipay_public_key_pem: "public".to_owned(),
            gateway_url: None,
            seller_id: None,
        });
        let Err(moved) = alipay.patched(serde_json::json!({"app_id": "2021000000000002"})) else {
            panic!("the app id was changed");
        };
        assert!(
            moved.message.starts_with("config.app_id: an account's identity"),
            "{}",
            moved.message
        );
        assert!(alipay
            .patched(serde_json::json!({"alipay_public_key_pem": "new"}))
            .is_ok());
        assert!(config.patched(serde_json::json!("not an object")).is_err());
        // A secret of the wrong type is not quoted back.
        let Err(wrong) = AccountConfig::parse(
            Provider::Sandbox,
            serde_json::json!({"webhook_secret": 987_654_321_012_u64}),
        ) else {
            panic!("a number is no secret string");
        };
        assert!(!wrong.message.contains("987654321012"), "{}", wrong.message);
    }
}
