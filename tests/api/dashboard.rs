//! The console's dashboard and lists over HTTP: what happened shows in the activity counts
//! (counted once whichever node rolls them up), each figure links to its list, and the lists
//! filter and page newest first. (In a browser, live: `browser.rs`.)

use std::time::{Duration, Instant};

use actors::store::activity::{self, RollupStep, Series, FINE_SECONDS};
use chrono::Utc;
use serde_json::json;

use crate::console::{page, sign_in};
use crate::helpers::{order_body, spawn_app, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A_KEY, MERCHANT_B_KEY};

/// The dashboard page once it reads every `wanted` fragment.
async fn dashboard_showing(app: &TestApp, cookie: &str, path: &str, wanted: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let (status, html) = page(app, cookie, path).await;
        assert_eq!(status, 200, "{html}");
        if wanted.iter().all(|fragment| html.contains(fragment)) {
            return html;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} never showed {wanted:?}; last page: {html}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What follows `marker` in the page, up to `end`.
fn part<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
    let start = html.find(marker).unwrap_or_else(|| panic!("{marker} in the page"));
    let rest = &html[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The table row with `marker`.
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    part(html, marker, "</tr>")
}

/// The dashboard tile with `id`.
fn tile<'a>(html: &'a str, id: &str) -> &'a str {
    part(html, &format!(r#"id="{id}""#), "</a>")
}

#[actix_web::test]
async fn the_dashboard_counts_what_happened_and_links_to_the_lists() {
    let app = spawn_app(Backend::Postgres).await;
    // Paid at the sandbox, then half refunded.
    let (paid_no, pay_no) = app.order_with_attempt("dash-paid", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&paid_no, "paid", Duration::from_secs(5)).await;
    let refund = app
        .post_as(
            MERCHANT_A_KEY,
            &format!("/v1/orders/{paid_no}/refunds"),
            Some(&json!({"out_refund_id": "rf-dash", "amount": 1000, "reason": "one item back"})),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    // Force-closed with a sandbox attempt.
    let (forced_no, _) = app.order_with_attempt("dash-forced", 600).await;
    let forced = app
        .post_as(
            ADMIN_TOKEN,
            &format!("/admin/orders/{forced_no}/force-close"),
            Some(&json!({"reason": "buyer called"})),
        )
        .await;
    assert_eq!(forced.status().as_u16(), 200);
    // Closed by the expiry rule, never attempted.
    let mut expiring = order_body("dash-expired");
    expiring["ttl_seconds"] = 1.into();
    let expired_no = app.create_order(&expiring).await["order_no"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&expired_no, "closed", Duration::from_secs(10))
        .await;
    // Still pending.
    app.create_order(&order_body("dash-pending")).await;
    let cookie = sign_in(&app, "alice").await;

    let html = dashboard_showing(
        &app,
        &cookie,
        "/admin/ui",
        &[
            r#"id="chart-created" data-total="4""#,
            r#"id="chart-paid" data-total="1""#,
            r#"id="chart-closed" data-total="2""#,
            r#"id="chart-refunded" data-total="1""#,
        ],
    )
    .await;
    // One paid of three settled; the sandbox settled two (one paid, one closed), one order
    // closed with no attempt.
    assert!(tile(&html, "tile-success").contains("33.3 %"));
    let sandbox = row(&html, r#"data-provider="sandbox""#);
    assert!(sandbox.contains("50.0 %"), "{sandbox}");
    assert!(sandbox.contains(r#"href="/admin/ui/orders?status=paid&amp;provider=sandbox""#));
    assert!(
        !sandbox.contains(r#"data-calls="0""#),
        "this node's calls to the sandbox: {sandbox}"
    );
    let none = row(&html, r#"data-provider="none""#);
    assert!(none.contains("no attempt") && none.contains("0.0 %"), "{none}");
    // The expiry close has a lateness; the force-close is not a late close.
    let lateness = tile(&html, "tile-lateness");
    assert!(lateness.contains("p99 ≤"), "{lateness}");
    // Each figure links to the list behind it, and that list holds what it counted.
    for link in [
        r#"href="/admin/ui/orders?status=paid""#,
        r#"href="/admin/ui/orders?status=closed""#,
        r#"href="/admin/ui/refunds?status=succeeded""#,
        r#"href="/admin/ui/attention""#,
    ] {
        assert!(html.contains(link), "{link}");
    }
    let created_link = html
        .split(r#"<figure class="chart" id="chart-created""#)
        .nth(1)
        .and_then(|rest| rest.split("href=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let (status, list) = page(&app, &cookie, &created_link).await;
    assert_eq!(status, 200, "{created_link}");
    assert_eq!(
        list.matches("data-order-no=").count(),
        4,
        "{created_link} lists the four orders"
    );
    let (_, refunds) = page(&app, &cookie, "/admin/ui/refunds?status=succeeded").await;
    assert!(refunds.contains("rf-dash"));

    for span in ["day", "week"] {
        dashboard_showing(
            &app,
            &cookie,
            &format!("/admin/ui?span={span}"),
            &[r#"id="chart-created" data-total="4""#],
        )
        .await;
    }
    let (status, refused) = page(&app, &cookie, "/admin/ui?span=year").await;
    assert_eq!(status, 400);
    assert!(refused.contains("year"));
}

/// Every node runs the rollup; the guarded cursor lets one count each logged change.
#[actix_web::test]
async fn each_change_is_counted_once_however_many_nodes_roll_up() {
    // The service's own rollup runs once at start, then not for an hour: the nodes below
    // count everything after it.
    let mut settings = crate::helpers::test_settings(Backend::Postgres).await;
    settings.dashboard.interval = Duration::from_secs(3600);
    let app = crate::helpers::spawn_app_with(settings).await;
    let started = Instant::now();
    while app
        .count("SELECT COUNT(*) FROM activity_rollup WHERE counted_until IS NOT NULL")
        .await
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first rollup never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 0..24 {
        app.create_order(&order_body(&format!("race-{n}"))).await;
    }
    let url = secrecy::ExposeSecret::expose_secret(&app.settings.database.url).to_owned();
    let settle = Duration::from_millis(200);
    tokio::time::sleep(settle * 2).await;
    // Three nodes at once, five log rows a cycle.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let db = sea_orm::Database::connect(&url).await.unwrap();
        let barrier = barrier.clone();
        nodes.push(tokio::spawn(async move {
            let (mut batches, mut raced) = (0, 0);
            barrier.wait().await;
            loop {
                match activity::roll_up(&db, Utc::now(), settle, 5).await.unwrap() {
                    RollupStep::Counted { more: true, .. } => batches += 1,
                    RollupStep::Raced => raced += 1,
                    RollupStep::Counted { more: false, .. } | RollupStep::UpToDate => break (batches, raced),
                }
            }
        }));
    }
    let (mut batches, mut raced) = (0, 0);
    for node in nodes {
        let (node_batches, node_raced) = node.await.unwrap();
        batches += node_batches;
        raced += node_raced;
    }
    assert!(batches >= 4, "24 rows in batches of 5: {batches} full batches");
    let now = Utc::now();
    let from = activity::bucket_of(now, FINE_SECONDS) - chrono::Duration::minutes(5);
    let counts = activity::read(&app.db, FINE_SECONDS, from, chrono::Duration::minutes(5), 2)
        .await
        .unwrap();
    assert_eq!(
        counts.total(Series::Created),
        24,
        "counted once each ({raced} cycles lost a race)"
    );
    let hourly = activity::read(
        &app.db,
        activity::COARSE_SECONDS,
        activity::bucket_of(now, activity::COARSE_SECONDS) - chrono::Duration::hours(1),
        chrono::Duration::hours(1),
        2,
    )
    .await
    .unwrap();
    assert_eq!(hourly.total(Series::Created), 24, "the hourly buckets hold the same");
}

/// The `data-order-no` of each row of the `#orders` table, in order.
fn listed(html: &str) -> Vec<String> {
    let table = &html[html.find(r#"id="orders""#).expect("an order table")..];
    let table = &table[..table.find("</table>").unwrap()];
    table
        .split(r#"data-order-no=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

fn next_page(html: &str) -> Option<String> {
    let rest = html.split(r#"id="next-page" href=""#).nth(1)?;
    Some(rest.split('"').next()?.replace("&amp;", "&"))
}

#[actix_web::test]
async fn the_order_list_filters_and_pages_newest_first() {
    let app = spawn_app(Backend::Sqlite).await;
    // 53 orders of merchant A, each a book dearer than the last (2,499 + 500 n minor units).
    let mut created = Vec::new();
    for n in 0..53_i64 {
        let mut body = order_body(&format!("list-{n}"));
        body["items"][1]["quantity"] = (n + 1).into();
        created.push(app.create_order(&body).await["order_no"].as_str().unwrap().to_owned());
    }
    let other = app.post_order(MERCHANT_B_KEY, &order_body("list-b")).await;
    let other_no = other.json::<serde_json::Value>().await.unwrap()["order_no"]
        .as_str()
        .unwrap()
        .to_owned();
    let (attempted_no, _) = app.order_with_attempt("list-attempted", 600).await;
    let cookie = sign_in(&app, "alice").await;

    // Newest first, 50 to a page; the next page starts after the last row and ends the list.
    let (status, first) = page(&app, &cookie, "/admin/ui/orders").await;
    assert_eq!(status, 200);
    let first_rows = listed(&first);
    assert_eq!(first_rows.len(), 50);
    assert_eq!(first_rows[0], attempted_no);
    assert_eq!(first_rows[1], other_no);
    assert_eq!(first_rows[2], created[52]);
    let (_, second) = page(&app, &cookie, &next_page(&first).expect("a next page")).await;
    let second_rows = listed(&second);
    assert_eq!(
        second_rows,
        vec![
            created[4].clone(),
            created[3].clone(),
            created[2].clone(),
            created[1].clone(),
            created[0].clone()
        ]
    );
    assert!(next_page(&second).is_none(), "the last page links no further");

    // Each filter narrows; the next page keeps the filters.
    let (_, merchant_b) = page(&app, &cookie, "/admin/ui/orders?merchant=merchant_b").await;
    assert_eq!(listed(&merchant_b), vec![other_no.clone()]);
    let (_, sandbox) = page(&app, &cookie, "/admin/ui/orders?provider=sandbox").await;
    assert_eq!(listed(&sandbox), vec![attempted_no.clone()]);
    // list-0 is 2,499; list-2 is 3,499; list-b and list-attempted are 2,999.
    let (_, priced) = page(
        &app,
        &cookie,
        "/admin/ui/orders?amount_min=2999&amount_max=3499&merchant=merchant_a",
    )
    .await;
    assert_eq!(
        listed(&priced),
        vec![attempted_no.clone(), created[2].clone(), created[1].clone()]
    );
    let (_, future) = page(&app, &cookie, "/admin/ui/orders?created_from=2100-01-01").await;
    assert!(listed(&future).is_empty());
    let (_, past) = page(&app, &cookie, "/admin/ui/orders?created_to=2000-01-01T00:00").await;
    assert!(listed(&past).is_empty());
    let (_, pending) = page(&app, &cookie, "/admin/ui/orders?status=pending&merchant=merchant_a").await;
    let next = next_page(&pending).expect("a next page");
    assert!(
        next.contains("status=pending") && next.contains("merchant=merchant_a"),
        "{next}"
    );

    // A filter that is not valid names its field and lists nothing.
    for (query, field) in [
        ("amount_min=-1", "amount_min"),
        ("amount_max=1.5", "amount_max"),
        ("created_from=yesterday", "created_from"),
        ("provider=paypal", "provider"),
        ("after=not-a-cursor", "after"),
    ] {
        let (status, html) = page(&app, &cookie, &format!("/admin/ui/orders?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(html.contains(field), "{query}: the page names {field}");
        assert!(!html.contains(r#"id="orders""#), "{query}: nothing listed");
    }
    for path in ["/admin/ui/refunds?status=bogus", "/admin/ui/deliveries?created_to=soon"] {
        let (status, _) = page(&app, &cookie, path).await;
        assert_eq!(status, 400, "{path}");
    }
    for path in [
        "/admin/ui/refunds",
        "/admin/ui/deliveries?status=any",
        "/admin/ui/deliveries?status=pending",
    ] {
        let (status, _) = page(&app, &cookie, path).await;
        assert_eq!(status, 200, "{path}");
    }

    // Rows stamped at the same instant (a batch written with one `now`, as the relay writes
    // deliveries) page by their key: each listed once, none skipped.
    app.execute("UPDATE orders SET created_at = (SELECT MAX(created_at) FROM orders)")
        .await;
    let (_, first) = page(&app, &cookie, "/admin/ui/orders").await;
    let (_, second) = page(&app, &cookie, &next_page(&first).expect("a next page")).await;
    let mut all: Vec<String> = listed(&first).into_iter().chain(listed(&second)).collect();
    assert_eq!(all.len(), 55, "every order once");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 55, "no order twice");
}
