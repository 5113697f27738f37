use sea_orm::entity::prelude::*;

use crate::types::{Currency, MinorUnit, OrderId, OrderStatus};

/// Characters `orders.close_reason` holds (`varchar(256)` on PostgreSQL).
pub const CLOSE_REASON_MAX_CHARS: usize = 256;
/// Characters `orders.return_url` holds.
pub const RETURN_URL_MAX_CHARS: usize = 2048;

/// One merchant order. `status` changes only through guarded updates
/// (`WHERE id = ? AND status = ?`), and `version` counts those changes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: OrderId,
    #[sea_orm(unique)]
    pub order_no: String,
    pub merchant_id: String,
    /// The merchant's own business key; unique per merchant, it makes creation idempotent.
    pub out_business_id: String,
    /// SHA-256 of the creation request's content, to tell a replay from a conflicting reuse.
    pub request_fingerprint: String,
    pub user_id: String,
    pub subject: String,
    pub total_amount: MinorUnit,
    pub currency: Currency,
    pub status: OrderStatus,
    pub close_reason: Option<String>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub paid_at: Option<DateTimeUtc>,
    pub closed_at: Option<DateTimeUtc>,
    pub version: i32,
    /// Where the checkout page sends the buyer once the order is final (the merchant's page);
    /// an absolute `http(s)` URL, or none.
    pub return_url: Option<String>,
    /// What the provider has confirmed refunded of the order's payment; the order is
    /// `refunded` once this reaches what was paid.
    pub refunded_amount: MinorUnit,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::order_items::Entity")]
    OrderItems,
    #[sea_orm(has_many = "super::payment_attempts::Entity")]
    PaymentAttempts,
    #[sea_orm(has_many = "super::order_logs::Entity")]
    OrderLogs,
}

impl Related<super::order_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OrderItems.def()
    }
}

impl Related<super::payment_attempts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::PaymentAttempts.def()
    }
}

impl Related<super::order_logs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OrderLogs.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
