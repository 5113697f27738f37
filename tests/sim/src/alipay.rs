//! The simulated Alipay gateway: `POST /gateway.do` with `alipay.trade.precreate`, `.query`,
//! `.close`, and the refund methods of [`crate::refunds`].
//!
//! Parameters are read from the query string and the form body (the SDKs split them), each
//! decoded once; the merchant's `RSA2` signature is checked over all of them but `sign`. Every
//! answer, errors included, is `{"<method>_response":{...},"sign":"..."}` signed over the
//! node's exact text, with `/` escaped as `\/` as Alipay writes it, so clients that
//! re-serialize before verifying fail here as they would in production.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::gateway::alipay::crypto as alipay_crypto;
use actors::gateway::alipay::transformers::{
    format_china_datetime, parse_china_datetime, AlipayAmount, AlipayPrecreateBiz, AlipayTradeBiz,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entities::MinorUnit;
use serde_json::{json, Value};

use crate::book::{FaultAction, SimProvider, SimState, SimTrade, SimTradeState};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/gateway.do", web::post().to(gateway));
}

pub(crate) fn failure(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg})
}

/// Signs `node` as the value of `node_name` and writes the envelope.
async fn respond(state: &SimState, node_name: &str, node: &Value) -> HttpResponse {
    // Alipay escapes '/' as '\/'. Outside strings JSON has no '/', so replacing every one
    // keeps the text valid and equal in meaning.
    let content = node.to_string().replace('/', "\\/");
    let key = std::sync::Arc::clone(&state.keys.platform);
    let to_sign = content.clone().into_bytes();
    // RSA signing is CPU work: on the blocking pool, not the server's worker thread.
    let sign = match web::block(move || key.sign(&to_sign)).await {
        Ok(Ok(sign)) => sign,
        Ok(Err(err)) => {
            tracing::error!(error.message = %err, "simulator failed to sign a response");
            return HttpResponse::InternalServerError().finish();
        }
        Err(err) => {
            tracing::error!(error.message = %err, "simulator signing task failed");
            return HttpResponse::InternalServerError().finish();
        }
    };
    let body = format!("{{\"{node_name}\":{content},\"sign\":\"{sign}\"}}");
    HttpResponse::Ok()
        .content_type("application/json;charset=utf-8")
        .body(body)
}

async fn gateway(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(form) => params.extend(form),
        Err(_) => {
            let node = failure("40002", "Invalid Arguments", "isv.invalid-parameter", "表单无法解析");
            return respond(&state, "error_response", &node).await;
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let method = param("method").unwrap_or_default();
    let node_name = if method.is_empty() {
        "error_response".to_owned()
    } else {
        alipay_crypto::response_node(&method)
    };
    match state.roll_faults().await {
        FaultAction::SystemError => {
            let node = failure("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙");
            return respond(&state, &node_name, &node).await;
        }
        FaultAction::Proceed => {}
    }
    if alipay_crypto::verify_params(&state.keys.merchant, &params, alipay_crypto::REQUEST_EXCLUDED).is_err() {
        tracing::info!(%method, "simulator refused an alipay request signature");
        let node = failure("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错");
        return respond(&state, &node_name, &node).await;
    }
    if param("app_id").as_deref() != Some(state.config.alipay_app_id.as_str()) {
        let node = failure("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数");
        return respond(&state, &node_name, &node).await;
    }
    if param("sign_type").as_deref() != Some("RSA2") {
        let node = failure(
            "40002",
            "Invalid Arguments",
            "isv.invalid-signature-type",
            "无效的签名类型",
        );
        return respond(&state, &node_name, &node).await;
    }
    let biz_content = param("biz_content").unwrap_or_default();
    let node = match method.as_str() {
        "alipay.trade.precreate" => precreate(&state, &biz_content, param("notify_url")),
        "alipay.trade.query" => query(&state, &biz_content),
        "alipay.trade.close" => close(&state, &biz_content),
        "alipay.trade.refund" => crate::refunds::alipay_refund(&state, &biz_content).await,
        "alipay.trade.fastpay.refund.query" => crate::refunds::alipay_refund_query(&state, &biz_content),
        "alipay.data.dataservice.bill.downloadurl.query" => {
            crate::bills::alipay_bill_url(&state, &biz_content, req.connection_info().host())
        }
        _ => failure("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名"),
    };
    respond(&state, &node_name, &node).await
}

pub(crate) fn bad_biz(what: &str) -> Value {
    failure("40002", "Invalid Arguments", "isv.invalid-parameter", what)
}

pub(crate) fn not_exist(out_trade_no: &str) -> Value {
    let mut node = failure("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在");
    node["out_trade_no"] = json!(out_trade_no);
    node
}

/// `15m`, `2h`, `3d` (and `1c`, "until midnight", read as a day).
fn parse_timeout_express(text: &str) -> Option<ChronoDuration> {
    let (index, unit) = text.char_indices().last()?;
    let number: i64 = text.get(..index)?.parse().ok()?;
    match unit {
        'm' => Some(ChronoDuration::minutes(number)),
        'h' => Some(ChronoDuration::hours(number)),
        'd' | 'c' => Some(ChronoDuration::days(number)),
        _ => None,
    }
}

fn precreate(state: &SimState, biz_content: &str, notify_url: Option<String>) -> Value {
    let biz: AlipayPrecreateBiz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    let amount = biz.total_amount.minor();
    if amount == MinorUnit::ZERO {
        return bad_biz("total_amount must be at least 0.01");
    }
    let now = Utc::now();
    let time_expire: Option<DateTime<Utc>> = match (&biz.time_expire, &biz.timeout_express) {
        (Some(at), _) => match parse_china_datetime(at) {
            Some(at) => Some(at),
            None => return bad_biz("time_expire is not yyyy-MM-dd HH:mm:ss"),
        },
        (None, Some(relative)) => match parse_timeout_express(relative) {
            Some(after) => Some(now + after),
            None => return bad_biz("timeout_express is invalid"),
        },
        (None, None) => None,
    };
    let key = (SimProvider::Alipay, biz.out_trade_no.clone());
    let mut book = state.book();
    let qr_code = match book.get_mut(&key) {
        Some(existing) => {
            existing.refresh(now);
            match existing.state {
                SimTradeState::Success => {
                    return failure("40004", "Business Failed", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                }
                SimTradeState::Closed => {
                    return failure("40004", "Business Failed", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                }
                SimTradeState::Notpay => existing.code_url.clone(),
            }
        }
        None => {
            let qr_code = format!("https://qr.alipay.com/sim{}", state.next_id(""));
            book.insert(
                key,
                SimTrade {
                    provider: SimProvider::Alipay,
                    out_trade_no: biz.out_trade_no.clone(),
                    amount_fen: amount.get(),
                    subject: biz.subject.clone(),
                    notify_url: notify_url.unwrap_or_default(),
                    code_url: qr_code.clone(),
                    state: SimTradeState::Notpay,
                    scanned: false,
                    provider_trade_no: None,
                    created_at: now,
                    time_expire,
                    paid_at: None,
                    query_count: 0,
                    close_count: 0,
                    notifications_sent: 0,
                    notifications_acknowledged: 0,
                    pays_at_close: false,
                },
            );
            qr_code
        }
    };
    json!({"code": "10000", "msg": "Success", "out_trade_no": biz.out_trade_no, "qr_code": qr_code})
}

fn trade_status(state: SimTradeState) -> &'static str {
    match state {
        SimTradeState::Notpay => "WAIT_BUYER_PAY",
        SimTradeState::Success => "TRADE_SUCCESS",
        SimTradeState::Closed => "TRADE_CLOSED",
    }
}

/// Also the amount format of notifications.
pub(crate) fn yuan(fen: i64) -> String {
    MinorUnit::new(fen)
        .map(|amount| AlipayAmount::from_minor(amount).to_string())
        .unwrap_or_default()
}

fn query(state: &SimState, biz_content: &str) -> Value {
    let biz: AlipayTradeBiz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    let mut book = state.book();
    let Some(trade) = book.get_mut(&(SimProvider::Alipay, biz.out_trade_no.clone())) else {
        return not_exist(&biz.out_trade_no);
    };
    trade.refresh(Utc::now());
    trade.query_count = trade.query_count.saturating_add(1);
    if !trade.scanned {
        return not_exist(&biz.out_trade_no);
    }
    let mut node = json!({
        "code": "10000",
        "msg": "Success",
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.provider_trade_no,
        "trade_status": trade_status(trade.state),
        "total_amount": yuan(trade.amount_fen),
        "buyer_logon_id": "sim***@example.com",
    });
    if let Some(paid_at) = trade.paid_at {
        node["send_pay_date"] = json!(format_china_datetime(paid_at));
        node["buyer_pay_amount"] = json!(yuan(trade.amount_fen));
        node["receipt_amount"] = json!(yuan(trade.amount_fen));
    }
    node
}

fn close(state: &SimState, biz_content: &str) -> Value {
    let biz: AlipayTradeBiz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    let mut book = state.book();
    let Some(trade) = book.get_mut(&(SimProvider::Alipay, biz.out_trade_no.clone())) else {
        return not_exist(&biz.out_trade_no);
    };
    let now = Utc::now();
    trade.refresh(now);
    trade.close_count = trade.close_count.saturating_add(1);
    state.race_close(trade, now);
    if !trade.scanned {
        return not_exist(&biz.out_trade_no);
    }
    match trade.state {
        SimTradeState::Notpay => {
            trade.state = SimTradeState::Closed;
            json!({"code": "10000", "msg": "Success", "out_trade_no": trade.out_trade_no, "trade_no": trade.provider_trade_no})
        }
        SimTradeState::Success | SimTradeState::Closed => {
            failure("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        }
    }
}
