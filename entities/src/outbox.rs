use sea_orm::entity::prelude::*;

use crate::types::OrderId;

/// An event for downstream services, written in the transaction of the change it reports.
/// `id` grows with insertion, so ordering by it keeps each order's events in commit order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: Uuid,
    pub event_type: String,
    pub order_id: OrderId,
    pub merchant_id: String,
    /// The event as JSON text, exactly as it will be delivered.
    pub payload: String,
    pub created_at: DateTimeUtc,
    /// Set once every subscriber has acknowledged the event (or given up on it).
    pub published_at: Option<DateTimeUtc>,
    /// Set once a delivery row exists for every subscriber that wants the event.
    pub fanned_out_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
