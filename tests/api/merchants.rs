//! Merchants as data: onboarding, client API keys issued, rotated and revoked at runtime, and
//! provider accounts whose secrets are sealed at rest and never shown again.

use std::time::{Duration, Instant};

use migration::sea_orm::{ConnectionTrait, Statement};
use paywarden_sim::{shared_test_keys, SimConfig, SimServer};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{
    error_code, on_both_backends, order_body, spawn_app, spawn_app_with, test_settings, Backend, TestApp, ADMIN_TOKEN,
    MERCHANT_A, MERCHANT_A_KEY,
};

impl TestApp {
    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_as(ADMIN_TOKEN, path, Some(body)).await
    }

    /// Onboards `merchant_id` and issues it a key; returns the key.
    pub async fn onboard(&self, merchant_id: &str) -> String {
        let created = self
            .admin_post("/admin/merchants", &json!({"merchant_id": merchant_id, "name": "Shop"}))
            .await;
        assert_eq!(created.status().as_u16(), 201, "onboarding {merchant_id}");
        self.issue_key(merchant_id, "server").await["key"]
            .as_str()
            .expect("the key is shown once")
            .to_owned()
    }

    pub async fn issue_key(&self, merchant_id: &str, label: &str) -> Value {
        let issued = self
            .admin_post(
                &format!("/admin/merchants/{merchant_id}/keys"),
                &json!({ "label": label }),
            )
            .await;
        assert_eq!(issued.status().as_u16(), 201, "issuing a key");
        issued.json().await.unwrap()
    }
}

/// Whether `key` authenticates: a client route answers 404 for an order that does not exist
/// once the key is accepted, 401 otherwise.
async fn authenticates(app: &TestApp, key: &str) -> bool {
    match app.get_as(key, "/v1/orders/1").await.status().as_u16() {
        404 => true,
        401 => false,
        other => panic!("unexpected status {other}"),
    }
}

async fn a_merchant_onboarded_at_runtime_uses_its_own_keys_and_rotates_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .admin_post(
            "/admin/merchants",
            &json!({"merchant_id": "acme", "name": "Acme Books"}),
        )
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let merchant: Value = created.json().await.unwrap();
    assert_eq!(merchant["source"], "api");
    assert_eq!(merchant["enabled"], true);

    // A merchant id is never taken twice.
    let again = app
        .admin_post("/admin/merchants", &json!({"merchant_id": "acme", "name": "Other"}))
        .await;
    assert_eq!(error_code(again, 409).await, "merchant_exists");

    // The configured merchants are listed beside it, as read-only imports.
    let list: Value = app.get_as(ADMIN_TOKEN, "/admin/merchants").await.json().await.unwrap();
    let ids: Vec<(&str, &str)> = list["merchants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["merchant_id"].as_str().unwrap(), m["source"].as_str().unwrap()))
        .collect();
    assert!(ids.contains(&("acme", "api")), "{ids:?}");
    assert!(ids.contains(&(MERCHANT_A, "config")), "{ids:?}");

    let first = app.issue_key("acme", "web shop").await;
    let key = first["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pwk_") && key.len() > 40, "{key}");
    assert!(key.starts_with(first["prefix"].as_str().unwrap()));

    // The key creates orders for its own merchant.
    let order = app.post_order(&key, &order_body("acme-1")).await;
    assert_eq!(order.status().as_u16(), 201);
    let order: Value = order.json().await.unwrap();
    let detail = app.admin_order(order["order_no"].as_str().unwrap()).await;
    assert_eq!(detail["merchant_id"], "acme");
    // ...and sees no other merchant's.
    let theirs = app.create_order(&order_body("a-1")).await;
    let foreign = app.get_order(&key, theirs["order_no"].as_str().unwrap()).await;
    assert_eq!(foreign.status().as_u16(), 404);

    // Only the digest is stored; the list never shows the key.
    let stored = app.count("SELECT COUNT(*) FROM merchant_keys").await;
    assert_eq!(stored, 1);
    let row = app
        .db
        .query_one(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT digest, prefix FROM merchant_keys".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let digest: String = row.try_get("", "digest").unwrap();
    assert_ne!(digest, key);
    assert!(!digest.contains(&key[4..]));
    let listed = app
        .get_as(ADMIN_TOKEN, "/admin/merchants/acme/keys")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&key), "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["keys"][0]["key_id"], first["key_id"]);
    assert!(listed["keys"][0].get("key").is_none());
    // Its use is recorded (in the background, at most once a minute).
    wait_until("the key's use is recorded", async || {
        let listed: Value = app
            .get_as(ADMIN_TOKEN, "/admin/merchants/acme/keys")
            .await
            .json()
            .await
            .unwrap();
        listed["keys"][0]["last_used_at"].is_string()
    })
    .await;

    // Rotation without downtime: a second key works beside the first, then the first goes.
    let second = app.issue_key("acme", "web shop 2").await;
    let second_key = second["key"].as_str().unwrap();
    assert!(authenticates(&app, &key).await && authenticates(&app, second_key).await);
    let revoked = app
        .client
        .delete(app.url(&format!(
            "/admin/merchants/acme/keys/{}",
            first["key_id"].as_str().unwrap()
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    // On the node that revoked it, at once.
    assert!(!authenticates(&app, &key).await, "a revoked key is refused");
    assert!(authenticates(&app, second_key).await);

    // A key of another merchant is not this merchant's to revoke.
    let other = app
        .client
        .delete(app.url(&format!(
            "/admin/merchants/{MERCHANT_A}/keys/{}",
            second["key_id"].as_str().unwrap()
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert!(authenticates(&app, second_key).await);

    // Disabling a merchant stops its keys, configured ones too; its orders stay.
    let disabled = app.admin_post("/admin/merchants/acme/disable", &json!({})).await;
    assert_eq!(disabled.status().as_u16(), 200);
    assert!(!authenticates(&app, second_key).await);
    let no_key = app
        .admin_post("/admin/merchants/acme/keys", &json!({"label": "x"}))
        .await;
    assert_eq!(error_code(no_key, 409).await, "merchant_disabled");
    assert!(authenticates(&app, MERCHANT_A_KEY).await);
    app.admin_post(&format!("/admin/merchants/{MERCHANT_A}/disable"), &json!({}))
        .await;
    assert!(
        !authenticates(&app, MERCHANT_A_KEY).await,
        "a configured key stops with its merchant"
    );
    assert_eq!(
        app.get_as(
            ADMIN_TOKEN,
            &format!("/admin/orders/{}", order["order_no"].as_str().unwrap())
        )
        .await
        .status()
        .as_u16(),
        200
    );
}

async fn bad_merchant_input_is_refused_with_nothing_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let merchants_before = app.count("SELECT COUNT(*) FROM merchants").await;
    for (body, status, code) in [
        (
            json!({"merchant_id": "no spaces", "name": "x"}),
            422,
            "invalid_merchant_id",
        ),
        (json!({"merchant_id": "", "name": "x"}), 422, "invalid_merchant_id"),
        (json!({"merchant_id": "ok", "name": "  "}), 422, "invalid_field"),
        (
            json!({"merchant_id": "ok", "name": "bidi\u{202e}"}),
            422,
            "invalid_field",
        ),
        (json!({"merchant_id": "ok"}), 400, "invalid_json"),
        (
            json!({"merchant_id": "ok", "name": "x", "extra": 1}),
            400,
            "invalid_json",
        ),
    ] {
        let response = app.admin_post("/admin/merchants", &body).await;
        assert_eq!(error_code(response, status).await, code, "{body}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM merchants").await, merchants_before);
    let unknown = app
        .admin_post("/admin/merchants/nobody/keys", &json!({"label": "x"}))
        .await;
    assert_eq!(unknown.status().as_u16(), 404);
    let label = app
        .admin_post(&format!("/admin/merchants/{MERCHANT_A}/keys"), &json!({"label": ""}))
        .await;
    assert_eq!(error_code(label, 422).await, "invalid_field");
    assert_eq!(app.count("SELECT COUNT(*) FROM merchant_keys").await, 0);
    // A merchant key is no admin token.
    let key = app.onboard("acme").await;
    let as_merchant = app.get_as(&key, "/admin/merchants").await;
    assert_eq!(as_merchant.status().as_u16(), 401);
}

on_both_backends!(
    a_merchant_onboarded_at_runtime_uses_its_own_keys_and_rotates_them,
    bad_merchant_input_is_refused_with_nothing_written
);

/// A key revoked on one node is refused by another node of the same database within a second.
#[actix_web::test]
async fn a_key_revoked_on_one_node_is_refused_by_another_within_a_second() {
    let settings = test_settings(Backend::Postgres).await;
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    let key = first.onboard("acme").await;
    // The second node has the key's answer cached.
    assert!(authenticates(&second, &key).await);
    assert!(authenticates(&second, &key).await);
    let key_id = first
        .get_as(ADMIN_TOKEN, "/admin/merchants/acme/keys")
        .await
        .json::<Value>()
        .await
        .unwrap()["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked_at = Instant::now();
    let revoked = first
        .client
        .delete(first.url(&format!("/admin/merchants/acme/keys/{key_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    while authenticates(&second, &key).await {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the second node still accepts the key a second after it was revoked"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = revoked_at.elapsed();
    println!("revocation seen by the second node after {} ms", seen.as_millis());
    assert!(seen < Duration::from_secs(1));
}

fn sim_config(sim: &SimServer) -> (Value, Value) {
    let wechat = sim.wechat_settings("");
    let platform = wechat.platform_keys.first().unwrap().clone();
    let wechat = json!({
        "mchid": wechat.mchid,
        "appid": wechat.appid,
        "merchant_serial_no": wechat.merchant_serial_no,
        "merchant_private_key_pem": wechat.merchant_private_key_pem.expose_secret(),
        "platform_public_key_pem": platform.pem,
        "platform_serial": platform.serial.unwrap_or_default(),
        "apiv3_key": wechat.apiv3_key.expose_secret(),
        "api_base_url": wechat.api_base_url,
    });
    let alipay = sim.alipay_settings("");
    let alipay = json!({
        "app_id": alipay.app_id,
        "app_private_key_pem": alipay.app_private_key_pem.expose_secret(),
        "alipay_public_key_pem": alipay.alipay_public_key_pem,
        "gateway_url": alipay.gateway_url,
    });
    (wechat, alipay)
}

async fn add_account(app: &TestApp, merchant: &str, provider: &str, config: &Value) -> reqwest::Response {
    app.admin_post(
        &format!("/admin/merchants/{merchant}/provider-accounts"),
        &json!({"provider": provider, "config": config}),
    )
    .await
}

/// Every secret of `config`, to check that none comes back.
fn secrets_of(config: &Value) -> Vec<String> {
    [
        "merchant_private_key_pem",
        "apiv3_key",
        "app_private_key_pem",
        "webhook_secret",
    ]
    .iter()
    .filter_map(|field| config[*field].as_str())
    .map(str::to_owned)
    .collect()
}

/// A provider account goes in with its secrets and never shows them again: the answers carry
/// the public fields and a fingerprint, the row holds them sealed; a key rotation replaces the
/// key alone; verification proves the keys against the provider (the simulator, over HTTP).
#[actix_web::test]
async fn provider_accounts_keep_their_secrets_sealed_and_verify_against_the_provider() {
    let sim = SimServer::start(SimConfig::new(shared_test_keys().unwrap()))
        .await
        .unwrap();
    let app = spawn_app(Backend::Postgres).await;
    app.onboard("acme").await;
    let (wechat, alipay) = sim_config(&sim);

    let mut accounts = Vec::new();
    for (provider, config) in [("wechat", &wechat), ("alipay", &alipay)] {
        let response = add_account(&app, "acme", provider, config).await;
        assert_eq!(response.status().as_u16(), 201, "{provider}");
        let text = response.text().await.unwrap();
        for secret in secrets_of(config) {
            assert!(!text.contains(&secret), "{provider}'s answer shows a secret");
        }
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let account: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(account["status"], "enabled");
        assert_eq!(account["provider"], provider);
        let id = account["account_id"].as_str().unwrap().to_owned();
        assert_eq!(account["notify_path"], format!("/webhooks/{provider}/{id}"));
        accounts.push(account);
    }
    // Both sign with the simulator's merchant key: one fingerprint, 64 hex digits.
    let fingerprint = accounts[0]["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64);
    assert_eq!(accounts[1]["fingerprint"], fingerprint);
    assert_eq!(accounts[0]["config"]["mchid"], wechat["mchid"]);
    assert!(accounts[0]["config"].get("apiv3_key").is_none());

    // At rest: sealed, bound to the row.
    let rows = app
        .db
        .query_all(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT account_id, secrets, config FROM provider_accounts".to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let secrets: String = row.try_get("", "secrets").unwrap();
        let config: String = row.try_get("", "config").unwrap();
        assert!(secrets.starts_with("pwv1."), "{secrets}");
        for secret in secrets_of(&wechat).into_iter().chain(secrets_of(&alipay)) {
            assert!(!secrets.contains(&secret) && !config.contains(&secret));
        }
    }

    // The list and the account itself show no secret either.
    let listed = app
        .get_as(ADMIN_TOKEN, "/admin/merchants/acme/provider-accounts")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains("PRIVATE KEY"));
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["accounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Verification: a signed query for a trade the provider does not know.
    for account in &accounts {
        let id = account["account_id"].as_str().unwrap();
        let verified = app
            .admin_post(
                &format!("/admin/merchants/acme/provider-accounts/{id}/verify"),
                &json!({}),
            )
            .await;
        assert_eq!(verified.status().as_u16(), 200);
        let verified: Value = verified.json().await.unwrap();
        assert_eq!(verified["ok"], true, "{verified}");
        assert_eq!(verified["outcome"], "trade_not_found", "{verified}");
    }

    // An account whose provider key is not the provider's: the answer does not verify.
    let keys = shared_test_keys().unwrap();
    let mut wrong = alipay.clone();
    wrong["alipay_public_key_pem"] = keys.merchant_public_key_pem.clone().into();
    let wrong: Value = add_account(&app, "acme", "alipay", &wrong).await.json().await.unwrap();
    let verified: Value = app
        .admin_post(
            &format!(
                "/admin/merchants/acme/provider-accounts/{}/verify",
                wrong["account_id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], false, "{verified}");
    assert_eq!(verified["outcome"], "unverified_answer", "{verified}");

    // A rotation sends the changed field alone; a bad one changes nothing.
    let wechat_id = accounts[0]["account_id"].as_str().unwrap();
    let path = format!("/admin/merchants/acme/provider-accounts/{wechat_id}");
    let sealed_before = sealed_secrets(&app, wechat_id).await;
    let refused = app
        .client
        .patch(app.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"config": {"apiv3_key": "short"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "invalid_provider_config");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config.apiv3_key"),
        "{refused}"
    );
    assert_eq!(sealed_secrets(&app, wechat_id).await, sealed_before);
    let rotated = app
        .client
        .patch(app.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"config": {"apiv3_key": "0123456789abcdef0123456789ABCDEF"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status().as_u16(), 200);
    assert_ne!(sealed_secrets(&app, wechat_id).await, sealed_before);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["config"]["mchid"], wechat["mchid"], "the other fields are kept");

    // Disabled, it says so.
    let disabled: Value = app
        .admin_post(&format!("{path}/disable"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["status"], "disabled");
    // Another merchant's account is not found under this one.
    let foreign = app
        .get_as(
            ADMIN_TOKEN,
            &format!("/admin/merchants/{MERCHANT_A}/provider-accounts/{wechat_id}"),
        )
        .await;
    assert_eq!(foreign.status().as_u16(), 404);
}

async fn sealed_secrets(app: &TestApp, account_id: &str) -> String {
    app.db
        .query_one(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT secrets FROM provider_accounts WHERE account_id = $1",
            [account_id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "secrets")
        .unwrap()
}

/// A certificate for `private_key_pem` with `serial` (hex), made by the `openssl` command.
fn certificate(private_key_pem: &str, serial: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pw-cert-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    std::fs::write(&key, private_key_pem).unwrap();
    let cert = dir.join("cert.pem");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(&key)
        .args(["-subj", "/CN=paywarden test merchant", "-days", "1", "-set_serial"])
        .arg(format!("0x{serial}"))
        .arg("-out")
        .arg(&cert)
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&cert).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    text
}

/// Every refused configuration names its field and stores nothing.
#[actix_web::test]
async fn a_refused_provider_account_names_its_field_and_stores_nothing() {
    let sim = SimServer::start(SimConfig::new(shared_test_keys().unwrap()))
        .await
        .unwrap();
    let app = spawn_app(Backend::Sqlite).await;
    app.onboard("acme").await;
    let (wechat, alipay) = sim_config(&sim);
    let keys = shared_test_keys().unwrap();
    let with = |base: &Value, field: &str, value: Value| {
        let mut config = base.clone();
        config[field] = value;
        config
    };
    let without = |base: &Value, field: &str| {
        let mut config = base.clone();
        config.as_object_mut().unwrap().remove(field);
        config
    };
    let serial = wechat["merchant_serial_no"].as_str().unwrap().to_owned();
    let others_certificate = certificate(keys.platform_private_key_pem.expose_secret(), &serial);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "wechat",
            with(&wechat, "merchant_private_key_pem", "not a key".into()),
            "config.merchant_private_key_pem",
        ),
        (
            "wechat",
            with(
                &wechat,
                "merchant_private_key_pem",
                keys.merchant_public_key_pem.clone().into(),
            ),
            "config.merchant_private_key_pem",
        ),
        (
            "wechat",
            with(
                &wechat,
                "platform_public_key_pem",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            ),
            "config.platform_public_key_pem",
        ),
        (
            "wechat",
            with(&wechat, "apiv3_key", "0123456789abcdef0123456789abcde".into()),
            "config.apiv3_key",
        ),
        ("wechat", with(&wechat, "mchid", "".into()), "config.mchid"),
        (
            "wechat",
            with(&wechat, "api_base_url", "ftp://example.com".into()),
            "config.api_base_url",
        ),
        ("wechat", without(&wechat, "apiv3_key"), "apiv3_key"),
        ("wechat", with(&wechat, "surprise", "x".into()), "surprise"),
        (
            "wechat",
            with(&wechat, "merchant_certificate_pem", others_certificate.into()),
            "config.merchant_private_key_pem",
        ),
        (
            "wechat",
            with(
                &wechat,
                "merchant_certificate_pem",
                certificate(keys.merchant_private_key_pem.expose_secret(), "ABCDEF0123").into(),
            ),
            "config.merchant_serial_no",
        ),
        (
            "alipay",
            with(&alipay, "alipay_public_key_pem", "garbage".into()),
            "config.alipay_public_key_pem",
        ),
        (
            "alipay",
            with(&alipay, "app_private_key_pem", "".into()),
            "config.app_private_key_pem",
        ),
        ("sandbox", json!({"webhook_secret": "short"}), "config.webhook_secret"),
    ];
    for (provider, config, field) in cases {
        let response = add_account(&app, "acme", provider, &config).await;
        assert_eq!(response.status().as_u16(), 422, "{provider} {field}");
        let body = response.text().await.unwrap();
        assert!(body.contains("invalid_provider_config"), "{body}");
        assert!(body.contains(field), "{field}: {body}");
        for secret in secrets_of(&config) {
            assert!(
                secret.len() < 8 || !body.contains(&secret),
                "the error quotes a secret: {body}"
            );
        }
    }
    let unknown = add_account(&app, "acme", "paypal", &json!({})).await;
    assert_eq!(error_code(unknown, 422).await, "unknown_provider");
    let nobody = add_account(&app, "nobody", "alipay", &alipay).await;
    assert_eq!(nobody.status().as_u16(), 404);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM provider_accounts").await,
        0,
        "nothing was stored"
    );

    // The certificate of the key, under its serial, is accepted.
    let own = certificate(keys.merchant_private_key_pem.expose_secret(), &serial);
    let accepted = add_account(
        &app,
        "acme",
        "wechat",
        &with(&wechat, "merchant_certificate_pem", own.into()),
    )
    .await;
    assert_eq!(accepted.status().as_u16(), 201, "{}", accepted.text().await.unwrap());
}

/// The master key: a restart with it serves every account; without it, or with another one,
/// the service refuses to start and names the first account it cannot open; `paywarden secrets
/// rotate` re-seals every account under a new key, reading the old one as a previous key.
#[actix_web::test]
async fn a_restart_needs_the_master_key_and_rotation_reseals_under_a_new_one() {
    let sim = SimServer::start(SimConfig::new(shared_test_keys().unwrap()))
        .await
        .unwrap();
    let settings = test_settings(Backend::Postgres).await;
    let app = spawn_app_with(settings.clone()).await;
    app.onboard("acme").await;
    let (_, alipay) = sim_config(&sim);
    let account: Value = add_account(&app, "acme", "alipay", &alipay).await.json().await.unwrap();
    let account_id = account["account_id"].as_str().unwrap().to_owned();

    let mut wrong = settings.clone();
    wrong.secrets.master_key = actors::vault::Vault::generate_key();
    let refused = paywarden::startup::Application::build(wrong)
        .await
        .err()
        .expect("a wrong key refuses to start");
    let message = format!("{refused:#}");
    assert!(message.contains(&account_id), "{message}");
    let mut none = settings.clone();
    none.secrets.master_key = secrecy::SecretString::from(String::new());
    let refused = paywarden::startup::Application::build(none)
        .await
        .err()
        .expect("no key refuses to start");
    assert!(
        format!("{refused:#}").contains("secrets.master_key is not set"),
        "{refused:#}"
    );

    // Rotation, by the command: progress on stderr, every row re-sealed under the new key.
    let new_key = actors::vault::Vault::generate_key();
    let old_key = settings.secrets.master_key.expose_secret().to_owned();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_paywarden"))
        .args(["secrets", "rotate"])
        .env("PAYWARDEN__ENV", "test")
        .env("PAYWARDEN__DATABASE__URL", settings.database.url.expose_secret())
        .env("PAYWARDEN__SECRETS__MASTER_KEY", new_key.expose_secret())
        .env("PAYWARDEN__SECRETS__PREVIOUS_MASTER_KEYS", &old_key)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("1 re-sealed"), "{stderr}");
    assert!(!stderr.contains(&old_key) && !stderr.contains(new_key.expose_secret()));
    let new_vault = actors::vault::Vault::new(&new_key, &[]).unwrap();
    assert!(new_vault.is_current(&sealed_secrets(&app, &account_id).await));

    // The new key alone serves the account after a restart; the old one no longer opens it.
    let mut rotated = settings.clone();
    rotated.secrets.master_key = new_key;
    let restarted = spawn_app_with(rotated).await;
    let verified: Value = restarted
        .admin_post(
            &format!("/admin/merchants/acme/provider-accounts/{account_id}/verify"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    let refused = paywarden::startup::Application::build(settings)
        .await
        .err()
        .expect("the old key no longer opens it");
    assert!(format!("{refused:#}").contains(&account_id));
}

/// One merchant's provider accounts, each at a simulator of its own (its own keys, its own
/// trade book).
struct Shop {
    key: String,
    sim: SimServer,
    /// provider -> account id
    accounts: std::collections::BTreeMap<&'static str, String>,
}

async fn shop(app: &TestApp, merchant: &str, keys: paywarden_sim::keys::KeyMaterial, number: u32) -> Shop {
    let mut config = SimConfig::new(keys);
    config.notify_speedup = 1000;
    config.close_too_early_seconds = 0;
    config.wechat_mchid = format!("190000000{number}");
    config.wechat_merchant_serial_no = format!("5157F09EFDC096DE15EBE81A47057A7232F1B8E{number}");
    config.alipay_app_id = format!("202100000000000{number}");
    let sim = SimServer::start(config).await.unwrap();
    let key = app.onboard(merchant).await;
    let (wechat, alipay) = sim_config(&sim);
    let mut accounts = std::collections::BTreeMap::new();
    for (provider, config) in [("wechat", wechat), ("alipay", alipay)] {
        let added = add_account(app, merchant, provider, &config).await;
        assert_eq!(added.status().as_u16(), 201, "{merchant} {provider}");
        let added: Value = added.json().await.unwrap();
        accounts.insert(provider, added["account_id"].as_str().unwrap().to_owned());
    }
    Shop { key, sim, accounts }
}

impl Shop {
    /// An order of this merchant with an attempt at `provider`: (order_no, pay_no).
    async fn attempt(&self, app: &TestApp, provider: &str, id: &str) -> (String, String) {
        let order = app.post_order(&self.key, &order_body(id)).await;
        assert_eq!(order.status().as_u16(), 201);
        let order: Value = order.json().await.unwrap();
        let order_no = order["order_no"].as_str().unwrap().to_owned();
        let attempt = app
            .post_as(
                &self.key,
                &format!("/v1/orders/{order_no}/payments"),
                Some(&json!({ "provider": provider })),
            )
            .await;
        assert_eq!(attempt.status().as_u16(), 201, "{provider} attempt");
        let attempt: Value = attempt.json().await.unwrap();
        (order_no, attempt["pay_no"].as_str().unwrap().to_owned())
    }

    async fn control(&self, path: &str, body: Value) -> u16 {
        reqwest::Client::new()
            .post(format!("{}{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn status_of(app: &TestApp, order_no: &str) -> String {
    app.admin_order(order_no).await["status"].as_str().unwrap().to_owned()
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Two merchants, each on its own WeChat Pay account and its own Alipay app (two simulators:
/// two key sets, two trade books). Each merchant's attempts are signed with its own key and
/// land in its own account; each account's notifications are verified with its own keys; a
/// notification signed by one account, or naming another account's trade, is refused and
/// changes nothing; refunds stay in their account.
#[actix_web::test]
async fn two_merchants_pay_refund_and_are_notified_each_through_its_own_accounts() {
    let app = spawn_app(Backend::Postgres).await;
    let acme = shop(&app, "acme", shared_test_keys().unwrap(), 1).await;
    let globex = shop(&app, "globex", paywarden_sim::keys::KeyMaterial::generate().unwrap(), 2).await;
    let sim_provider = |provider: &str| match provider {
        "wechat" => paywarden_sim::SimProvider::Wechat,
        _ => paywarden_sim::SimProvider::Alipay,
    };

    // The checkout page offers a merchant's own accounts' providers beside the deployment's
    // (the test profile configures the sandbox only).
    let checkout_of = async |key: &str, id: &str| -> String {
        let order: Value = app.post_order(key, &order_body(id)).await.json().await.unwrap();
        let url = order["checkout_url"].as_str().unwrap().to_owned();
        app.client.get(url).send().await.unwrap().text().await.unwrap()
    };
    let page = checkout_of(&acme.key, "acme-checkout").await;
    for provider in ["sandbox", "wechat", "alipay"] {
        assert!(
            page.contains(&format!("data-provider=\"{provider}\"")),
            "{provider} offered"
        );
    }
    let page = checkout_of(MERCHANT_A_KEY, "a-checkout").await;
    assert!(
        !page.contains("data-provider=\"alipay\""),
        "a merchant without accounts: the deployment's"
    );

    for provider in ["wechat", "alipay"] {
        let (acme_order, acme_pay) = acme.attempt(&app, provider, &format!("acme-{provider}")).await;
        let (globex_order, globex_pay) = globex.attempt(&app, provider, &format!("globex-{provider}")).await;
        let sim = sim_provider(provider);

        // Each attempt landed at its merchant's account (the other never heard of it; a
        // request signed with another key would have been refused there).
        assert!(
            acme.sim.trade(sim, &acme_pay).is_some(),
            "{provider}: acme's trade at acme's account"
        );
        assert!(globex.sim.trade(sim, &acme_pay).is_none());
        assert!(globex.sim.trade(sim, &globex_pay).is_some());
        assert!(acme.sim.trade(sim, &globex_pay).is_none());
        let recorded = app.admin_order(&acme_order).await;
        assert_eq!(recorded["merchant_id"], "acme");
        let expected_notify = format!("/webhooks/{provider}/{}", acme.accounts[provider]);
        assert!(
            acme.sim
                .trade(sim, &acme_pay)
                .unwrap()
                .notify_url
                .ends_with(&expected_notify),
            "the account's own notification route"
        );

        // A notification signed by acme's account for globex's trade, to globex's route:
        // globex's keys do not verify it.
        let globex_route = format!("{}/webhooks/{provider}/{}", app.address, globex.accounts[provider]);
        let forged = format!("forged-{provider}");
        let opened = acme
            .control(
                &format!("/sim/{provider}/trades"),
                json!({"out_trade_no": forged, "amount_fen": 2999, "notify_url": globex_route}),
            )
            .await;
        assert!(opened < 300, "a foreign trade at acme's simulator: {opened}");
        let _ = acme
            .control(&format!("/sim/{provider}/trades/{forged}/scan"), json!({}))
            .await;
        assert_eq!(
            acme.control(&format!("/sim/{provider}/trades/{forged}/pay"), json!({}))
                .await,
            200
        );
        wait_until("acme's simulator delivered to globex's route", async || {
            acme.sim.trade(sim, &forged).unwrap().notifications_sent > 0
        })
        .await;
        assert_eq!(acme.sim.trade(sim, &forged).unwrap().notifications_acknowledged, 0);

        // Signed by acme's account (it verifies at acme's route) but naming globex's trade.
        let acme_route = format!("{}/webhooks/{provider}/{}", app.address, acme.accounts[provider]);
        acme.control(
            &format!("/sim/{provider}/trades"),
            json!({"out_trade_no": globex_pay, "amount_fen": 2999, "notify_url": acme_route}),
        )
        .await;
        let _ = acme
            .control(&format!("/sim/{provider}/trades/{globex_pay}/scan"), json!({}))
            .await;
        assert_eq!(
            acme.control(&format!("/sim/{provider}/trades/{globex_pay}/pay"), json!({}))
                .await,
            200
        );
        wait_until(
            "acme's simulator delivered globex's trade to acme's route",
            async || acme.sim.trade(sim, &globex_pay).unwrap().notifications_sent > 0,
        )
        .await;
        assert_eq!(acme.sim.trade(sim, &globex_pay).unwrap().notifications_acknowledged, 0);
        assert_eq!(status_of(&app, &globex_order).await, "pending", "nothing changed");
        let unmatched = app.count("SELECT COUNT(*) FROM unmatched_notifications").await;
        assert_eq!(unmatched, 0, "a refused notification is not stored either");

        // The real payments, each notified by its own account and verified with its keys.
        for (shop, order_no, pay_no) in [(&acme, &acme_order, &acme_pay), (&globex, &globex_order, &globex_pay)] {
            let _ = shop
                .control(&format!("/sim/{provider}/trades/{pay_no}/scan"), json!({}))
                .await;
            assert_eq!(
                shop.control(&format!("/sim/{provider}/trades/{pay_no}/pay"), json!({}))
                    .await,
                200
            );
            wait_until("the order is paid", async || status_of(&app, order_no).await == "paid").await;
            assert!(shop.sim.trade(sim, pay_no).unwrap().notifications_acknowledged > 0);
        }

        // A refund goes to the account of its payment.
        let refund = app
            .post_as(
                &globex.key,
                &format!("/v1/orders/{globex_order}/refunds"),
                Some(&json!({"out_refund_id": format!("rf-{provider}"), "amount": 500, "reason": "returned"})),
            )
            .await;
        assert_eq!(refund.status().as_u16(), 201, "{}", refund.text().await.unwrap());
        wait_until("the refund reached globex's account", async || {
            globex
                .sim
                .refunds()
                .iter()
                .any(|r| r.provider == sim && r.out_trade_no == globex_pay)
        })
        .await;
        assert!(
            !acme.sim.refunds().iter().any(|r| r.out_trade_no == globex_pay),
            "nothing reached acme's account"
        );

        // Each account's bill is reconciled with that account's payments and refunds only.
        let today = (chrono::Utc::now() + chrono::Duration::hours(8))
            .format("%Y-%m-%d")
            .to_string();
        let reconcile = async |account: &str| -> Value {
            let response = app
                .admin_post("/admin/reconciliations", &json!({"account_id": account, "date": today}))
                .await;
            assert_eq!(response.status().as_u16(), 200);
            response.json().await.unwrap()
        };
        let run = reconcile(&globex.accounts[provider]).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["account_id"], globex.accounts[provider].as_str());
        assert_eq!(run["items"], 0, "globex's bill matches globex's records: {run}");
        assert_eq!(run["summary"]["provider_payments"]["count"], 1, "{run}");
        assert_eq!(run["summary"]["local_payments"]["count"], 1, "{run}");
        // Acme's bill holds the two foreign trades its simulator was made to take: unknown to
        // acme's account, the one that bears globex's trade number included (the trades an
        // account's run knows are that account's), so nothing is credited to globex's order.
        let run = reconcile(&acme.accounts[provider]).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["summary"]["local_payments"]["count"], 1, "{run}");
        assert_eq!(run["items"], 2, "{run}");
        let foreign = run["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["out_trade_no"] == globex_pay.as_str())
            .unwrap_or_else(|| panic!("globex's trade number is a difference: {run}"));
        assert_eq!(foreign["kind"], "unknown_trade", "{foreign}");
        assert!(foreign["action"].is_null(), "not compensated: {foreign}");
        let order = app.admin_order(&globex_order).await;
        assert_eq!(
            order["payments"].as_array().unwrap().len(),
            1,
            "no payment credited from acme's bill"
        );
    }

    // An authentic notification for a trade paywarden does not know, at globex's account: kept
    // for an operator with the account the money is in.
    let globex_alipay_route = format!("{}/webhooks/alipay/{}", app.address, globex.accounts["alipay"]);
    globex
        .control(
            "/sim/alipay/trades",
            json!({"out_trade_no": "elsewhere-1", "amount_fen": 700, "notify_url": globex_alipay_route}),
        )
        .await;
    let _ = globex.control("/sim/alipay/trades/elsewhere-1/scan", json!({})).await;
    assert_eq!(
        globex.control("/sim/alipay/trades/elsewhere-1/pay", json!({})).await,
        200
    );
    wait_until("the unknown trade's notification is stored", async || {
        app.count("SELECT COUNT(*) FROM unmatched_notifications").await == 1
    })
    .await;
    let unmatched: Value = app
        .get_as(ADMIN_TOKEN, "/admin/unmatched-notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        unmatched["notifications"][0]["account_id"],
        globex.accounts["alipay"].as_str(),
        "{unmatched}"
    );
    app.execute("DELETE FROM unmatched_notifications").await;
}

/// Each account has its own call budget and circuit breaker: one merchant's failing provider
/// account opens its own breaker only; another merchant's account at the same provider keeps
/// taking payments.
#[actix_web::test]
async fn one_merchants_failing_account_does_not_trip_another_merchants() {
    let mut settings = test_settings(Backend::Postgres).await;
    let calls = &mut settings.providers.alipay.calls;
    calls.retries = 0;
    calls.breaker_failure_threshold = 3;
    calls.breaker_open_for = Duration::from_secs(60);
    let app = spawn_app_with(settings).await;
    let acme = shop(&app, "acme", shared_test_keys().unwrap(), 1).await;
    let globex = shop(&app, "globex", paywarden_sim::keys::KeyMaterial::generate().unwrap(), 2).await;
    acme.sim.set_faults(paywarden_sim::SimFaults {
        error_rate: 1.0,
        ..paywarden_sim::SimFaults::default()
    });

    // Acme's account fails until its breaker opens.
    for i in 0..5 {
        let order: Value = app
            .post_order(&acme.key, &order_body(&format!("acme-{i}")))
            .await
            .json()
            .await
            .unwrap();
        let order_no = order["order_no"].as_str().unwrap();
        let attempt = app
            .post_as(
                &acme.key,
                &format!("/v1/orders/{order_no}/payments"),
                Some(&json!({"provider": "alipay"})),
            )
            .await;
        assert!(attempt.status().is_server_error(), "acme's provider fails");
    }
    // Three calls failed, then the breaker refused the rest without calling.
    assert_eq!(
        acme.sim.api_calls(),
        3,
        "acme's account's breaker opened after 3 failures"
    );

    // Globex's account, at the same provider, is untouched: its own breaker is closed.
    let (_, pay_no) = globex.attempt(&app, "alipay", "globex-1").await;
    assert!(globex.sim.trade(paywarden_sim::SimProvider::Alipay, &pay_no).is_some());
}

/// A merchant's sandbox account: its attempts are trades of its own sandbox, paid through the
/// sandbox's buyer route, notified to the account's route with the account's secret.
#[actix_web::test]
async fn a_merchants_sandbox_account_takes_its_payments_through_its_own_route() {
    let app = spawn_app(Backend::Sqlite).await;
    let key = app.onboard("acme").await;
    let added = add_account(
        &app,
        "acme",
        "sandbox",
        &json!({"webhook_secret": "whsec_acme_sandbox_secret"}),
    )
    .await;
    assert_eq!(added.status().as_u16(), 201);
    let account: Value = added.json().await.unwrap();
    let order: Value = app
        .post_order(&key, &order_body("acme-sandbox"))
        .await
        .json()
        .await
        .unwrap();
    let order_no = order["order_no"].as_str().unwrap();
    let attempt: Value = app
        .post_as(
            &key,
            &format!("/v1/orders/{order_no}/payments"),
            Some(&json!({"provider": "sandbox"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let pay_no = attempt["pay_no"].as_str().unwrap();
    let recorded = app
        .count(&format!(
            "SELECT COUNT(*) FROM payment_attempts WHERE account_id = '{}'",
            account["account_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(recorded, 1, "the attempt records its account");

    let paid = app
        .post_as(ADMIN_TOKEN, &format!("/sandbox/trades/{pay_no}/pay"), None)
        .await;
    assert_eq!(paid.status().as_u16(), 200);
    wait_until("the order is paid through the account's notification", async || {
        status_of(&app, order_no).await == "paid"
    })
    .await;
    // Paid means its notification verified: the account's sandbox signs with the account's
    // secret, which only the account's route (`/webhooks/sandbox/{account_id}`) checks with.
}

/// Where an attempt may not go: a merchant whose accounts of a provider are all disabled pays
/// nowhere (never into the deployment's own account of it); an account's identity does not
/// change under its trades; production takes no sandbox account and no http endpoint.
#[actix_web::test]
async fn disabled_accounts_identity_changes_and_production_endpoints_are_refused() {
    let sim = SimServer::start(SimConfig::new(shared_test_keys().unwrap()))
        .await
        .unwrap();
    let app = spawn_app(Backend::Sqlite).await;
    let key = app.onboard("acme").await;
    let account: Value = add_account(
        &app,
        "acme",
        "sandbox",
        &json!({"webhook_secret": "whsec_acme_sandbox_secret"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let account_id = account["account_id"].as_str().unwrap();
    app.admin_post(
        &format!("/admin/merchants/acme/provider-accounts/{account_id}/disable"),
        &json!({}),
    )
    .await;
    let order: Value = app.post_order(&key, &order_body("acme-1")).await.json().await.unwrap();
    let order_no = order["order_no"].as_str().unwrap();
    let before = app.count("SELECT COUNT(*) FROM payment_attempts").await;
    let refused = app
        .post_as(
            &key,
            &format!("/v1/orders/{order_no}/payments"),
            Some(&json!({"provider": "sandbox"})),
        )
        .await;
    assert_eq!(
        error_code(refused, 422).await,
        "provider_unavailable",
        "the deployment's sandbox is configured, yet acme's disabled account is not replaced by it"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_attempts").await, before);
    // A merchant with no account of it at all pays through the deployment's.
    let theirs = app.create_order(&order_body("a-1")).await;
    let attempt = app
        .post_payment(MERCHANT_A_KEY, theirs["order_no"].as_str().unwrap(), "sandbox")
        .await;
    assert_eq!(attempt.status().as_u16(), 201);

    // Keys and endpoints change; the merchant id does not.
    let (wechat, _) = sim_config(&sim);
    let wechat: Value = add_account(&app, "acme", "wechat", &wechat).await.json().await.unwrap();
    let path = format!(
        "/admin/merchants/acme/provider-accounts/{}",
        wechat["account_id"].as_str().unwrap()
    );
    let moved = app
        .client
        .patch(app.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"config": {"mchid": "1900000999"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 422);
    assert!(moved.text().await.unwrap().contains("config.mchid"));

    // Production: no sandbox account, no http endpoint.
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.env = paywarden::config::Profile::Production;
    let production = spawn_app_with(settings).await;
    production.onboard("acme").await;
    let sandbox = add_account(
        &production,
        "acme",
        "sandbox",
        &json!({"webhook_secret": "whsec_acme_sandbox_secret"}),
    )
    .await;
    assert_eq!(error_code(sandbox, 422).await, "provider_unavailable");
    let (_, alipay) = sim_config(&sim);
    let http = add_account(&production, "acme", "alipay", &alipay).await;
    assert_eq!(http.status().as_u16(), 422);
    assert!(http
        .text()
        .await
        .unwrap()
        .contains("config.gateway_url: must be an https:// URL"));
}
