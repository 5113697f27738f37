//! `[providers.sandbox]`: the built-in sandbox.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{SandboxGateway, SandboxSettings};
use crate::gateway::section::{GatewayContext, ProviderSection, SectionError};
use crate::gateway::Gateway;
use crate::provider::calls::ProviderCallSettings;
use crate::settings::{check, Invalid};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxProviderSettings {
    pub enabled: bool,
    /// HMAC key the sandbox signs its notifications with.
    pub webhook_secret: SecretString,
    /// Where the sandbox sends notifications. Empty: this service's `/webhooks/sandbox`.
    pub notify_url: String,
    /// Pauses between notification retries (the first try is immediate).
    #[serde(deserialize_with = "crate::settings::u64_list")]
    pub notify_retry_delays_milliseconds: Vec<u64>,
    pub calls: ProviderCallSettings,
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

impl ProviderSection for SandboxProviderSettings {
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
                self.webhook_secret.expose_secret().len() >= 8,
                section,
                "webhook_secret",
                "must be at least 8 characters when the sandbox is enabled",
            )?;
        }
        Ok(())
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretString)> {
        vec![("webhook_secret", &self.webhook_secret)]
    }

    fn gateway(&self, _section: &str, context: &GatewayContext<'_>) -> Result<Arc<dyn Gateway>, SectionError> {
        Ok(SandboxGateway::new(
            SandboxSettings {
                secret: self.webhook_secret.clone(),
                notify_url: context.notify_url(&self.notify_url, super::INFO.webhook_path),
                public_base_url: context.base_url.to_owned(),
                notify_retry_delays: self.notify_retry_delays(),
            },
            context.http.clone(),
        ))
    }
}
