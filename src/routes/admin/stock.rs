//! `/admin/merchants/{merchant_id}/skus`: tracked stock, per merchant.

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::stock;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::operations::{api_operator, set_stock};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockBody {
    /// Units the merchant can sell; not negative.
    #[schema(minimum = 0)]
    available: i64,
}

/// A merchant's tracked stock of one SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockResponse {
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
#[utoipa::path(
    put,
    path = "/admin/merchants/{merchant_id}/skus/{sku_id}",
    tag = "admin",
    operation_id = "admin_put_sku",
    summary = "Set a merchant's tracked stock of a SKU",
    description = "Only that merchant's orders reserve from it; a SKU no row tracks is not reserved at all.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("sku_id" = String, Path, description = "The merchant's SKU (1 to 64 characters)")),
    request_body = SetStockBody,
    responses((status = 200, description = "The stock as stored", body = StockResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_field", "invalid_quantity", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn put_sku(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<SetStockBody>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let operator = api_operator();
    let sku = set_stock(&state, &merchant_id, &sku_id, body.available, &operator).await?;
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
}

/// `GET /admin/merchants/{merchant_id}/skus/{sku_id}`: 404 when the merchant does not track it.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}/skus/{sku_id}",
    tag = "admin",
    operation_id = "admin_get_sku",
    summary = "Read a merchant's tracked stock of a SKU",
    params(("merchant_id" = String, Path, description = "The merchant"), ("sku_id" = String, Path, description = "The merchant's SKU (1 to 64 characters)")),
    responses((status = 200, description = "The stock", body = StockResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn get_sku(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let merchant = MerchantId::parse_input(&merchant_id)?;
    let sku = stock::get(&state.db, &merchant, &sku_id)
        .await?
        .ok_or(ApiError::NotFound("sku"))?;
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
}
