use serde_json::{json, Value};

use crate::helpers::{error_code, on_both_backends, order_body, spawn_app, Backend, ADMIN_TOKEN, MERCHANT_A_KEY};

on_both_backends!(
    bad_order_bodies_get_a_4xx_and_write_nothing,
    malformed_oversize_and_non_json_bodies_are_refused,
    bad_stock_updates_are_refused,
    unknown_routes_and_orders_get_the_error_envelope,
);

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).expect("the field exists") = value;
    body
}

async fn bad_order_bodies_get_a_4xx_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.put_sku("sku-book", 100).await;
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
    app.put_sku("sku-1", 5).await;

    let negative = app.put_sku("sku-1", -1).await;
    let unknown_field = app
        .client
        .put(app.url("/admin/skus/sku-1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"available": 3, "reserved": 1}))
        .send()
        .await
        .unwrap();

    assert_eq!(error_code(negative, 422).await, "invalid_quantity");
    assert_eq!(error_code(unknown_field, 400).await, "invalid_json");
    assert_eq!(app.sku_available("sku-1").await, 5);
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
