//! Every route, registered in one place and grouped by scope, with auth as scope middleware.
//!
//! # Layout
//! - [`orders`], [`payments`]: the client API (`/v1`, merchant API key).
//! - [`admin`]: operators (`/admin`, admin token).
//! - [`sandbox`]: the sandbox provider's buyer and control routes.
//! - [`dto`]: wire types.

pub mod admin;
pub mod dto;
pub mod events;
pub mod orders;
pub mod payments;
pub mod sandbox;
pub mod webhooks;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, HttpRequest, HttpResponse};

use entities::Provider;

use crate::auth::{require_admin, require_merchant};
use crate::error::ApiError;

/// Registers all routes; the webhook (and sandbox) routes of the `enabled` providers only.
/// The sandbox's control routes (mark a trade paid, read it, inject faults) need the admin
/// token unless `sandbox_open` (the development profile, where a developer plays the buyer).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize, enabled: &[Provider], sandbox_open: bool) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(json_error),
    )
    .app_data(web::PathConfig::default().error_handler(path_error))
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .route("/healthz", web::get().to(healthz))
    .route("/metrics", web::get().to(crate::metrics::handler))
    .service(
        web::scope("/v1")
            .wrap(from_fn(require_merchant))
            .route("/orders", web::post().to(orders::create))
            .route("/orders/{order_no}", web::get().to(orders::get))
            .route("/orders/{order_no}/status", web::get().to(orders::status))
            .route("/orders/{order_no}/cancel", web::post().to(orders::cancel))
            .route("/orders/{order_no}/events", web::get().to(events::stream))
            .route("/orders/{order_no}/payments", web::post().to(payments::create))
            .route("/payments/{pay_no}/qr.png", web::get().to(payments::qr_png)),
    )
    .service(
        web::scope("/admin")
            .wrap(from_fn(require_admin))
            .route("/orders", web::get().to(admin::list_orders))
            .route("/orders/{order_no}", web::get().to(admin::get_order))
            .route("/orders/{order_no}/force-close", web::post().to(admin::force_close))
            .route(
                "/orders/{order_no}/accept-payment",
                web::post().to(admin::accept_payment),
            )
            .route("/deadlines/reconcile", web::post().to(admin::reconcile))
            .route("/subscribers", web::post().to(admin::add_subscriber))
            .route("/subscribers", web::get().to(admin::list_subscribers))
            .route("/subscribers/{id}", web::delete().to(admin::remove_subscriber))
            .route("/deliveries", web::get().to(admin::list_deliveries))
            .route("/deliveries/{id}/redeliver", web::post().to(admin::redeliver))
            .route("/merchants/{merchant_id}/skus/{sku_id}", web::put().to(admin::put_sku))
            .route("/merchants/{merchant_id}/skus/{sku_id}", web::get().to(admin::get_sku))
            .route("/unmatched-notifications", web::get().to(admin::list_unmatched))
            .route(
                "/unmatched-notifications/{id}/resolve",
                web::post().to(admin::resolve_unmatched),
            ),
    );
    let mut hooks = web::scope("/webhooks").app_data(web::PayloadConfig::new(max_body_bytes));
    for provider in enabled {
        hooks = match provider {
            Provider::Sandbox => hooks.route("/sandbox", web::post().to(webhooks::sandbox)),
            Provider::Wechat => hooks.route("/wechat", web::post().to(webhooks::wechat)),
            Provider::Alipay => hooks.route("/alipay", web::post().to(webhooks::alipay)),
        };
    }
    cfg.service(hooks);
    if enabled.contains(&Provider::Sandbox) {
        cfg.service(
            web::scope("/sandbox")
                .wrap(Condition::new(!sandbox_open, from_fn(require_admin)))
                .route("/trades/{pay_no}", web::get().to(sandbox::get_trade))
                .route("/trades/{pay_no}/pay", web::post().to(sandbox::pay))
                .route("/faults", web::put().to(sandbox::put_faults)),
        );
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Fallback for unknown routes: the error envelope, not an empty 404.
/// The order a path's `{order_no}` names; anything that cannot be an order number is a 404,
/// like an order that does not exist.
fn order_id(order_no: &str) -> Result<entities::OrderId, ApiError> {
    actors::store::query::parse_order_no(order_no).ok_or(ApiError::NotFound("order"))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: err.to_string(),
        },
        JsonPayloadError::ContentType => ApiError::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json".to_owned(),
        },
        JsonPayloadError::Deserialize(inner) => {
            ApiError::bad_request("invalid_json", format!("invalid request body: {inner}"))
        }
        _ => ApiError::bad_request("invalid_json", err.to_string()),
    };
    api.into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", err.to_string()).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", err.to_string()).into()
}
