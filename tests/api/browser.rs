//! The checkout page and the operator console in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them).
//!
//! fantoccini is the WebDriver client: a plain async Rust crate on the same tokio runtime as
//! the service under test, so a test is one process with no Node.js toolchain, and WebDriver is
//! the W3C protocol chromedriver speaks natively.
//!
//! Each test saves screenshots of the pages at phone (390×844) and desktop (1280×900) width in
//! `target/tmp/screenshots/` (not committed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command};

use crate::helpers::{order_body, spawn_app, spawn_app_with, test_settings, Backend, TestApp, MERCHANT_A_KEY};

const PHONE: (u32, u32) = (390, 844);
const DESKTOP: (u32, u32) = (1280, 900);

struct Browser {
    client: Client,
    _driver: Driver,
}

/// The chromedriver process, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> PathBuf {
    let path = std::env::var_os("CHROMEDRIVER").map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium and chromium-driver (.ci/run does), or set CHROMEDRIVER",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Driver)
            .expect("chromedriver starts");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1"]
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("no WebDriver session at {webdriver}: {err}"),
            }
        };
        Self {
            client,
            _driver: driver,
        }
    }

    async fn size(&self, (width, height): (u32, u32)) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Saves a screenshot of the current page as `name`.png.
    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Screenshots at phone and desktop width, ending at phone width.
    async fn screenshots(&self, name: &str) {
        self.size(DESKTOP).await;
        self.screenshot(&format!("{name}-desktop")).await;
        self.size(PHONE).await;
        self.screenshot(&format!("{name}-phone")).await;
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    async fn is_shown(&self, css: &str) -> bool {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    }

    async fn text_of(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// Waits until the element's text contains `expected`.
    async fn wait_for_text(&self, css: &str, expected: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(expected) {
                return text;
            }
            assert!(
                started.elapsed() < within,
                "{css} never read {expected:?} within {within:?}; last: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn quit(self) {
        self.client.close().await.unwrap();
    }
}

/// Marks the loaded document, to tell later that the page was never reloaded.
async fn mark_document(browser: &Browser) {
    browser
        .client
        .execute("window.__paywardenMark = 'same-document'; return null;", vec![])
        .await
        .unwrap();
}

async fn still_the_same_document(browser: &Browser) -> bool {
    browser
        .client
        .execute("return window.__paywardenMark === 'same-document';", vec![])
        .await
        .unwrap()
        == Value::Bool(true)
}

async fn create_order(app: &TestApp, id: &str, ttl_seconds: i64) -> Value {
    let mut body = order_body(id);
    body["ttl_seconds"] = json!(ttl_seconds);
    body["return_url"] = json!("https://shop.example/orders/thanks");
    let response = app.post_order(MERCHANT_A_KEY, &body).await;
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn a_buyer_pays_from_the_checkout_link_and_the_page_turns_paid_without_a_reload() {
    // Arrange
    let app = spawn_app(Backend::Postgres).await;
    let order = create_order(&app, "browser-pay", 900).await;
    let browser = Browser::start().await;
    browser.size(PHONE).await;

    // Act: open the link, choose the sandbox, read the QR code the page shows.
    browser
        .client
        .goto(order["checkout_url"].as_str().unwrap())
        .await
        .unwrap();
    browser
        .wait_for_text("#status", "Waiting for payment", Duration::from_secs(5))
        .await;
    let total = order["total_amount"].as_i64().unwrap();
    assert_eq!(
        browser.text_of("#amount").await,
        format!("¥{}.{:02}", total / 100, total % 100)
    );
    browser
        .wait_for_text("#countdown", "Pay within 14:", Duration::from_secs(5))
        .await;
    browser.screenshots("checkout-choose").await;
    mark_document(&browser).await;
    browser.click("#choose button[data-provider='sandbox']").await;
    let image = browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#qr-image[data-pay-no]"))
        .await
        .unwrap();
    let pay_no = image.attr("data-pay-no").await.unwrap().unwrap();
    let src = image.prop("src").await.unwrap().unwrap();
    let shown = browser
        .client
        .execute(
            "const i = document.getElementById('qr-image'); return i.complete && i.naturalWidth > 0;",
            vec![],
        )
        .await
        .unwrap();
    browser.screenshots("checkout-qr").await;
    let png = app.client.get(&src).send().await.unwrap().bytes().await.unwrap();
    let decoded = image::load_from_memory(&png).unwrap().to_luma8();
    let (_, code_url) = rqrr::PreparedImage::prepare(decoded).detect_grids()[0]
        .decode()
        .unwrap();

    // The buyer's app pays at the sandbox; its notification reaches paywarden.
    app.sandbox_pay(&pay_no, true).await;

    // Assert
    assert_eq!(shown, Value::Bool(true), "the QR image loaded in the page");
    let payments = app.admin_order(order["order_no"].as_str().unwrap()).await["payments"].clone();
    assert_eq!(
        payments[0]["code_url"],
        code_url.as_str(),
        "the QR code is the attempt's"
    );
    browser.wait_for_text("#status", "Paid", Duration::from_secs(10)).await;
    assert!(still_the_same_document(&browser).await, "no reload");
    let back = browser.client.find(Locator::Css("#return-link")).await.unwrap();
    assert!(back.is_displayed().await.unwrap());
    assert_eq!(
        back.attr("href").await.unwrap().unwrap(),
        "https://shop.example/orders/thanks"
    );
    assert!(!browser.is_shown("#qr").await);
    browser.screenshots("checkout-paid").await;
    browser.quit().await;
}

#[actix_web::test]
async fn an_unpaid_order_s_page_turns_expired_at_its_deadline_and_a_bad_link_is_refused() {
    // Arrange
    // The browser first: on a loaded machine it can take seconds to start, which the order's
    // few seconds of life must not pay for.
    let app = spawn_app(Backend::Sqlite).await;
    let browser = Browser::start().await;
    browser.size(PHONE).await;
    let order = create_order(&app, "browser-expire", 3).await;
    let link = order["checkout_url"].as_str().unwrap().to_owned();

    // Act: the page is open while the order expires.
    browser.client.goto(&link).await.unwrap();
    browser
        .wait_for_text("#status", "Waiting for payment", Duration::from_secs(5))
        .await;
    mark_document(&browser).await;

    // Assert
    browser
        .wait_for_text(
            "#status",
            "Expired: this order was not paid in time",
            Duration::from_secs(15),
        )
        .await;
    assert!(still_the_same_document(&browser).await, "no reload");
    assert!(!browser.is_shown("#choose").await);
    browser.screenshots("checkout-expired").await;

    // A link with an altered token opens nothing.
    let forged = format!("{}.x", link.rsplit_once('.').unwrap().0);
    assert_eq!(app.client.get(&forged).send().await.unwrap().status().as_u16(), 403);
    browser.client.goto(&forged).await.unwrap();
    assert_eq!(browser.text_of("h1").await, "This link does not open a payment");
    browser.screenshots("checkout-refused").await;
    browser.quit().await;
}

#[actix_web::test]
async fn an_operator_signs_in_finds_the_stuck_order_and_force_closes_it() {
    // Arrange: a provider that fails every call makes the order stuck; the automatic retries
    // are an hour apart here, so what resolves it is the operator.
    let mut settings = test_settings(Backend::Postgres).await;
    settings.expiry.stuck_retry_interval = Duration::from_secs(3600);
    let app = spawn_app_with(settings).await;
    let (order_no, pay_no) = app.order_with_attempt("browser-stuck", 1).await;
    let calm = app.create_order(&order_body("browser-calm")).await;
    let calm_no = calm["order_no"].as_str().unwrap().to_owned();
    app.sandbox_faults(json!({"mode": "timeout", "delay_ms": 2000})).await;
    app.wait_for_status(&order_no, "stuck", Duration::from_secs(20)).await;
    let browser = Browser::start().await;
    browser.size(DESKTOP).await;

    // Act: sign in.
    browser.client.goto(&app.url("/admin/ui/orders")).await.unwrap();
    browser
        .wait_for_text("h1", "paywarden console", Duration::from_secs(5))
        .await;
    browser.screenshots("console-sign-in").await;
    browser.type_into("input[name='name']", "alice").await;
    browser
        .type_into("input[name='token']", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("form button[type='submit']").await;
    browser.wait_for_text("h1", "Orders", Duration::from_secs(5)).await;

    // The stuck order is listed first.
    let first_row = browser.client.find(Locator::Css("#orders tbody tr")).await.unwrap();
    assert_eq!(first_row.attr("data-order-no").await.unwrap().unwrap(), order_no);
    assert!(first_row.text().await.unwrap().contains("stuck"));
    browser.screenshots("console-orders").await;

    // Any of an order's ids finds it from the search box: the merchant's business id here.
    browser
        .type_into("nav form.search input[name='q']", "browser-calm")
        .await;
    browser.click("nav form.search button").await;
    browser
        .wait_for_text("h1", &format!("Order {calm_no}"), Duration::from_secs(5))
        .await;
    browser.client.goto(&app.url("/admin/ui/orders")).await.unwrap();
    browser.wait_for_text("h1", "Orders", Duration::from_secs(5)).await;

    // The provider is back; the operator closes the order.
    app.sandbox_faults(json!({"mode": "none"})).await;
    browser.click(&format!("a[href='/admin/ui/orders/{order_no}']")).await;
    browser
        .wait_for_text("h1", &format!("Order {order_no}"), Duration::from_secs(5))
        .await;
    browser
        .type_into("#force-close input[name='reason']", "provider outage, buyer contacted")
        .await;
    browser.click("#force-close button").await;

    // Assert
    browser
        .wait_for_text("p.notice", "The order was force-closed.", Duration::from_secs(10))
        .await;
    let log = browser.text_of("#log").await;
    assert!(log.contains("admin:alice"), "{log}");
    assert!(log.contains("force-closed: provider outage, buyer contacted"), "{log}");
    browser.screenshots("console-order-closed").await;
    let order = app.admin_order(&order_no).await;
    assert_eq!(order["status"], "closed");
    assert_eq!(app.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
    browser.quit().await;
}

#[actix_web::test]
async fn an_operator_refunds_part_of_a_payment_from_the_order_page_after_a_confirmation() {
    // Arrange: a paid order.
    let app = spawn_app(Backend::Postgres).await;
    let (order_no, pay_no) = app.order_with_attempt("browser-refund", 600).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&order_no, "paid", Duration::from_secs(10)).await;
    let browser = Browser::start().await;
    browser.size(DESKTOP).await;
    sign_in(&browser, &app, "alice").await;

    // Act: the form offers what is left; the operator asks for part of it and confirms.
    browser
        .client
        .goto(&app.url(&format!("/admin/ui/orders/{order_no}")))
        .await
        .unwrap();
    browser
        .wait_for_text("h1", &format!("Order {order_no}"), Duration::from_secs(5))
        .await;
    let offered = browser
        .client
        .find(Locator::Css("#refund input[name='amount']"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    let paid = app
        .get_order(crate::helpers::MERCHANT_A_KEY, &order_no)
        .await
        .json::<Value>()
        .await
        .unwrap()["total_amount"]
        .as_i64()
        .unwrap();
    assert_eq!(
        offered.as_deref(),
        Some(paid.to_string().as_str()),
        "the whole payment is offered"
    );
    let amount = browser
        .client
        .find(Locator::Css("#refund input[name='amount']"))
        .await
        .unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("250").await.unwrap();
    browser
        .type_into("#refund input[name='reason']", "one item returned")
        .await;
    browser.click("#refund button").await;
    browser
        .wait_for_text("h1", "Confirm the refund", Duration::from_secs(5))
        .await;
    let summary = browser.text_of("main").await;
    assert!(summary.contains("will lose ¥2.50"), "{summary}");
    assert!(
        app.count("SELECT COUNT(*) FROM refunds").await == 0,
        "nothing before the confirmation"
    );
    browser.click("#confirm-refund button").await;

    // Assert: the refund goes through to succeeded; what is left shrinks by its amount.
    browser
        .wait_for_text("p.notice", "The refund is committed", Duration::from_secs(5))
        .await;
    let started = std::time::Instant::now();
    loop {
        browser
            .client
            .goto(&app.url(&format!("/admin/ui/orders/{order_no}")))
            .await
            .unwrap();
        let refunds = browser.text_of("#refunds").await;
        assert!(
            refunds.contains("one item returned") && refunds.contains("admin:alice"),
            "{refunds}"
        );
        if refunds.contains("succeeded") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the refund never succeeded: {refunds}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = browser
        .client
        .find(Locator::Css("#refund input[name='amount']"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some((paid - 250).to_string().as_str()));
    browser.screenshots("console-order-refunded").await;
    browser.quit().await;
}

#[actix_web::test]
async fn the_dashboard_draws_the_load_as_charts_and_follows_it_live() {
    // Arrange: a short load: four orders paid at the sandbox, two force-closed.
    let app = spawn_app(Backend::Postgres).await;
    for n in 0..6 {
        let (order_no, pay_no) = app.order_with_attempt(&format!("board-{n}"), 600).await;
        if n % 3 == 0 {
            let closed = app
                .post_as(
                    crate::helpers::ADMIN_TOKEN,
                    &format!("/admin/orders/{order_no}/force-close"),
                    Some(&json!({"reason": "buyer left"})),
                )
                .await;
            assert_eq!(closed.status().as_u16(), 200);
        } else {
            app.sandbox_pay(&pay_no, true).await;
            app.wait_for_status(&order_no, "paid", Duration::from_secs(5)).await;
        }
    }
    let browser = Browser::start().await;
    browser.size(DESKTOP).await;
    sign_in(&browser, &app, "alice").await;

    // Act: open the dashboard from the navigation.
    browser.click("nav a[href='/admin/ui']").await;
    browser.wait_for_text("h1", "Dashboard", Duration::from_secs(5)).await;

    // Assert: the charts carry the load; bars are drawn for it.
    browser
        .wait_for_text("#chart-created figcaption", "Created 6", Duration::from_secs(10))
        .await;
    browser
        .wait_for_text("#chart-paid figcaption", "Paid 4", Duration::from_secs(10))
        .await;
    let mut drawn = 0;
    for bar in browser
        .client
        .find_all(Locator::Css("#chart-created rect.bar"))
        .await
        .unwrap()
    {
        let height: i64 = bar.attr("height").await.unwrap().unwrap().parse().unwrap();
        if height > 0 {
            drawn += 1;
        }
    }
    assert!(drawn >= 1, "a bar is drawn for the orders created");
    assert!(browser.text_of("#tile-success").await.contains("66.7 %"));
    let sandbox = browser.text_of("#providers tr[data-provider='sandbox']").await;
    assert!(sandbox.contains("66.7 %"), "{sandbox}");

    // More orders while the page stays open: it follows them without a reload.
    let address = browser.client.current_url().await.unwrap();
    for n in 0..2 {
        app.create_order(&order_body(&format!("board-late-{n}"))).await;
    }
    browser
        .wait_for_text("#chart-created figcaption", "Created 8", Duration::from_secs(10))
        .await;
    assert_eq!(browser.client.current_url().await.unwrap(), address);
    let refreshed = browser
        .client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .attr("data-refreshed-at")
        .await
        .unwrap();
    assert!(
        refreshed.is_some(),
        "the figures were swapped in place by the page's script"
    );
    browser.screenshots("console-dashboard").await;
    browser.quit().await;
}

/// Signs in to the console as `name`.
async fn sign_in(browser: &Browser, app: &TestApp, name: &str) {
    browser.client.goto(&app.url("/admin/ui/orders")).await.unwrap();
    browser
        .wait_for_text("h1", "paywarden console", Duration::from_secs(5))
        .await;
    browser.type_into("input[name='name']", name).await;
    browser
        .type_into("input[name='token']", crate::helpers::ADMIN_TOKEN)
        .await;
    browser.click("form button[type='submit']").await;
    browser.wait_for_text("h1", "Orders", Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn an_operator_resolves_a_reconciliation_difference_from_its_run_s_page() {
    let app = spawn_app(Backend::Postgres).await;
    let (run, item) = crate::console::run_with_a_difference(&app).await;
    let browser = Browser::start().await;
    browser.size(DESKTOP).await;
    sign_in(&browser, &app, "alice").await;

    browser.click("nav a[href='/admin/ui/reconciliations']").await;
    browser
        .wait_for_text("h1", "Reconciliation", Duration::from_secs(5))
        .await;
    browser.click(&format!("tr[data-run-id='{run}'] a")).await;
    browser
        .wait_for_text("h1", &format!("Reconciliation {run}"), Duration::from_secs(5))
        .await;
    let row = format!("tr[data-item-id='{item}']");
    browser
        .type_into(&format!("{row} input[name='note']"), "refunded at the provider by hand")
        .await;
    browser.click(&format!("{row} button")).await;

    browser
        .wait_for_text("p.notice", "The difference is marked resolved.", Duration::from_secs(5))
        .await;
    let resolved = browser.text_of(&row).await;
    assert!(
        resolved.contains("resolved")
            && resolved.contains("refunded at the provider by hand")
            && resolved.contains("admin:alice"),
        "{resolved}"
    );
    browser.screenshots("console-reconciliation-resolved").await;
    browser.quit().await;
}

/// An operator onboards a merchant, issues it a key (shown once, then only its prefix), and
/// attaches its Alipay app by choosing the PEM files, then verifies it against the provider
/// (the simulator, over HTTP): no secret is ever shown back.
#[actix_web::test]
async fn an_operator_onboards_a_merchant_issues_a_key_and_adds_and_verifies_an_account() {
    let sim = paywarden_sim::SimServer::start(paywarden_sim::SimConfig::new(
        paywarden_sim::shared_test_keys().unwrap(),
    ))
    .await
    .unwrap();
    let app = spawn_app(Backend::Postgres).await;
    let browser = Browser::start().await;
    browser.size(DESKTOP).await;
    sign_in(&browser, &app, "alice").await;

    browser.click("nav a[href='/admin/ui/merchants']").await;
    browser.wait_for_text("h1", "Merchants", Duration::from_secs(5)).await;
    browser
        .type_into("#new-merchant input[name='merchant_id']", "acme")
        .await;
    browser
        .type_into("#new-merchant input[name='name']", "Acme Books")
        .await;
    browser.click("#new-merchant button").await;
    browser
        .wait_for_text("h1", "Merchant acme", Duration::from_secs(5))
        .await;
    browser
        .wait_for_text("p.notice", "onboarded", Duration::from_secs(5))
        .await;

    // A key, shown this once, with a copy button.
    browser.type_into("#issue-key input[name='label']", "web shop").await;
    browser.click("#issue-key button").await;
    let key = browser
        .wait_for_text("#issued-key-value", "pwk_", Duration::from_secs(5))
        .await;
    assert!(browser.is_shown("#issued-key button[data-copy]").await);
    assert_eq!(
        app.get_as(key.trim(), "/v1/orders/1").await.status().as_u16(),
        404,
        "the key shown authenticates"
    );
    browser.screenshots("console-merchant-key-issued").await;
    browser.size(DESKTOP).await;
    browser.client.goto(&app.url("/admin/ui/merchants/acme")).await.unwrap();
    browser.wait_for_text("#keys", "web shop", Duration::from_secs(5)).await;
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(key.trim()), "the key is not shown again");
    assert!(source.contains(&key.trim()[..12]), "its prefix is");

    // The Alipay app, its keys chosen as files.
    let dir = std::env::temp_dir().join(format!("pw-pem-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let alipay = sim.alipay_settings("");
    let private_pem = dir.join("app_private_key.pem");
    let public_pem = dir.join("alipay_public_key.pem");
    std::fs::write(
        &private_pem,
        secrecy::ExposeSecret::expose_secret(&alipay.app_private_key_pem),
    )
    .unwrap();
    std::fs::write(&public_pem, &alipay.alipay_public_key_pem).unwrap();
    browser
        .click("#add-account select[name='provider'] option[value='alipay']")
        .await;
    browser
        .type_into("#add-account input[name='app_id']", &alipay.app_id)
        .await;
    browser
        .type_into(
            "#add-account input[data-fill='app_private_key_pem']",
            private_pem.to_str().unwrap(),
        )
        .await;
    browser
        .type_into(
            "#add-account input[data-fill='alipay_public_key_pem']",
            public_pem.to_str().unwrap(),
        )
        .await;
    browser
        .type_into("#add-account input[name='gateway_url']", &alipay.gateway_url)
        .await;
    // The page's script read both files into the form.
    let started = Instant::now();
    loop {
        let filled = browser
            .client
            .execute(
                "return document.getElementById('app_private_key_pem').value.includes('PRIVATE KEY') && document.getElementById('alipay_public_key_pem').value.includes('PUBLIC KEY');",
                vec![],
            )
            .await
            .unwrap();
        if filled == Value::Bool(true) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the PEM files were not read into the form"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.click("#add-account button[type='submit']").await;
    browser
        .wait_for_text("p.notice", "secrets sealed", Duration::from_secs(5))
        .await;
    let accounts = browser.text_of("#accounts").await;
    assert!(
        accounts.contains("alipay") && accounts.contains(&alipay.app_id),
        "{accounts}"
    );
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains("PRIVATE KEY"), "no secret is shown back");

    // Verify: the signed answer of the provider, verified with the account's keys.
    browser.click("#accounts form[action$='/verify'] button").await;
    let found = browser
        .wait_for_text("#verification", "the keys work", Duration::from_secs(10))
        .await;
    assert!(found.contains("trade_not_found"), "{found}");
    browser.screenshots("console-merchant-account-verified").await;
    std::fs::remove_dir_all(&dir).unwrap();
    browser.quit().await;
}
