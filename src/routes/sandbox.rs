//! Routes of the built-in sandbox provider: play the buyer, look at a trade, inject faults.
//! They stand in for the provider's own app and servers, so they take no client key; they are
//! mounted only when the sandbox is enabled (never in the production profile by default).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::gateway::sandbox::{SandboxFaults, SandboxGateway, SandboxPayError, SandboxTrade, SandboxTradeState};
use chrono::{DateTime, Utc};
use entities::{MinorUnit, PayNo};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PayQuery {
    /// `false` pays without notifying: a lost callback.
    notify: Option<bool>,
    /// Pay this many minor units instead of the trade's amount (an amount mismatch).
    #[param(minimum = 1)]
    amount: Option<i64>,
}

/// A trade in the sandbox's book, as the sandbox provider sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeResponse {
    /// The payment attempt's `pay_no`.
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    out_trade_no: PayNo,
    #[schema(value_type = i64, minimum = 0)]
    amount: MinorUnit,
    currency: String,
    subject: String,
    trade_state: TradeState,
    transaction_id: Option<String>,
    created_at: DateTime<Utc>,
    time_expire: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    /// How many times paywarden queried this trade.
    query_count: u32,
    /// How many times paywarden asked to close it.
    close_count: u32,
    /// The refunds the sandbox made of it (each refund number once), oldest first.
    refunds: Vec<SandboxRefundResponse>,
}

/// A refund the sandbox made.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxRefundResponse {
    /// paywarden's `refund_no`.
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    out_refund_no: entities::RefundNo,
    refund_id: String,
    #[schema(value_type = i64, minimum = 1)]
    amount: MinorUnit,
    refunded_at: DateTime<Utc>,
}

/// The sandbox's own trade states, named like a real provider's.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeState {
    Notpay,
    Success,
    Closed,
}

impl From<SandboxTrade> for TradeResponse {
    fn from(trade: SandboxTrade) -> Self {
        Self {
            out_trade_no: trade.out_trade_no,
            amount: trade.amount,
            currency: trade.currency,
            subject: trade.subject,
            trade_state: match trade.trade_state {
                SandboxTradeState::Notpay => TradeState::Notpay,
                SandboxTradeState::Success => TradeState::Success,
                SandboxTradeState::Closed => TradeState::Closed,
            },
            transaction_id: trade.transaction_id,
            created_at: trade.created_at,
            time_expire: trade.time_expire,
            paid_at: trade.paid_at,
            query_count: trade.query_count,
            close_count: trade.close_count,
            refunds: Vec::new(),
        }
    }
}

/// The faults every sandbox API call suffers from now on.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum FaultsBody {
    /// Calls behave.
    None,
    /// Every call answers a retryable system error.
    Error,
    /// Every call hangs this long before answering.
    Timeout { delay_ms: u64 },
}

impl From<FaultsBody> for SandboxFaults {
    fn from(body: FaultsBody) -> Self {
        match body {
            FaultsBody::None => SandboxFaults::None,
            FaultsBody::Error => SandboxFaults::Error,
            FaultsBody::Timeout { delay_ms } => SandboxFaults::Timeout { delay_ms },
        }
    }
}

impl From<SandboxFaults> for FaultsBody {
    fn from(faults: SandboxFaults) -> Self {
        match faults {
            SandboxFaults::None => FaultsBody::None,
            SandboxFaults::Error => FaultsBody::Error,
            SandboxFaults::Timeout { delay_ms } => FaultsBody::Timeout { delay_ms },
        }
    }
}

fn parse_pay_no(raw: &str) -> Result<PayNo, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("trade"))
}

/// The sandbox that holds `pay_no`'s trade: a merchant's sandbox account's when the attempt was
/// started there, else the deployment's own.
async fn sandbox_of(
    state: &AppState,
    deployment: &Arc<SandboxGateway>,
    pay_no: PayNo,
) -> Result<Arc<SandboxGateway>, ApiError> {
    let route = state.engine.trade_route(pay_no).await?;
    let Some(account) = route
        .filter(|route| route.provider == entities::Provider::Sandbox)
        .and_then(|route| route.account)
    else {
        return Ok(deployment.clone());
    };
    let gateway: Arc<dyn std::any::Any + Send + Sync> = state
        .accounts
        .gateway(entities::Provider::Sandbox, &account)
        .await
        .map_err(|_| ApiError::NotFound("trade"))?;
    gateway
        .downcast::<SandboxGateway>()
        .map_err(|_| ApiError::NotFound("trade"))
}

/// `POST /sandbox/trades/{pay_no}/pay[?notify=false][&amount=N]`.
#[utoipa::path(
    post,
    path = "/sandbox/trades/{pay_no}/pay",
    tag = "sandbox",
    operation_id = "sandbox_pay",
    summary = "Play the buyer: pay a sandbox trade",
    description = "The trade of a merchant's sandbox account is paid in that account's sandbox, which notifies `/webhooks/sandbox/{account_id}`. The sandbox then sends its signed notification to `/webhooks/sandbox` (unless `notify=false`: a lost callback). Paying a paid trade again answers it and notifies again. Open in the development profile; elsewhere behind the admin token.",
    params(("pay_no" = String, Path, description = "The payment attempt's number (the trade's `out_trade_no`)"), PayQuery),
    responses((status = 200, description = "The trade, paid", body = TradeResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found", "trade_not_payable"]))),
)]
pub async fn pay(
    state: web::Data<AppState>,
    sandbox: web::Data<Arc<SandboxGateway>>,
    pay_no: web::Path<String>,
    params: web::Query<PayQuery>,
) -> Result<HttpResponse, ApiError> {
    let pay_no = parse_pay_no(&pay_no)?;
    let sandbox = sandbox_of(&state, &sandbox, pay_no).await?;
    let notify = params.notify.unwrap_or(true);
    let amount = params
        .amount
        .map(|amount| {
            entities::MinorUnit::new(amount)
                .ok()
                .filter(|amount| *amount != entities::MinorUnit::ZERO)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "amount must be a positive integer of minor units")
                })
        })
        .transpose()?;
    let trade = sandbox.pay(pay_no, notify, amount).map_err(|err| match err {
        SandboxPayError::NotFound(_) => ApiError::NotFound("trade"),
        SandboxPayError::Closed(_) | SandboxPayError::Expired(_) => ApiError::BadRequest {
            status: actix_web::http::StatusCode::CONFLICT,
            code: "trade_not_payable",
            message: err.to_string(),
        },
    })?;
    tracing::info!(%pay_no, notify, "sandbox buyer paid");
    Ok(HttpResponse::Ok().json(TradeResponse::from(trade)))
}

/// `GET /sandbox/trades/{pay_no}`: the trade as the sandbox provider sees it.
#[utoipa::path(
    get,
    path = "/sandbox/trades/{pay_no}",
    tag = "sandbox",
    operation_id = "sandbox_get_trade",
    summary = "Read a sandbox trade",
    params(("pay_no" = String, Path, description = "The payment attempt's number (the trade's `out_trade_no`)")),
    responses((status = 200, description = "The trade", body = TradeResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["not_found"]))),
)]
pub async fn get_trade(
    state: web::Data<AppState>,
    sandbox: web::Data<Arc<SandboxGateway>>,
    pay_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let pay_no = parse_pay_no(&pay_no)?;
    let sandbox = sandbox_of(&state, &sandbox, pay_no).await?;
    let trade = sandbox.trade(pay_no).ok_or(ApiError::NotFound("trade"))?;
    let mut answer = TradeResponse::from(trade);
    answer.refunds = sandbox
        .refunds_of(pay_no)
        .into_iter()
        .map(|refund| SandboxRefundResponse {
            out_refund_no: refund.out_refund_no,
            refund_id: refund.refund_id,
            amount: refund.amount,
            refunded_at: refund.refunded_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(answer))
}

/// `PUT /sandbox/faults` with `{"mode":"none"}`, `{"mode":"error"}` or
/// `{"mode":"timeout","delay_ms":5000}`.
#[utoipa::path(
    put,
    path = "/sandbox/faults",
    tag = "sandbox",
    operation_id = "sandbox_put_faults",
    summary = "Make the sandbox provider fail",
    description = "Every sandbox API call from now on answers a retryable error, or hangs, until the mode is set back to `none`.",
    request_body = FaultsBody,
    responses((status = 200, description = "The faults now in force", body = FaultsBody)),
    security(("admin_token" = [])),
)]
pub async fn put_faults(sandbox: web::Data<Arc<SandboxGateway>>, body: web::Json<FaultsBody>) -> HttpResponse {
    let faults = SandboxFaults::from(body.into_inner());
    sandbox.set_faults(faults);
    tracing::warn!(?faults, "sandbox faults set");
    HttpResponse::Ok().json(FaultsBody::from(faults))
}
