//! The provider actors of merchants' accounts: built on first use from the account's row (its
//! secrets opened by the vault), cached (bounded, least recently used first out), each with a
//! call budget of its own, so one merchant's traffic or failing account neither starves nor
//! trips another's.
//!
//! A cached account is checked against its row at most every [`FRESHNESS`]: a changed account
//! (a rotated key, a new endpoint) is rebuilt on every node within that, with no message
//! between the nodes to lose.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entities::{provider_accounts, Provider};
use lru::LruCache;
use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};

use super::{BudgetShare, ProviderActor, ProviderCallSettings, ProviderMailboxes};
use crate::gateway::section::GatewayContext;
use crate::gateway::{Gateway, GatewayError};
use crate::metrics::ProviderMetrics;
use crate::store::accounts;
use crate::vault::Vault;

/// How long a cached account is used before its row is looked at again.
pub const FRESHNESS: Duration = Duration::from_millis(500);

/// What building the accounts' actors takes.
pub struct AccountSource {
    pub db: DatabaseConnection,
    pub vault: Option<Arc<Vault>>,
    /// Where notifications come back (`{base_url}/webhooks/{provider}/{account_id}`).
    pub base_url: String,
    pub http: reqwest::Client,
    /// Each provider's call budget (`[providers.<name>.calls]`): every account gets one of
    /// these of its own.
    pub calls: HashMap<Provider, ProviderCallSettings>,
    pub metrics: Option<Arc<ProviderMetrics>>,
    /// Accounts kept built at once.
    pub capacity: usize,
}

#[derive(Clone)]
struct Built {
    provider: Provider,
    mailboxes: Arc<ProviderMailboxes>,
    gateway: Arc<dyn Gateway>,
    updated_at: DateTime<Utc>,
    checked: Instant,
}

/// The merchants' accounts' provider actors, built on first use.
pub struct AccountProviders {
    source: AccountSource,
    /// The one thread every account's actor runs on (their calls are I/O; signing runs on the
    /// blocking pool), so building accounts adds no thread.
    arbiter: actix::ArbiterHandle,
    built: Mutex<LruCache<Arc<str>, Built>>,
    share: Mutex<Option<BudgetShare>>,
}

impl AccountProviders {
    pub fn new(source: AccountSource) -> Self {
        let capacity = NonZeroUsize::new(source.capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            source,
            arbiter: actix::Arbiter::new().handle(),
            built: Mutex::new(LruCache::new(capacity)),
            share: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, Built>> {
        self.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many accounts are built now.
    pub fn built(&self) -> usize {
        self.lock().len()
    }

    /// The actor's mailboxes of `provider`'s account `account_id`.
    ///
    /// # Errors
    /// [`GatewayError::NotConfigured`] when there is no such account of that provider or it
    /// does not open (the cause is logged).
    pub async fn mailboxes(
        &self,
        provider: Provider,
        account_id: &Arc<str>,
    ) -> Result<Arc<ProviderMailboxes>, GatewayError> {
        Ok(self.get(provider, account_id).await?.mailboxes)
    }

    /// The gateway of `provider`'s account `account_id` (to verify its notifications).
    ///
    /// # Errors
    /// As [`AccountProviders::mailboxes`].
    pub async fn gateway(&self, provider: Provider, account_id: &Arc<str>) -> Result<Arc<dyn Gateway>, GatewayError> {
        Ok(self.get(provider, account_id).await?.gateway)
    }

    async fn get(&self, provider: Provider, account_id: &Arc<str>) -> Result<Built, GatewayError> {
        let cached = self.lock().get(account_id).cloned();
        if let Some(built) = &cached {
            if built.provider != provider {
                return Err(GatewayError::NotConfigured(provider));
            }
            if built.checked.elapsed() < FRESHNESS {
                return Ok(built.clone());
            }
        }
        let updated_at: Option<DateTime<Utc>> = provider_accounts::Entity::find_by_id(account_id.as_ref())
            .select_only()
            .column(provider_accounts::Column::UpdatedAt)
            .into_tuple()
            .one(&self.source.db)
            .await
            .map_err(|err| GatewayError::Transport(format!("reading provider account {account_id}: {err}")))?;
        let Some(updated_at) = updated_at else {
            return Err(GatewayError::NotConfigured(provider));
        };
        if let Some(mut built) = cached.filter(|built| built.updated_at == updated_at) {
            built.checked = Instant::now();
            self.lock().put(account_id.clone(), built.clone());
            return Ok(built);
        }
        let built = self.build(provider, account_id).await?;
        self.lock().put(account_id.clone(), built.clone());
        Ok(built)
    }

    async fn build(&self, provider: Provider, account_id: &str) -> Result<Built, GatewayError> {
        let unusable = |why: String| {
            tracing::error!(account_id, provider = provider.as_str(), reason = %why, "a provider account cannot be used");
            GatewayError::NotConfigured(provider)
        };
        let row = provider_accounts::Entity::find_by_id(account_id)
            .one(&self.source.db)
            .await
            .map_err(|err| GatewayError::Transport(format!("reading provider account {account_id}: {err}")))?
            .filter(|row| row.provider == provider)
            .ok_or(GatewayError::NotConfigured(provider))?;
        let vault = self
            .source
            .vault
            .as_deref()
            .ok_or_else(|| unusable("secrets.master_key is not set".to_owned()))?;
        let config = accounts::open(vault, &row).map_err(|err| unusable(err.to_string()))?;
        let context = GatewayContext {
            base_url: &self.source.base_url,
            http: &self.source.http,
        };
        let gateway = config
            .gateway(account_id, &context)
            .map_err(|err| unusable(err.to_string()))?;
        let calls = self
            .source
            .calls
            .get(&provider)
            .cloned()
            .ok_or_else(|| unusable("no call budget for the provider".to_owned()))?;
        let mut actor = ProviderActor::new(gateway.clone(), calls);
        if let Some(metrics) = &self.source.metrics {
            actor = actor.with_call_metrics(metrics.clone());
        }
        let limits = actor.limits();
        if let Some(share) = *self.share.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            limits.set_share(share);
        }
        let addr = actor.start_supervised_in(&self.arbiter);
        tracing::info!(account_id, provider = provider.as_str(), "provider account ready");
        Ok(Built {
            provider,
            mailboxes: Arc::new(ProviderMailboxes::of(&addr, limits)),
            gateway,
            updated_at: row.updated_at,
            checked: Instant::now(),
        })
    }

    /// This node's share of every account's budget, now and for accounts built later.
    pub fn share_budget(&self, share: BudgetShare) {
        *self.share.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(share);
        for (_, built) in self.lock().iter() {
            built.mailboxes.limits.set_share(share);
        }
    }
}
