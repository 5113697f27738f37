use sea_orm::entity::prelude::*;

use crate::types::{Currency, MinorUnit, OrderId, PayNo, Provider, RefundNo, RefundStatus};

/// Characters `refunds.out_refund_id` holds.
pub const OUT_REFUND_ID_MAX_CHARS: usize = 64;
/// Characters `refunds.reason` holds (WeChat's `reason` takes 80).
pub const REASON_MAX_CHARS: usize = 80;
/// Characters `refunds.failure` holds.
pub const FAILURE_MAX_CHARS: usize = 256;

/// One refund of (part of) one payment. Committed before the provider is asked; its
/// `refund_no` is the number the provider deduplicates on, so every retry refunds once.
/// `status` changes only through guarded updates (`WHERE refund_no = ? AND status = 'pending'`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub refund_no: RefundNo,
    /// The order's merchant; `out_refund_id` is unique per merchant.
    pub merchant_id: String,
    /// The requester's own key for this refund (an automatic refund's is `auto:<pay_no>`).
    pub out_refund_id: String,
    /// SHA-256 of the request's content, to tell a replay from a conflicting reuse.
    pub request_fingerprint: String,
    pub order_id: OrderId,
    /// The payment refunded: the provider trade's `out_trade_no`.
    pub pay_no: PayNo,
    pub provider: Provider,
    pub amount: MinorUnit,
    pub currency: Currency,
    pub reason: String,
    pub status: RefundStatus,
    /// Who asked (`merchant:<id>`, `admin:<name>`, `system` for an automatic refund).
    pub operator: String,
    /// Whether the provider has been asked yet with an answer that it holds the refund
    /// (`false`: the next step sends it; `true`: the next step queries it).
    pub submitted: bool,
    /// When the refund worker takes its next step (`None` once final): the durable timer that
    /// survives restarts.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Provider calls made for it so far.
    pub attempts: i32,
    pub provider_refund_id: Option<String>,
    /// Why it failed, as the provider said.
    pub failure: Option<String>,
    /// The provider's last answer, as JSON text, kept for audits.
    pub raw_payload: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub succeeded_at: Option<DateTimeUtc>,
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
