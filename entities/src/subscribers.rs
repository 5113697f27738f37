use sea_orm::entity::prelude::*;

use crate::types::{SignatureScheme, SubscriberKind};

/// A downstream consumer of order events: a signed webhook, or the AMQP sink.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscribers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: SubscriberKind,
    pub url: String,
    /// HMAC key of a webhook's signatures. Stored as is: the relay needs it to sign. Never in
    /// `Debug` output.
    pub secret: Option<String>,
    /// How deliveries are signed (webhooks; the AMQP sink signs nothing).
    pub signature_scheme: SignatureScheme,
    /// `*`, or a comma-separated list of event types.
    pub event_types: String,
    /// The merchant whose events it receives; `None`: a global subscriber, every merchant's
    /// events (the operator's own consumers).
    pub merchant_id: Option<String>,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    /// Deliveries wait (kept, in order) until it resumes.
    pub paused: bool,
    /// Extra headers sent with each delivery: a JSON object, `None` when there are none.
    pub headers: Option<String>,
    /// The first failure of the unbroken run of failures it is in; `None` while healthy.
    pub failing_since: Option<DateTimeUtc>,
    /// When the relay disabled it (failing too long, or 410 Gone), and why.
    pub disabled_at: Option<DateTimeUtc>,
    pub disabled_reason: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("signature_scheme", &self.signature_scheme)
            .field("event_types", &self.event_types)
            .field("merchant_id", &self.merchant_id)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .field("paused", &self.paused)
            .field("headers", &self.headers)
            .field("failing_since", &self.failing_since)
            .field("disabled_at", &self.disabled_at)
            .field("disabled_reason", &self.disabled_reason)
            .finish()
    }
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
