use sea_orm::entity::prelude::*;

use crate::types::{MinorUnit, OrderId};

/// One line of an order. `amount` = `unit_price` × `quantity`, computed with checked arithmetic.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: OrderId,
    pub sku_id: String,
    pub name: String,
    pub unit_price: MinorUnit,
    pub quantity: i64,
    pub amount: MinorUnit,
    /// What this line took of tracked stock at creation (0 for an untracked SKU); a close
    /// gives back exactly this.
    pub reserved_quantity: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::orders::Entity",
        from = "Column::OrderId",
        to = "super::orders::Column::Id"
    )]
    Order,
}

impl Related<super::orders::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Order.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
