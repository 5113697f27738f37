//! `merchants`: many merchants as data. N merchants, each with a key and its own Alipay app
//! (real RSA key material, secrets sealed under the master key), stored in the database; how
//! long the service takes to start and how much memory it holds next to an empty deployment;
//! then M of them pay once each (an order and an attempt at their own account, against the
//! simulator over HTTP), which builds those accounts' gateways and provider actors: the memory
//! per built account.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::harness::{Harness, Service};
use crate::report::{print_table, write_json, Machine};

#[derive(clap::Args)]
pub struct Args {
    /// Merchants stored, each with a key and an Alipay account.
    #[arg(long, default_value_t = 10_000)]
    merchants: u64,
    /// Of which this many pay once each (their accounts are built).
    #[arg(long, default_value_t = 1_000)]
    paying: u64,
}

#[derive(Serialize)]
struct Figures {
    machine: Machine,
    merchants: u64,
    paying: u64,
    empty_start_s: f64,
    empty_rss_bytes: u64,
    stored_start_s: f64,
    stored_rss_bytes: u64,
    rss_over_empty_bytes: u64,
    built_rss_bytes: u64,
    rss_per_built_account_bytes: u64,
    paying_s: f64,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", crate::report::float_u(bytes) / 1_048_576.0)
}

pub async fn run(args: &Args, out: &Path) -> anyhow::Result<()> {
    let machine = Machine::read();
    machine.print();
    let sim =
        paywarden_sim::SimServer::start(paywarden_sim::SimConfig::new(paywarden_sim::shared_test_keys()?)).await?;
    let mut harness = Harness::new("merchants").await?;
    let master_key = actors::vault::Vault::generate_key();
    let key_file = harness.dir.join("master.key");
    std::fs::write(&key_file, secrecy::ExposeSecret::expose_secret(&master_key))?;
    let env = vec![(
        "PAYWARDEN__SECRETS__MASTER_KEY_PATH".to_owned(),
        key_file.display().to_string(),
    )];

    eprintln!("merchants: an empty deployment");
    let mut service = harness.node(env)?;
    let (empty_start, empty_rss) = start_and_measure(&mut service).await?;
    service.kill();

    eprintln!(
        "merchants: storing {} merchants with a key and an Alipay account each",
        args.merchants
    );
    let vault = actors::vault::Vault::new(&master_key, &[])?;
    store(&harness, &vault, &sim, args.merchants).await?;

    eprintln!("merchants: starting with them");
    let (stored_start, stored_rss) = start_and_measure(&mut service).await?;

    eprintln!("merchants: {} of them pay once each", args.paying);
    let started = Instant::now();
    for i in 0..args.paying {
        pay(&service, i).await.with_context(|| format!("merchant {i} paying"))?;
        if (i + 1) % 200 == 0 {
            eprintln!("  {} paid", i + 1);
        }
    }
    let paying = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let built_rss = service.rss()?;
    service.kill();
    harness.finish(false).await?;

    let figures = Figures {
        machine,
        merchants: args.merchants,
        paying: args.paying,
        empty_start_s: empty_start.as_secs_f64(),
        empty_rss_bytes: empty_rss,
        stored_start_s: stored_start.as_secs_f64(),
        stored_rss_bytes: stored_rss,
        rss_over_empty_bytes: stored_rss.saturating_sub(empty_rss),
        built_rss_bytes: built_rss,
        rss_per_built_account_bytes: built_rss.saturating_sub(stored_rss) / args.paying.max(1),
        paying_s: paying.as_secs_f64(),
    };
    print_table(
        "Merchants as data (PostgreSQL + Redis, release build): start and memory next to an empty deployment",
        &["deployment", "start (/healthz)", "RSS", "over empty"],
        &[
            vec![
                "empty".to_owned(),
                format!("{:.2} s", figures.empty_start_s),
                mib(empty_rss),
                "-".to_owned(),
            ],
            vec![
                format!("{} merchants, an Alipay account each", args.merchants),
                format!("{:.2} s", figures.stored_start_s),
                mib(stored_rss),
                mib(figures.rss_over_empty_bytes),
            ],
            vec![
                format!("… and {} of them paid once (accounts built)", args.paying),
                format!("{:.2} s for the payments", figures.paying_s),
                mib(built_rss),
                format!("{} KiB per built account", figures.rss_per_built_account_bytes / 1024),
            ],
        ],
    );
    write_json(out, "merchants", &figures)
}

/// Starts the service: how long until `/healthz` answers, and its memory once settled.
async fn start_and_measure(service: &mut Service) -> anyhow::Result<(Duration, u64)> {
    let healthy = service.start().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok((healthy, service.rss()?))
}

fn merchant_id(i: u64) -> String {
    format!("m{i:06}")
}

fn merchant_key(i: u64) -> String {
    format!("pwk_bench_merchant_key_{i:06}")
}

/// Rows written the way the admin routes write them (the same columns, sealed the same way),
/// in batches: onboarding 10,000 merchants over HTTP would measure RSA parsing of the checks,
/// not the start.
async fn store(
    harness: &Harness,
    vault: &actors::vault::Vault,
    sim: &paywarden_sim::SimServer,
    n: u64,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let alipay = sim.alipay_settings("");
    let public = serde_json::json!({
        "app_id": alipay.app_id,
        "alipay_public_key_pem": alipay.alipay_public_key_pem,
        "gateway_url": alipay.gateway_url,
    })
    .to_string();
    let secrets = serde_json::json!({"app_private_key_pem": alipay.app_private_key_pem.expose_secret()}).to_string();
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(500) {
        let mut merchants = Vec::new();
        let mut keys = Vec::new();
        let mut accounts = Vec::new();
        for &i in chunk {
            let id = merchant_id(i);
            let account = format!("acct_bench_{i:06}");
            merchants.push(format!("({}, 'Shop {i}', true, 'api', now(), NULL)", quote(&id)));
            keys.push(format!(
                "('key_bench_{i:06}', {}, {}, 'pwk_bench_me', 'bench', now(), NULL, NULL)",
                quote(&id),
                quote(&actors::store::merchants::key_digest(&merchant_key(i)))
            ));
            accounts.push(format!(
                "({}, {}, 'alipay', true, 'api', {}, {}, 'bench', now(), now(), NULL)",
                quote(&account),
                quote(&id),
                quote(&public),
                quote(&vault.seal(&secrets, &account))
            ));
        }
        harness
            .execute(&format!(
                "INSERT INTO merchants (merchant_id, name, enabled, source, created_at, disabled_at) VALUES {}",
                merchants.join(",")
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO merchant_keys (key_id, merchant_id, digest, prefix, label, created_at, last_used_at, revoked_at) VALUES {}",
                keys.join(",")
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO provider_accounts (account_id, merchant_id, provider, enabled, source, config, secrets, fingerprint, created_at, updated_at, disabled_at) VALUES {}",
                accounts.join(",")
            ))
            .await?;
    }
    Ok(())
}

/// Merchant `i` creates an order and starts an Alipay attempt at its own account.
async fn pay(service: &Service, i: u64) -> anyhow::Result<()> {
    let key = merchant_key(i);
    let order: serde_json::Value = service
        .http
        .post(format!("{}/v1/orders", service.base()))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "out_business_id": format!("bench-{i}"),
            "user_id": "u",
            "subject": "bench",
            "items": [{"sku_id": "s", "name": "n", "unit_price": 100, "quantity": 1}]
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let order_no = order["order_no"].as_str().context("an order number")?;
    service
        .http
        .post(format!("{}/v1/orders/{order_no}/payments", service.base()))
        .bearer_auth(&key)
        .json(&serde_json::json!({"provider": "alipay"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
