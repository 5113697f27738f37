//! Every route, registered in one place and grouped by scope, with auth as scope middleware.
//!
//! [`ENDPOINTS`] is the one list of routes: [`configure`] mounts it, [`mounted`] lists what a
//! deployment mounts, and the OpenAPI document ([`openapi`]) is checked against it by the
//! integration tests, so a route cannot be mounted without being documented or the reverse.
//!
//! # Layout
//! - [`orders`], [`payments`], [`refunds`], [`events`]: the client API (`/v1`, merchant API
//!   key); [`refunds`] also has the operators' refund routes.
//! - [`admin`]: operators (`/admin`, admin token); [`reconciliations`]: the bills compared.
//! - [`webhooks`]: provider notifications (`/webhooks`, provider signatures).
//! - [`sandbox`]: the sandbox provider's buyer and control routes.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`) and its reference page (`/docs`).
//! - [`checkout`]: the buyers' checkout page (`/checkout`, the order's signed link).
//! - [`console`]: the operator console (`/admin/ui`, a session cookie after signing in with
//!   the admin token).
//! - [`html`], [`assets`]: what the two pages share, and their embedded static files.
//! - [`dto`]: wire types.

pub mod admin;
pub mod assets;
pub mod checkout;
pub mod console;
pub mod dto;
pub mod events;
pub mod html;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod reconciliations;
pub mod refunds;
pub mod sandbox;
pub mod webhook_endpoints;
pub mod webhooks;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, HttpRequest, HttpResponse, Route};
use entities::Provider;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{require_admin, require_merchant};
use crate::error::ApiError;

/// Where an endpoint is mounted, which also decides who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// At the root, without credentials: liveness, metrics, the API document.
    Root,
    /// `/v1`: a merchant's API key.
    Client,
    /// `/admin`: the admin token.
    Admin,
    /// `/webhooks`: the provider's own signature; mounted while that provider is enabled.
    Webhook(Provider),
    /// `/webhooks/{provider}/{account_id}`: a merchant's provider account's notifications,
    /// verified with that account's keys; always mounted (accounts come and go at runtime).
    AccountWebhook,
    /// `/sandbox`: the sandbox provider's buyer and control routes; mounted while the sandbox
    /// is enabled, open in the development profile and behind the admin token elsewhere.
    Sandbox,
    /// `/checkout`: the buyers' page and its calls, authorised by the order's checkout link.
    Checkout,
    /// `/admin/ui`: the operator console, a session cookie (its sign-in page excepted).
    Console,
}

impl Scope {
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Root => "",
            Scope::Client => "/v1",
            Scope::Admin => "/admin",
            Scope::Webhook(_) | Scope::AccountWebhook => "/webhooks",
            Scope::Sandbox => "/sandbox",
            Scope::Checkout => "/checkout",
            Scope::Console => "/admin/ui",
        }
    }

    /// Whether a deployment with the `enabled` providers mounts this scope's endpoints.
    pub fn is_mounted(self, enabled: &[Provider]) -> bool {
        match self {
            Scope::Root | Scope::Client | Scope::Admin | Scope::Checkout | Scope::Console | Scope::AccountWebhook => {
                true
            }
            Scope::Webhook(provider) => enabled.contains(&provider),
            Scope::Sandbox => enabled.contains(&Provider::Sandbox),
        }
    }
}

/// One route: method, scope and path, and the handler that serves it.
pub struct Endpoint {
    pub method: Method,
    pub scope: Scope,
    /// Below the scope's prefix, with `{name}` segments (the same syntax as OpenAPI's).
    pub path: &'static str,
    /// Attaches the handler to a route that already matches `method`. A function pointer
    /// rather than the handler itself, so one list can hold handlers of every signature.
    attach: fn(Route) -> Route,
    /// The console's HTML pages and forms are described in the OpenAPI document from this
    /// summary (see `openapi::console_operations`); every other route by its handler's
    /// `#[utoipa::path]`.
    pub summary: Option<&'static str>,
}

impl Endpoint {
    /// The path as clients write it, scope prefix included.
    pub fn full_path(&self) -> String {
        format!("{}{}", self.scope.prefix(), self.path)
    }

    /// Whether the route takes an `Idempotency-Key` ([`crate::idempotency`]): every `POST` of
    /// the client and admin scopes creates or changes something. (`PUT` and `DELETE` are
    /// idempotent by themselves; the checkout page and the console have no API principal.)
    pub fn takes_idempotency_key(&self) -> bool {
        self.method == Method::POST && matches!(self.scope, Scope::Client | Scope::Admin)
    }

    fn route(&self) -> Route {
        (self.attach)(web::method(self.method.clone()))
    }
}

macro_rules! endpoint {
    ($method:ident $scope:expr, $path:literal => $handler:path) => {
        Endpoint {
            method: Method::$method,
            scope: $scope,
            path: $path,
            attach: |route| route.to($handler),
            summary: None,
        }
    };
    ($method:ident $scope:expr, $path:literal => $handler:path, $summary:literal) => {
        Endpoint {
            method: Method::$method,
            scope: $scope,
            path: $path,
            attach: |route| route.to($handler),
            summary: Some($summary),
        }
    };
}

/// Every route the service has. [`configure`] mounts those of the enabled providers.
pub static ENDPOINTS: &[Endpoint] = &[
    endpoint!(GET Scope::Root, "/healthz" => healthz),
    endpoint!(GET Scope::Root, "/metrics" => metrics::handler),
    endpoint!(GET Scope::Root, "/openapi.json" => openapi::document),
    endpoint!(GET Scope::Root, "/docs" => openapi::reference_page),
    endpoint!(GET Scope::Root, "/assets/{name}" => assets::serve),
    endpoint!(POST Scope::Client, "/orders" => orders::create),
    endpoint!(GET Scope::Client, "/orders/{order_no}" => orders::get),
    endpoint!(GET Scope::Client, "/orders/{order_no}/status" => orders::status),
    endpoint!(POST Scope::Client, "/orders/{order_no}/cancel" => orders::cancel),
    endpoint!(GET Scope::Client, "/orders/{order_no}/events" => events::stream),
    endpoint!(POST Scope::Client, "/orders/{order_no}/payments" => payments::create),
    endpoint!(GET Scope::Client, "/payments/{pay_no}/qr.png" => payments::qr_png),
    endpoint!(POST Scope::Client, "/orders/{order_no}/refunds" => refunds::create),
    endpoint!(GET Scope::Client, "/orders/{order_no}/refunds" => refunds::list),
    endpoint!(GET Scope::Client, "/refunds/{refund_no}" => refunds::get),
    endpoint!(POST Scope::Client, "/webhook-endpoints" => webhook_endpoints::create),
    endpoint!(GET Scope::Client, "/webhook-endpoints" => webhook_endpoints::list),
    endpoint!(DELETE Scope::Client, "/webhook-endpoints/{id}" => webhook_endpoints::delete),
    endpoint!(POST Scope::Client, "/webhook-endpoints/{id}/rotate-secret" => webhook_endpoints::rotate_secret),
    endpoint!(POST Scope::Client, "/webhook-endpoints/{id}/test" => webhook_endpoints::test),
    endpoint!(GET Scope::Admin, "/orders" => admin::list_orders),
    endpoint!(GET Scope::Admin, "/orders/{order_no}" => admin::get_order),
    endpoint!(POST Scope::Admin, "/orders/{order_no}/force-close" => admin::force_close),
    endpoint!(POST Scope::Admin, "/orders/{order_no}/accept-payment" => admin::accept_payment),
    endpoint!(POST Scope::Admin, "/orders/{order_no}/refunds" => refunds::admin_create),
    endpoint!(GET Scope::Admin, "/orders/{order_no}/refunds" => refunds::admin_list),
    endpoint!(POST Scope::Admin, "/deadlines/reconcile" => admin::reconcile),
    endpoint!(POST Scope::Admin, "/console-sessions/revoke-all" => admin::revoke_console_sessions),
    endpoint!(GET Scope::Admin, "/cluster" => admin::cluster),
    endpoint!(GET Scope::Admin, "/cluster/orders/{order_no}" => admin::cluster_order),
    endpoint!(POST Scope::Admin, "/subscribers" => admin::add_subscriber),
    endpoint!(GET Scope::Admin, "/subscribers" => admin::list_subscribers),
    endpoint!(DELETE Scope::Admin, "/subscribers/{id}" => admin::remove_subscriber),
    endpoint!(PATCH Scope::Admin, "/subscribers/{id}" => admin::update_subscriber),
    endpoint!(GET Scope::Admin, "/subscribers/{id}/deliveries" => admin::subscriber_deliveries),
    endpoint!(POST Scope::Admin, "/subscribers/{id}/replay" => admin::replay_subscriber),
    endpoint!(GET Scope::Admin, "/events/{event_id}/deliveries" => admin::event_deliveries),
    endpoint!(POST Scope::Admin, "/subscribers/{id}/rotate-secret" => admin::rotate_subscriber_secret),
    endpoint!(GET Scope::Admin, "/deliveries" => admin::list_deliveries),
    endpoint!(POST Scope::Admin, "/deliveries/{id}/redeliver" => admin::redeliver),
    endpoint!(POST Scope::Admin, "/merchants" => admin::create_merchant),
    endpoint!(GET Scope::Admin, "/merchants" => admin::list_merchants),
    endpoint!(GET Scope::Admin, "/merchants/{merchant_id}" => admin::get_merchant),
    endpoint!(POST Scope::Admin, "/merchants/{merchant_id}/disable" => admin::disable_merchant),
    endpoint!(POST Scope::Admin, "/merchants/{merchant_id}/keys" => admin::issue_key),
    endpoint!(GET Scope::Admin, "/merchants/{merchant_id}/keys" => admin::list_keys),
    endpoint!(DELETE Scope::Admin, "/merchants/{merchant_id}/keys/{key_id}" => admin::revoke_key),
    endpoint!(POST Scope::Admin, "/merchants/{merchant_id}/provider-accounts" => admin::add_provider_account),
    endpoint!(GET Scope::Admin, "/merchants/{merchant_id}/provider-accounts" => admin::list_provider_accounts),
    endpoint!(GET Scope::Admin, "/merchants/{merchant_id}/provider-accounts/{account_id}" => admin::get_provider_account),
    endpoint!(PATCH Scope::Admin, "/merchants/{merchant_id}/provider-accounts/{account_id}" => admin::update_provider_account),
    endpoint!(POST Scope::Admin, "/merchants/{merchant_id}/provider-accounts/{account_id}/disable" => admin::disable_provider_account),
    endpoint!(POST Scope::Admin, "/merchants/{merchant_id}/provider-accounts/{account_id}/verify" => admin::verify_provider_account),
    endpoint!(PUT Scope::Admin, "/merchants/{merchant_id}/skus/{sku_id}" => admin::put_sku),
    endpoint!(GET Scope::Admin, "/merchants/{merchant_id}/skus/{sku_id}" => admin::get_sku),
    endpoint!(POST Scope::Admin, "/reconciliations" => reconciliations::start),
    endpoint!(GET Scope::Admin, "/reconciliations" => reconciliations::list),
    endpoint!(GET Scope::Admin, "/reconciliations/{id}" => reconciliations::get),
    endpoint!(POST Scope::Admin, "/reconciliation-items/{id}/resolve" => reconciliations::resolve),
    endpoint!(GET Scope::Admin, "/unmatched-notifications" => admin::list_unmatched),
    endpoint!(POST Scope::Admin, "/unmatched-notifications/{id}/resolve" => admin::resolve_unmatched),
    endpoint!(POST Scope::Webhook(Provider::Sandbox), "/sandbox" => webhooks::sandbox),
    endpoint!(POST Scope::Webhook(Provider::Wechat), "/wechat" => webhooks::wechat),
    endpoint!(POST Scope::Webhook(Provider::Alipay), "/alipay" => webhooks::alipay),
    endpoint!(POST Scope::AccountWebhook, "/sandbox/{account_id}" => webhooks::sandbox_account),
    endpoint!(POST Scope::AccountWebhook, "/wechat/{account_id}" => webhooks::wechat_account),
    endpoint!(POST Scope::AccountWebhook, "/alipay/{account_id}" => webhooks::alipay_account),
    endpoint!(GET Scope::Sandbox, "/trades/{pay_no}" => sandbox::get_trade),
    endpoint!(POST Scope::Sandbox, "/trades/{pay_no}/pay" => sandbox::pay),
    endpoint!(PUT Scope::Sandbox, "/faults" => sandbox::put_faults),
    endpoint!(GET Scope::Checkout, "/{order_no}" => checkout::page),
    endpoint!(GET Scope::Checkout, "/{order_no}/events" => checkout::events),
    endpoint!(POST Scope::Checkout, "/{order_no}/payments" => checkout::start_payment),
    endpoint!(GET Scope::Checkout, "/{order_no}/payments/{pay_no}/qr.png" => checkout::qr_png),
    endpoint!(GET Scope::Console, "" => console::dashboard::dashboard, "The dashboard: activity, success rate, lateness, what waits"),
    endpoint!(GET Scope::Console, "/login" => console::login_form, "The sign-in page"),
    endpoint!(POST Scope::Console, "/login" => console::login, "Sign in with the admin token and your name"),
    endpoint!(POST Scope::Console, "/logout" => console::logout, "Sign out"),
    endpoint!(POST Scope::Console, "/sessions/revoke-all" => console::revoke_all_sessions, "Sign out every console session"),
    endpoint!(GET Scope::Console, "/attention" => console::attention, "What waits for an operator, queue by queue"),
    endpoint!(GET Scope::Console, "/orders" => console::lists::orders, "Orders: filtered, newest first, stuck and anomaly orders heading the first page"),
    endpoint!(GET Scope::Console, "/search" => console::search, "Find an order by any of its ids"),
    endpoint!(GET Scope::Console, "/orders/{order_no}" => console::order, "An order: items, attempts, log, actions"),
    endpoint!(POST Scope::Console, "/orders/{order_no}/force-close" => console::force_close, "Force-close an order"),
    endpoint!(POST Scope::Console, "/orders/{order_no}/accept-payment" => console::accept_payment, "Accept a payment of another amount"),
    endpoint!(POST Scope::Console, "/orders/{order_no}/refund" => console::refund, "Refund a payment of an order, after a confirmation"),
    endpoint!(POST Scope::Console, "/deadlines/reconcile" => console::reconcile, "Reconcile the deadline index"),
    endpoint!(GET Scope::Console, "/deliveries" => console::lists::deliveries, "Webhook deliveries: filtered, newest first, dead ones by default"),
    endpoint!(GET Scope::Console, "/refunds" => console::lists::refunds, "Refunds: filtered, newest first"),
    endpoint!(POST Scope::Console, "/deliveries/{id}/redeliver" => console::redeliver, "Redeliver a dead delivery"),
    endpoint!(GET Scope::Console, "/subscribers" => console::subscribers, "Subscribers"),
    endpoint!(POST Scope::Console, "/subscribers" => console::add_subscriber, "Add a webhook subscriber"),
    endpoint!(POST Scope::Console, "/subscribers/{id}/remove" => console::remove_subscriber, "Remove a subscriber"),
    endpoint!(GET Scope::Console, "/subscribers/{id}" => console::webhooks::subscriber, "A subscriber's delivery log, replay and test"),
    endpoint!(POST Scope::Console, "/subscribers/{id}/test" => console::webhooks::test, "Send a test ping to a subscriber"),
    endpoint!(POST Scope::Console, "/subscribers/{id}/replay" => console::webhooks::replay, "Replay a range of a subscriber's events"),
    endpoint!(GET Scope::Console, "/merchants" => console::merchants::list, "Merchants"),
    endpoint!(POST Scope::Console, "/merchants" => console::merchants::create, "Onboard a merchant"),
    endpoint!(GET Scope::Console, "/merchants/{merchant_id}" => console::merchants::merchant, "A merchant: its keys and provider accounts"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/disable" => console::merchants::disable, "Disable a merchant"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/keys" => console::merchants::issue_key, "Issue a merchant a key, shown once"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/keys/{key_id}/revoke" => console::merchants::revoke_key, "Revoke a merchant's key"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/accounts" => console::merchants::add_account, "Attach a provider account to a merchant"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/accounts/{account_id}/verify" => console::merchants::verify_account, "Verify a provider account against the provider"),
    endpoint!(POST Scope::Console, "/merchants/{merchant_id}/accounts/{account_id}/disable" => console::merchants::disable_account, "Disable a provider account"),
    endpoint!(GET Scope::Console, "/skus" => console::skus, "Tracked SKUs and their stock"),
    endpoint!(POST Scope::Console, "/skus" => console::set_stock, "Set a merchant's stock of a SKU"),
    endpoint!(GET Scope::Console, "/reconciliations" => console::reconciliations::runs, "Reconciliation runs, newest day first"),
    endpoint!(POST Scope::Console, "/reconciliations" => console::reconciliations::reconcile_day, "Reconcile a provider's day (again)"),
    endpoint!(GET Scope::Console, "/reconciliations/{id}" => console::reconciliations::run, "A reconciliation run and its differences"),
    endpoint!(POST Scope::Console, "/reconciliation-items/{id}/resolve" => console::reconciliations::resolve, "Resolve a reconciliation difference"),
    endpoint!(GET Scope::Console, "/unmatched" => console::unmatched, "Unresolved unmatched notifications"),
    endpoint!(POST Scope::Console, "/unmatched/{id}/resolve" => console::resolve_unmatched, "Resolve an unmatched notification"),
];

/// The endpoints a deployment with the `enabled` providers mounts.
pub fn mounted(enabled: &[Provider]) -> impl Iterator<Item = &'static Endpoint> + '_ {
    ENDPOINTS.iter().filter(|endpoint| endpoint.scope.is_mounted(enabled))
}

/// A scope holding the mounted endpoints that `belongs` picks.
fn scope_of(prefix: &str, enabled: &[Provider], belongs: impl Fn(Scope) -> bool) -> actix_web::Scope {
    mounted(enabled)
        .filter(|endpoint| belongs(endpoint.scope))
        .fold(web::scope(prefix), |scope, endpoint| {
            scope.route(endpoint.path, endpoint.route())
        })
}

/// Registers the routes of [`ENDPOINTS`]; the webhook (and sandbox) routes of the `enabled`
/// providers only. The sandbox's control routes (mark a trade paid, read it, inject faults)
/// need the admin token unless `sandbox_open` (the development profile, where a developer
/// plays the buyer).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize, enabled: &[Provider], sandbox_open: bool) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(json_error),
    )
    .app_data(web::PathConfig::default().error_handler(path_error))
    .app_data(web::QueryConfig::default().error_handler(query_error));
    for endpoint in mounted(enabled).filter(|endpoint| endpoint.scope == Scope::Root) {
        cfg.route(endpoint.path, endpoint.route());
    }
    // Before `/admin`, whose bearer-token middleware would otherwise take the console's paths.
    cfg.service(
        scope_of("/admin/ui", enabled, |scope| scope == Scope::Console).app_data(
            web::FormConfig::default()
                .limit(max_body_bytes)
                .error_handler(form_error),
        ),
    )
    .service(scope_of("/checkout", enabled, |scope| scope == Scope::Checkout));
    // The last `wrap` runs first: authentication, then the idempotency key (scoped by who
    // authenticated).
    let keyed = web::Data::new(crate::idempotency::KeyedRoutes(
        ENDPOINTS
            .iter()
            .filter(|endpoint| endpoint.takes_idempotency_key())
            .map(|endpoint| (endpoint.method.clone(), endpoint.full_path()))
            .collect(),
    ));
    // App-wide: the scopes' middleware runs before a scope's own data is in place.
    cfg.app_data(keyed);
    cfg.service(
        scope_of("/v1", enabled, |scope| scope == Scope::Client)
            .wrap(from_fn(crate::idempotency::idempotency))
            .wrap(from_fn(require_merchant)),
    )
    .service(
        scope_of("/admin", enabled, |scope| scope == Scope::Admin)
            .wrap(from_fn(crate::idempotency::idempotency))
            .wrap(from_fn(require_admin)),
    )
    .service(
        scope_of("/webhooks", enabled, |scope| {
            matches!(scope, Scope::Webhook(_) | Scope::AccountWebhook)
        })
        .app_data(web::PayloadConfig::new(max_body_bytes)),
    );
    if Scope::Sandbox.is_mounted(enabled) {
        cfg.service(
            scope_of("/sandbox", enabled, |scope| scope == Scope::Sandbox)
                .wrap(Condition::new(!sandbox_open, from_fn(require_admin))),
        );
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: the process answers (it checks nothing else).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "The process answers HTTP", body = Health)),
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

use crate::operations::order_id;

/// Fallback for unknown routes: the error envelope, not an empty 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: err.to_string(),
        },
        JsonPayloadError::ContentType => ApiError::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json".to_owned(),
        },
        JsonPayloadError::Deserialize(inner) => {
            ApiError::bad_request("invalid_json", format!("invalid request body: {inner}"))
        }
        _ => ApiError::bad_request("invalid_json", err.to_string()),
    };
    api.into()
}

/// A console form that cannot be read: a page that says so (the console is for people).
fn form_error(err: actix_web::error::UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    let message = format!("The form could not be read: {err}. Reload the page and try again.");
    actix_web::error::InternalError::from_response(
        err,
        html::message_page(StatusCode::BAD_REQUEST, "The form could not be read", &message),
    )
    .into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", err.to_string()).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", err.to_string()).into()
}
