//! The order store: commands and queries on orders and their attempts, against the database.
//!
//! Every change is one transaction guarded by the expected current status, writing the row,
//! an `order_logs` row and (for what downstream cares about) an `outbox` row together.
//!
//! # Layout
//! - [`accounts`]: merchants' provider accounts, their secrets sealed.
//! - [`activity`]: the dashboard's activity counts, rolled up from the log.
//! - [`create`]: idempotent creation with stock reservation.
//! - [`fence`]: the fencing tokens of a cluster's partitions.
//! - [`attempts`]: payment attempts (a new provider trade each).
//! - [`follow_up`]: trades watched after their order stopped waiting for them.
//! - [`query`]: reads, scoped by merchant for clients.
//! - [`lists`]: the operators' filtered lists, a keyset page at a time.
//! - [`merchants`]: merchants and their client API keys (digests only).
//! - [`idempotency`]: replay / conflict decision for `out_business_id`.
//! - [`idempotency_keys`]: the HTTP `Idempotency-Key`s: claim, lease, stored response, expiry.
//! - [`journal`]: the `order_logs` and `outbox` rows every change writes.
//! - [`unmatched`]: authentic notifications for trades paywarden does not know.
//! - [`refunds`]: refunds, checked against what is left of a payment, and their outcomes.
//! - [`transitions`]: the named changes ([`OrderUpdate`], [`AttemptUpdate`]) and their guards.

pub mod accounts;
pub mod activity;
pub mod attempts;
pub mod create;
pub mod expire_batch;
pub mod fence;
pub mod follow_up;
pub mod gauges;
pub mod idempotency;
pub mod idempotency_keys;
pub mod journal;
pub mod lists;
pub mod merchants;
pub mod payment;
pub mod query;
pub mod refunds;
pub mod transitions;
pub mod unmatched;

pub use create::{create_order, Created};
pub use journal::{EventType, LogEvent, Operator};
pub use payment::{record_payment, PaymentDecision, PaymentRecorded};
pub use query::OrderDetail;
pub use transitions::{Applied, AttemptCloseReason, AttemptUpdate, CloseReason, OrderUpdate, Receipt};
