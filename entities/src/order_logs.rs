use sea_orm::entity::prelude::*;

use crate::types::OrderId;

/// Audit trail: one row per state change of an order or its attempts, written in the same
/// transaction as the change. `from_status` is empty for the row that creates the order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: OrderId,
    /// What changed: `order.created`, `stock.reserved`, `attempt.created`, `order.closed`, ...
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: String,
    /// Who caused it: `merchant:<id>`, `system`, `admin`, `provider:<name>`.
    pub operator: String,
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
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
