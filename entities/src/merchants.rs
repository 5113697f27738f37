use sea_orm::entity::prelude::*;

/// A merchant: the id its orders carry, and whether its API keys work. Disabling a merchant
/// stops its keys; its live orders still resolve.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_id: String,
    pub name: String,
    pub enabled: bool,
    /// `api` (onboarded at runtime) or `config` (a merchant of `auth.merchant_keys`, imported
    /// at start).
    pub source: String,
    pub created_at: DateTimeUtc,
    pub disabled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
