use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, spawn_app_with, test_settings, Backend, ADMIN_TOKEN,
    MERCHANT_A_KEY, MERCHANT_B_KEY,
};

on_both_backends!(
    client_routes_need_a_configured_api_key,
    an_order_of_one_merchant_is_invisible_to_another,
    admin_routes_need_the_admin_token,
    sandbox_control_routes_need_the_admin_token_outside_development,
);

async fn client_routes_need_a_configured_api_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (None, "no Authorization header"),
        (Some("Bearer pk_not_configured".to_owned()), "an unknown key"),
        (Some(format!("Basic {MERCHANT_A_KEY}")), "another scheme"),
        (Some(format!("Bearer {ADMIN_TOKEN}")), "the admin token"),
    ];
    for (header, description) in cases {
        let mut request = app.client.post(app.url("/v1/orders")).json(&order_body("auth-1"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }

        let response = request.send().await.unwrap();

        assert_eq!(error_code(response, 401).await, "unauthorized", "with {description}");
    }
    assert_eq!(app.row_counts().await.orders, 0);
}

async fn an_order_of_one_merchant_is_invisible_to_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.create_order(&order_body("auth-2")).await;
    let order_no = order["order_no"].as_str().unwrap();
    let attempt: serde_json::Value = app
        .post_payment(MERCHANT_A_KEY, order_no, "sandbox")
        .await
        .json()
        .await
        .unwrap();
    let pay_no = attempt["pay_no"].as_str().unwrap();
    let before = app.row_counts().await;

    assert_eq!(
        error_code(app.get_order(MERCHANT_B_KEY, order_no).await, 404).await,
        "not_found"
    );
    assert_eq!(
        error_code(app.get_status(MERCHANT_B_KEY, order_no).await, 404).await,
        "not_found"
    );
    assert_eq!(
        error_code(app.post_payment(MERCHANT_B_KEY, order_no, "sandbox").await, 404).await,
        "not_found"
    );
    assert_eq!(
        error_code(app.get_qr(MERCHANT_B_KEY, pay_no).await, 404).await,
        "not_found"
    );
    assert_eq!(app.row_counts().await, before);

    // The same out_business_id is a separate namespace per merchant.
    let response = app.post_order(MERCHANT_B_KEY, &order_body("auth-2")).await;
    assert_eq!(response.status().as_u16(), 201);
}

async fn admin_routes_need_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for key in [None, Some(MERCHANT_A_KEY), Some("wrong_admin_token")] {
        let mut request = app.client.get(app.url("/admin/orders?status=pending"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        assert_eq!(
            error_code(request.send().await.unwrap(), 401).await,
            "unauthorized",
            "with {key:?}"
        );
    }
    let response = app.get_as(ADMIN_TOKEN, "/admin/orders?status=pending").await;
    assert_eq!(response.status().as_u16(), 200);
}

/// Before the fix anyone could mark a sandbox attempt paid: the control routes took no
/// credentials in any profile. Outside the development profile they need the admin token.
async fn sandbox_control_routes_need_the_admin_token_outside_development(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("sandbox-auth", 600).await;
    let trade = format!("/sandbox/trades/{pay_no}");
    let anonymous = [
        app.client.post(app.url(&format!("{trade}/pay"))).send().await.unwrap(),
        app.client.get(app.url(&trade)).send().await.unwrap(),
        app.client
            .put(app.url("/sandbox/faults"))
            .json(&serde_json::json!({"mode": "error"}))
            .send()
            .await
            .unwrap(),
        app.client
            .post(app.url(&format!("{trade}/pay")))
            .bearer_auth(MERCHANT_A_KEY)
            .send()
            .await
            .unwrap(),
    ];
    for response in anonymous {
        assert_eq!(error_code(response, 401).await, "unauthorized");
    }
    assert_eq!(
        app.admin_order(&order_no).await["status"],
        "pending",
        "nothing was paid"
    );
    assert_eq!(app.sandbox_trade(&pay_no).await["trade_state"], "NOTPAY");

    // The development profile leaves them open: a developer plays the buyer from a shell.
    let mut settings = test_settings(backend).await;
    settings.env = paywarden::config::Profile::Development;
    let dev = spawn_app_with(settings).await;
    let (_, dev_pay_no) = dev.order_with_attempt("sandbox-dev", 600).await;
    let opened = dev
        .client
        .get(dev.url(&format!("/sandbox/trades/{dev_pay_no}")))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 200);
}
