//! The operator console under `/admin/ui`: server-rendered pages and plain HTML forms; no
//! page needs a script (the dashboard's refreshes itself with one when it runs). Sign in with the admin token and a name (recorded as the operator
//! `admin:<name> (session <id>)`, the session's public id, on
//! everything done here); see [`session`] for the cookie and the CSRF check.
//!
//! Every action calls the same function as its JSON route in [`super::admin`], from
//! [`crate::operations`], which call
//! the same engine: a console force-close is the `POST /admin/orders/{no}/force-close` of the
//! API, with the operator's name instead of `admin`. After a change the browser is sent back
//! (303) to the page with a notice; a refused change re-renders the page with the reason and
//! the error's status.

pub mod dashboard;
pub mod lists;
pub mod merchants;
pub mod reconciliations;
pub mod session;
pub mod webhooks;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actors::store::query;
use entities::{AttemptStatus, MinorUnit, OrderStatus};
use maud::{html, Markup};
use serde::Deserialize;

pub use self::session::{ConsoleKeys, ConsoleRejection, ConsoleSession};
use super::html::{frame, money, page_response_with_referrer, when};
use crate::client_addr::client_addr;
use crate::error::ApiError;
use crate::state::AppState;
use crate::throttle::{whole_seconds, Surface, Throttle};

/// Most rows one console list shows.
const LIST_LIMIT: u64 = 200;
/// Longest operator name.
const OPERATOR_MAX_CHARS: usize = 64;

/// A line above a page's content.
enum Banner {
    None,
    Notice(String),
    Error(String),
}

fn banner_markup(banner: &Banner) -> Markup {
    html! {
        @match banner {
            Banner::None => {},
            Banner::Notice(text) => p class="notice" role="status" { (text) },
            Banner::Error(text) => p class="error" role="alert" { (text) },
        }
    }
}

/// What a refused action tells the operator: the error's own message and code, nothing
/// internal (a server-side failure is logged here, as the JSON routes log theirs).
fn refusal(err: &ApiError) -> (StatusCode, Banner) {
    let status = actix_web::ResponseError::status_code(err);
    if status.is_server_error() {
        tracing::error!(error.cause_chain = ?err, error.message = %err, "console action failed");
    }
    (
        status,
        Banner::Error(format!("{} ({})", err.public_message(), err.code())),
    )
}

/// After a change: to `done` (303; the page there shows the notice the address names). A
/// refused change: the page again, with the reason and the error's status.
async fn outcome<T, Page>(
    result: Result<T, ApiError>,
    done: &str,
    page: impl FnOnce(StatusCode, Banner) -> Page,
) -> HttpResponse
where
    Page: std::future::Future<Output = HttpResponse>,
{
    match result {
        Ok(_) => see_other(done),
        Err(ApiError::Order(actors::OrderError::Elsewhere(owner))) => {
            // Another cluster node runs the order: the forwarding middleware sends the same
            // request there and answers with that node's response instead of this page.
            let mut response = page(
                StatusCode::SERVICE_UNAVAILABLE,
                Banner::Error("the order is run by another node; try again".to_owned()),
            )
            .await;
            response.extensions_mut().insert(crate::error::Owner(owner));
            response
        }
        Err(err) => {
            let (status, banner) = refusal(&err);
            page(status, banner).await
        }
    }
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn console_page(title: &str, session: &ConsoleSession, banner: &Banner, body: Markup) -> Markup {
    let body = html! {
        nav {
            strong { "paywarden" }
            a href="/admin/ui" { "Dashboard" }
            a href="/admin/ui/attention" id="attention" {
                "Needs attention"
                @if session.attention.total() > 0 { " " span class="count" { (session.attention.total()) } }
            }
            a href="/admin/ui/orders" { "Orders" }
            a href="/admin/ui/refunds" { "Refunds" }
            a href="/admin/ui/deliveries" { "Deliveries" }
            a href="/admin/ui/subscribers" { "Subscribers" }
            a href="/admin/ui/merchants" { "Merchants" }
            a href="/admin/ui/skus" { "SKUs" }
            a href="/admin/ui/unmatched" { "Unmatched" }
            a href="/admin/ui/reconciliations" { "Reconciliation" }
            form method="get" action="/admin/ui/search" class="search" role="search" {
                input type="search" name="q" maxlength=(SEARCH_MAX_CHARS) required
                    placeholder="order_no, out_business_id, pay_no, transaction id, refund_no, out_refund_id"
                    aria-label="Find an order by any of its ids";
                button type="submit" class="secondary" { "Find" }
            }
            span class="who" { "Signed in as " (session.operator) }
            form method="post" action="/admin/ui/logout" {
                (csrf_field(session))
                button type="submit" { "Sign out" }
            }
            form method="post" action="/admin/ui/sessions/revoke-all" {
                (csrf_field(session))
                button type="submit" title="Ends every console session, yours included" { "Sign out everyone" }
            }
        }
        main {
            h1 { (title) }
            (banner_markup(banner))
            (body)
        }
    };
    frame(title, "console", Some(super::assets::CONSOLE_JS), body)
}

fn csrf_field(session: &ConsoleSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}

fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

/// Checks a form's CSRF token; a mismatch refuses the request before anything happens.
fn check(state: &AppState, session: &ConsoleSession, csrf: &str) -> Result<(), ConsoleRejection> {
    state.console.check_csrf(session, csrf)
}

// ---- sign-in ----

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    name: String,
}

fn login_page(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let body = html! {
        main class="card login" {
            h1 { "paywarden console" }
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            form method="post" action=(session::LOGIN) class="stack" {
                label { "Your name (recorded on what you do)" br;
                    input type="text" name="name" required maxlength="64" autocomplete="username"; }
                label { "Admin token" br;
                    input type="password" name="token" required autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
        }
    };
    page_response_with_referrer(status, frame("Sign in", "console", None, body), "same-origin")
}

/// `GET /admin/ui/login`.
pub async fn login_form() -> HttpResponse {
    login_page(StatusCode::OK, None)
}

/// `POST /admin/ui/login`: the admin token and a name; a session cookie on success. A client
/// address with too many refused sign-ins (or admin tokens) is answered `429` with
/// `Retry-After` before its token is looked at ([`crate::throttle`]).
pub async fn login(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    if !session::same_origin(&req) {
        return actix_web::ResponseError::error_response(&ConsoleRejection::Forged);
    }
    let client = client_addr(&req);
    if let Err(wait) = throttle.check(Surface::Console, client) {
        let seconds = whole_seconds(wait);
        let mut response = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many refused sign-ins from your address: try again in {seconds} seconds."
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        return response;
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > OPERATOR_MAX_CHARS || name.chars().any(actors::domain::is_hidden_char)
    {
        return login_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Give a name of 1 to 64 characters, without control or invisible characters: it is recorded on every action you take."),
        );
    }
    if !state.console.is_admin_token(form.token.trim()) {
        throttle.fail(Surface::Console, client);
        return login_page(StatusCode::UNAUTHORIZED, Some("That is not the admin token."));
    }
    let (session_id, cookie) = match state.console.sign_in(&state.db, name).await {
        Ok(signed_in) => signed_in,
        Err(err) => {
            tracing::error!(error.message = %err, "console session could not be stored");
            return actix_web::ResponseError::error_response(&ConsoleRejection::Unavailable);
        }
    };
    tracing::info!(operator = %name, session = %session_id, "console sign-in");
    let mut response = see_other("/admin/ui/orders");
    if let Err(err) = response.add_cookie(&cookie) {
        tracing::error!(error.message = %err, "console cookie could not be set");
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /admin/ui/logout`: revokes the session (its cookie is refused from now on, on every
/// node) and clears the cookie.
pub async fn logout(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    session::revoke(&state.db, &session.id).await.map_err(|err| {
        tracing::error!(error.message = %err, "console session could not be revoked");
        ConsoleRejection::Unavailable
    })?;
    tracing::info!(operator = %session.operator, session = %session.id, "console sign-out");
    Ok(signed_out(&state))
}

/// To the sign-in page, the cookie cleared.
fn signed_out(state: &AppState) -> HttpResponse {
    let mut response = see_other(session::LOGIN);
    if let Err(err) = response.add_cookie(&state.console.sign_out_cookie()) {
        tracing::error!(error.message = %err, "console cookie could not be cleared");
    }
    response
}

/// `POST /admin/ui/sessions/revoke-all`: signs out every console session, this one included
/// (a stolen cookie, an operator who left).
pub async fn revoke_all_sessions(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    crate::operations::sign_out_everyone(&state, &session.operator())
        .await
        .map_err(|err| {
            tracing::error!(error.message = %err, "console sessions could not be revoked");
            ConsoleRejection::Unavailable
        })?;
    Ok(signed_out(&state))
}

/// `GET /admin/ui/attention`: every queue that waits for an operator, with its count and the
/// page that works it off.
pub async fn attention(session: ConsoleSession) -> HttpResponse {
    let counts = session.attention;
    let queues = [
        (
            "stuck-orders",
            counts.stuck_orders,
            "Stuck orders",
            "/admin/ui/orders?status=stuck",
            "The expiry rule could not settle them: the provider was unreachable, or a payment of another amount waits to be accepted.",
        ),
        (
            "unmatched",
            counts.unmatched,
            "Unmatched notifications",
            "/admin/ui/unmatched",
            "Verified notifications for trades paywarden does not know: money may have been taken.",
        ),
        (
            "differences",
            counts.open_differences,
            "Reconciliation differences",
            "/admin/ui/reconciliations",
            "A provider's bill and paywarden's records disagree.",
        ),
        (
            "dead-deliveries",
            counts.dead_deliveries,
            "Dead deliveries",
            "/admin/ui/deliveries",
            "Webhook and AMQP deliveries out of retries: downstream systems missed these events.",
        ),
    ];
    let body = html! {
        @if counts.total() == 0 { p id="all-clear" { "Nothing waits for an operator." } }
        div class="scroll" { table id="queues" {
            thead { tr { th { "Queue" } th class="num" { "Waiting" } th { "What it means" } } }
            tbody { @for (id, count, name, link, meaning) in queues { tr id=(id) {
                td { a href=(link) { (name) } }
                td class="num" { (count) }
                td class="muted" { (meaning) }
            } } }
        } }
        p class="muted" { "Payment anomalies (a second payment, a payment after close, a report contradicting a recorded payment, an automatic refund parked) are on their order's page and in the order list's anomaly badge." }
    };
    render(&session, "Needs attention", StatusCode::OK, &Banner::None, body)
}

// ---- orders ----

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "force-closed" => "The order was force-closed.",
        "accepted" => "The payment was accepted as the order's payment.",
        "redelivered" => "The delivery is queued again.",
        "subscriber-removed" => "The subscriber was removed.",
        "stock-set" => "The stock was set.",
        "resolved" => "The notification is marked resolved.",
        "reconciled" => "The day was reconciled; its run is below.",
        "difference-resolved" => "The difference is marked resolved.",
        "refund-requested" => "The refund is committed; the provider is being asked (its status below).",
        other => return merchants::notice_text(other),
    })
}

fn banner_from(notice: Option<&str>) -> Banner {
    notice
        .and_then(notice_text)
        .map_or(Banner::None, |text| Banner::Notice(text.to_owned()))
}

/// A page, or, when what it shows could not be read, the page with the reason instead.
fn show(
    session: &ConsoleSession,
    title: &str,
    status: StatusCode,
    banner: Banner,
    body: Result<Markup, ApiError>,
) -> HttpResponse {
    match body {
        Ok(body) => render(session, title, status, &banner, body),
        Err(err) => {
            let (status, banner) = refusal(&err);
            render(session, title, status, &banner, html! {})
        }
    }
}

fn render(session: &ConsoleSession, title: &str, status: StatusCode, banner: &Banner, body: Markup) -> HttpResponse {
    page_response_with_referrer(status, console_page(title, session, banner, body), "same-origin")
}

/// The longest search term (every id paywarden or a merchant writes is shorter).
const SEARCH_MAX_CHARS: usize = 128;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: String,
}

/// `GET /admin/ui/search?q=`: the order one of whose ids is `q` (its `order_no` or
/// `out_business_id`, a payment's `pay_no` or provider transaction id, a refund's `refund_no`
/// or `out_refund_id`), across merchants. One order found: its page. Several (merchants may
/// share an `out_business_id`): the list, with the id each matched.
pub async fn search(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<SearchQuery>,
) -> HttpResponse {
    let term = params.q.trim();
    if term.is_empty() {
        return see_other("/admin/ui/orders");
    }
    if term.chars().count() > SEARCH_MAX_CHARS || term.chars().any(char::is_control) {
        let banner = Banner::Error(format!(
            "A search term is one id: at most {SEARCH_MAX_CHARS} characters, without control characters."
        ));
        return render(&session, "Search", StatusCode::BAD_REQUEST, &banner, html! {});
    }
    let found = match query::search_orders(&state.db, term, LIST_LIMIT).await {
        Ok(found) => found,
        Err(err) => return show(&session, "Search", StatusCode::OK, Banner::None, Err(err.into())),
    };
    if let [(order, _)] = found.as_slice() {
        return see_other(&format!("/admin/ui/orders/{}", order.order_no));
    }
    let body = html! {
        p { "Searched every merchant's orders for " code { (term) } "." }
        @if found.is_empty() {
            p class="muted" id="no-results" { "No order has this id." }
        } @else {
            div class="scroll" {
                table id="search-results" {
                    thead { tr { th { "Order" } th { "Merchant" } th { "Matched" } th { "Status" } th class="num" { "Amount" } } }
                    tbody {
                        @for (order, matched) in &found {
                            tr data-order-no=(order.order_no) {
                                td { a href={ "/admin/ui/orders/" (order.order_no) } { (order.order_no) } }
                                td { (order.merchant_id) }
                                td { (matched.as_str()) }
                                td { (badge(order.status.as_str())) }
                                td class="num" { (money(order.total_amount, order.currency)) }
                            }
                        }
                    }
                }
            }
        }
    };
    render(&session, "Search", StatusCode::OK, &Banner::None, body)
}

/// `POST /admin/ui/deadlines/reconcile`: answers the order list with what changed.
pub async fn reconcile(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let (status, banner) = match crate::operations::reconcile_deadlines(&state).await {
        Ok(report) => {
            tracing::info!(operator = %session.operator, live = report.live_orders, added = report.added, removed = report.removed, "deadline index reconciled from the console");
            (
                StatusCode::OK,
                Banner::Notice(format!(
                    "Deadline index reconciled: {} live orders, {} added, {} removed.",
                    report.live_orders, report.added, report.removed
                )),
            )
        }
        Err(err) => refusal(&err),
    };
    Ok(lists::orders_after(&state, &session, status, banner).await)
}

#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn order_page(
    state: &AppState,
    session: &ConsoleSession,
    order_no: &str,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let detail = match query::find_order_with_logs(&state.db, order_no).await {
        Ok(Some(detail)) => detail,
        Ok(None) => {
            return render(
                session,
                "Order not found",
                StatusCode::NOT_FOUND,
                &Banner::Error(format!("There is no order {order_no}.")),
                html! {},
            )
        }
        Err(err) => {
            let (code, banner) = refusal(&ApiError::from(err));
            return render(session, "Order", code, &banner, html! {});
        }
    };
    let order = &detail.order;
    let refunds = match actors::store::refunds::of_order(&state.db, order.id).await {
        Ok(refunds) => refunds,
        Err(err) => {
            let (code, banner) = refusal(&ApiError::from(err));
            return render(session, "Order", code, &banner, html! {});
        }
    };
    let live = order.status.is_live();
    let refundable = refundable_payment(&detail.attempts, &refunds)
        .filter(|_| matches!(order.status, OrderStatus::Paid | OrderStatus::PaidAfterClose));
    let mismatched: Vec<_> = detail
        .attempts
        .iter()
        .filter(|attempt| attempt.status == AttemptStatus::AmountMismatch)
        .collect();
    let action_base = format!("/admin/ui/orders/{}", order.order_no);
    let body = html! {
        p {
            (badge(order.status.as_str()))
            " " strong { (money(order.total_amount, order.currency)) }
            " · " (order.merchant_id) " · " (order.subject)
        }
        @if let Some(reason) = &order.close_reason { p { "Close reason: " (reason) } }
        p class="muted" {
            "Created " (when(order.created_at)) " · deadline " (when(order.expires_at))
            @if let Some(paid) = order.paid_at { " · paid " (when(paid)) }
            @if let Some(closed) = order.closed_at { " · closed " (when(closed)) }
        }
        @if live {
            h2 { "Actions" }
            div class="actions" {
                form method="post" action={ (action_base) "/force-close" } class="stack card" id="force-close" {
                    (csrf_field(session))
                    strong { "Force-close" }
                    span class="muted" { "Closes the open trades at their providers first, then the order (stock released)." }
                    input type="text" name="reason" required maxlength="242" placeholder="Reason (recorded)";
                    button type="submit" class="danger" { "Force-close the order" }
                }
                @for attempt in &mismatched {
                    form method="post" action={ (action_base) "/accept-payment" } class="stack card" {
                        (csrf_field(session))
                        input type="hidden" name="pay_no" value=(attempt.pay_no);
                        strong { "Accept payment " (attempt.pay_no) }
                        span class="muted" {
                            "Paid " (attempt.paid_amount.map(|paid| money(paid, attempt.currency)).unwrap_or_default())
                            " instead of " (money(attempt.amount, attempt.currency)) ". Accepting it marks the order paid with what was taken."
                        }
                        input type="text" name="reason" required maxlength="242" placeholder="Reason (recorded)";
                        button type="submit" { "Accept as the order's payment" }
                    }
                }
            }
        }
        @if let Some((pay_no, left)) = refundable {
            h2 { "Refund" }
            form method="post" action={ (action_base) "/refund" } class="stack card" id="refund" {
                (csrf_field(session))
                input type="hidden" name="out_refund_id" value={ "console-" (uuid::Uuid::new_v4().simple()) };
                input type="hidden" name="pay_no" value=(pay_no);
                strong { "Refund payment " (pay_no) }
                span class="muted" { (money(left, order.currency)) " of it can still be refunded." }
                label {
                    "Amount, in minor units (" (money(MinorUnit::new(100).unwrap_or_default(), order.currency)) " = 100)"
                    input type="number" name="amount" required min="1" max=(left.get()) value=(left.get());
                }
                input type="text" name="reason" required maxlength="256" placeholder="Reason (sent to the provider and recorded)";
                button type="submit" class="danger" { "Review the refund" }
            }
        }
        h2 { "Items" }
        div class="scroll" { table {
            thead { tr { th { "SKU" } th { "Name" } th class="num" { "Unit price" } th class="num" { "Quantity" } th class="num" { "Amount" } } }
            tbody { @for item in &detail.items { tr {
                td { (item.sku_id) } td { (item.name) }
                td class="num" { (money(item.unit_price, order.currency)) }
                td class="num" { (item.quantity) }
                td class="num" { (money(item.amount, order.currency)) }
            } } }
        } }
        h2 { "Payment attempts" }
        @if detail.attempts.is_empty() { p class="muted" { "None." } } @else {
            div class="scroll" { table id="attempts" {
                thead { tr { th { "Pay no" } th { "Provider" } th { "Status" } th class="num" { "Amount" } th class="num" { "Paid" } th { "Provider's id" } th { "Created" } } }
                tbody { @for attempt in &detail.attempts { tr {
                    td { (attempt.pay_no) } td { (attempt.provider.as_str()) } td { (badge(attempt.status.as_str())) }
                    td class="num" { (money(attempt.amount, attempt.currency)) }
                    td class="num" { (attempt.paid_amount.map(|paid| money(paid, attempt.currency)).unwrap_or_default()) }
                    td { (attempt.provider_txn_id.as_deref().unwrap_or("")) }
                    td { (when(attempt.created_at)) }
                } } }
            } }
        }
        h2 { "Refunds" }
        @if refunds.is_empty() { p class="muted" { "None." } } @else {
            p { "Refunded: " strong { (money(order.refunded_amount, order.currency)) } " of the order's payment" }
            div class="scroll" { table id="refunds" {
                thead { tr { th { "Refund no" } th { "Their id" } th { "Pay no" } th class="num" { "Amount" } th { "Status" } th { "By" } th { "Reason" } th { "Provider's word" } th { "Created" } } }
                tbody { @for refund in &refunds { tr {
                    td { (refund.refund_no) } td { (refund.out_refund_id) } td { (refund.pay_no) }
                    td class="num" { (money(refund.amount, refund.currency)) }
                    td { (badge(refund.status.as_str())) }
                    td { (refund.operator) } td { (refund.reason) }
                    td { (refund.failure.as_deref().unwrap_or("")) }
                    td { (when(refund.created_at)) }
                } } }
            } }
        }
        h2 { "Log" }
        ol class="timeline" id="log" {
            @for log in &detail.logs {
                li {
                    strong { (log.event) }
                    " " (log.from_status.as_deref().unwrap_or("—")) " → " (log.to_status)
                    br;
                    span class="muted" { (when(log.created_at)) " · " (log.operator) }
                    @if let Some(reason) = &log.reason { br; (reason) }
                }
            }
        }
    };
    render(
        session,
        &format!("Order {}", order.order_no),
        status_code,
        &banner,
        body,
    )
}

/// `GET /admin/ui/orders/{order_no}`.
pub async fn order(
    state: web::Data<AppState>,
    session: ConsoleSession,
    order_no: web::Path<String>,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    order_page(
        &state,
        &session,
        &order_no,
        StatusCode::OK,
        banner_from(params.notice.as_deref()),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    csrf: String,
    reason: String,
}

/// `POST /admin/ui/orders/{order_no}/force-close`.
pub async fn force_close(
    state: web::Data<AppState>,
    session: ConsoleSession,
    order_no: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = crate::operations::force_close_order(&state, &order_no, &form.reason, session.operator()).await;
    Ok(outcome(
        result,
        &format!("/admin/ui/orders/{order_no}?notice=force-closed"),
        |status, banner| order_page(&state, &session, &order_no, status, banner),
    )
    .await)
}

/// The order's payment and what is left to refund of it (what it took, less its refunds that
/// are not failed), when anything is. The refund itself checks again, in its transaction.
fn refundable_payment(
    attempts: &[entities::payment_attempts::Model],
    refunds: &[entities::refunds::Model],
) -> Option<(entities::PayNo, MinorUnit)> {
    let paid = attempts
        .iter()
        .find(|attempt| attempt.status == AttemptStatus::Succeeded)?;
    let took = paid.paid_amount.unwrap_or(paid.amount).get();
    let refunded: i64 = refunds
        .iter()
        .filter(|refund| refund.pay_no == paid.pay_no && refund.status != entities::RefundStatus::Failed)
        .map(|refund| refund.amount.get())
        .sum();
    MinorUnit::new(took - refunded).ok().map(|left| (paid.pay_no, left))
}

#[derive(Debug, Deserialize)]
pub struct RefundForm {
    csrf: String,
    out_refund_id: String,
    pay_no: String,
    amount: i64,
    reason: String,
    /// Absent: show what the refund will do and ask again; `yes`: do it.
    confirm: Option<String>,
}

/// `POST /admin/ui/orders/{order_no}/refund`: first a confirmation page saying what the merchant
/// will lose; confirmed, the refund (the `/admin` route's rules), then the order's page.
pub async fn refund(
    state: web::Data<AppState>,
    session: ConsoleSession,
    order_no: web::Path<String>,
    form: web::Form<RefundForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let form = form.into_inner();
    if form.confirm.as_deref() == Some("yes") {
        let result = crate::operations::refund_order(
            &state,
            &order_no,
            &form.out_refund_id,
            form.amount,
            &form.reason,
            Some(&form.pay_no),
            session.operator(),
        )
        .await;
        return Ok(outcome(
            result,
            &format!("/admin/ui/orders/{order_no}?notice=refund-requested"),
            |status, banner| order_page(&state, &session, &order_no, status, banner),
        )
        .await);
    }
    let found = match crate::operations::order_id(&order_no) {
        Ok(id) => query::find_order(&state.db, id).await,
        Err(_) => Ok(None),
    };
    let order = match found {
        Ok(Some(order)) => order,
        Ok(None) => return Ok(order_page(&state, &session, &order_no, StatusCode::NOT_FOUND, Banner::None).await),
        Err(err) => {
            let (status, banner) = refusal(&ApiError::from(err));
            return Ok(render(&session, "Refund", status, &banner, html! {}));
        }
    };
    let amount = match MinorUnit::new(form.amount) {
        Ok(amount) => amount,
        Err(_) => {
            let banner = Banner::Error("The amount must be a positive number of minor units.".to_owned());
            return Ok(order_page(&state, &session, &order_no, StatusCode::UNPROCESSABLE_ENTITY, banner).await);
        }
    };
    let body = html! {
        p id="refund-summary" {
            "Refund " strong { (money(amount, order.currency)) } " of payment " (form.pay_no)
            " of order " (order.order_no) " (" (order.merchant_id) ", " (money(order.total_amount, order.currency)) ")."
        }
        p { "The merchant " strong { (order.merchant_id) } " will lose " strong { (money(amount, order.currency)) } ": the provider sends it back to the buyer and it cannot be taken back." }
        p class="muted" { "Reason: " (form.reason) }
        form method="post" action={ "/admin/ui/orders/" (order.order_no) "/refund" } class="stack card" id="confirm-refund" {
            (csrf_field(&session))
            input type="hidden" name="out_refund_id" value=(form.out_refund_id);
            input type="hidden" name="pay_no" value=(form.pay_no);
            input type="hidden" name="amount" value=(form.amount);
            input type="hidden" name="reason" value=(form.reason);
            input type="hidden" name="confirm" value="yes";
            button type="submit" class="danger" { "Refund " (money(amount, order.currency)) }
        }
        p { a href={ "/admin/ui/orders/" (order.order_no) } { "Back to the order, refunding nothing" } }
    };
    Ok(render(
        &session,
        "Confirm the refund",
        StatusCode::OK,
        &Banner::None,
        body,
    ))
}

#[derive(Debug, Deserialize)]
pub struct AcceptForm {
    csrf: String,
    pay_no: String,
    reason: String,
}

/// `POST /admin/ui/orders/{order_no}/accept-payment`.
pub async fn accept_payment(
    state: web::Data<AppState>,
    session: ConsoleSession,
    order_no: web::Path<String>,
    form: web::Form<AcceptForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result =
        crate::operations::accept_mismatched_payment(&state, &order_no, &form.pay_no, &form.reason, session.operator())
            .await;
    Ok(outcome(
        result,
        &format!("/admin/ui/orders/{order_no}?notice=accepted"),
        |status, banner| order_page(&state, &session, &order_no, status, banner),
    )
    .await)
}

// ---- deliveries ----

/// `POST /admin/ui/deliveries/{id}/redeliver`.
pub async fn redeliver(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = crate::operations::redeliver_one(&state, *id, &session.operator()).await;
    Ok(
        outcome(result, "/admin/ui/deliveries?notice=redelivered", |status, banner| {
            lists::deliveries_after(&state, &session, status, banner)
        })
        .await,
    )
}

// ---- subscribers ----

async fn subscribers_page(
    state: &AppState,
    session: &ConsoleSession,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let rows = actors::outbox::subscribers::list(&state.db)
        .await
        .map_err(ApiError::from);
    let body = rows.map(|rows| {
        let disabled: Vec<&entities::subscribers::Model> = rows.iter().filter(|row| row.disabled_at.is_some() && !row.enabled).collect();
        html! {
            @if !disabled.is_empty() {
                div class="error" role="alert" id="disabled-subscribers" {
                    p { (disabled.len()) " webhook subscriber(s) disabled: their deliveries are kept, not sent, until enabled again (PATCH /admin/subscribers/{id} with enabled: true)." }
                    ul { @for row in &disabled { li {
                        (row.id) " (" (row.url) "): " (row.disabled_reason.as_deref().unwrap_or("disabled"))
                    } } }
                }
            }
            div class="scroll" { table id="subscribers" {
                thead { tr { th { "Id" } th { "Kind" } th { "Target" } th { "Merchant" } th { "Events" } th { "State" } th {} } }
                tbody { @for row in &rows { tr data-subscriber-id=(row.id) {
                    td { a href={ "/admin/ui/subscribers/" (row.id) } { (row.id) } } td { (row.kind.as_str()) } td { (row.url) }
                    td { (row.merchant_id.as_deref().unwrap_or("every merchant")) }
                    td { @if row.event_types.is_empty() { "every type" } @else { (row.event_types) } }
                    td { @if !row.enabled { "disabled" } @else if row.paused { "paused" } @else { "active" } }
                    td {
                        form method="post" action={ "/admin/ui/subscribers/" (row.id) "/remove" } class="inline" {
                            (csrf_field(session))
                            button type="submit" class="danger" { "Remove" }
                        }
                    }
                } } }
            } }
            @if rows.is_empty() { p class="muted" { "No subscribers." } }
            h2 { "Add a webhook" }
            form method="post" action="/admin/ui/subscribers" class="stack card" {
                (csrf_field(session))
                input type="url" name="url" required placeholder="https://erp.example.com/paywarden-events";
                input type="text" name="merchant_id" placeholder="Merchant (empty: every merchant)";
                input type="text" name="event_types" placeholder="Event types, comma-separated (empty: every type)";
                button type="submit" { "Add" }
            }
        }
    });
    show(session, "Subscribers", status_code, banner, body)
}

/// `GET /admin/ui/subscribers`.
pub async fn subscribers(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    subscribers_page(&state, &session, StatusCode::OK, banner_from(params.notice.as_deref())).await
}

#[derive(Debug, Deserialize)]
pub struct SubscriberForm {
    csrf: String,
    url: String,
    #[serde(default)]
    merchant_id: String,
    #[serde(default)]
    event_types: String,
}

/// `POST /admin/ui/subscribers`: answers the list with the new subscriber's secret, shown
/// this once.
pub async fn add_subscriber(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<SubscriberForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let form = form.into_inner();
    let merchant_id = Some(form.merchant_id.trim().to_owned()).filter(|m| !m.is_empty());
    let event_types = form
        .event_types
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let body = crate::operations::NewSubscriber {
        url: form.url.trim().to_owned(),
        secret: None,
        signature_scheme: None,
        event_types,
        merchant_id,
        headers: std::collections::BTreeMap::new(),
    };
    let (status, banner) = match crate::operations::add_webhook(&state, body, &session.operator()).await {
        Ok(model) => (
            StatusCode::CREATED,
            Banner::Notice(format!(
                "Subscriber {} added. Its signing secret, shown this once: {}",
                model.id,
                model.secret.as_deref().unwrap_or("")
            )),
        ),
        Err(err) => refusal(&err),
    };
    Ok(subscribers_page(&state, &session, status, banner).await)
}

/// `POST /admin/ui/subscribers/{id}/remove`.
pub async fn remove_subscriber(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = crate::operations::remove_webhook(&state, &id, &session.operator()).await;
    Ok(outcome(
        result,
        "/admin/ui/subscribers?notice=subscriber-removed",
        |status, banner| subscribers_page(&state, &session, status, banner),
    )
    .await)
}

// ---- stock ----

async fn skus_page(
    state: &AppState,
    session: &ConsoleSession,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let rows = actors::stock::list(&state.db, LIST_LIMIT).await.map_err(ApiError::from);
    let body = rows.map(|rows| {
        html! {
            div class="scroll" { table id="skus" {
                thead { tr { th { "Merchant" } th { "SKU" } th class="num" { "Available" } th { "Updated" } } }
                tbody { @for row in &rows { tr {
                    td { (row.merchant_id) } td { (row.sku_id) } td class="num" { (row.available) } td { (when(row.updated_at)) }
                } } }
            } }
            @if rows.is_empty() { p class="muted" { "No tracked SKUs: orders reserve nothing." } }
            h2 { "Set stock" }
            form method="post" action="/admin/ui/skus" class="stack card" {
                (csrf_field(session))
                input type="text" name="merchant_id" required placeholder="Merchant";
                input type="text" name="sku_id" required maxlength="64" placeholder="SKU";
                input type="number" name="available" required min="0" step="1" placeholder="Available units";
                button type="submit" { "Set" }
            }
        }
    });
    show(session, "SKUs and stock", status_code, banner, body)
}

/// `GET /admin/ui/skus`.
pub async fn skus(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    skus_page(&state, &session, StatusCode::OK, banner_from(params.notice.as_deref())).await
}

#[derive(Debug, Deserialize)]
pub struct StockForm {
    csrf: String,
    merchant_id: String,
    sku_id: String,
    available: String,
}

/// `POST /admin/ui/skus`.
pub async fn set_stock(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<StockForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = match form.available.trim().parse::<i64>() {
        Ok(available) => {
            crate::operations::set_stock(
                &state,
                form.merchant_id.trim(),
                form.sku_id.trim(),
                available,
                &session.operator(),
            )
            .await
        }
        Err(_) => Err(ApiError::Validation(actors::domain::ValidationError::new(
            "invalid_quantity",
            "available must be a whole number of units",
        ))),
    };
    Ok(outcome(result, "/admin/ui/skus?notice=stock-set", |status, banner| {
        skus_page(&state, &session, status, banner)
    })
    .await)
}

// ---- unmatched notifications ----

async fn unmatched_page(
    state: &AppState,
    session: &ConsoleSession,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let rows = actors::store::unmatched::list(&state.db, true, LIST_LIMIT)
        .await
        .map_err(ApiError::from);
    let body = rows.map(|rows| {
        html! {
            p class="muted" { "Verified provider notifications for trades paywarden does not know. Money may have been taken: find it at the provider, then resolve the row with what you did." }
            div class="scroll" { table id="unmatched" {
                thead { tr { th { "Id" } th { "Provider" } th { "Trade" } th { "State" } th class="num" { "Amount" } th { "Received" } th {} } }
                tbody { @for row in &rows { tr {
                    td { (row.id) }
                    td { (row.provider.as_str()) @if let Some(account) = &row.account_id { br; code { (account) } } }
                    td { (row.pay_no) } td { (row.trade_state) }
                    td class="num" { (row.amount.map(|a| a.get().to_string()).unwrap_or_default()) }
                    td { (when(row.received_at)) }
                    td {
                        form method="post" action={ "/admin/ui/unmatched/" (row.id) "/resolve" } class="stack" {
                            (csrf_field(session))
                            input type="text" name="reason" required maxlength="242" placeholder="What was done (recorded)";
                            button type="submit" class="secondary" { "Resolve" }
                        }
                    }
                } } }
            } }
            @if rows.is_empty() { p class="muted" { "Nothing to resolve." } }
        }
    });
    show(session, "Unmatched notifications", status_code, banner, body)
}

/// `GET /admin/ui/unmatched`: the unresolved ones.
pub async fn unmatched(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    unmatched_page(&state, &session, StatusCode::OK, banner_from(params.notice.as_deref())).await
}

/// `POST /admin/ui/unmatched/{id}/resolve`.
pub async fn resolve_unmatched(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<i64>,
    form: web::Form<ReasonForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = crate::operations::resolve_notification(&state, *id, &form.reason, &session.operator()).await;
    Ok(
        outcome(result, "/admin/ui/unmatched?notice=resolved", |status, banner| {
            unmatched_page(&state, &session, status, banner)
        })
        .await,
    )
}
