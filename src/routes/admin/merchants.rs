//! `/admin/merchants`: merchants and their client API keys, as data.

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::store::merchants;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::operations::{self, api_operator};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantBody {
    /// The id its orders carry: 1 to 64 letters, digits, `_` and `-`; never reused.
    merchant_id: String,
    /// For people: 1 to 128 characters.
    name: String,
}

/// A merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantResponse {
    merchant_id: String,
    name: String,
    /// Its keys work; a disabled merchant's live orders still resolve.
    enabled: bool,
    /// `api` (onboarded at runtime) or `config` (a merchant of `auth.merchant_keys`).
    source: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl From<entities::merchants::Model> for MerchantResponse {
    fn from(row: entities::merchants::Model) -> Self {
        Self {
            merchant_id: row.merchant_id,
            name: row.name,
            enabled: row.enabled,
            source: row.source,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantList {
    merchants: Vec<MerchantResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKeyBody {
    /// What the key is for, for people (1 to 128 characters).
    label: String,
}

/// A merchant's client API key. The key itself is in the answer that issued it, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    key_id: String,
    merchant_id: String,
    /// The key's first characters, to tell keys apart.
    prefix: String,
    label: String,
    created_at: DateTime<Utc>,
    /// Within a minute.
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// Shown once, when the key is issued: `Authorization: Bearer <key>` on `/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<String>,
}

impl KeyResponse {
    pub(crate) fn new(row: entities::merchant_keys::Model, key: Option<String>) -> Self {
        Self {
            key_id: row.key_id,
            merchant_id: row.merchant_id,
            prefix: row.prefix,
            label: row.label,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            key,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyResponse>,
}

/// `POST /admin/merchants`: onboard a merchant.
#[utoipa::path(
    post,
    path = "/admin/merchants",
    tag = "admin",
    operation_id = "admin_create_merchant",
    summary = "Onboard a merchant",
    description = "A merchant of its own: issue it keys (`/keys`) and attach its provider accounts. Its id is never reused.",
    request_body = CreateMerchantBody,
    responses((status = 201, description = "The merchant", body = MerchantResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_merchant_id", "invalid_field", "merchant_exists", "internal_error"]))),
)]
pub async fn create_merchant(
    state: web::Data<AppState>,
    body: web::Json<CreateMerchantBody>,
) -> Result<HttpResponse, ApiError> {
    let row = operations::create_merchant(&state, &body.merchant_id, &body.name, &api_operator()).await?;
    Ok(HttpResponse::Created().json(MerchantResponse::from(row)))
}

/// `GET /admin/merchants`: every merchant, by id.
#[utoipa::path(
    get,
    path = "/admin/merchants",
    tag = "admin",
    operation_id = "admin_list_merchants",
    summary = "List the merchants",
    responses((status = 200, description = "Every merchant, by id", body = MerchantList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list_merchants(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let merchants = merchants::list(&state.db).await?;
    Ok(HttpResponse::Ok().json(MerchantList {
        merchants: merchants.into_iter().map(MerchantResponse::from).collect(),
    }))
}

/// `GET /admin/merchants/{merchant_id}`.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}",
    tag = "admin",
    operation_id = "admin_get_merchant",
    summary = "Read a merchant",
    params(("merchant_id" = String, Path, description = "The merchant")),
    responses((status = 200, description = "The merchant", body = MerchantResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn get_merchant(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let merchant = MerchantId::parse_input(&path)?;
    let row = merchants::get(&state.db, &merchant).await?;
    Ok(HttpResponse::Ok().json(MerchantResponse::from(row)))
}

/// `POST /admin/merchants/{merchant_id}/disable`: its keys stop working on every node within
/// a second; its live orders still resolve.
#[utoipa::path(
    post,
    path = "/admin/merchants/{merchant_id}/disable",
    tag = "admin",
    operation_id = "admin_disable_merchant",
    summary = "Disable a merchant",
    description = "Its keys (issued or configured) answer 401 on every node within a second; its live orders still resolve. Disabling a disabled merchant changes nothing.",
    params(("merchant_id" = String, Path, description = "The merchant")),
    responses((status = 200, description = "The merchant, disabled", body = MerchantResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn disable_merchant(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let row = operations::disable_merchant(&state, &path, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(MerchantResponse::from(row)))
}

/// `POST /admin/merchants/{merchant_id}/keys`: a new key, shown in this answer only.
#[utoipa::path(
    post,
    path = "/admin/merchants/{merchant_id}/keys",
    tag = "admin",
    operation_id = "admin_issue_key",
    summary = "Issue a merchant a client API key",
    description = "The key is in this answer only (only its digest is stored). A merchant may hold several keys at once: issue the new one, move the clients, revoke the old one.",
    params(("merchant_id" = String, Path, description = "The merchant")),
    request_body = IssueKeyBody,
    responses((status = 201, description = "The key, shown once", body = KeyResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "invalid_field", "merchant_disabled", "internal_error"]))),
)]
pub async fn issue_key(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<IssueKeyBody>,
) -> Result<HttpResponse, ApiError> {
    let (row, key) = operations::issue_key(&state, &path, &body.label, &api_operator()).await?;
    Ok(HttpResponse::Created().json(KeyResponse::new(row, Some(key.expose_secret().to_owned()))))
}

/// `GET /admin/merchants/{merchant_id}/keys`: the merchant's keys, newest first, never the keys.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}/keys",
    tag = "admin",
    operation_id = "admin_list_keys",
    summary = "List a merchant's keys",
    description = "Newest first, revoked ones included; never the keys themselves. A merchant's key in `auth.merchant_keys` lives in the configuration and is not listed.",
    params(("merchant_id" = String, Path, description = "The merchant")),
    responses((status = 200, description = "The keys", body = KeyList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn list_keys(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let merchant = MerchantId::parse_input(&path)?;
    let keys = merchants::keys(&state.db, &merchant).await?;
    Ok(HttpResponse::Ok().json(KeyList {
        keys: keys.into_iter().map(|row| KeyResponse::new(row, None)).collect(),
    }))
}

/// `DELETE /admin/merchants/{merchant_id}/keys/{key_id}`: revoke a key.
#[utoipa::path(
    delete,
    path = "/admin/merchants/{merchant_id}/keys/{key_id}",
    tag = "admin",
    operation_id = "admin_revoke_key",
    summary = "Revoke a merchant's key",
    description = "It answers 401 on every node within a second. Revoking a revoked key changes nothing.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("key_id" = String, Path, description = "The key")),
    responses((status = 200, description = "The key, revoked", body = KeyResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn revoke_key(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, key_id) = path.into_inner();
    let row = operations::revoke_key(&state, &merchant_id, &key_id, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(KeyResponse::new(row, None)))
}
