use sea_orm::entity::prelude::*;

use crate::types::{AttemptStatus, Currency, MinorUnit, OrderId, PayNo, Provider};

/// One payment attempt: one trade at one provider. Its `pay_no` is the provider's
/// `out_trade_no`, new for every attempt so a failed attempt can be retried.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub provider: Provider,
    pub status: AttemptStatus,
    pub amount: MinorUnit,
    pub currency: Currency,
    pub code_url: Option<String>,
    pub provider_txn_id: Option<String>,
    /// The provider's last answer about this trade, as JSON text, kept for audits.
    pub raw_payload: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub paid_at: Option<DateTimeUtc>,
    /// When the follow-up worker looks at this trade next: set while the trade may still take
    /// money though the order no longer waits for it (see `actors::order::follow_up`).
    pub follow_up_at: Option<DateTimeUtc>,
    /// What the provider reports was paid on this trade (differs from `amount` for a payment
    /// of another amount).
    pub paid_amount: Option<MinorUnit>,
    /// The merchant's provider account the trade was started at; `None`: the deployment's
    /// configured provider. Every later call for the trade goes through the same one.
    pub account_id: Option<String>,
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
