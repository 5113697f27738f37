use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, Backend, ADMIN_TOKEN, MERCHANT_A, MERCHANT_A_KEY,
};

on_both_backends!(
    bad_order_bodies_get_a_4xx_and_write_nothing,
    malformed_oversize_and_non_json_bodies_are_refused,
    bad_stock_updates_are_refused,
    ids_with_a_nul_byte_get_a_4xx_not_a_server_error,
    unknown_routes_and_orders_get_the_error_envelope,
    every_stored_text_fits_its_column_at_the_limit_and_one_more_is_refused_with_nothing_done,
);

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).expect("the field exists") = value;
    body
}

async fn bad_order_bodies_get_a_4xx_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku(MERCHANT_A, "sku-book", 100).await;
    let base = order_body("bad-1");
    let mut unknown_field = base.clone();
    unknown_field["coupon"] = json!("FREE");
    let mut unknown_item_field = base.clone();
    unknown_item_field["items"][0]["discount"] = json!(5);
    let mut no_items = base.clone();
    no_items.as_object_mut().unwrap().remove("items");
    let mut no_subject = base.clone();
    no_subject.as_object_mut().unwrap().remove("subject");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (unknown_field, 400, "invalid_json", "an unknown field"),
        (unknown_item_field, 400, "invalid_json", "an unknown item field"),
        (no_items, 400, "invalid_json", "no items field"),
        (no_subject, 400, "invalid_json", "no subject"),
        (
            with(base.clone(), "/items", json!([])),
            422,
            "missing_items",
            "an empty item list",
        ),
        (
            with(base.clone(), "/items/0/unit_price", json!(0)),
            422,
            "invalid_amount",
            "a zero price",
        ),
        (
            with(base.clone(), "/items/0/unit_price", json!(-100)),
            422,
            "invalid_amount",
            "a negative price",
        ),
        (
            with(base.clone(), "/items/0/unit_price", json!(19.99)),
            400,
            "invalid_json",
            "a fractional price",
        ),
        (
            with(base.clone(), "/items/0/unit_price", json!("1999")),
            400,
            "invalid_json",
            "a price as a string",
        ),
        (
            with(base.clone(), "/items/0/quantity", json!(0)),
            422,
            "invalid_quantity",
            "a zero quantity",
        ),
        (
            with(base.clone(), "/items/0/quantity", json!(-1)),
            422,
            "invalid_quantity",
            "a negative quantity",
        ),
        (
            with(
                with(base.clone(), "/items/0/unit_price", json!(i64::MAX)),
                "/items/0/quantity",
                json!(2),
            ),
            422,
            "amount_too_large",
            "a line amount that overflows",
        ),
        (
            with(
                with(base.clone(), "/items/0/unit_price", json!(i64::MAX / 2)),
                "/items/1/unit_price",
                json!(i64::MAX / 2),
            ),
            422,
            "amount_too_large",
            "a total that overflows",
        ),
        (
            with(base.clone(), "/items/0/sku_id", json!("")),
            422,
            "invalid_field",
            "an empty sku_id",
        ),
        (
            with(base.clone(), "/subject", json!("   ")),
            422,
            "invalid_field",
            "a blank subject",
        ),
        (
            with(base.clone(), "/subject", json!("x".repeat(257))),
            422,
            "invalid_field",
            "a subject too long",
        ),
        (
            with(base.clone(), "/out_business_id", json!("")),
            422,
            "invalid_field",
            "an empty out_business_id",
        ),
        (
            {
                let mut b = base.clone();
                b["currency"] = json!("XYZ");
                b
            },
            422,
            "unsupported_currency",
            "an unknown currency",
        ),
        (
            {
                let mut b = base.clone();
                b["currency"] = json!("cny");
                b
            },
            422,
            "unsupported_currency",
            "a lower-case currency",
        ),
        (
            {
                let mut b = base.clone();
                b["ttl_seconds"] = json!(0);
                b
            },
            422,
            "invalid_ttl",
            "a zero TTL",
        ),
        (
            {
                let mut b = base.clone();
                b["ttl_seconds"] = json!(-60);
                b
            },
            422,
            "invalid_ttl",
            "a negative TTL",
        ),
        (
            {
                let mut b = base.clone();
                b["ttl_seconds"] = json!(86_401);
                b
            },
            422,
            "invalid_ttl",
            "a TTL above the maximum",
        ),
    ];
    let before = app.row_counts().await;

    for (body, status, code, description) in cases {
        let response = app.post_order(MERCHANT_A_KEY, &body).await;

        assert_eq!(response.status().as_u16(), status, "status for {description}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "code for {description}: {error}");
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "a message for {description}"
        );
        assert_eq!(app.row_counts().await, before, "nothing written for {description}");
    }
}

async fn malformed_oversize_and_non_json_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.row_counts().await;
    let url = app.url("/v1/orders");
    let huge_subject = "x".repeat(app.settings.server.max_body_bytes + 1);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{\"out_business_id\": "),
            400,
            "invalid_json",
            "truncated JSON",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(order_body("bad-4").to_string().replace("1999", "100000000000000000000")),
            400,
            "invalid_json",
            "a price beyond 64 bits",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("[1, 2, 3]"),
            400,
            "invalid_json",
            "a JSON array",
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "text/plain")
                .body(order_body("bad-2").to_string()),
            415,
            "unsupported_media_type",
            "a text/plain body",
        ),
        (
            app.client
                .post(&url)
                .json(&with(order_body("bad-3"), "/subject", json!(huge_subject))),
            413,
            "payload_too_large",
            "a body above the limit",
        ),
    ];

    for (request, status, code, description) in cases {
        let response = request.bearer_auth(MERCHANT_A_KEY).send().await.unwrap();

        assert_eq!(error_code(response, status).await, code, "for {description}");
        assert_eq!(app.row_counts().await, before, "nothing written for {description}");
    }
}

async fn bad_stock_updates_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku(MERCHANT_A, "sku-1", 5).await;

    let negative = app.put_sku(MERCHANT_A, "sku-1", -1).await;
    let unknown_field = app
        .client
        .put(app.url("/admin/merchants/merchant_a/skus/sku-1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"available": 3, "reserved": 1}))
        .send()
        .await
        .unwrap();

    let bad_merchant = app.put_sku("not%20a%20merchant", "sku-1", 3).await;
    let bad_merchant_read = app
        .get_as(ADMIN_TOKEN, &format!("/admin/merchants/{}/skus/sku-1", "m".repeat(65)))
        .await;

    assert_eq!(error_code(negative, 422).await, "invalid_quantity");
    assert_eq!(error_code(unknown_field, 400).await, "invalid_json");
    assert_eq!(error_code(bad_merchant, 422).await, "invalid_merchant_id");
    assert_eq!(error_code(bad_merchant_read, 422).await, "invalid_merchant_id");
    assert_eq!(app.sku_available(MERCHANT_A, "sku-1").await, 5);
    assert_eq!(app.count("SELECT COUNT(*) FROM skus").await, 1, "nothing written");
}

/// PostgreSQL refuses a NUL byte in text outright; an id naming nothing must still be a 4xx.
/// Before the fix these three were 500s on PostgreSQL.
async fn ids_with_a_nul_byte_get_a_4xx_not_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;

    let read = app.get_as(ADMIN_TOKEN, "/admin/merchants/merchant_a/skus/a%00b").await;
    let write = app.put_sku(MERCHANT_A, "a%00b", 3).await;
    let remove = app
        .client
        .delete(app.url("/admin/subscribers/sub_%00"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();

    assert_eq!(error_code(read, 404).await, "not_found");
    assert_eq!(error_code(write, 422).await, "invalid_field");
    assert_eq!(error_code(remove, 404).await, "not_found");
    assert_eq!(app.count("SELECT COUNT(*) FROM skus").await, 0, "nothing written");
}

async fn unknown_routes_and_orders_get_the_error_envelope(backend: Backend) {
    let app = spawn_app(backend).await;

    let route = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    let order = app.get_order(MERCHANT_A_KEY, "123456789").await;
    let garbage = app.get_order(MERCHANT_A_KEY, "not-a-number").await;

    assert_eq!(error_code(route, 404).await, "not_found");
    assert_eq!(error_code(order, 404).await, "not_found");
    assert_eq!(error_code(garbage, 404).await, "not_found");
}

/// Each text a request stores, at its column's limit (in characters, with multi-byte ones, as
/// PostgreSQL's `varchar(n)` counts) is stored; one character more is a 422 before any side
/// effect. Before the fix a force-close reason of 243 to 256 characters passed validation,
/// the provider closed the trade, and then the `close_reason varchar(256)` write failed (500).
async fn every_stored_text_fits_its_column_at_the_limit_and_one_more_is_refused_with_nothing_done(backend: Backend) {
    let app = spawn_app(backend).await;
    let wide = |n: usize| "界".repeat(n);

    // Order creation: out_business_id 128, user_id 128, subject 256, sku_id 64, item name 256.
    let fields: [(&str, usize); 5] = [
        ("/out_business_id", 128),
        ("/user_id", 128),
        ("/subject", 256),
        ("/items/0/sku_id", 64),
        ("/items/0/name", 256),
    ];
    for (index, (pointer, limit)) in fields.into_iter().enumerate() {
        let before = app.row_counts().await;
        let too_long = with(
            order_body(&format!("len-over-{index}")),
            pointer,
            json!(wide(limit + 1)),
        );
        let refused = app.post_order(MERCHANT_A_KEY, &too_long).await;
        assert_eq!(
            error_code(refused, 422).await,
            "invalid_field",
            "{pointer} at {}",
            limit + 1
        );
        assert_eq!(
            app.row_counts().await,
            before,
            "{pointer}: a refused order wrote nothing"
        );

        let mut at_limit = with(order_body(&format!("len-at-{index}")), pointer, json!(wide(limit)));
        if pointer == "/out_business_id" {
            at_limit["out_business_id"] = json!(wide(limit));
        }
        let created = app.post_order(MERCHANT_A_KEY, &at_limit).await;
        assert_eq!(created.status().as_u16(), 201, "{pointer} at its limit {limit}");
    }

    // Force-close reason: the stored text is "force-closed: " + reason in 256 characters.
    let (order_no, pay_no) = app.order_with_attempt("len-force", 600).await;
    let path = format!("/admin/orders/{order_no}/force-close");
    let logs_before = app.count("SELECT COUNT(*) FROM order_logs").await;
    let refused = app
        .post_as(ADMIN_TOKEN, &path, Some(&json!({"reason": wide(243)})))
        .await;
    assert_eq!(error_code(refused, 422).await, "invalid_field");
    let trade = app.sandbox_trade(&pay_no).await;
    assert_eq!(trade["close_count"], 0, "the provider trade was not closed: {trade}");
    assert_eq!(trade["trade_state"], "NOTPAY", "{trade}");
    assert_eq!(app.count("SELECT COUNT(*) FROM order_logs").await, logs_before);
    assert_eq!(app.admin_order(&order_no).await["status"], "pending");

    let closed = app
        .post_as(ADMIN_TOKEN, &path, Some(&json!({"reason": wide(242)})))
        .await;
    assert_eq!(closed.status().as_u16(), 200, "a 242-character reason fits");
    let order: Value = closed.json().await.unwrap();
    assert_eq!(order["status"], "closed");
    let stored = order["close_reason"].as_str().unwrap();
    assert_eq!(stored.chars().count(), 256, "{stored}");
    assert!(stored.starts_with("force-closed: "), "{stored}");

    // Stock: the SKU id is 64 characters at most.
    assert_eq!(app.put_sku(MERCHANT_A, &"k".repeat(64), 5).await.status().as_u16(), 200);
    assert_eq!(
        error_code(app.put_sku(MERCHANT_A, &"k".repeat(65), 5).await, 422).await,
        "invalid_field"
    );

    // Subscribers: a repeated event type is stored once (the list fits its column whatever is
    // repeated); a secret longer than 256 bytes is refused.
    let add = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/admin/subscribers"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let repeated = vec!["order.payment_anomaly"; 100];
    let added = add(json!({"url": "http://127.0.0.1:9/hook", "event_types": repeated})).await;
    assert_eq!(added.status().as_u16(), 201);
    let subscriber: Value = added.json().await.unwrap();
    assert_eq!(subscriber["event_types"], "order.payment_anomaly");
    let long_secret = add(json!({"url": "http://127.0.0.1:9/hook", "secret": "s".repeat(257)})).await;
    assert_eq!(error_code(long_secret, 422).await, "invalid_secret");
}
