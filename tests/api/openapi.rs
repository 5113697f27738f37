//! The served OpenAPI document against the routes the service mounts: the same set of
//! (method, path), each documented operation with its error responses and the security of its
//! scope, and a reference page that loads nothing from elsewhere.
//!
//! "Mounted" comes from `paywarden::routes::mounted`, the list `configure` mounts from; each
//! of those routes is then requested, to show it answers rather than falling through to the
//! unknown-route handler.

use std::collections::BTreeSet;

use entities::Provider;
use paywarden::config::Settings;
use paywarden::routes::{mounted, Scope};
use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY};
use crate::providers::{rig, RigOptions};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "options", "head", "trace"];

fn enabled_providers(settings: &Settings) -> Vec<Provider> {
    let providers = &settings.providers;
    [
        (Provider::Sandbox, providers.sandbox.enabled),
        (Provider::Wechat, providers.wechat.enabled),
        (Provider::Alipay, providers.alipay.enabled),
    ]
    .into_iter()
    .filter_map(|(provider, enabled)| enabled.then_some(provider))
    .collect()
}

async fn served_document(app: &TestApp) -> Value {
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    response.json().await.unwrap()
}

/// Every (METHOD, path) of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// The credentials a scope takes in the test profile (where the sandbox routes need the admin
/// token), and the security requirement the document must give its operations.
fn scope_credentials(scope: Scope) -> (Option<&'static str>, Option<&'static str>) {
    match scope {
        Scope::Client => (Some(MERCHANT_A_KEY), Some("merchant_api_key")),
        Scope::Admin | Scope::Sandbox => (Some(ADMIN_TOKEN), Some("admin_token")),
        Scope::Console => (None, Some("console_session")),
        Scope::Root | Scope::Webhook(_) | Scope::AccountWebhook | Scope::Checkout => (None, None),
    }
}

/// Compares the document with the mounted routes, checks each operation's error responses and
/// security, and requests each mounted route once.
async fn document_matches_the_mounted_routes(app: &TestApp) {
    // Arrange
    let enabled = enabled_providers(&app.settings);
    let doc = served_document(app).await;

    // Act
    let in_document = documented(&doc);
    let in_service: BTreeSet<(String, String)> = mounted(&enabled)
        .map(|endpoint| (endpoint.method.as_str().to_owned(), endpoint.full_path()))
        .collect();

    // Assert
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
    let undocumented: Vec<_> = in_service.difference(&in_document).collect();
    let not_mounted: Vec<_> = in_document.difference(&in_service).collect();
    assert!(undocumented.is_empty(), "mounted but not documented: {undocumented:?}");
    assert!(not_mounted.is_empty(), "documented but not mounted: {not_mounted:?}");

    let schemes = &doc["components"]["securitySchemes"];
    for name in ["merchant_api_key", "admin_token"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }

    for endpoint in mounted(&enabled) {
        let path = endpoint.full_path();
        let method = endpoint.method.as_str();
        let operation = &doc["paths"][&path][method.to_lowercase()];
        let (credentials, scheme) = scope_credentials(endpoint.scope);
        // The console's sign-in page and form are what a session comes from.
        let scheme = scheme.filter(|_| !(endpoint.scope == Scope::Console && endpoint.path == "/login"));

        let security: Vec<String> = operation["security"]
            .as_array()
            .map(|requirements| {
                requirements
                    .iter()
                    .flat_map(|requirement| requirement.as_object().into_iter().flat_map(|r| r.keys().cloned()))
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<String> = scheme.into_iter().map(str::to_owned).collect();
        assert_eq!(security, expected, "{method} {path}: security of its scope");

        if endpoint.scope != Scope::Root {
            let errors = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|status| status.as_str() >= "400")
                .count();
            assert!(errors > 0, "{method} {path} documents no error response");
        }
        if scheme.is_some() {
            // The console sends a browser without a session to its sign-in page instead.
            let refusal = if endpoint.scope == Scope::Console { "303" } else { "401" };
            assert!(
                operation["responses"].get(refusal).is_some(),
                "{method} {path} takes credentials but documents no {refusal}"
            );
        }

        // The route answers, and not from the unknown-route fallback: path parameters name
        // nothing, bodies are absent, so nothing is written.
        let concrete: Vec<&str> = path
            .split('/')
            .map(|segment| if segment.starts_with('{') { "1" } else { segment })
            .collect();
        let method_of_client = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = app.client.request(method_of_client, app.url(&concrete.join("/")));
        if let Some(token) = credentials {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path} is not mounted for its method");
        assert!(
            !body.contains("route not found"),
            "{method} {path} fell through to the unknown-route handler: {status} {body}"
        );
    }
}

#[actix_web::test]
async fn the_served_document_lists_exactly_the_mounted_routes() {
    let app = spawn_app(Backend::Sqlite).await;
    document_matches_the_mounted_routes(&app).await;
}

#[actix_web::test]
async fn with_every_provider_enabled_the_document_still_lists_exactly_the_mounted_routes() {
    let rig = rig(RigOptions::default()).await;
    assert_eq!(
        enabled_providers(&rig.app.settings).len(),
        3,
        "every provider is enabled"
    );
    document_matches_the_mounted_routes(&rig.app).await;
}

#[actix_web::test]
async fn the_reference_page_renders_the_document_from_this_origin_only() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;

    // Act
    let response = app.client.get(app.url("/docs")).send().await.unwrap();

    // Assert
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = headers["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let page = response.text().await.unwrap();
    assert!(page.contains("openapi.json"), "the page reads the document");
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"),
        "the page refers to no other origin"
    );
}
