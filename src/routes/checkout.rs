//! The buyers' checkout page and the three calls its script makes, each authorised by the
//! order's checkout link (`?t=<token>`, see [`crate::links`]) instead of an API key:
//!
//! - `GET /checkout/{order_no}`: the page (server-rendered; the subject, items, amount, a
//!   countdown, the enabled providers, and the QR code of an open attempt);
//! - `POST /checkout/{order_no}/payments`: start an attempt at the chosen provider (or show the
//!   open one at that provider again);
//! - `GET /checkout/{order_no}/payments/{pay_no}/qr.png`: an attempt's QR code;
//! - `GET /checkout/{order_no}/events`: the order's status as Server-Sent Events, the same
//!   stream merchants follow at `/v1/orders/{order_no}/events`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::store::{query, Operator, OrderDetail};
use chrono::Utc;
use entities::{orders, payment_attempts, AttemptStatus, PayNo, Provider};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::{schema, CreatePaymentBody};
use super::html::{buyer_status, frame, message_page, money, page_response};
use crate::error::ApiError;
use crate::links::{LinkError, Links};
use crate::state::AppState;
use crate::streams::Holder;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The token of the order's checkout link (from its `checkout_url`).
    t: String,
}

/// The page's query: the token, and whatever else a messenger or a campaign appended to the
/// link (ignored, so such a link still opens).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The token of the order's checkout link (from its `checkout_url`).
    t: Option<String>,
}

/// An attempt as the checkout page shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutPayment {
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    pay_no: PayNo,
    #[schema(value_type = schema::Provider)]
    provider: Provider,
    /// The provider's name for people.
    provider_name: &'static str,
    #[schema(value_type = schema::AttemptStatus)]
    status: AttemptStatus,
    /// What the buyer's app opens (the QR code's content).
    code_url: Option<String>,
    /// The QR code image, authorised by the same link.
    qr_png_url: String,
}

fn link_error(err: LinkError) -> ApiError {
    let code = match err {
        LinkError::Invalid => "invalid_checkout_link",
        LinkError::Expired => "checkout_link_expired",
    };
    ApiError::BadRequest {
        status: StatusCode::FORBIDDEN,
        code,
        message: err.to_string(),
    }
}

/// The order a link opens. Anything else, an unknown order included, is the same 403.
async fn linked_order(state: &AppState, order_no: &str, token: &str) -> Result<orders::Model, ApiError> {
    let id = query::parse_order_no(order_no).ok_or(link_error(LinkError::Invalid))?;
    let order = query::find_order(&state.db, id)
        .await?
        .ok_or(link_error(LinkError::Invalid))?;
    state
        .links
        .verify(&order.order_no, order.expires_at, token, Utc::now())
        .map_err(link_error)?;
    Ok(order)
}

fn provider_name(provider: Provider) -> &'static str {
    actors::gateway::registry::info(provider).display_name
}

fn qr_url(order_no: &str, pay_no: PayNo, token: &str) -> String {
    format!("/checkout/{order_no}/payments/{pay_no}/qr.png?t={token}")
}

/// The newest open attempt with a QR code at `provider` (any provider when `None`).
fn open_attempt(attempts: &[payment_attempts::Model], provider: Option<Provider>) -> Option<&payment_attempts::Model> {
    attempts.iter().rev().find(|a| {
        a.status == AttemptStatus::Pending && a.code_url.is_some() && provider.is_none_or(|p| a.provider == p)
    })
}

/// The providers a buyer of `merchant_id` can pay with: the deployment's enabled ones and the
/// merchant's own enabled accounts', in the registry's order.
async fn offered(state: &AppState, merchant_id: &str) -> Result<Vec<Provider>, ApiError> {
    let own = actors::store::accounts::enabled_providers(&state.db, merchant_id).await?;
    Ok(actors::gateway::registry::PROVIDERS
        .iter()
        .map(|info| info.provider)
        .filter(|provider| state.providers.contains(provider) || own.contains(provider))
        .collect())
}

fn render_page(detail: &OrderDetail, token: &str, providers: &[Provider]) -> Markup {
    let order = &detail.order;
    let live = order.status.is_live();
    let open = if live {
        open_attempt(&detail.attempts, None)
    } else {
        None
    };
    let status = order.status.as_str();
    let body = html! {
        main class="card" id="checkout"
            data-status=(status)
            data-deadline=(order.expires_at.timestamp_millis())
            data-statuses=(super::html::buyer_status_table())
            data-events={ "/checkout/" (order.order_no) "/events?t=" (token) }
            data-payments={ "/checkout/" (order.order_no) "/payments?t=" (token) } {
            p class="merchant" { (order.merchant_id) }
            h1 { (order.subject) }
            p class="amount" id="amount" { (money(order.total_amount, order.currency)) }
            table class="items" {
                tbody {
                    @for item in &detail.items {
                        tr {
                            td { (item.name) @if item.quantity > 1 { " × " (item.quantity) } }
                            td class="num" { (money(item.amount, order.currency)) }
                        }
                    }
                }
            }
            p id="status" class={ "status " (status) } role="status" aria-live="polite" {
                (buyer_status(order.status, order.close_reason.as_deref()))
            }
            p id="countdown" class="muted" hidden[!live] { "Pay before " (super::html::when(order.expires_at)) }
            section id="choose" hidden[!live] {
                h2 { "Pay with" }
                div class="providers" {
                    @for provider in providers {
                        button type="button" class="secondary" data-provider=(provider.as_str()) { (provider_name(*provider)) }
                    }
                }
            }
            section id="qr" class="qr" hidden[open.is_none()] {
                @let src = open.map(|a| qr_url(&order.order_no, a.pay_no, token));
                img id="qr-image" alt="QR code of the payment" src=[src];
                p { "Scan with " span id="qr-provider" { (open.map(|a| provider_name(a.provider)).unwrap_or("")) } }
                a id="qr-open" hidden href="#" { "Open the payment app" }
            }
            section id="done" hidden[live] {
                @if let Some(url) = &order.return_url {
                    p { a id="return-link" class="button" href=(url) { "Back to " (order.merchant_id) } }
                }
            }
            p id="error" class="error" role="alert" hidden {}
            p class="muted" { "Order " (order.order_no) }
        }
    };
    frame(&order.subject, "checkout", Some(super::assets::CHECKOUT_JS), body)
}

/// `GET /checkout/{order_no}?t=<token>`: the checkout page.
#[utoipa::path(
    get,
    path = "/checkout/{order_no}",
    tag = "checkout",
    operation_id = "checkout_page",
    summary = "The buyer's checkout page (HTML)",
    description = "Opened from an order's `checkout_url`. Shows the subject, items and amount, a countdown to the deadline, the enabled providers, and the QR code once one is chosen; follows the order live and shows paid or expired without a reload. A link that is forged, for another order, or expired: 403 (an HTML page).",
    params(("order_no" = String, Path, description = "The order's number"), PageQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 403, description = "The link does not open this order, or has expired", content_type = "text/html", body = String),
    ),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn page(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    params: web::Query<PageQuery>,
) -> HttpResponse {
    let token = params.into_inner().t.unwrap_or_default();
    let detail = match linked_order(&state, &order_no, &token).await {
        Ok(order) => query::detail_of(&state.db, order).await.map_err(ApiError::from),
        Err(err) => Err(err),
    };
    let detail = match detail {
        Ok(detail) => offered(&state, &detail.order.merchant_id)
            .await
            .map(|providers| (detail, providers)),
        Err(err) => Err(err),
    };
    match detail {
        Ok((detail, providers)) => page_response(StatusCode::OK, render_page(&detail, &token, &providers)),
        Err(ApiError::BadRequest {
            status: StatusCode::FORBIDDEN,
            message,
            ..
        }) => message_page(StatusCode::FORBIDDEN, "This link does not open a payment", &message),
        Err(err) => {
            tracing::error!(error.cause_chain = ?err, error.message = %err, "checkout page failed");
            message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The payment page could not be shown. Try again in a moment.",
            )
        }
    }
}

/// `GET /checkout/{order_no}/events?t=<token>`: the order's status stream.
#[utoipa::path(
    get,
    path = "/checkout/{order_no}/events",
    tag = "checkout",
    operation_id = "checkout_events",
    summary = "Follow an order's status from its checkout link (Server-Sent Events)",
    description = "The stream of `GET /v1/orders/{order_no}/events`, authorised by the checkout link's token. It ends when the link expires; one link holds at most `streams.per_checkout_link` open streams (beyond, 429 `too_many_streams` with `Retry-After`).",
    params(("order_no" = String, Path, description = "The order's number"), LinkQuery),
    responses((status = 200, description = "The status stream", content_type = "text/event-stream", body = String)),
    extensions(("x-error-codes" = json!(["invalid_checkout_link", "checkout_link_expired", "too_many_streams", "internal_error"]))),
)]
pub async fn events(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    link: web::Query<LinkQuery>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let order = linked_order(&state, &order_no, &link.t).await?;
    // The stream ends when the link does.
    let ends_at = Links::expiry_of(&link.t).map(|expiry| {
        let left = (expiry - Utc::now()).to_std().unwrap_or_default();
        std::time::Instant::now() + left
    });
    let holder = Holder::CheckoutLink(order.id);
    super::events::open(&state.streams, holder, order.id, ends_at, &req).await
}

/// `POST /checkout/{order_no}/payments?t=<token>`: pay with `provider`.
#[utoipa::path(
    post,
    path = "/checkout/{order_no}/payments",
    tag = "checkout",
    operation_id = "checkout_start_payment",
    summary = "Start paying from the checkout page",
    description = "An open attempt at that provider with a QR code is answered again (200), so reloading the page or choosing twice opens no second trade; otherwise a new attempt is started as `POST /v1/orders/{order_no}/payments` does (201), recorded with the operator `buyer:checkout`.",
    params(("order_no" = String, Path, description = "The order's number"), LinkQuery),
    request_body = CreatePaymentBody,
    responses(
        (status = 201, description = "A new attempt", body = CheckoutPayment),
        (status = 200, description = "The open attempt at that provider", body = CheckoutPayment),
    ),
    extensions(("x-error-codes" = json!(["invalid_checkout_link", "checkout_link_expired", "order_not_pending", "order_expired", "concurrent_update", "unknown_provider", "provider_unavailable", "invalid_field", "currency_not_accepted", "internal_error", "provider_error", "service_unavailable", "provider_unreachable", "provider_busy"]))),
)]
#[tracing::instrument(name = "checkout payment", skip_all, fields(order_no = %order_no))]
pub async fn start_payment(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    link: web::Query<LinkQuery>,
    body: web::Json<CreatePaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let order = linked_order(&state, &order_no, &link.t).await?;
    let provider = super::payments::parse_provider(&body.provider)?;
    let live = order.status.is_live();
    let detail = query::detail_of(&state.db, order).await?;
    let order = &detail.order;
    let (status, attempt) = match open_attempt(&detail.attempts, Some(provider)) {
        Some(open) if live => (StatusCode::OK, open.clone()),
        _ => {
            let attempt =
                super::payments::start(&state, order.id, provider, body.account_id.as_deref(), Operator::Buyer).await?;
            (StatusCode::CREATED, attempt)
        }
    };
    Ok(HttpResponse::build(status).json(CheckoutPayment {
        qr_png_url: qr_url(&order.order_no, attempt.pay_no, &link.t),
        pay_no: attempt.pay_no,
        provider: attempt.provider,
        provider_name: provider_name(attempt.provider),
        status: attempt.status,
        code_url: attempt.code_url,
    }))
}

/// `GET /checkout/{order_no}/payments/{pay_no}/qr.png?t=<token>`.
#[utoipa::path(
    get,
    path = "/checkout/{order_no}/payments/{pay_no}/qr.png",
    tag = "checkout",
    operation_id = "checkout_payment_qr",
    summary = "The QR code of an attempt, from the checkout link",
    params(
        ("order_no" = String, Path, description = "The order's number"),
        ("pay_no" = String, Path, description = "One of the order's attempts"),
        LinkQuery,
    ),
    responses((status = 200, description = "PNG image of the attempt's `code_url`", content_type = "image/png", body = inline(schema::PngImage))),
    extensions(("x-error-codes" = json!(["invalid_checkout_link", "checkout_link_expired", "not_found", "no_code_url", "internal_error"]))),
)]
pub async fn qr_png(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    link: web::Query<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    let (order_no, pay_no) = path.into_inner();
    let order = linked_order(&state, &order_no, &link.t).await?;
    let attempt = query::find_order_attempt(&state.db, order.id, &pay_no)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    super::payments::qr_response(attempt).await
}
