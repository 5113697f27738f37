//! Order commands and queries against the database.
//!
//! # Layout
//! - [`create`]: idempotent creation with stock reservation.
//! - [`attempts`]: payment attempts (a new provider trade each).
//! - [`query`]: reads, scoped by merchant for clients.
//! - [`idempotency`]: replay / conflict decision for `out_business_id`.
//! - [`journal`]: the `order_logs` and `outbox` rows every change writes.

pub mod attempts;
pub mod create;
pub mod idempotency;
pub mod journal;
pub mod query;
pub mod transitions;

pub use create::{create_order, Created};
pub use journal::Operator;
pub use query::OrderDetail;
