//! Subscribers and their deliveries, as admins manage them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::{
    delivery_attempts, outbox, outbox_deliveries, subscriber_secrets, subscribers, DeliveryStatus, SignatureScheme,
    SubscriberKind,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::headers::CustomHeaders;
use crate::domain::{MerchantId, ValidationError};
use crate::store::journal::EventType;

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("subscriber or delivery not found")]
    NotFound,
    /// The subscriber is declared in configuration: its secret is the configuration's.
    #[error("this subscriber is declared in the configuration (outbox.webhooks); change its secret there")]
    Configured,
    /// A rotation would leave more live secrets than [`PREVIOUS_SECRETS_MAX`] + 1.
    #[error(
        "this subscriber already has {PREVIOUS_SECRETS_MAX} previous secrets in their overlap; wait until one expires"
    )]
    TooManySecrets,
    #[error("database error")]
    Db(#[from] DbErr),
}

/// A webhook subscriber to add.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub url: String,
    /// Generated when not given.
    pub secret: Option<String>,
    /// How its deliveries are signed; a given secret must fit it.
    pub signature_scheme: SignatureScheme,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// The merchant whose events it receives. `None`: a global subscriber, every merchant's
    /// events (for the operator's own consumers; never give a merchant's endpoint one).
    pub merchant_id: Option<MerchantId>,
    /// Sent with each delivery, as given (checked by [`CustomHeaders::parse`]).
    pub headers: BTreeMap<String, String>,
}

/// Longest accepted signing secret.
const SECRET_MAX_BYTES: usize = 256;

/// The stored form of a list of event types: `*` when empty, else each known type once, in
/// the order given (repeats would only lengthen the stored list past its column; the known
/// types together fit with room to spare).
///
/// # Errors
/// `unknown_event_type`, listing the known ones.
fn event_types_column(asked: &[String]) -> Result<String, ValidationError> {
    let mut event_types: Vec<&str> = Vec::with_capacity(EventType::ALL.len());
    for event_type in asked {
        if !EventType::ALL.iter().any(|known| known.as_str() == event_type) {
            let known: Vec<&str> = EventType::ALL.iter().map(|known| known.as_str()).collect();
            return Err(ValidationError::new(
                "unknown_event_type",
                format!(
                    "unknown event type '{event_type}'; expected one of {}",
                    known.join(", ")
                ),
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

fn validate(new: &NewWebhook, allow_private: bool) -> Result<(String, CustomHeaders), ValidationError> {
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
        match new.signature_scheme {
            SignatureScheme::StandardWebhooksV1 => {
                super::signature::standard_key(secret).map_err(|problem| {
                    ValidationError::new(
                        "invalid_secret",
                        format!(
                            "{problem} (a Standard Webhooks secret: whsec_ and the base64 of 24 to 64 random bytes)"
                        ),
                    )
                })?;
            }
            SignatureScheme::PaywardenV1 => {
                if secret.len() < 16 || secret.len() > SECRET_MAX_BYTES || secret.chars().any(char::is_control) {
                    return Err(ValidationError::new(
                        "invalid_secret",
                        format!("secret must be 16 to {SECRET_MAX_BYTES} bytes without control characters"),
                    ));
                }
            }
        }
    }
    let event_types = event_types_column(&new.event_types)?;
    let headers = CustomHeaders::parse(new.headers.clone())?;
    Ok((event_types, headers))
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
    let (event_types, headers) = validate(&new, allow_private)?;
    let model = subscribers::Model {
        id: format!("sub_{}", uuid::Uuid::new_v4().simple()),
        kind: SubscriberKind::Webhook,
        url: new.url.trim().to_owned(),
        secret: Some(new.secret.unwrap_or_else(super::signature::generate_secret)),
        signature_scheme: new.signature_scheme,
        event_types,
        merchant_id: new.merchant_id.map(|merchant| merchant.as_str().to_owned()),
        enabled: true,
        created_at: Utc::now(),
        paused: false,
        headers: headers.to_column(),
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
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
    let (event_types, merchant_id, headers) = match kind {
        SubscriberKind::Webhook => {
            let (event_types, headers) = validate(&new, allow_private)?;
            (
                event_types,
                new.merchant_id.map(|merchant| merchant.as_str().to_owned()),
                headers.to_column(),
            )
        }
        SubscriberKind::Amqp => ("*".to_owned(), None, None),
    };
    let model = subscribers::Model {
        id: id.to_owned(),
        kind,
        url: new.url.trim().to_owned(),
        secret: new.secret,
        signature_scheme: new.signature_scheme,
        event_types,
        merchant_id,
        enabled: true,
        created_at: Utc::now(),
        paused: false,
        headers,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    subscribers::Entity::insert(subscribers::ActiveModel::from(model.clone()))
        .on_conflict(
            OnConflict::column(subscribers::Column::Id)
                .update_columns([
                    subscribers::Column::Kind,
                    subscribers::Column::Url,
                    subscribers::Column::Secret,
                    subscribers::Column::SignatureScheme,
                    subscribers::Column::EventTypes,
                    subscribers::Column::MerchantId,
                    subscribers::Column::Enabled,
                    subscribers::Column::Headers,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(model)
}

/// What to change on a webhook subscriber; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SubscriberUpdate {
    /// Empty: every type.
    pub event_types: Option<Vec<String>>,
    pub paused: Option<bool>,
    /// Replaces the custom headers (empty: none).
    pub headers: Option<BTreeMap<String, String>>,
    /// `true` enables a disabled subscriber again (its failure record cleared); `false`
    /// disables it (its events are then not kept for it).
    pub enabled: Option<bool>,
}

/// Changes a webhook subscriber's event types, pause and custom headers, all or nothing. Only a
/// subscriber that `may_manage` is found. Deliveries already queued keep going (a narrower
/// event list applies to events fanned out from now on); resuming sends the held ones in order.
///
/// # Errors
/// A [`ValidationError`] (nothing written), [`SubscriberError::NotFound`], or a database error.
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    change: SubscriberUpdate,
    may_manage: impl Fn(&subscribers::Model) -> bool,
) -> Result<subscribers::Model, SubscriberError> {
    let event_types = change.event_types.as_deref().map(event_types_column).transpose()?;
    let headers = change.headers.map(CustomHeaders::parse).transpose()?;
    if id.chars().any(char::is_control) {
        return Err(SubscriberError::NotFound);
    }
    let mut model = subscribers::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .filter(|s| s.kind == SubscriberKind::Webhook && may_manage(s))
        .ok_or(SubscriberError::NotFound)?;
    let mut update = subscribers::Entity::update_many().filter(subscribers::Column::Id.eq(id));
    if let Some(event_types) = event_types {
        update = update.col_expr(subscribers::Column::EventTypes, Expr::value(event_types.clone()));
        model.event_types = event_types;
    }
    if let Some(paused) = change.paused {
        update = update.col_expr(subscribers::Column::Paused, Expr::value(paused));
        model.paused = paused;
    }
    if let Some(enabled) = change.enabled {
        let reason = (!enabled).then(|| "disabled by an operator".to_owned());
        let at = (!enabled).then(Utc::now);
        update = update
            .col_expr(subscribers::Column::Enabled, Expr::value(enabled))
            .col_expr(
                subscribers::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(subscribers::Column::DisabledAt, Expr::value(at))
            .col_expr(subscribers::Column::DisabledReason, Expr::value(reason.clone()));
        model.enabled = enabled;
        model.failing_since = None;
        model.disabled_at = at;
        model.disabled_reason = reason;
    }
    if let Some(headers) = headers {
        let column = headers.to_column();
        update = update.col_expr(subscribers::Column::Headers, Expr::value(column.clone()));
        model.headers = column;
    }
    update.exec(conn).await?;
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
    subscriber_secrets::Entity::delete_many()
        .filter(subscriber_secrets::Column::SubscriberId.eq(id))
        .exec(&txn)
        .await?;
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

/// Previous secrets a webhook may have in their overlap at once, besides the current one:
/// each adds a signature to every delivery.
pub const PREVIOUS_SECRETS_MAX: u64 = 3;

/// How long a rotated-out secret keeps signing: the `outbox` settings' bounds and default.
#[derive(Clone, Copy, Debug)]
pub struct OverlapBounds {
    pub default: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl OverlapBounds {
    /// The overlap asked for (absent: the default), within the bounds.
    ///
    /// # Errors
    /// `invalid_overlap` when outside them.
    pub fn check(&self, overlap_seconds: Option<u64>) -> Result<Duration, ValidationError> {
        let overlap = overlap_seconds.map_or(self.default, Duration::from_secs);
        if overlap < self.min || overlap > self.max {
            return Err(ValidationError::new(
                "invalid_overlap",
                format!(
                    "overlap_seconds must be {} to {}",
                    self.min.as_secs(),
                    self.max.as_secs()
                ),
            ));
        }
        Ok(overlap)
    }
}

/// A rotation's outcome: the subscriber with its new secret (to show once), and until when
/// the previous one still signs.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub subscriber: subscribers::Model,
    pub previous_expires_at: DateTime<Utc>,
}

/// Gives a webhook subscriber a new generated secret; the current one keeps signing, beside
/// it, for `overlap`. Expired previous secrets are deleted on the way. Only a subscriber that
/// `may_manage` is found (a merchant's own endpoints).
///
/// # Errors
/// [`SubscriberError::NotFound`], [`SubscriberError::Configured`] (its secret is the
/// configuration's), [`SubscriberError::TooManySecrets`], or a database error.
pub async fn rotate_secret<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    id: &str,
    overlap: Duration,
    may_manage: impl Fn(&subscribers::Model) -> bool,
) -> Result<Rotated, SubscriberError> {
    if id.chars().any(char::is_control) {
        return Err(SubscriberError::NotFound);
    }
    let now = Utc::now();
    let overlap = chrono::Duration::from_std(overlap).map_err(|_| {
        SubscriberError::Validation(ValidationError::new("invalid_overlap", "overlap_seconds is too large"))
    })?;
    let txn = conn.begin().await?;
    let subscriber = subscribers::Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(&txn)
        .await?
        .filter(|s| s.kind == SubscriberKind::Webhook && may_manage(s))
        .ok_or(SubscriberError::NotFound)?;
    if subscriber.id.starts_with("cfg_") {
        return Err(SubscriberError::Configured);
    }
    subscriber_secrets::Entity::delete_many()
        .filter(subscriber_secrets::Column::SubscriberId.eq(id))
        .filter(subscriber_secrets::Column::ExpiresAt.lte(now))
        .exec(&txn)
        .await?;
    let live = subscriber_secrets::Entity::find()
        .filter(subscriber_secrets::Column::SubscriberId.eq(id))
        .count(&txn)
        .await?;
    if live >= PREVIOUS_SECRETS_MAX {
        return Err(SubscriberError::TooManySecrets);
    }
    let previous_expires_at = now + overlap;
    if let Some(previous) = subscriber.secret.clone() {
        subscriber_secrets::Entity::insert(subscriber_secrets::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            subscriber_id: sea_orm::ActiveValue::Set(id.to_owned()),
            secret: sea_orm::ActiveValue::Set(previous),
            expires_at: sea_orm::ActiveValue::Set(previous_expires_at),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    let secret = super::signature::generate_secret();
    subscribers::Entity::update_many()
        .col_expr(subscribers::Column::Secret, Expr::value(secret.clone()))
        .filter(subscribers::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(Rotated {
        subscriber: subscribers::Model {
            secret: Some(secret),
            ..subscriber
        },
        previous_expires_at,
    })
}

/// The live previous secrets of each subscriber (soonest to expire last), after deleting the
/// expired ones.
///
/// # Errors
/// A database error.
pub async fn previous_secrets<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, Vec<String>>, DbErr> {
    subscriber_secrets::Entity::delete_many()
        .filter(subscriber_secrets::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    let rows = subscriber_secrets::Entity::find()
        .filter(subscriber_secrets::Column::ExpiresAt.gt(now))
        .order_by_desc(subscriber_secrets::Column::ExpiresAt)
        .all(conn)
        .await?;
    let mut by_subscriber: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for row in rows {
        by_subscriber.entry(row.subscriber_id).or_default().push(row.secret);
    }
    Ok(by_subscriber)
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
    with_events(conn, rows).await
}

/// Each delivery with the event it carries.
///
/// # Errors
/// A database error.
pub async fn with_events<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<outbox_deliveries::Model>,
) -> Result<Vec<DeliveryView>, DbErr> {
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

/// Attempts listed per delivery, most recent last: a redelivered event's whole history would
/// otherwise grow without bound in one answer.
pub const ATTEMPTS_PER_DELIVERY_MAX: usize = 50;

/// A delivery, its event and its attempts.
#[derive(Clone, Debug)]
pub struct DeliveryLog {
    pub delivery: outbox_deliveries::Model,
    pub event: Option<outbox::Model>,
    pub attempts: Vec<delivery_attempts::Model>,
}

/// Which deliveries of a subscriber to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    /// Deliveries created at or after.
    pub since: Option<DateTime<Utc>>,
    pub limit: u64,
}

async fn with_attempts<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<outbox_deliveries::Model>,
) -> Result<Vec<DeliveryLog>, DbErr> {
    let outbox_ids: Vec<i64> = rows.iter().map(|d| d.outbox_id).collect();
    let delivery_ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let events = outbox::Entity::find()
        .filter(outbox::Column::Id.is_in(outbox_ids))
        .all(conn)
        .await?;
    let attempts = delivery_attempts::Entity::find()
        .filter(delivery_attempts::Column::DeliveryId.is_in(delivery_ids))
        .order_by_asc(delivery_attempts::Column::Id)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|delivery| {
            let mut own: Vec<delivery_attempts::Model> = attempts
                .iter()
                .filter(|a| a.delivery_id == delivery.id)
                .cloned()
                .collect();
            let skip = own.len().saturating_sub(ATTEMPTS_PER_DELIVERY_MAX);
            own.drain(..skip);
            DeliveryLog {
                event: events.iter().find(|e| e.id == delivery.outbox_id).cloned(),
                attempts: own,
                delivery,
            }
        })
        .collect())
}

/// A subscriber's deliveries, newest first, each with its attempts. Only a subscriber that
/// `may_manage` is found.
///
/// # Errors
/// [`SubscriberError::NotFound`] or a database error.
pub async fn subscriber_deliveries<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    filter: DeliveryFilter,
    may_manage: impl Fn(&subscribers::Model) -> bool,
) -> Result<Vec<DeliveryLog>, SubscriberError> {
    if id.chars().any(char::is_control) {
        return Err(SubscriberError::NotFound);
    }
    subscribers::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .filter(|s| may_manage(s))
        .ok_or(SubscriberError::NotFound)?;
    let mut query = outbox_deliveries::Entity::find().filter(outbox_deliveries::Column::SubscriberId.eq(id));
    if let Some(status) = filter.status {
        query = query.filter(outbox_deliveries::Column::Status.eq(status));
    }
    if let Some(since) = filter.since {
        query = query.filter(outbox_deliveries::Column::CreatedAt.gte(since));
    }
    if let Some(event_type) = filter.event_type {
        query = query.filter(
            outbox_deliveries::Column::OutboxId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(outbox::Column::Id)
                    .from(outbox::Entity)
                    .and_where(outbox::Column::EventType.eq(event_type))
                    .to_owned(),
            ),
        );
    }
    let rows = query
        .order_by_desc(outbox_deliveries::Column::Id)
        .limit(filter.limit)
        .all(conn)
        .await?;
    Ok(with_attempts(conn, rows).await?)
}

/// The deliveries of one event (by its `event_id`), to every subscriber that `may_manage`
/// allows, each with its attempts.
///
/// # Errors
/// [`SubscriberError::NotFound`] (no such event, or none of its deliveries visible) or a
/// database error.
pub async fn event_deliveries<C: ConnectionTrait>(
    conn: &C,
    event_id: uuid::Uuid,
    may_manage: impl Fn(&subscribers::Model) -> bool,
) -> Result<Vec<DeliveryLog>, SubscriberError> {
    let event = outbox::Entity::find()
        .filter(outbox::Column::EventId.eq(event_id))
        .one(conn)
        .await?
        .ok_or(SubscriberError::NotFound)?;
    let rows = outbox_deliveries::Entity::find()
        .filter(outbox_deliveries::Column::OutboxId.eq(event.id))
        .order_by_asc(outbox_deliveries::Column::Id)
        .all(conn)
        .await?;
    let subscriber_ids: Vec<String> = rows.iter().map(|d| d.subscriber_id.clone()).collect();
    let visible: Vec<String> = subscribers::Entity::find()
        .filter(subscribers::Column::Id.is_in(subscriber_ids))
        .all(conn)
        .await?
        .into_iter()
        .filter(|s| may_manage(s))
        .map(|s| s.id)
        .collect();
    let rows: Vec<outbox_deliveries::Model> = rows
        .into_iter()
        .filter(|d| visible.contains(&d.subscriber_id))
        .collect();
    if rows.is_empty() {
        return Err(SubscriberError::NotFound);
    }
    Ok(with_attempts(conn, rows).await?)
}

/// Which events a replay sends again.
#[derive(Clone, Debug)]
pub struct ReplayRange {
    /// Events written at or after.
    pub since: DateTime<Utc>,
    /// Events written before.
    pub until: DateTime<Utc>,
    /// Empty: the types the subscriber wants.
    pub event_types: Vec<String>,
}

/// Queues again, due now, every event of `range` the subscriber may receive and wants (and of
/// `range.event_types` when given), each with its original id; per order in the order they were
/// written. Returns how many. Refused, changing nothing, when the range is empty or reversed,
/// or holds more than `max_events`.
///
/// # Errors
/// `invalid_range`, `unknown_event_type`, [`SubscriberError::NotFound`] or a database error.
pub async fn replay<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    id: &str,
    range: ReplayRange,
    max_events: u64,
    may_manage: impl Fn(&subscribers::Model) -> bool,
) -> Result<u64, SubscriberError> {
    if range.since >= range.until {
        return Err(ValidationError::new("invalid_range", "since must be before until").into());
    }
    let types_column = event_types_column(&range.event_types)?;
    if id.chars().any(char::is_control) {
        return Err(SubscriberError::NotFound);
    }
    let subscriber = subscribers::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .filter(|s| s.kind == SubscriberKind::Webhook && may_manage(s))
        .ok_or(SubscriberError::NotFound)?;
    let mut query = outbox::Entity::find()
        .filter(outbox::Column::CreatedAt.gte(range.since))
        .filter(outbox::Column::CreatedAt.lt(range.until));
    if let Some(merchant_id) = &subscriber.merchant_id {
        query = query.filter(outbox::Column::MerchantId.eq(merchant_id.as_str()));
    }
    // The types to send: those asked for (or all), of those the subscriber receives. The
    // bound counts the events that would go out.
    let asked: Vec<&str> = if types_column == "*" {
        EventType::ALL.iter().map(|t| t.as_str()).collect()
    } else {
        types_column.split(',').collect()
    };
    let types: Vec<&str> = asked.into_iter().filter(|t| subscriber.wants(t)).collect();
    if types.is_empty() {
        return Ok(0);
    }
    query = query.filter(outbox::Column::EventType.is_in(types));
    let events = query
        .order_by_asc(outbox::Column::Id)
        .limit(max_events.saturating_add(1))
        .all(conn)
        .await?;
    if u64::try_from(events.len()).unwrap_or(u64::MAX) > max_events {
        return Err(ValidationError::new(
            "invalid_range",
            format!("the range holds more than {max_events} events; replay a shorter one"),
        )
        .into());
    }
    let chosen: Vec<&outbox::Model> = events.iter().collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let txn = conn.begin().await?;
    for chunk in chosen.chunks(1_000) {
        let rows = chunk.iter().map(|event| outbox_deliveries::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            outbox_id: sea_orm::ActiveValue::Set(event.id),
            order_id: sea_orm::ActiveValue::Set(event.order_id),
            subscriber_id: sea_orm::ActiveValue::Set(subscriber.id.clone()),
            status: sea_orm::ActiveValue::Set(DeliveryStatus::Pending),
            attempts: sea_orm::ActiveValue::Set(0),
            next_attempt_at: sea_orm::ActiveValue::Set(now),
            lease_until: sea_orm::ActiveValue::Set(None),
            last_error: sea_orm::ActiveValue::Set(None),
            delivered_at: sea_orm::ActiveValue::Set(None),
            created_at: sea_orm::ActiveValue::Set(now),
        });
        outbox_deliveries::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    outbox_deliveries::Column::OutboxId,
                    outbox_deliveries::Column::SubscriberId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        let ids: Vec<i64> = chunk.iter().map(|event| event.id).collect();
        outbox_deliveries::Entity::update_many()
            .col_expr(outbox_deliveries::Column::Status, Expr::value(DeliveryStatus::Pending))
            .col_expr(outbox_deliveries::Column::Attempts, Expr::value(0))
            .col_expr(outbox_deliveries::Column::NextAttemptAt, Expr::value(now))
            .col_expr(
                outbox_deliveries::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(outbox_deliveries::Column::SubscriberId.eq(subscriber.id.as_str()))
            .filter(outbox_deliveries::Column::OutboxId.is_in(ids))
            .filter(outbox_deliveries::Column::Status.ne(DeliveryStatus::Pending))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(u64::try_from(chosen.len()).unwrap_or(u64::MAX))
}

/// Webhook subscribers the relay disabled that are still disabled.
///
/// # Errors
/// A database error.
pub async fn count_disabled<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    subscribers::Entity::find()
        .filter(subscribers::Column::Enabled.eq(false))
        .filter(subscribers::Column::DisabledAt.is_not_null())
        .count(conn)
        .await
}
