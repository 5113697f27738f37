use sea_orm::entity::prelude::*;

use crate::types::{OrderId, Provider};

/// Provider notifications already accepted, keyed by the provider's own event id, so a
/// redelivered notification is acknowledged without acting twice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_receipts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub provider: Provider,
    pub event_id: String,
    pub order_id: Option<OrderId>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
