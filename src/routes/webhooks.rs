//! Provider notification routes. Authenticated by the provider's signature only: verified
//! before anything is read or written, deduplicated by the provider's event id, forwarded to
//! the order actor, and acknowledged only after the outcome committed.

use std::collections::BTreeMap;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::gateway::NotificationRequest;
use actors::OrderError;
use entities::Provider;

use crate::error::ApiError;
use crate::startup::AppState;

/// `POST /webhooks/sandbox`.
#[tracing::instrument(name = "sandbox notification", skip_all, fields(pay_no = tracing::field::Empty, outcome = tracing::field::Empty))]
pub async fn sandbox(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    let gateway = state
        .gateways
        .get(Provider::Sandbox)
        .ok_or(ApiError::NotFound("route"))?;
    let notification = gateway
        .verify_notification(&notification_request(&req, &body))
        .map_err(|err| {
            tracing::warn!(error.message = %err, "sandbox notification rejected");
            ApiError::BadRequest {
                status: actix_web::http::StatusCode::BAD_REQUEST,
                code: "invalid_notification",
                message: err.to_string(),
            }
        })?;
    tracing::Span::current().record("pay_no", tracing::field::display(notification.pay_no));
    let outcome = state
        .engine
        .notify(Provider::Sandbox, notification)
        .await
        .map_err(|err| match err {
            OrderError::AttemptNotFound => ApiError::NotFound("payment"),
            other => ApiError::Order(other),
        })?;
    tracing::Span::current().record("outcome", tracing::field::debug(outcome));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "outcome": format!("{outcome:?}") })))
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
