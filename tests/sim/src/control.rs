//! Control routes for tests and demos: play the buyer, read the trade book, switch faults.
//!
//! - `POST /sim/{wechat|alipay}/trades/{no}/scan`: the buyer scans (creates the Alipay trade).
//! - `POST /sim/{wechat|alipay}/trades/{no}/pay`: the buyer pays; optional JSON body
//!   [`SimPayOptions`] `{"notify":true,"drop":0,"duplicate":0,"delay_ms":0}`.
//! - `GET /sim/{wechat|alipay}/trades/{no}`: the trade with its query / close / notification
//!   counters.
//! - `POST /sim/{wechat|alipay}/trades` `{"out_trade_no","amount_fen","notify_url"}`: a trade
//!   the merchant's paywarden never created (another deployment's, or a restored database's).
//! - `PUT /sim/faults` ([`SimFaults`]), `GET /sim/faults`.
//! - `PUT /sim/refund-behaviour`, `GET /sim/{provider}/refunds/{no}`,
//!   `POST /sim/{provider}/refunds/{no}/complete`: see [`crate::refunds`].

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::book::{SimBuyerError, SimFaults, SimPayOptions, SimProvider, SimState};
use crate::notify;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/sim")
            .route("/faults", web::put().to(put_faults))
            .route("/faults", web::get().to(get_faults))
            .configure(crate::refunds::control_routes)
            .configure(crate::bills::control_routes)
            .route("/{provider}/trades", web::post().to(open_foreign_trade))
            .route("/{provider}/trades/{no}", web::get().to(get_trade))
            .route("/{provider}/trades/{no}/scan", web::post().to(scan))
            .route("/{provider}/trades/{no}/pay", web::post().to(pay))
            .route("/{provider}/trades/{no}/pay-at-close", web::post().to(pay_at_close))
            .route(
                "/{provider}/trades/{no}/notify-conflicting",
                web::post().to(notify_conflicting),
            ),
    );
}

fn buyer_error(err: &SimBuyerError) -> HttpResponse {
    let body = json!({"error": {"code": match err {
        SimBuyerError::NotFound => "trade_not_found",
        SimBuyerError::Closed => "trade_closed",
    }, "message": err.to_string()}});
    match err {
        SimBuyerError::NotFound => HttpResponse::NotFound().json(body),
        SimBuyerError::Closed => HttpResponse::Conflict().json(body),
    }
}

/// A trade opened at the provider by someone else on the same merchant account.
#[derive(Debug, serde::Deserialize)]
struct ForeignTrade {
    out_trade_no: String,
    amount_fen: i64,
    notify_url: String,
}

async fn open_foreign_trade(
    state: web::Data<SimState>,
    provider: web::Path<SimProvider>,
    body: web::Json<ForeignTrade>,
) -> HttpResponse {
    let provider = provider.into_inner();
    let body = body.into_inner();
    if body.amount_fen <= 0 || body.out_trade_no.is_empty() {
        return HttpResponse::BadRequest().json(json!({"error": {"code": "invalid_trade", "message": "out_trade_no and a positive amount_fen are required"}}));
    }
    let now = chrono::Utc::now();
    let trade = crate::book::SimTrade {
        provider,
        out_trade_no: body.out_trade_no.clone(),
        amount_fen: body.amount_fen,
        subject: "foreign trade".to_owned(),
        notify_url: body.notify_url,
        code_url: format!("sim://foreign/{}", body.out_trade_no),
        state: crate::book::SimTradeState::Notpay,
        scanned: true,
        provider_trade_no: None,
        created_at: now,
        time_expire: Some(now + chrono::Duration::minutes(15)),
        paid_at: None,
        query_count: 0,
        close_count: 0,
        notifications_sent: 0,
        notifications_acknowledged: 0,
        pays_at_close: false,
    };
    state.book().insert((provider, body.out_trade_no), trade.clone());
    HttpResponse::Created().json(trade)
}

async fn get_trade(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    match state.trade(provider, &no) {
        Some(trade) => HttpResponse::Ok().json(trade),
        None => buyer_error(&SimBuyerError::NotFound),
    }
}

async fn scan(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    match state.scan(provider, &no) {
        Ok(trade) => HttpResponse::Ok().json(trade),
        Err(err) => buyer_error(&err),
    }
}

async fn pay(
    state: web::Data<SimState>,
    path: web::Path<(SimProvider, String)>,
    options: Option<web::Json<SimPayOptions>>,
) -> HttpResponse {
    let (provider, no) = path.into_inner();
    let options = options.map(web::Json::into_inner).unwrap_or_default();
    match state.pay(provider, &no) {
        Ok(trade) => {
            if options.notify {
                // `web::Data` derefs to the `Arc` the background sender needs.
                notify::spawn(Arc::clone(&*state), trade.clone(), options);
            }
            HttpResponse::Ok().json(trade)
        }
        Err(err) => buyer_error(&err),
    }
}

/// The buyer pays exactly when the merchant's next close arrives (no notification).
async fn pay_at_close(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    match state.pay_at_close(provider, &no) {
        Ok(trade) => HttpResponse::Ok().json(trade),
        Err(err) => buyer_error(&err),
    }
}

/// A paid trade reported again, validly signed, under another transaction id (once).
async fn notify_conflicting(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    let Some(trade) = state.trade(provider, &no) else {
        return HttpResponse::NotFound()
            .json(json!({"error": {"code": "trade_not_found", "message": "no such trade"}}));
    };
    if trade.state != crate::book::SimTradeState::Success {
        return HttpResponse::Conflict()
            .json(json!({"error": {"code": "trade_not_paid", "message": "the trade is not paid"}}));
    }
    match crate::notify::send_conflicting(&state, &trade).await {
        Ok(acknowledged) => HttpResponse::Ok().json(json!({"acknowledged": acknowledged})),
        Err(err) => {
            HttpResponse::InternalServerError().json(json!({"error": {"code": "notification", "message": err}}))
        }
    }
}

async fn put_faults(state: web::Data<SimState>, faults: web::Json<SimFaults>) -> HttpResponse {
    let faults = faults.into_inner();
    if let Err(message) = faults.validate() {
        return HttpResponse::BadRequest().json(json!({"error": {"code": "invalid_faults", "message": message}}));
    }
    state.set_faults(faults);
    tracing::info!(?faults, "simulator faults set");
    HttpResponse::Ok().json(faults)
}

async fn get_faults(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults())
}
