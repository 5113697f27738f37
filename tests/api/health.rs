use crate::helpers::{on_both_backends, order_body, spawn_app, Backend};

on_both_backends!(healthz_answers_and_metrics_count_requests);

/// HTTP allows any token as a method, and the method was a metric label: every made-up method
/// added a series for good (20,000 of them grew `/metrics` to 347 MB). Now a method outside the
/// standard ones is `other`, and the exposition does not grow with them.
#[actix_web::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app(Backend::Sqlite).await;
    let send = |n: usize| {
        let method = reqwest::Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        app.client.request(method, app.url("/v1/orders")).send()
    };
    send(0).await.unwrap();
    let before = app.metrics().await.len();
    for n in 1..=200 {
        send(n).await.unwrap();
    }
    let text = app.metrics().await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(
        text.contains(r#"paywarden_http_requests_total{method="other","#),
        "{text}"
    );
    // The same series counted up; nothing new but the scrape's own.
    assert!(
        text.len() < before + 4_000,
        "{} bytes after, {before} before",
        text.len()
    );
}

async fn healthz_answers_and_metrics_count_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_order(&order_body("health-1")).await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();

    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"paywarden_http_requests_total{method="POST",route="/v1/orders",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("paywarden_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"paywarden_orders_created_total{outcome="created"} 1"#),
        "{text}"
    );
}

/// The binary needs nothing beside itself: started in an empty directory with no environment
/// but a listen address, it runs the README walk-through on its embedded default (SQLite in
/// ./data, the sandbox, the development credentials).
#[actix_web::test]
async fn the_binary_runs_the_walk_through_from_an_empty_directory() {
    let dir = std::env::temp_dir().join(format!("paywarden-empty-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = crate::restart::free_port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_paywarden"));
    command.current_dir(&dir).env_clear();
    let service = crate::restart::ServiceProcess::spawn(command, port).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", service.base);

    let order: serde_json::Value = client
        .post(url("/v1/orders"))
        .bearer_auth("pk_dev_demo")
        .json(&order_body("walk-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_no = order["order_no"].as_str().expect("an order was created").to_owned();
    let attempt: serde_json::Value = client
        .post(url(&format!("/v1/orders/{order_no}/payments")))
        .bearer_auth("pk_dev_demo")
        .json(&serde_json::json!({"provider": "sandbox"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pay_no = attempt["pay_no"].as_str().expect("a sandbox attempt started");
    let paid = client
        .post(url(&format!("/sandbox/trades/{pay_no}/pay")))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200, "the development profile's sandbox is open");
    service
        .wait_for_status(
            "pk_dev_demo",
            &order_no,
            "paid",
            std::time::Duration::from_secs(10),
            "the sandbox payment",
        )
        .await;
    drop(service);
    assert!(
        dir.join("data/paywarden.db").is_file(),
        "SQLite lives under the directory it ran in"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
