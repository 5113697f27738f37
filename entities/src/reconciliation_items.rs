use sea_orm::entity::prelude::*;

use crate::types::MinorUnit;

/// Characters `reconciliation_items.resolution` holds.
pub const RESOLUTION_MAX_CHARS: usize = 256;

/// One difference between a provider's bill and paywarden's records, for an operator to
/// resolve. Unique per run, kind and reference, so a re-run adds nothing twice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconciliation_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    /// `missing_here`, `bill_says_paid_provider_says_not`, `unknown_trade`,
    /// `missing_at_provider`, `amount_differs`, `txn_differs`, `duplicate_in_bill`,
    /// `refund_missing_here`, `refund_missing_at_provider`, `refund_differs`.
    pub kind: String,
    /// The trade (`out_trade_no`) or the refund (`out_refund_no`) it is about.
    pub reference: String,
    pub out_trade_no: String,
    /// What the bill says, what paywarden recorded (minor units), when each side has one.
    pub provider_amount: Option<MinorUnit>,
    pub local_amount: Option<MinorUnit>,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
    /// What paywarden did about it by itself (a missing payment compensated), if anything.
    pub action: Option<String>,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
