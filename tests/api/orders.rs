use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, Backend, ADMIN_TOKEN, MERCHANT_A, MERCHANT_A_KEY, MERCHANT_B,
    MERCHANT_B_KEY,
};

on_both_backends!(
    create_order_returns_201_and_get_returns_the_same_order,
    create_order_writes_a_log_row_and_an_outbox_event,
    replaying_the_same_request_returns_200_with_the_same_order,
    reusing_out_business_id_with_other_content_returns_409_and_writes_nothing,
    concurrent_identical_requests_create_one_order,
    create_order_reserves_stock_of_tracked_skus,
    create_order_returns_409_when_stock_is_short_and_writes_nothing,
    status_route_reports_a_pending_order,
    closing_releases_only_the_stock_the_order_reserved,
    a_merchant_can_neither_drain_nor_read_another_merchants_stock,
);

async fn create_order_returns_201_and_get_returns_the_same_order(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;

    // Act
    let created = app.create_order(&order_body("course-1")).await;
    let fetched: Value = app
        .get_order(MERCHANT_A_KEY, created["order_no"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();

    // Assert
    let order_no = created["order_no"].as_str().expect("order_no is a string");
    assert!(order_no.parse::<i64>().unwrap() > 0);
    assert_eq!(created["status"], "pending");
    assert_eq!(created["total_amount"], 1999 + 2 * 500);
    assert_eq!(created["currency"], "CNY");
    assert_eq!(created["merchant_id"], "merchant_a");
    assert_eq!(created["items"].as_array().unwrap().len(), 2);
    assert_eq!(created["items"][1]["amount"], 1000);
    assert_eq!(fetched["order_no"], created["order_no"]);
    assert_eq!(fetched["items"], created["items"]);
    assert_eq!(fetched["payments"], json!([]));
    let created_at = chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires_at - created_at).num_seconds(), 900, "the default TTL applies");
}

async fn create_order_writes_a_log_row_and_an_outbox_event(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = app.create_order(&order_body("course-2")).await;

    let order = app.admin_order(created["order_no"].as_str().unwrap()).await;
    let logs = order["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["event"], "order.created");
    assert_eq!(logs[0]["from"], Value::Null);
    assert_eq!(logs[0]["to"], "pending");
    assert_eq!(logs[0]["operator"], "merchant:merchant_a");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.created'")
            .await,
        1
    );
}

async fn replaying_the_same_request_returns_200_with_the_same_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_order(&order_body("course-3")).await;

    let replay = app.post_order(MERCHANT_A_KEY, &order_body("course-3")).await;

    assert_eq!(replay.status().as_u16(), 200);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["order_no"], first["order_no"]);
    assert_eq!(app.row_counts().await.orders, 1);
    assert_eq!(app.row_counts().await.order_logs, 1, "a replay logs nothing");
}

async fn reusing_out_business_id_with_other_content_returns_409_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_order(&order_body("course-4")).await;
    let before = app.row_counts().await;
    let mut other = order_body("course-4");
    other["items"][0]["unit_price"] = json!(2999);

    let response = app.post_order(MERCHANT_A_KEY, &other).await;

    assert_eq!(error_code(response, 409).await, "idempotency_conflict");
    assert_eq!(app.row_counts().await, before);
}

async fn concurrent_identical_requests_create_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = order_body("course-5");

    let responses = futures::future::join_all((0..6).map(|_| app.post_order(MERCHANT_A_KEY, &body))).await;

    let mut order_nos = Vec::new();
    for response in responses {
        assert!(
            [200, 201].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
        let order: Value = response.json().await.unwrap();
        order_nos.push(order["order_no"].as_str().unwrap().to_owned());
    }
    order_nos.dedup();
    assert_eq!(order_nos.len(), 1, "every request got the same order");
    assert_eq!(app.row_counts().await.orders, 1);
}

async fn create_order_reserves_stock_of_tracked_skus(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.put_sku(MERCHANT_A, "sku-book", 5).await.status().as_u16(), 200);

    let created = app.create_order(&order_body("course-6")).await;

    assert_eq!(app.sku_available(MERCHANT_A, "sku-book").await, 3, "two books reserved");
    let order = app.admin_order(created["order_no"].as_str().unwrap()).await;
    let events: Vec<&str> = order["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["order.created", "stock.reserved"]);
    assert!(order["logs"][1]["reason"].as_str().unwrap().contains("sku-book x2"));
}

async fn create_order_returns_409_when_stock_is_short_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku(MERCHANT_A, "sku-course", 10).await;
    app.put_sku(MERCHANT_A, "sku-book", 1).await;
    let before = app.row_counts().await;

    let response = app.post_order(MERCHANT_A_KEY, &order_body("course-7")).await;

    assert_eq!(error_code(response, 409).await, "insufficient_stock");
    assert_eq!(
        app.row_counts().await,
        before,
        "the course stock taken first was rolled back too"
    );
    assert_eq!(app.sku_available(MERCHANT_A, "sku-course").await, 10);
}

async fn status_route_reports_a_pending_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create_order(&order_body("course-8")).await;

    let response = app
        .get_status(MERCHANT_A_KEY, created["order_no"].as_str().unwrap())
        .await;

    assert_eq!(response.status().as_u16(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status, json!({"order_no": created["order_no"], "status": "pending"}));
}

async fn closing_releases_only_the_stock_the_order_reserved(backend: Backend) {
    // Arrange: an order for an untracked SKU; the SKU becomes tracked (sold out) afterwards.
    let app = spawn_app(backend).await;
    let body = json!({
        "out_business_id": "phantom-1",
        "user_id": "user-1",
        "subject": "Limited print",
        "items": [
            {"sku_id": "sku-print", "name": "Print", "unit_price": 700, "quantity": 3},
            {"sku_id": "sku-book", "name": "Book", "unit_price": 500, "quantity": 2}
        ]
    });
    app.put_sku(MERCHANT_A, "sku-book", 5).await;
    let order = app.create_order(&body).await;
    let order_no = order["order_no"].as_str().unwrap();
    assert_eq!(app.put_sku(MERCHANT_A, "sku-print", 0).await.status().as_u16(), 200);

    // Act
    let cancelled = app
        .post_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/cancel"), None)
        .await;

    // Assert: the print was never reserved, so nothing of it comes back; the books do.
    assert_eq!(cancelled.status().as_u16(), 200);
    assert_eq!(
        app.sku_available(MERCHANT_A, "sku-print").await,
        0,
        "no stock appears from nowhere"
    );
    assert_eq!(
        app.sku_available(MERCHANT_A, "sku-book").await,
        5,
        "the reserved books come back"
    );
}

/// Before the fix SKUs were shared: merchant B's order for a SKU that merchant A tracks took
/// A's units, and the 409 `insufficient_stock` message told any merchant the level left.
async fn a_merchant_can_neither_drain_nor_read_another_merchants_stock(backend: Backend) {
    // Arrange: merchant A tracks sku-x with 5 units; merchant B tracks nothing.
    let app = spawn_app(backend).await;
    let body = |out_business_id: &str, quantity: i64| {
        json!({
            "out_business_id": out_business_id,
            "user_id": "user-1",
            "subject": "Gadget",
            "items": [{"sku_id": "sku-x", "name": "Gadget", "unit_price": 100, "quantity": quantity}]
        })
    };
    assert_eq!(app.put_sku(MERCHANT_A, "sku-x", 5).await.status().as_u16(), 200);

    // Act: B orders 3 of its own (untracked) sku-x.
    let b_order = app.post_order(MERCHANT_B_KEY, &body("tenant-b-1", 3)).await;

    // Assert: B's order exists, reserved nothing, and A's stock is untouched.
    assert_eq!(b_order.status().as_u16(), 201);
    let b_order: Value = b_order.json().await.unwrap();
    let b_order_no = b_order["order_no"].as_str().unwrap().to_owned();
    assert_eq!(
        app.sku_available(MERCHANT_A, "sku-x").await,
        5,
        "B took none of A's units"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT CAST(COALESCE(SUM(reserved_quantity), 0) AS BIGINT) FROM order_items WHERE order_id = {b_order_no}"
        ))
        .await,
        0,
        "B's order is untracked"
    );
    assert_eq!(app.events_of(&b_order_no).await, ["order.created"], "no stock.reserved");
    let b_sku = app
        .get_as(ADMIN_TOKEN, &format!("/admin/merchants/{MERCHANT_B}/skus/sku-x"))
        .await;
    assert_eq!(error_code(b_sku, 404).await, "not_found", "B tracks no sku-x");
    let shared_route = app.get_as(ADMIN_TOKEN, "/admin/skus/sku-x").await;
    assert_eq!(
        error_code(shared_route, 404).await,
        "not_found",
        "no merchant-less stock route"
    );

    // Act: A asks for more than it has.
    let before = app.row_counts().await;
    let short = app.post_order(MERCHANT_A_KEY, &body("tenant-a-1", 6)).await;

    // Assert: a 409 that names the SKU and the quantity asked for, never the level.
    assert_eq!(short.status().as_u16(), 409);
    let text = short.text().await.unwrap();
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "insufficient_stock", "{text}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("sku-x") && message.contains('6'), "{message}");
    assert!(!text.contains('5'), "the level must not be revealed: {text}");
    assert!(!text.contains("available"), "the level must not be revealed: {text}");
    assert_eq!(app.row_counts().await, before, "nothing written");

    // A close gives units back to the order's own merchant: B now tracks sku-x too, each
    // merchant orders some, and each cancel restores only that merchant's level.
    assert_eq!(app.put_sku(MERCHANT_B, "sku-x", 10).await.status().as_u16(), 200);
    let a_order = app.create_order(&body("tenant-a-2", 2)).await;
    let b_second = app.post_order(MERCHANT_B_KEY, &body("tenant-b-2", 1)).await;
    assert_eq!(b_second.status().as_u16(), 201);
    let b_second: Value = b_second.json().await.unwrap();
    assert_eq!(app.sku_available(MERCHANT_A, "sku-x").await, 3);
    assert_eq!(app.sku_available(MERCHANT_B, "sku-x").await, 9);
    let cancel = |key: &'static str, order_no: String| {
        let app = &app;
        async move {
            let response = app.post_as(key, &format!("/v1/orders/{order_no}/cancel"), None).await;
            assert_eq!(response.status().as_u16(), 200, "cancelling {order_no}");
        }
    };
    cancel(MERCHANT_A_KEY, a_order["order_no"].as_str().unwrap().to_owned()).await;
    assert_eq!(app.sku_available(MERCHANT_A, "sku-x").await, 5);
    assert_eq!(app.sku_available(MERCHANT_B, "sku-x").await, 9);
    cancel(MERCHANT_B_KEY, b_second["order_no"].as_str().unwrap().to_owned()).await;
    cancel(MERCHANT_B_KEY, b_order_no).await;
    assert_eq!(app.sku_available(MERCHANT_A, "sku-x").await, 5);
    assert_eq!(
        app.sku_available(MERCHANT_B, "sku-x").await,
        10,
        "B's untracked first order gives nothing back"
    );
}
