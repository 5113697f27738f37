//! The simulated WeChat Pay API v3 endpoints: Native prepay, query by `out_trade_no`, close.
//!
//! Requests are checked like WeChat does (scheme, mchid, merchant serial, five-minute
//! timestamp window, SHA256withRSA over the exact path, query and body) and refused with
//! `401 SIGN_ERROR` without signature headers. Successful answers are signed with the
//! platform key; 4xx errors are not, as observed on the real API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::gateway::wechat::crypto;
use actors::gateway::wechat::transformers::{
    rfc3339_china, WechatCloseRequest, WechatErrorBody, WechatNativeRequest, WechatNativeResponse, WechatTradeState,
    WechatTransaction, WechatTransactionAmount,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::book::{FaultAction, SimProvider, SimState, SimTrade, SimTradeState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/pay/transactions/native", web::post().to(native))
        .route("/v3/pay/transactions/out-trade-no/{no}", web::get().to(query))
        .route("/v3/pay/transactions/out-trade-no/{no}/close", web::post().to(close));
}

/// An unsigned error in WeChat's shape.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(WechatErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
        detail: None,
    })
}

pub(crate) fn system_error() -> HttpResponse {
    error(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误")
}

/// A success answer signed over `ts\nnonce\nbody\n` with the platform key.
pub(crate) async fn signed(state: &SimState, status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let timestamp = Utc::now().timestamp().to_string();
    let nonce = crypto::new_nonce();
    let message = crypto::response_message(&timestamp, &nonce, &body);
    let key = std::sync::Arc::clone(&state.keys.platform);
    // RSA signing is CPU work: on the blocking pool, not the server's worker thread.
    let signature = match web::block(move || key.sign(&message)).await {
        Ok(Ok(signature)) => signature,
        Ok(Err(err)) => {
            tracing::error!(error.message = %err, "simulator failed to sign a response");
            return system_error();
        }
        Err(err) => {
            tracing::error!(error.message = %err, "simulator signing task failed");
            return system_error();
        }
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header(("Wechatpay-Timestamp", timestamp))
        .insert_header(("Wechatpay-Nonce", nonce))
        .insert_header(("Wechatpay-Signature", signature))
        .insert_header(("Wechatpay-Serial", state.keys.platform_serial.clone()))
        .insert_header(("Request-ID", uuid::Uuid::new_v4().simple().to_string()));
    if body.is_empty() {
        response.finish()
    } else {
        response.content_type("application/json").body(body)
    }
}

/// Checks the merchant's `Authorization` over the request as received; `Some` is the refusal
/// to send back.
fn verify_merchant(state: &SimState, req: &HttpRequest, body: &[u8]) -> Option<HttpResponse> {
    let refuse = |why: &str| {
        tracing::info!(reason = why, "simulator refused a wechat request signature");
        Some(error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", why))
    };
    let Some(header) = req.headers().get("authorization").and_then(|value| value.to_str().ok()) else {
        return refuse("missing Authorization");
    };
    let Some(auth) = crypto::parse_authorization(header) else {
        return refuse("Authorization is not WECHATPAY2-SHA256-RSA2048");
    };
    if auth.mchid != state.config.wechat_mchid {
        return refuse("mchid does not match");
    }
    if auth.serial_no != state.config.wechat_merchant_serial_no {
        return refuse("serial_no is not the merchant certificate serial");
    }
    if crypto::check_timestamp(&auth.timestamp, Utc::now()).is_err() {
        return refuse("timestamp is more than 5 minutes from now");
    }
    let Ok(timestamp) = auth.timestamp.parse::<i64>() else {
        return refuse("timestamp is not a number");
    };
    let path_and_query = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or_default();
    let message = crypto::request_message(req.method().as_str(), path_and_query, timestamp, &auth.nonce, body);
    if state.keys.merchant.verify(&message, &auth.signature).is_err() {
        return refuse("signature does not verify");
    }
    None
}

/// Fault roll plus signature check, shared by every endpoint; `Some` is the answer to give
/// instead of serving the call.
pub(crate) async fn admit(state: &SimState, req: &HttpRequest, body: &[u8]) -> Option<HttpResponse> {
    match state.roll_faults().await {
        FaultAction::SystemError => return Some(system_error()),
        FaultAction::Proceed => {}
    }
    verify_merchant(state, req, body)
}

async fn native(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &body).await {
        return response;
    }
    let order: WechatNativeRequest = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(err) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", &err.to_string()),
    };
    if order.mchid != state.config.wechat_mchid || order.appid != state.config.wechat_appid {
        return error(StatusCode::BAD_REQUEST, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配");
    }
    if order.amount.total <= 0 || order.amount.currency != "CNY" {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "amount is invalid");
    }
    let time_expire = match DateTime::parse_from_rfc3339(&order.time_expire) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "time_expire is not RFC 3339"),
    };
    let key = (SimProvider::Wechat, order.out_trade_no.clone());
    let code_url = {
        let mut book = state.book();
        match book.get(&key) {
            // Re-calling with the same order before it expires gives the same code_url.
            Some(existing) if existing.amount_fen == order.amount.total && existing.state == SimTradeState::Notpay => {
                existing.code_url.clone()
            }
            Some(_) => return error(StatusCode::BAD_REQUEST, "OUT_TRADE_NO_USED", "商户订单号重复"),
            None => {
                let code_url = format!(
                    "weixin://wxpay/bizpayurl?pr={}",
                    crypto::new_nonce().get(..9).unwrap_or("sim")
                );
                book.insert(
                    key,
                    SimTrade {
                        provider: SimProvider::Wechat,
                        out_trade_no: order.out_trade_no.clone(),
                        amount_fen: order.amount.total,
                        subject: order.description.clone(),
                        notify_url: order.notify_url.clone(),
                        code_url: code_url.clone(),
                        state: SimTradeState::Notpay,
                        scanned: true,
                        provider_trade_no: None,
                        created_at: Utc::now(),
                        time_expire,
                        paid_at: None,
                        query_count: 0,
                        close_count: 0,
                        notifications_sent: 0,
                        notifications_acknowledged: 0,
                        pays_at_close: false,
                    },
                );
                code_url
            }
        }
    };
    match serde_json::to_vec(&WechatNativeResponse { code_url }) {
        Ok(body) => signed(&state, StatusCode::OK, body).await,
        Err(_) => system_error(),
    }
}

/// The transaction JSON the query answers and the notification encrypts.
pub(crate) fn transaction(state: &SimState, trade: &SimTrade) -> WechatTransaction {
    let trade_state = match trade.state {
        SimTradeState::Notpay => WechatTradeState::Notpay,
        SimTradeState::Success => WechatTradeState::Success,
        SimTradeState::Closed => WechatTradeState::Closed,
    };
    WechatTransaction {
        appid: Some(state.config.wechat_appid.clone()),
        mchid: Some(state.config.wechat_mchid.clone()),
        out_trade_no: trade.out_trade_no.clone(),
        transaction_id: trade.provider_trade_no.clone(),
        trade_state,
        trade_state_desc: Some(
            match trade.state {
                SimTradeState::Notpay => "订单未支付",
                SimTradeState::Success => "支付成功",
                SimTradeState::Closed => "订单已关闭",
            }
            .to_owned(),
        ),
        success_time: trade.paid_at.map(rfc3339_china),
        amount: Some(WechatTransactionAmount {
            total: Some(trade.amount_fen),
            payer_total: (trade.state == SimTradeState::Success).then_some(trade.amount_fen),
            currency: Some("CNY".into()),
            payer_currency: Some("CNY".into()),
        }),
    }
}

#[derive(Deserialize)]
struct QueryParams {
    mchid: String,
}

async fn query(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<QueryParams>,
) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &[]).await {
        return response;
    }
    if params.mchid != state.config.wechat_mchid {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid does not match");
    }
    let found = {
        let mut book = state.book();
        book.get_mut(&(SimProvider::Wechat, path.into_inner())).map(|trade| {
            trade.refresh(Utc::now());
            trade.query_count = trade.query_count.saturating_add(1);
            trade.clone()
        })
    };
    let Some(trade) = found else {
        return error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
    };
    match serde_json::to_vec(&transaction(&state, &trade)) {
        Ok(body) => signed(&state, StatusCode::OK, body).await,
        Err(_) => system_error(),
    }
}

/// How a close went, decided under the book lock.
enum CloseDecision {
    Closed,
    NotFound,
    Paid,
    TooEarly { wait_seconds: u64 },
}

async fn close(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &body).await {
        return response;
    }
    match serde_json::from_slice::<WechatCloseRequest>(&body) {
        Ok(close) if close.mchid == state.config.wechat_mchid => {}
        Ok(_) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid does not match"),
        Err(err) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", &err.to_string()),
    }
    let decision = {
        let now = Utc::now();
        let mut book = state.book();
        match book.get_mut(&(SimProvider::Wechat, path.into_inner())) {
            None => CloseDecision::NotFound,
            Some(trade) => {
                trade.refresh(now);
                trade.close_count = trade.close_count.saturating_add(1);
                state.race_close(trade, now);
                let age_seconds = u64::try_from((now - trade.created_at).num_seconds()).unwrap_or(0);
                match trade.state {
                    SimTradeState::Success => CloseDecision::Paid,
                    SimTradeState::Notpay | SimTradeState::Closed
                        if age_seconds < state.config.close_too_early_seconds =>
                    {
                        CloseDecision::TooEarly {
                            wait_seconds: state.config.close_too_early_seconds.saturating_sub(age_seconds),
                        }
                    }
                    SimTradeState::Notpay | SimTradeState::Closed => {
                        trade.state = SimTradeState::Closed;
                        CloseDecision::Closed
                    }
                }
            }
        }
    };
    match decision {
        CloseDecision::Closed => signed(&state, StatusCode::NO_CONTENT, Vec::new()).await,
        CloseDecision::NotFound => error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
        CloseDecision::Paid => error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付"),
        CloseDecision::TooEarly { wait_seconds } => {
            let mut response = error(StatusCode::FORBIDDEN, "RULE_LIMIT", "订单创建后5分钟内不可关单");
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&wait_seconds.max(1).to_string()) {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
    }
}
