//! The edge: bounded status streams, a deadline on request bodies, the headers every answer
//! carries, and who may read `/metrics`.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    error_code, order_body, spawn_app, spawn_app_with, test_settings, Backend, TestApp, MERCHANT_A_KEY,
};

/// Opens a status stream and reads its first event (the current status).
async fn open_stream(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// Reads a stream until `until` is in what was read, within `within`.
async fn read_until(response: &mut reqwest::Response, until: &str, within: Duration) -> String {
    let mut text = String::new();
    tokio::time::timeout(within, async {
        while !text.contains(until) {
            match response.chunk().await.unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{until:?} within {within:?}; read {text:?}"));
    text
}

fn local(app: &TestApp, url: &str) -> String {
    url.strip_prefix(&app.address).unwrap().to_owned()
}

#[actix_web::test]
async fn one_checkout_link_holds_at_most_its_cap_of_streams_and_the_service_keeps_answering() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let order = app.create_order(&order_body("edge-1")).await;
    let events = local(&app, order["checkout_url"].as_str().unwrap()).replacen('?', "/events?", 1);
    let cap = app.settings.streams.per_checkout_link;

    // Act: one client opens many more streams than the cap.
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..cap + 20 {
        let response = open_stream(&app, &events, None).await;
        if response.status().as_u16() == 200 {
            open.push(response);
        } else {
            refused.push(response);
        }
    }
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();

    // Assert
    assert_eq!(open.len(), cap, "the cap of one link");
    assert_eq!(refused.len(), 20);
    let first = refused.remove(0);
    assert_eq!(first.status().as_u16(), 429);
    let retry_after: u64 = first.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(error_code(first, 429).await, "too_many_streams");
    assert_eq!(health.status().as_u16(), 200, "the service answers everyone else");
    let mut one = open.pop().unwrap();
    let text = read_until(&mut one, "\n\n", Duration::from_secs(5)).await;
    assert!(text.starts_with("retry: "), "{text}");
    assert!(text.contains(r#""status":"pending""#), "{text}");

    // A stream given up frees its place (noticed at the next keep-alive at the latest).
    drop(one);
    let reopened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let response = open_stream(&app, &events, None).await;
            if response.status().as_u16() == 200 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a freed place is taken again");
    assert_eq!(reopened.status().as_u16(), 200);
}

#[actix_web::test]
async fn a_merchant_and_a_node_hold_at_most_their_caps_of_streams() {
    // Arrange
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.streams.per_merchant = 3;
    settings.streams.per_node = 5;
    let app = spawn_app_with(settings).await;
    let mut orders = Vec::new();
    for i in 0..4 {
        orders.push(app.create_order(&order_body(&format!("edge-m{i}"))).await);
    }

    // Act: the merchant opens 4 streams on 4 orders, then buyers open 3 through links.
    let mut merchant = Vec::new();
    for order in &orders {
        let order_no = order["order_no"].as_str().unwrap();
        merchant.push(open_stream(&app, &format!("/v1/orders/{order_no}/events"), Some(MERCHANT_A_KEY)).await);
    }
    let mut buyers = Vec::new();
    for order in &orders[..3] {
        let events = local(&app, order["checkout_url"].as_str().unwrap()).replacen('?', "/events?", 1);
        buyers.push(open_stream(&app, &events, None).await);
    }

    // Assert
    let merchant_statuses: Vec<u16> = merchant.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(merchant_statuses, [200, 200, 200, 429], "the merchant's cap");
    let buyer_statuses: Vec<u16> = buyers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(buyer_statuses, [200, 200, 429], "the node's cap (3 + 2 = 5)");
    let refused = buyers.pop().unwrap();
    assert_eq!(error_code(refused, 429).await, "too_many_streams");
}

#[actix_web::test]
async fn a_stream_ends_at_its_lifetime_and_a_reconnecting_client_is_not_sent_what_it_has() {
    // Arrange
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.streams.max_lifetime = Duration::from_secs(1);
    let app = spawn_app_with(settings).await;
    let order = app.create_order(&order_body("edge-life")).await;
    let path = format!("/v1/orders/{}/events", order["order_no"].as_str().unwrap());

    // Act
    let started = Instant::now();
    let mut first = open_stream(&app, &path, Some(MERCHANT_A_KEY)).await;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = first.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the stream ends by itself");
    let lasted = started.elapsed();
    let id = text
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("the status frame has an id")
        .to_owned();
    let mut again = app
        .client
        .get(app.url(&path))
        .bearer_auth(MERCHANT_A_KEY)
        .header("Last-Event-ID", &id)
        .send()
        .await
        .unwrap();
    let resumed = read_until(&mut again, "\n\n", Duration::from_secs(5)).await;

    // Assert
    assert!(text.contains(r#""status":"pending""#), "{text}");
    assert!(
        lasted >= Duration::from_secs(1) && lasted < Duration::from_secs(3),
        "{lasted:?}"
    );
    assert!(resumed.starts_with("retry: "), "{resumed}");
    assert!(!resumed.contains("event: status"), "{resumed}");
}

/// Sends a request whose body never arrives whole, and returns the answer's status line and
/// how long it took.
async fn trickle(app: &TestApp, method_path: &str, extra_headers: &str) -> (String, Duration) {
    let address = app.address.strip_prefix("http://").unwrap();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    let head = format!(
        "{method_path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n{extra_headers}\r\n{{\"a\":"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{method_path}: no answer to a trickled body within 10 s");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    (answer.lines().next().unwrap_or_default().to_owned(), started.elapsed())
}

#[actix_web::test]
async fn a_body_that_does_not_arrive_in_time_is_cut_with_408_even_before_authentication() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.row_counts().await;
    let deadline = app.settings.server.body_read_timeout;
    let authorized = format!("Authorization: Bearer {MERCHANT_A_KEY}\r\n");

    // Act
    let mut answers = Vec::new();
    for (target, headers) in [
        ("POST /v1/orders", authorized.as_str()),
        ("POST /webhooks/sandbox", ""),
        ("POST /admin/ui/login", ""),
        ("POST /checkout/1/payments?t=x", ""),
    ] {
        answers.push((target, trickle(&app, target, headers).await));
    }

    // Assert
    for (target, (status_line, took)) in answers {
        assert!(status_line.contains(" 408 "), "{target}: {status_line}");
        assert!(took >= deadline && took < deadline * 3, "{target}: {took:?}");
    }
    assert_eq!(app.row_counts().await, before, "nothing written");
}

#[actix_web::test]
async fn every_answer_says_nosniff_and_answers_with_links_are_not_stored() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;

    // Act
    let created = app.post_order(MERCHANT_A_KEY, &order_body("edge-h")).await;
    let missing = app.client.get(app.url("/nowhere")).send().await.unwrap();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();

    // Assert
    for response in [&created, &missing, &health] {
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(
            response.headers().get("strict-transport-security").is_none(),
            "not over plain http"
        );
    }
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(
        created.headers()["cache-control"],
        "no-store",
        "it carries a checkout link"
    );
}

#[actix_web::test]
async fn an_https_deployment_asks_browsers_to_stay_on_https() {
    // Arrange: links point at the public https address; the test reaches the bound one.
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.server.public_base_url = "https://pay.example.com".to_owned();
    let app = paywarden::startup::Application::build(settings).await.unwrap();
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());

    // Act
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();

    // Assert
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
}

#[actix_web::test]
async fn with_a_scrape_token_metrics_are_served_only_to_its_holder_and_counted_at_most_once_per_interval() {
    // Arrange
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.metrics.scrape_token = SecretString::from("scrape_token_0123456789abcdef0123456789".to_owned());
    settings.metrics.gauge_refresh = Duration::from_secs(3600);
    let app = spawn_app_with(settings).await;
    let order = app.create_order(&order_body("edge-stuck")).await;

    // Act
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape_token_0123456789abcdef0123456788")
        .send()
        .await
        .unwrap();
    let scrape = || async {
        app.client
            .get(app.url("/metrics"))
            .bearer_auth("scrape_token_0123456789abcdef0123456789")
            .send()
            .await
            .unwrap()
    };
    let first = scrape().await;
    assert_eq!(first.status().as_u16(), 200);
    let first = first.text().await.unwrap();
    app.execute(&format!(
        "UPDATE orders SET status = 'stuck' WHERE order_no = '{}'",
        order["order_no"].as_str().unwrap()
    ))
    .await;
    let second: String = scrape().await.text().await.unwrap();

    // Assert
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(error_code(wrong, 401).await, "unauthorized");
    let stuck = |text: &str| -> Option<String> {
        text.lines()
            .find(|line| line.starts_with("paywarden_orders_stuck "))
            .map(str::to_owned)
    };
    assert_eq!(stuck(&first).as_deref(), Some("paywarden_orders_stuck 0"));
    assert_eq!(
        stuck(&second).as_deref(),
        Some("paywarden_orders_stuck 0"),
        "not counted again within the interval"
    );
}

#[actix_web::test]
async fn a_checkout_stream_ends_when_its_link_expires_even_while_the_order_is_live() {
    // Arrange: links last one second past the deadline; the provider hangs, so the order
    // stays live (pending, then stuck) long after that.
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.checkout.link_grace = Duration::from_secs(1);
    let app = spawn_app_with(settings).await;
    let mut body = order_body("edge-link");
    body["ttl_seconds"] = 2.into();
    let order = app.create_order(&body).await;
    let order_no = order["order_no"].as_str().unwrap().to_owned();
    let paid = app.post_payment(MERCHANT_A_KEY, &order_no, "sandbox").await;
    assert_eq!(paid.status().as_u16(), 201);
    app.sandbox_faults(serde_json::json!({"mode": "timeout", "delay_ms": 2000}))
        .await;
    let events = local(&app, order["checkout_url"].as_str().unwrap()).replacen('?', "/events?", 1);

    // Act
    let started = Instant::now();
    let mut stream = open_stream(&app, &events, None).await;
    assert_eq!(stream.status().as_u16(), 200);
    tokio::time::timeout(Duration::from_secs(10), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await
    .expect("the stream ends with its link");
    let lasted = started.elapsed();
    let status = app
        .get_status(MERCHANT_A_KEY, &order_no)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();

    // Assert: about three seconds (deadline two, grace one), the order still live.
    assert!(lasted < Duration::from_secs(5), "{lasted:?}");
    assert!(
        status["status"] == "pending" || status["status"] == "stuck",
        "the order is still live: {status}"
    );
}
