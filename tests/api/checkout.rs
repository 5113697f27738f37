//! The checkout link over HTTP: what it opens, what it refuses, and the calls the page makes.
//! (The page in a real browser: `browser.rs`.)

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{error_code, on_both_backends, order_body, spawn_app, Backend, TestApp, MERCHANT_A_KEY};

const TEST_LINK_SECRET: &str = "checkout_test_link_secret_0123456789abcdef";

/// The path and query of an absolute link.
fn local(app: &TestApp, url: &str) -> String {
    url.strip_prefix(&app.address)
        .expect("a link to this service")
        .to_owned()
}

fn with_token(path: &str, token: &str) -> String {
    let (base, _) = path.split_once("?t=").expect("a token in the link");
    format!("{base}?t={token}")
}

async fn create(app: &TestApp, id: &str, extra: Value) -> Value {
    let mut body = order_body(id);
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let response = app.post_order(MERCHANT_A_KEY, &body).await;
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

on_both_backends!(a_checkout_link_opens_its_order_s_page_and_nothing_else);

async fn a_checkout_link_opens_its_order_s_page_and_nothing_else(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order = create(&app, "co-1", json!({"return_url": "https://shop.example/orders/co-1"})).await;
    let other = create(&app, "co-2", json!({})).await;
    let link = local(&app, order["checkout_url"].as_str().unwrap());
    let other_link = local(&app, other["checkout_url"].as_str().unwrap());
    let (_, token) = link.split_once("?t=").unwrap();
    let (_, other_token) = other_link.split_once("?t=").unwrap();

    // Act
    let page = app.client.get(app.url(&link)).send().await.unwrap();
    let crossed = app
        .client
        .get(app.url(&with_token(&link, other_token)))
        .send()
        .await
        .unwrap();
    let mut forged_token = token.to_owned();
    let last = forged_token.pop().unwrap();
    forged_token.push(if last == 'A' { 'B' } else { 'A' });
    let forged = app
        .client
        .get(app.url(&with_token(&link, &forged_token)))
        .send()
        .await
        .unwrap();
    let bare = app
        .client
        .get(app.url(link.split_once('?').unwrap().0))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(order["return_url"], "https://shop.example/orders/co-1");
    assert_eq!(page.status().as_u16(), 200);
    let headers = page.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Rust course"), "the subject");
    assert!(html.contains("¥19.99"), "the amount from minor units");
    assert!(html.contains("data-provider=\"sandbox\""), "the enabled providers");
    assert!(html.contains("https://shop.example/orders/co-1"), "the return link");
    assert!(
        !html.replace("https://shop.example/orders/co-1", "").contains("://"),
        "the page refers to no other origin but the return link"
    );
    for refused in [crossed, forged, bare] {
        assert_eq!(refused.status().as_u16(), 403);
        assert!(refused
            .text()
            .await
            .unwrap()
            .contains("This link does not open a payment"));
    }
}

/// What the page's script sends when the buyer chooses `provider`.
async fn choose(app: &TestApp, path: &str, provider: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&json!({ "provider": provider }))
        .send()
        .await
        .unwrap()
}

on_both_backends!(the_page_starts_one_attempt_per_provider_and_shows_its_qr_code);

async fn the_page_starts_one_attempt_per_provider_and_shows_its_qr_code(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let order = create(&app, "co-3", json!({})).await;
    let order_no = order["order_no"].as_str().unwrap();
    let link = local(&app, order["checkout_url"].as_str().unwrap());
    let (_, token) = link.split_once("?t=").unwrap();
    let payments = format!("/checkout/{order_no}/payments?t={token}");

    // Act
    let first = choose(&app, &payments, "sandbox").await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let again = choose(&app, &payments, "sandbox").await;
    let unknown = choose(&app, &payments, "paypal").await;
    let no_token = choose(&app, &format!("/checkout/{order_no}/payments?t=1.AAAA"), "sandbox").await;
    let qr = app
        .client
        .get(app.url(first["qr_png_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(again.status().as_u16(), 200, "the open attempt again, no second trade");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["pay_no"], first["pay_no"]);
    assert_eq!(error_code(unknown, 422).await, "unknown_provider");
    assert_eq!(error_code(no_token, 403).await, "invalid_checkout_link");
    assert_eq!(qr.status().as_u16(), 200);
    assert_eq!(qr.headers()["content-type"], "image/png");
    let png = qr.bytes().await.unwrap();
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let (_, content) = prepared.detect_grids()[0].decode().unwrap();
    assert_eq!(content, first["code_url"].as_str().unwrap());
    let detail = app.admin_order(order_no).await;
    assert_eq!(detail["payments"].as_array().unwrap().len(), 1);
    let started = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|log| log["event"] == "attempt.created")
        .unwrap();
    assert_eq!(started["operator"], "buyer:checkout");
}

#[actix_web::test]
async fn a_link_stops_opening_its_grace_after_the_deadline() {
    // Arrange: links with no grace, minted with the service's own key.
    let app = spawn_app(Backend::Sqlite).await;
    let mut body = order_body("co-4");
    body["ttl_seconds"] = json!(1);
    let order: Value = app.post_order(MERCHANT_A_KEY, &body).await.json().await.unwrap();
    let order_no = order["order_no"].as_str().unwrap();
    let deadline: chrono::DateTime<chrono::Utc> = order["expires_at"].as_str().unwrap().parse().unwrap();
    let no_grace = paywarden::links::Links::new(SecretString::from(TEST_LINK_SECRET), Duration::ZERO, &app.address);
    let short_link = local(&app, &no_grace.checkout(order_no, deadline));
    let (_, short_token) = short_link.split_once("?t=").unwrap();
    let events = format!("/checkout/{order_no}/events?t={short_token}");

    // Act: after the deadline the order closes; the configured link still opens it, the one
    // without grace does not.
    app.wait_for_status(order_no, "closed", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let page = app
        .client
        .get(app.url(&local(&app, order["checkout_url"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    let expired = app.client.get(app.url(&short_link)).send().await.unwrap();
    let expired_events = app.client.get(app.url(&events)).send().await.unwrap();

    // Assert
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Expired: this order was not paid in time"));
    assert_eq!(expired.status().as_u16(), 403);
    assert!(expired.text().await.unwrap().contains("this checkout link has expired"));
    assert_eq!(error_code(expired_events, 403).await, "checkout_link_expired");
}

on_both_backends!(a_bad_return_url_is_refused_and_nothing_is_written);

async fn a_bad_return_url_is_refused_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.row_counts().await;
    for bad in ["javascript:alert(1)", "/relative", "https://user:pass@shop.example/"] {
        let mut body = order_body("co-5");
        body["return_url"] = json!(bad);
        let response = app.post_order(MERCHANT_A_KEY, &body).await;
        assert_eq!(error_code(response, 422).await, "invalid_return_url", "{bad}");
    }
    assert_eq!(app.row_counts().await, before);
}

/// The page's script reads every status's text, and which statuses are final, from the
/// server's one table: a status added to the enum gets its text on the page with it.
#[actix_web::test]
async fn the_checkout_page_carries_the_text_of_every_status_from_one_table() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let order = create(&app, "co-table", json!({})).await;
    let link = local(&app, order["checkout_url"].as_str().unwrap());

    // Act
    let page = app
        .client
        .get(app.url(&link))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert
    let marker = "data-statuses=\"";
    let start = page.find(marker).expect("the status table on the page") + marker.len();
    let raw = page[start..].split('"').next().unwrap();
    let table: Value = serde_json::from_str(&raw.replace("&quot;", "\"").replace("&amp;", "&")).unwrap();
    for status in ["pending", "stuck", "paid", "closed", "paid_after_close", "refunded"] {
        assert!(
            table["texts"][status].as_str().is_some_and(|text| !text.is_empty()),
            "{status}: {table}"
        );
    }
    assert_eq!(
        table["texts"]["closed:expired"],
        "Expired: this order was not paid in time"
    );
    assert_eq!(
        table["final"],
        json!(["paid", "closed", "paid_after_close", "refunded"])
    );
}
