//! The console's page of one subscriber: its delivery log (each delivery with its attempts:
//! when, the receiver's status, latency, error, the start of its answer), a replay of a range of
//! its events, and a test ping. The actions are the `/admin` routes' functions in
//! [`crate::operations`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::outbox::subscribers::{DeliveryFilter, ReplayRange};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::html;
use serde::Deserialize;

use super::{badge, check, csrf_field, refusal, render, Banner, ConsoleRejection, ConsoleSession};
use crate::error::ApiError;
use crate::routes::html::when;
use crate::state::AppState;

/// Deliveries the page shows, newest first.
const DELIVERIES_SHOWN: u64 = 100;

async fn subscriber_page(
    state: &AppState,
    session: &ConsoleSession,
    id: &str,
    status: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let filter = DeliveryFilter {
        limit: DELIVERIES_SHOWN,
        ..DeliveryFilter::default()
    };
    let log = match crate::operations::subscriber_deliveries(state, id, filter).await {
        Ok(log) => log,
        Err(err) => {
            let (status, banner) = refusal(&err);
            return render(session, "Subscriber", status, &banner, html! {});
        }
    };
    let base = format!("/admin/ui/subscribers/{id}");
    let body = html! {
        div class="actions" {
            form method="post" action={ (base) "/test" } class="stack card" id="test-ping" {
                (csrf_field(session))
                strong { "Test" }
                span class="muted" { "Sends a signed ping event now (not retried) and shows what the receiver answered." }
                button type="submit" class="secondary" { "Send a test ping" }
            }
            form method="post" action={ (base) "/replay" } class="stack card" id="replay" {
                (csrf_field(session))
                strong { "Replay" }
                span class="muted" { "Queues again every event of the range it receives, with its original id, in order (UTC)." }
                label { "From " input type="datetime-local" name="since" required step="1"; }
                label { "Until " input type="datetime-local" name="until" required step="1"; }
                button type="submit" { "Replay the range" }
            }
        }
        h2 { "Deliveries" }
        div class="scroll" { table id="deliveries-log" {
            thead { tr { th { "Delivery" } th { "Event" } th { "Status" } th { "Attempts: when, answer, latency, error" } } }
            tbody { @for entry in &log { tr data-delivery-id=(entry.delivery.id) {
                td { (entry.delivery.id) br; span class="muted" { (when(entry.delivery.created_at)) } }
                td { @if let Some(event) = &entry.event { (event.event_type) br; span class="muted" { (event.event_id) } } }
                td { (badge(entry.delivery.status.as_str())) }
                td { ol class="attempts" { @for attempt in &entry.attempts { li {
                    (when(attempt.attempted_at)) " · "
                    @if let Some(code) = attempt.status_code { strong { (code) } } @else { "no answer" }
                    " · " (attempt.latency_ms) " ms"
                    @if let Some(error) = &attempt.error { " · " (error) }
                    @if let Some(answer) = &attempt.response_body { br; code class="muted" { (answer) } }
                } } } }
            } } }
        } }
        @if log.is_empty() { p class="muted" { "No delivery yet." } }
        p { a href="/admin/ui/subscribers" { "All subscribers" } }
    };
    render(session, &format!("Subscriber {id}"), status, &banner, body)
}

/// `GET /admin/ui/subscribers/{id}`.
pub async fn subscriber(state: web::Data<AppState>, session: ConsoleSession, id: web::Path<String>) -> HttpResponse {
    subscriber_page(&state, &session, &id, StatusCode::OK, Banner::None).await
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /admin/ui/subscribers/{id}/test`: the page, with what the receiver answered.
pub async fn test(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let (status, banner) = match crate::operations::ping_subscriber(&state, &id, &session.operator()).await {
        Ok(answer) => {
            let latency = answer.latency.as_millis();
            let text = match (&answer.status_code, &answer.error) {
                (Some(code), None) => format!("The receiver answered {code} in {latency} ms."),
                (Some(code), Some(error)) => format!("The receiver answered {code} in {latency} ms: {error}"),
                (None, Some(error)) => format!("Nothing answered: {error}"),
                (None, None) => "Nothing answered.".to_owned(),
            };
            let banner = if answer.error.is_none() {
                Banner::Notice(text)
            } else {
                Banner::Error(text)
            };
            (StatusCode::OK, banner)
        }
        Err(err) => refusal(&err),
    };
    Ok(subscriber_page(&state, &session, &id, status, banner).await)
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    csrf: String,
    since: String,
    until: String,
}

/// A `datetime-local` value (`YYYY-MM-DDTHH:MM[:SS]`), read as UTC.
fn utc(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value.trim(), format).ok())
        .map(|naive| naive.and_utc())
        .ok_or_else(|| {
            ApiError::Validation(actors::domain::ValidationError::new(
                "invalid_range",
                format!("{field} must be a date and time, YYYY-MM-DDTHH:MM (UTC)"),
            ))
        })
}

/// `POST /admin/ui/subscribers/{id}/replay`: the page, with how many events were queued.
pub async fn replay(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<String>,
    form: web::Form<ReplayForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let range = utc("since", &form.since).and_then(|since| {
        Ok(ReplayRange {
            since,
            until: utc("until", &form.until)?,
            event_types: Vec::new(),
        })
    });
    let result = match range {
        Ok(range) => crate::operations::replay(&state, &id, range, &session.operator()).await,
        Err(err) => Err(err),
    };
    let (status, banner) = match result {
        Ok(count) => (
            StatusCode::OK,
            Banner::Notice(format!("{count} event(s) queued again, in order.")),
        ),
        Err(err) => refusal(&err),
    };
    Ok(subscriber_page(&state, &session, &id, status, banner).await)
}
