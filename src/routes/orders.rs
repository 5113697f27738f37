//! Client routes on orders: create, read, status.

use actix_web::{web, HttpResponse};
use actors::domain::{MerchantId, NewOrder};
use actors::store::{query, Created, Operator};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{CreateOrderBody, OrderResponse, StatusResponse};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/orders`: 201 with a new order, 200 with the same order on an identical replay.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    operation_id = "create_order",
    summary = "Create an order",
    description = "Creates an order and reserves stock for the SKUs the merchant tracks. Idempotent per merchant and `out_business_id`: the same content again answers the same order with 200, other content 409 `idempotency_conflict`. Bad input writes nothing.",
    request_body = CreateOrderBody,
    responses(
        (status = 201, description = "The new order", body = OrderResponse, links(
            ("GetOrder" = (operation_id = "get_order", parameters(("order_no" = "$response.body#/order_no")))),
            ("GetOrderStatus" = (operation_id = "get_order_status", parameters(("order_no" = "$response.body#/order_no")))),
            ("CancelOrder" = (operation_id = "cancel_order", parameters(("order_no" = "$response.body#/order_no")))),
            ("CreatePayment" = (operation_id = "create_payment", parameters(("order_no" = "$response.body#/order_no")))),
        )),
        (status = 200, description = "An identical replay: the order the first request created", body = OrderResponse, links(
            ("GetOrder" = (operation_id = "get_order", parameters(("order_no" = "$response.body#/order_no")))),
            ("GetOrderStatus" = (operation_id = "get_order_status", parameters(("order_no" = "$response.body#/order_no")))),
            ("CancelOrder" = (operation_id = "cancel_order", parameters(("order_no" = "$response.body#/order_no")))),
            ("CreatePayment" = (operation_id = "create_payment", parameters(("order_no" = "$response.body#/order_no")))),
        )),
    ),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["idempotency_conflict", "insufficient_stock", "concurrent_update", "invalid_field", "unsupported_currency", "invalid_ttl", "missing_items", "too_many_items", "invalid_amount", "invalid_quantity", "amount_too_large", "invalid_return_url", "internal_error"]))),
)]
#[tracing::instrument(name = "create order", skip_all, fields(merchant_id = %merchant.as_str(), order_no = tracing::field::Empty))]
pub async fn create(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    body: web::Json<CreateOrderBody>,
) -> Result<HttpResponse, ApiError> {
    let merchant = merchant.into_inner();
    let new_order = NewOrder::parse(merchant.clone(), body.into_inner().into(), &state.limits)?;
    let created = state.engine.create_order(&new_order).await?;
    let (status, order, outcome) = match created {
        Created::New(order) => (actix_web::http::StatusCode::CREATED, order, "created"),
        Created::Replayed(order) => (actix_web::http::StatusCode::OK, order, "replayed"),
    };
    tracing::Span::current().record("order_no", order.order_no.as_str());
    state.metrics.orders_created.with_label_values(&[outcome]).inc();
    let response = if status == actix_web::http::StatusCode::CREATED {
        OrderResponse::created(order, &new_order.items, &state.links)
    } else {
        // A replay answers with the order as it is now (it may have attempts, or be final).
        let detail = query::find_order_detail(&state.db, &merchant, &order.order_no)
            .await?
            .ok_or(ApiError::NotFound("order"))?;
        OrderResponse::from_detail(detail, &state.links, false)
    };
    Ok(HttpResponse::build(status).json(response))
}

/// `GET /v1/orders/{order_no}`: the order with items and payments.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_no}",
    tag = "orders",
    operation_id = "get_order",
    summary = "Read an order",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    responses((status = 200, description = "The order with its items and payment attempts", body = OrderResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn get(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let detail = query::find_order_detail(&state.db, &merchant, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(detail, &state.links, false)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Ask the provider now instead of answering from the database alone.
    refresh: Option<bool>,
}

/// `GET /v1/orders/{order_no}/status[?refresh=true]`.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_no}/status",
    tag = "orders",
    operation_id = "get_order_status",
    summary = "Read an order's status",
    description = "From the database; with `refresh=true` the order's actor asks the provider first (the answer may then be a provider failure).",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404"), StatusQuery),
    responses((status = 200, description = "The order's status", body = StatusResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "concurrent_update", "internal_error", "provider_error", "service_unavailable", "provider_unreachable"]))),
)]
pub async fn status(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
    params: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let order = if params.refresh == Some(true) {
        let operator = Operator::Merchant(merchant.into_inner());
        state.engine.refresh(super::order_id(&order_no)?, &operator).await?
    } else {
        query::find_merchant_order(&state.db, &merchant, &order_no)
            .await?
            .ok_or(ApiError::NotFound("order"))?
    };
    Ok(HttpResponse::Ok().json(StatusResponse::from(&order)))
}

/// `POST /v1/orders/{order_no}/cancel`: close at the provider(s), then locally.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_no}/cancel",
    tag = "orders",
    operation_id = "cancel_order",
    summary = "Cancel a pending order",
    description = "Closes every open trade at its provider, then the order. A provider that cannot be reached, or cannot close yet, leaves the order open.",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    responses((status = 200, description = "The order's status after the cancel", body = StatusResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "order_not_pending", "concurrent_update", "close_not_possible_yet", "internal_error", "provider_error", "service_unavailable", "provider_unreachable"]))),
)]
#[tracing::instrument(name = "cancel order", skip_all, fields(merchant_id = %merchant.as_str(), order_no = %order_no))]
pub async fn cancel(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let operator = Operator::Merchant(merchant.into_inner());
    let order = state.engine.cancel(super::order_id(&order_no)?, operator).await?;
    Ok(HttpResponse::Ok().json(StatusResponse::from(&order)))
}
