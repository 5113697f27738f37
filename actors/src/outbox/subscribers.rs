//! Subscribers and their deliveries, as admins manage them.

use chrono::Utc;
use entities::{outbox, outbox_deliveries, subscribers, DeliveryStatus, SubscriberKind};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::domain::{MerchantId, ValidationError};
use crate::store::journal::EventType;

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("subscriber or delivery not found")]
    NotFound,
    #[error("database error")]
    Db(#[from] DbErr),
}

/// A webhook subscriber to add.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub url: String,
    /// Generated when not given.
    pub secret: Option<String>,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// The merchant whose events it receives. `None`: a global subscriber, every merchant's
    /// events (for the operator's own consumers; never give a merchant's endpoint one).
    pub merchant_id: Option<MerchantId>,
}

const KNOWN_EVENTS: [EventType; 5] = [
    EventType::OrderCreated,
    EventType::OrderPaid,
    EventType::OrderClosed,
    EventType::OrderPaymentAnomaly,
    EventType::OrderStuck,
];

/// Longest accepted signing secret.
const SECRET_MAX_BYTES: usize = 256;

fn validate(new: &NewWebhook, allow_private: bool) -> Result<String, ValidationError> {
    let url = new.url.trim();
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            "invalid_url",
            "url must be an http(s) URL of at most 2048 characters",
        ));
    }
    super::target::check_url(url, allow_private)
        .map_err(|problem| ValidationError::new("invalid_url", format!("url refused: {problem}")))?;
    if let Some(secret) = &new.secret {
        if secret.len() < 16 || secret.len() > SECRET_MAX_BYTES || secret.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "invalid_secret",
                format!("secret must be 16 to {SECRET_MAX_BYTES} bytes without control characters"),
            ));
        }
    }
    // Each known type once, in the order given: repeats would only lengthen the stored list
    // past its column (the known types together fit with room to spare).
    let mut event_types: Vec<&str> = Vec::with_capacity(KNOWN_EVENTS.len());
    for event_type in &new.event_types {
        if !KNOWN_EVENTS.iter().any(|known| known.as_str() == event_type) {
            return Err(ValidationError::new(
                "unknown_event_type",
                format!("unknown event type '{event_type}'; expected order.created, order.paid, order.closed, order.payment_anomaly or order.stuck"),
            ));
        }
        if !event_types.contains(&event_type.as_str()) {
            event_types.push(event_type);
        }
    }
    Ok(if event_types.is_empty() {
        "*".to_owned()
    } else {
        event_types.join(",")
    })
}

fn generated_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Adds a webhook subscriber with a new id.
///
/// # Errors
/// A [`ValidationError`] (nothing written) or a database error.
pub async fn add_webhook<C: ConnectionTrait>(
    conn: &C,
    new: NewWebhook,
    allow_private: bool,
) -> Result<subscribers::Model, SubscriberError> {
    let event_types = validate(&new, allow_private)?;
    let model = subscribers::Model {
        id: format!("sub_{}", uuid::Uuid::new_v4().simple()),
        kind: SubscriberKind::Webhook,
        url: new.url.trim().to_owned(),
        secret: Some(new.secret.unwrap_or_else(generated_secret)),
        event_types,
        merchant_id: new.merchant_id.map(|merchant| merchant.as_str().to_owned()),
        enabled: true,
        created_at: Utc::now(),
    };
    subscribers::Entity::insert(subscribers::ActiveModel::from(model.clone()))
        .exec_without_returning(conn)
        .await?;
    Ok(model)
}

/// Creates or updates a subscriber declared in configuration (stable `id`), its merchant scope
/// included. The AMQP sink is always global.
///
/// # Errors
/// A [`ValidationError`] or a database error.
pub async fn ensure<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    kind: SubscriberKind,
    new: NewWebhook,
    allow_private: bool,
) -> Result<subscribers::Model, SubscriberError> {
    let (event_types, merchant_id) = match kind {
        SubscriberKind::Webhook => (
            validate(&new, allow_private)?,
            new.merchant_id.map(|merchant| merchant.as_str().to_owned()),
        ),
        SubscriberKind::Amqp => ("*".to_owned(), None),
    };
    let model = subscribers::Model {
        id: id.to_owned(),
        kind,
        url: new.url.trim().to_owned(),
        secret: new.secret,
        event_types,
        merchant_id,
        enabled: true,
        created_at: Utc::now(),
    };
    subscribers::Entity::insert(subscribers::ActiveModel::from(model.clone()))
        .on_conflict(
            OnConflict::column(subscribers::Column::Id)
                .update_columns([
                    subscribers::Column::Kind,
                    subscribers::Column::Url,
                    subscribers::Column::Secret,
                    subscribers::Column::EventTypes,
                    subscribers::Column::MerchantId,
                    subscribers::Column::Enabled,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(model)
}

/// # Errors
/// A database error.
pub async fn list<C: ConnectionTrait>(conn: &C) -> Result<Vec<subscribers::Model>, DbErr> {
    subscribers::Entity::find()
        .order_by_asc(subscribers::Column::CreatedAt)
        .all(conn)
        .await
}

/// Removes a subscriber; its undelivered rows become dead (visible, redeliverable no more).
///
/// # Errors
/// [`SubscriberError::NotFound`] or a database error.
pub async fn remove<C: ConnectionTrait + TransactionTrait>(conn: &C, id: &str) -> Result<(), SubscriberError> {
    // Ids are ours (`sub_..`, `cfg_..`, `amqp`): one with a control character does not exist,
    // and PostgreSQL would refuse a NUL in the query with an error rather than find nothing.
    if id.chars().any(char::is_control) {
        return Err(SubscriberError::NotFound);
    }
    let txn = conn.begin().await?;
    let deleted = subscribers::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
    if deleted.rows_affected == 0 {
        return Err(SubscriberError::NotFound);
    }
    outbox_deliveries::Entity::update_many()
        .col_expr(outbox_deliveries::Column::Status, Expr::value(DeliveryStatus::Dead))
        .col_expr(outbox_deliveries::Column::LastError, Expr::value("subscriber removed"))
        .filter(outbox_deliveries::Column::SubscriberId.eq(id))
        .filter(outbox_deliveries::Column::Status.eq(DeliveryStatus::Pending))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// A delivery with what an admin needs to judge it.
#[derive(Clone, Debug)]
pub struct DeliveryView {
    pub delivery: outbox_deliveries::Model,
    pub event: Option<outbox::Model>,
}

/// Deliveries in `status`, newest first.
///
/// # Errors
/// A database error.
pub async fn list_deliveries<C: ConnectionTrait>(
    conn: &C,
    status: DeliveryStatus,
    limit: u64,
) -> Result<Vec<DeliveryView>, DbErr> {
    let rows = outbox_deliveries::Entity::find()
        .filter(outbox_deliveries::Column::Status.eq(status))
        .order_by_desc(outbox_deliveries::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|d| d.outbox_id).collect();
    let events = outbox::Entity::find()
        .filter(outbox::Column::Id.is_in(ids))
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|delivery| DeliveryView {
            event: events.iter().find(|e| e.id == delivery.outbox_id).cloned(),
            delivery,
        })
        .collect())
}

/// Puts a dead (or delivered) delivery back in the queue, due now.
///
/// # Errors
/// [`SubscriberError::NotFound`] or a database error.
pub async fn redeliver<C: ConnectionTrait>(conn: &C, id: i64) -> Result<(), SubscriberError> {
    let updated = outbox_deliveries::Entity::update_many()
        .col_expr(outbox_deliveries::Column::Status, Expr::value(DeliveryStatus::Pending))
        .col_expr(outbox_deliveries::Column::Attempts, Expr::value(0))
        .col_expr(outbox_deliveries::Column::NextAttemptAt, Expr::value(Utc::now()))
        .col_expr(
            outbox_deliveries::Column::LeaseUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(outbox_deliveries::Column::Id.eq(id))
        .filter(outbox_deliveries::Column::Status.ne(DeliveryStatus::Pending))
        .exec(conn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(SubscriberError::NotFound);
    }
    // The subscriber may still exist; if it was removed the relay marks the row dead again.
    Ok(())
}
