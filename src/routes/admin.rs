//! Admin routes: order inspection, tracked stock (per merchant), subscribers and deliveries.
//! Behind the admin token.

use actix_web::{web, HttpResponse};
use actors::domain::{MerchantId, OperatorReason};
use actors::outbox::subscribers::{self, NewWebhook, SubscriberError};
use actors::stock::{self, SetStockError};
use actors::store::{query, unmatched, Operator};
use entities::{DeliveryStatus, OrderStatus, SubscriberKind};
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
    merchant_id: String,
    sku_id: String,
    available: i64,
}

impl From<entities::skus::Model> for StockResponse {
    fn from(sku: entities::skus::Model) -> Self {
        Self {
            merchant_id: sku.merchant_id,
            sku_id: sku.sku_id,
            available: sku.available,
        }
    }
}

/// `PUT /admin/merchants/{merchant_id}/skus/{sku_id}`: set a merchant's tracked stock. Only
/// that merchant's orders reserve from it.
pub async fn put_sku(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<SetStockBody>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let merchant = MerchantId::parse_input(&merchant_id)?;
    let sku = stock::set_available(&state.db, &merchant, &sku_id, body.available)
        .await
        .map_err(|err| match err {
            SetStockError::Validation(err) => ApiError::Validation(err),
            SetStockError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(merchant_id = %sku.merchant_id, sku_id = %sku.sku_id, available = sku.available, "stock set by admin");
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
}

/// `GET /admin/merchants/{merchant_id}/skus/{sku_id}`: 404 when the merchant does not track it.
pub async fn get_sku(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let merchant = MerchantId::parse_input(&merchant_id)?;
    let sku = stock::get(&state.db, &merchant, &sku_id)
        .await?
        .ok_or(ApiError::NotFound("sku"))?;
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
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
    // Checked before anything happens: the provider closes the trade first, so a reason that
    // did not fit the column would fail after that side effect.
    let reason = OperatorReason::parse(&body.into_inner().reason).map_err(ApiError::Validation)?;
    let order_id = super::order_id(&order_no)?;
    state
        .engine
        .force_close(order_id, Operator::Admin("admin".to_owned()), reason)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSubscriberBody {
    url: String,
    secret: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    /// Whose events it receives. Absent (or null): a global subscriber that receives every
    /// merchant's events, for the operator's own consumers.
    merchant_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct SubscriberResponse {
    id: String,
    kind: SubscriberKind,
    url: String,
    event_types: String,
    /// `null`: global (every merchant's events).
    merchant_id: Option<String>,
    enabled: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Shown once, when the subscriber is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl SubscriberResponse {
    fn new(model: entities::subscribers::Model, show_secret: bool) -> Self {
        Self {
            id: model.id,
            kind: model.kind,
            url: model.url,
            event_types: model.event_types,
            merchant_id: model.merchant_id,
            enabled: model.enabled,
            created_at: model.created_at,
            secret: if show_secret { model.secret } else { None },
        }
    }
}

fn subscriber_error(err: SubscriberError) -> ApiError {
    match err {
        SubscriberError::Validation(err) => ApiError::Validation(err),
        SubscriberError::NotFound => ApiError::NotFound("subscriber or delivery"),
        SubscriberError::Db(err) => ApiError::from(err),
    }
}

/// `POST /admin/subscribers`: a new webhook subscriber; its secret is in this answer only.
/// With `merchant_id` it receives that merchant's events only; without, every merchant's.
pub async fn add_subscriber(
    state: web::Data<AppState>,
    body: web::Json<AddSubscriberBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let merchant_id = body.merchant_id.as_deref().map(MerchantId::parse_input).transpose()?;
    let model = subscribers::add_webhook(
        &state.db,
        NewWebhook {
            url: body.url,
            secret: body.secret,
            event_types: body.event_types,
            merchant_id,
        },
        state.allow_private_targets,
    )
    .await
    .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %model.id, url = %model.url, merchant_id = ?model.merchant_id, "subscriber added");
    Ok(HttpResponse::Created().json(SubscriberResponse::new(model, true)))
}

/// `GET /admin/subscribers`.
pub async fn list_subscribers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let list: Vec<SubscriberResponse> = subscribers::list(&state.db)
        .await?
        .into_iter()
        .map(|model| SubscriberResponse::new(model, false))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "subscribers": list })))
}

/// `DELETE /admin/subscribers/{id}`: its undelivered events become dead.
pub async fn remove_subscriber(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    subscribers::remove(&state.db, &id).await.map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, "subscriber removed");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct DeliveryResponse {
    id: i64,
    subscriber_id: String,
    status: DeliveryStatus,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    order_no: String,
    event_id: Option<String>,
    event_type: Option<String>,
}

/// `GET /admin/deliveries?status=dead|pending|delivered&limit=`: newest first.
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
    let rows: Vec<DeliveryResponse> = subscribers::list_deliveries(&state.db, status, limit)
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": rows })))
}

/// `POST /admin/deliveries/{id}/redeliver`: queue a dead delivery again, due now.
pub async fn redeliver(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    subscribers::redeliver(&state.db, id.into_inner())
        .await
        .map_err(subscriber_error)?;
    state.engine.wake_relay();
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "status": "pending" })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedQuery {
    /// `true`: resolved ones too.
    all: Option<bool>,
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct UnmatchedResponse {
    id: i64,
    provider: entities::Provider,
    event_id: String,
    pay_no: String,
    trade_state: String,
    amount: Option<entities::MinorUnit>,
    provider_txn_id: Option<String>,
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
pub async fn list_unmatched(
    state: web::Data<AppState>,
    params: web::Query<UnmatchedQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let rows: Vec<UnmatchedResponse> = unmatched::list(&state.db, !params.all.unwrap_or(false), limit)
        .await?
        .into_iter()
        .map(UnmatchedResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "notifications": rows })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    reason: String,
}

/// `POST /admin/unmatched-notifications/{id}/resolve {reason}`: the operator settled it
/// (refunded by hand, matched to a restored order, ...); recorded with who and why.
pub async fn resolve_unmatched(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let reason = OperatorReason::parse(&body.into_inner().reason).map_err(ApiError::Validation)?;
    let operator = Operator::Admin("admin".to_owned());
    let row = unmatched::resolve(&state.db, id.into_inner(), &operator, &reason)
        .await
        .map_err(|err| match err {
            unmatched::ResolveError::NotFound => ApiError::NotFound("unmatched notification"),
            unmatched::ResolveError::AlreadyResolved => ApiError::BadRequest {
                status: actix_web::http::StatusCode::CONFLICT,
                code: "already_resolved",
                message: "this notification is already resolved".to_owned(),
            },
            unmatched::ResolveError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(id = row.id, %operator, "unmatched notification resolved");
    Ok(HttpResponse::Ok().json(UnmatchedResponse::from(row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptPaymentBody {
    pay_no: String,
    reason: String,
}

/// `POST /admin/orders/{order_no}/accept-payment {pay_no, reason}`: an operator accepts a
/// payment of another amount (the order is `stuck` on it) as the order's payment, through the
/// order's actor; logged with the operator and the reason.
pub async fn accept_payment(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<AcceptPaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let reason = OperatorReason::parse(&body.reason).map_err(ApiError::Validation)?;
    let pay_no = body
        .pay_no
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| entities::PayNo::new(n).ok())
        .ok_or_else(|| {
            ApiError::Validation(actors::domain::ValidationError::new(
                "invalid_field",
                "pay_no must be a payment number of this order",
            ))
        })?;
    let order_id = super::order_id(&order_no)?;
    state
        .engine
        .accept_payment(order_id, Operator::Admin("admin".to_owned()), pay_no, reason)
        .await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.public_base_url, true)))
}
