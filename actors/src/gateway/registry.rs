//! What paywarden knows of each provider besides its calls: its name for buyers, the
//! currencies it takes, where its notifications arrive. Each provider's folder declares its own
//! [`ProviderInfo`]; [`PROVIDERS`] is the one line that registers it, and every list of
//! providers (the checkout page, the engine, the routes) is read from here.

use entities::Provider;

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
