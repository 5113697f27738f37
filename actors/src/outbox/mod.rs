//! Reliable downstream notification: the outbox relay, its subscribers and sinks.
//!
//! # Layout
//! - [`relay`]: the `OutboxRelay` actor (fan-out, leased claims, delivery, retries).
//! - [`subscribers`]: admin operations on subscribers and deliveries.
//! - [`headers`]: the custom headers a subscriber may ask for, and those it may not.
//! - [`signature`]: the HMAC signature of outgoing webhooks (and how a receiver checks it).
//! - [`amqp`]: the AMQP sink with publisher confirms.

pub mod amqp;
pub mod headers;
pub mod relay;
pub mod signature;
pub mod subscribers;
pub mod target;

pub use relay::{ConfiguredWebhook, Drain, OutboxRelay, RelaySettings, Wake};
