use sea_orm::entity::prelude::*;

/// A merchant's client API key, as its digest: the key itself is shown once, when issued, and
/// never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchant_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    pub merchant_id: String,
    /// SHA-256 of the key, hex.
    pub digest: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub label: String,
    pub created_at: DateTimeUtc,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
