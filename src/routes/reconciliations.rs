//! Operators' reconciliation routes: start (or re-run) a provider's day, list runs, read one
//! with its items, resolve an item with a note.

use actix_web::{web, HttpResponse};
use actors::reconcile;
use chrono::{DateTime, Utc};
use entities::{reconciliation_items, reconciliation_runs, MinorUnit, Provider};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::schema;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "wechat", "date": "2026-11-30"}))]
pub struct StartReconciliationBody {
    /// The deployment's configured provider (`[providers.<name>]`); or give `account_id`.
    #[schema(value_type = Option<schema::Provider>)]
    #[serde(default)]
    pub provider: Option<Provider>,
    /// A merchant's provider account: its own bill (its provider comes from the account).
    #[serde(default)]
    pub account_id: Option<String>,
    /// The bill's day, `YYYY-MM-DD` in China time, not after today (today's bill is not
    /// published yet at real providers: the run then waits for it).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date: String,
}

/// One run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRun {
    pub id: i64,
    #[schema(value_type = schema::Provider)]
    pub provider: Provider,
    /// The merchant's account whose bill it compares; `null`: the deployment's configured
    /// provider.
    pub account_id: Option<String>,
    pub date: String,
    /// `waiting` (for its bill, asked for again at `next_attempt_at`), `completed`, or
    /// `failed` (the bill did not check out; nothing of it was used; start the day again).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why it is still waiting.
    pub last_error: Option<String>,
    pub operator: String,
    /// Count and total (minor units) per side: `provider_payments`, `local_payments`,
    /// `provider_refunds`, `local_refunds`.
    #[schema(value_type = Object)]
    pub summary: Option<serde_json::Value>,
    /// Differences found.
    pub items: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<reconciliation_runs::Model> for ReconciliationRun {
    fn from(run: reconciliation_runs::Model) -> Self {
        Self {
            id: run.id,
            provider: run.provider,
            account_id: (!run.account_key.is_empty()).then(|| run.account_key.clone()),
            date: run.bill_date,
            status: run.status,
            attempts: run.attempts,
            next_attempt_at: run.next_attempt_at,
            last_error: run.last_error,
            operator: run.operator,
            summary: run.summary.and_then(|text| serde_json::from_str(&text).ok()),
            items: run.items,
            created_at: run.created_at,
            completed_at: run.completed_at,
        }
    }
}

/// One difference to resolve.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationItemResponse {
    pub id: i64,
    pub run_id: i64,
    /// `missing_here`, `bill_says_paid_provider_says_not`, `unknown_trade`,
    /// `missing_at_provider`, `amount_differs`, `txn_differs`, `duplicate_in_bill`,
    /// `refund_missing_here`, `refund_missing_at_provider` or `refund_differs`.
    pub kind: String,
    /// The trade or refund number it is about.
    pub reference: String,
    pub out_trade_no: String,
    #[schema(value_type = Option<i64>)]
    pub provider_amount: Option<MinorUnit>,
    #[schema(value_type = Option<i64>)]
    pub local_amount: Option<MinorUnit>,
    pub detail: String,
    /// What paywarden did by itself (a missing payment recorded).
    pub action: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

impl From<reconciliation_items::Model> for ReconciliationItemResponse {
    fn from(item: reconciliation_items::Model) -> Self {
        Self {
            id: item.id,
            run_id: item.run_id,
            kind: item.kind,
            reference: item.reference,
            out_trade_no: item.out_trade_no,
            provider_amount: item.provider_amount,
            local_amount: item.local_amount,
            detail: item.detail,
            action: item.action,
            created_at: item.created_at,
            resolved_at: item.resolved_at,
            resolved_by: item.resolved_by,
            resolution: item.resolution,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRunDetail {
    #[serde(flatten)]
    pub run: ReconciliationRun,
    /// Every difference of the run, by kind.
    pub differences: Vec<ReconciliationItemResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRunList {
    pub runs: Vec<ReconciliationRun>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationListQuery {
    #[param(value_type = Option<schema::Provider>)]
    provider: Option<Provider>,
    /// `waiting`, `completed` or `failed`.
    status: Option<String>,
    /// At most this many runs (default 100, at most 1000), newest day first.
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// `POST /admin/reconciliations {provider | account_id, date}`.
#[utoipa::path(
    post,
    path = "/admin/reconciliations",
    tag = "admin",
    operation_id = "admin_start_reconciliation",
    summary = "Reconcile a provider's bill of one day now",
    description = "`provider` names the deployment's configured provider; `account_id` a merchant's provider account, whose own bill is compared with that account's payments and refunds only. Downloads the trade bill of that day and compares it with paywarden's payments and refunds; answers the run once that is done. A day is one run: starting it again compares again and adds no difference twice. A bill not published yet leaves the run `waiting`; it is asked for again every `reconciliation.retry_interval_seconds`. A bill that does not check out (another account or day, rows that do not add up to its own totals, a row that does not read, too large) leaves the run `failed` with `last_error`, nothing of it used; starting the day again fetches it again.",
    request_body = StartReconciliationBody,
    responses((status = 200, description = "The run, completed, waiting for its bill, or failed", body = ReconciliationRunDetail)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_field", "provider_unavailable", "internal_error"]))),
)]
pub async fn start(
    state: web::Data<AppState>,
    body: web::Json<StartReconciliationBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let target = crate::operations::reconciliation_target(&state, body.provider, body.account_id.as_deref()).await?;
    let run = crate::operations::reconcile_day(&state, &target, &body.date, &crate::operations::api_operator()).await?;
    Ok(HttpResponse::Ok().json(detail(&state, run).await?))
}

/// `GET /admin/reconciliations`.
#[utoipa::path(
    get,
    path = "/admin/reconciliations",
    tag = "admin",
    operation_id = "admin_list_reconciliations",
    summary = "List reconciliation runs, newest day first",
    params(ReconciliationListQuery),
    responses((status = 200, description = "The runs", body = ReconciliationRunList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn list(
    state: web::Data<AppState>,
    params: web::Query<ReconciliationListQuery>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut query = reconciliation_runs::Entity::find()
        .order_by_desc(reconciliation_runs::Column::BillDate)
        .order_by_asc(reconciliation_runs::Column::Provider)
        .limit(params.limit.unwrap_or(100).clamp(1, 1000));
    if let Some(provider) = params.provider {
        query = query.filter(reconciliation_runs::Column::Provider.eq(provider));
    }
    if let Some(status) = params.status {
        if ![reconcile::WAITING, reconcile::COMPLETED, reconcile::FAILED].contains(&status.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "status must be waiting, completed or failed",
            ));
        }
        query = query.filter(reconciliation_runs::Column::Status.eq(status));
    }
    let runs = query
        .all(&state.db)
        .await?
        .into_iter()
        .map(ReconciliationRun::from)
        .collect();
    Ok(HttpResponse::Ok().json(ReconciliationRunList { runs }))
}

/// `GET /admin/reconciliations/{id}`.
#[utoipa::path(
    get,
    path = "/admin/reconciliations/{id}",
    tag = "admin",
    operation_id = "admin_get_reconciliation",
    summary = "A reconciliation run with its differences",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The run and its items", body = ReconciliationRunDetail)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "internal_error"]))),
)]
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let run = reconciliation_runs::Entity::find_by_id(id.into_inner())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("reconciliation run"))?;
    Ok(HttpResponse::Ok().json(detail(&state, run).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveReconciliationItemBody {
    /// What was done about it (refunded by hand, the provider corrected its bill, ...).
    #[schema(min_length = 1, max_length = 242)]
    note: String,
}

/// `POST /admin/reconciliation-items/{id}/resolve {note}`.
#[utoipa::path(
    post,
    path = "/admin/reconciliation-items/{id}/resolve",
    tag = "admin",
    operation_id = "admin_resolve_reconciliation_item",
    summary = "Resolve a reconciliation difference",
    description = "Records the operator and the note; once.",
    params(("id" = i64, Path, description = "The item's id")),
    request_body = ResolveReconciliationItemBody,
    responses((status = 200, description = "The item, resolved", body = ReconciliationItemResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "already_resolved", "invalid_field", "internal_error"]))),
)]
pub async fn resolve(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ResolveReconciliationItemBody>,
) -> Result<HttpResponse, ApiError> {
    let item = crate::operations::resolve_difference(
        &state,
        id.into_inner(),
        &body.into_inner().note,
        &crate::operations::api_operator(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ReconciliationItemResponse::from(item)))
}

async fn detail(state: &AppState, run: reconciliation_runs::Model) -> Result<ReconciliationRunDetail, ApiError> {
    let items = reconciliation_items::Entity::find()
        .filter(reconciliation_items::Column::RunId.eq(run.id))
        .order_by_asc(reconciliation_items::Column::Kind)
        .order_by_asc(reconciliation_items::Column::Reference)
        .all(&state.db)
        .await?;
    Ok(ReconciliationRunDetail {
        run: ReconciliationRun::from(run),
        differences: items.into_iter().map(ReconciliationItemResponse::from).collect(),
    })
}
