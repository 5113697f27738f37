//! `[providers.alipay]`: the Alipay OpenAPI (RSA2) app. Secrets come from files or the
//! environment.

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{AlipayGateway, AlipaySettings};
use crate::gateway::section::{read_public, read_secret, GatewayContext, ProviderSection, SectionError};
use crate::gateway::Gateway;
use crate::provider::calls::ProviderCallSettings;
use crate::settings::{check, Invalid};

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
    pub calls: ProviderCallSettings,
}

impl AlipayProviderSettings {
    /// The gateway's settings, reading key files.
    ///
    /// # Errors
    /// A missing or unreadable key.
    pub fn gateway_settings(
        &self,
        section: &str,
        context: &GatewayContext<'_>,
    ) -> Result<AlipaySettings, SectionError> {
        Ok(AlipaySettings {
            app_id: self.app_id.clone(),
            app_private_key_pem: read_secret(
                &format!("{section}.app_private_key"),
                &self.app_private_key,
                &self.app_private_key_path,
            )?,
            alipay_public_key_pem: read_public(
                &format!("{section}.alipay_public_key"),
                &self.alipay_public_key,
                &self.alipay_public_key_path,
            )?,
            gateway_url: self.gateway_url.clone(),
            notify_url: context.notify_url(&self.notify_url, super::INFO.webhook_path),
            seller_id: (!self.seller_id.is_empty()).then(|| self.seller_id.clone()),
        })
    }
}

impl ProviderSection for AlipayProviderSettings {
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
                !self.app_id.is_empty(),
                section,
                "app_id",
                "must be set when Alipay is enabled",
            )?;
        }
        Ok(())
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretString)> {
        vec![("app_private_key", &self.app_private_key)]
    }

    fn gateway(&self, section: &str, context: &GatewayContext<'_>) -> Result<Arc<dyn Gateway>, SectionError> {
        let gateway =
            AlipayGateway::new(self.gateway_settings(section, context)?, context.http.clone()).map_err(|source| {
                SectionError::Keys {
                    section: section.to_owned(),
                    source: Box::new(source),
                }
            })?;
        Ok(Arc::new(gateway))
    }
}
