use sea_orm::entity::prelude::*;

/// One attempt to deliver an event to a subscriber, as the delivery log shows it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub delivery_id: i64,
    pub outbox_id: i64,
    pub subscriber_id: String,
    pub attempted_at: DateTimeUtc,
    /// The receiver's HTTP status; `None` when no answer came (refused, timed out, not sent).
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The first KiB of the receiver's answer.
    pub response_body: Option<String>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
