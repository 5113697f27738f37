//! sea-orm entities of paywarden.
//!
//! One module per table, shaped like `sea-orm-cli` output, plus the typed ids, money and status
//! enums the rows are made of. This crate knows nothing of HTTP or actors: it is the shape of
//! the data and nothing else.
//!
//! # Layout
//! - [`types`]: `OrderId`, `PayNo`, `MinorUnit` (private fields, validating constructors),
//!   `Currency` and the string-backed status and kind enums.
//! - one module per table: [`orders`], [`idempotency_keys`], [`console_sessions`], [`order_items`], [`payment_attempts`], [`order_logs`],
//!   [`outbox`], [`outbox_deliveries`], [`delivery_attempts`], [`subscribers`], [`subscriber_secrets`], [`webhook_receipts`], [`skus`],
//!   [`unmatched_notifications`], [`refunds`], [`reconciliation_runs`], [`reconciliation_items`],
//!   [`activity_counts`], [`activity_rollup`].
//! - [`prelude`]: every `Entity` under its own name.

pub mod activity_counts;
pub mod activity_rollup;
pub mod console_sessions;
pub mod delivery_attempts;
pub mod idempotency_keys;
pub mod merchant_keys;
pub mod merchants;
pub mod order_items;
pub mod order_logs;
pub mod orders;
pub mod outbox;
pub mod outbox_deliveries;
pub mod payment_attempts;
pub mod prelude;
pub mod provider_accounts;
pub mod reconciliation_items;
pub mod reconciliation_runs;
pub mod refunds;
pub mod skus;
pub mod subscriber_secrets;
pub mod subscribers;
pub mod types;
pub mod unmatched_notifications;
pub mod webhook_receipts;

pub use types::{
    AttemptStatus, Currency, DeliveryStatus, IdempotencyStatus, InvalidAmount, InvalidId, MinorUnit, OrderId,
    OrderStatus, PayNo, Provider, RefundNo, RefundStatus, SignatureScheme, SubscriberKind,
};
