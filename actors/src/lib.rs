//! The paywarden engine.
//!
//! Everything that decides something about an order lives here; the HTTP facade in the
//! `paywarden` crate parses requests into [`domain`] values and calls in.
//!
//! # Layout
//! - [`domain`]: parsed request values (`NewOrder`, `MerchantId`, `Currency`).
//! - [`orders`]: commands and queries on orders and payment attempts, in transactions.
//! - [`gateway`]: the `Gateway` trait and the providers behind it (the sandbox).
//! - [`stock`]: tracked stock per SKU.
//! - [`ids`]: snowflake ids.
//! - [`error`]: [`OrderError`], the one error type of the commands.

pub mod domain;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod orders;
pub mod stock;

pub use error::OrderError;
pub mod deadline;
pub mod engine;
pub mod order;
pub mod outbox;
pub mod provider;
pub mod registry;
pub mod retry;
