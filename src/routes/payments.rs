//! Client routes on payment attempts: start one, fetch its QR code.

use std::io::Cursor;

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::store::{query, Operator};
use entities::{payment_attempts, Provider};

use super::dto::{CreatePaymentBody, PaymentResponse};
use crate::error::ApiError;
use crate::state::AppState;

/// Side of the rendered QR image, in pixels (at least; the code decides the exact size).
const QR_MIN_SIDE_PIXELS: u32 = 256;

/// `POST /v1/orders/{order_no}/payments`: a new attempt (new `pay_no`) at the chosen provider.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_no}/payments",
    tag = "payments",
    operation_id = "create_payment",
    summary = "Start a payment attempt",
    description = "A new attempt with a new `pay_no` at each call: the attempt is stored first, then the provider is asked for a QR code.",
    params(("order_no" = String, Path, description = "The order's number; anything that is not an order of the caller is a 404")),
    request_body = CreatePaymentBody,
    responses((status = 201, description = "The new attempt, with its QR code link", body = PaymentResponse)),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "order_not_pending", "order_expired", "concurrent_update", "unknown_provider", "provider_unavailable", "invalid_field", "currency_not_accepted", "internal_error", "provider_error", "service_unavailable", "provider_unreachable", "provider_busy"]))),
)]
#[tracing::instrument(name = "start payment", skip_all, fields(merchant_id = %merchant.as_str(), order_no = %order_no))]
pub async fn create(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    order_no: web::Path<String>,
    body: web::Json<CreatePaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let provider = parse_provider(&body.provider)?;
    let operator = Operator::Merchant(merchant.into_inner());
    let attempt = start(
        &state,
        super::order_id(&order_no)?,
        provider,
        body.account_id.as_deref(),
        operator,
    )
    .await?;
    Ok(HttpResponse::Created().json(PaymentResponse::new(attempt, &state.links)))
}

/// A provider's name as a client wrote it: 422 `unknown_provider` for a name of none.
pub(super) fn parse_provider(name: &str) -> Result<Provider, ApiError> {
    name.parse().map_err(|message: String| {
        ApiError::Validation(actors::domain::ValidationError::new("unknown_provider", message))
    })
}

/// Starts an attempt through the engine, counted in the metrics (merchant and checkout alike).
pub(super) async fn start(
    state: &AppState,
    order_id: entities::OrderId,
    provider: Provider,
    account_id: Option<&str>,
    operator: Operator,
) -> Result<payment_attempts::Model, ApiError> {
    let result = state
        .engine
        .start_attempt(order_id, provider, account_id, operator)
        .await;
    let outcome = if result.is_ok() { "started" } else { "refused" };
    state
        .metrics
        .payment_attempts
        .with_label_values(&[provider.as_str(), outcome])
        .inc();
    Ok(result?)
}

/// `GET /v1/payments/{pay_no}/qr.png`: the attempt's `code_url` as a PNG QR code.
#[utoipa::path(
    get,
    path = "/v1/payments/{pay_no}/qr.png",
    tag = "payments",
    operation_id = "get_payment_qr",
    summary = "The QR code of a payment attempt",
    params(("pay_no" = String, Path, description = "The attempt's number; anything that is not an attempt of the caller is a 404")),
    responses((status = 200, description = "PNG image of the attempt's `code_url`", content_type = "image/png", body = inline(super::dto::schema::PngImage))),
    security(("merchant_api_key" = [])),
    extensions(("x-error-codes" = json!(["not_found", "no_code_url", "internal_error"]))),
)]
pub async fn qr_png(
    state: web::Data<AppState>,
    merchant: web::ReqData<MerchantId>,
    pay_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let attempt = query::find_merchant_attempt(&state.db, &merchant, &pay_no)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    qr_response(attempt).await
}

/// The attempt's QR code as a PNG response; 409 `no_code_url` before its provider answered one.
pub(super) async fn qr_response(attempt: payment_attempts::Model) -> Result<HttpResponse, ApiError> {
    let code_url = attempt.code_url.ok_or_else(|| ApiError::BadRequest {
        status: actix_web::http::StatusCode::CONFLICT,
        code: "no_code_url",
        message: format!(
            "payment {} has no QR code (its status is {})",
            attempt.pay_no, attempt.status
        ),
    })?;
    // Rendering is CPU work: keep it off the async worker.
    let png = web::block(move || render_qr_png(&code_url))
        .await
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("qr rendering task failed: {err}")))??;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(png))
}

/// Encodes `text` as a QR code (error correction M) in a PNG.
///
/// # Errors
/// When the text is too long for any QR version, or PNG encoding fails.
pub fn render_qr_png(text: &str) -> Result<Vec<u8>, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("qr encoding failed: {err}")))?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(QR_MIN_SIDE_PIXELS, QR_MIN_SIDE_PIXELS)
        .build();
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("png encoding failed: {err}")))?;
    Ok(png.into_inner())
}
