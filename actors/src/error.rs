//! Errors of the order commands and queries, and of refunds ([`RefundError`], a family of its
//! own carried by [`OrderError::Refund`]), so the HTTP facade maps each case to its code with a
//! match that has no catch-all arm.

use entities::{Currency, MinorUnit, OrderStatus, Provider};
use sea_orm::DbErr;

use crate::domain::ValidationError;
use crate::gateway::GatewayError;
use crate::ids::IdError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("order not found")]
    NotFound,
    #[error("payment attempt not found")]
    AttemptNotFound,
    #[error("out_business_id was already used for an order with different content")]
    IdempotencyConflict,
    /// Names the SKU and the quantity asked for, never the level left: that is the merchant's
    /// stock position, and no client answer carries it.
    #[error("insufficient stock for sku '{sku_id}': {requested} requested")]
    InsufficientStock { sku_id: String, requested: i64 },
    #[error("order is {0}, not pending")]
    NotPending(OrderStatus),
    #[error("order has passed its deadline and is being closed")]
    Expired,
    #[error("provider {0} is not enabled")]
    ProviderUnavailable(Provider),
    #[error("currency {currency} is not accepted by provider {provider}")]
    CurrencyNotAccepted { provider: Provider, currency: Currency },
    #[error("provider call failed")]
    Gateway(#[from] GatewayError),
    #[error("the order changed concurrently; retry")]
    Concurrent,
    #[error("id generation failed")]
    Id(#[from] IdError),
    #[error("database error")]
    Db(#[from] DbErr),
    #[error("the order's actor is unavailable")]
    Unavailable,
    /// In a cluster: another node owns the order's partition (its address, when one does);
    /// the HTTP layer forwards the request there.
    #[error("the order is run by another node")]
    Elsewhere(Option<String>),
    /// In a cluster: this node lost the order's partition; the write was refused.
    #[error("this node no longer owns the order's partition")]
    Fenced,
    #[error("the payment provider could not be reached; the order stays open and will be retried")]
    ProviderUnreachable,
    #[error("the provider cannot close the trade yet (the buyer is paying, or it is too soon); try again shortly")]
    CloseNotPossibleYet,
    /// A refund's own refusals.
    #[error(transparent)]
    Refund(#[from] RefundError),
}

/// Why a refund was refused: the refund family, apart from the order's own errors.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("refund not found")]
    NotFound,
    #[error("out_refund_id was already used for a refund with different content")]
    Conflict,
    #[error("order is {0}; only a paid order (or one paid after close) can be refunded")]
    NotRefundable(OrderStatus),
    #[error("the refund would exceed what was paid: {refundable} minor units are left to refund")]
    ExceedsPaid { refundable: MinorUnit },
}

impl RefundError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RefundError::NotFound => "refund_not_found",
            RefundError::Conflict => "refund_conflict",
            RefundError::NotRefundable(_) => "not_refundable",
            RefundError::ExceedsPaid { .. } => "refund_exceeds_paid",
        }
    }
}

impl OrderError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            OrderError::Validation(_) => "validation",
            OrderError::NotFound => "not_found",
            OrderError::AttemptNotFound => "attempt_not_found",
            OrderError::IdempotencyConflict => "idempotency_conflict",
            OrderError::InsufficientStock { .. } => "insufficient_stock",
            OrderError::NotPending(_) => "not_pending",
            OrderError::Expired => "expired",
            OrderError::ProviderUnavailable(_) => "provider_unavailable",
            OrderError::CurrencyNotAccepted { .. } => "currency_not_accepted",
            OrderError::Gateway(_) => "gateway",
            OrderError::Concurrent => "concurrent",
            OrderError::Id(_) => "id",
            OrderError::Db(_) => "db",
            OrderError::Unavailable => "unavailable",
            OrderError::Elsewhere(_) => "elsewhere",
            OrderError::Fenced => "fenced",
            OrderError::ProviderUnreachable => "provider_unreachable",
            OrderError::CloseNotPossibleYet => "close_not_possible_yet",
            OrderError::Refund(err) => err.kind(),
        }
    }
}
