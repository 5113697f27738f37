//! Admin routes: order inspection and tracked stock. Behind the admin token.

use actix_web::{web, HttpResponse};
use actors::orders::{query, Operator};
use actors::stock::{self, SetStockError};
use entities::OrderStatus;
use serde::{Deserialize, Serialize};

use super::dto::{OrderResponse, OrderSummary};
use crate::error::ApiError;
use crate::startup::AppState;

/// Most rows one list answers.
const LIST_LIMIT_MAX: u64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u64>,
}

/// `GET /admin/orders?status=pending|stuck|...&limit=`: soonest deadline first.
pub async fn list_orders(state: web::Data<AppState>, params: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(str::parse::<OrderStatus>)
        .transpose()
        .map_err(|message| ApiError::bad_request("invalid_query", message))?;
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let orders = query::list_orders(&state.db, status, limit).await?;
    let orders: Vec<OrderSummary> = orders.into_iter().map(OrderSummary::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": orders })))
}

/// `GET /admin/orders/{order_no}`: any merchant's order with its whole log.
pub async fn get_order(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let detail = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(detail, &state.public_base_url, true)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStockBody {
    available: i64,
}

#[derive(Debug, Serialize)]
struct StockResponse {
    sku_id: String,
    available: i64,
}

/// `PUT /admin/skus/{sku_id}`: set tracked stock.
pub async fn put_sku(
    state: web::Data<AppState>,
    sku_id: web::Path<String>,
    body: web::Json<SetStockBody>,
) -> Result<HttpResponse, ApiError> {
    let sku = stock::set_available(&state.db, &sku_id, body.available)
        .await
        .map_err(|err| match err {
            SetStockError::Validation(err) => ApiError::Validation(err),
            SetStockError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(sku_id = %sku.sku_id, available = sku.available, "stock set by admin");
    Ok(HttpResponse::Ok().json(StockResponse {
        sku_id: sku.sku_id,
        available: sku.available,
    }))
}

/// `GET /admin/skus/{sku_id}`.
pub async fn get_sku(state: web::Data<AppState>, sku_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sku = stock::get(&state.db, &sku_id).await?.ok_or(ApiError::NotFound("sku"))?;
    Ok(HttpResponse::Ok().json(StockResponse {
        sku_id: sku.sku_id,
        available: sku.available,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceCloseBody {
    reason: String,
}

/// `POST /admin/orders/{order_no}/force-close`: close now, through the order's actor (the
/// provider trade is closed first; an unreachable provider leaves the order open).
pub async fn force_close(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<ForceCloseBody>,
) -> Result<HttpResponse, ApiError> {
    let reason = body.into_inner().reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 256 {
        return Err(ApiError::Validation(actors::domain::ValidationError::new(
            "invalid_field",
            "reason must be 1 to 256 characters",
        )));
    }
    let detail = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    state
        .engine
        .force_close(&detail.order, Operator::Admin("admin".to_owned()), reason)
        .await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.public_base_url, true)))
}

/// `POST /admin/deadlines/reconcile`: rebuild the deadline index from the database and re-arm
/// every live order.
pub async fn reconcile(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = state
        .engine
        .reconcile()
        .await
        .map_err(|err| ApiError::Internal(anyhow::Error::new(err).context("reconcile failed")))?;
    Ok(HttpResponse::Ok().json(report))
}
