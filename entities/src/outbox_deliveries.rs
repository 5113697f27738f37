use sea_orm::entity::prelude::*;

use crate::types::{DeliveryStatus, OrderId};

/// One outbox event for one subscriber: pending until acknowledged (`delivered`) or out of
/// retries (`dead`, listed for admins and redeliverable).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub outbox_id: i64,
    /// Copied from the event, so per-order ordering needs no join.
    pub order_id: OrderId,
    pub subscriber_id: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// A relay holds the row until then; another relay skips it.
    pub lease_until: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
