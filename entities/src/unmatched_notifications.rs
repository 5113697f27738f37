use sea_orm::entity::prelude::*;

use crate::types::{MinorUnit, Provider};

/// An authentic provider notification for a trade paywarden does not know (a restored
/// database, another deployment's trade). Money may have been taken: an operator lists and
/// resolves these. Unique per provider event id, so a redelivery is stored once.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "unmatched_notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub provider: Provider,
    /// The merchant's provider account it arrived for (its route); `None`: the deployment's
    /// configured provider. The money it reports, if any, is in that account.
    pub account_id: Option<String>,
    pub event_id: String,
    /// The trade number the provider reported (`out_trade_no`): no attempt has it, and it may
    /// not even be in our `pay_no` space (another deployment's trade).
    pub pay_no: String,
    /// `paid`, or what else the provider said (`closed`, `not_paid`, ...).
    pub trade_state: String,
    /// What the provider says was paid, for a paid trade.
    pub amount: Option<MinorUnit>,
    pub provider_txn_id: Option<String>,
    /// The decrypted notification, as verified.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub received_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
