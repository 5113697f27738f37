use sea_orm::entity::prelude::*;

use crate::types::SubscriberKind;

/// A downstream consumer of order events: a signed webhook, or the AMQP sink.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscribers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: SubscriberKind,
    pub url: String,
    /// HMAC key of a webhook's signatures. Stored as is: the relay needs it to sign.
    pub secret: Option<String>,
    /// `*`, or a comma-separated list of event types.
    pub event_types: String,
    /// The merchant whose events it receives; `None`: a global subscriber, every merchant's
    /// events (the operator's own consumers).
    pub merchant_id: Option<String>,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types == "*" || self.event_types.split(',').any(|t| t.trim() == event_type)
    }

    /// Whether an event of `merchant_id` is this subscriber's to receive: its own merchant's,
    /// or any merchant's for a global subscriber.
    pub fn may_receive(&self, merchant_id: &str) -> bool {
        self.merchant_id.as_deref().is_none_or(|own| own == merchant_id)
    }
}
