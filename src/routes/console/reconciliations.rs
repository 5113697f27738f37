//! The console's reconciliation pages: the runs, newest day first, with a form to reconcile a
//! day; a run with its differences, each with a resolve form, and "run this day again". The
//! actions are [`crate::operations::reconcile_day`] and
//! [`crate::operations::resolve_difference`], as for the `/admin` JSON routes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use entities::{reconciliation_items, reconciliation_runs, Currency, Provider};
use maud::html;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;

use super::{badge, banner_from, check, csrf_field, outcome, render, show, Banner, NoticeQuery, LIST_LIMIT};
use super::{ConsoleRejection, ConsoleSession};
use crate::error::ApiError;
use crate::routes::html::{money, when};
use crate::state::AppState;

/// The real providers' bills are in CNY, the only currency they take (a difference records
/// minor units, not its currency).
const BILL_CURRENCY: Currency = Currency::Cny;

async fn runs_page(state: &AppState, session: &ConsoleSession, status: StatusCode, banner: Banner) -> HttpResponse {
    let runs = reconciliation_runs::Entity::find()
        .order_by_desc(reconciliation_runs::Column::BillDate)
        .order_by_asc(reconciliation_runs::Column::Provider)
        .limit(LIST_LIMIT)
        .all(&state.db)
        .await
        .map_err(ApiError::from);
    let providers = &state.providers;
    let body = runs.map(|runs| {
        html! {
            p class="muted" { "Each provider's bill of a day, compared with paywarden's payments and refunds. A difference stays open until an operator resolves it with what was done." }
            @if !providers.is_empty() {
                form method="post" action="/admin/ui/reconciliations" class="stack card" id="reconcile-day" {
                    (csrf_field(session))
                    strong { "Reconcile a day" }
                    select name="provider" required { @for provider in providers { option value=(provider.as_str()) { (provider.as_str()) } } }
                    input type="date" name="date" required;
                    button type="submit" { "Reconcile" }
                }
            }
            div class="scroll" { table id="runs" {
                thead { tr { th { "Day" } th { "Provider" } th { "Status" } th class="num" { "Differences" } th { "Summary" } th { "Last error" } } }
                tbody { @for run in &runs { tr data-run-id=(run.id) {
                    td { a href={ "/admin/ui/reconciliations/" (run.id) } { (run.bill_date) } }
                    td { (run.provider.as_str()) }
                    td { (badge(&run.status)) }
                    td class="num" { (run.items) }
                    td { (run.summary.as_deref().unwrap_or("")) }
                    td { (run.last_error.as_deref().unwrap_or("")) }
                } } }
            } }
            @if runs.is_empty() { p class="muted" { "No run yet." } }
        }
    });
    show(session, "Reconciliation", status, banner, body)
}

/// `GET /admin/ui/reconciliations`.
pub async fn runs(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    runs_page(&state, &session, StatusCode::OK, banner_from(params.notice.as_deref())).await
}

#[derive(Debug, Deserialize)]
pub struct DayForm {
    csrf: String,
    provider: String,
    date: String,
}

/// `POST /admin/ui/reconciliations`: reconciles the day now (again, for a day already run), then
/// shows its run.
pub async fn reconcile_day(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<DayForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let provider = form
        .provider
        .parse::<Provider>()
        .map_err(|message| ApiError::Validation(actors::domain::ValidationError::new("unknown_provider", message)));
    let result = match provider {
        Ok(provider) => {
            let target = actors::provider::Route::configured(provider);
            crate::operations::reconcile_day(&state, &target, &form.date, &session.operator()).await
        }
        Err(err) => Err(err),
    };
    let done = match &result {
        Ok(run) => format!("/admin/ui/reconciliations/{}?notice=reconciled", run.id),
        Err(_) => String::new(),
    };
    Ok(outcome(result, &done, |status, banner| {
        runs_page(&state, &session, status, banner)
    })
    .await)
}

async fn run_page(
    state: &AppState,
    session: &ConsoleSession,
    id: i64,
    status: StatusCode,
    banner: Banner,
) -> HttpResponse {
    let run = match reconciliation_runs::Entity::find_by_id(id).one(&state.db).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            let banner = Banner::Error(format!("There is no reconciliation run {id}."));
            return render(session, "Run not found", StatusCode::NOT_FOUND, &banner, html! {});
        }
        Err(err) => return show(session, "Reconciliation", status, banner, Err(err.into())),
    };
    let items = reconciliation_items::Entity::find()
        .filter(reconciliation_items::Column::RunId.eq(run.id))
        .order_by_asc(reconciliation_items::Column::ResolvedAt)
        .order_by_asc(reconciliation_items::Column::Kind)
        .order_by_asc(reconciliation_items::Column::Reference)
        .all(&state.db)
        .await
        .map_err(ApiError::from);
    let body = items.map(|items| {
        let open = items.iter().filter(|item| item.resolved_at.is_none()).count();
        html! {
            p {
                (badge(&run.status)) " " strong { (run.provider.as_str()) " · " (run.bill_date) }
                " · " (open) " open of " (items.len()) " differences"
            }
            @if let Some(summary) = &run.summary { p class="muted" { (summary) } }
            @if let Some(error) = &run.last_error { p class="muted" { "Last error: " (error) } }
            form method="post" action="/admin/ui/reconciliations" class="inline" id="run-again" {
                (csrf_field(session))
                input type="hidden" name="provider" value=(run.provider.as_str());
                input type="hidden" name="date" value=(run.bill_date);
                button type="submit" class="secondary" { "Run this day again" }
            }
            h2 { "Differences" }
            div class="scroll" { table id="differences" {
                thead { tr { th { "Kind" } th { "Trade or refund" } th class="num" { "Bill" } th class="num" { "Here" } th { "Detail" } th { "Done by paywarden" } th { "Resolution" } } }
                tbody { @for item in &items { tr data-item-id=(item.id) {
                    td { (item.kind) }
                    td { (item.reference) }
                    td class="num" { (item.provider_amount.map(|amount| money(amount, BILL_CURRENCY)).unwrap_or_default()) }
                    td class="num" { (item.local_amount.map(|amount| money(amount, BILL_CURRENCY)).unwrap_or_default()) }
                    td { (item.detail) }
                    td { (item.action.as_deref().unwrap_or("")) }
                    td {
                        @if let (Some(at), Some(by)) = (item.resolved_at, &item.resolved_by) {
                            (badge("resolved")) " " (item.resolution.as_deref().unwrap_or("")) br;
                            span class="muted" { (when(at)) " · " (by) }
                        } @else {
                            form method="post" action={ "/admin/ui/reconciliation-items/" (item.id) "/resolve" } class="stack" {
                                (csrf_field(session))
                                input type="text" name="note" required maxlength="242" placeholder="What was done (recorded)";
                                button type="submit" class="secondary" { "Resolve" }
                            }
                        }
                    }
                } } }
            } }
            @if items.is_empty() { p class="muted" { "No difference." } }
            p { a href="/admin/ui/reconciliations" { "All runs" } }
        }
    });
    show(session, &format!("Reconciliation {}", run.id), status, banner, body)
}

/// `GET /admin/ui/reconciliations/{id}`.
pub async fn run(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<i64>,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    run_page(
        &state,
        &session,
        *id,
        StatusCode::OK,
        banner_from(params.notice.as_deref()),
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    csrf: String,
    note: String,
}

/// `POST /admin/ui/reconciliation-items/{id}/resolve`: then the item's run.
pub async fn resolve(
    state: web::Data<AppState>,
    session: ConsoleSession,
    id: web::Path<i64>,
    form: web::Form<NoteForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let run_id = reconciliation_items::Entity::find_by_id(*id)
        .select_only()
        .column(reconciliation_items::Column::RunId)
        .into_tuple::<i64>()
        .one(&state.db)
        .await
        .ok()
        .flatten();
    let result = crate::operations::resolve_difference(&state, *id, &form.note, &session.operator()).await;
    let Some(run_id) = run_id else {
        return Ok(outcome(result, "/admin/ui/reconciliations", |status, banner| {
            runs_page(&state, &session, status, banner)
        })
        .await);
    };
    Ok(outcome(
        result,
        &format!("/admin/ui/reconciliations/{run_id}?notice=difference-resolved"),
        |status, banner| run_page(&state, &session, run_id, status, banner),
    )
    .await)
}
