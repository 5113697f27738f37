//! Bidi and zero-width characters (Unicode format characters, category Cf) are refused with
//! `422` in the texts people read later: order subjects, item names, refund and force-close
//! reasons, operator names. They can make a log line or a console page read otherwise than it
//! is written (U+202E turns the rest of a line around) and two names that look the same differ.
//! Console actions record the session's public id next to the operator's self-declared name.

use std::time::Duration;

use migration::sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{error_code, order_body, spawn_app, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY};

/// One of each family: override, isolate, mark, zero-width, byte-order mark, Arabic letter mark.
const HIDDEN: [(char, &str); 6] = [
    ('\u{202E}', "a right-to-left override"),
    ('\u{2066}', "a left-to-right isolate"),
    ('\u{200F}', "a right-to-left mark"),
    ('\u{200B}', "a zero-width space"),
    ('\u{FEFF}', "a zero-width no-break space"),
    ('\u{061C}', "an Arabic letter mark"),
];

#[actix_web::test]
async fn bidi_and_zero_width_characters_are_refused_in_subjects_and_item_names() {
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.row_counts().await;
    for (hidden, description) in HIDDEN {
        let mut subject = order_body(&format!("hidden-subject-{}", u32::from(hidden)));
        subject["subject"] = json!(format!("Rust{hidden} course"));
        let mut item = order_body(&format!("hidden-item-{}", u32::from(hidden)));
        item["items"][1]["name"] = json!(format!("Bo{hidden}ok"));
        for (body, field) in [(subject, "subject"), (item, "item name")] {
            let response = app.post_order(MERCHANT_A_KEY, &body).await;
            assert_eq!(
                error_code(response, 422).await,
                "invalid_field",
                "{description} in the {field}"
            );
        }
    }
    assert_eq!(app.row_counts().await, before, "nothing was written");
}

/// A paid order, so that a refund with a readable reason would be made.
async fn paid_order(app: &TestApp, out_business_id: &str) -> String {
    let (order_no, pay_no) = app.order_with_attempt(out_business_id, 600).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
    order_no
}

#[actix_web::test]
async fn bidi_and_zero_width_characters_are_refused_in_refund_and_force_close_reasons() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let paid = paid_order(&app, "hidden-refund").await;
    let (pending, _) = app.order_with_attempt("hidden-close", 600).await;
    let logs_before = app.row_counts().await.order_logs;

    for (hidden, description) in HIDDEN {
        let reason = format!("retur{hidden}ned");
        // Act
        let merchant_refund = app
            .post_as(
                MERCHANT_A_KEY,
                &format!("/v1/orders/{paid}/refunds"),
                Some(&json!({"out_refund_id": format!("r-{}", u32::from(hidden)), "amount": 100, "reason": reason})),
            )
            .await;
        let admin_refund = app
            .post_as(
                ADMIN_TOKEN,
                &format!("/admin/orders/{paid}/refunds"),
                Some(&json!({"out_refund_id": format!("a-{}", u32::from(hidden)), "amount": 100, "reason": reason})),
            )
            .await;
        let force_close = app
            .post_as(
                ADMIN_TOKEN,
                &format!("/admin/orders/{pending}/force-close"),
                Some(&json!({"reason": reason})),
            )
            .await;

        // Assert
        for (response, what) in [
            (merchant_refund, "a merchant's refund"),
            (admin_refund, "an operator's refund"),
            (force_close, "a force-close"),
        ] {
            assert_eq!(
                error_code(response, 422).await,
                "invalid_field",
                "{description} in {what}"
            );
        }
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 0, "no refund");
    assert_eq!(app.admin_order(&pending).await["status"], "pending", "not closed");
    assert_eq!(app.row_counts().await.order_logs, logs_before, "nothing logged");
}

#[actix_web::test]
async fn bidi_and_zero_width_characters_are_refused_in_operator_names() {
    let app = spawn_app(Backend::Sqlite).await;
    for (hidden, description) in HIDDEN {
        let response = app
            .client
            .post(app.url("/admin/ui/login"))
            .form(&[("token", ADMIN_TOKEN), ("name", &format!("ali{hidden}ce"))])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422, "{description}");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "{description}: no session"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM console_sessions").await,
        0,
        "nothing written"
    );
}

/// Before the fix the log recorded only the self-declared name, `admin:alice`: two people
/// signing in as alice could not be told apart.
#[actix_web::test]
async fn console_actions_record_the_session_id_next_to_the_operator_name() {
    // Arrange
    let app = spawn_app(Backend::Postgres).await;
    let (order_no, _) = app.order_with_attempt("console-trace", 600).await;
    let signed_in = app
        .client
        .post(app.url("/admin/ui/login"))
        .form(&[("token", ADMIN_TOKEN), ("name", "alice")])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = app
        .client
        .get(app.url(&format!("/admin/ui/orders/{order_no}")))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = page[start..].split('"').next().unwrap().to_owned();

    // Act
    let done = app
        .client
        .post(app.url(&format!("/admin/ui/orders/{order_no}/force-close")))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("reason", "customer asked")])
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(done.status().as_u16(), 303);
    app.wait_for_status(&order_no, "closed", Duration::from_secs(5)).await;
    let sessions = app
        .db
        .query_one(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT id FROM console_sessions".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let session_id: String = sessions.try_get_by_index(0).unwrap();
    assert!(!cookie.contains(&session_id), "the public id is not the cookie's token");
    let detail = app.admin_order(&order_no).await;
    let closed = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|log| log["to"] == "closed")
        .unwrap();
    assert_eq!(closed["operator"], format!("admin:alice (session {session_id})"));
}
