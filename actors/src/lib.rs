//! The paywarden engine.
//!
//! Everything that decides something about an order lives here; the HTTP facade in the
//! `paywarden` crate parses requests into [`domain`] values and calls the [`engine`].
//!
//! Dependencies point one way: `engine` -> `order` -> (`store`, `provider`, `deadline`,
//! `changes`) -> (`gateway`, `domain`, `ids`, `entities`). Nothing below the engine imports it.
//!
//! # Layout
//! - [`engine`]: the facade on top: takes ids, routes every change of a live order through its
//!   actor; start-up recovery of pending orders.
//! - [`order`]: the `OrderActor` (one per live order), its registry and dependencies, and the
//!   expiry rule: [`order::expiry`] decides, `order::pass` carries it out.
//! - [`store`]: commands and queries on orders and attempts, and the guarded transitions
//!   ([`store::OrderUpdate`], [`store::AttemptUpdate`]).
//! - [`provider`]: the supervised `ProviderActor` (timeouts, rate limit, retries, breaker) and
//!   the [`provider::ProviderClient`] order code reaches it through.
//! - [`gateway`]: the `Gateway` trait and the providers behind it (sandbox, WeChat Pay, Alipay).
//! - [`refund`]: the refund worker (every pending refund stepped to a final status, across
//!   restarts) and refund notifications.
//! - [`reconcile`]: the providers' daily bills compared with paywarden's records, and the
//!   worker that runs it daily.
//! - [`deadline`]: the deadline index (Redis sorted set, or SQL).
//! - [`changes`]: the change feed (outbox relay wake-ups, live status).
//! - [`cluster`]: partitions, leases, fencing tokens, the change bus between nodes.
//! - [`redis_conn`]: one Redis connection for a single server or a Redis Cluster.
//! - [`outbox`]: the outbox relay, subscribers, webhook signatures, the AMQP sink.
//! - [`domain`]: parsed request values (`NewOrder`, `MerchantId`, `Currency`).
//! - [`stock`]: tracked stock per merchant and SKU.
//! - [`activity`]: the poller keeping the dashboard's activity counts.
//! - [`metrics`]: the engine's Prometheus metrics.
//! - [`trace`]: the trace context carried into actor messages and out on HTTP calls.
//! - [`ids`]: snowflake ids. [`retry`]: the backoff schedule. [`error`]: [`OrderError`].

pub mod activity;
pub mod changes;
pub mod cluster;
pub mod deadline;
pub mod domain;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod metrics;
pub mod order;
pub mod outbox;
pub mod poller;
pub mod provider;
pub mod reconcile;
pub mod redis_conn;
pub mod refund;
pub mod retry;
pub mod settings;
pub mod stock;
pub mod store;
pub mod trace;
pub mod vault;

pub use error::OrderError;
