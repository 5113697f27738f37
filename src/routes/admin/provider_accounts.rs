//! `/admin/merchants/{merchant_id}/provider-accounts`: a merchant's own WeChat Pay merchant
//! account, Alipay app or sandbox. Secrets go in and never come out: answers show the public
//! fields and a fingerprint of the keys.

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::gateway::account::Verification;
use actors::store::accounts;
use chrono::{DateTime, Utc};
use entities::Provider;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::operations::{self, api_operator};
use crate::routes::dto::schema;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAccountBody {
    /// `wechat`, `alipay` or `sandbox`.
    provider: String,
    /// The account's fields, PEM inline. WeChat Pay (public-key mode): `mchid`, `appid`,
    /// `merchant_serial_no`, `merchant_private_key_pem`, `platform_public_key_pem`,
    /// `platform_serial`, `apiv3_key` (32 bytes), optional `api_base_url` and
    /// `merchant_certificate_pem` (then the private key must be its key, and its serial
    /// `merchant_serial_no`). Alipay: `app_id`, `app_private_key_pem`, `alipay_public_key_pem`,
    /// optional `gateway_url` and `seller_id`. Sandbox: `webhook_secret`. Endpoints must be
    /// `https://` in production.
    #[schema(value_type = Object)]
    config: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountBody {
    /// The fields to replace (a key rotation sends the new key, and its serial, alone); the
    /// whole is checked again.
    #[schema(value_type = Object)]
    config: serde_json::Value,
}

/// The names of a configuration's fields, never their values (some are secrets).
fn field_names(config: &serde_json::Value) -> Vec<&str> {
    config
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

impl std::fmt::Debug for AddAccountBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddAccountBody")
            .field("provider", &self.provider)
            .field("config_fields", &field_names(&self.config))
            .finish()
    }
}

impl std::fmt::Debug for UpdateAccountBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateAccountBody")
            .field("config_fields", &field_names(&self.config))
            .finish()
    }
}

/// A provider account, without its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    account_id: String,
    merchant_id: String,
    #[schema(value_type = schema::Provider)]
    provider: Provider,
    /// `enabled` or `disabled`.
    status: &'static str,
    /// `api`.
    source: String,
    /// The public fields (ids, serials, endpoints, the provider's public key).
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// SHA-256 of the merchant's (app's) public key, SPKI DER, hex: tells keys apart and
    /// matches the key uploaded at the provider, without showing a secret.
    fingerprint: String,
    /// Where the provider sends this account's notifications.
    notify_path: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl From<entities::provider_accounts::Model> for AccountResponse {
    fn from(row: entities::provider_accounts::Model) -> Self {
        Self {
            notify_path: format!(
                "/webhooks/{}/{}",
                actors::gateway::registry::info(row.provider).webhook_path,
                row.account_id
            ),
            config: serde_json::from_str(&row.config).unwrap_or(serde_json::Value::Null),
            status: if row.enabled { "enabled" } else { "disabled" },
            account_id: row.account_id,
            merchant_id: row.merchant_id,
            provider: row.provider,
            source: row.source,
            fingerprint: row.fingerprint,
            created_at: row.created_at,
            updated_at: row.updated_at,
            disabled_at: row.disabled_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    accounts: Vec<AccountResponse>,
}

/// What a verification found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationResponse {
    account_id: String,
    /// The keys did what they are for.
    ok: bool,
    /// `trade_not_found` (the expected answer), `trade_found`, `refused`,
    /// `unverified_answer`, `unreachable`, `failed`.
    outcome: String,
    /// What the answer proves, for people.
    detail: String,
}

/// `POST /admin/merchants/{merchant_id}/provider-accounts`.
#[utoipa::path(
    post,
    path = "/admin/merchants/{merchant_id}/provider-accounts",
    tag = "admin",
    operation_id = "admin_add_provider_account",
    summary = "Attach a provider account to a merchant",
    description = "Checked whole (keys parse, a private key matches its certificate, the APIv3 key is 32 bytes, endpoints are https in production) and stored with its secrets sealed (AES-256-GCM under secrets.master_key); the answer never shows a secret. Nothing is stored when anything is refused.",
    params(("merchant_id" = String, Path, description = "The merchant")),
    request_body = AddAccountBody,
    responses((status = 201, description = "The account, without its secrets", body = AccountResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "unknown_provider", "provider_unavailable", "invalid_provider_config", "merchant_disabled", "secrets_not_configured", "internal_error"]))),
)]
pub async fn add_provider_account(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<AddAccountBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let row = operations::add_provider_account(&state, &path, &body.provider, body.config, &api_operator()).await?;
    Ok(HttpResponse::Created().json(AccountResponse::from(row)))
}

/// `GET /admin/merchants/{merchant_id}/provider-accounts`.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}/provider-accounts",
    tag = "admin",
    operation_id = "admin_list_provider_accounts",
    summary = "List a merchant's provider accounts",
    params(("merchant_id" = String, Path, description = "The merchant")),
    responses((status = 200, description = "Its accounts, oldest first, without their secrets", body = AccountList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn list_provider_accounts(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let merchant = MerchantId::parse_input(&path)?;
    let rows = accounts::list(&state.db, &merchant).await?;
    Ok(HttpResponse::Ok().json(AccountList {
        accounts: rows.into_iter().map(AccountResponse::from).collect(),
    }))
}

/// `GET /admin/merchants/{merchant_id}/provider-accounts/{account_id}`.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}/provider-accounts/{account_id}",
    tag = "admin",
    operation_id = "admin_get_provider_account",
    summary = "Read a merchant's provider account",
    params(("merchant_id" = String, Path, description = "The merchant"), ("account_id" = String, Path, description = "The account")),
    responses((status = 200, description = "The account, without its secrets", body = AccountResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn get_provider_account(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, account_id) = path.into_inner();
    let merchant = MerchantId::parse_input(&merchant_id)?;
    let row = accounts::get(&state.db, &merchant, &account_id).await?;
    Ok(HttpResponse::Ok().json(AccountResponse::from(row)))
}

/// `PATCH /admin/merchants/{merchant_id}/provider-accounts/{account_id}`: replace fields.
#[utoipa::path(
    patch,
    path = "/admin/merchants/{merchant_id}/provider-accounts/{account_id}",
    tag = "admin",
    operation_id = "admin_update_provider_account",
    summary = "Replace fields of a provider account (key rotation)",
    description = "The fields given replace the stored ones; the whole is checked again and sealed anew. Nothing changes when anything is refused.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("account_id" = String, Path, description = "The account")),
    request_body = UpdateAccountBody,
    responses((status = 200, description = "The account, without its secrets", body = AccountResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "invalid_provider_config", "secrets_not_configured", "internal_error"]))),
)]
pub async fn update_provider_account(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<UpdateAccountBody>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, account_id) = path.into_inner();
    let row = operations::update_provider_account(
        &state,
        &merchant_id,
        &account_id,
        body.into_inner().config,
        &api_operator(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountResponse::from(row)))
}

/// `POST /admin/merchants/{merchant_id}/provider-accounts/{account_id}/disable`.
#[utoipa::path(
    post,
    path = "/admin/merchants/{merchant_id}/provider-accounts/{account_id}/disable",
    tag = "admin",
    operation_id = "admin_disable_provider_account",
    summary = "Disable a provider account",
    description = "No new attempt starts at it. Disabling a disabled account changes nothing.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("account_id" = String, Path, description = "The account")),
    responses((status = 200, description = "The account, disabled", body = AccountResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn disable_provider_account(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, account_id) = path.into_inner();
    let row = operations::disable_provider_account(&state, &merchant_id, &account_id, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(AccountResponse::from(row)))
}

/// `POST /admin/merchants/{merchant_id}/provider-accounts/{account_id}/verify`.
#[utoipa::path(
    post,
    path = "/admin/merchants/{merchant_id}/provider-accounts/{account_id}/verify",
    tag = "admin",
    operation_id = "admin_verify_provider_account",
    summary = "Prove a provider account's keys work",
    description = "Queries the provider for a trade number that does not exist, signed with the account's key, and reads the answer like every query's (a signed answer is verified with the account's provider key). `ok` says whether the keys did what they are for; `detail` what the answer proves.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("account_id" = String, Path, description = "The account")),
    responses((status = 200, description = "What the provider answered", body = VerificationResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "invalid_merchant_id", "invalid_provider_config", "internal_error"]))),
)]
pub async fn verify_provider_account(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, account_id) = path.into_inner();
    let Verification { ok, outcome, detail } =
        operations::verify_provider_account(&state, &merchant_id, &account_id, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(VerificationResponse {
        account_id,
        ok,
        outcome: outcome.to_owned(),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_s_debug_output_names_its_fields_and_shows_no_value() {
        let body: AddAccountBody = serde_json::from_value(serde_json::json!({
            "provider": "wechat",
            "config": {"apiv3_key": "0123456789abcdef0123456789abcdef", "merchant_private_key_pem": "-----BEGIN PRIVATE KEY-----x"}
        }))
        .unwrap();
        let shown = format!("{body:?}");
        assert!(shown.contains("apiv3_key") && shown.contains("wechat"), "{shown}");
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains("PRIVATE KEY"),
            "{shown}"
        );
        let patch: UpdateAccountBody =
            serde_json::from_value(serde_json::json!({"config": {"apiv3_key": "0123456789abcdef0123456789abcdef"}}))
                .unwrap();
        assert!(!format!("{patch:?}").contains("0123456789abcdef"));
    }
}
