//! The console's lists of orders, refunds and deliveries: a filter form (plain GET, so a
//! filtered list is a link an operator can share), newest first, a keyset page at a time
//! ([`actors::store::lists`]). A filter that is not valid answers `400` naming the field and
//! lists nothing.
//!
//! The first page of the order list, filtered at most by status, starts with the orders that
//! wait for an operator: stuck ones, then ones with a payment anomaly.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::store::lists::{self, Cursor, DeliveryFilter, OrderFilter, RefundFilter};
use actors::store::query;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use entities::{orders, DeliveryStatus, MinorUnit, OrderStatus, Provider, RefundStatus};
use maud::{html, Markup};
use sea_orm::Iterable;
use serde::Deserialize;

use super::{badge, banner_from, csrf_field, render, show, Banner, ConsoleSession, LIST_LIMIT};
use crate::error::ApiError;
use crate::routes::html::{money, when};
use crate::state::AppState;

/// Rows per page.
const PAGE_ROWS: u64 = 50;
/// Longest merchant id or subscriber id a filter takes.
const ID_MAX_CHARS: usize = 64;

/// A value of a filter field: absent and empty are the same (a form sends its empty fields).
fn given(value: Option<&String>) -> Option<&str> {
    value.map(|value| value.trim()).filter(|value| !value.is_empty())
}

/// A point in time: RFC 3339, a `datetime-local` value or a day, the last two read as UTC.
///
/// # Errors
/// The field and the forms it takes.
pub(super) fn instant(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
                .map(|naive| naive.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|naive| naive.and_utc())
        })
        .ok_or_else(|| format!("{field} must be a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM, UTC)."))
}

fn amount(field: &str, value: &str) -> Result<MinorUnit, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|value| *value >= 0)
        .and_then(|value| MinorUnit::new(value).ok())
        .ok_or_else(|| format!("{field} must be an amount in minor units (a whole number, 0 or more)."))
}

fn id(field: &str, value: &str) -> Result<String, String> {
    if value.chars().count() > ID_MAX_CHARS || value.chars().any(char::is_control) {
        return Err(format!("{field} is an id: at most {ID_MAX_CHARS} characters."));
    }
    Ok(value.to_owned())
}

/// One of an enum's values by its name.
fn choice<T: Iterable + Copy>(field: &str, value: &str, name: fn(T) -> &'static str) -> Result<T, String> {
    T::iter().find(|choice| name(*choice) == value).ok_or_else(|| {
        let names: Vec<&str> = T::iter().map(name).collect();
        format!("{field} must be one of: {}.", names.join(", "))
    })
}

fn provider(value: &str) -> Result<Provider, String> {
    value.parse::<Provider>().map_err(|_| {
        let names: Vec<&str> = Provider::iter().map(Provider::as_str).collect();
        format!("provider must be one of: {}.", names.join(", "))
    })
}

fn cursor(value: Option<&String>) -> Result<Option<Cursor>, String> {
    given(value)
        .map(|value| Cursor::parse(value).map_err(|problem| format!("after is {problem}.")))
        .transpose()
}

/// `path?` with the non-empty `pairs`, URL-encoded.
fn link(path: &str, pairs: &[(&str, Option<&String>)], after: Option<&Cursor>) -> String {
    let mut kept: Vec<(&str, String)> = pairs
        .iter()
        .filter_map(|(name, value)| given(*value).map(|value| (*name, value.to_owned())))
        .collect();
    if let Some(after) = after {
        kept.push(("after", after.encode()));
    }
    if kept.is_empty() {
        return path.to_owned();
    }
    format!("{path}?{}", serde_urlencoded::to_string(&kept).unwrap_or_default())
}

fn refused(session: &ConsoleSession, title: &str, message: String) -> HttpResponse {
    render(
        session,
        title,
        StatusCode::BAD_REQUEST,
        &Banner::Error(message),
        html! {},
    )
}

fn next_link(href: Option<String>) -> Markup {
    html! {
        @if let Some(href) = href {
            p class="pager" { a id="next-page" href=(href) { "Older →" } }
        }
    }
}

/// A creation range's bounds, each when given.
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A list's creation range: its two fields, read together.
#[derive(Debug, Default, Deserialize)]
pub struct CreatedRange {
    created_from: Option<String>,
    created_to: Option<String>,
}

impl CreatedRange {
    /// `(from, to)`, each when given.
    fn parse(&self) -> Result<Bounds, String> {
        Ok((
            given(self.created_from.as_ref())
                .map(|value| instant("created_from", value))
                .transpose()?,
            given(self.created_to.as_ref())
                .map(|value| instant("created_to", value))
                .transpose()?,
        ))
    }

    fn pairs(&self) -> [(&'static str, Option<&String>); 2] {
        [
            ("created_from", self.created_from.as_ref()),
            ("created_to", self.created_to.as_ref()),
        ]
    }

    fn fields(&self) -> Markup {
        html! {
            (text_field("Created from ", "created_from", self.created_from.as_ref(), "YYYY-MM-DD[THH:MM]"))
            (text_field("to ", "created_to", self.created_to.as_ref(), "YYYY-MM-DD[THH:MM]"))
        }
    }
}

/// A filter form's text field, holding what was given.
fn text_field(label: &str, name: &str, value: Option<&String>, placeholder: &str) -> Markup {
    html! {
        label { (label) input type="text" name=(name) maxlength=(ID_MAX_CHARS) placeholder=(placeholder) value=(given(value).unwrap_or("")); }
    }
}

/// A filter form's provider choice: any, or one of the enabled providers.
fn provider_select(chosen: Option<&String>, providers: &[Provider]) -> Markup {
    html! {
        label { "Provider " select name="provider" {
            option value="" { "any" }
            @for provider in providers {
                option value=(provider.as_str()) selected[given(chosen) == Some(provider.as_str())] { (provider.as_str()) }
            }
        } }
    }
}

// ---- orders ----

#[derive(Debug, Default, Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    provider: Option<String>,
    merchant: Option<String>,
    #[serde(flatten)]
    created: CreatedRange,
    amount_min: Option<String>,
    amount_max: Option<String>,
    after: Option<String>,
    notice: Option<String>,
}

impl OrdersQuery {
    fn filter(&self) -> Result<OrderFilter, String> {
        let (created_from, created_to) = self.created.parse()?;
        Ok(OrderFilter {
            status: given(self.status.as_ref()).map(str::parse::<OrderStatus>).transpose()?,
            provider: given(self.provider.as_ref()).map(provider).transpose()?,
            merchant: given(self.merchant.as_ref())
                .map(|value| id("merchant", value))
                .transpose()?,
            created_from,
            created_to,
            amount_min: given(self.amount_min.as_ref())
                .map(|value| amount("amount_min", value))
                .transpose()?,
            amount_max: given(self.amount_max.as_ref())
                .map(|value| amount("amount_max", value))
                .transpose()?,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, Option<&String>)> {
        let mut pairs = vec![
            ("status", self.status.as_ref()),
            ("provider", self.provider.as_ref()),
            ("merchant", self.merchant.as_ref()),
            ("amount_min", self.amount_min.as_ref()),
            ("amount_max", self.amount_max.as_ref()),
        ];
        pairs.extend(self.created.pairs());
        pairs
    }
}

/// The status filters of the order list: every status, stuck first (what an operator looks at
/// first).
fn status_filters() -> impl Iterator<Item = OrderStatus> {
    std::iter::once(OrderStatus::Stuck).chain(OrderStatus::iter().filter(|status| *status != OrderStatus::Stuck))
}

/// The orders waiting for an operator that head the first page: stuck, then with an anomaly
/// (in `status` when given); and which orders have an anomaly.
async fn pinned(
    state: &AppState,
    status: Option<OrderStatus>,
) -> Result<(Vec<orders::Model>, HashSet<entities::OrderId>), ApiError> {
    let stuck = match status {
        None | Some(OrderStatus::Stuck) => query::list_orders(&state.db, Some(OrderStatus::Stuck), LIST_LIMIT).await?,
        Some(_) => Vec::new(),
    };
    let anomalous = query::list_orders_with_anomalies(&state.db, status, LIST_LIMIT).await?;
    let anomalies = anomalous.iter().map(|order| order.id).collect();
    Ok((stuck.into_iter().chain(anomalous).collect(), anomalies))
}

fn order_filter_form(params: &OrdersQuery, providers: &[Provider]) -> Markup {
    let value = |field: Option<&String>| given(field).unwrap_or("").to_owned();
    html! {
        form method="get" action="/admin/ui/orders" class="filter-form" id="order-filters" {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for status in status_filters() {
                    option value=(status.as_str()) selected[given(params.status.as_ref()) == Some(status.as_str())] { (status.as_str()) }
                }
            } }
            (provider_select(params.provider.as_ref(), providers))
            (text_field("Merchant ", "merchant", params.merchant.as_ref(), ""))
            (params.created.fields())
            label { "Amount from " input type="number" min="0" name="amount_min" value=(value(params.amount_min.as_ref())); }
            label { "to " input type="number" min="0" name="amount_max" value=(value(params.amount_max.as_ref())); }
            button type="submit" class="secondary" { "Filter" }
            a href="/admin/ui/orders" { "Clear" }
        }
    }
}

async fn orders_page(
    state: &AppState,
    session: &ConsoleSession,
    params: &OrdersQuery,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let (filter, after) = match params
        .filter()
        .and_then(|filter| Ok((filter, cursor(params.after.as_ref())?)))
    {
        Ok(parsed) => parsed,
        Err(message) => return refused(session, "Orders", message),
    };
    let list = async {
        let page = lists::orders_page(&state.db, &filter, after.as_ref(), PAGE_ROWS).await?;
        let (pinned, anomalies) = if after.is_none() && !filter.narrows_beyond_status() {
            pinned(state, filter.status).await?
        } else {
            (Vec::new(), HashSet::new())
        };
        let mut seen = HashSet::new();
        let rows: Vec<(orders::Model, bool)> = pinned
            .into_iter()
            .chain(page.rows)
            .filter(|order| seen.insert(order.id))
            .map(|order| {
                let anomaly = anomalies.contains(&order.id);
                (order, anomaly)
            })
            .collect();
        Ok::<_, ApiError>((rows, page.next))
    }
    .await;
    let body = list.map(|(rows, next)| {
        html! {
            p class="filters" {
                "Show: " a href="/admin/ui/orders" { "all" }
                @for status in status_filters() { a href={ "/admin/ui/orders?status=" (status.as_str()) } { (status.as_str()) } }
            }
            (order_filter_form(params, &state.providers))
            div class="scroll" {
                table id="orders" {
                    thead { tr { th { "Order" } th { "Merchant" } th { "Status" } th class="num" { "Amount" } th { "Created" } th { "Deadline" } th { "Close reason" } } }
                    tbody {
                        @for (order, anomaly) in &rows {
                            tr data-order-no=(order.order_no) {
                                td { a href={ "/admin/ui/orders/" (order.order_no) } { (order.order_no) } }
                                td { (order.merchant_id) }
                                td { (badge(order.status.as_str())) @if *anomaly { " " (badge("anomaly")) } }
                                td class="num" { (money(order.total_amount, order.currency)) }
                                td { (when(order.created_at)) }
                                td { (when(order.expires_at)) }
                                td { (order.close_reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() { p class="muted" { "No orders." } }
            (next_link(next.map(|next| link("/admin/ui/orders", &params.pairs(), Some(&next)))))
            h2 { "Deadline index" }
            p class="muted" { "Rebuild the index of pending deadlines from the database and re-arm every live order." }
            form method="post" action="/admin/ui/deadlines/reconcile" {
                (csrf_field(session))
                button type="submit" class="secondary" { "Reconcile the deadline index" }
            }
        }
    });
    show(session, "Orders", status_code, banner, body)
}

/// `GET /admin/ui/orders[?status=&provider=&merchant=&created_from=&created_to=&amount_min=&amount_max=&after=]`.
pub async fn orders(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<OrdersQuery>,
) -> HttpResponse {
    let banner = banner_from(params.notice.as_deref());
    orders_page(&state, &session, &params, StatusCode::OK, banner).await
}

/// The order list after an action on it (the deadline index reconciled).
pub(super) async fn orders_after(
    state: &AppState,
    session: &ConsoleSession,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    orders_page(state, session, &OrdersQuery::default(), status_code, banner).await
}

// ---- refunds ----

#[derive(Debug, Deserialize)]
pub struct RefundsQuery {
    status: Option<String>,
    provider: Option<String>,
    merchant: Option<String>,
    #[serde(flatten)]
    created: CreatedRange,
    after: Option<String>,
}

impl RefundsQuery {
    fn filter(&self) -> Result<RefundFilter, String> {
        let (created_from, created_to) = self.created.parse()?;
        Ok(RefundFilter {
            status: given(self.status.as_ref())
                .map(|value| choice("status", value, RefundStatus::as_str))
                .transpose()?,
            provider: given(self.provider.as_ref()).map(provider).transpose()?,
            merchant: given(self.merchant.as_ref())
                .map(|value| id("merchant", value))
                .transpose()?,
            created_from,
            created_to,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, Option<&String>)> {
        let mut pairs = vec![
            ("status", self.status.as_ref()),
            ("provider", self.provider.as_ref()),
            ("merchant", self.merchant.as_ref()),
        ];
        pairs.extend(self.created.pairs());
        pairs
    }
}

/// `GET /admin/ui/refunds[?status=&provider=&merchant=&created_from=&created_to=&after=]`.
pub async fn refunds(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<RefundsQuery>,
) -> HttpResponse {
    let (filter, after) = match params
        .filter()
        .and_then(|filter| Ok((filter, cursor(params.after.as_ref())?)))
    {
        Ok(parsed) => parsed,
        Err(message) => return refused(&session, "Refunds", message),
    };
    let page = lists::refunds_page(&state.db, &filter, after.as_ref(), PAGE_ROWS)
        .await
        .map_err(ApiError::from);
    let body = page.map(|page| {
        html! {
            form method="get" action="/admin/ui/refunds" class="filter-form" id="refund-filters" {
                label { "Status " select name="status" {
                    option value="" { "any" }
                    @for status in RefundStatus::iter() {
                        option value=(status.as_str()) selected[given(params.status.as_ref()) == Some(status.as_str())] { (status.as_str()) }
                    }
                } }
                (provider_select(params.provider.as_ref(), &state.providers))
                (text_field("Merchant ", "merchant", params.merchant.as_ref(), ""))
                (params.created.fields())
                button type="submit" class="secondary" { "Filter" }
                a href="/admin/ui/refunds" { "Clear" }
            }
            div class="scroll" { table id="refunds" {
                thead { tr { th { "Refund" } th { "Merchant" } th { "Merchant's id" } th { "Order" } th { "Provider" } th class="num" { "Amount" } th { "Status" } th { "Created" } } }
                tbody { @for refund in &page.rows { tr data-refund-no=(refund.refund_no) {
                    td { (refund.refund_no) }
                    td { (refund.merchant_id) }
                    td { (refund.out_refund_id) }
                    td { a href={ "/admin/ui/orders/" (refund.order_id) } { (refund.order_id) } }
                    td { (refund.provider.as_str()) }
                    td class="num" { (money(refund.amount, refund.currency)) }
                    td { (badge(refund.status.as_str())) }
                    td { (when(refund.created_at)) }
                } } }
            } }
            @if page.rows.is_empty() { p class="muted" { "No refunds." } }
            (next_link(page.next.map(|next| link("/admin/ui/refunds", &params.pairs(), Some(&next)))))
        }
    });
    show(&session, "Refunds", StatusCode::OK, Banner::None, body)
}

// ---- deliveries ----

#[derive(Debug, Default, Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    subscriber: Option<String>,
    #[serde(flatten)]
    created: CreatedRange,
    after: Option<String>,
    notice: Option<String>,
}

/// The `status` filter's value for every status.
const ANY: &str = "any";

impl DeliveriesQuery {
    /// Dead deliveries unless told otherwise (what an operator acts on).
    fn filter(&self) -> Result<DeliveryFilter, String> {
        let status = match given(self.status.as_ref()) {
            None => Some(DeliveryStatus::Dead),
            Some(ANY) => None,
            Some(value) => Some(value.parse::<DeliveryStatus>()?),
        };
        let (created_from, created_to) = self.created.parse()?;
        Ok(DeliveryFilter {
            status,
            subscriber: given(self.subscriber.as_ref())
                .map(|value| id("subscriber", value))
                .transpose()?,
            created_from,
            created_to,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, Option<&String>)> {
        let mut pairs = vec![
            ("status", self.status.as_ref()),
            ("subscriber", self.subscriber.as_ref()),
        ];
        pairs.extend(self.created.pairs());
        pairs
    }
}

async fn deliveries_page(
    state: &AppState,
    session: &ConsoleSession,
    params: &DeliveriesQuery,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let (filter, after) = match params
        .filter()
        .and_then(|filter| Ok((filter, cursor(params.after.as_ref())?)))
    {
        Ok(parsed) => parsed,
        Err(message) => return refused(session, "Deliveries", message),
    };
    let page = async {
        let page = lists::deliveries_page(&state.db, &filter, after.as_ref(), PAGE_ROWS).await?;
        let views = actors::outbox::subscribers::with_events(&state.db, page.rows).await?;
        Ok::<_, ApiError>((views, page.next))
    }
    .await;
    let shown = filter.status.map_or(ANY, DeliveryStatus::as_str);
    let body = page.map(|(rows, next)| {
        html! {
            form method="get" action="/admin/ui/deliveries" class="filter-form" id="delivery-filters" {
                label { "Status " select name="status" {
                    @for name in ["dead", "pending", "delivered", ANY] {
                        option value=(name) selected[shown == name] { (name) }
                    }
                } }
                (text_field("Subscriber ", "subscriber", params.subscriber.as_ref(), ""))
                (params.created.fields())
                button type="submit" class="secondary" { "Filter" }
            }
            p class="filters" {
                "Show: "
                @for name in ["dead", "pending", "delivered", ANY] { a href={ "/admin/ui/deliveries?status=" (name) } { (name) } }
            }
            div class="scroll" { table id="deliveries" {
                thead { tr { th { "Id" } th { "Order" } th { "Event" } th { "Subscriber" } th { "Status" } th class="num" { "Attempts" } th { "Last error" } th {} } }
                tbody { @for view in &rows { tr data-delivery-id=(view.delivery.id) {
                    @let delivery = &view.delivery;
                    td { (delivery.id) }
                    td { a href={ "/admin/ui/orders/" (delivery.order_id) } { (delivery.order_id) } }
                    td { (view.event.as_ref().map(|e| e.event_type.as_str()).unwrap_or("")) }
                    td { (delivery.subscriber_id) }
                    td { (badge(delivery.status.as_str())) }
                    td class="num" { (delivery.attempts) }
                    td { (delivery.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if delivery.status == DeliveryStatus::Dead {
                            form method="post" action={ "/admin/ui/deliveries/" (delivery.id) "/redeliver" } class="inline" {
                                (csrf_field(session))
                                button type="submit" class="secondary" { "Redeliver" }
                            }
                        }
                    }
                } } }
            } }
            @if rows.is_empty() { p class="muted" { "No " (shown) " deliveries." } }
            (next_link(next.map(|next| link("/admin/ui/deliveries", &params.pairs(), Some(&next)))))
        }
    });
    show(session, "Deliveries", status_code, banner, body)
}

/// `GET /admin/ui/deliveries[?status=dead|pending|delivered|any&subscriber=&created_from=&created_to=&after=]`
/// (dead by default).
pub async fn deliveries(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<DeliveriesQuery>,
) -> HttpResponse {
    let banner = banner_from(params.notice.as_deref());
    deliveries_page(&state, &session, &params, StatusCode::OK, banner).await
}

/// The dead deliveries after an action on them.
pub(super) async fn deliveries_after(
    state: &AppState,
    session: &ConsoleSession,
    status_code: StatusCode,
    banner: Banner,
) -> HttpResponse {
    deliveries_page(state, session, &DeliveriesQuery::default(), status_code, banner).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_filter_takes_a_day_a_local_time_or_rfc_3339() {
        let noon = instant("created_from", "2026-12-07T12:00").unwrap();
        assert_eq!(instant("created_from", "2026-12-07T12:00:00Z").unwrap(), noon);
        assert_eq!(instant("created_from", "2026-12-07T20:00:00+08:00").unwrap(), noon);
        assert_eq!(
            instant("created_from", "2026-12-07").unwrap(),
            instant("created_from", "2026-12-07T00:00").unwrap()
        );
        let refused = instant("created_to", "yesterday").unwrap_err();
        assert!(refused.starts_with("created_to"), "{refused}");
    }

    #[test]
    fn a_link_keeps_the_filters_given_and_the_cursor() {
        let status = "paid".to_owned();
        let empty = String::new();
        let merchant = "a b&c".to_owned();
        let cursor = Cursor::parse("1.42").unwrap();
        assert_eq!(
            link(
                "/admin/ui/orders",
                &[
                    ("status", Some(&status)),
                    ("provider", Some(&empty)),
                    ("merchant", Some(&merchant))
                ],
                Some(&cursor)
            ),
            "/admin/ui/orders?status=paid&merchant=a+b%26c&after=1.42"
        );
        assert_eq!(link("/admin/ui/orders", &[("status", None)], None), "/admin/ui/orders");
    }

    #[test]
    fn an_amount_filter_is_whole_minor_units() {
        assert_eq!(amount("amount_min", "100").map(MinorUnit::get), Ok(100));
        for bad in ["-1", "1.5", "ten"] {
            assert!(amount("amount_min", bad).is_err(), "{bad}");
        }
    }
}
