//! paywarden: payment orchestration over actix-web.
//!
//! This crate is the HTTP facade and the wiring; the decisions live in the `actors` crate and
//! the rows in `entities`. `main.rs` only parses the command line and calls in here, so the
//! integration tests build exactly the same application.
//!
//! # Layout
//! - [`config`]: layered, typed settings.
//! - [`startup`]: database, migrations, gateways, the HTTP server.
//! - [`routes`]: handlers and wire types, registered in one place; the buyers' checkout page
//!   and the operator console are routes too.
//! - [`links`]: absolute links handed out, and the signed checkout links.
//! - [`auth`]: API-key and admin-token middleware.
//! - [`client_addr`]: the client's address (the socket peer, or behind a trusted proxy its
//!   `X-Forwarded-For`).
//! - [`throttle`]: limits on refused credentials per client address.
//! - [`error`]: the one HTTP error type.
//! - [`forward`]: a cluster node forwards requests for another node's orders to it.
//! - [`idempotency`]: `Idempotency-Key` on the routes that create or change something.
//! - [`metrics`]: Prometheus metrics.
//! - [`telemetry`]: logging set-up.
//!
//! The WeChat Pay / Alipay simulator and local key generation are a separate crate,
//! `paywarden-sim` (tests/sim), which only the integration tests depend on.

pub mod auth;
pub mod background;
pub mod client_addr;
pub mod config;
pub mod edge;
pub mod error;
pub mod forward;
pub mod idempotency;
pub mod links;
pub mod metrics;
pub mod operations;
pub mod routes;
pub mod startup;
pub mod state;
pub mod streams;
pub mod telemetry;
pub mod throttle;
