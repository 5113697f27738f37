//! Merchants' provider accounts, as rows: public fields in the clear, secret fields sealed by
//! the [`Vault`] (bound to the account id), a fingerprint of the keys.
//!
//! Every write checks the whole configuration first ([`AccountConfig::check`]): nothing is
//! stored that would not make a gateway.

use chrono::Utc;
use entities::{provider_accounts, Provider};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use secrecy::SecretString;
use serde_json::Value;

use super::merchants::{self, MerchantError, SOURCE_API};
use crate::domain::{MerchantId, ValidationError};
use crate::gateway::account::{AccountConfig, EndpointPolicy};
use crate::vault::{Vault, VaultError};

/// What account writes need: the vault (absent: `secrets.master_key` is not set) and where
/// endpoints may point.
#[derive(Clone, Copy)]
pub struct Sealing<'a> {
    pub vault: Option<&'a Vault>,
    pub policy: EndpointPolicy,
}

impl Sealing<'_> {
    fn vault(&self) -> Result<&Vault, MerchantError> {
        self.vault.ok_or_else(|| {
            ValidationError::new(
                "secrets_not_configured",
                "secrets.master_key is not set: provider accounts cannot be stored (their secrets are sealed under it)",
            )
            .into()
        })
    }
}

/// A provider name a request gives.
///
/// # Errors
/// `unknown_provider`.
pub fn parse_provider(name: &str) -> Result<Provider, ValidationError> {
    crate::gateway::registry::PROVIDERS
        .iter()
        .map(|info| info.provider)
        .find(|provider| provider.as_str() == name)
        .ok_or_else(|| ValidationError::new("unknown_provider", format!("no provider '{name}'")))
}

/// A new account of an enabled merchant, checked, its secrets sealed.
///
/// # Errors
/// An unknown provider, a configuration refused (`invalid_provider_config` naming the field),
/// an unknown or disabled merchant, no master key, or the database. Nothing is stored then.
pub async fn create(
    db: &DatabaseConnection,
    sealing: Sealing<'_>,
    merchant: &MerchantId,
    provider: &str,
    config: Value,
) -> Result<provider_accounts::Model, MerchantError> {
    let provider = parse_provider(provider)?;
    if let (EndpointPolicy::HttpsOnly, Some(reason)) = (
        sealing.policy,
        crate::gateway::registry::info(provider).refused_in_production,
    ) {
        return Err(ValidationError::new(
            "provider_unavailable",
            format!(
                "the production profile refuses {} accounts ({reason})",
                provider.as_str()
            ),
        )
        .into());
    }
    let config = AccountConfig::parse(provider, config)?;
    let checked = config.check(sealing.policy)?;
    let vault = sealing.vault()?;
    enabled_merchant(db, merchant).await?;
    let account_id = format!("acct_{}", uuid::Uuid::new_v4().simple());
    let (public, _) = config.split();
    let now = Utc::now();
    let row = provider_accounts::Model {
        secrets: vault.seal(
            secrecy::ExposeSecret::expose_secret(&config.secrets_json()),
            &account_id,
        ),
        account_id,
        merchant_id: merchant.as_str().to_owned(),
        provider,
        enabled: true,
        source: SOURCE_API.to_owned(),
        config: Value::Object(public).to_string(),
        fingerprint: checked.fingerprint,
        created_at: now,
        updated_at: now,
        disabled_at: None,
    };
    provider_accounts::Entity::insert(provider_accounts::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row)
}

async fn enabled_merchant(db: &DatabaseConnection, merchant: &MerchantId) -> Result<(), MerchantError> {
    if merchants::get(db, merchant).await?.enabled {
        Ok(())
    } else {
        Err(ValidationError::new(
            "merchant_disabled",
            format!("merchant {merchant} is disabled: no provider account can be added to it"),
        )
        .into())
    }
}

/// A merchant's accounts, oldest first.
///
/// # Errors
/// An unknown merchant, or the database.
pub async fn list(
    db: &DatabaseConnection,
    merchant: &MerchantId,
) -> Result<Vec<provider_accounts::Model>, MerchantError> {
    merchants::get(db, merchant).await?;
    Ok(provider_accounts::Entity::find()
        .filter(provider_accounts::Column::MerchantId.eq(merchant.as_str()))
        .order_by_asc(provider_accounts::Column::CreatedAt)
        .order_by_asc(provider_accounts::Column::AccountId)
        .all(db)
        .await?)
}

/// One account of a merchant (another merchant's is not found).
///
/// # Errors
/// `AccountNotFound`, or the database.
pub async fn get(
    db: &DatabaseConnection,
    merchant: &MerchantId,
    account_id: &str,
) -> Result<provider_accounts::Model, MerchantError> {
    provider_accounts::Entity::find_by_id(account_id)
        .filter(provider_accounts::Column::MerchantId.eq(merchant.as_str()))
        .one(db)
        .await?
        .ok_or(MerchantError::AccountNotFound)
}

/// The whole configuration of a stored account, its secrets opened.
///
/// # Errors
/// The row's secrets do not open under the vault's keys, or do not read.
pub fn open(vault: &Vault, row: &provider_accounts::Model) -> Result<AccountConfig, OpenError> {
    let secrets: SecretString = vault.open(&row.secrets, &row.account_id)?;
    Ok(AccountConfig::join(row.provider, &row.config, &secrets)?)
}

/// Why a stored account did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Config(#[from] ValidationError),
}

/// Replaces the fields `patch` names (a key rotation sends the new key alone), checks the
/// whole, seals it anew.
///
/// # Errors
/// As [`create`]; nothing is changed then.
pub async fn patch(
    db: &DatabaseConnection,
    sealing: Sealing<'_>,
    merchant: &MerchantId,
    account_id: &str,
    patch: Value,
) -> Result<provider_accounts::Model, MerchantError> {
    let vault = sealing.vault()?;
    let row = get(db, merchant, account_id).await?;
    let current = open(vault, &row).map_err(|err| {
        MerchantError::Db(DbErr::Custom(format!(
            "provider account {account_id} does not open: {err}"
        )))
    })?;
    let config = current.patched(patch)?;
    let checked = config.check(sealing.policy)?;
    let (public, _) = config.split();
    let mut update = provider_accounts::ActiveModel::from(row);
    update.config = Set(Value::Object(public).to_string());
    update.secrets = Set(vault.seal(secrecy::ExposeSecret::expose_secret(&config.secrets_json()), account_id));
    update.fingerprint = Set(checked.fingerprint);
    update.updated_at = Set(Utc::now());
    Ok(provider_accounts::Entity::update(update).exec(db).await?)
}

/// Disables an account: no new attempt is started at it (trades already started there are
/// still followed through it).
///
/// # Errors
/// `AccountNotFound`, or the database.
pub async fn disable(
    db: &DatabaseConnection,
    merchant: &MerchantId,
    account_id: &str,
) -> Result<provider_accounts::Model, MerchantError> {
    provider_accounts::Entity::update_many()
        .col_expr(provider_accounts::Column::Enabled, false.into())
        .col_expr(provider_accounts::Column::DisabledAt, Some(Utc::now()).into())
        .filter(provider_accounts::Column::AccountId.eq(account_id))
        .filter(provider_accounts::Column::MerchantId.eq(merchant.as_str()))
        .filter(provider_accounts::Column::Enabled.eq(true))
        .exec(db)
        .await?;
    get(db, merchant, account_id).await
}

/// Where a new attempt of a merchant at a provider goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This account of the merchant's.
    Account(String),
    /// The merchant has no account of the provider at all: the deployment's configured
    /// provider serves it, if there is one.
    Deployment,
    /// The merchant has accounts of the provider, none enabled: nowhere (never the
    /// deployment's own account, which is another legal entity's).
    Nowhere,
}

/// Where `merchant_id`'s new attempt at `provider` goes: `account_id` when given (it must be one
/// of the merchant's enabled accounts of that provider), else the merchant's oldest enabled
/// one; the deployment's configured provider only for a merchant with no account of it at all.
///
/// # Errors
/// `invalid_field` for an `account_id` that is not one of those, or the database.
pub async fn choose(
    db: &DatabaseConnection,
    merchant_id: &str,
    provider: Provider,
    account_id: Option<&str>,
) -> Result<Choice, crate::error::OrderError> {
    let accounts: Vec<(String, bool)> = provider_accounts::Entity::find()
        .select_only()
        .column(provider_accounts::Column::AccountId)
        .column(provider_accounts::Column::Enabled)
        .filter(provider_accounts::Column::MerchantId.eq(merchant_id))
        .filter(provider_accounts::Column::Provider.eq(provider))
        .order_by_asc(provider_accounts::Column::CreatedAt)
        .order_by_asc(provider_accounts::Column::AccountId)
        .into_tuple()
        .all(db)
        .await?;
    let mut enabled = accounts.iter().filter(|(_, enabled)| *enabled).map(|(id, _)| id);
    match account_id {
        Some(wanted) => enabled
            .find(|id| *id == wanted)
            .map(|id| Choice::Account(id.clone()))
            .ok_or_else(|| {
                crate::error::OrderError::Validation(ValidationError::new(
                    "invalid_field",
                    format!(
                        "account_id: {wanted} is not an enabled {} account of this merchant",
                        provider.as_str()
                    ),
                ))
            }),
        None => Ok(match enabled.next() {
            Some(id) => Choice::Account(id.clone()),
            None if accounts.is_empty() => Choice::Deployment,
            None => Choice::Nowhere,
        }),
    }
}

/// How long a disabled account's bills are still reconciled: its trades started before it was
/// disabled are still paid, closed and refunded through it (a provider keeps bills three
/// months).
pub const RECONCILED_AFTER_DISABLED_DAYS: i64 = 90;

/// Every account whose bills the daily reconciliation compares, as the route its calls take:
/// the enabled ones, and the ones disabled within [`RECONCILED_AFTER_DISABLED_DAYS`].
///
/// # Errors
/// The database.
pub async fn reconciled_routes(db: &DatabaseConnection) -> Result<Vec<crate::provider::Route>, DbErr> {
    let since = Utc::now() - chrono::Duration::days(RECONCILED_AFTER_DISABLED_DAYS);
    let rows: Vec<(String, Provider)> = provider_accounts::Entity::find()
        .select_only()
        .column(provider_accounts::Column::AccountId)
        .column(provider_accounts::Column::Provider)
        .filter(
            sea_orm::Condition::any()
                .add(provider_accounts::Column::Enabled.eq(true))
                .add(provider_accounts::Column::DisabledAt.gt(since)),
        )
        .order_by_asc(provider_accounts::Column::AccountId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(account, provider)| crate::provider::Route::account(provider, &account))
        .collect())
}

/// The providers `merchant_id` has an enabled account of.
///
/// # Errors
/// The database.
pub async fn enabled_providers(db: &DatabaseConnection, merchant_id: &str) -> Result<Vec<Provider>, DbErr> {
    provider_accounts::Entity::find()
        .select_only()
        .column(provider_accounts::Column::Provider)
        .distinct()
        .filter(provider_accounts::Column::MerchantId.eq(merchant_id))
        .filter(provider_accounts::Column::Enabled.eq(true))
        .into_tuple()
        .all(db)
        .await
}

/// How many accounts are stored.
///
/// # Errors
/// The database.
pub async fn count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    provider_accounts::Entity::find().count(db).await
}

/// Opens every stored account, in id order: the start-up check that the master keys are the
/// right ones.
///
/// # Errors
/// The first account that does not open, by id (never its secrets), or the database.
pub async fn check_all(db: &DatabaseConnection, vault: &Vault) -> Result<u64, CheckAllError> {
    let mut opened = 0;
    let mut after = String::new();
    loop {
        let rows = provider_accounts::Entity::find()
            .filter(provider_accounts::Column::AccountId.gt(after.as_str()))
            .order_by_asc(provider_accounts::Column::AccountId)
            .limit(500)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(opened);
        };
        after.clone_from(&last.account_id);
        for row in &rows {
            open(vault, row).map_err(|source| CheckAllError::Undecryptable {
                account_id: row.account_id.clone(),
                source,
            })?;
            opened += 1;
        }
    }
}

/// Why the stored accounts did not all open.
#[derive(Debug, thiserror::Error)]
pub enum CheckAllError {
    #[error("provider account {account_id} does not open with the configured master keys (secrets.master_key, secrets.previous_master_keys): {source}")]
    Undecryptable {
        account_id: String,
        #[source]
        source: OpenError,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What a rotation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    pub resealed: u64,
    pub already_current: u64,
}

/// Re-seals every account not sealed under the current master key, `batch` rows at a time,
/// telling `progress` after each batch. Each row is written only if it did not change since it
/// was read (a concurrent edit is sealed under the current key already).
///
/// # Errors
/// An account that does not open (nothing after it is touched), or the database.
pub async fn rotate(
    db: &DatabaseConnection,
    vault: &Vault,
    mut progress: impl FnMut(Rotated, u64),
) -> Result<Rotated, CheckAllError> {
    let total = count(db).await?;
    let mut done = Rotated::default();
    let mut after = String::new();
    loop {
        let rows = provider_accounts::Entity::find()
            .filter(provider_accounts::Column::AccountId.gt(after.as_str()))
            .order_by_asc(provider_accounts::Column::AccountId)
            .limit(200)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(done);
        };
        after.clone_from(&last.account_id);
        for row in rows {
            if vault.is_current(&row.secrets) {
                done.already_current += 1;
                continue;
            }
            let plain = vault
                .open(&row.secrets, &row.account_id)
                .map_err(|source| CheckAllError::Undecryptable {
                    account_id: row.account_id.clone(),
                    source: source.into(),
                })?;
            let sealed = vault.seal(secrecy::ExposeSecret::expose_secret(&plain), &row.account_id);
            provider_accounts::Entity::update_many()
                .col_expr(provider_accounts::Column::Secrets, sealed.into())
                .filter(provider_accounts::Column::AccountId.eq(row.account_id.as_str()))
                .filter(provider_accounts::Column::Secrets.eq(row.secrets.as_str()))
                .exec(db)
                .await?;
            done.resealed += 1;
        }
        progress(done, total);
    }
}
