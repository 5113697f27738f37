//! The HTTP facade's one error type.
//!
//! Client mistakes carry a stable snake_case code and a message that says what was expected;
//! anything internal is an opaque 500 whose cause chain goes to the log, never to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use actors::domain::ValidationError;
use actors::error::RefundError;
use actors::gateway::GatewayError;
use actors::OrderError;
use serde::Serialize;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Too many credentials refused from the client's address ([`crate::throttle`]); nothing
    /// was checked. Carries how long the address is still blocked.
    #[error("too many refused credentials from this address; retry after Retry-After seconds")]
    Throttled(std::time::Duration),
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
    /// The `Idempotency-Key` was first used for another request.
    #[error(
        "this Idempotency-Key was used for another request (method, path or body); use a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// The `Idempotency-Key`'s first request is still running.
    #[error("a request with this Idempotency-Key is still in flight; retry after Retry-After seconds")]
    IdempotencyKeyInUse,
    /// A forwarded request reached the order's node, but its answer did not come back: it may
    /// have taken effect.
    #[error("the node that runs the order took the request but its answer was lost; it may have taken effect: retry after Retry-After seconds with the same Idempotency-Key")]
    OutcomeUnknown,
    /// A status stream was refused: the caller or this node holds as many as it may.
    #[error("{message}")]
    TooManyStreams {
        message: &'static str,
        retry_after: std::time::Duration,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// Marks an error response for an order another node owns (its address, when one does): read
/// by the forwarding middleware (`crate::forward`), never sent.
#[derive(Clone, Debug)]
pub struct Owner(pub Option<String>);

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

/// The error envelope of every JSON route.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable snake_case code; each operation lists the ones it can answer.
    code: &'a str,
    /// For people: says what was expected. Never holds a secret or a provider's answer.
    message: String,
    /// On server-side failures (5xx): the id under which the cause is logged. The cause itself
    /// (a gateway's text can hold the request URL, and for Alipay the signed query) stays in
    /// the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    request_id: Option<String>,
}

/// One error code of the contract: the status it comes with and what it means.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode {
    pub code: &'static str,
    pub status: StatusCode,
    pub meaning: &'static str,
}

const fn code(code: &'static str, status: StatusCode, meaning: &'static str) -> ErrorCode {
    ErrorCode { code, status, meaning }
}

/// Every `code` the service answers, with its status. The OpenAPI document builds each
/// operation's error responses from this list (see `routes::openapi`), and the tests below
/// check that [`ApiError`] answers each code with the status listed here.
pub const ERROR_CODES: &[ErrorCode] = &[
    code(
        "invalid_json",
        StatusCode::BAD_REQUEST,
        "the body is not JSON of the expected shape: malformed, a field of the wrong type, a missing or unknown field",
    ),
    code(
        "invalid_query",
        StatusCode::BAD_REQUEST,
        "a query parameter is unknown or of the wrong type",
    ),
    code(
        "invalid_path",
        StatusCode::BAD_REQUEST,
        "a path parameter is of the wrong type",
    ),
    code(
        "invalid_idempotency_key",
        StatusCode::BAD_REQUEST,
        "the Idempotency-Key is not 1 to 255 printable ASCII characters (or was sent twice); nothing was done",
    ),
    code(
        "invalid_notification",
        StatusCode::BAD_REQUEST,
        "the notification's signature does not verify, or its body cannot be read; nothing was changed",
    ),
    code(
        "unauthorized",
        StatusCode::UNAUTHORIZED,
        "the bearer credentials are missing or not valid for this scope",
    ),
    code(
        "too_many_failures",
        StatusCode::TOO_MANY_REQUESTS,
        "too many credentials were refused from this client address; nothing was checked or done; retry after Retry-After seconds (the wait grows while failures go on)",
    ),
    code(
        "invalid_checkout_link",
        StatusCode::FORBIDDEN,
        "the checkout link's token was not issued for this order (or the order does not exist)",
    ),
    code(
        "checkout_link_expired",
        StatusCode::FORBIDDEN,
        "the checkout link is past its expiry (checkout.link_grace_seconds after the order's deadline)",
    ),
    code(
        "not_found",
        StatusCode::NOT_FOUND,
        "no such resource (an order of another merchant is not found either)",
    ),
    code(
        "idempotency_conflict",
        StatusCode::CONFLICT,
        "out_business_id was already used for an order with other content",
    ),
    code(
        "idempotency_key_reused",
        StatusCode::CONFLICT,
        "the Idempotency-Key was first used for another request (method, path or body); nothing was done",
    ),
    code(
        "idempotency_key_in_use",
        StatusCode::CONFLICT,
        "the Idempotency-Key's first request is still in flight; retry after Retry-After seconds",
    ),
    code(
        "refund_conflict",
        StatusCode::CONFLICT,
        "out_refund_id was already used for a refund with other content",
    ),
    code(
        "order_not_refundable",
        StatusCode::CONFLICT,
        "the order is not paid (pending, closed, stuck) or already refunded in full",
    ),
    code(
        "insufficient_stock",
        StatusCode::CONFLICT,
        "a tracked SKU has less stock than the order asks for (the level left is not told)",
    ),
    code(
        "order_not_pending",
        StatusCode::CONFLICT,
        "the order is no longer pending (paid, closed, ...)",
    ),
    code(
        "order_expired",
        StatusCode::CONFLICT,
        "the order has passed its deadline and is being closed",
    ),
    code(
        "concurrent_update",
        StatusCode::CONFLICT,
        "the order changed concurrently; retry",
    ),
    code(
        "close_not_possible_yet",
        StatusCode::CONFLICT,
        "the provider cannot close the trade yet (the buyer is paying, or it is too soon); retry shortly",
    ),
    code(
        "no_code_url",
        StatusCode::CONFLICT,
        "the payment attempt has no QR code (its provider has not answered one)",
    ),
    code(
        "trade_not_payable",
        StatusCode::CONFLICT,
        "the sandbox trade is closed or past its expiry",
    ),
    code(
        "already_resolved",
        StatusCode::CONFLICT,
        "the unmatched notification was resolved before",
    ),
    code(
        "subscriber_configured",
        StatusCode::CONFLICT,
        "the subscriber is declared in the configuration (outbox.webhooks): its secret is changed there",
    ),
    code(
        "too_many_live_secrets",
        StatusCode::CONFLICT,
        "the webhook already has as many previous secrets in their overlap as it may (3); rotate again once one expires",
    ),
    code(
        "request_timeout",
        StatusCode::REQUEST_TIMEOUT,
        "the request's body did not arrive within server.body_read_timeout_milliseconds; nothing was done",
    ),
    code(
        "too_many_streams",
        StatusCode::TOO_MANY_REQUESTS,
        "the caller (a merchant or a checkout link) or this node holds as many open status streams as it may; retry after Retry-After seconds",
    ),
    code(
        "payload_too_large",
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is larger than server.max_body_bytes",
    ),
    code(
        "unsupported_media_type",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body is not sent as Content-Type: application/json",
    ),
    code(
        "invalid_field",
        StatusCode::UNPROCESSABLE_ENTITY,
        "a text field is empty, too long (in characters) or holds control characters; the message names it",
    ),
    code(
        "refund_exceeds_paid",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the refunds of the payment (pending and succeeded) would exceed what it took; the message says what is left",
    ),
    code(
        "not_a_payment",
        StatusCode::UNPROCESSABLE_ENTITY,
        "pay_no is not a payment of this order that took money",
    ),
    code(
        "invalid_return_url",
        StatusCode::UNPROCESSABLE_ENTITY,
        "return_url is not an absolute http(s) URL without credentials of at most 2048 characters",
    ),
    code(
        "unsupported_currency",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the currency is not one paywarden knows",
    ),
    code(
        "invalid_ttl",
        StatusCode::UNPROCESSABLE_ENTITY,
        "ttl_seconds is outside the configured range",
    ),
    code(
        "missing_items",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the order has no items",
    ),
    code(
        "too_many_items",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the order has more items than orders.max_items",
    ),
    code(
        "invalid_amount",
        StatusCode::UNPROCESSABLE_ENTITY,
        "an amount is zero or negative",
    ),
    code(
        "invalid_quantity",
        StatusCode::UNPROCESSABLE_ENTITY,
        "a quantity is zero or negative, or a stock level negative",
    ),
    code(
        "amount_too_large",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the total (or an item's amount) exceeds orders.max_total_minor_units",
    ),
    code(
        "unknown_provider",
        StatusCode::UNPROCESSABLE_ENTITY,
        "no provider of that name",
    ),
    code(
        "provider_unavailable",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the provider is known but not enabled here",
    ),
    code(
        "currency_not_accepted",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the provider does not accept the order's currency",
    ),
    code(
        "not_a_mismatched_payment",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the payment named is not one of this order whose amount differs",
    ),
    code(
        "invalid_merchant_id",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the merchant id is not valid",
    ),
    code(
        "invalid_url",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the subscriber URL is refused (not http(s), or a private address where those are not allowed)",
    ),
    code(
        "invalid_secret",
        StatusCode::UNPROCESSABLE_ENTITY,
        "the subscriber secret does not fit its scheme: standard-webhooks-v1 takes whsec_ and the base64 of 24 to 64 bytes; paywarden-v1 16 to 256 bytes without control characters",
    ),
    code(
        "invalid_signature_scheme",
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature_scheme is neither standard-webhooks-v1 nor paywarden-v1",
    ),
    code(
        "invalid_overlap",
        StatusCode::UNPROCESSABLE_ENTITY,
        "overlap_seconds is outside outbox.rotation_overlap_min_seconds to outbox.rotation_overlap_max_seconds",
    ),
    code(
        "invalid_headers",
        StatusCode::UNPROCESSABLE_ENTITY,
        "a custom header is forbidden (framing, connection, credential, origin or signature headers), malformed, or over the limits (10 headers, 64-byte names, 512-byte values, 2048 bytes in all)",
    ),
    code(
        "invalid_range",
        StatusCode::UNPROCESSABLE_ENTITY,
        "a replay's since is not before its until, or the range holds more than outbox.replay_max_events events",
    ),
    code(
        "unknown_event_type",
        StatusCode::UNPROCESSABLE_ENTITY,
        "an event type that paywarden does not emit",
    ),
    code(
        "merchant_exists",
        StatusCode::CONFLICT,
        "a merchant with this merchant_id exists (merchant ids are never reused); nothing was written",
    ),
    code(
        "merchant_disabled",
        StatusCode::CONFLICT,
        "the merchant is disabled: its keys do not work and no key or provider account can be added to it",
    ),
    code(
        "invalid_provider_config",
        StatusCode::UNPROCESSABLE_ENTITY,
        "a provider account's configuration is refused: a field missing, unknown or malformed (a PEM that does not parse, a private key that is not its certificate's, an APIv3 key not of 32 bytes, an endpoint that is not https); the message names the field; nothing was stored",
    ),
    code(
        "secrets_not_configured",
        StatusCode::CONFLICT,
        "secrets.master_key is not set, so provider accounts (whose secrets are sealed under it) cannot be stored",
    ),
    code(
        "internal_error",
        StatusCode::INTERNAL_SERVER_ERROR,
        "a server-side failure; the cause is in the service log under request_id",
    ),
    code(
        "provider_error",
        StatusCode::BAD_GATEWAY,
        "the payment provider failed; its answer is in the service log under request_id",
    ),
    code(
        "service_unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
        "the order's node did not answer in time, or its answer was lost, or the order is changing nodes; the request may have taken effect: retry after Retry-After seconds with the same Idempotency-Key",
    ),
    code(
        "provider_busy",
        StatusCode::SERVICE_UNAVAILABLE,
        "this service's budget of calls to the provider (rate or calls in flight) is spent; nothing was written; retry after Retry-After seconds",
    ),
    code(
        "provider_unreachable",
        StatusCode::SERVICE_UNAVAILABLE,
        "the payment provider could not be reached; the order stays open and is retried",
    ),
];

/// The catalogue entry of `code`.
pub fn error_code(code: &str) -> Option<&'static ErrorCode> {
    ERROR_CODES.iter().find(|entry| entry.code == code)
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// When a retry may succeed, for a `Retry-After` header: whole seconds, at least one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ApiError::Order(OrderError::Gateway(GatewayError::Busy { retry_after })) => {
                let whole = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(std::time::Duration::from_secs(whole.max(1)))
            }
            // Another node runs the order (the request is forwarded when it can be), or this
            // node just lost it: a partition changes hands within seconds. The order's actor
            // or node did not answer: the same request (with the same Idempotency-Key) again.
            // A concurrent change, a close the provider cannot do yet, a key in flight: shortly.
            ApiError::Order(
                OrderError::Elsewhere(_)
                | OrderError::Fenced
                | OrderError::Unavailable
                | OrderError::Concurrent
                | OrderError::CloseNotPossibleYet,
            )
            | ApiError::OutcomeUnknown
            | ApiError::IdempotencyKeyInUse => Some(std::time::Duration::from_secs(1)),
            ApiError::Throttled(wait) => Some(std::time::Duration::from_secs(crate::throttle::whole_seconds(*wait))),
            ApiError::TooManyStreams { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Throttled(_) => "too_many_failures",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Validation(err) => err.code,
            ApiError::Order(err) => order_code(err),
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyKeyInUse => "idempotency_key_in_use",
            ApiError::OutcomeUnknown => "service_unavailable",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The message a client may read: nothing internal.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Order(OrderError::Gateway(GatewayError::Busy { .. })) => {
                "the payment provider is at its call limit; nothing was written; retry after Retry-After seconds"
                    .to_owned()
            }
            ApiError::Order(OrderError::Gateway(_)) => {
                "the payment provider failed; its answer is in the service log under request_id".to_owned()
            }
            ApiError::Order(OrderError::Unavailable) => {
                "the order's actor did not answer in time; the request may have taken effect: retry after Retry-After seconds with the same Idempotency-Key"
                    .to_owned()
            }
            ApiError::Order(OrderError::Id(_) | OrderError::Db(_)) | ApiError::Internal(_) => "internal error".to_owned(),
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
        OrderError::Gateway(GatewayError::Busy { .. }) => "provider_busy",
        OrderError::Gateway(_) => "provider_error",
        OrderError::Concurrent => "concurrent_update",
        OrderError::Id(_) | OrderError::Db(_) => "internal_error",
        OrderError::Unavailable | OrderError::Elsewhere(_) | OrderError::Fenced => "service_unavailable",
        OrderError::ProviderUnreachable => "provider_unreachable",
        OrderError::CloseNotPossibleYet => "close_not_possible_yet",
        OrderError::Refund(err) => refund_code(err),
    }
}

fn refund_code(err: &RefundError) -> &'static str {
    match err {
        RefundError::NotFound => "not_found",
        RefundError::Conflict => "refund_conflict",
        RefundError::NotRefundable(_) => "order_not_refundable",
        RefundError::ExceedsPaid { .. } => "refund_exceeds_paid",
    }
}

impl ResponseError for ApiError {
    /// The status of the error's code in [`ERROR_CODES`]: the one table of codes and their
    /// statuses. A request that could not be read carries its own status (413, 415, 408);
    /// a code missing from the table (a test fails on it) answers 500.
    fn status_code(&self) -> StatusCode {
        if let ApiError::BadRequest { status, .. } = self {
            return *status;
        }
        error_code(self.code()).map_or(StatusCode::INTERNAL_SERVER_ERROR, |entry| entry.status)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // A request for an order another node runs is forwarded there, not a failure.
        let failed = status.is_server_error() && !matches!(self, ApiError::Order(OrderError::Elsewhere(_)));
        let request_id = failed.then(|| {
            // The request's trace id when traces are exported (a merchant's trace and this
            // log meet on it), else an id of its own.
            let id = crate::telemetry::current_trace_id().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            tracing::error!(request_id = %id, error.cause_chain = ?self, error.message = %self, "request failed");
            id
        });
        let mut response = HttpResponse::build(status);
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(after) = self.retry_after() {
            response.insert_header((actix_web::http::header::RETRY_AFTER, after.as_secs().to_string()));
        }
        if let ApiError::Order(OrderError::Elsewhere(owner)) = self {
            // Read by the forwarding middleware (`crate::forward`), never sent.
            response.extensions_mut().insert(Owner(owner.clone()));
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

impl From<actors::store::merchants::MerchantError> for ApiError {
    fn from(err: actors::store::merchants::MerchantError) -> Self {
        use actors::store::merchants::MerchantError;
        match err {
            MerchantError::Invalid(err) => ApiError::Validation(err),
            MerchantError::NotFound => ApiError::NotFound("merchant"),
            MerchantError::KeyNotFound => ApiError::NotFound("key"),
            MerchantError::AccountNotFound => ApiError::NotFound("provider account"),
            MerchantError::Db(err) => ApiError::from(err),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::Order(OrderError::Db(err))
    }
}

#[cfg(test)]
mod tests {
    use actors::gateway::GatewayError;
    use actors::ids::IdError;
    use entities::{Currency, OrderStatus, Provider};

    use super::*;

    fn order(err: OrderError) -> ApiError {
        ApiError::Order(err)
    }

    /// Every kind of error the handlers answer, with the status the catalogue gives its code.
    /// `order_code` matches every `OrderError` variant, so a new one is decided there and
    /// belongs in this list.
    #[test]
    fn each_error_answers_its_code_with_the_status_the_catalogue_lists() {
        let validation = |code| actors::domain::ValidationError::new(code, "bad");
        let errors = vec![
            ApiError::Unauthorized,
            ApiError::Throttled(std::time::Duration::from_millis(1500)),
            ApiError::NotFound("order"),
            ApiError::bad_request("invalid_json", "bad"),
            ApiError::bad_request("invalid_query", "bad"),
            ApiError::bad_request("invalid_path", "bad"),
            ApiError::bad_request("invalid_idempotency_key", "bad"),
            ApiError::IdempotencyKeyReused,
            ApiError::IdempotencyKeyInUse,
            ApiError::OutcomeUnknown,
            ApiError::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                message: "big".to_owned(),
            },
            ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "json".to_owned(),
            },
            ApiError::Validation(validation("invalid_field")),
            ApiError::TooManyStreams {
                message: "many",
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::BadRequest {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout",
                message: "slow".to_owned(),
            },
            ApiError::Internal(anyhow::anyhow!("boom")),
            order(OrderError::Validation(validation("invalid_amount"))),
            order(OrderError::NotFound),
            order(OrderError::AttemptNotFound),
            order(OrderError::IdempotencyConflict),
            order(OrderError::InsufficientStock {
                sku_id: "sku".to_owned(),
                requested: 2,
            }),
            order(OrderError::NotPending(OrderStatus::Paid)),
            order(OrderError::Expired),
            order(OrderError::ProviderUnavailable(Provider::Wechat)),
            order(OrderError::CurrencyNotAccepted {
                provider: Provider::Wechat,
                currency: Currency::Usd,
            }),
            order(OrderError::Gateway(GatewayError::Timeout)),
            order(OrderError::Concurrent),
            order(OrderError::Id(IdError::ClockBeforeEpoch)),
            order(OrderError::Db(sea_orm::DbErr::Custom("boom".to_owned()))),
            order(OrderError::Unavailable),
            order(OrderError::ProviderUnreachable),
            order(OrderError::CloseNotPossibleYet),
            order(OrderError::Refund(RefundError::NotFound)),
            order(OrderError::Refund(RefundError::Conflict)),
            order(OrderError::Refund(RefundError::NotRefundable(OrderStatus::Pending))),
            order(OrderError::Refund(RefundError::ExceedsPaid {
                refundable: entities::MinorUnit::new(1).unwrap(),
            })),
            order(OrderError::Validation(validation("not_a_payment"))),
            ApiError::Validation(validation("merchant_exists")),
            ApiError::Validation(validation("merchant_disabled")),
            ApiError::Validation(validation("invalid_provider_config")),
            ApiError::Validation(validation("secrets_not_configured")),
            ApiError::Validation(validation("unknown_provider")),
        ];
        for err in errors {
            let code = err.code();
            let entry = error_code(code).unwrap_or_else(|| panic!("{code} is not in ERROR_CODES"));
            assert_eq!(entry.status, err.status_code(), "status of {code}");
        }
    }

    #[test]
    fn a_forwarded_request_whose_answer_was_lost_asks_for_a_retry_with_the_same_key() {
        let response = ApiError::OutcomeUnknown.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()),
            Some("1")
        );
        assert_eq!(ApiError::OutcomeUnknown.code(), "service_unavailable");
        assert!(ApiError::OutcomeUnknown
            .public_message()
            .contains("same Idempotency-Key"));
        assert!(ApiError::Order(OrderError::Unavailable)
            .public_message()
            .contains("same Idempotency-Key"));
    }

    #[test]
    fn codes_in_the_catalogue_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for entry in ERROR_CODES {
            assert!(seen.insert(entry.code), "{} twice", entry.code);
            assert!(
                entry.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not snake_case",
                entry.code
            );
            assert!(entry.status.is_client_error() || entry.status.is_server_error());
        }
    }
}
