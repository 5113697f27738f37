//! Simulated trade bills of the trades and refunds the simulator holds, by day (China time):
//!
//! - WeChat Pay: `GET /v3/bill/tradebill?bill_date=&bill_type=ALL` (signed answer with a
//!   download URL and the file's SHA-1), then `GET /v3/billdownload/file?token=` (a signed
//!   request, an unsigned UTF-8 CSV with backtick-prefixed fields and a summary);
//!   `400 STATEMENT_CREATING` while the bill is held back, `400 NO_STATEMENT_EXIST` for a day
//!   without trades.
//! - Alipay: `alipay.data.dataservice.bill.downloadurl.query` answers a download URL (or
//!   `isp.bill_not_exist` while held back); the file is a ZIP of two GBK CSV files (detail and
//!   summary), `#` title and footer lines, tab-padded fields, refunds with negative amounts.
//!
//! The files look like the real ones (see the project's protocol notes: real bills of both
//! providers), not like what paywarden's parser would find convenient: WeChat's CSV starts with
//! a UTF-8 BOM and ends lines with CRLF; Alipay's detail file pads *some* cells with a TAB
//! (ids, business type, store, operator, terminal, counterparty, 商家红包消费金额, the refund
//! request number) and not others (times, most amounts), writes its day as
//! `[2019年09月16日 00:00:00]`, and its footers carry the totals.
//!
//! Controls (`/sim`): hold a provider's bills back (`PUT /sim/{provider}/bill-ready`), make a
//! bill report another amount for a trade or a refund (`POST /sim/{provider}/bill-adjustments`),
//! tamper with a bill as a hostile network or a broken provider would
//! (`PUT /sim/{provider}/bill-tampering`: rows added, removed, duplicated, other transaction
//! ids, another account or day, totals that do not add up, a slow or redirected download),
//! and settle a trade paid without telling anyone, even one the merchant closed
//! (`POST /sim/{provider}/trades/{no}/settle-silently`).

use std::collections::HashMap;
use std::io::Write;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::alipay::{bad_biz, failure, yuan};
use crate::book::{lock, SimProvider, SimState, SimTradeState};
use crate::refunds::SimRefundStatus;
use crate::wechat::{admit, error, signed};

/// Bill controls and the files handed out, in the simulator's state.
#[derive(Default)]
pub(crate) struct BillDesk {
    /// Providers whose bills are held back ("not published yet").
    held: Vec<SimProvider>,
    /// Amount the bill reports instead, by provider and trade or refund number.
    adjustments: HashMap<(SimProvider, String), i64>,
    /// Files by download token.
    files: HashMap<String, Vec<u8>>,
    /// How each provider's bills are tampered with.
    tampering: HashMap<SimProvider, BillTampering>,
}

/// What a hostile network or a broken provider does to a bill (`PUT /sim/{provider}/bill-tampering`).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillTampering {
    /// Payment rows added (trades that may never have been paid).
    pub add_payments: Vec<AddedPayment>,
    /// Trades (payment rows) or refunds listed twice.
    pub duplicate: Vec<String>,
    /// Trades or refunds left out.
    pub remove: Vec<String>,
    /// Another transaction id for these trades' payment rows.
    pub trade_ids: HashMap<String, String>,
    /// The file names another merchant account.
    pub account: Option<String>,
    /// The file is of another day, this many days off.
    pub day_offset_days: i64,
    /// The totals claim this much more than the rows (fen).
    pub summary_extra_fen: i64,
    /// The download answers only after this long.
    pub download_delay_ms: u64,
    /// The download answers a redirect to the file.
    pub redirect: bool,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddedPayment {
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub trade_id: String,
}

/// One line of a bill, before formatting.
struct Line {
    kind: LineKind,
    at: DateTime<Utc>,
    out_trade_no: String,
    trade_id: String,
    subject: String,
    amount_fen: i64,
    out_refund_no: String,
    refund_id: String,
    refund_status: &'static str,
}

impl Line {
    fn copy(&self) -> Self {
        Self {
            kind: if self.kind == LineKind::Payment {
                LineKind::Payment
            } else {
                LineKind::Refund
            },
            at: self.at,
            out_trade_no: self.out_trade_no.clone(),
            trade_id: self.trade_id.clone(),
            subject: self.subject.clone(),
            amount_fen: self.amount_fen,
            out_refund_no: self.out_refund_no.clone(),
            refund_id: self.refund_id.clone(),
            refund_status: self.refund_status,
        }
    }
}

#[derive(PartialEq, Eq)]
enum LineKind {
    Payment,
    Refund,
}

fn china_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&actors::gateway::wechat::transformers::china_offset())
        .date_naive()
}

impl SimState {
    fn bill_lines(&self, provider: SimProvider, date: NaiveDate) -> Vec<Line> {
        let desk = lock(&self.bills);
        let adjusted = |no: &str, amount: i64| {
            desk.adjustments
                .get(&(provider, no.to_owned()))
                .copied()
                .unwrap_or(amount)
        };
        let mut lines = Vec::new();
        let trades = self.trades();
        for trade in trades.iter().filter(|trade| trade.provider == provider) {
            if let (SimTradeState::Success, Some(paid_at)) = (trade.state, trade.paid_at) {
                if china_day(paid_at) == date {
                    lines.push(Line {
                        kind: LineKind::Payment,
                        at: paid_at,
                        out_trade_no: trade.out_trade_no.clone(),
                        trade_id: trade.provider_trade_no.clone().unwrap_or_default(),
                        subject: trade.subject.clone(),
                        amount_fen: adjusted(&trade.out_trade_no, trade.amount_fen),
                        out_refund_no: String::new(),
                        refund_id: String::new(),
                        refund_status: "",
                    });
                }
            }
        }
        for refund in self
            .all_refunds()
            .into_iter()
            .filter(|refund| refund.provider == provider)
        {
            if china_day(refund.created_at) != date
                || matches!(refund.status, SimRefundStatus::Closed | SimRefundStatus::Abnormal)
            {
                continue;
            }
            let trade = trades
                .iter()
                .find(|trade| trade.provider == provider && trade.out_trade_no == refund.out_trade_no);
            lines.push(Line {
                kind: LineKind::Refund,
                at: refund.created_at,
                out_trade_no: refund.out_trade_no.clone(),
                trade_id: trade.and_then(|t| t.provider_trade_no.clone()).unwrap_or_default(),
                subject: trade.map(|t| t.subject.clone()).unwrap_or_default(),
                amount_fen: adjusted(&refund.out_refund_no, refund.amount_fen),
                out_refund_no: refund.out_refund_no.clone(),
                refund_id: refund.refund_id.clone(),
                refund_status: match refund.status {
                    SimRefundStatus::Success => "SUCCESS",
                    _ => "PROCESSING",
                },
            });
        }
        let tampering = desk.tampering.get(&provider).cloned().unwrap_or_default();
        for added in &tampering.add_payments {
            lines.push(Line {
                kind: LineKind::Payment,
                at: Utc::now(),
                out_trade_no: added.out_trade_no.clone(),
                trade_id: added.trade_id.clone(),
                subject: "added".into(),
                amount_fen: added.amount_fen,
                out_refund_no: String::new(),
                refund_id: String::new(),
                refund_status: "",
            });
        }
        let key = |line: &Line| {
            if line.kind == LineKind::Payment {
                line.out_trade_no.clone()
            } else {
                line.out_refund_no.clone()
            }
        };
        lines.retain(|line| !tampering.remove.contains(&key(line)));
        for line in &mut lines {
            if line.kind == LineKind::Payment {
                if let Some(id) = tampering.trade_ids.get(&line.out_trade_no) {
                    line.trade_id = id.clone();
                }
            }
        }
        let twice: Vec<Line> = lines
            .iter()
            .filter(|line| tampering.duplicate.contains(&key(line)))
            .map(Line::copy)
            .collect();
        lines.extend(twice);
        lines.sort_by_key(|line| line.at);
        lines
    }

    fn tampering(&self, provider: SimProvider) -> BillTampering {
        lock(&self.bills).tampering.get(&provider).cloned().unwrap_or_default()
    }

    fn held(&self, provider: SimProvider) -> bool {
        lock(&self.bills).held.contains(&provider)
    }

    fn file_token(&self, bytes: Vec<u8>) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.bills).files.insert(token.clone(), bytes);
        token
    }

    fn file(&self, token: &str) -> Option<Vec<u8>> {
        lock(&self.bills).files.get(token).cloned()
    }
}

/// The WeChat `ALL` bill of `lines`: a BOM, the header, backtick-prefixed rows, the summary,
/// CRLF line ends (as the real files: their announced SHA-1 matches only those bytes).
fn wechat_csv(state: &SimState, lines: &[Line], tampering: &BillTampering) -> String {
    let config = &state.config;
    let mchid = tampering.account.clone().unwrap_or_else(|| config.wechat_mchid.clone());
    let mut out = String::from("\u{feff}交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n");
    let (mut paid, mut refunded) = (0_i64, 0_i64);
    for line in lines {
        let time = (line.at + chrono::Duration::days(tampering.day_offset_days))
            .with_timezone(&actors::gateway::wechat::transformers::china_offset())
            .format("%Y-%m-%d %H:%M:%S");
        let (state_text, settle, refund, refund_no, refund_id, refund_kind) = match line.kind {
            LineKind::Payment => {
                paid += line.amount_fen;
                ("SUCCESS", line.amount_fen, 0, "0", "0", "")
            }
            LineKind::Refund => {
                refunded += line.amount_fen;
                (
                    "REFUND",
                    0,
                    line.amount_fen,
                    line.out_refund_no.as_str(),
                    line.refund_id.as_str(),
                    "ORIGINAL",
                )
            }
        };
        let fields = [
            time.to_string(),
            config.wechat_appid.clone(),
            mchid.clone(),
            "0".into(),
            String::new(),
            line.trade_id.clone(),
            line.out_trade_no.clone(),
            "oSimUser".into(),
            "NATIVE".into(),
            state_text.into(),
            "OTHERS".into(),
            "CNY".into(),
            yuan(settle),
            "0.00".into(),
            refund_id.into(),
            refund_no.into(),
            yuan(refund),
            "0.00".into(),
            refund_kind.into(),
            line.refund_status.into(),
            line.subject.replace(',', " "),
            String::new(),
            "0.00000".into(),
            "0.60%".into(),
            yuan(settle),
            yuan(refund),
            String::new(),
        ];
        let row: Vec<String> = fields.iter().map(|field| format!("`{field}")).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n");
    let paid = paid + tampering.summary_extra_fen;
    out.push_str(&format!(
        "`{},`{},`{},`0.00,`0.00000,`{},`{}\r\n",
        lines.len(),
        yuan(paid),
        yuan(refunded),
        yuan(paid),
        yuan(refunded)
    ));
    out
}

/// The cells of a real Alipay detail row that carry a TAB at their end (both real samples
/// agree): the ids, the business type, store, operator, terminal, counterparty,
/// 商家红包消费金额 and the refund request number.
const TAB_PADDED: [usize; 10] = [0, 1, 2, 6, 7, 8, 9, 10, 19, 21];

/// The Alipay bill archive of `lines`: a detail and a summary CSV, GBK-encoded, shaped like
/// the real files.
fn alipay_zip(state: &SimState, date: NaiveDate, lines: &[Line], tampering: &BillTampering) -> Result<Vec<u8>, String> {
    let account = tampering
        .account
        .clone()
        .unwrap_or_else(|| format!("{}0156", state.config.alipay_seller_id));
    let day = date.format("%Y%m%d");
    let claimed = date + chrono::Duration::days(tampering.day_offset_days);
    let period = format!(
        "#起始日期：[{}]   终止日期：[{}]",
        claimed.format("%Y年%m月%d日 00:00:00"),
        claimed.succ_opt().unwrap_or(claimed).format("%Y年%m月%d日 00:00:00")
    );
    let mut detail = format!(
        "#支付宝业务明细查询\r\n#账号：[{account}]\r\n{period}\r\n#-----------------------------------------业务明细列表----------------------------------------\r\n支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\r\n"
    );
    let (mut payments, mut refunds) = ((0, 0_i64), (0, 0_i64));
    for line in lines {
        let time = line
            .at
            .with_timezone(&actors::gateway::wechat::transformers::china_offset())
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let (kind, amount, request_no) = match line.kind {
            LineKind::Payment => {
                payments = (payments.0 + 1, payments.1 + line.amount_fen);
                ("交易", yuan(line.amount_fen), String::new())
            }
            LineKind::Refund => {
                refunds = (refunds.0 + 1, refunds.1 + line.amount_fen);
                (
                    "退款",
                    format!("-{}", yuan(line.amount_fen)),
                    line.out_refund_no.clone(),
                )
            }
        };
        let fields = [
            line.trade_id.clone(),
            line.out_trade_no.clone(),
            kind.to_owned(),
            line.subject.clone(),
            time.clone(),
            time,
            "sim_store".into(),
            "sim_store".into(),
            "sim".into(),
            String::new(),
            "*模拟(sim***@example.com)".into(),
            amount.clone(),
            amount,
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            String::new(),
            "0.00".into(),
            "0.00".into(),
            request_no,
            "0.00".into(),
            "0.00".into(),
            line.subject.clone(),
        ];
        let row: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(at, field)| {
                if TAB_PADDED.contains(&at) {
                    format!("{field}\t")
                } else {
                    field.clone()
                }
            })
            .collect();
        detail.push_str(&row.join(","));
        detail.push_str("\r\n");
    }
    let refunded = if refunds.1 == 0 {
        "0.00".to_owned()
    } else {
        format!("-{}", yuan(refunds.1))
    };
    let taken = yuan(payments.1 + tampering.summary_extra_fen);
    detail.push_str(&format!(
        "#-----------------------------------------业务明细列表结束------------------------------------\r\n#交易合计：{}笔，商家实收共{taken}元，商家优惠共0.00元\r\n#退款合计：{}笔，商家实收退款共{refunded}元，商家优惠退款共0.00元\r\n#导出时间：[{}]\r\n",
        payments.0,
        refunds.0,
        Utc::now()
            .with_timezone(&actors::gateway::wechat::transformers::china_offset())
            .format("%Y年%m月%d日 %H:%M:%S")
    ));
    let summary = format!(
        "#支付宝业务汇总查询\r\n#账号：[{account}]\r\n{period}\r\n#-----------------------------------------业务汇总列表----------------------------------------\r\n门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\r\nsim_store\t,sim_store\t,{},{},{},{},0.00,0.00,0.00,0.00,0.00,{}\r\n合计,,{},{},{},{},0.00,0.00,0.00,0.00,0.00,{}\r\n#----------------------------------------业务汇总列表结束-------------------------------------\r\n",
        payments.0,
        refunds.0,
        yuan(payments.1),
        yuan(payments.1),
        yuan(payments.1 - refunds.1),
        payments.0,
        refunds.0,
        yuan(payments.1),
        yuan(payments.1),
        yuan(payments.1 - refunds.1),
    );
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, text) in [
        (format!("{account}_{day}_业务明细.csv"), detail),
        (format!("{account}_{day}_业务明细(汇总).csv"), summary),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .map_err(|err| err.to_string())?;
        let (bytes, _, _) = encoding_rs::GBK.encode(&text);
        zip.write_all(&bytes).map_err(|err| err.to_string())?;
    }
    zip.finish().map_err(|err| err.to_string())?;
    Ok(out.into_inner())
}

pub(crate) fn wechat_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/bill/tradebill", web::get().to(wechat_tradebill))
        .route("/v3/billdownload/file", web::get().to(wechat_download));
}

#[derive(Deserialize)]
struct TradeBillQuery {
    bill_date: String,
    #[serde(default)]
    bill_type: Option<String>,
}

async fn wechat_tradebill(
    state: web::Data<SimState>,
    req: HttpRequest,
    query: web::Query<TradeBillQuery>,
) -> HttpResponse {
    if let Some(response) = admit(&state, &req, &[]).await {
        return response;
    }
    let Ok(date) = NaiveDate::parse_from_str(&query.bill_date, "%Y-%m-%d") else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "bill_date must be yyyy-MM-DD");
    };
    if query.bill_type.as_deref().is_some_and(|kind| kind != "ALL") {
        return error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "the simulator serves bill_type=ALL",
        );
    }
    if state.held(SimProvider::Wechat) {
        return error(StatusCode::BAD_REQUEST, "STATEMENT_CREATING", "账单生成中");
    }
    let lines = state.bill_lines(SimProvider::Wechat, date);
    if lines.is_empty() {
        return error(StatusCode::BAD_REQUEST, "NO_STATEMENT_EXIST", "账单文件不存在");
    }
    let file = wechat_csv(&state, &lines, &state.tampering(SimProvider::Wechat)).into_bytes();
    let hash = hex::encode(Sha1::digest(&file));
    let token = state.file_token(file);
    let host = req.connection_info().host().to_owned();
    let body = json!({
        "hash_type": "SHA1",
        "hash_value": hash,
        "download_url": format!("http://{host}/v3/billdownload/file?token={token}"),
    });
    signed(&state, StatusCode::OK, body.to_string().into_bytes()).await
}

#[derive(Deserialize)]
struct DownloadQuery {
    token: String,
}

async fn wechat_download(
    state: web::Data<SimState>,
    req: HttpRequest,
    query: web::Query<DownloadQuery>,
) -> HttpResponse {
    // The request is signed like any call; the file comes back unsigned.
    if let Some(response) = admit(&state, &req, &[]).await {
        return response;
    }
    if let Some(response) = tampered_download(&state, SimProvider::Wechat, &req).await {
        return response;
    }
    match state.file(&query.token) {
        Some(file) => HttpResponse::Ok().content_type("text/csv; charset=utf-8").body(file),
        None => error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "download url expired"),
    }
}

/// `alipay.data.dataservice.bill.downloadurl.query`.
pub(crate) fn alipay_bill_url(state: &SimState, biz_content: &str, host: &str) -> Value {
    #[derive(Deserialize)]
    struct Biz {
        bill_type: String,
        bill_date: String,
    }
    let biz: Biz = match serde_json::from_str(biz_content) {
        Ok(biz) => biz,
        Err(err) => return bad_biz(&err.to_string()),
    };
    if biz.bill_type != "trade" {
        return bad_biz("the simulator serves bill_type=trade");
    }
    let Ok(date) = NaiveDate::parse_from_str(&biz.bill_date, "%Y-%m-%d") else {
        return failure(
            "40004",
            "Business Failed",
            "isv.invalid_arguments",
            "bill_date 格式错误",
        );
    };
    if state.held(SimProvider::Alipay) {
        return failure("40004", "Business Failed", "isp.bill_not_exist", "账单不存在");
    }
    let lines = state.bill_lines(SimProvider::Alipay, date);
    match alipay_zip(state, date, &lines, &state.tampering(SimProvider::Alipay)) {
        Ok(file) => {
            let token = state.file_token(file);
            json!({
                "code": "10000",
                "msg": "Success",
                "bill_download_url": format!("http://{host}/sim/alipay/bill-files/{token}"),
            })
        }
        Err(err) => {
            tracing::error!(error.message = %err, "simulator could not zip a bill");
            failure("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙")
        }
    }
}

pub(crate) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/alipay/bill-files/{token}", web::get().to(alipay_download))
        .route("/{provider}/bill-ready", web::put().to(put_ready))
        .route("/{provider}/bill-adjustments", web::post().to(adjust))
        .route("/{provider}/bill-tampering", web::put().to(put_tampering))
        .route(
            "/{provider}/trades/{no}/settle-silently",
            web::post().to(settle_silently),
        );
}

/// A tampered download: answered late, or by a redirect to the same file (marked so the
/// redirect target serves it).
async fn tampered_download(state: &SimState, provider: SimProvider, req: &HttpRequest) -> Option<HttpResponse> {
    let tampering = state.tampering(provider);
    if tampering.download_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(tampering.download_delay_ms)).await;
    }
    let redirected = req.query_string().contains("redirected=1");
    (tampering.redirect && !redirected).then(|| {
        HttpResponse::Found()
            .insert_header((
                "Location",
                format!("{}?{}&redirected=1", req.path(), req.query_string()),
            ))
            .finish()
    })
}

async fn alipay_download(state: web::Data<SimState>, req: HttpRequest, token: web::Path<String>) -> HttpResponse {
    if let Some(response) = tampered_download(&state, SimProvider::Alipay, &req).await {
        return response;
    }
    match state.file(&token) {
        Some(file) => HttpResponse::Ok().content_type("application/zip").body(file),
        None => HttpResponse::NotFound().finish(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ready {
    ready: bool,
}

async fn put_ready(
    state: web::Data<SimState>,
    provider: web::Path<SimProvider>,
    body: web::Json<Ready>,
) -> HttpResponse {
    let provider = provider.into_inner();
    let mut desk = lock(&state.bills);
    desk.held.retain(|held| *held != provider);
    if !body.ready {
        desk.held.push(provider);
    }
    HttpResponse::Ok().json(json!({"provider": provider, "ready": body.ready}))
}

async fn put_tampering(
    state: web::Data<SimState>,
    provider: web::Path<SimProvider>,
    body: web::Json<BillTampering>,
) -> HttpResponse {
    let tampering = body.into_inner();
    lock(&state.bills)
        .tampering
        .insert(provider.into_inner(), tampering.clone());
    HttpResponse::Ok().json(tampering)
}

/// The bill reports `amount_fen` for trade `out_trade_no` (its payment row) or refund
/// `out_refund_no`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Adjustment {
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    out_refund_no: Option<String>,
    amount_fen: i64,
}

async fn adjust(
    state: web::Data<SimState>,
    provider: web::Path<SimProvider>,
    body: web::Json<Adjustment>,
) -> HttpResponse {
    let body = body.into_inner();
    let Some(no) = body.out_trade_no.or(body.out_refund_no) else {
        return HttpResponse::BadRequest()
            .json(json!({"error": {"code": "invalid_adjustment", "message": "out_trade_no or out_refund_no"}}));
    };
    lock(&state.bills)
        .adjustments
        .insert((provider.into_inner(), no.clone()), body.amount_fen);
    HttpResponse::Ok().json(json!({"reference": no, "amount_fen": body.amount_fen}))
}

/// The provider's books say the trade was paid now (whatever its state), and nobody is told:
/// no notification, the merchant's queries see it only from now on.
async fn settle_silently(state: web::Data<SimState>, path: web::Path<(SimProvider, String)>) -> HttpResponse {
    let (provider, no) = path.into_inner();
    let id = state.next_id(if provider == SimProvider::Wechat {
        "4200"
    } else {
        "2088"
    });
    let mut book = state.book();
    let Some(trade) = book.get_mut(&(provider, no)) else {
        return HttpResponse::NotFound()
            .json(json!({"error": {"code": "trade_not_found", "message": "no such trade"}}));
    };
    trade.settle(Utc::now(), id);
    HttpResponse::Ok().json(trade.clone())
}
