//! The console's landing page: whether payments are healthy, on the first screen.
//!
//! For the last hour, day or week: orders created, paid, closed and refunded per interval (bar
//! charts drawn here as inline SVG, so the page needs no script and no other host), the
//! payment success rate overall, per interval and per provider, the expiry rule's close
//! lateness, and what waits for an operator (stuck orders, the webhook backlog, dead
//! deliveries, open differences), each linking to the list behind it. Per provider also this
//! node's calls, failures and breaker, and the last reconciliation.
//!
//! The counts come from `activity_counts` ([`actors::store::activity`]), at most a few
//! thousand rows whatever the number of orders; the rest are indexed counts. With a script, the page
//! refreshes its figures in place every `dashboard.page_refresh_seconds`
//! (`/assets/console.js`).

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::store::activity::{self, Activity, Series, COARSE_SECONDS, FINE_SECONDS, NO_PROVIDER};
use actors::store::gauges::{self, Backlog};
use chrono::{DateTime, Duration, Utc};
use entities::{reconciliation_items, reconciliation_runs, Provider};
use maud::{html, Markup};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::Deserialize;

use super::{render, show, Banner, ConsoleSession};
use crate::metrics::ProviderCalls;
use crate::state::AppState;

/// The span a dashboard shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Hour,
    Day,
    Week,
}

impl Span {
    const ALL: [Span; 3] = [Span::Hour, Span::Day, Span::Week];

    fn as_str(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
            Span::Week => "week",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Span::Hour => "Last hour",
            Span::Day => "Last day",
            Span::Week => "Last 7 days",
        }
    }

    /// The buckets read, the interval of one bar, and how many bars.
    fn shape(self) -> (i32, Duration, usize) {
        match self {
            Span::Hour => (FINE_SECONDS, Duration::minutes(5), 12),
            Span::Day => (COARSE_SECONDS, Duration::hours(1), 24),
            Span::Week => (COARSE_SECONDS, Duration::hours(6), 28),
        }
    }

    fn parse(text: Option<&str>) -> Result<Span, String> {
        match text.filter(|text| !text.is_empty()) {
            None => Ok(Span::Hour),
            Some(text) => Span::ALL
                .into_iter()
                .find(|span| span.as_str() == text)
                .ok_or_else(|| format!("Unknown span '{text}': one of hour, day, week.")),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    span: Option<String>,
}

/// Everything one dashboard shows.
struct Figures {
    span: Span,
    activity: Activity,
    /// The webhook backlog (what waits for an operator comes with the session).
    backlog: Backlog,
    calls: BTreeMap<String, ProviderCalls>,
    /// Per enabled provider: its newest run and how many of its differences are open.
    last_runs: Vec<(Provider, Option<(reconciliation_runs::Model, u64)>)>,
    now: DateTime<Utc>,
}

async fn figures(state: &AppState, span: Span, now: DateTime<Utc>) -> Result<Figures, DbErr> {
    let (resolution, step, points) = span.shape();
    let step_seconds = i32::try_from(step.num_seconds()).unwrap_or(COARSE_SECONDS);
    let last = activity::bucket_of(now, step_seconds);
    let from = last - step * i32::try_from(points - 1).unwrap_or(0);
    let activity = activity::read(&state.db, resolution, from, step, points).await?;
    let backlog = gauges::backlog(&state.db).await?;
    let mut last_runs = Vec::new();
    for provider in &state.providers {
        last_runs.push((*provider, last_run(&state.db, *provider).await?));
    }
    Ok(Figures {
        span,
        activity,
        backlog,
        calls: state.metrics.provider_calls(),
        last_runs,
        now,
    })
}

async fn last_run(
    db: &DatabaseConnection,
    provider: Provider,
) -> Result<Option<(reconciliation_runs::Model, u64)>, DbErr> {
    let Some(run) = reconciliation_runs::Entity::find()
        .filter(reconciliation_runs::Column::Provider.eq(provider))
        .order_by_desc(reconciliation_runs::Column::BillDate)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let open = reconciliation_items::Entity::find()
        .filter(reconciliation_items::Column::RunId.eq(run.id))
        .filter(reconciliation_items::Column::ResolvedAt.is_null())
        .count(db)
        .await?;
    Ok(Some((run, open)))
}

/// `GET /admin/ui[?span=hour|day|week]`: the dashboard.
pub async fn dashboard(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<DashboardQuery>,
) -> HttpResponse {
    let span = match Span::parse(params.span.as_deref()) {
        Ok(span) => span,
        Err(message) => {
            return render(
                &session,
                "Dashboard",
                StatusCode::BAD_REQUEST,
                &Banner::Error(message),
                html! {},
            )
        }
    };
    let body = figures(&state, span, Utc::now())
        .await
        .map(|figures| page(&figures, &session, &state.providers, state.dashboard_refresh.as_secs()))
        .map_err(crate::error::ApiError::from);
    show(&session, "Dashboard", StatusCode::OK, Banner::None, body)
}

/// `paid ÷ (paid + closed)` as a percentage with one decimal, or a dash with nothing settled.
fn rate(paid: i64, closed: i64) -> String {
    let settled = paid + closed;
    if settled == 0 {
        return "—".to_owned();
    }
    let tenths = (paid * 1000 + settled / 2) / settled;
    format!("{}.{} %", tenths / 10, tenths % 10)
}

fn seconds_text(bound: Option<f64>) -> String {
    match bound {
        None => "—".to_owned(),
        Some(bound) if bound.is_infinite() => "> 60 s".to_owned(),
        Some(bound) if bound < 1.0 => format!("≤ {:.0} ms", bound * 1000.0),
        Some(bound) => format!("≤ {bound} s"),
    }
}

fn page(figures: &Figures, session: &ConsoleSession, providers: &[Provider], refresh_seconds: u64) -> Markup {
    let activity = &figures.activity;
    let paid = activity.total(Series::Paid);
    let closed = activity.total(Series::Closed);
    let from_param = activity.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let attention = session.attention;
    let backlog_age = figures.backlog.oldest_pending_age(figures.now).as_secs();
    let paid_by = activity.by_label(Series::Paid);
    let closed_by = activity.by_label(Series::Closed);
    let labels: BTreeSet<String> = providers
        .iter()
        .map(|provider| provider.as_str().to_owned())
        .chain(paid_by.keys().cloned())
        .chain(closed_by.keys().cloned())
        .collect();
    let paid_per = activity.per_interval(Series::Paid);
    let closed_per = activity.per_interval(Series::Closed);
    let success_per: Vec<i64> = paid_per
        .iter()
        .zip(&closed_per)
        .map(|(paid, closed)| {
            if paid + closed == 0 {
                0
            } else {
                paid * 100 / (paid + closed)
            }
        })
        .collect();
    html! {
        div id="dashboard" data-refresh-seconds=(refresh_seconds) data-span=(figures.span.as_str()) {
            p class="filters" {
                @for span in Span::ALL {
                    @if span == figures.span { strong { (span.title()) } " " }
                    @else { a href={ "/admin/ui?span=" (span.as_str()) } { (span.title()) } }
                }
                span class="muted" {
                    "Counted up to "
                    @match activity.counted_until { Some(at) => { (super::when(at)) }, None => { "nothing yet" } }
                    "; this page refreshes by itself."
                }
            }
            section class="tiles" {
                a class="tile" id="tile-success" href="/admin/ui/orders?status=paid" {
                    span class="label" { "Payment success" }
                    strong { (rate(paid, closed)) }
                    span class="muted" { (paid) " paid of " (paid + closed) " settled" }
                }
                a class="tile" id="tile-lateness" href="/admin/ui/orders?status=closed" {
                    span class="label" { "Close lateness" }
                    strong { "p99 " (seconds_text(activity.lateness_quantile(990))) }
                    span class="muted" { "p50 " (seconds_text(activity.lateness_quantile(500))) ", closes by the expiry rule" }
                }
                a class=(tile_class(attention.stuck_orders > 0)) id="tile-stuck" href="/admin/ui/orders?status=stuck" {
                    span class="label" { "Stuck orders" }
                    strong { (attention.stuck_orders) }
                    span class="muted" { "the expiry rule could not settle them" }
                }
                a class=(tile_class(attention.total() > 0)) id="tile-attention" href="/admin/ui/attention" {
                    span class="label" { "Needs attention" }
                    strong { (attention.total()) }
                    span class="muted" { (attention.unmatched) " unmatched, " (attention.open_differences) " differences" }
                }
                a class="tile" id="tile-backlog" href="/admin/ui/deliveries?status=pending" {
                    span class="label" { "Webhook backlog" }
                    strong { (figures.backlog.deliveries_pending) }
                    span class="muted" { "oldest waiting " (backlog_age) " s" }
                }
                a class=(tile_class(attention.dead_deliveries > 0)) id="tile-dead" href="/admin/ui/deliveries?status=dead" {
                    span class="label" { "Dead deliveries" }
                    strong { (attention.dead_deliveries) }
                    span class="muted" { "out of retries" }
                }
            }
            h2 { "Orders, " (figures.span.title().to_lowercase()) }
            section class="charts" {
                (chart("created", "Created", &activity.per_interval(Series::Created), activity, &format!("/admin/ui/orders?created_from={from_param}")))
                (chart("paid", "Paid", &paid_per, activity, "/admin/ui/orders?status=paid"))
                (chart("closed", "Closed", &closed_per, activity, "/admin/ui/orders?status=closed"))
                (chart("refunded", "Refunded", &activity.per_interval(Series::Refunded), activity, "/admin/ui/refunds?status=succeeded"))
                (chart("success", "Success rate, %", &success_per, activity, "/admin/ui/orders?status=paid"))
            }
            h2 { "By provider" }
            div class="scroll" { table id="providers" {
                thead { tr {
                    th { "Provider" } th class="num" { "Paid" } th class="num" { "Closed" } th class="num" { "Success" }
                    th class="num" { "Calls (this node)" } th class="num" { "Failed" } th { "Breaker" } th { "Last reconciliation" }
                } }
                tbody { @for label in &labels {
                    @let paid = paid_by.get(label).copied().unwrap_or(0);
                    @let closed = closed_by.get(label).copied().unwrap_or(0);
                    @let calls = figures.calls.get(label).copied().unwrap_or_default();
                    @let run = figures.last_runs.iter().find(|(provider, _)| provider.as_str() == label).and_then(|(_, run)| run.as_ref());
                    tr data-provider=(label) {
                        td { @if label == NO_PROVIDER { "no attempt" } @else { a href={ "/admin/ui/orders?provider=" (label) } { (label) } } }
                        td class="num" { @if label == NO_PROVIDER { (paid) } @else { a href={ "/admin/ui/orders?status=paid&provider=" (label) } { (paid) } } }
                        td class="num" { (closed) }
                        td class="num" { (rate(paid, closed)) }
                        td class="num" data-calls=(calls.calls) { (calls.calls) }
                        td class="num" { (calls.failed) }
                        td { @if calls.breaker_open { span class="badge stuck" { "open" } } @else if label != NO_PROVIDER { "closed" } }
                        td { @match run {
                            Some((run, open)) => { a href={ "/admin/ui/reconciliations/" (run.id) } {
                                (run.bill_date) " · " (run.status) " · " (open) " open of " (run.items) " differences"
                            } },
                            None => { span class="muted" { @if label != NO_PROVIDER { "none yet" } } },
                        } }
                    }
                } }
            } }
        }
    }
}

fn tile_class(alarm: bool) -> &'static str {
    if alarm {
        "tile alarm"
    } else {
        "tile"
    }
}

/// Chart geometry, in SVG user units.
const WIDTH: i64 = 300;
const HEIGHT: i64 = 80;

/// A bar chart of one series, drawn on the server: one bar per interval, its count in the
/// bar's title; the figure links to the list behind it.
fn chart(id: &str, title: &str, values: &[i64], activity: &Activity, href: &str) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let slots = i64::try_from(values.len().max(1)).unwrap_or(1);
    let slot = WIDTH / slots;
    let bar = (slot - 2).max(1);
    let total: i64 = if id == "success" { 0 } else { values.iter().sum() };
    let label_of = |index: usize| {
        let start = activity.from + activity.step * i32::try_from(index).unwrap_or(0);
        if activity.step >= Duration::hours(6) {
            start.format("%m-%d %H:%M").to_string()
        } else {
            start.format("%H:%M").to_string()
        }
    };
    html! {
        figure class="chart" id={ "chart-" (id) } data-total=(total) {
            figcaption {
                a href=(href) { (title) }
                @if id != "success" { " " strong class="total" { (total) } }
            }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 14) } role="img" aria-label=(title) {
                line class="axis" x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (index, value) in values.iter().enumerate() {
                    @let height = if *value == 0 { 0 } else { (value * (HEIGHT - 4) / max).max(2) };
                    @let x = i64::try_from(index).unwrap_or(0) * slot + 1;
                    rect class="bar" x=(x) y=(HEIGHT - height) width=(bar) height=(height) data-value=(value) {
                        title { (label_of(index)) ": " (value) }
                    }
                }
                text class="tick" x="0" y=(HEIGHT + 12) { (label_of(0)) }
                text class="tick end" x=(WIDTH) y=(HEIGHT + 12) { (label_of(values.len().saturating_sub(1))) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_success_rate_rounds_to_a_tenth() {
        assert_eq!(rate(0, 0), "—");
        assert_eq!(rate(1, 2), "33.3 %");
        assert_eq!(rate(2, 1), "66.7 %");
        assert_eq!(rate(5, 0), "100.0 %");
    }

    #[test]
    fn a_span_is_one_of_three() {
        assert_eq!(Span::parse(None), Ok(Span::Hour));
        assert_eq!(Span::parse(Some("week")), Ok(Span::Week));
        assert!(Span::parse(Some("year")).is_err());
    }
}
