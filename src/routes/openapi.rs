//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! wire types' `ToSchema` derives, served at `GET /openapi.json`; and a reference page that
//! renders it, at `GET /docs`.
//!
//! Each operation lists the error codes it can answer in its `x-error-codes` extension. The
//! codes answered before the handler runs are derived from what the operation declares (its
//! credential, JSON body, query and path parameters, `Idempotency-Key`: `add_extractor_codes`,
//! `idempotency_key_parameters`); the handler's attribute names only those its own code
//! answers. The error responses are built from that list and the catalogue
//! [`crate::error::ERROR_CODES`]: one response per status, whose schema is the error envelope
//! with `code` narrowed to the codes listed, and one example per code. Writing them out by hand
//! in every attribute would let the statuses drift from what [`crate::error::ApiError`] answers.
//!
//! A deployment serves the document of what it mounts: the routes of disabled providers are
//! left out, and the sandbox routes say whether they take the admin token here.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use actors::domain::OrderLimits;
use base64::Engine as _;
use entities::Provider;
use sha2::{Digest, Sha256};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{Scope, ENDPOINTS};
use crate::error::{error_code, ErrorBody, ErrorCode};

/// The extension in which an operation lists its error codes.
pub const ERROR_CODES_EXTENSION: &str = "x-error-codes";
/// Names of the security schemes, as the operations' `security(..)` attributes use them.
pub const MERCHANT_API_KEY: &str = "merchant_api_key";
pub const ADMIN_TOKEN: &str = "admin_token";
pub const CONSOLE_SESSION: &str = "console_session";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paywarden",
        description = "Payment orchestration: orders, QR payment attempts at WeChat Pay, Alipay or a built-in sandbox, and an expiry rule that never trusts callbacks alone.\n\nBodies are JSON. Money is an integer number of the currency's minor unit (`format: int64`); `order_no` and `pay_no` are decimal strings. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"?}}`: each operation lists the codes it can answer; server-side failures carry only a `request_id`, under which the cause is logged. Bad input gets a 4xx and writes nothing.\n\nEvery `POST` of `/v1` and `/admin` takes an optional `Idempotency-Key` header: the first answer is stored for 24 hours and replayed to every retry of the same request with that key. An answer that asks to be retried (5xx, or `Retry-After`) is not stored: retry it with the same key."
    ),
    paths(
        super::healthz,
        super::metrics::handler,
        document,
        reference_page,
        super::orders::create,
        super::orders::get,
        super::orders::status,
        super::orders::cancel,
        super::events::stream,
        super::payments::create,
        super::payments::qr_png,
        super::webhook_endpoints::create,
        super::webhook_endpoints::list,
        super::webhook_endpoints::delete,
        super::webhook_endpoints::rotate_secret,
        super::webhook_endpoints::test,
        super::refunds::create,
        super::refunds::list,
        super::refunds::get,
        super::refunds::admin_create,
        super::refunds::admin_list,
        super::admin::list_orders,
        super::admin::get_order,
        super::admin::force_close,
        super::admin::accept_payment,
        super::admin::reconcile,
        super::admin::revoke_console_sessions,
        super::admin::cluster,
        super::admin::cluster_order,
        super::admin::add_subscriber,
        super::admin::list_subscribers,
        super::admin::remove_subscriber,
        super::admin::update_subscriber,
        super::admin::subscriber_deliveries,
        super::admin::replay_subscriber,
        super::admin::event_deliveries,
        super::admin::rotate_subscriber_secret,
        super::admin::list_deliveries,
        super::admin::redeliver,
        super::admin::create_merchant,
        super::admin::list_merchants,
        super::admin::get_merchant,
        super::admin::disable_merchant,
        super::admin::issue_key,
        super::admin::list_keys,
        super::admin::revoke_key,
        super::admin::add_provider_account,
        super::admin::list_provider_accounts,
        super::admin::get_provider_account,
        super::admin::update_provider_account,
        super::admin::disable_provider_account,
        super::admin::verify_provider_account,
        super::admin::put_sku,
        super::admin::get_sku,
        super::reconciliations::start,
        super::reconciliations::list,
        super::reconciliations::get,
        super::reconciliations::resolve,
        super::admin::list_unmatched,
        super::admin::resolve_unmatched,
        super::webhooks::sandbox,
        super::webhooks::wechat,
        super::webhooks::alipay,
        super::webhooks::sandbox_account,
        super::webhooks::wechat_account,
        super::webhooks::alipay_account,
        super::sandbox::get_trade,
        super::sandbox::pay,
        super::sandbox::put_faults,
        super::checkout::page,
        super::checkout::events,
        super::checkout::start_payment,
        super::checkout::qr_png,
        super::assets::serve,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "orders", description = "Merchants' orders (`/v1`, merchant API key)"),
        (name = "payments", description = "Payment attempts and their QR codes (`/v1`, merchant API key)"),
        (name = "refunds", description = "Refunds of paid orders (`/v1`, merchant API key)"),
        (name = "admin", description = "Operators (`/admin`, admin token)"),
        (name = "webhooks", description = "Provider notifications, authenticated by each provider's signature"),
        (name = "sandbox", description = "The built-in sandbox provider: play the buyer, inject faults. Mounted while the sandbox is enabled (never in the production profile)"),
        (name = "checkout", description = "The buyers' checkout page and its calls, authorised by the order's checkout link (`checkout_url`, a token in `t`)"),
        (name = "console", description = "The operator console (`/admin/ui`): HTML pages and forms for people, behind a session cookie"),
        (name = "pages", description = "Static files of the checkout page and the console"),
        (name = "operations", description = "Liveness, metrics and this document; no credentials"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            MERCHANT_API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <api key>`: a merchant's client key (`auth.merchant_keys`). Every `/v1` route; a merchant sees its own orders only.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CONSOLE_SESSION,
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    super::console::session::COOKIE,
                    "The operator console's session cookie, set by `POST /admin/ui/login` (admin token and a name): HttpOnly, SameSite=Strict, signed, expiring after `console.session_seconds`.",
                ),
            )),
        );
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <admin token>` (`auth.admin_token`). Every `/admin` route, and the sandbox routes outside the development profile; a client key is not enough.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document a deployment serves: with the `enabled` providers, the sandbox `sandbox_open`
/// or not, and the configured bounds of order creation.
pub fn build(enabled: &[Provider], sandbox_open: bool, limits: &OrderLimits) -> Document {
    let mut doc = ApiDoc::openapi();
    console_operations(&mut doc);
    idempotency_key_parameters(&mut doc);
    for endpoint in ENDPOINTS.iter().filter(|endpoint| !endpoint.scope.is_mounted(enabled)) {
        let path = endpoint.full_path();
        if let Some(item) = doc.paths.paths.get_mut(&path) {
            if let Some(slot) = operation_slot(item, endpoint.method.as_str()) {
                *slot = None;
            }
            if operations_mut(item).next().is_none() {
                doc.paths.paths.shift_remove(&path);
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let sandbox = path.starts_with(Scope::Sandbox.prefix());
        for operation in operations_mut(item) {
            if sandbox && sandbox_open {
                open_sandbox_operation(operation);
            }
            add_extractor_codes(path, operation);
            add_error_responses(operation);
            write_links_in_camel_case(operation);
        }
    }
    if let Some(components) = doc.components.as_mut() {
        apply_limits(components, limits);
    }
    doc
}

/// The console's pages and forms, from their summaries in [`ENDPOINTS`]: HTML for people, so
/// each is described by what it answers rather than by a schema. Forms are
/// `application/x-www-form-urlencoded` and carry the session's `csrf` field.
fn console_operations(doc: &mut Document) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::Required;

    let html = || {
        ContentBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let page = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("text/html", html())
    };
    for endpoint in ENDPOINTS.iter().filter(|endpoint| endpoint.scope == Scope::Console) {
        let Some(summary) = endpoint.summary else { continue };
        let path = endpoint.full_path();
        let post = endpoint.method == actix_web::http::Method::POST;
        let sign_in = endpoint.path == "/login";
        let operation_id = format!(
            "console_{}_{}",
            endpoint.method.as_str().to_lowercase(),
            endpoint
                .path
                .trim_matches('/')
                .replace(['/', '-'], "_")
                .replace(['{', '}'], "")
        );
        let mut operation = OperationBuilder::new()
            .tag("console")
            .summary(Some(summary))
            .operation_id(Some(operation_id.trim_end_matches('_')));
        for segment in endpoint.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
        }
        if post {
            let form = ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build();
            operation = operation
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/x-www-form-urlencoded", form)
                        .required(Some(Required::True))
                        .build(),
                ))
                .response(
                    "303",
                    ResponseBuilder::new().description("Done: to the page that shows the result"),
                )
                .response("200", page("The page again, with the result"))
                .response("400", page("The form could not be read"))
                .response(
                    "403",
                    page("The form did not carry the session's CSRF token, or came from another origin"),
                )
                .response(
                    "422",
                    page("Refused: the page again, with the reason and the error code"),
                );
        } else {
            operation = operation.response("200", page("The page"));
        }
        if sign_in {
            operation = operation.response("401", page("Not the admin token"));
        } else {
            operation = operation
                .response(
                    "303",
                    ResponseBuilder::new().description("Not signed in: to the sign-in page"),
                )
                .security(SecurityRequirement::new(CONSOLE_SESSION, Vec::<String>::new()));
            if !post {
                operation = operation.response("404", page("Nothing of that name"));
            }
        }
        let method = if post { HttpMethod::Post } else { HttpMethod::Get };
        doc.paths.add_path_operation(path, vec![method], operation.build());
    }
}

/// The error codes every route that takes an `Idempotency-Key` may answer because of it.
const IDEMPOTENCY_ERROR_CODES: &[&str] = &[
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "idempotency_key_in_use",
    "payload_too_large",
    "internal_error",
];

/// The `Idempotency-Key` header on every route that takes one
/// ([`super::Endpoint::takes_idempotency_key`]), with the error codes it brings.
fn idempotency_key_parameters(doc: &mut Document) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::Required;

    for endpoint in ENDPOINTS.iter().filter(|endpoint| endpoint.takes_idempotency_key()) {
        let Some(operation) = doc
            .paths
            .paths
            .get_mut(&endpoint.full_path())
            .and_then(|item| operation_slot(item, endpoint.method.as_str()))
            .and_then(Option::as_mut)
        else {
            continue;
        };
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(actors::store::idempotency_keys::MAX_KEY_BYTES))
            // Printable ASCII; no space first or last (HTTP drops it).
            .pattern(Some("^[!-~]([ -~]{0,253}[!-~])?$"));
        let parameter = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the request safe to retry (Stripe's semantics). The first response with this key is stored for 24 hours, per merchant (or for the operators), on every node, and every retry of the same request (method, path, query and body) gets it back with `Idempotent-Replayed: true`, doing nothing. The same key with another request is `409 idempotency_key_reused`; while the first request is still running, `409 idempotency_key_in_use` with `Retry-After`. An answer that asks to be retried (5xx, or `Retry-After`) is not stored: retry with the same key and the request runs again.",
            ))
            .schema(Some(schema))
            .build();
        operation.parameters.get_or_insert_with(Vec::new).push(parameter);
        add_codes(operation, IDEMPOTENCY_ERROR_CODES.iter().copied());
    }
}

/// Adds `codes` to the operation's [`ERROR_CODES_EXTENSION`], each once.
fn add_codes<'a>(operation: &mut Operation, codes: impl IntoIterator<Item = &'a str>) {
    let listed = operation
        .extensions
        .get_or_insert_with(Default::default)
        .entry(ERROR_CODES_EXTENSION.to_owned())
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(listed) = listed.as_array_mut() {
        for code in codes {
            if !listed.iter().any(|known| known == code) {
                listed.push(serde_json::Value::from(code));
            }
        }
    }
}

/// utoipa 5.5 serializes a response's `links` with snake_case field names (`operation_id`),
/// which OpenAPI tools do not read; so the links written in the `#[utoipa::path]` attributes
/// are moved into the response's extensions (serialized flat, beside `content`) under their
/// proper names.
fn write_links_in_camel_case(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else { continue };
        if response.links.is_empty() {
            continue;
        }
        let links: serde_json::Map<String, serde_json::Value> = std::mem::take(&mut response.links)
            .into_iter()
            .filter_map(|(name, link)| {
                let RefOr::T(link) = link else { return None };
                let mut object = serde_json::Map::new();
                if !link.operation_id.is_empty() {
                    object.insert("operationId".to_owned(), link.operation_id.into());
                }
                if !link.operation_ref.is_empty() {
                    object.insert("operationRef".to_owned(), link.operation_ref.into());
                }
                if !link.parameters.is_empty() {
                    object.insert("parameters".to_owned(), link.parameters.into_iter().collect());
                }
                if !link.description.is_empty() {
                    object.insert("description".to_owned(), link.description.into());
                }
                Some((name, object.into()))
            })
            .collect();
        response
            .extensions
            .get_or_insert_with(Default::default)
            .insert("links".to_owned(), links.into());
    }
}

/// Writes the configured `orders.*` bounds into the order request schemas. An item's amount
/// and the order's total are bounded too (422 `amount_too_large`), which no field's schema can
/// say: the descriptions do.
fn apply_limits(components: &mut Components, limits: &OrderLimits) {
    let max_total = limits.max_total.get();
    if let Some(Schema::Object(ttl)) = property(components, "CreateOrderBody", "ttl_seconds") {
        ttl.minimum = Some(limits.min_ttl.as_secs().into());
        ttl.maximum = Some(limits.max_ttl.as_secs().into());
    }
    if let Some(Schema::Array(items)) = property(components, "CreateOrderBody", "items") {
        items.max_items = Some(limits.max_items);
    }
    for field in ["unit_price", "quantity"] {
        if let Some(Schema::Object(number)) = property(components, "CreateItemBody", field) {
            number.maximum = Some(max_total.into());
        }
    }
}

/// The inline schema of a property of a component schema.
fn property<'a>(components: &'a mut Components, schema: &str, property: &str) -> Option<&'a mut Schema> {
    let RefOr::T(Schema::Object(object)) = components.schemas.get_mut(schema)? else {
        return None;
    };
    match object.properties.get_mut(property)? {
        RefOr::T(schema) => Some(schema),
        RefOr::Ref(_) => None,
    }
}

/// In the development profile the sandbox routes take no credentials.
fn open_sandbox_operation(operation: &mut Operation) {
    operation.security = None;
    let note = "This deployment (development profile) serves it without credentials.";
    operation.description = Some(match operation.description.take() {
        Some(description) => format!("{description}\n\n{note}"),
        None => note.to_owned(),
    });
}

/// The codes an operation answers before its handler runs, read from what the operation
/// declares, so a handler's own list names only what its own code answers:
/// - a bearer credential (an API key or the admin token; the console's session sends people
///   to its sign-in page instead): `unauthorized`, and `too_many_failures`
///   ([`crate::throttle`]);
/// - a JSON body: the refusals of the app-wide `JsonConfig` ([`super::configure`]) and
///   `request_timeout` when the body does not arrive in time ([`crate::edge`]). Provider
///   notifications are read as raw bytes (their signature covers them): only the deadline;
/// - query parameters: `invalid_query` (the app-wide `QueryConfig`);
/// - a numeric path parameter: `invalid_path` (the app-wide `PathConfig`; a text one reaches
///   the handler, which answers `not_found` for what it does not know).
fn add_extractor_codes(path: &str, operation: &mut Operation) {
    let mut derived: Vec<&str> = Vec::new();
    let security = serde_json::to_value(&operation.security).unwrap_or_default();
    let bearer = |scheme: &str| {
        security
            .as_array()
            .is_some_and(|requirements| requirements.iter().any(|requirement| requirement.get(scheme).is_some()))
    };
    if bearer(MERCHANT_API_KEY) || bearer(ADMIN_TOKEN) {
        derived.extend(["unauthorized", "too_many_failures"]);
    }
    if operation.request_body.is_some() {
        if path.starts_with(Scope::Webhook(Provider::Sandbox).prefix()) {
            derived.push("request_timeout");
        } else if operation
            .request_body
            .as_ref()
            .is_some_and(|body| body.content.contains_key("application/json"))
        {
            derived.extend(JSON_BODY_ERROR_CODES);
        }
    }
    for parameter in operation.parameters.iter().flatten() {
        let parameter = serde_json::to_value(parameter).unwrap_or_default();
        match parameter["in"].as_str() {
            Some("query") => derived.push("invalid_query"),
            Some("path") if parameter["schema"]["type"] == "integer" => derived.push("invalid_path"),
            _ => {}
        }
    }
    if !derived.is_empty() {
        add_codes(operation, derived);
    }
}

/// What the app-wide `JsonConfig` and the body deadline answer for a JSON body.
const JSON_BODY_ERROR_CODES: [&str; 4] = [
    "invalid_json",
    "payload_too_large",
    "unsupported_media_type",
    "request_timeout",
];

/// The codes an operation lists in its [`ERROR_CODES_EXTENSION`].
pub fn listed_error_codes(operation: &Operation) -> Vec<String> {
    operation
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(ERROR_CODES_EXTENSION))
        .and_then(serde_json::Value::as_array)
        .map(|codes| {
            codes
                .iter()
                .filter_map(|code| code.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One response per status among the operation's listed codes (codes missing from the
/// catalogue are skipped here; the tests refuse them).
fn add_error_responses(operation: &mut Operation) {
    let mut by_status: BTreeMap<u16, Vec<&ErrorCode>> = BTreeMap::new();
    for code in listed_error_codes(operation) {
        if let Some(entry) = error_code(&code) {
            by_status.entry(entry.status.as_u16()).or_default().push(entry);
        }
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|entry| format!("- `{}`: {}", entry.code, entry.meaning))
            .collect::<Vec<_>>()
            .join("\n");
        let narrowed = ObjectBuilder::new().schema_type(Type::Object).property(
            "error",
            ObjectBuilder::new().schema_type(Type::Object).property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes.iter().map(|entry| entry.code))),
            ),
        );
        let schema = AllOfBuilder::new()
            .item(Ref::from_schema_name("Error"))
            .item(narrowed)
            .build();
        let schema = utoipa::openapi::Schema::AllOf(schema);
        let examples = codes.iter().map(|entry| {
            let example = ExampleBuilder::new()
                .summary(entry.meaning)
                .value(Some(example_body(entry)))
                .build();
            (entry.code, example)
        });
        let content = ContentBuilder::new()
            .schema(Some(schema))
            .examples_from_iter(examples)
            .build();
        let mut response = ResponseBuilder::new()
            .description(description)
            .content("application/json", content);
        if status == 401 {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            );
        }
        operation
            .responses
            .responses
            .insert(status.to_string(), response.build().into());
    }
}

fn example_body(entry: &ErrorCode) -> serde_json::Value {
    let mut error = serde_json::json!({ "code": entry.code, "message": entry.meaning });
    if entry.status.is_server_error() {
        error["request_id"] = serde_json::Value::from("0f6e4c1b9a2d4e8f8c7b6a5d4e3f2a1b");
    }
    serde_json::json!({ "error": error })
}

fn operation_slot<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Option<Operation>> {
    match method {
        "GET" => Some(&mut item.get),
        "PUT" => Some(&mut item.put),
        "POST" => Some(&mut item.post),
        "DELETE" => Some(&mut item.delete),
        "OPTIONS" => Some(&mut item.options),
        "HEAD" => Some(&mut item.head),
        "PATCH" => Some(&mut item.patch),
        "TRACE" => Some(&mut item.trace),
        _ => None,
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The document as served, serialized once at start-up.
pub struct ServedDocument(String);

impl ServedDocument {
    /// # Errors
    /// When the document cannot be serialized (it always can: it is built from plain data).
    pub fn new(enabled: &[Provider], sandbox_open: bool, limits: &OrderLimits) -> Result<Self, serde_json::Error> {
        serde_json::to_string(&build(enabled, sandbox_open, limits)).map(Self)
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    summary = "This document",
    description = "OpenAPI 3.1, generated from the code; the routes of providers this deployment has not enabled are left out.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = serde_json::Value)),
)]
pub async fn document(served: web::Data<ServedDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(served.0.clone())
}

/// The reference page: `reference.html` with `reference.js` inlined, and a Content Security
/// Policy that allows that one script (by its hash) and requests to this origin only, so the
/// page can load nothing from elsewhere.
struct ReferencePage {
    html: String,
    policy: String,
}

static REFERENCE_PAGE: LazyLock<ReferencePage> = LazyLock::new(|| {
    let script = include_str!("reference.js");
    let style = include_str!("reference.css");
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    ReferencePage {
        html: include_str!("reference.html")
            .replace("/*STYLE*/", style)
            .replace("/*SCRIPT*/", script),
        policy: format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(script),
            hash(style)
        ),
    }
});

/// `GET /docs`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    operation_id = "api_reference",
    summary = "A readable reference of this document",
    description = "A self-contained page that renders `/openapi.json`; it loads nothing from any other origin.",
    responses((status = 200, description = "The reference page", content_type = "text/html", body = String)),
)]
pub async fn reference_page() -> HttpResponse {
    let page = &*REFERENCE_PAGE;
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, page.policy.clone()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(page.html.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ERROR_CODES;

    fn limits() -> OrderLimits {
        OrderLimits {
            default_ttl: std::time::Duration::from_secs(900),
            min_ttl: std::time::Duration::from_secs(60),
            max_ttl: std::time::Duration::from_secs(86_400),
            max_items: 100,
            max_total: entities::MinorUnit::new(1_000_000).unwrap_or_default(),
        }
    }

    fn operations(doc: &mut Document) -> Vec<(String, Operation)> {
        let mut all = Vec::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for operation in operations_mut(item) {
                all.push((path.clone(), operation.clone()));
            }
        }
        all
    }

    #[test]
    fn every_listed_error_code_is_in_the_catalogue_and_every_code_is_listed_somewhere() {
        let mut doc = build(
            &[Provider::Sandbox, Provider::Wechat, Provider::Alipay],
            false,
            &limits(),
        );
        let operations = operations(&mut doc);
        let mut used = std::collections::BTreeSet::new();
        for (path, operation) in &operations {
            for code in listed_error_codes(operation) {
                assert!(
                    error_code(&code).is_some(),
                    "{path} lists {code}, which the catalogue lacks"
                );
                used.insert(code);
            }
        }
        for entry in ERROR_CODES {
            assert!(used.contains(entry.code), "no operation lists {}", entry.code);
        }
    }

    #[test]
    fn codes_answered_before_the_handler_come_from_what_the_operation_declares() {
        let mut doc = build(&[Provider::Sandbox, Provider::Wechat], false, &limits());
        let operations = operations(&mut doc);
        let codes = |id: &str| {
            let (_, operation) = operations
                .iter()
                .find(|(_, operation)| operation.operation_id.as_deref() == Some(id))
                .unwrap_or_else(|| panic!("no operation {id}"));
            listed_error_codes(operation)
        };
        // An API key, a JSON body, an Idempotency-Key; the handler's own codes beside them.
        let create = codes("create_order");
        for code in [
            "unauthorized",
            "too_many_failures",
            "invalid_json",
            "payload_too_large",
            "unsupported_media_type",
            "request_timeout",
            "invalid_idempotency_key",
            "insufficient_stock",
        ] {
            assert!(create.contains(&code.to_owned()), "create_order lacks {code}");
        }
        assert!(!create.contains(&"invalid_query".to_owned()));
        // Query parameters.
        assert!(codes("admin_list_orders").contains(&"invalid_query".to_owned()));
        // A notification is read as bytes: the body deadline, not the JSON refusals.
        let wechat = codes("webhook_wechat");
        assert_eq!(wechat, vec!["request_timeout".to_owned()]);
        // The console sends a missing session to its sign-in page, never a 401.
        assert!(!codes("console_get_orders").contains(&"unauthorized".to_owned()));
    }

    #[test]
    fn each_listed_code_gets_a_response_at_its_status() {
        let mut doc = build(&[Provider::Sandbox], false, &limits());
        for (path, operation) in operations(&mut doc) {
            for code in listed_error_codes(&operation) {
                let Some(entry) = error_code(&code) else { continue };
                let status = entry.status.as_u16().to_string();
                assert!(
                    operation.responses.responses.contains_key(&status),
                    "{path}: {code} has no {status} response"
                );
            }
        }
    }

    #[test]
    fn the_development_profile_serves_the_sandbox_routes_without_credentials() {
        let mut doc = build(&[Provider::Sandbox], true, &limits());
        for (path, operation) in operations(&mut doc) {
            if path.starts_with("/sandbox") {
                assert!(operation.security.is_none(), "{path}");
                assert!(!operation.responses.responses.contains_key("401"), "{path}");
            }
        }
    }

    #[test]
    fn the_configured_bounds_are_in_the_order_schemas() {
        let doc = serde_json::to_value(build(&[Provider::Sandbox], false, &limits())).unwrap_or_default();
        let ttl = &doc["components"]["schemas"]["CreateOrderBody"]["properties"]["ttl_seconds"];
        assert_eq!(
            (ttl["minimum"].as_u64(), ttl["maximum"].as_u64()),
            (Some(60), Some(86_400))
        );
        let items = &doc["components"]["schemas"]["CreateOrderBody"]["properties"]["items"];
        assert_eq!(items["maxItems"].as_u64(), Some(100));
        let price = &doc["components"]["schemas"]["CreateItemBody"]["properties"]["unit_price"];
        assert_eq!(price["maximum"].as_u64(), Some(1_000_000));
    }

    #[test]
    fn links_are_written_with_the_names_openapi_gives_them() {
        let doc = serde_json::to_value(build(&[Provider::Sandbox], false, &limits())).unwrap_or_default();
        let links = &doc["paths"]["/v1/orders"]["post"]["responses"]["201"]["links"];
        assert_eq!(links["GetOrder"]["operationId"], "get_order", "{links}");
        assert_eq!(links["GetOrder"]["parameters"]["order_no"], "$response.body#/order_no");
        let text = serde_json::to_string(&doc).unwrap_or_default();
        assert!(!text.contains("\"operation_id\""), "a link in snake_case is left");
    }

    #[test]
    fn disabled_providers_routes_are_left_out() {
        let doc = build(&[Provider::Wechat], false, &limits());
        assert!(doc.paths.paths.contains_key("/webhooks/wechat"));
        assert!(!doc.paths.paths.contains_key("/webhooks/alipay"));
        assert!(!doc.paths.paths.contains_key("/webhooks/sandbox"));
        assert!(!doc.paths.paths.keys().any(|path| path.starts_with("/sandbox")));
    }
}
