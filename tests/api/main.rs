//! Integration tests: black-box over HTTP against a running paywarden, on PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod alerts;
mod auth;
mod bad_input;
mod browser;
mod checkout;
mod cluster;
mod console;
mod dashboard;
mod edge;
mod expiry;
mod health;
mod hidden_chars;
mod idempotency;
mod merchants;
mod migrations;
mod notifications;
mod openapi;
mod orders;
mod outbox;
mod payments;
mod production;
mod providers;
mod reconciliations;
mod refunds;
mod restart;
mod standard_webhooks;
mod throttle;
mod traces;
