//! Refused credentials are throttled per client address (`src/throttle.rs`), and the client's
//! address is the socket peer unless the peer is a trusted proxy (`src/client_addr.rs`).
//!
//! The server listens on 127.0.0.1; a client bound to 127.0.0.2 (loopback too) is "another
//! address".

use std::time::Duration;

use crate::helpers::{
    error_code, order_body, spawn_app_with, test_settings, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY,
};

/// Three refused credentials per address, then one second of `429` (two for the next block).
async fn spawn_throttled_app(trusted_proxies: &[&str]) -> TestApp {
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.throttle.max_failures = 3;
    settings.throttle.block = Duration::from_secs(1);
    settings.throttle.max_block = Duration::from_secs(4);
    settings.server.trusted_proxies = trusted_proxies.iter().map(|proxy| (*proxy).to_owned()).collect();
    spawn_app_with(settings).await
}

/// A client whose connections come from `local` (a loopback address).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(local.parse().unwrap()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn admin_orders(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(app.url("/admin/orders?status=pending")).bearer_auth(token);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded_for);
    }
    request.send().await.unwrap()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn wrong_admin_tokens_get_429_and_the_right_token_from_another_address_still_works() {
    // Arrange
    let app = spawn_throttled_app(&[]).await;
    let here = client_from("127.0.0.1");
    for attempt in 1..=3 {
        let response = admin_orders(&app, &here, "wrong_admin_token", None).await;
        assert_eq!(response.status().as_u16(), 401, "refusal {attempt}");
    }

    // Act
    let throttled = admin_orders(&app, &here, "another_wrong_token", None).await;
    let right_token_here = admin_orders(&app, &here, ADMIN_TOKEN, None).await;
    let right_token_elsewhere = admin_orders(&app, &client_from("127.0.0.2"), ADMIN_TOKEN, None).await;

    // Assert
    assert_eq!(throttled.status().as_u16(), 429);
    assert_eq!(retry_after(&throttled), 1);
    assert_eq!(error_code(throttled, 429).await, "too_many_failures");
    assert_eq!(
        right_token_here.status().as_u16(),
        429,
        "a blocked address is not checked"
    );
    assert_eq!(
        right_token_elsewhere.status().as_u16(),
        200,
        "another address is unaffected"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("paywarden_auth_failures_total{outcome=\"refused\",surface=\"admin\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paywarden_auth_failures_total{outcome=\"throttled\",surface=\"admin\"} 2"),
        "{metrics}"
    );

    // After the block the right token works from the same address; a failure right after
    // blocks again, for longer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        admin_orders(&app, &here, ADMIN_TOKEN, None).await.status().as_u16(),
        200
    );
    assert_eq!(
        admin_orders(&app, &here, "wrong_again", None).await.status().as_u16(),
        401
    );
    let again = admin_orders(&app, &here, "wrong_again", None).await;
    assert_eq!(again.status().as_u16(), 429);
    assert_eq!(retry_after(&again), 2, "the second block lasts twice as long");
}

#[actix_web::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_change_the_throttled_address() {
    // Arrange
    let app = spawn_throttled_app(&[]).await;
    let here = client_from("127.0.0.1");
    for n in 1..=3 {
        let spoofed = format!("203.0.113.{n}");
        let response = admin_orders(&app, &here, "wrong_admin_token", Some(&spoofed)).await;
        assert_eq!(response.status().as_u16(), 401);
    }

    // Act
    let response = admin_orders(&app, &here, ADMIN_TOKEN, Some("198.51.100.200")).await;

    // Assert
    assert_eq!(
        response.status().as_u16(),
        429,
        "the peer is throttled whatever it forwards"
    );
}

#[actix_web::test]
async fn behind_a_trusted_proxy_x_forwarded_for_decides_the_client_address() {
    // Arrange: the test's loopback peer is the proxy.
    let app = spawn_throttled_app(&["127.0.0.0/8"]).await;
    let proxy = client_from("127.0.0.1");
    for _ in 1..=3 {
        let response = admin_orders(&app, &proxy, "wrong_admin_token", Some("198.51.100.1, 203.0.113.7")).await;
        assert_eq!(response.status().as_u16(), 401);
    }

    // Act
    let same_client = admin_orders(&app, &proxy, ADMIN_TOKEN, Some("203.0.113.7")).await;
    let spoofed_left_entry = admin_orders(&app, &proxy, ADMIN_TOKEN, Some("203.0.113.8, 203.0.113.7")).await;
    let other_client = admin_orders(&app, &proxy, ADMIN_TOKEN, Some("203.0.113.8")).await;
    let proxy_itself = admin_orders(&app, &proxy, ADMIN_TOKEN, None).await;

    // Assert
    assert_eq!(same_client.status().as_u16(), 429);
    assert_eq!(
        spoofed_left_entry.status().as_u16(),
        429,
        "the right-most untrusted entry counts"
    );
    assert_eq!(other_client.status().as_u16(), 200);
    assert_eq!(proxy_itself.status().as_u16(), 200);
}

#[actix_web::test]
async fn wrong_console_sign_ins_and_api_keys_are_throttled_too() {
    let app = spawn_throttled_app(&[]).await;
    let here = client_from("127.0.0.1");
    let sign_in = |token: &'static str| {
        here.post(app.url("/admin/ui/login"))
            .form(&[("token", token), ("name", "alice")])
            .send()
    };
    for _ in 1..=3 {
        assert_eq!(sign_in("wrong_admin_token").await.unwrap().status().as_u16(), 401);
    }
    let refused = sign_in(ADMIN_TOKEN).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(retry_after(&refused), 1);
    assert!(refused.headers().get("set-cookie").is_none(), "no session");

    let elsewhere = client_from("127.0.0.2");
    let create = |key: &'static str| {
        elsewhere
            .post(app.url("/v1/orders"))
            .bearer_auth(key)
            .json(&order_body("throttle-1"))
            .send()
    };
    for _ in 1..=3 {
        assert_eq!(create("pk_wrong_key_1").await.unwrap().status().as_u16(), 401);
    }
    let refused = create(MERCHANT_A_KEY).await.unwrap();
    assert_eq!(error_code(refused, 429).await, "too_many_failures");
    assert_eq!(app.row_counts().await.orders, 0);
    let metrics = app.metrics().await;
    for surface in ["console", "client"] {
        assert!(
            metrics.contains(&format!(
                "paywarden_auth_failures_total{{outcome=\"refused\",surface=\"{surface}\"}} 3"
            )),
            "{surface}: {metrics}"
        );
    }
}

/// A request without any credential guesses nothing: a probe or a client that forgot its key
/// does not block the address (a merchant's shared one, say), and it still answers 401 with
/// the edge's headers.
#[actix_web::test]
async fn requests_without_a_credential_are_refused_but_not_counted() {
    // Arrange
    let app = spawn_throttled_app(&[]).await;
    let here = client_from("127.0.0.1");

    // Act
    let mut refused = Vec::new();
    for _ in 0..10 {
        refused.push(here.get(app.url("/admin/orders?status=pending")).send().await.unwrap());
    }
    let right_token = admin_orders(&app, &here, ADMIN_TOKEN, None).await;

    // Assert
    for response in &refused {
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    assert_eq!(right_token.status().as_u16(), 200, "the address is not blocked");
}
