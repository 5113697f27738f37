//! The HTTP facade's one error type.
//!
//! Client mistakes carry a stable snake_case code and a message that says what was expected;
//! anything internal is an opaque 500 whose cause chain goes to the log, never to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use actors::domain::ValidationError;
use actors::OrderError;
use serde::Serialize;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request could not be read: bad JSON, wrong content type, too large, bad path.
    #[error("{message}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        error_chain_fmt(self, f)
    }
}

/// Prints an error followed by every `source()` below it.
pub fn error_chain_fmt(err: &impl std::error::Error, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    writeln!(f, "{err}")?;
    let mut current = err.source();
    while let Some(cause) = current {
        writeln!(f, "caused by: {cause}")?;
        current = cause.source();
    }
    Ok(())
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    /// On server-side failures (5xx): the id under which the cause is logged. The cause itself
    /// (a gateway's text can hold the request URL, and for Alipay the signed query) stays in
    /// the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Validation(err) => err.code,
            ApiError::Order(err) => order_code(err),
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Order(OrderError::Gateway(_)) => {
                "the payment provider failed; its answer is in the service log under request_id".to_owned()
            }
            ApiError::Order(OrderError::Id(_) | OrderError::Db(_) | OrderError::Unavailable)
            | ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

fn order_code(err: &OrderError) -> &'static str {
    match err {
        OrderError::Validation(validation) => validation.code,
        OrderError::NotFound => "not_found",
        OrderError::AttemptNotFound => "not_found",
        OrderError::IdempotencyConflict => "idempotency_conflict",
        OrderError::InsufficientStock { .. } => "insufficient_stock",
        OrderError::NotPending(_) => "order_not_pending",
        OrderError::Expired => "order_expired",
        OrderError::ProviderUnavailable(_) => "provider_unavailable",
        OrderError::CurrencyNotAccepted { .. } => "currency_not_accepted",
        OrderError::Gateway(_) => "provider_error",
        OrderError::Concurrent => "concurrent_update",
        OrderError::Id(_) | OrderError::Db(_) => "internal_error",
        OrderError::Unavailable => "service_unavailable",
        OrderError::ProviderUnreachable => "provider_unreachable",
        OrderError::CloseNotPossibleYet => "close_not_possible_yet",
    }
}

fn order_status(err: &OrderError) -> StatusCode {
    match err {
        OrderError::Validation(_) | OrderError::ProviderUnavailable(_) | OrderError::CurrencyNotAccepted { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        OrderError::NotFound | OrderError::AttemptNotFound => StatusCode::NOT_FOUND,
        OrderError::IdempotencyConflict
        | OrderError::InsufficientStock { .. }
        | OrderError::NotPending(_)
        | OrderError::Expired
        | OrderError::Concurrent
        | OrderError::CloseNotPossibleYet => StatusCode::CONFLICT,
        OrderError::Gateway(_) => StatusCode::BAD_GATEWAY,
        OrderError::Id(_) | OrderError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OrderError::Unavailable | OrderError::ProviderUnreachable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Order(err) => order_status(err),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = status.is_server_error().then(|| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(request_id = %id, error.cause_chain = ?self, error.message = %self, "request failed");
            id
        });
        let mut response = HttpResponse::build(status);
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                request_id,
            },
        })
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::Order(OrderError::Db(err))
    }
}
