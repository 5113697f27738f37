//! Provider notification routes. Authenticated by the provider's signature only: verified
//! before anything is read or written, deduplicated by the provider's event id, forwarded to
//! the order actor, and acknowledged only after the outcome committed. One for a trade
//! paywarden does not know is stored for an operator (`GET /admin/unmatched-notifications`)
//! and acknowledged once stored. Each provider gets the
//! answer it expects: WeChat a 204 (or a 4xx/5xx with `{"code":"FAIL","message":..}`, which it
//! retries), Alipay the literal `success` (or `fail`), the sandbox our JSON.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::gateway::{Acknowledgement, NotificationError, NotificationRequest, Received};
use actors::order::messages::NotifyOutcome;
use actors::provider::Route;
use actors::OrderError;
use entities::Provider;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Why a notification was not accepted.
enum Refusal {
    /// Not authentic or not parseable: the provider's retries will not help, nothing changed.
    Rejected(NotificationError),
    /// Authentic, but recording it failed: the provider should retry.
    Failed(OrderError),
}

#[tracing::instrument(name = "provider notification", skip_all, fields(%route, pay_no = tracing::field::Empty, outcome = tracing::field::Empty))]
async fn accept(state: &AppState, route: &Route, req: &HttpRequest, body: &Bytes) -> Result<NotifyOutcome, Refusal> {
    let provider = route.provider;
    let rejected = |err: NotificationError| {
        tracing::warn!(error.message = %err, "notification rejected");
        Refusal::Rejected(err)
    };
    let gateway = match &route.account {
        None => state
            .gateways
            .get(provider)
            .cloned()
            .ok_or(Refusal::Failed(OrderError::ProviderUnavailable(provider)))?,
        // An account that does not exist (or is not of this provider) has nothing to verify
        // with: refused like a bad signature. One that could not be read: the provider retries.
        Some(account) => state
            .accounts
            .gateway(provider, account)
            .await
            .map_err(|err| match err {
                actors::gateway::GatewayError::NotConfigured(_) => rejected(NotificationError::UnknownAccount),
                other => Refusal::Failed(OrderError::Gateway(other)),
            })?,
    };
    let notification = gateway
        .verify_notification(&notification_request(req, body))
        .map_err(rejected)?;
    tracing::Span::current().record("pay_no", tracing::field::display(&notification.out_trade_no));
    // A trade of another account (another merchant's, or the deployment's own) is refused
    // here, even signed: each account's notifications speak for its own trades only.
    if let Some(pay_no) = notification.pay_no() {
        let owner = state.engine.trade_route(pay_no).await.map_err(Refusal::Failed)?;
        if owner.is_some_and(|owner| &owner != route) {
            return Err(rejected(NotificationError::UnknownAccount));
        }
    }
    let outcome = state.engine.notify(route, notification).await.map_err(|err| {
        tracing::error!(error.cause_chain = ?err, "failed to apply a notification");
        Refusal::Failed(err)
    })?;
    tracing::Span::current().record("outcome", tracing::field::debug(outcome));
    Ok(outcome)
}

/// What the sandbox's notifications are answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxAck {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// What the notification did: `Paid`, `PaidAfterClose`, `Duplicate`, `AmountMismatch`,
    /// `Anomaly`, `Ignored` or `Unmatched`.
    #[schema(example = "Paid")]
    outcome: String,
}

/// What WeChat Pay is answered when a notification is not accepted (it then retries).
#[derive(Debug, Serialize, ToSchema)]
pub struct WechatFailure {
    #[schema(value_type = String, example = "FAIL")]
    code: &'static str,
    message: String,
}

/// `POST /webhooks/sandbox`.
#[utoipa::path(
    post,
    path = "/webhooks/sandbox",
    tag = "webhooks",
    operation_id = "webhook_sandbox",
    summary = "The sandbox provider's payment notifications",
    description = "Authenticated by the `Sandbox-Signature` header only (no bearer token): `t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, \"<t>.<body>\")>`, at most 300 s off. Verified before anything is read, deduplicated by the event id, applied through the order's actor, answered once the outcome committed. A notification for an unknown trade is stored for an operator and acknowledged.",
    params(("Sandbox-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex signature>`")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The sandbox's notification: `{id, out_trade_no, trade_state, transaction_id, amount, paid_at}`, signed as sent"),
    responses((status = 200, description = "Accepted (or a duplicate)", body = SandboxAck)),
    extensions(("x-error-codes" = json!(["invalid_notification", "concurrent_update", "internal_error", "service_unavailable"]))),
)]
pub async fn sandbox(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    answer_sandbox(accept(&state, &Route::configured(Provider::Sandbox), &req, &body).await)
}

/// The sandbox's JSON answer.
fn answer_sandbox(outcome: Result<NotifyOutcome, Refusal>) -> Result<HttpResponse, ApiError> {
    match outcome {
        Ok(outcome) => Ok(HttpResponse::Ok().json(SandboxAck {
            status: "ok",
            outcome: format!("{outcome:?}"),
        })),
        Err(Refusal::Rejected(err)) => Err(ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_notification",
            message: err.to_string(),
        }),
        Err(Refusal::Failed(err)) => Err(ApiError::Order(err)),
    }
}

/// `POST /webhooks/wechat`: 204 on success; `{"code":"FAIL"}` with a 4xx/5xx otherwise.
#[utoipa::path(
    post,
    path = "/webhooks/wechat",
    tag = "webhooks",
    operation_id = "webhook_wechat",
    summary = "WeChat Pay's payment notifications (API v3)",
    description = "Authenticated by WeChat Pay's signature only (no bearer token): SHA256-RSA over `<timestamp>\\n<nonce>\\n<body>\\n` with the platform certificate or key named by `Wechatpay-Serial`; the resource is then decrypted (AEAD_AES_256_GCM with the APIv3 key). Answered in WeChat Pay's form: 204, or `{\"code\":\"FAIL\"}` with a 4xx/5xx, which WeChat Pay retries.",
    params(
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds"),
        ("Wechatpay-Nonce" = String, Header, description = "Random string of the signature"),
        ("Wechatpay-Signature" = String, Header, description = "Base64 SHA256-RSA signature"),
        ("Wechatpay-Serial" = String, Header, description = "Which platform certificate or key signed"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "WeChat Pay's notification with its encrypted `resource`"),
    responses(
        (status = 204, description = "Accepted (or a duplicate)"),
        (status = 400, description = "Not authentic or not readable; nothing changed", body = WechatFailure),
        (status = 500, description = "Authentic, but recording it failed; WeChat Pay retries", body = WechatFailure),
    ),
)]
pub async fn wechat(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    receive(
        &state,
        &Route::configured(Provider::Wechat),
        actors::gateway::wechat::acknowledge,
        &req,
        &body,
    )
    .await
}

/// `POST /webhooks/alipay`: the literal `success`, or `fail` (Alipay then retries).
#[utoipa::path(
    post,
    path = "/webhooks/alipay",
    tag = "webhooks",
    operation_id = "webhook_alipay",
    summary = "Alipay's payment notifications",
    description = "Authenticated by Alipay's signature only (no bearer token): the `sign` parameter, RSA2 (SHA256withRSA) with Alipay's public key over the sorted parameters except `sign` and `sign_type`. Answered in Alipay's form: the literal `success`, or `fail`, which Alipay retries.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Alipay's notification parameters, `sign` and `sign_type` among them"),
    responses(
        (status = 200, description = "Accepted (or a duplicate)", content_type = "text/plain", body = String, example = "success"),
        (status = 400, description = "Not authentic or not readable; nothing changed", content_type = "text/plain", body = String, example = "fail"),
        (status = 500, description = "Authentic, but recording it failed; Alipay retries", content_type = "text/plain", body = String, example = "fail"),
    ),
)]
pub async fn alipay(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    receive(
        &state,
        &Route::configured(Provider::Alipay),
        actors::gateway::alipay::acknowledge,
        &req,
        &body,
    )
    .await
}

/// `POST /webhooks/sandbox/{account_id}`: a merchant's sandbox account's notifications.
#[utoipa::path(
    post,
    path = "/webhooks/sandbox/{account_id}",
    tag = "webhooks",
    operation_id = "webhook_sandbox_account",
    summary = "A merchant's sandbox account's notifications",
    description = "As `/webhooks/sandbox`, verified with the account's own secret; a notification for a trade of another account is refused (400) and changes nothing.",
    params(("account_id" = String, Path, description = "The provider account"), ("Sandbox-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex signature>`")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The sandbox's notification, signed as sent"),
    responses((status = 200, description = "Accepted (or a duplicate)", body = SandboxAck)),
    extensions(("x-error-codes" = json!(["invalid_notification", "concurrent_update", "internal_error", "service_unavailable"]))),
)]
pub async fn sandbox_account(
    state: web::Data<AppState>,
    account_id: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let route = Route::account(Provider::Sandbox, &account_id);
    answer_sandbox(accept(&state, &route, &req, &body).await)
}

/// `POST /webhooks/wechat/{account_id}`: a merchant's WeChat Pay account's notifications.
#[utoipa::path(
    post,
    path = "/webhooks/wechat/{account_id}",
    tag = "webhooks",
    operation_id = "webhook_wechat_account",
    summary = "A merchant's WeChat Pay account's notifications",
    description = "As `/webhooks/wechat`, verified and decrypted with the account's own platform key and APIv3 key; a notification for a trade of another account is refused (400) and changes nothing.",
    params(
        ("account_id" = String, Path, description = "The provider account"),
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds"),
        ("Wechatpay-Nonce" = String, Header, description = "Random string of the signature"),
        ("Wechatpay-Signature" = String, Header, description = "Base64 SHA256-RSA signature"),
        ("Wechatpay-Serial" = String, Header, description = "Which platform certificate or key signed"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "WeChat Pay's notification with its encrypted `resource`"),
    responses(
        (status = 204, description = "Accepted (or a duplicate)"),
        (status = 400, description = "Not authentic, not readable, or for another account's trade; nothing changed", body = WechatFailure),
        (status = 500, description = "Authentic, but recording it failed; WeChat Pay retries", body = WechatFailure),
    ),
)]
pub async fn wechat_account(
    state: web::Data<AppState>,
    account_id: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let route = Route::account(Provider::Wechat, &account_id);
    receive(&state, &route, actors::gateway::wechat::acknowledge, &req, &body).await
}

/// `POST /webhooks/alipay/{account_id}`: a merchant's Alipay app's notifications.
#[utoipa::path(
    post,
    path = "/webhooks/alipay/{account_id}",
    tag = "webhooks",
    operation_id = "webhook_alipay_account",
    summary = "A merchant's Alipay app's notifications",
    description = "As `/webhooks/alipay`, verified with the account's own Alipay public key; a notification for a trade of another account is refused (`fail`, 400) and changes nothing.",
    params(("account_id" = String, Path, description = "The provider account")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Alipay's notification parameters, `sign` and `sign_type` among them"),
    responses(
        (status = 200, description = "Accepted (or a duplicate)", content_type = "text/plain", body = String, example = "success"),
        (status = 400, description = "Not authentic, not readable, or for another account's trade; nothing changed", content_type = "text/plain", body = String, example = "fail"),
        (status = 500, description = "Authentic, but recording it failed; Alipay retries", content_type = "text/plain", body = String, example = "fail"),
    ),
)]
pub async fn alipay_account(
    state: web::Data<AppState>,
    account_id: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let route = Route::account(Provider::Alipay, &account_id);
    receive(&state, &route, actors::gateway::alipay::acknowledge, &req, &body).await
}

/// Takes a provider's notification and answers it in the provider's own format (`acknowledge`,
/// from the provider's folder).
async fn receive(
    state: &AppState,
    route: &Route,
    acknowledge: fn(Received<'_>) -> Acknowledgement,
    req: &HttpRequest,
    body: &Bytes,
) -> HttpResponse {
    let outcome = accept(state, route, req, body).await;
    let message = match &outcome {
        Err(Refusal::Rejected(err)) => err.to_string(),
        _ => String::new(),
    };
    let received = match &outcome {
        Ok(_) => Received::Accepted,
        Err(Refusal::Rejected(_)) => Received::Rejected(&message),
        Err(Refusal::Failed(_)) => Received::Failed,
    };
    let answer = acknowledge(received);
    let mut response =
        HttpResponse::build(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    match answer.content_type {
        Some(content_type) => response.content_type(content_type).body(answer.body),
        None => response.finish(),
    }
}

/// The headers (names lower-cased) and the raw body, exactly as received.
pub fn notification_request(req: &HttpRequest, body: &Bytes) -> NotificationRequest {
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_ascii_lowercase(), value.to_owned());
        }
    }
    NotificationRequest {
        headers,
        body: body.to_vec(),
    }
}
