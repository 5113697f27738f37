//! `/admin/subscribers`: who receives the outbox's events.

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

use actors::outbox::headers::CustomHeaders;
use actors::outbox::subscribers;
use entities::{DeliveryStatus, SignatureScheme, SubscriberKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::operations::{add_webhook, api_operator, remove_webhook, rotate_secret, update_webhook, NewSubscriber};
use crate::routes::dto::schema;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSubscriberBody {
    /// Where deliveries are POSTed: http(s), a public address unless
    /// `outbox.allow_private_targets`.
    url: String,
    /// Key of the deliveries' signatures; absent: one is generated (`whsec_` and the base64
    /// of 32 random bytes). For `standard-webhooks-v1`: `whsec_` and the base64 of 24 to 64
    /// bytes; for `paywarden-v1`: 16 to 256 bytes.
    secret: Option<String>,
    /// How deliveries are signed: `standard-webhooks-v1` (the default: `webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`) or `paywarden-v1` (the `Paywarden-*`
    /// headers, for receivers built on them).
    #[schema(value_type = Option<schema::SignatureScheme>)]
    signature_scheme: Option<String>,
    /// Event types it receives; empty or absent: every type.
    #[serde(default)]
    event_types: Vec<String>,
    /// Whose events it receives. Absent (or null): a global subscriber that receives every
    /// merchant's events, for the operator's own consumers.
    merchant_id: Option<String>,
    /// Extra headers sent with each delivery (at most 10; names of at most 64 bytes, values
    /// of at most 512 printable ASCII bytes). Framing, connection, credential, origin and
    /// signature headers are refused (`Host`, `Content-Length`, `Authorization`, `Cookie`,
    /// `X-Forwarded-*`, `webhook-*`, `Paywarden-*`, ...).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl From<AddSubscriberBody> for NewSubscriber {
    fn from(body: AddSubscriberBody) -> Self {
        Self {
            url: body.url,
            secret: body.secret,
            signature_scheme: body.signature_scheme,
            event_types: body.event_types,
            merchant_id: body.merchant_id,
            headers: body.headers,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberResponse {
    id: String,
    #[schema(value_type = schema::SubscriberKind)]
    kind: SubscriberKind,
    url: String,
    #[schema(value_type = schema::SignatureScheme)]
    signature_scheme: SignatureScheme,
    event_types: String,
    /// `null`: global (every merchant's events).
    merchant_id: Option<String>,
    enabled: bool,
    /// Set when the relay disabled it: when and why (its deliveries wait; `PATCH` with
    /// `enabled: true` resumes them).
    disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    disabled_reason: Option<String>,
    /// Start of the unbroken run of failed deliveries it is in; `null` while healthy.
    failing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Deliveries wait, kept in order, until it resumes.
    paused: bool,
    /// Extra headers sent with each delivery.
    headers: BTreeMap<String, String>,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Shown once, when the subscriber is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberList {
    subscribers: Vec<SubscriberResponse>,
}

impl SubscriberList {
    /// The list of `models`, without their secrets.
    pub(crate) fn of(models: Vec<entities::subscribers::Model>) -> Self {
        Self {
            subscribers: models
                .into_iter()
                .map(|model| SubscriberResponse::new(model, false))
                .collect(),
        }
    }
}

impl SubscriberResponse {
    pub(crate) fn new(model: entities::subscribers::Model, show_secret: bool) -> Self {
        Self {
            id: model.id,
            kind: model.kind,
            url: model.url,
            signature_scheme: model.signature_scheme,
            event_types: model.event_types,
            merchant_id: model.merchant_id,
            enabled: model.enabled,
            disabled_at: model.disabled_at,
            disabled_reason: model.disabled_reason,
            failing_since: model.failing_since,
            paused: model.paused,
            headers: CustomHeaders::from_column(model.headers.as_deref()),
            created_at: model.created_at,
            secret: if show_secret { model.secret } else { None },
        }
    }
}

/// `POST /admin/subscribers`: a new webhook subscriber; its secret is in this answer only.
/// With `merchant_id` it receives that merchant's events only; without, every merchant's.
#[utoipa::path(
    post,
    path = "/admin/subscribers",
    tag = "admin",
    operation_id = "admin_add_subscriber",
    summary = "Add a webhook subscriber",
    description = "With `merchant_id` it receives that merchant's events only; without, every merchant's. Its secret is in this answer only.",
    request_body = AddSubscriberBody,
    responses((status = 201, description = "The new subscriber, with its secret", body = SubscriberResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_merchant_id", "invalid_url", "invalid_secret", "invalid_signature_scheme", "unknown_event_type", "invalid_headers", "internal_error"]))),
)]
pub async fn add_subscriber(
    state: web::Data<AppState>,
    body: web::Json<AddSubscriberBody>,
) -> Result<HttpResponse, ApiError> {
    let model = add_webhook(&state, body.into_inner().into(), &api_operator()).await?;
    Ok(HttpResponse::Created().json(SubscriberResponse::new(model, true)))
}

/// `GET /admin/subscribers`.
#[utoipa::path(
    get,
    path = "/admin/subscribers",
    tag = "admin",
    operation_id = "admin_list_subscribers",
    summary = "List the subscribers (without their secrets)",
    responses((status = 200, description = "The subscribers", body = SubscriberList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list_subscribers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(SubscriberList::of(subscribers::list(&state.db).await?)))
}

/// `DELETE /admin/subscribers/{id}`: its undelivered events become dead.
#[utoipa::path(
    delete,
    path = "/admin/subscribers/{id}",
    tag = "admin",
    operation_id = "admin_remove_subscriber",
    summary = "Remove a subscriber",
    description = "Its undelivered events become dead deliveries.",
    params(("id" = String, Path, description = "The subscriber's id")),
    responses((status = 204, description = "Removed")),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn remove_subscriber(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    remove_webhook(&state, &id, &api_operator()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// How long the current secret keeps signing beside the new one, in seconds. Absent:
    /// `outbox.rotation_overlap_default_seconds` (24 hours); within
    /// `outbox.rotation_overlap_min_seconds` and `outbox.rotation_overlap_max_seconds`.
    #[schema(minimum = 1)]
    pub(crate) overlap_seconds: Option<u64>,
}

/// The new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    id: String,
    secret: String,
    /// Until then every delivery also carries a signature with the previous secret.
    previous_secret_expires_at: chrono::DateTime<chrono::Utc>,
}

impl From<subscribers::Rotated> for RotatedSecret {
    fn from(rotated: subscribers::Rotated) -> Self {
        Self {
            id: rotated.subscriber.id,
            secret: rotated.subscriber.secret.unwrap_or_default(),
            previous_secret_expires_at: rotated.previous_expires_at,
        }
    }
}

/// `POST /admin/subscribers/{id}/rotate-secret`: a new secret, shown once; the current one
/// keeps signing beside it for the overlap, so receivers switch without a gap.
#[utoipa::path(
    post,
    path = "/admin/subscribers/{id}/rotate-secret",
    tag = "admin",
    operation_id = "admin_rotate_subscriber_secret",
    summary = "Rotate a webhook subscriber's secret",
    description = "Generates a new secret (in this answer only). Until `previous_secret_expires_at` every delivery carries two signatures, one per secret (Standard Webhooks: space-separated in `webhook-signature`); then only the new one, and the previous secret is deleted. A subscriber declared in the configuration is refused (its secret is the configuration's).",
    params(("id" = String, Path, description = "The subscriber's id")),
    request_body = RotateSecretBody,
    responses((status = 200, description = "The new secret", body = RotatedSecret)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_overlap", "subscriber_configured", "too_many_live_secrets", "internal_error"]))),
)]
pub async fn rotate_subscriber_secret(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<RotateSecretBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let rotated = rotate_secret(&state, &id, body.overlap_seconds, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(RotatedSecret::from(rotated)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriberBody {
    /// Replaces the event types it receives; empty: every type.
    event_types: Option<Vec<String>>,
    /// `true`: deliveries wait, kept in order; `false`: they resume, in order.
    paused: Option<bool>,
    /// Replaces its custom headers (`{}`: none); the rules of `POST /admin/subscribers`.
    headers: Option<BTreeMap<String, String>>,
    /// `true` enables a subscriber the relay disabled (failing too long, or 410 Gone) again;
    /// its kept deliveries then go out. `false` disables it.
    enabled: Option<bool>,
}

impl From<UpdateSubscriberBody> for subscribers::SubscriberUpdate {
    fn from(body: UpdateSubscriberBody) -> Self {
        Self {
            event_types: body.event_types,
            paused: body.paused,
            headers: body.headers,
            enabled: body.enabled,
        }
    }
}

/// `PATCH /admin/subscribers/{id}`: event types, pause, custom headers.
#[utoipa::path(
    patch,
    path = "/admin/subscribers/{id}",
    tag = "admin",
    operation_id = "admin_update_subscriber",
    summary = "Change a webhook subscriber's event types, pause or custom headers",
    description = "Fields left out stay as they are; a refused field changes nothing. A paused subscriber's events are kept as pending deliveries and sent, in order, when it resumes.",
    params(("id" = String, Path, description = "The subscriber's id")),
    request_body = UpdateSubscriberBody,
    responses((status = 200, description = "The subscriber as it now is (without its secret)", body = SubscriberResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "unknown_event_type", "invalid_headers", "internal_error"]))),
)]
pub async fn update_subscriber(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UpdateSubscriberBody>,
) -> Result<HttpResponse, ApiError> {
    let model = update_webhook(&state, &id, body.into_inner().into(), &api_operator()).await?;
    Ok(HttpResponse::Ok().json(SubscriberResponse::new(model, false)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriberDeliveriesQuery {
    /// Only deliveries in this status.
    #[param(value_type = Option<schema::DeliveryStatus>)]
    status: Option<String>,
    /// Only events of this type.
    event_type: Option<String>,
    /// Only deliveries created at or after this time (RFC 3339).
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many deliveries (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    attempted_at: chrono::DateTime<chrono::Utc>,
    /// The receiver's HTTP status; `null` when no answer came.
    status_code: Option<i32>,
    latency_ms: i64,
    /// The first KiB of the receiver's answer.
    response_body: Option<String>,
    error: Option<String>,
}

/// A delivery of one event to one subscriber, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryLogResponse {
    id: i64,
    subscriber_id: String,
    #[schema(value_type = schema::DeliveryStatus)]
    status: DeliveryStatus,
    event_id: Option<String>,
    event_type: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    order_no: String,
    created_at: chrono::DateTime<chrono::Utc>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Oldest first; the last 50 at most.
    attempts: Vec<AttemptResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryLogList {
    deliveries: Vec<DeliveryLogResponse>,
}

impl From<subscribers::DeliveryLog> for DeliveryLogResponse {
    fn from(log: subscribers::DeliveryLog) -> Self {
        Self {
            id: log.delivery.id,
            subscriber_id: log.delivery.subscriber_id,
            status: log.delivery.status,
            event_id: log.event.as_ref().map(|e| e.event_id.to_string()),
            event_type: log.event.map(|e| e.event_type),
            order_no: log.delivery.order_id.to_string(),
            created_at: log.delivery.created_at,
            next_attempt_at: log.delivery.next_attempt_at,
            delivered_at: log.delivery.delivered_at,
            attempts: log
                .attempts
                .into_iter()
                .map(|a| AttemptResponse {
                    attempted_at: a.attempted_at,
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    response_body: a.response_body,
                    error: a.error,
                })
                .collect(),
        }
    }
}

impl DeliveryLogList {
    pub fn new(logs: Vec<subscribers::DeliveryLog>) -> Self {
        Self {
            deliveries: logs.into_iter().map(DeliveryLogResponse::from).collect(),
        }
    }
}

impl SubscriberDeliveriesQuery {
    /// # Errors
    /// `400 invalid_query` for an unknown status.
    pub fn into_filter(self) -> Result<subscribers::DeliveryFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_: String| ApiError::bad_request("invalid_query", "status must be dead, pending or delivered"))?;
        Ok(subscribers::DeliveryFilter {
            status,
            event_type: self.event_type,
            since: self.since,
            limit: self.limit.unwrap_or(100).clamp(1, super::LIST_LIMIT_MAX),
        })
    }
}

/// `GET /admin/subscribers/{id}/deliveries?status=&event_type=&since=&limit=`: the delivery log.
#[utoipa::path(
    get,
    path = "/admin/subscribers/{id}/deliveries",
    tag = "admin",
    operation_id = "admin_subscriber_deliveries",
    summary = "A subscriber's deliveries, newest first, each with every attempt",
    params(("id" = String, Path, description = "The subscriber's id"), SubscriberDeliveriesQuery),
    responses((status = 200, description = "The deliveries", body = DeliveryLogList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn subscriber_deliveries(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<SubscriberDeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().into_filter()?;
    let logs = crate::operations::subscriber_deliveries(&state, &id, filter).await?;
    Ok(HttpResponse::Ok().json(DeliveryLogList::new(logs)))
}

/// `GET /admin/events/{event_id}/deliveries`: one event's deliveries to every subscriber.
#[utoipa::path(
    get,
    path = "/admin/events/{event_id}/deliveries",
    tag = "admin",
    operation_id = "admin_event_deliveries",
    summary = "One event's deliveries, each with every attempt",
    params(("event_id" = String, Path, description = "The event's id (the webhook-id it was sent with)")),
    responses((status = 200, description = "The deliveries", body = DeliveryLogList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn event_deliveries(
    state: web::Data<AppState>,
    event_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let event_id = uuid::Uuid::parse_str(event_id.trim()).map_err(|_| ApiError::NotFound("event"))?;
    let logs = subscribers::event_deliveries(&state.db, event_id, |_| true)
        .await
        .map_err(crate::operations::subscriber_error)?;
    Ok(HttpResponse::Ok().json(DeliveryLogList::new(logs)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Events written at or after this time (RFC 3339).
    since: chrono::DateTime<chrono::Utc>,
    /// Events written before this time.
    until: chrono::DateTime<chrono::Utc>,
    /// Only these types; absent or empty: every type the subscriber receives.
    #[serde(default)]
    event_types: Vec<String>,
}

impl From<ReplayBody> for subscribers::ReplayRange {
    fn from(body: ReplayBody) -> Self {
        Self {
            since: body.since,
            until: body.until,
            event_types: body.event_types,
        }
    }
}

/// How many events a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    count: u64,
}

/// `POST /admin/subscribers/{id}/replay`: send a range of events again.
#[utoipa::path(
    post,
    path = "/admin/subscribers/{id}/replay",
    tag = "admin",
    operation_id = "admin_replay_subscriber",
    summary = "Send a range of events again",
    description = "Queues again, due now, every event written in [since, until) that the subscriber receives (and of `event_types` when given), each with its original id, per order in the order written. At most `outbox.replay_max_events`; a larger range is refused and nothing is queued.",
    params(("id" = String, Path, description = "The subscriber's id")),
    request_body = ReplayBody,
    responses((status = 202, description = "Queued", body = ReplayResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_range", "unknown_event_type", "internal_error"]))),
)]
pub async fn replay_subscriber(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ReplayBody>,
) -> Result<HttpResponse, ApiError> {
    let count = crate::operations::replay(&state, &id, body.into_inner().into(), &api_operator()).await?;
    Ok(HttpResponse::Accepted().json(ReplayResponse { count }))
}
