//! The paywarden engine.
//!
//! Everything that decides something about an order lives here; the HTTP facade in the
//! `paywarden` crate parses requests into [`domain`] values and calls the [`engine`].
//!
//! # Layout
//! - [`engine`]: the entry point: routes every change of a live order through its actor.
//! - [`order`]: the `OrderActor` (one per live order), its messages, the expiry rule
//!   (`resolve`) and notification handling (`notify`).
//! - [`registry`]: order id -> running actor.
//! - [`provider`]: the supervised `ProviderActor` (timeouts, rate limit, retries, breaker).
//! - [`gateway`]: the `Gateway` trait and the providers behind it.
//! - [`deadline`]: the deadline index (Redis sorted set, or SQL).
//! - [`outbox`]: the outbox relay, subscribers, webhook signatures, the AMQP sink.
//! - [`orders`]: commands and queries on orders and attempts, and the guarded transitions.
//! - [`domain`]: parsed request values (`NewOrder`, `MerchantId`, `Currency`).
//! - [`stock`]: tracked stock per SKU.
//! - [`ids`]: snowflake ids. [`retry`]: the backoff schedule. [`error`]: [`OrderError`].

pub mod changes;
pub mod deadline;
pub mod domain;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod metrics;
pub mod order;
pub mod outbox;
pub mod provider;
pub mod retry;
pub mod stock;
pub mod store;

pub use error::OrderError;
