//! `/admin/orders`: the order list and one order, force-close, accepting a payment of another
//! amount.

use actix_web::{web, HttpResponse};
use actors::store::query;
use entities::OrderStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::LIST_LIMIT_MAX;
use crate::error::ApiError;
use crate::operations::{accept_mismatched_payment, api_operator, force_close_order};
use crate::routes::dto::{schema, OrderResponse, OrderSummary};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status; absent: every status.
    #[param(value_type = Option<schema::OrderStatus>)]
    status: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    orders: Vec<OrderSummary>,
}

/// `GET /admin/orders?status=pending|stuck|...&limit=`: soonest deadline first.
#[utoipa::path(
    get,
    path = "/admin/orders",
    tag = "admin",
    operation_id = "admin_list_orders",
    summary = "List orders, soonest deadline first",
    params(ListQuery),
    responses((status = 200, description = "The orders", body = OrderList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list_orders(state: web::Data<AppState>, params: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(str::parse::<OrderStatus>)
        .transpose()
        .map_err(|message| ApiError::bad_request("invalid_query", message))?;
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let orders = query::list_orders(&state.db, status, limit).await?;
    let orders = orders.into_iter().map(OrderSummary::from).collect();
    Ok(HttpResponse::Ok().json(OrderList { orders }))
}

/// `GET /admin/orders/{order_no}`: any merchant's order with its whole log.
#[utoipa::path(
    get,
    path = "/admin/orders/{order_no}",
    tag = "admin",
    operation_id = "admin_get_order",
    summary = "Read any merchant's order with its log",
    params(("order_no" = String, Path, description = "The order's number")),
    responses((status = 200, description = "The order with items, payments and logs", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn get_order(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let detail = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(detail, &state.links, true)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceCloseBody {
    /// Recorded in the order's log and stored as `force-closed: <reason>`.
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/orders/{order_no}/force-close`: close now, through the order's actor (the
/// provider trade is closed first; an unreachable provider leaves the order open).
#[utoipa::path(
    post,
    path = "/admin/orders/{order_no}/force-close",
    tag = "admin",
    operation_id = "admin_force_close",
    summary = "Close an order now",
    description = "Through the order's actor: the provider trade is closed first, so an unreachable provider leaves the order open.",
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = ForceCloseBody,
    responses((status = 200, description = "The order with its log", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "order_not_pending", "concurrent_update", "close_not_possible_yet", "invalid_field", "internal_error", "provider_error", "service_unavailable", "provider_unreachable"]))),
)]
pub async fn force_close(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<ForceCloseBody>,
) -> Result<HttpResponse, ApiError> {
    let operator = api_operator();
    force_close_order(&state, &order_no, &body.into_inner().reason, operator).await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.links, true)))
}

/// `POST /admin/console-sessions/revoke-all`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptPaymentBody {
    /// The order's attempt paid with another amount (status `amount_mismatch`).
    pay_no: String,
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/orders/{order_no}/accept-payment {pay_no, reason}`: an operator accepts a
/// payment of another amount (the order is `stuck` on it) as the order's payment, through the
/// order's actor; logged with the operator and the reason.
#[utoipa::path(
    post,
    path = "/admin/orders/{order_no}/accept-payment",
    tag = "admin",
    operation_id = "admin_accept_payment",
    summary = "Accept a payment of another amount as the order's payment",
    description = "For an order `stuck` on an attempt the provider reports paid with another amount; through the order's actor, logged with the operator and the reason.",
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = AcceptPaymentBody,
    responses((status = 200, description = "The order with its log", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "order_not_pending", "concurrent_update", "invalid_field", "not_a_mismatched_payment", "internal_error", "service_unavailable"]))),
)]
pub async fn accept_payment(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<AcceptPaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let operator = api_operator();
    accept_mismatched_payment(&state, &order_no, &body.pay_no, &body.reason, operator).await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.links, true)))
}
