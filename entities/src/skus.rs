use sea_orm::entity::prelude::*;

/// Tracked stock, per merchant. A `(merchant_id, sku_id)` with no row here is untracked: that
/// merchant's orders for it reserve nothing, whatever another merchant tracks under the same
/// `sku_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "skus")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku_id: String,
    /// Units that can still be reserved; never negative (guarded updates keep it so).
    pub available: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
