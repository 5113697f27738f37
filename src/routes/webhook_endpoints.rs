//! `/v1/webhook-endpoints`: a merchant's own webhook endpoints, managed with its API key (as
//! Stripe's are). An endpoint is a webhook subscriber scoped to the merchant: it receives that
//! merchant's events only, under the same public-target rules and the same signing; another
//! merchant's endpoint is not found.

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::{RotateSecretBody, RotatedSecret, SubscriberList, SubscriberResponse};
use crate::error::ApiError;
use crate::operations::{self, NewSubscriber};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://shop.example/paywarden/webhooks", "event_types": ["order.paid", "order.closed"]}))]
pub struct CreateEndpointBody {
    /// Where deliveries are POSTed: http(s), a public address.
    url: String,
    /// Its signing secret; absent: one is generated (`whsec_` and the base64 of 32 random
    /// bytes), shown in this answer only.
    secret: Option<String>,
    /// `standard-webhooks-v1` (the default) or `paywarden-v1`.
    signature_scheme: Option<String>,
    /// Event types it receives; empty or absent: every type.
    #[serde(default)]
    event_types: Vec<String>,
    /// Extra headers sent with each delivery (the rules of `POST /admin/subscribers`).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// What a test ping got back.
#[derive(Debug, Serialize, ToSchema)]
pub struct PingResponse {
    /// The receiver's HTTP status; `null` when nothing answered.
    status_code: Option<u16>,
    /// From sending the request to the answer's status, in milliseconds.
    latency_ms: u64,
    /// Whether the receiver took it (a 2xx).
    delivered: bool,
    /// Why it was not delivered (refused target, connection error, timeout, non-2xx).
    error: Option<String>,
}

/// `POST /v1/webhook-endpoints`.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "webhook endpoints",
    operation_id = "create_webhook_endpoint",
    summary = "Add a webhook endpoint",
    description = "It receives this merchant's events only. Its secret is in this answer only.",
    request_body = CreateEndpointBody,
    responses((status = 201, description = "The endpoint, with its secret", body = SubscriberResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["invalid_url", "invalid_secret", "invalid_signature_scheme", "unknown_event_type", "invalid_headers", "internal_error"]))),
)]
pub async fn create(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    body: web::Json<CreateEndpointBody>,
) -> Result<HttpResponse, ApiError> {
    let merchant = merchant.into_inner();
    let body = body.into_inner();
    let model = operations::add_webhook(
        &state,
        NewSubscriber {
            url: body.url,
            secret: body.secret,
            signature_scheme: body.signature_scheme,
            event_types: body.event_types,
            merchant_id: Some(merchant.as_str().to_owned()),
            headers: body.headers,
        },
        &actors::store::Operator::Merchant(merchant),
    )
    .await?;
    Ok(HttpResponse::Created().json(SubscriberResponse::new(model, true)))
}

/// `GET /v1/webhook-endpoints`.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "webhook endpoints",
    operation_id = "list_webhook_endpoints",
    summary = "This merchant's webhook endpoints",
    responses((status = 200, description = "The endpoints, without their secrets", body = SubscriberList)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list(state: web::Data<AppState>, merchant: web::ReqData<MerchantId>) -> Result<HttpResponse, ApiError> {
    let endpoints = operations::merchant_endpoints(&state, &merchant).await?;
    Ok(HttpResponse::Ok().json(SubscriberList::of(endpoints)))
}

/// `DELETE /v1/webhook-endpoints/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    tag = "webhook endpoints",
    operation_id = "delete_webhook_endpoint",
    summary = "Remove a webhook endpoint",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Removed; its undelivered events become dead")),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn delete(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    operations::remove_merchant_endpoint(&state, &merchant, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret`.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/rotate-secret",
    tag = "webhook endpoints",
    operation_id = "rotate_webhook_endpoint_secret",
    summary = "Rotate a webhook endpoint's secret",
    description = "A new secret, in this answer only; until `previous_secret_expires_at` every delivery carries a signature with each secret, then only with the new one.",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = RotateSecretBody,
    responses((status = 200, description = "The new secret", body = RotatedSecret)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_overlap", "too_many_live_secrets", "internal_error"]))),
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    id: web::Path<String>,
    body: web::Json<RotateSecretBody>,
) -> Result<HttpResponse, ApiError> {
    let rotated =
        operations::rotate_merchant_endpoint_secret(&state, &merchant, &id, body.into_inner().overlap_seconds).await?;
    Ok(HttpResponse::Ok().json(RotatedSecret::from(rotated)))
}

/// `POST /v1/webhook-endpoints/{id}/test`.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/test",
    tag = "webhook endpoints",
    operation_id = "test_webhook_endpoint",
    summary = "Send a signed ping to a webhook endpoint now",
    description = "A `ping` event (`{\"event_id\", \"type\": \"ping\", \"occurred_at\", \"merchant_id\", \"endpoint_id\"}`), signed as the endpoint's deliveries are, sent now and not retried; the answer says what the receiver did.",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "What the receiver answered", body = PingResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn test(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let answer = operations::ping_merchant_endpoint(&state, &merchant, &id).await?;
    Ok(HttpResponse::Ok().json(PingResponse {
        status_code: answer.status_code,
        latency_ms: u64::try_from(answer.latency.as_millis()).unwrap_or(u64::MAX),
        delivered: answer.error.is_none(),
        error: answer.error,
    }))
}
