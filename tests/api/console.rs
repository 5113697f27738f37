//! The operator console over HTTP: sign-in, the session cookie, and the CSRF and origin checks
//! that stand between a form and the engine. (Clicking through it in a browser: `browser.rs`.)

use std::time::Duration;

use crate::helpers::{spawn_app, Backend, TestApp, ADMIN_TOKEN};

/// Signs in as `name`; the session cookie (`name=value`).
pub(crate) async fn sign_in(app: &TestApp, name: &str) -> String {
    let response = app
        .client
        .post(app.url("/admin/ui/login"))
        .form(&[("token", ADMIN_TOKEN), ("name", name)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/admin/ui/orders");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin/ui"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a console page's forms.
pub(crate) fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a csrf field") + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let response = app
        .client
        .get(app.url(path))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[actix_web::test]
async fn the_console_needs_a_session_and_the_admin_token_to_get_one() {
    let app = spawn_app(Backend::Sqlite).await;

    let anonymous = app.client.get(app.url("/admin/ui/orders")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(anonymous.headers()["location"], "/admin/ui/login");

    let wrong = app
        .client
        .post(app.url("/admin/ui/login"))
        .form(&[("token", "not-the-token"), ("name", "mallory")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let forged_cookie = app
        .client
        .get(app.url("/admin/ui/orders"))
        .header("Cookie", "pw_console=9999999999.00.YWxpY2U.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged_cookie.status().as_u16(), 303, "an unsigned cookie is no session");

    let cookie = sign_in(&app, "alice").await;
    let (status, orders) = page(&app, &cookie, "/admin/ui/orders").await;
    assert_eq!(status, 200);
    assert!(orders.contains("Signed in as alice"));
    // The bearer-token API is not opened by the cookie.
    let api = app
        .client
        .get(app.url("/admin/orders"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
}

#[actix_web::test]
async fn a_form_without_the_session_s_csrf_token_or_from_another_origin_changes_nothing() {
    // Arrange
    let app = spawn_app(Backend::Postgres).await;
    let (order_no, _) = app.order_with_attempt("console-1", 600).await;
    let cookie = sign_in(&app, "alice").await;
    let (_, order_page) = page(&app, &cookie, &format!("/admin/ui/orders/{order_no}")).await;
    let csrf = csrf_of(&order_page);
    let action = app.url(&format!("/admin/ui/orders/{order_no}/force-close"));

    // Act
    let without_token = app
        .client
        .post(&action)
        .header("Cookie", &cookie)
        .form(&[("csrf", "forged"), ("reason", "customer asked")])
        .send()
        .await
        .unwrap();
    let cross_site = app
        .client
        .post(&action)
        .header("Cookie", &cookie)
        .header("Origin", "https://attacker.example")
        .form(&[("csrf", csrf.as_str()), ("reason", "customer asked")])
        .send()
        .await
        .unwrap();
    let other_session = sign_in(&app, "bob").await;
    let token_of_another_session = app
        .client
        .post(&action)
        .header("Cookie", &other_session)
        .form(&[("csrf", csrf.as_str()), ("reason", "customer asked")])
        .send()
        .await
        .unwrap();

    // Assert
    for refused in [without_token, cross_site, token_of_another_session] {
        assert_eq!(refused.status().as_u16(), 403);
    }
    assert_eq!(app.admin_order(&order_no).await["status"], "pending");

    // The genuine form goes through the engine and records the operator.
    let done = app
        .client
        .post(&action)
        .header("Cookie", &cookie)
        .header("Origin", &app.address)
        .form(&[("csrf", csrf.as_str()), ("reason", "customer asked")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 303);
    let order = app.wait_for_status(&order_no, "closed", Duration::from_secs(5)).await;
    assert_eq!(order["close_reason"], "force-closed: customer asked");
    let detail = app.admin_order(&order_no).await;
    let closed = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|log| log["to"] == "closed")
        .unwrap();
    let operator = closed["operator"].as_str().unwrap();
    assert!(operator.starts_with("admin:alice (session "), "{operator}");
    let (_, shown) = page(
        &app,
        &cookie,
        &format!("/admin/ui/orders/{order_no}?notice=force-closed"),
    )
    .await;
    assert!(shown.contains("The order was force-closed.") && shown.contains("admin:alice"));
}

#[actix_web::test]
async fn a_refused_action_shows_the_reason_and_writes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let cookie = sign_in(&app, "alice").await;
    let (_, skus) = page(&app, &cookie, "/admin/ui/skus").await;
    let csrf = csrf_of(&skus);

    let refused = app
        .client
        .post(app.url("/admin/ui/skus"))
        .header("Cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("merchant_id", "merchant_a"),
            ("sku_id", "sku-1"),
            ("available", "-3"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    assert!(refused.text().await.unwrap().contains("invalid_quantity"));
    assert_eq!(app.count("SELECT COUNT(*) FROM skus").await, 0);

    let set = app
        .client
        .post(app.url("/admin/ui/skus"))
        .header("Cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("merchant_id", "merchant_a"),
            ("sku_id", "sku-1"),
            ("available", "7"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 303);
    assert_eq!(app.sku_available("merchant_a", "sku-1").await, 7);
}

#[actix_web::test]
async fn an_unknown_status_filter_is_a_bad_request_on_every_list() {
    let app = spawn_app(Backend::Sqlite).await;
    let cookie = sign_in(&app, "alice").await;
    for path in ["/admin/ui/orders?status=bogus", "/admin/ui/deliveries?status=bogus"] {
        let (status, body) = page(&app, &cookie, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("bogus"), "{path}: the page names the value");
    }
}

/// The order list offers a filter for every status an order can be in (`refunded` was
/// missing from a hand-written list), and each one answers.
#[actix_web::test]
async fn the_order_list_filters_by_every_status() {
    let app = spawn_app(Backend::Sqlite).await;
    let cookie = sign_in(&app, "alice").await;
    let (status, body) = page(&app, &cookie, "/admin/ui/orders").await;
    assert_eq!(status, 200);
    for name in ["pending", "stuck", "paid", "closed", "paid_after_close", "refunded"] {
        let link = format!("href=\"/admin/ui/orders?status={name}\"");
        assert!(body.contains(&link), "a filter for {name}");
        let (status, _) = page(&app, &cookie, &format!("/admin/ui/orders?status={name}")).await;
        assert_eq!(status, 200, "{name}");
    }
}

/// An order's page lists its refunds, with who asked and what the provider said.
#[actix_web::test]
async fn an_order_s_page_lists_its_refunds() {
    let mut settings = crate::helpers::test_settings(Backend::Postgres).await;
    settings.anomalies.auto_refund = true;
    let app = crate::helpers::spawn_app_with(settings).await;
    let (order_no, pay_no) = app.order_with_attempt("console-refund", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
    let refund = app
        .post_as(
            crate::helpers::MERCHANT_A_KEY,
            &format!("/v1/orders/{order_no}/refunds"),
            Some(&serde_json::json!({"out_refund_id": "rf-console", "amount": 1000, "reason": "one item back"})),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    let refund: serde_json::Value = refund.json().await.unwrap();
    let refund_no = refund["refund_no"].as_str().unwrap().to_owned();
    let cookie = sign_in(&app, "alice").await;
    let started = std::time::Instant::now();
    loop {
        let (status, html) = page(&app, &cookie, &format!("/admin/ui/orders/{order_no}")).await;
        assert_eq!(status, 200);
        let table = &html[html.find("id=\"refunds\"").expect("a refunds table")..];
        assert!(table.contains(&refund_no) && table.contains("rf-console") && table.contains("one item back"));
        assert!(table.contains("merchant:merchant_a"));
        if table.contains("badge succeeded") {
            assert!(html.contains("¥10.00"), "the refunded amount is shown");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not succeeded on the page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts a console form with the session's cookie and CSRF token; the status and `Location`.
async fn post_form(app: &TestApp, cookie: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let response = app
        .client
        .post(app.url(path))
        .header("Cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

/// Before the fix sign-out only cleared the browser's cookie: a copy of it still performed
/// a force-close afterwards.
#[actix_web::test]
async fn signing_out_revokes_the_session_and_its_cookie_is_refused_even_on_a_form() {
    // Arrange
    let app = spawn_app(Backend::Postgres).await;
    let (order_no, _) = app.order_with_attempt("console-signout", 600).await;
    let cookie = sign_in(&app, "alice").await;
    let (_, order_page) = page(&app, &cookie, &format!("/admin/ui/orders/{order_no}")).await;
    let csrf = csrf_of(&order_page);
    let token = cookie
        .trim_start_matches("pw_console=")
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let stored = app
        .count(&format!(
            "SELECT COUNT(*) FROM console_sessions WHERE token_digest = '{}' AND token_digest <> '{token}'",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
        ))
        .await;
    assert_eq!(stored, 1, "the row holds the token's digest, not the token");

    // Act
    let (signed_out, to) = post_form(&app, &cookie, "/admin/ui/logout", &[("csrf", &csrf)]).await;
    let (reused, reused_to) = page(&app, &cookie, "/admin/ui/orders").await;
    let (force_close, force_close_to) = post_form(
        &app,
        &cookie,
        &format!("/admin/ui/orders/{order_no}/force-close"),
        &[("csrf", &csrf), ("reason", "after sign-out")],
    )
    .await;

    // Assert
    assert_eq!((signed_out, to.as_str()), (303, "/admin/ui/login"));
    assert_eq!(reused, 303, "{reused_to}");
    assert_eq!((force_close, force_close_to.as_str()), (303, "/admin/ui/login"));
    assert_eq!(
        app.admin_order(&order_no).await["status"],
        "pending",
        "nothing was done"
    );
}

#[actix_web::test]
async fn an_operator_can_sign_out_every_session_from_the_console_or_the_admin_api() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let alice = sign_in(&app, "alice").await;
    let bob = sign_in(&app, "bob").await;
    let (_, orders) = page(&app, &alice, "/admin/ui/orders").await;
    assert!(
        orders.contains("/admin/ui/sessions/revoke-all"),
        "the console offers it"
    );

    // Act
    let (status, to) = post_form(
        &app,
        &alice,
        "/admin/ui/sessions/revoke-all",
        &[("csrf", &csrf_of(&orders))],
    )
    .await;

    // Assert
    assert_eq!((status, to.as_str()), (303, "/admin/ui/login"));
    for cookie in [&alice, &bob] {
        assert_eq!(page(&app, cookie, "/admin/ui/orders").await.0, 303, "{cookie}");
    }

    // The same through the admin API.
    let carol = sign_in(&app, "carol").await;
    let revoked = app
        .post_as(ADMIN_TOKEN, "/admin/console-sessions/revoke-all", None)
        .await;
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(revoked.json::<serde_json::Value>().await.unwrap()["revoked"], 1);
    assert_eq!(page(&app, &carol, "/admin/ui/orders").await.0, 303);
}

#[actix_web::test]
async fn a_session_unused_for_the_idle_timeout_ends() {
    // Arrange: 800 ms of idleness ends a session (the test sets what the configuration, in
    // whole seconds, cannot).
    let mut settings = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.console.idle = Duration::from_millis(800);
    let app = crate::helpers::spawn_app_with(settings).await;
    let cookie = sign_in(&app, "alice").await;

    // Act / Assert: used within the timeout, it lasts beyond it.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(page(&app, &cookie, "/admin/ui/orders").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(page(&app, &cookie, "/admin/ui/orders").await.0, 303, "idle too long");
}

/// The dashboard's own refresh (its script marks it) is not a use: a tab left open still signs
/// out after the idle timeout. Before the fix each refresh extended the session.
#[actix_web::test]
async fn a_page_refreshing_by_itself_does_not_keep_the_session_alive() {
    let mut settings = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.console.idle = Duration::from_millis(800);
    let app = crate::helpers::spawn_app_with(settings).await;
    let cookie = sign_in(&app, "alice").await;
    let refresh = || {
        app.client
            .get(app.url("/admin/ui"))
            .header("Cookie", &cookie)
            .header("X-Console-Refresh", "1")
            .send()
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let refreshed = refresh().await.unwrap().status().as_u16();
        if refreshed != 200 {
            assert_eq!(refreshed, 303, "signed out, not refused otherwise");
            return;
        }
    }
    panic!("the refreshes kept the session alive past its idle timeout");
}

/// Before the fix the cookie's MAC key was SHA-256 of a constant and the admin token, so one
/// cookie let anyone test admin-token guesses offline (and forge sessions with a guessed one).
#[actix_web::test]
async fn a_cookie_signed_with_a_key_derived_from_the_admin_token_is_refused() {
    use base64::Engine as _;
    use hmac::Mac as _;
    use sha2::Digest as _;

    // Arrange: a cookie of the old scheme, `<expiry>.<nonce>.<name>.<mac>`.
    let app = spawn_app(Backend::Sqlite).await;
    let mut derive = sha2::Sha256::new();
    derive.update(b"paywarden console session v1\n");
    derive.update(ADMIN_TOKEN.as_bytes());
    let key: [u8; 32] = derive.finalize().into();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let expires = (chrono::Utc::now().timestamp() + 3600).to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let name = b64.encode("mallory");
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
    for part in ["session", expires.as_str(), nonce.as_str(), name.as_str()] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    let mac = b64.encode(mac.finalize().into_bytes());
    let cookie = format!("pw_console={expires}.{nonce}.{name}.{mac}");

    // Act
    let (status, _) = page(&app, &cookie, "/admin/ui/orders").await;

    // Assert
    assert_eq!(status, 303, "to the sign-in page");
}

/// Rotating the admin token (what an operator does after a leak) ends every console session
/// signed in with the old one, on every node; the same token keeps them.
#[actix_web::test]
async fn rotating_the_admin_token_ends_the_sessions_signed_in_with_the_old_one() {
    // Arrange: two services on one database and one session secret, as two nodes are.
    let mut settings = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.console.session_secret =
        secrecy::SecretString::from("console_session_secret_for_rotation_0123456789".to_owned());
    let first = crate::helpers::spawn_app_with(settings.clone()).await;
    let cookie = sign_in(&first, "alice").await;
    let same_token = crate::helpers::spawn_app_with(settings.clone()).await;
    settings.auth.admin_token = secrecy::SecretString::from("rotated_admin_token_0123456789".to_owned());
    let rotated = crate::helpers::spawn_app_with(settings).await;

    // Act
    let (kept, _) = page(&same_token, &cookie, "/admin/ui/orders").await;
    let (after_rotation, _) = page(&rotated, &cookie, "/admin/ui/orders").await;

    // Assert
    assert_eq!(kept, 200, "another node with the same token serves the session");
    assert_eq!(
        after_rotation, 303,
        "to the sign-in page: the token it was signed in with is gone"
    );
}

/// The location a console GET answers with (a `303`), or its status and page.
async fn location_of(app: &TestApp, cookie: &str, path: &str) -> Result<String, (u16, String)> {
    let response = app
        .client
        .get(app.url(path))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        303 => Ok(response.headers()["location"].to_str().unwrap().to_owned()),
        status => Err((status, response.text().await.unwrap())),
    }
}

#[actix_web::test]
async fn the_search_finds_an_order_by_any_of_its_ids_across_merchants() {
    use crate::helpers::{order_body, MERCHANT_A_KEY, MERCHANT_B_KEY};

    let app = spawn_app(Backend::Postgres).await;
    // Merchant A's order, paid, with a refund; merchant B's order under the same business id.
    let (order_no, pay_no) = app.order_with_attempt("shared-business-id", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    let paid = app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
    assert_eq!(paid["status"], "paid");
    let refund = app
        .post_as(
            MERCHANT_A_KEY,
            &format!("/v1/orders/{order_no}/refunds"),
            Some(&serde_json::json!({"out_refund_id": "rf-search", "amount": 100, "reason": "search"})),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    let refund: serde_json::Value = refund.json().await.unwrap();
    let refund_no = refund["refund_no"].as_str().unwrap().to_owned();
    let other = app.post_order(MERCHANT_B_KEY, &order_body("shared-business-id")).await;
    assert_eq!(other.status().as_u16(), 201);
    let other: serde_json::Value = other.json().await.unwrap();
    let other_no = other["order_no"].as_str().unwrap().to_owned();
    let order: serde_json::Value = app.get_order(MERCHANT_A_KEY, &order_no).await.json().await.unwrap();
    let transaction = order["payments"][0]["provider_txn_id"].as_str().unwrap().to_owned();
    let cookie = sign_in(&app, "alice").await;

    // One order found: its page.
    let page_of_a = format!("/admin/ui/orders/{order_no}");
    for term in [&order_no, &pay_no, &transaction, &refund_no, &"rf-search".to_owned()] {
        let found = location_of(&app, &cookie, &format!("/admin/ui/search?q={term}")).await;
        assert_eq!(found, Ok(page_of_a.clone()), "searching {term}");
    }
    // Padding is not part of an id.
    let padded = location_of(&app, &cookie, &format!("/admin/ui/search?q=%20{other_no}%20")).await;
    assert_eq!(padded, Ok(format!("/admin/ui/orders/{other_no}")));

    // Two merchants' orders under one business id: both listed, with what matched.
    let Err((status, html)) = location_of(&app, &cookie, "/admin/ui/search?q=shared-business-id").await else {
        panic!("a list was expected");
    };
    assert_eq!(status, 200);
    let table = &html[html.find("id=\"search-results\"").expect("a result table")..];
    for (number, merchant) in [(&order_no, "merchant_a"), (&other_no, "merchant_b")] {
        assert!(
            table.contains(&format!("data-order-no=\"{number}\"")),
            "{number} listed"
        );
        assert!(table.contains(merchant));
    }
    assert_eq!(table.matches("out_business_id").count(), 2);

    // Nothing found; an empty term; a term no id can be.
    let Err((status, html)) = location_of(&app, &cookie, "/admin/ui/search?q=no-such-id").await else {
        panic!("a page was expected");
    };
    assert_eq!(status, 200);
    assert!(html.contains("id=\"no-results\""));
    assert_eq!(
        location_of(&app, &cookie, "/admin/ui/search?q=").await,
        Ok("/admin/ui/orders".to_owned())
    );
    let long = "x".repeat(129);
    let Err((status, _)) = location_of(&app, &cookie, &format!("/admin/ui/search?q={long}")).await else {
        panic!("a refusal was expected");
    };
    assert_eq!(status, 400);
    // Without a session: the sign-in page, as for every console page.
    let response = app
        .client
        .get(app.url("/admin/ui/search?q=shared-business-id"))
        .send()
        .await
        .unwrap();
    assert_ne!(response.status().as_u16(), 200);
}

#[actix_web::test]
async fn a_console_refund_asks_before_it_acts_and_is_held_to_the_api_s_rules() {
    let app = spawn_app(Backend::Sqlite).await;
    let (order_no, pay_no) = app.order_with_attempt("console-refund-rules", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    let paid = app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
    assert_eq!(paid["status"], "paid");
    let order: serde_json::Value = app
        .get_order(crate::helpers::MERCHANT_A_KEY, &order_no)
        .await
        .json()
        .await
        .unwrap();
    let total = order["total_amount"].as_i64().unwrap();
    let cookie = sign_in(&app, "alice").await;
    let (_, html) = page(&app, &cookie, &format!("/admin/ui/orders/{order_no}")).await;
    let csrf = csrf_of(&html);
    let path = format!("/admin/ui/orders/{order_no}/refund");
    let form = |amount: String, confirm: bool| {
        let mut fields = vec![
            ("csrf", csrf.clone()),
            ("out_refund_id", "console-rules".to_owned()),
            ("pay_no", pay_no.clone()),
            ("amount", amount),
            ("reason", "damaged".to_owned()),
        ];
        if confirm {
            fields.push(("confirm", "yes".to_owned()));
        }
        fields
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let (app, cookie, path) = (&app, cookie.clone(), path.clone());
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(key, value)| (*key, value.as_str())).collect();
            post_form(app, &cookie, &path, &pairs).await
        }
    };

    // Not confirmed: a page saying what it will do; nothing written.
    let (status, location) = post(form("100".to_owned(), false)).await;
    assert_eq!((status, location.as_str()), (200, ""));
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 0);
    // More than was paid, confirmed: refused as the API refuses it; nothing written.
    let (status, _) = post(form((total + 1).to_string(), true)).await;
    assert_eq!(status, 422);
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 0);
    // Confirmed: one refund, and the same form sent twice (a double click) is still one.
    for _ in 0..2 {
        let (status, location) = post(form("100".to_owned(), true)).await;
        assert_eq!(status, 303);
        assert_eq!(location, format!("/admin/ui/orders/{order_no}?notice=refund-requested"));
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM refunds WHERE operator LIKE 'admin:alice%' AND amount = 100")
            .await,
        1
    );
}

/// A reconciliation run of yesterday's sandbox bill with one open difference, as the worker
/// writes them; the run's id and the item's.
pub(crate) async fn run_with_a_difference(app: &TestApp) -> (i64, i64) {
    app.execute(
        "INSERT INTO reconciliation_runs (provider, bill_date, status, attempts, operator, summary, items, created_at, updated_at, completed_at) \
         VALUES ('sandbox', '2026-12-01', 'completed', 1, 'admin', '1 difference', 1, now(), now(), now())",
    )
    .await;
    let run = app.count("SELECT MAX(id) FROM reconciliation_runs").await;
    app.execute(&format!(
        "INSERT INTO reconciliation_items (run_id, kind, reference, out_trade_no, provider_amount, local_amount, detail, created_at) \
         VALUES ({run}, 'unknown_trade', '7301', '7301', 500, NULL, 'the bill has a trade paywarden never started', now())"
    ))
    .await;
    (run, app.count("SELECT MAX(id) FROM reconciliation_items").await)
}

#[actix_web::test]
async fn a_reconciliation_difference_is_resolved_once_from_its_run_s_page() {
    let app = spawn_app(Backend::Postgres).await;
    let (run, item) = run_with_a_difference(&app).await;
    let cookie = sign_in(&app, "alice").await;
    let (status, html) = page(&app, &cookie, "/admin/ui/reconciliations").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-run-id=\"{run}\"")));
    let (status, html) = page(&app, &cookie, &format!("/admin/ui/reconciliations/{run}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("unknown_trade") && html.contains("1 open of 1 differences"));
    let csrf = csrf_of(&html);
    let resolve = format!("/admin/ui/reconciliation-items/{item}/resolve");

    // An empty note is refused and changes nothing.
    let (status, _) = post_form(&app, &cookie, &resolve, &[("csrf", &csrf), ("note", " ")]).await;
    assert_eq!(status, 422);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM reconciliation_items WHERE resolved_at IS NOT NULL")
            .await,
        0
    );
    let (status, location) = post_form(
        &app,
        &cookie,
        &resolve,
        &[("csrf", &csrf), ("note", "refunded at the provider by hand")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        location,
        format!("/admin/ui/reconciliations/{run}?notice=difference-resolved")
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM reconciliation_items WHERE resolution = 'refunded at the provider by hand' AND resolved_by LIKE 'admin:alice%'"
        )
        .await,
        1
    );
    // Once: a second resolve is refused as the API refuses it.
    let (status, _) = post_form(&app, &cookie, &resolve, &[("csrf", &csrf), ("note", "again")]).await;
    assert_eq!(status, 409);
    let (_, html) = page(&app, &cookie, &format!("/admin/ui/reconciliations/{run}")).await;
    assert!(html.contains("0 open of 1 differences") && html.contains("refunded at the provider by hand"));
}

#[actix_web::test]
async fn a_day_is_reconciled_from_the_console_and_a_bad_day_is_refused() {
    let app = spawn_app(Backend::Postgres).await;
    let cookie = sign_in(&app, "alice").await;
    let (_, html) = page(&app, &cookie, "/admin/ui/reconciliations").await;
    let csrf = csrf_of(&html);
    let today = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string();
    let (status, location) = post_form(
        &app,
        &cookie,
        "/admin/ui/reconciliations",
        &[("csrf", &csrf), ("provider", "sandbox"), ("date", &today)],
    )
    .await;
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/admin/ui/reconciliations/") && location.ends_with("?notice=reconciled"));
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_runs").await, 1);
    for (provider, date) in [
        ("sandbox", "2020-01-01"),
        ("sandbox", "yesterday"),
        ("paypal", today.as_str()),
    ] {
        let (status, _) = post_form(
            &app,
            &cookie,
            "/admin/ui/reconciliations",
            &[("csrf", &csrf), ("provider", provider), ("date", date)],
        )
        .await;
        assert_eq!(status, 422, "{provider} {date}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_runs").await, 1);
}

#[actix_web::test]
async fn the_navigation_counts_what_waits_for_an_operator() {
    let app = spawn_app(Backend::Postgres).await;
    let cookie = sign_in(&app, "alice").await;
    let count_in_nav = |html: &str| {
        let nav = &html[html.find("id=\"attention\"").expect("the attention link")..];
        let nav = &nav[..nav.find("</a>").unwrap()];
        nav.find("class=\"count\">").map(|at| {
            nav[at + "class=\"count\">".len()..]
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        })
    };
    let (status, html) = page(&app, &cookie, "/admin/ui/attention").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"all-clear\""));
    assert_eq!(count_in_nav(&html), None);

    let (run, item) = run_with_a_difference(&app).await;
    let (_, html) = page(&app, &cookie, "/admin/ui/orders").await;
    assert_eq!(count_in_nav(&html).as_deref(), Some("1"), "on every page");
    let (_, html) = page(&app, &cookie, "/admin/ui/attention").await;
    let row = &html[html.find("id=\"differences\"").expect("the differences queue")..];
    assert!(row.contains("<td class=\"num\">1</td>"), "{row}");
    assert!(!html.contains("id=\"all-clear\""));

    let (_, run_page) = page(&app, &cookie, &format!("/admin/ui/reconciliations/{run}")).await;
    let (status, _) = post_form(
        &app,
        &cookie,
        &format!("/admin/ui/reconciliation-items/{item}/resolve"),
        &[("csrf", &csrf_of(&run_page)), ("note", "corrected")],
    )
    .await;
    assert_eq!(status, 303);
    let (_, html) = page(&app, &cookie, "/admin/ui/attention").await;
    assert_eq!(count_in_nav(&html), None);
    assert!(html.contains("id=\"all-clear\""));
}
