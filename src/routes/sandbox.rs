//! Routes of the built-in sandbox provider: play the buyer, look at a trade, inject faults.
//! They stand in for the provider's own app and servers, so they take no client key; they are
//! mounted only when the sandbox is enabled (never in the production profile by default).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use actors::gateway::sandbox::{SandboxFaults, SandboxGateway, SandboxPayError};
use entities::PayNo;
use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayQuery {
    /// `false` pays without notifying: a lost callback.
    notify: Option<bool>,
    /// Pay this many minor units instead of the trade's amount (an amount mismatch).
    amount: Option<i64>,
}

fn parse_pay_no(raw: &str) -> Result<PayNo, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("trade"))
}

/// `POST /sandbox/trades/{pay_no}/pay[?notify=false][&amount=N]`.
pub async fn pay(
    sandbox: web::Data<Arc<SandboxGateway>>,
    pay_no: web::Path<String>,
    params: web::Query<PayQuery>,
) -> Result<HttpResponse, ApiError> {
    let pay_no = parse_pay_no(&pay_no)?;
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
    Ok(HttpResponse::Ok().json(trade))
}

/// `GET /sandbox/trades/{pay_no}`: the trade as the sandbox provider sees it.
pub async fn get_trade(
    sandbox: web::Data<Arc<SandboxGateway>>,
    pay_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let pay_no = parse_pay_no(&pay_no)?;
    let trade = sandbox.trade(pay_no).ok_or(ApiError::NotFound("trade"))?;
    Ok(HttpResponse::Ok().json(trade))
}

/// `PUT /sandbox/faults` with `{"mode":"none"}`, `{"mode":"error"}` or
/// `{"mode":"timeout","delay_ms":5000}`.
pub async fn put_faults(sandbox: web::Data<Arc<SandboxGateway>>, body: web::Json<SandboxFaults>) -> HttpResponse {
    let faults = body.into_inner();
    sandbox.set_faults(faults);
    tracing::warn!(?faults, "sandbox faults set");
    HttpResponse::Ok().json(faults)
}
