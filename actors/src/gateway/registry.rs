//! What paywarden knows of each provider besides its calls: its name for buyers, the
//! currencies it takes, where its notifications arrive, its configuration section. Each
//! provider's folder declares its own [`ProviderInfo`] and its section type; [`PROVIDERS`] is
//! the line that registers it, [`ProviderSettings`] holds its section, and every list of
//! providers (the checkout page, the engine, the routes, start-up, the configuration checks)
//! is read from here.

use entities::Provider;
use serde::Deserialize;

use super::alipay::AlipayProviderSettings;
use super::sandbox::SandboxProviderSettings;
use super::section::ProviderSection;
use super::wechat::WechatProviderSettings;
pub use super::ProviderInfo;

/// Every provider paywarden speaks, in the order lists show them.
pub const PROVIDERS: [&ProviderInfo; 3] = [&super::sandbox::INFO, &super::wechat::INFO, &super::alipay::INFO];

/// The facts of `provider`.
pub fn info(provider: Provider) -> &'static ProviderInfo {
    PROVIDERS
        .iter()
        .find(|info| info.provider == provider)
        .copied()
        // Every provider is registered (the test below); the sandbox's facts are the safest
        // fallback for a build that forgot one: it names itself and takes any currency.
        .unwrap_or(&super::sandbox::INFO)
}

/// `[providers]`: one section per registered provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub sandbox: SandboxProviderSettings,
    pub wechat: WechatProviderSettings,
    pub alipay: AlipayProviderSettings,
}

impl ProviderSettings {
    /// The section of `provider`.
    pub fn section(&self, provider: Provider) -> &dyn ProviderSection {
        match provider {
            Provider::Sandbox => &self.sandbox,
            Provider::Wechat => &self.wechat,
            Provider::Alipay => &self.alipay,
        }
    }

    /// Every registered provider with its section's key (`providers.<name>`) and its section,
    /// in the registry's order.
    pub fn sections(&self) -> impl Iterator<Item = (&'static ProviderInfo, String, &dyn ProviderSection)> {
        PROVIDERS
            .iter()
            .map(move |info| (*info, section_key(info.provider), self.section(info.provider)))
    }
}

/// The configuration key of `provider`'s section.
pub fn section_key(provider: Provider) -> String {
    format!("providers.{}", provider.as_str())
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use entities::Currency;

    use super::*;

    #[test]
    fn every_provider_is_registered_once_with_its_own_route() {
        for provider in Provider::iter() {
            let entries: Vec<_> = PROVIDERS.iter().filter(|info| info.provider == provider).collect();
            assert_eq!(entries.len(), 1, "{provider:?} must be in PROVIDERS once");
        }
        let mut paths: Vec<_> = PROVIDERS.iter().map(|info| info.webhook_path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), PROVIDERS.len(), "one notification route each");
    }

    #[test]
    fn the_real_providers_take_only_cny() {
        assert!(info(Provider::Sandbox).accepts(Currency::Usd));
        for provider in [Provider::Wechat, Provider::Alipay] {
            assert!(info(provider).accepts(Currency::Cny));
            assert!(!info(provider).accepts(Currency::Usd), "{provider:?}");
        }
    }
}
