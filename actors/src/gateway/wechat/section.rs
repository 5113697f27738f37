//! `[providers.wechat]`: the WeChat Pay API v3 merchant account. Secrets come from files or
//! the environment.

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{WechatGateway, WechatPlatformKeySettings, WechatSettings, DEFAULT_CLOSE_RETRY_AFTER_SECONDS};
use crate::gateway::section::{read_public, read_secret, GatewayContext, ProviderSection, SectionError};
use crate::gateway::Gateway;
use crate::provider::calls::ProviderCallSettings;
use crate::settings::{check, Invalid};

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
    pub calls: ProviderCallSettings,
}

impl WechatProviderSettings {
    /// The gateway's settings, reading key files.
    ///
    /// # Errors
    /// A missing or unreadable key.
    pub fn gateway_settings(
        &self,
        section: &str,
        context: &GatewayContext<'_>,
    ) -> Result<WechatSettings, SectionError> {
        Ok(WechatSettings {
            mchid: self.mchid.clone(),
            appid: self.appid.clone(),
            merchant_serial_no: self.merchant_serial_no.clone(),
            merchant_private_key_pem: read_secret(
                &format!("{section}.merchant_private_key"),
                &self.merchant_private_key,
                &self.merchant_private_key_path,
            )?,
            platform_keys: vec![WechatPlatformKeySettings {
                serial: (!self.platform_serial.is_empty()).then(|| self.platform_serial.clone()),
                pem: read_public(
                    &format!("{section}.platform_public_key"),
                    &self.platform_public_key,
                    &self.platform_public_key_path,
                )?,
            }],
            apiv3_key: read_secret(&format!("{section}.apiv3_key"), &self.apiv3_key, &self.apiv3_key_path)?,
            api_base_url: self.api_base_url.clone(),
            notify_url: context.notify_url(&self.notify_url, super::INFO.webhook_path),
            close_retry_after_seconds: DEFAULT_CLOSE_RETRY_AFTER_SECONDS,
        })
    }
}

impl ProviderSection for WechatProviderSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn calls(&self) -> &ProviderCallSettings {
        &self.calls
    }

    fn validate(&self, section: &str) -> Result<(), Invalid> {
        self.calls.validate(&format!("{section}.calls"))?;
        if self.enabled {
            check(
                !self.mchid.is_empty() && !self.appid.is_empty(),
                section,
                "mchid",
                "mchid and appid must be set when WeChat Pay is enabled",
            )?;
        }
        Ok(())
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretString)> {
        vec![
            ("apiv3_key", &self.apiv3_key),
            ("merchant_private_key", &self.merchant_private_key),
        ]
    }

    fn gateway(&self, section: &str, context: &GatewayContext<'_>) -> Result<Arc<dyn Gateway>, SectionError> {
        let gateway =
            WechatGateway::new(self.gateway_settings(section, context)?, context.http.clone()).map_err(|source| {
                SectionError::Keys {
                    section: section.to_owned(),
                    source: Box::new(source),
                }
            })?;
        Ok(Arc::new(gateway))
    }
}
