//! The production profile refuses to start on unsafe settings: the `paywarden` binary, started
//! the way an operator starts it (environment variables only), exits at once with one line
//! naming the setting and its variable, and never the secret.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A production environment that passes every check of the configuration: long secrets of its
/// own, no sandbox, an https base URL (the database is never reached in these tests).
fn production_env() -> Vec<(&'static str, String)> {
    vec![
        ("PAYWARDEN__ENV", "production".to_owned()),
        ("PAYWARDEN__SERVER__ADDR", "127.0.0.1:0".to_owned()),
        (
            "PAYWARDEN__SERVER__PUBLIC_BASE_URL",
            "https://pay.example.com".to_owned(),
        ),
        (
            "PAYWARDEN__DATABASE__URL",
            "postgres://paywarden@127.0.0.1:1/never".to_owned(),
        ),
        ("PAYWARDEN__DATABASE__CONNECT_TIMEOUT_SECONDS", "1".to_owned()),
        (
            "PAYWARDEN__AUTH__ADMIN_TOKEN",
            "adm_0123456789abcdefghijklmnopqrstuv".to_owned(),
        ),
        (
            "PAYWARDEN__AUTH__MERCHANT_KEYS__ACME",
            "pk_live_acme_0123456789abcdefghijkl".to_owned(),
        ),
        (
            "PAYWARDEN__AUTH__MERCHANT_KEYS__GLOBEX",
            "pk_live_globex_0123456789abcdefghij".to_owned(),
        ),
        (
            "PAYWARDEN__CHECKOUT__LINK_SECRET",
            "chk_0123456789abcdefghijklmnopqrstuvwx".to_owned(),
        ),
        (
            "PAYWARDEN__CONSOLE__SESSION_SECRET",
            "ses_0123456789abcdefghijklmnopqrstuvwx".to_owned(),
        ),
        (
            "PAYWARDEN__METRICS__SCRAPE_TOKEN",
            "scr_0123456789abcdefghijklmnopqrstuvwx".to_owned(),
        ),
    ]
}

/// Runs the binary from an empty directory with `env` only; returns its exit success and stderr.
fn run(env: &[(&str, String)]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("paywarden-prod-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paywarden"))
        .current_dir(&dir)
        .env_clear()
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the paywarden binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the service did not refuse to start within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (status.success(), stderr)
}

#[test]
fn the_production_binary_refuses_unsafe_settings_naming_the_setting_and_its_variable() {
    // (variable to set, value, what the one line must say, description)
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            "PAYWARDEN__AUTH__MERCHANT_KEYS__GLOBEX",
            "pk_live_acme_0123456789abcdefghijkl",
            "auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME) and auth.merchant_keys.globex (PAYWARDEN__AUTH__MERCHANT_KEYS__GLOBEX) are the same key",
            "two merchants with one key",
        ),
        (
            "PAYWARDEN__AUTH__MERCHANT_KEYS__ACME",
            "adm_0123456789abcdefghijklmnopqrstuv",
            "auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME) is the admin token",
            "a merchant key equal to the admin token",
        ),
        (
            "PAYWARDEN__AUTH__ADMIN_TOKEN",
            "short-admin-token",
            "auth.admin_token (PAYWARDEN__AUTH__ADMIN_TOKEN) must be at least 32 characters",
            "an admin token of 17 characters",
        ),
        (
            "PAYWARDEN__AUTH__MERCHANT_KEYS__ACME",
            "pk_test_merchant_a",
            "auth.merchant_keys.acme (PAYWARDEN__AUTH__MERCHANT_KEYS__ACME): the production profile refuses a value published",
            "the test profile's merchant key",
        ),
        (
            "PAYWARDEN__AUTH__ADMIN_TOKEN",
            "admin_test_token",
            "auth.admin_token (PAYWARDEN__AUTH__ADMIN_TOKEN): the production profile refuses a value published",
            "the test profile's admin token",
        ),
        (
            "PAYWARDEN__CHECKOUT__LINK_SECRET",
            "checkout_test_link_secret_0123456789abcdef",
            "checkout.link_secret (PAYWARDEN__CHECKOUT__LINK_SECRET): the production profile refuses a value published",
            "the test profile's checkout link secret",
        ),
        (
            "PAYWARDEN__OUTBOX__ALLOW_PRIVATE_TARGETS",
            "true",
            "outbox.allow_private_targets (PAYWARDEN__OUTBOX__ALLOW_PRIVATE_TARGETS) must be false",
            "webhooks to private addresses",
        ),
        (
            "PAYWARDEN__SERVER__PUBLIC_BASE_URL",
            "http://pay.example.com",
            "server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL) must be an https:// URL",
            "a plain http base URL",
        ),
        (
            "PAYWARDEN__SERVER__PUBLIC_BASE_URL",
            "",
            "server.public_base_url (PAYWARDEN__SERVER__PUBLIC_BASE_URL) must be an https:// URL",
            "no base URL",
        ),
    ];
    for (variable, value, says, description) in cases {
        let mut env = production_env();
        env.retain(|(key, _)| *key != variable);
        env.push((variable, value.to_owned()));
        let (started, stderr) = run(&env);
        assert!(!started, "{description}: the service must not start; stderr: {stderr}");
        assert!(stderr.contains(says), "{description}: expected '{says}' in: {stderr}");
        let line = stderr.lines().find(|line| line.contains(says)).unwrap_or_default();
        if !value.is_empty() && value != "true" {
            assert!(!line.contains(value), "{description}: the secret is printed: {stderr}");
        }
    }
    // The same environment with nothing spoiled gets past the configuration (to the database,
    // which is not there).
    let (started, stderr) = run(&production_env());
    assert!(!started);
    assert!(
        !stderr.contains("PAYWARDEN__") && stderr.to_lowercase().contains("database"),
        "the valid production settings pass every check: {stderr}"
    );
}
