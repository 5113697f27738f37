//! `/admin/unmatched-notifications`: authentic notifications for trades paywarden does not
//! know, kept for an operator.

use actix_web::{web, HttpResponse};
use actors::store::unmatched;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::LIST_LIMIT_MAX;
use crate::error::ApiError;
use crate::operations::{api_operator, resolve_notification};
use crate::routes::dto::schema;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnmatchedQuery {
    /// `true`: resolved ones too.
    all: Option<bool>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// An authentic notification for a trade paywarden does not know.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmatchedResponse {
    id: i64,
    #[schema(value_type = schema::Provider)]
    provider: entities::Provider,
    /// The merchant's provider account it arrived for (the money it reports is there);
    /// `null`: the deployment's configured provider.
    account_id: Option<String>,
    event_id: String,
    pay_no: String,
    trade_state: String,
    /// Minor units, when the notification tells.
    #[schema(value_type = Option<i64>, minimum = 0)]
    amount: Option<entities::MinorUnit>,
    provider_txn_id: Option<String>,
    /// The verified notification as the provider sent it (JSON, or its text).
    payload: serde_json::Value,
    received_at: chrono::DateTime<chrono::Utc>,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    resolved_by: Option<String>,
    resolution: Option<String>,
}

impl From<entities::unmatched_notifications::Model> for UnmatchedResponse {
    fn from(model: entities::unmatched_notifications::Model) -> Self {
        Self {
            id: model.id,
            provider: model.provider,
            account_id: model.account_id,
            event_id: model.event_id,
            pay_no: model.pay_no,
            trade_state: model.trade_state,
            amount: model.amount,
            provider_txn_id: model.provider_txn_id,
            payload: serde_json::from_str(&model.payload).unwrap_or(serde_json::Value::String(model.payload)),
            received_at: model.received_at,
            resolved_at: model.resolved_at,
            resolved_by: model.resolved_by,
            resolution: model.resolution,
        }
    }
}

/// `GET /admin/unmatched-notifications[?all=true&limit=]`: authentic notifications for trades
/// paywarden does not know, unresolved first-class (newest first).
#[utoipa::path(
    get,
    path = "/admin/unmatched-notifications",
    tag = "admin",
    operation_id = "admin_list_unmatched",
    summary = "List notifications for unknown trades, newest first",
    description = "Authentic notifications for trades paywarden does not know (a restored database, another deployment's trade), stored once per provider event. Unresolved ones only, unless `all=true`.",
    params(UnmatchedQuery),
    responses((status = 200, description = "The notifications", body = UnmatchedList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list_unmatched(
    state: web::Data<AppState>,
    params: web::Query<UnmatchedQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let notifications = unmatched::list(&state.db, !params.all.unwrap_or(false), limit)
        .await?
        .into_iter()
        .map(UnmatchedResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(UnmatchedList { notifications }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnmatchedList {
    notifications: Vec<UnmatchedResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// How it was settled (refunded by hand, matched to a restored order, ...).
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/unmatched-notifications/{id}/resolve {reason}`: the operator settled it
/// (refunded by hand, matched to a restored order, ...); recorded with who and why.
#[utoipa::path(
    post,
    path = "/admin/unmatched-notifications/{id}/resolve",
    tag = "admin",
    operation_id = "admin_resolve_unmatched",
    summary = "Mark a notification for an unknown trade as settled",
    params(("id" = i64, Path, description = "The notification's id")),
    request_body = ResolveBody,
    responses((status = 200, description = "The notification, resolved", body = UnmatchedResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "already_resolved", "invalid_field", "internal_error"]))),
)]
pub async fn resolve_unmatched(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let operator = api_operator();
    let row = resolve_notification(&state, id.into_inner(), &body.into_inner().reason, &operator).await?;
    Ok(HttpResponse::Ok().json(UnmatchedResponse::from(row)))
}
