//! Refunds: merchants refund their paid orders (`/v1`), operators any payment that took money
//! (`/admin`). A refund is committed before the provider is asked and answered `pending`; the
//! refund worker takes it to `succeeded` or `failed` (events `refund.*`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::domain::{MerchantId, NewRefund};
use actors::store::refunds::{self, RefundCreated};
use actors::store::{query, Operator};
use chrono::{DateTime, Utc};
use entities::{refunds as rows, Currency, MinorUnit, OrderStatus, PayNo, Provider, RefundNo, RefundStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::schema;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/orders/{order_no}/refunds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"out_refund_id": "rf-2026-0001", "amount": 500, "reason": "one item returned"}))]
pub struct CreateRefundBody {
    /// Your own id of this refund: the idempotency key (per merchant). The same id with the
    /// same content answers the same refund (200); with other content, 409 `refund_conflict`.
    #[schema(min_length = 1, max_length = 64)]
    pub out_refund_id: String,
    /// Minor units to give back; positive, at most what is left of the payment.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// Why; shown to the buyer by some providers.
    #[schema(min_length = 1, max_length = 80)]
    pub reason: String,
}

/// `POST /admin/orders/{order_no}/refunds`: as a merchant's, and may name the payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRefundBody {
    #[schema(min_length = 1, max_length = 64)]
    pub out_refund_id: String,
    #[schema(minimum = 1)]
    pub amount: i64,
    #[schema(min_length = 1, max_length = 80)]
    pub reason: String,
    /// The payment to refund: a second payment, or one of another amount. Omitted: the
    /// order's own payment (the order must be paid).
    #[serde(default)]
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub pay_no: Option<String>,
}

/// One refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundResponse {
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    pub refund_no: RefundNo,
    pub out_refund_id: String,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub order_no: String,
    /// The payment refunded.
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    pub pay_no: PayNo,
    #[schema(value_type = schema::Provider)]
    pub provider: Provider,
    #[schema(value_type = i64, minimum = 1)]
    pub amount: MinorUnit,
    #[schema(value_type = schema::Currency)]
    pub currency: Currency,
    pub reason: String,
    #[schema(value_type = schema::RefundStatus)]
    pub status: RefundStatus,
    /// Who asked: `merchant:<id>`, `admin:<name>`, or `system` for an automatic refund.
    pub operator: String,
    /// The provider's id of the refund, once it gave one.
    pub provider_refund_id: Option<String>,
    /// Why it failed, as the provider said.
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
}

impl From<rows::Model> for RefundResponse {
    fn from(refund: rows::Model) -> Self {
        Self {
            refund_no: refund.refund_no,
            out_refund_id: refund.out_refund_id,
            order_no: refund.order_id.to_string(),
            pay_no: refund.pay_no,
            provider: refund.provider,
            amount: refund.amount,
            currency: refund.currency,
            reason: refund.reason,
            status: refund.status,
            operator: refund.operator,
            provider_refund_id: refund.provider_refund_id,
            failure: refund.failure,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
            succeeded_at: refund.succeeded_at,
        }
    }
}

/// An order's refunds.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundListResponse {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub order_no: String,
    #[schema(value_type = schema::OrderStatus)]
    pub status: OrderStatus,
    /// Confirmed refunded of the order's own payment.
    #[schema(value_type = i64, minimum = 0)]
    pub refunded_amount: MinorUnit,
    /// Oldest first (automatic refunds of other payments included).
    pub refunds: Vec<RefundResponse>,
}

/// `POST /v1/orders/{order_no}/refunds`.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_no}/refunds",
    tag = "refunds",
    operation_id = "create_refund",
    summary = "Refund (part of) a paid order",
    description = "Refunds part or all of the order's payment. Only a `paid` (or `paid_after_close`) order; the refunds of a payment (pending and succeeded) never exceed what it took — checked in the transaction that creates the refund, so concurrent requests cannot both pass (422 `refund_exceeds_paid`, nothing written). Idempotent per merchant and `out_refund_id`. The refund is committed before the provider is asked and answered `pending`; follow it with `GET /v1/refunds/{refund_no}` or the `refund.succeeded` / `refund.failed` events. The provider refunds once whatever happens: every retry sends the same `refund_no`.",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    request_body = CreateRefundBody,
    responses(
        (status = 201, description = "The refund, committed (`pending`)", body = RefundResponse, links(
            ("GetRefund" = (operation_id = "get_refund", parameters(("refund_no" = "$response.body#/refund_no")))),
        )),
        (status = 200, description = "An identical replay: the refund the first request created", body = RefundResponse),
    ),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "refund_conflict", "order_not_refundable", "concurrent_update", "invalid_field", "invalid_amount", "refund_exceeds_paid", "internal_error"]))),
)]
#[tracing::instrument(name = "create refund", skip_all, fields(merchant_id = %merchant.as_str(), order_no = %order_no))]
pub async fn create(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
    body: web::Json<CreateRefundBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let request = NewRefund::parse(&body.out_refund_id, body.amount, &body.reason, None)?;
    let merchant = merchant.into_inner();
    let order_id = super::order_id(&order_no)?;
    let operator = Operator::Merchant(merchant.clone());
    let created = state
        .engine
        .create_refund(order_id, Some(&merchant), &request, &operator)
        .await?;
    Ok(created_response(created))
}

/// `GET /v1/orders/{order_no}/refunds`.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_no}/refunds",
    tag = "refunds",
    operation_id = "list_order_refunds",
    summary = "An order's refunds",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    responses((status = 200, description = "The order's refunded amount and its refunds, oldest first", body = RefundListResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn list(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = query::find_merchant_order(&state.db, &merchant, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(list_of(&state, order).await?))
}

/// `GET /v1/refunds/{refund_no}`.
#[utoipa::path(
    get,
    path = "/v1/refunds/{refund_no}",
    tag = "refunds",
    operation_id = "get_refund",
    summary = "Read a refund",
    params(("refund_no" = String, Path, description = "The refund's number; anything that is not a refund of the caller is a 404")),
    responses((status = 200, description = "The refund", body = RefundResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn get(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    refund_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let refund_no: RefundNo = refund_no.parse().map_err(|_| ApiError::NotFound("refund"))?;
    let refund = refunds::find(&state.db, refund_no, Some(&merchant)).await?;
    Ok(HttpResponse::Ok().json(RefundResponse::from(refund)))
}

/// `POST /admin/orders/{order_no}/refunds`.
#[utoipa::path(
    post,
    path = "/admin/orders/{order_no}/refunds",
    tag = "admin",
    operation_id = "admin_create_refund",
    summary = "Refund a payment of an order (operator)",
    description = "As the merchant's refund, recorded with the operator; `pay_no` may name another payment of the order that took money (a second payment, one of another amount, which is never refunded automatically).",
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = AdminRefundBody,
    responses(
        (status = 201, description = "The refund, committed (`pending`)", body = RefundResponse),
        (status = 200, description = "An identical replay", body = RefundResponse),
    ),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "refund_conflict", "order_not_refundable", "concurrent_update", "invalid_field", "invalid_amount", "refund_exceeds_paid", "not_a_payment", "internal_error"]))),
)]
pub async fn admin_create(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<AdminRefundBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let created = crate::operations::refund_order(
        &state,
        &order_no,
        &body.out_refund_id,
        body.amount,
        &body.reason,
        body.pay_no.as_deref(),
        crate::operations::api_operator(),
    )
    .await?;
    Ok(created_response(created))
}

/// `GET /admin/orders/{order_no}/refunds`.
#[utoipa::path(
    get,
    path = "/admin/orders/{order_no}/refunds",
    tag = "admin",
    operation_id = "admin_list_order_refunds",
    summary = "An order's refunds (operator)",
    params(("order_no" = String, Path, description = "The order's number")),
    responses((status = 200, description = "The order's refunded amount and its refunds, oldest first", body = RefundListResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn admin_list(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order = query::find_order(&state.db, super::order_id(&order_no)?)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(list_of(&state, order).await?))
}

async fn list_of(state: &AppState, order: entities::orders::Model) -> Result<RefundListResponse, ApiError> {
    let refunds = refunds::of_order(&state.db, order.id).await?;
    Ok(RefundListResponse {
        order_no: order.order_no,
        status: order.status,
        refunded_amount: order.refunded_amount,
        refunds: refunds.into_iter().map(RefundResponse::from).collect(),
    })
}

fn created_response(created: RefundCreated) -> HttpResponse {
    let (status, refund) = match created {
        RefundCreated::New(refund) => (StatusCode::CREATED, refund),
        RefundCreated::Replayed(refund) => (StatusCode::OK, refund),
    };
    HttpResponse::build(status).json(RefundResponse::from(refund))
}
