use crate::helpers::{on_both_backends, order_body, spawn_app, Backend};

on_both_backends!(healthz_answers_and_metrics_count_requests);

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
