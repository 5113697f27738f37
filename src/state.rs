//! What every handler shares: one value per application, built by
//! [`crate::startup::Application::build`] and handed to the handlers as `web::Data<AppState>`.
//! Its own module, so that the routes read it without importing the start-up (which imports
//! the routes).

use std::sync::Arc;

use actors::domain::OrderLimits;
use actors::engine::Engine;
use actors::gateway::Gateways;
use entities::Provider;
use sea_orm::DatabaseConnection;

use crate::links::Links;
use crate::metrics::Metrics;

/// What every handler shares.
pub struct AppState {
    /// For reads; every change goes through the engine.
    pub db: DatabaseConnection,
    pub engine: Engine,
    /// For verifying notifications (pure); calls to providers go through the engine.
    pub gateways: Gateways,
    pub limits: OrderLimits,
    /// Absolute links handed to clients (QR images, checkout pages).
    pub links: Links,
    /// The providers this deployment has enabled, in a stable order.
    pub providers: Vec<Provider>,
    /// The operator console's sign-in key and session length.
    pub console: crate::routes::console::session::ConsoleKeys,
    /// `outbox.allow_private_targets`: whether subscribers may point at private addresses.
    pub allow_private_targets: bool,
    /// The `outbox.rotation_overlap_*` settings: what a secret rotation may ask for.
    pub overlap_bounds: actors::outbox::subscribers::OverlapBounds,
    /// `outbox.replay_max_events`.
    pub replay_max_events: u64,
    /// What a merchant's test ping is sent with: the relay's kind of client and settings.
    pub webhook_sender: WebhookSender,
    /// How a reconciliation started by hand waits for its bill.
    pub reconciliation: actors::reconcile::ReconcileSettings,
    pub metrics: Arc<Metrics>,
    /// Who may read `/metrics`.
    pub metrics_access: crate::metrics::MetricsAccess,
    /// How often an open dashboard reloads its figures (`dashboard.page_refresh_seconds`).
    pub dashboard_refresh: std::time::Duration,
    /// The live status streams of this node.
    pub streams: crate::streams::StreamHub,
    /// The client keys and the admin token; told to forget its cached answers when a key is
    /// revoked or a merchant disabled here.
    pub credentials: Arc<crate::auth::Credentials>,
    /// Seals and opens the provider accounts' secrets; `None` when `secrets.master_key` is
    /// not set (no account can be stored).
    pub vault: Option<Arc<actors::vault::Vault>>,
    /// Where a provider account's endpoints may point (`https://` only in production).
    pub account_policy: actors::gateway::account::EndpointPolicy,
    /// The client provider calls go out with (no redirects, bounded connects).
    pub provider_http: reqwest::Client,
    /// The merchants' provider accounts' gateways and actors (built on first use), shared
    /// with the engine's provider client.
    pub accounts: Arc<actors::provider::accounts::AccountProviders>,
}

/// The client and settings webhook deliveries go out with, for a test ping sent from a request.
pub struct WebhookSender {
    pub http: reqwest::Client,
    pub settings: actors::outbox::RelaySettings,
}
