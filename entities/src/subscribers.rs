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
}
