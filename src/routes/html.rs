//! What the two HTML surfaces share: the page frame, the response headers, and how money,
//! times and statuses read to people.
//!
//! Pages load only this service's own assets (`/assets/...`, embedded in the binary): the
//! Content-Security-Policy allows nothing else, no inline script, and no framing.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use entities::{Currency, MinorUnit, OrderStatus};
use maud::{html, Markup, DOCTYPE};

/// Headers of every HTML page. `no-referrer` keeps a checkout token in the address bar from
/// leaking to the merchant's `return_url`.
pub fn page_response(status: StatusCode, markup: Markup) -> HttpResponse {
    page_response_with_referrer(status, markup, "no-referrer")
}

/// [`page_response`] with another `Referrer-Policy`: the console's forms need `same-origin`,
/// since under `no-referrer` a browser posts them with `Origin: null`, which the console's
/// origin check refuses.
pub fn page_response_with_referrer(status: StatusCode, markup: Markup, referrer_policy: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("Referrer-Policy", referrer_policy))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .body(markup.into_string())
}

/// The frame of a page: `body_class` picks the surface's styles, `script` an embedded asset.
pub fn frame(title: &str, body_class: &str, script: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · paywarden" }
                link rel="stylesheet" href=(super::assets::PAGE_CSS);
            }
            body class=(body_class) {
                (body)
                @if let Some(script) = script {
                    script src=(script) defer {}
                }
            }
        }
    }
}

/// A page that only says what went wrong (a dead link, a refused form).
pub fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page_response(
        status,
        frame(
            title,
            "message",
            None,
            html! {
                main class="card" {
                    h1 { (title) }
                    p { (message) }
                }
            },
        ),
    )
}

/// `1999` CNY → `¥19.99`; `1999` JPY → `¥1,999`; thousands grouped, the minor unit's digits
/// from ISO 4217. Integer arithmetic only.
pub fn money(amount: MinorUnit, currency: Currency) -> String {
    let symbol = match currency {
        Currency::Cny | Currency::Jpy => "¥",
        Currency::Hkd => "HK$",
        Currency::Usd => "$",
        Currency::Eur => "€",
        Currency::Gbp => "£",
        Currency::Sgd => "S$",
    };
    let digits = currency.minor_digits();
    let scale = 10_i64.pow(digits);
    let value = amount.get();
    let (major, minor) = (value / scale, value % scale);
    let grouped = group_thousands(major);
    if digits == 0 {
        format!("{symbol}{grouped}")
    } else {
        let width = usize::try_from(digits).unwrap_or(2);
        format!("{symbol}{grouped}.{minor:0width$}")
    }
}

fn group_thousands(value: i64) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    for (index, digit) in text.chars().enumerate() {
        if index > 0 && (text.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `2026-12-01 16:33:43 UTC`.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The buyer-facing texts of every status, for the checkout page's script (which follows the
/// status live): `{"texts": {"<status>": "...", "closed:expired": "..."}, "final": [...]}`.
/// Read from [`buyer_status`], so the page and the server never disagree.
pub fn buyer_status_table() -> String {
    use sea_orm::Iterable;
    let mut texts = serde_json::Map::new();
    let mut finals = Vec::new();
    for status in OrderStatus::iter() {
        texts.insert(status.as_str().to_owned(), buyer_status(status, None).into());
        if !status.is_live() {
            finals.push(status.as_str());
        }
    }
    texts.insert(
        "closed:expired".to_owned(),
        buyer_status(OrderStatus::Closed, Some("expired")).into(),
    );
    serde_json::json!({"texts": texts, "final": finals}).to_string()
}

/// How an order's status reads to a buyer, given its close reason.
pub fn buyer_status(status: OrderStatus, close_reason: Option<&str>) -> &'static str {
    match status {
        OrderStatus::Pending => "Waiting for payment",
        OrderStatus::Stuck => "Checking the payment with the provider",
        OrderStatus::Paid => "Paid",
        OrderStatus::Closed if close_reason == Some("expired") => "Expired: this order was not paid in time",
        OrderStatus::Closed => "Closed: this order can no longer be paid",
        OrderStatus::PaidAfterClose => "Paid after the order closed: the merchant owes you a refund",
        OrderStatus::Refunded => "Refunded: the payment went back to you",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn amounts_read_in_the_currency_s_own_unit() {
        let amount = |value| MinorUnit::new(value).unwrap();
        assert_eq!(money(amount(1999), Currency::Cny), "¥19.99");
        assert_eq!(money(amount(5), Currency::Usd), "$0.05");
        assert_eq!(money(amount(123_456_789), Currency::Eur), "€1,234,567.89");
        assert_eq!(money(amount(1999), Currency::Jpy), "¥1,999");
        assert_eq!(money(amount(100_000), Currency::Jpy), "¥100,000");
        assert_eq!(money(amount(0), Currency::Gbp), "£0.00");
    }
}
