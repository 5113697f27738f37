//! `GET /metrics`: the Prometheus exposition ([`crate::metrics`] keeps the registry).

use actix_web::{web, HttpResponse};
use sha2::Digest as _;

use crate::metrics::Metrics;

/// `GET /metrics`. With `metrics.scrape_token` set, only a scraper presenting it as a bearer
/// token is served. The stuck-order gauge is read from the database (so it is right on every
/// node whichever node marked the orders), at most once per `metrics.gauge_refresh_milliseconds`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Open unless `metrics.scrape_token` is set (it must be in production): then `Authorization: Bearer <token>`, else 401.",
    responses(
        (status = 200, description = "The text exposition format", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`metrics.scrape_token` is set and was not presented", body = crate::error::ErrorBody),
    ),
)]
pub async fn handler(
    req: actix_web::HttpRequest,
    metrics: web::Data<Metrics>,
    state: web::Data<crate::state::AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    if let Some(token) = &state.metrics_access.scrape_token {
        // Compared by digest, as the API keys are: timing tells nothing about the token.
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, presented)| sha2::Sha256::digest(presented.trim().as_bytes()));
        if presented.as_deref() != Some(token.as_slice()) {
            return Err(crate::error::ApiError::Unauthorized);
        }
    }
    if metrics.gauges_due(state.metrics_access.gauge_refresh) {
        match actors::store::query::count_by_status(&state.db, entities::OrderStatus::Stuck).await {
            Ok(stuck) => metrics.orders_stuck.set(i64::try_from(stuck).unwrap_or(i64::MAX)),
            Err(err) => tracing::warn!(error.message = %err, "failed to count stuck orders for metrics"),
        }
        match actors::outbox::subscribers::count_disabled(&state.db).await {
            Ok(disabled) => metrics
                .webhooks_disabled
                .set(i64::try_from(disabled).unwrap_or(i64::MAX)),
            Err(err) => tracing::warn!(error.message = %err, "failed to count disabled subscribers for metrics"),
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render()))
}
