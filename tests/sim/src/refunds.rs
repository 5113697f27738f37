//! Simulated refunds: WeChat Pay `POST /v3/refund/domestic/refunds`,
//! `GET /v3/refund/domestic/refunds/{out_refund_no}` and `REFUND.*` notifications; Alipay
//! `alipay.trade.refund` and `alipay.trade.fastpay.refund.query` (dispatched from
//! `alipay::gateway`).
//!
//! Like the providers, a refund number refunds once: the same number again answers the refund
//! made (WeChat: the refund as it is; Alipay: `fund_change` `N`, money moved before), with
//! other content it is refused. Refunds of a trade never exceed what it took.
//!
//! Behaviour is switched with `PUT /sim/refund-behaviour` ([`SimRefundBehaviour`]): refunds
//! succeed at once (default), stay processing until `POST /sim/{provider}/refunds/{no}/complete`,
//! are refused (balance too low), or are made and then answered only after a hang (a timeout
//! at the client: the refund exists, the answer is lost).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::gateway::alipay::transformers::{format_china_datetime, AlipayRefundBiz, AlipayRefundQueryBiz};
use actors::gateway::wechat::crypto;
use actors::gateway::wechat::transformers::{
    rfc3339_china, WechatEncryptedResource, WechatNotification, WechatRefund, WechatRefundAmount, WechatRefundRequest,
    WechatRefundResource, WechatRefundStatus, EVENT_REFUND_ABNORMAL, EVENT_REFUND_CLOSED, EVENT_REFUND_SUCCESS,
    RESOURCE_ALGORITHM,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::alipay::{bad_biz, failure, not_exist, yuan};
use crate::book::{lock, SimProvider, SimState, SimTradeState};
use crate::notify::WECHAT_RETRY_SECONDS;
use crate::wechat::{admit, error, signed, system_error};

/// A refund's state, named as WeChat names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimRefundStatus {
    Processing,
    Success,
    Closed,
    Abnormal,
}

/// One refund, as `GET /sim/{provider}/refunds/{no}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimRefund {
    pub provider: SimProvider,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub amount_fen: i64,
    pub reason: Option<String>,
    pub status: SimRefundStatus,
    pub created_at: DateTime<Utc>,
    pub success_time: Option<DateTime<Utc>>,
    pub notify_url: Option<String>,
    /// Refund calls with this number, the first included.
    pub requests: u32,
    pub queries: u32,
    /// Notification attempts sent.
    pub notifications_sent: u32,
}

/// How the next refunds behave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimRefundBehaviour {
    pub mode: SimRefundMode,
    /// Every refund call (the first, which makes the refund, and any repeat of its number) is
    /// answered only after this long, longer than the client waits: the outcome is lost to the
    /// caller, who can learn it only by querying. Queries are answered at once.
    pub hang_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRefundMode {
    /// Refunded at once.
    #[default]
    Succeed,
    /// Accepted, `PROCESSING` until completed through the control route.
    Processing,
    /// Refused: the merchant's balance is too low (WeChat `NOT_ENOUGH`, Alipay
    /// `ACQ.SELLER_BALANCE_NOT_ENOUGH`). Nothing is made.
    Refuse,
    /// Accepted, then closed at once without moving money (WeChat `CLOSED`); Alipay, which has
    /// no such state, refuses instead.
    Close,
}

/// What a refund call decided, under the locks.
enum Decision {
    Made(SimRefund, bool),
    TradeNotFound,
    TradeNotPaid,
    Discordant,
    Exceeds,
    Refused,
}

impl SimState {
    pub fn refund(&self, provider: SimProvider, out_refund_no: &str) -> Option<SimRefund> {
        lock(&self.refunds).get(&(provider, out_refund_no.to_owned())).cloned()
    }

    /// Every refund of both providers.
    pub fn all_refunds(&self) -> Vec<SimRefund> {
        lock(&self.refunds).values().cloned().collect()
    }

    pub fn set_refund_behaviour(&self, behaviour: SimRefundBehaviour) {
        *lock(&self.refund_behaviour) = behaviour;
    }

    fn behaviour(&self) -> SimRefundBehaviour {
        *lock(&self.refund_behaviour)
    }

    /// Makes (or finds) refund `out_refund_no` of `out_trade_no`. The second value of `Made`
    /// says whether this call created it.
    fn make_refund(
        &self,
        provider: SimProvider,
        out_trade_no: &str,
        out_refund_no: &str,
        amount_fen: i64,
        reason: Option<String>,
        notify_url: Option<String>,
    ) -> Decision {
        let now = Utc::now();
        let book = self.book();
        let mut refunds = lock(&self.refunds);
        let key = (provider, out_refund_no.to_owned());
        if let Some(existing) = refunds.get_mut(&key) {
            if existing.out_trade_no != out_trade_no || existing.amount_fen != amount_fen {
                return Decision::Discordant;
            }
            existing.requests = existing.requests.saturating_add(1);
            return Decision::Made(existing.clone(), false);
        }
        let Some(trade) = book.get(&(provider, out_trade_no.to_owned())) else {
            return Decision::TradeNotFound;
        };
        if trade.state != SimTradeState::Success {
            return Decision::TradeNotPaid;
        }
        let refunded: i64 = refunds
            .values()
            .filter(|refund| {
                refund.provider == provider
                    && refund.out_trade_no == out_trade_no
                    && !matches!(refund.status, SimRefundStatus::Closed | SimRefundStatus::Abnormal)
            })
            .map(|refund| refund.amount_fen)
            .sum();
        if amount_fen <= 0 || refunded.saturating_add(amount_fen) > trade.amount_fen {
            return Decision::Exceeds;
        }
        let behaviour = self.behaviour();
        let status = match behaviour.mode {
            SimRefundMode::Refuse => return Decision::Refused,
            SimRefundMode::Succeed => SimRefundStatus::Success,
            SimRefundMode::Processing => SimRefundStatus::Processing,
            // Alipay has no closed refund: it refuses instead.
            SimRefundMode::Close if provider == SimProvider::Alipay => return Decision::Refused,
            SimRefundMode::Close => SimRefundStatus::Closed,
        };
        let refund = SimRefund {
            provider,
            out_refund_no: out_refund_no.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            refund_id: self.next_id(if provider == SimProvider::Wechat {
                "5030"
            } else {
                "2088r"
            }),
            amount_fen,
            reason,
            status,
            created_at: now,
            success_time: (status == SimRefundStatus::Success).then_some(now),
            notify_url,
            requests: 1,
            queries: 0,
            notifications_sent: 0,
        };
        refunds.insert(key, refund.clone());
        tracing::info!(
            ?provider,
            out_trade_no,
            out_refund_no,
            amount_fen,
            ?status,
            "simulated refund made"
        );
        Decision::Made(refund, true)
    }

    /// Moves a processing (or abnormal) refund to `status` (the control route).
    ///
    /// # Errors
    /// A message when the refund does not exist or is final.
    pub fn complete_refund(
        &self,
        provider: SimProvider,
        out_refund_no: &str,
        status: SimRefundStatus,
    ) -> Result<SimRefund, String> {
        let mut refunds = lock(&self.refunds);
        let refund = refunds
            .get_mut(&(provider, out_refund_no.to_owned()))
            .ok_or_else(|| format!("no refund {out_refund_no}"))?;
        // ABNORMAL is not final either: the merchant platform sends the money on by hand.
        if !matches!(refund.status, SimRefundStatus::Processing | SimRefundStatus::Abnormal) {
            return Err(format!("refund {out_refund_no} is already {:?}", refund.status));
        }
        refund.status = status;
        if status == SimRefundStatus::Success {
            refund.success_time = Some(Utc::now());
        }
        Ok(refund.clone())
    }

    fn query_refund(&self, provider: SimProvider, out_refund_no: &str) -> Option<SimRefund> {
        let mut refunds = lock(&self.refunds);
        refunds.get_mut(&(provider, out_refund_no.to_owned())).map(|refund| {
            refund.queries = refund.queries.saturating_add(1);
            refund.clone()
        })
    }

    fn trade_amount(&self, provider: SimProvider, out_trade_no: &str) -> Option<(i64, Option<String>)> {
        self.book()
            .get(&(provider, out_trade_no.to_owned()))
            .map(|trade| (trade.amount_fen, trade.provider_trade_no.clone()))
    }
}

pub(crate) fn wechat_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/refund/domestic/refunds", web::post().to(wechat_refund))
        .route("/v3/refund/domestic/refunds/{no}", web::get().to(wechat_query));
}

fn wechat_body(state: &SimState, refund: &SimRefund) -> WechatRefund {
    let (total, transaction_id) = state
        .trade_amount(SimProvider::Wechat, &refund.out_trade_no)
        .unwrap_or((refund.amount_fen, None));
    WechatRefund {
        refund_id: refund.refund_id.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        transaction_id,
        out_trade_no: Some(refund.out_trade_no.clone()),
        channel: Some("ORIGINAL".into()),
        user_received_account: Some("支付用户零钱".into()),
        success_time: refund.success_time.map(rfc3339_china),
        create_time: Some(rfc3339_china(refund.created_at)),
        status: wechat_status(refund.status),
        amount: Some(WechatRefundAmount {
            total: Some(total),
            refund: Some(refund.amount_fen),
            payer_total: Some(total),
            payer_refund: Some(refund.amount_fen),
            currency: Some("CNY".into()),
        }),
    }
}

fn wechat_status(status: SimRefundStatus) -> WechatRefundStatus {
    match status {
        SimRefundStatus::Processing => WechatRefundStatus::Processing,
        SimRefundStatus::Success => WechatRefundStatus::Success,
        SimRefundStatus::Closed => WechatRefundStatus::Closed,
        SimRefundStatus::Abnormal => WechatRefundStatus::Abnormal,
    }
}

async fn wechat_refund(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &body).await {
        return response;
    }
    let request: WechatRefundRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", &err.to_string()),
    };
    if request.amount.currency != "CNY" {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "amount.currency must be CNY");
    }
    match state.trade_amount(SimProvider::Wechat, &request.out_trade_no) {
        Some((total, _)) if total != request.amount.total => {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "amount.total does not match the order amount",
            )
        }
        _ => {}
    }
    let decision = state.make_refund(
        SimProvider::Wechat,
        &request.out_trade_no,
        &request.out_refund_no,
        request.amount.refund,
        request.reason.clone(),
        request.notify_url.clone(),
    );
    let refund = match decision {
        Decision::Made(refund, _) => refund,
        Decision::TradeNotFound => return error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"),
        Decision::TradeNotPaid => return error(StatusCode::FORBIDDEN, "TRADE_ERROR", "订单未支付"),
        Decision::Discordant => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "out_refund_no was used with other parameters",
            )
        }
        Decision::Exceeds => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "申请退款金额超过订单可退金额",
            )
        }
        Decision::Refused => return error(StatusCode::FORBIDDEN, "NOT_ENOUGH", "基本账户余额不足"),
    };
    hang_if_asked(&state).await;
    match serde_json::to_vec(&wechat_body(&state, &refund)) {
        Ok(body) => signed(&state, StatusCode::OK, body).await,
        Err(_) => system_error(),
    }
}

async fn wechat_query(state: web::Data<SimState>, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &[]).await {
        return response;
    }
    let Some(refund) = state.query_refund(SimProvider::Wechat, &path) else {
        return error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在");
    };
    match serde_json::to_vec(&wechat_body(&state, &refund)) {
        Ok(body) => signed(&state, StatusCode::OK, body).await,
        Err(_) => system_error(),
    }
}

/// A refund call made while `hang_ms` is set answers only after that long.
async fn hang_if_asked(state: &SimState) {
    let hang = state.behaviour().hang_ms;
    if hang > 0 {
        tracing::info!(hang_ms = hang, "simulated refund made; its answer hangs");
        tokio::time::sleep(Duration::from_millis(hang)).await;
    }
}

/// `alipay.trade.refund`.
pub(crate) async fn alipay_refund(state: &SimState, biz_content: &str) -> Value {
    let biz: AlipayRefundBiz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    let amount = biz.refund_amount.minor().get();
    let decision = state.make_refund(
        SimProvider::Alipay,
        &biz.out_trade_no,
        &biz.out_request_no,
        amount,
        biz.refund_reason.clone(),
        None,
    );
    let (refund, created) = match decision {
        Decision::Made(refund, created) => (refund, created),
        Decision::TradeNotFound => return not_exist(&biz.out_trade_no),
        Decision::TradeNotPaid => {
            return failure("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        }
        Decision::Discordant => {
            return failure(
                "40004",
                "Business Failed",
                "ACQ.DISCORDANT_REPEAT_REQUEST",
                "请求信息不一致",
            )
        }
        Decision::Exceeds => {
            return failure(
                "40004",
                "Business Failed",
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "退款金额超限",
            )
        }
        Decision::Refused => {
            return failure(
                "40004",
                "Business Failed",
                "ACQ.SELLER_BALANCE_NOT_ENOUGH",
                "卖家余额不足",
            )
        }
    };
    hang_if_asked(state).await;
    let (_, trade_no) = state
        .trade_amount(SimProvider::Alipay, &biz.out_trade_no)
        .unwrap_or((0, None));
    // Cumulative over the trade: what has gone back, this refund included once it is made.
    let refunded: i64 = state
        .all_refunds()
        .iter()
        .filter(|r| {
            r.provider == SimProvider::Alipay
                && r.out_trade_no == biz.out_trade_no
                && r.status == SimRefundStatus::Success
        })
        .map(|r| r.amount_fen)
        .sum();
    // `Y` only when this very call moved the money.
    let fund_change = if created && refund.status == SimRefundStatus::Success {
        "Y"
    } else {
        "N"
    };
    let mut node = json!({
        "code": "10000",
        "msg": "Success",
        "trade_no": trade_no,
        "out_trade_no": biz.out_trade_no,
        "buyer_logon_id": "sim***@example.com",
        "fund_change": fund_change,
        "refund_fee": yuan(refunded),
        "buyer_user_id": "2088000000000002",
    });
    if let Some(at) = refund.success_time {
        node["gmt_refund_pay"] = json!(format_china_datetime(at));
    }
    node
}

/// `alipay.trade.fastpay.refund.query`.
pub(crate) fn alipay_refund_query(state: &SimState, biz_content: &str) -> Value {
    let biz: AlipayRefundQueryBiz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    let Some((total, trade_no)) = state.trade_amount(SimProvider::Alipay, &biz.out_trade_no) else {
        return not_exist(&biz.out_trade_no);
    };
    let mut node = json!({
        "code": "10000",
        "msg": "Success",
        "trade_no": trade_no,
        "out_trade_no": biz.out_trade_no,
        "out_request_no": biz.out_request_no,
        "total_amount": yuan(total),
    });
    // Only a refund that was made has `refund_status`; otherwise the answer is the trade alone.
    if let Some(refund) = state
        .query_refund(SimProvider::Alipay, &biz.out_request_no)
        .filter(|refund| refund.out_trade_no == biz.out_trade_no && refund.status == SimRefundStatus::Success)
    {
        node["refund_amount"] = json!(yuan(refund.amount_fen));
        node["refund_status"] = json!("REFUND_SUCCESS");
        if biz.query_options.iter().any(|option| option == "gmt_refund_pay") {
            if let Some(at) = refund.success_time {
                node["gmt_refund_pay"] = json!(format_china_datetime(at));
            }
        }
    }
    node
}

/// Options of `POST /sim/{provider}/refunds/{no}/complete`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCompleteRefund {
    pub status: SimRefundStatus,
    /// Send WeChat's `REFUND.*` notification (Alipay sends none for refunds).
    #[serde(default = "yes")]
    pub notify: bool,
    /// Extra copies of the notification after the first acknowledged one (same event id).
    #[serde(default)]
    pub duplicate: u32,
}

fn yes() -> bool {
    true
}

pub(crate) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/refund-behaviour", web::put().to(put_behaviour))
        .route("/{provider}/refunds/{no}", web::get().to(get_refund))
        .route("/{provider}/refunds/{no}/complete", web::post().to(complete));
}

async fn put_behaviour(state: web::Data<SimState>, behaviour: web::Json<SimRefundBehaviour>) -> HttpResponse {
    state.set_refund_behaviour(behaviour.into_inner());
    HttpResponse::Ok().json(state.behaviour())
}

async fn get_refund(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    match state.refund(provider, &no) {
        Some(refund) => HttpResponse::Ok().json(refund),
        None => {
            HttpResponse::NotFound().json(json!({"error": {"code": "refund_not_found", "message": "no such refund"}}))
        }
    }
}

async fn complete(
    state: web::Data<SimState>,
    path: web::Path<(SimProvider, String)>,
    body: web::Json<SimCompleteRefund>,
) -> HttpResponse {
    let (provider, no) = path.into_inner();
    let options = body.into_inner();
    if options.status == SimRefundStatus::Processing {
        return HttpResponse::BadRequest()
            .json(json!({"error": {"code": "invalid_status", "message": "complete to SUCCESS, CLOSED or ABNORMAL"}}));
    }
    match state.complete_refund(provider, &no, options.status) {
        Ok(refund) => {
            if options.notify && provider == SimProvider::Wechat {
                spawn_wechat_notification(Arc::clone(&*state), refund.clone(), options.duplicate);
            }
            HttpResponse::Ok().json(refund)
        }
        Err(message) => {
            HttpResponse::Conflict().json(json!({"error": {"code": "refund_not_processing", "message": message}}))
        }
    }
}

/// Sends WeChat's `REFUND.*` notification of `refund` in the background, on WeChat's resend
/// schedule (divided by `notify_speedup`), then `duplicate` more copies of it.
pub(crate) fn spawn_wechat_notification(state: Arc<SimState>, refund: SimRefund, duplicate: u32) {
    tokio::spawn(async move {
        let Some(url) = refund.notify_url.clone() else {
            tracing::warn!(out_refund_no = %refund.out_refund_no, "refund has no notify_url; nothing sent");
            return;
        };
        let body = match refund_notification(&state, &refund) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error.message = %err, "simulator could not build a refund notification");
                return;
            }
        };
        let speedup = state.config.notify_speedup.max(1);
        let waits = std::iter::once(0).chain(WECHAT_RETRY_SECONDS.iter().copied());
        for wait_seconds in waits {
            tokio::time::sleep(Duration::from_secs(wait_seconds) / speedup).await;
            let acknowledged = crate::notify::send_wechat(&state, &url, &body).await;
            count_notification(&state, &refund);
            if acknowledged {
                for _ in 0..duplicate {
                    crate::notify::send_wechat(&state, &url, &body).await;
                    count_notification(&state, &refund);
                }
                return;
            }
        }
    });
}

fn count_notification(state: &SimState, refund: &SimRefund) {
    if let Some(row) = lock(&state.refunds).get_mut(&(refund.provider, refund.out_refund_no.clone())) {
        row.notifications_sent = row.notifications_sent.saturating_add(1);
    }
}

fn refund_notification(state: &SimState, refund: &SimRefund) -> Result<Vec<u8>, String> {
    let body = wechat_body(state, refund);
    let resource = WechatRefundResource {
        mchid: Some(state.config.wechat_mchid.clone()),
        out_trade_no: refund.out_trade_no.clone(),
        transaction_id: body.transaction_id.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        refund_id: refund.refund_id.clone(),
        refund_status: wechat_status(refund.status),
        success_time: body.success_time.clone(),
        user_received_account: body.user_received_account.clone(),
        amount: body.amount.clone(),
    };
    let plaintext = serde_json::to_vec(&resource).map_err(|err| err.to_string())?;
    let nonce = crypto::new_resource_nonce();
    let associated_data = "refund";
    let ciphertext = crypto::encrypt_resource(&state.keys.apiv3, &nonce, associated_data, &plaintext)
        .map_err(|err| err.to_string())?;
    let (event_type, summary) = match refund.status {
        SimRefundStatus::Success | SimRefundStatus::Processing => (EVENT_REFUND_SUCCESS, "退款成功"),
        SimRefundStatus::Closed => (EVENT_REFUND_CLOSED, "退款关闭"),
        SimRefundStatus::Abnormal => (EVENT_REFUND_ABNORMAL, "退款异常"),
    };
    let envelope = WechatNotification {
        id: uuid::Uuid::new_v4().to_string(),
        create_time: rfc3339_china(Utc::now()),
        resource_type: "encrypt-resource".into(),
        event_type: event_type.into(),
        summary: summary.into(),
        resource: WechatEncryptedResource {
            original_type: "refund".into(),
            algorithm: RESOURCE_ALGORITHM.into(),
            ciphertext,
            associated_data: associated_data.into(),
            nonce,
        },
    };
    serde_json::to_vec(&envelope).map_err(|err| err.to_string())
}
