//! `GET /v1/orders/{order_no}/events`: the order's status as Server-Sent Events.
//!
//! The current status is sent on connect, then every change as it commits (pushed by the
//! engine, no polling by the client), and the stream ends after a final status. Changes made on
//! another node do not reach this node's broadcast, so the stream also re-reads the order every
//! few seconds; a comment line every 15 s keeps proxies from closing an idle stream.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use actors::changes::OrderChanged;
use actors::domain::MerchantId;
use actors::store::query;
use entities::{orders, OrderId, OrderStatus};
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::dto::StatusResponse;
use crate::error::ApiError;
use crate::startup::AppState;

const RECHECK_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

struct Watch {
    db: DatabaseConnection,
    order_id: OrderId,
    changes: Receiver<OrderChanged>,
    last_sent: Option<OrderStatus>,
    done: bool,
    since_keepalive: Duration,
}

/// `data:` frame of the order's status.
fn frame(order: &orders::Model) -> Bytes {
    let json = serde_json::to_string(&StatusResponse::from(order)).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("event: status\ndata: {json}\n\n"))
}

impl Watch {
    /// The next chunk to send, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let woke_for_change = tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(change) => change.order_id == self.order_id,
                    // Missed some: re-read to be safe.
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(RECHECK_INTERVAL) => {
                    self.since_keepalive += RECHECK_INTERVAL;
                    true
                }
            };
            if !woke_for_change {
                continue;
            }
            let order = query::find_order(&self.db, self.order_id).await.ok()??;
            if self.last_sent != Some(order.status) {
                self.last_sent = Some(order.status);
                self.done = !order.status.is_live();
                return Some(frame(&order));
            }
            if self.since_keepalive >= KEEPALIVE_INTERVAL {
                self.since_keepalive = Duration::ZERO;
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_no}/events",
    tag = "orders",
    operation_id = "stream_order_events",
    summary = "Follow an order's status (Server-Sent Events)",
    description = "`event: status` frames whose `data` is the order's status as JSON (the `StatusResponse` schema): the current one on connect, then each change as it commits. The stream ends after a final status; a comment line every 15 s keeps proxies from closing it.",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    responses((status = 200, description = "The status stream", content_type = "text/event-stream", body = String)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "not_found", "internal_error"]))),
)]
pub async fn stream(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Subscribe before reading, so a change between the read and the subscription is not lost.
    let changes = state.engine.subscribe();
    let order = query::find_merchant_order(&state.db, &merchant, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(status_stream(state.db.clone(), changes, &order))
}

/// The status stream of `order`, read by the caller after `changes` was subscribed to (so a
/// change between the read and the subscription is not lost). Whoever may see the order may
/// follow it: the merchant (`/v1`) or the holder of its checkout link.
pub(super) fn status_stream(
    db: DatabaseConnection,
    changes: Receiver<OrderChanged>,
    order: &orders::Model,
) -> HttpResponse {
    let first = frame(order);
    let watch = Watch {
        db,
        order_id: order.id,
        changes,
        last_sent: Some(order.status),
        done: !order.status.is_live(),
        since_keepalive: Duration::ZERO,
    };
    let rest = futures::stream::unfold(watch, |mut watch| async move {
        let chunk = watch.next_chunk().await?;
        Some((Ok::<Bytes, actix_web::Error>(chunk), watch))
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<Bytes, actix_web::Error>(first) }),
        rest,
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
