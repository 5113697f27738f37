use sea_orm::entity::prelude::*;

use crate::types::Provider;

/// A merchant's account at a provider (a WeChat Pay merchant account, an Alipay app, the
/// sandbox): public fields in the clear, secret fields sealed under the master key.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    pub merchant_id: String,
    pub provider: Provider,
    pub enabled: bool,
    /// `api`, or `config` for the deployment's configured provider.
    pub source: String,
    /// The public fields, a JSON object.
    pub config: String,
    /// The secret fields, a JSON object sealed by the vault (bound to `account_id`). Never in
    /// `Debug` output.
    pub secrets: String,
    /// SHA-256 over the account's public key material, hex: tells keys apart without showing
    /// any secret.
    pub fingerprint: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub disabled_at: Option<DateTimeUtc>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("account_id", &self.account_id)
            .field("merchant_id", &self.merchant_id)
            .field("provider", &self.provider)
            .field("enabled", &self.enabled)
            .field("source", &self.source)
            .field("config", &self.config)
            .field("secrets", &"[SEALED]")
            .field("fingerprint", &self.fingerprint)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
