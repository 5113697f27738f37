//! `/admin/deliveries`: the outbox's deliveries, and sending a dead one again.

use actix_web::{web, HttpResponse};
use actors::outbox::subscribers;
use entities::DeliveryStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::LIST_LIMIT_MAX;
use crate::error::ApiError;
use crate::operations::{api_operator, redeliver_one};
use crate::routes::dto::schema;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Absent: `dead`.
    #[param(value_type = Option<schema::DeliveryStatus>)]
    status: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    id: i64,
    subscriber_id: String,
    #[schema(value_type = schema::DeliveryStatus)]
    status: DeliveryStatus,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    order_no: String,
    event_id: Option<String>,
    event_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryResponse>,
}

/// `GET /admin/deliveries?status=dead|pending|delivered&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/admin/deliveries",
    tag = "admin",
    operation_id = "admin_list_deliveries",
    summary = "List webhook deliveries, newest first",
    params(DeliveriesQuery),
    responses((status = 200, description = "The deliveries", body = DeliveryList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    params: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match params.status.as_deref() {
        None => DeliveryStatus::Dead,
        Some(status) => status
            .parse()
            .map_err(|_: String| ApiError::bad_request("invalid_query", "status must be dead, pending or delivered"))?,
    };
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let deliveries = subscribers::list_deliveries(&state.db, status, limit)
        .await?
        .into_iter()
        .map(|view| DeliveryResponse {
            id: view.delivery.id,
            subscriber_id: view.delivery.subscriber_id,
            status: view.delivery.status,
            attempts: view.delivery.attempts,
            last_error: view.delivery.last_error,
            next_attempt_at: view.delivery.next_attempt_at,
            delivered_at: view.delivery.delivered_at,
            order_no: view.delivery.order_id.to_string(),
            event_id: view.event.as_ref().map(|e| e.event_id.to_string()),
            event_type: view.event.map(|e| e.event_type),
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}

/// What `redeliver` answers: the delivery is queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliverResponse {
    #[schema(value_type = schema::DeliveryStatus)]
    status: DeliveryStatus,
}

/// `POST /admin/deliveries/{id}/redeliver`: queue a dead delivery again, due now.
#[utoipa::path(
    post,
    path = "/admin/deliveries/{id}/redeliver",
    tag = "admin",
    operation_id = "admin_redeliver",
    summary = "Queue a dead delivery again, due now",
    params(("id" = i64, Path, description = "The delivery's id")),
    responses((status = 202, description = "Queued", body = RedeliverResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn redeliver(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    redeliver_one(&state, id.into_inner(), &api_operator()).await?;
    Ok(HttpResponse::Accepted().json(RedeliverResponse {
        status: DeliveryStatus::Pending,
    }))
}
