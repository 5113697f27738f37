//! `GET /v1/orders/{order_no}/events`: the order's status as Server-Sent Events.
//!
//! The current status is sent on connect, then every change as it commits, and the stream
//! ends after a final status or at its lifetime's end (the client reconnects; a reconnecting
//! client's `Last-Event-ID` spares it the status it has). The streams are fed by the node's
//! [`crate::streams::StreamHub`]; a comment line keeps proxies from closing an idle one.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::MerchantId;
use actors::store::query;

use crate::error::ApiError;
use crate::state::AppState;
use crate::streams::{Holder, StreamHub};

#[utoipa::path(
    get,
    path = "/v1/orders/{order_no}/events",
    tag = "orders",
    operation_id = "stream_order_events",
    summary = "Follow an order's status (Server-Sent Events)",
    description = "`event: status` frames whose `data` is the order's status as JSON (the `StatusResponse` schema): the current one on connect, then each change as it commits. Each frame's `id` is the order's version: a reconnecting client's `Last-Event-ID` spares it the status it has. The stream ends after a final status, or after `streams.max_lifetime_seconds` (the first frame's `retry:` says when to reconnect); a comment line every `streams.keepalive_milliseconds` keeps proxies from closing it. Open streams are capped per merchant and per node: beyond, 429 `too_many_streams` with `Retry-After`.",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    responses((status = 200, description = "The status stream", content_type = "text/event-stream", body = String)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "too_many_streams", "internal_error"]))),
)]
pub async fn stream(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let order = query::find_merchant_order(&state.db, &merchant, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    let holder = Holder::Merchant(merchant.into_inner());
    open(&state.streams, holder, order.id, None, &req).await
}

/// Opens the status stream of `order_id` (whose caller was authorised) for `holder`, ending at
/// `ends_at` at the latest. Whoever may see the order may follow it: the merchant (`/v1`) or
/// the holder of its checkout link.
///
/// # Errors
/// A cap is reached (`429` with `Retry-After`), or the database failed.
pub(super) async fn open(
    streams: &StreamHub,
    holder: Holder,
    order_id: entities::OrderId,
    ends_at: Option<std::time::Instant>,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let seen_version = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i32>().ok());
    match streams.open(holder, order_id, ends_at, seen_version).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(refused)) => Err(ApiError::TooManyStreams {
            message: refused.message(),
            retry_after: streams.retry_after(),
        }),
        Err(err) => Err(ApiError::Internal(err.into())),
    }
}
