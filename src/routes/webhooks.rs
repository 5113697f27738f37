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
use actors::gateway::{NotificationError, NotificationRequest};
use actors::order::messages::NotifyOutcome;
use actors::OrderError;
use entities::Provider;

use crate::error::ApiError;
use crate::startup::AppState;

/// Why a notification was not accepted.
enum Refusal {
    /// Not authentic or not parseable: the provider's retries will not help, nothing changed.
    Rejected(NotificationError),
    /// Authentic, but recording it failed: the provider should retry.
    Failed(OrderError),
}

#[tracing::instrument(name = "provider notification", skip_all, fields(%provider, pay_no = tracing::field::Empty, outcome = tracing::field::Empty))]
async fn accept(
    state: &AppState,
    provider: Provider,
    req: &HttpRequest,
    body: &Bytes,
) -> Result<NotifyOutcome, Refusal> {
    let gateway = state
        .gateways
        .get(provider)
        .ok_or(Refusal::Failed(OrderError::ProviderUnavailable(provider)))?;
    let notification = gateway
        .verify_notification(&notification_request(req, body))
        .map_err(|err| {
            tracing::warn!(error.message = %err, "notification rejected");
            Refusal::Rejected(err)
        })?;
    tracing::Span::current().record("pay_no", tracing::field::display(&notification.out_trade_no));
    let outcome = state.engine.notify(provider, notification).await.map_err(|err| {
        tracing::error!(error.cause_chain = ?err, "failed to apply a notification");
        Refusal::Failed(err)
    })?;
    tracing::Span::current().record("outcome", tracing::field::debug(outcome));
    Ok(outcome)
}

/// `POST /webhooks/sandbox`.
pub async fn sandbox(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    match accept(&state, Provider::Sandbox, &req, &body).await {
        Ok(outcome) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "outcome": format!("{outcome:?}") })))
        }
        Err(Refusal::Rejected(err)) => Err(ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_notification",
            message: err.to_string(),
        }),
        Err(Refusal::Failed(err)) => Err(ApiError::Order(err)),
    }
}

/// `POST /webhooks/wechat`: 204 on success; `{"code":"FAIL"}` with a 4xx/5xx otherwise.
pub async fn wechat(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let (status, message) = match accept(&state, Provider::Wechat, &req, &body).await {
        Ok(_) => return HttpResponse::NoContent().finish(),
        Err(Refusal::Rejected(err)) => (StatusCode::BAD_REQUEST, err.to_string()),
        Err(Refusal::Failed(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error; retry".to_owned()),
    };
    HttpResponse::build(status).json(serde_json::json!({ "code": "FAIL", "message": message }))
}

/// `POST /webhooks/alipay`: the literal `success`, or `fail` (Alipay then retries).
pub async fn alipay(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let status = match accept(&state, Provider::Alipay, &req, &body).await {
        Ok(_) => return HttpResponse::Ok().content_type("text/plain").body("success"),
        Err(Refusal::Rejected(_)) => StatusCode::BAD_REQUEST,
        Err(Refusal::Failed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpResponse::build(status).content_type("text/plain").body("fail")
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
