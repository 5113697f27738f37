//! Client routes on orders: create, read, status.

use actix_web::{web, HttpResponse};
use actors::domain::{MerchantId, NewOrder};
use actors::store::{query, Created, Operator};
use serde::Deserialize;

use super::dto::{CreateOrderBody, OrderResponse, StatusResponse};
use crate::error::ApiError;
use crate::startup::AppState;

/// `POST /v1/orders`: 201 with a new order, 200 with the same order on an identical replay.
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
    let detail = query::find_order_detail(&state.db, &merchant, &order.order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::build(status).json(OrderResponse::from_detail(detail, &state.public_base_url, false)))
}

/// `GET /v1/orders/{order_no}`: the order with items and payments.
pub async fn get(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let detail = query::find_order_detail(&state.db, &merchant, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(detail, &state.public_base_url, false)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Ask the provider now instead of answering from the database alone.
    refresh: Option<bool>,
}

/// `GET /v1/orders/{order_no}/status[?refresh=true]`.
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
