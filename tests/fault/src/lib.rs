//! paywarden-fault: the fault-injection suite that checks paywarden's invariants end to end.
//!
//! A run starts everything for itself: a PostgreSQL database of its own, a private
//! `redis-server`, the WeChat Pay / Alipay simulator ([`paywarden_sim::SimServer`], in this
//! process), a webhook receiver, and N real `paywarden` processes on that one database and
//! Redis, with WeChat Pay, Alipay (both at the simulator) and the sandbox enabled. Then, for a
//! fixed time, a steady mixed load ([`load`]) runs while faults are injected ([`chaos`]):
//! `kill -9` of nodes and their restart, a Redis restart that loses every key, the provider
//! failing and timing out part of its calls for a while before recovering, and buyers paying
//! just as paywarden closes. Afterwards it waits until everything is quiet and checks the
//! invariants ([`checks`]) from the database, the simulator's own trade book and what the
//! receiver and the load saw, printing every count ([`report::Report`]).
//!
//! The binary `paywarden-fault` runs it at any size; `tests/fault.rs` runs it at CI size.
//!
//! # Layout
//! - `processes`: the child processes (nodes, Redis), killed on drop.
//! - `database`: the run's database.
//! - `receiver`: the webhook receiver.
//! - `client`: the load's HTTP client of the nodes, recording every answer.
//! - `load`: the order scripts.
//! - `chaos`: the fault schedule.
//! - `bills`: the adversarial bills, reconciled once the run is quiet.
//! - `checks`: the invariants.
//! - [`report`]: the printed result.

mod bills;
mod chaos;
mod checks;
mod client;
pub mod cluster_rig;
pub mod database;
mod load;
pub mod processes;
mod receiver;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use paywarden_sim::keys::{
    write_keys, KeyMaterial, APIV3_KEY_FILE, MERCHANT_PRIVATE_KEY_FILE, PLATFORM_PUBLIC_KEY_FILE,
};
use paywarden_sim::{SimConfig, SimServer};
use reqwest::Method;
use serde_json::json;

use crate::chaos::{Chaos, Timeline};
use crate::client::{Api, Caller, Cluster};
use crate::database::RunDatabase;
use crate::load::Load;
use crate::processes::{free_port, Node, RedisServer};
pub use crate::report::Report;
use crate::report::Section;

/// The size and shape of a run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Orders created, evenly over `load_duration`.
    pub orders: u32,
    pub load_duration: Duration,
    /// paywarden processes on the same PostgreSQL and Redis.
    pub nodes: usize,
    /// The nodes run as a cluster (`cluster.enabled`: each order run by the owner of its
    /// partition); off: every node runs every pending order.
    pub cluster: bool,
    /// Seeds every order's choices.
    pub seed: u64,
    /// Order TTLs are drawn from this range (inclusive), in seconds.
    pub ttl_seconds: (u64, u64),
    /// The simulator's WeChat close rule (no close this soon after the prepay); 0: off.
    pub close_too_early_seconds: u64,
    /// Divides the providers' notification retry schedules.
    pub notify_speedup: u32,
    /// While the provider fails: share of calls that hang for `provider_timeout_ms` and then
    /// fail, and share of the others that fail at once.
    pub provider_timeout_rate: f64,
    pub provider_error_rate: f64,
    pub provider_timeout_ms: u64,
    /// How long to wait for quiescence after the load before checking anyway.
    pub quiescence_limit: Duration,
    /// Keep the database and the logs even when every check passed.
    pub keep: bool,
}

impl Scenario {
    /// The size CI runs (`tests/fault.rs`): a few minutes on a 2-core machine.
    pub fn ci() -> Self {
        Self {
            orders: 300,
            load_duration: Duration::from_secs(60),
            nodes: 3,
            cluster: true,
            seed: 20_261_201,
            ttl_seconds: (4, 16),
            // WeChat's close rule, shortened from 5 minutes to the TTLs of a short run: some
            // closes are refused as too early, and some trades can only expire.
            close_too_early_seconds: 8,
            notify_speedup: 100,
            // 15 % hang then fail, 18 % of the rest fail at once: 30 % of calls fail.
            provider_timeout_rate: 0.15,
            provider_error_rate: 0.18,
            provider_timeout_ms: 4_000,
            quiescence_limit: Duration::from_secs(120),
            keep: false,
        }
    }
}

/// How long paywarden waits for one provider call (well above a debug build's signing time
/// on a busy machine, below the simulator's injected hang).
const PROVIDER_CALL_TIMEOUT_MS: u64 = 3_000;
/// How long after the provider recovered a 502/503 still counts as caused by its failure:
/// the breaker's open time plus one provider reply.
const RECOVERY_GRACE_SECONDS: f64 = 10.0;
/// The activity counters must stand still this long for the run to count as quiet.
const QUIET_FOR: Duration = Duration::from_secs(3);

/// Runs the scenario and checks the invariants.
///
/// # Errors
/// When the harness itself fails (a process that does not start, the database). A failed
/// invariant is not an error: it is in the report.
pub async fn run(scenario: &Scenario) -> anyhow::Result<Report> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let short = run_id.get(..12).unwrap_or(&run_id).to_owned();
    let dir = std::env::temp_dir().join(format!("paywarden-fault-{short}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let setup_started = Instant::now();

    let binary = processes::paywarden_binary()?;
    let keys_dir = dir.join("keys");
    write_keys(&keys_dir).context("failed to write simulator keys")?;
    let keys = KeyMaterial::read(&keys_dir)?;
    let db = RunDatabase::create(&short).await?;
    let mut redis = RedisServer::start(&dir).await?;
    let mut sim_config = SimConfig::new(keys);
    sim_config.close_too_early_seconds = scenario.close_too_early_seconds;
    sim_config.notify_speedup = scenario.notify_speedup;
    let sim = SimServer::start(sim_config).await?;
    let webhook_secret = format!("whsec_fault_{short}");
    let receiver = receiver::Receiver::start(&webhook_secret)?;

    let key_prefix = format!("pw_fault_{short}");
    let mut nodes = Vec::new();
    for index in 0..scenario.nodes.max(1) {
        let mut env = node_env(index, &db.url, &redis.url(), &key_prefix, &sim, &keys_dir);
        if scenario.cluster {
            env.extend(cluster_env(index));
        }
        let node = Node::new(
            index,
            free_port()?,
            binary.clone(),
            env,
            dir.join(format!("node-{index}.log")),
        )?;
        nodes.push(node);
    }
    // The first node migrates the database; the others start once it is done.
    for node in &mut nodes {
        node.start().await?;
    }
    let cluster = Arc::new(Cluster::new(nodes.iter().map(Node::base_url).collect()));
    let started = Instant::now();
    let started_epoch_ms = chrono::Utc::now().timestamp_millis();
    let api = Api::new(Arc::clone(&cluster), started)?;

    // Tracked stock, and the receiver subscribed to every event.
    let stock = load::tracked_skus(scenario);
    for (sku, available) in &stock {
        let answer = api
            .call(
                "set stock",
                Method::PUT,
                &format!("/admin/merchants/merchant_a/skus/{sku}"),
                Caller::Admin,
                Some(&json!({ "available": available })),
            )
            .await
            .context("no node answered PUT /admin/merchants/merchant_a/skus")?;
        anyhow::ensure!(
            answer.status == 200,
            "PUT /admin/merchants/merchant_a/skus/{sku} answered {}",
            answer.status
        );
    }
    let subscribed = api
        .call(
            "subscribe",
            Method::POST,
            "/admin/subscribers",
            Caller::Admin,
            Some(&json!({ "url": receiver.url, "secret": webhook_secret, "signature_scheme": "paywarden-v1" })),
        )
        .await
        .context("no node answered POST /admin/subscribers")?;
    anyhow::ensure!(
        subscribed.status == 201,
        "POST /admin/subscribers answered {} {}",
        subscribed.status,
        subscribed.body
    );
    let subscriber_id = subscribed.str("id").unwrap_or_default().to_owned();
    let setup = setup_started.elapsed();

    // The load and the faults, side by side; the chaos owns the processes meanwhile.
    let load = Arc::new(Load::new(
        api.clone(),
        sim.base_url().to_owned(),
        scenario,
        format!("fault-{short}"),
    )?);
    let mut chaos = Chaos {
        nodes: &mut nodes,
        redis: &mut redis,
        sim: &sim,
        cluster: Arc::clone(&cluster),
        started,
        deadline_keys: deadline_keys(scenario, &key_prefix),
        timeline: Timeline::default(),
    };
    let (_, chaos_result) = tokio::join!(
        Arc::clone(&load).run(scenario.orders, scenario.load_duration),
        chaos.run(scenario)
    );
    let timeline = std::mem::take(&mut chaos.timeline);
    chaos_result?;
    let load_took = started.elapsed();

    let quiet = wait_for_quiescence(scenario, &db, &sim, &load, &subscriber_id).await?;
    // Then the bills, as a hostile network would serve them.
    let bills = bills::run(&api, &sim, &db).await?;
    {
        let mut facts = load.facts();
        facts.bills = bills.counts;
        facts.bill_failures = bills.failures;
    }
    let index_left = redis.zcard_sum(&deadline_keys(scenario, &key_prefix)).unwrap_or(-1);

    let trades = sim.trades();
    let refunds = sim.refunds();
    let seen = receiver.seen();
    let mut report = Report::default();
    {
        // Snapshots: no lock is held across the checks' queries.
        let facts = load.facts().clone();
        let observed = api.observed().clone();
        let inputs = checks::Inputs {
            db: &db,
            trades: &trades,
            refunds: &refunds,
            seen: &seen,
            bad_signatures: receiver.bad_signatures(),
            subscriber_id: &subscriber_id,
            facts: &facts,
            observed: &observed,
            timeline: &timeline,
            started_epoch_ms,
            stock: &stock,
            grace_seconds: RECOVERY_GRACE_SECONDS,
        };
        report.header = vec![
            format!(
                "paywarden fault suite: {} orders over {} s on {} nodes, seed {}, TTL {}-{} s",
                scenario.orders,
                scenario.load_duration.as_secs(),
                nodes_count(scenario),
                scenario.seed,
                scenario.ttl_seconds.0,
                scenario.ttl_seconds.1
            ),
            format!("database {}, logs in {}", db.name, dir.display()),
        ];
        report
            .sections
            .push(run_section(&setup, &load_took, &quiet, index_left, &timeline, &facts));
        report.sections.extend(checks::run(&inputs).await?);
    }

    // Stop the nodes before the database goes; keep everything for a look when a check failed.
    drop(nodes);
    drop(redis);
    receiver.stop().await;
    sim.stop().await;
    if report.passed() && !scenario.keep {
        db.drop_database().await?;
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error.message = %err, "failed to remove the run directory");
        }
    }
    Ok(report)
}

fn nodes_count(scenario: &Scenario) -> usize {
    scenario.nodes.max(1)
}

/// How long setup, load and quiescence took, and what happened when.
fn run_section(
    setup: &Duration,
    load: &Duration,
    quiet: &Quiescence,
    index_left: i64,
    timeline: &Timeline,
    facts: &load::Facts,
) -> Section {
    let mut section = Section::new("0. the run");
    section.count(
        "setup (keys, database, redis, simulator, nodes)",
        format!("{:.1} s", setup.as_secs_f64()),
    );
    section.count("load, faults meanwhile", format!("{:.1} s", load.as_secs_f64()));
    section.count(
        "quiescence after the load",
        format!(
            "{:.1} s{}",
            quiet.took.as_secs_f64(),
            if quiet.reached {
                ""
            } else {
                " (NOT reached: checked anyway)"
            }
        ),
    );
    if !quiet.reached {
        section.note(quiet.why.clone());
    }
    section.count("node kills (-9) and restarts", timeline.node_kills);
    section.count("redis restarts (every key lost)", timeline.redis_restarts);
    section.count("deadline index entries left in Redis at the end", index_left);
    for (at, what) in &timeline.entries {
        section.note(format!("{at:>7.1} s  {what}"));
    }
    for (name, n) in &facts.counters {
        section.count(name.clone(), n);
    }
    section
}

struct Quiescence {
    reached: bool,
    took: Duration,
    /// What was still moving when the limit passed.
    why: String,
}

/// Waits until no order is live, every event reached the receiver, the simulator has made
/// every notification delivery the load asked for, and nothing has changed for a moment.
async fn wait_for_quiescence(
    scenario: &Scenario,
    db: &RunDatabase,
    sim: &SimServer,
    load: &Load,
    subscriber_id: &str,
) -> anyhow::Result<Quiescence> {
    let started = Instant::now();
    let sub = subscriber_id.replace('\'', "''");
    let activity = "SELECT (SELECT COUNT(*) FROM order_logs) + (SELECT COUNT(*) FROM outbox) \
                    + (SELECT COUNT(*) FROM webhook_receipts) \
                    + (SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'delivered')";
    let mut last = (-1, Instant::now());
    loop {
        let live = db
            .scalar("SELECT COUNT(*) FROM orders WHERE status IN ('pending', 'stuck')")
            .await?;
        let undelivered = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM outbox e WHERE NOT EXISTS (SELECT 1 FROM outbox_deliveries d \
                 WHERE d.outbox_id = e.id AND d.subscriber_id = '{sub}' AND d.status <> 'pending')"
            ))
            .await?;
        let notifying = {
            let facts = load.facts();
            facts
                .buyer_payments
                .iter()
                .filter(|payment| payment.expected_sends > 0)
                .filter(|payment| {
                    let provider = match payment.provider {
                        "wechat" => paywarden_sim::SimProvider::Wechat,
                        _ => paywarden_sim::SimProvider::Alipay,
                    };
                    sim.trade(provider, &payment.pay_no).is_none_or(|trade| {
                        trade.notifications_acknowledged == 0 || trade.notifications_sent < payment.expected_sends
                    })
                })
                .count()
        };
        // Trades paywarden still watches on its durable follow-up (a second attempt of a paid
        // order, a QR code payable until its time_expire): settled within their time_expire.
        let followed = db
            .scalar("SELECT COUNT(*) FROM payment_attempts WHERE follow_up_at IS NOT NULL")
            .await?;
        // Refunds still waiting for the provider's final answer.
        let refunding = db
            .scalar("SELECT COUNT(*) FROM refunds WHERE status = 'pending'")
            .await?;
        let now = db.scalar(activity).await?;
        if now != last.0 {
            last = (now, Instant::now());
        }
        let still = live == 0 && undelivered == 0 && notifying == 0 && followed == 0 && refunding == 0;
        if still && last.1.elapsed() >= QUIET_FOR {
            return Ok(Quiescence {
                reached: true,
                took: started.elapsed(),
                why: String::new(),
            });
        }
        if started.elapsed() > scenario.quiescence_limit {
            return Ok(Quiescence {
                reached: false,
                took: started.elapsed(),
                why: format!(
                    "still moving: {live} live orders, {undelivered} undelivered events, \
                     {notifying} payments whose notifications are not done, {followed} trades on the follow-up, \
                     {refunding} refunds pending"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Partitions of a cluster run (the service's default).
pub const CLUSTER_PARTITIONS: u32 = 256;

/// What makes node `index` one of a cluster: its stable name (defaults elsewhere: 256
/// partitions, 5 s lease TTL, 1 s tick).
pub fn cluster_env(index: usize) -> Vec<(String, String)> {
    vec![
        ("PAYWARDEN__CLUSTER__ENABLED".to_owned(), "true".to_owned()),
        ("PAYWARDEN__CLUSTER__NODE_NAME".to_owned(), format!("node-{index}")),
    ]
}

/// The deadline index's Redis keys: one set, or one per partition in a cluster.
fn deadline_keys(scenario: &Scenario, key_prefix: &str) -> Vec<String> {
    if scenario.cluster {
        (0..CLUSTER_PARTITIONS)
            .map(|p| format!("{key_prefix}:{{p{p}}}:deadlines"))
            .collect()
    } else {
        vec![format!("{key_prefix}:deadlines")]
    }
}

/// One node's environment: the test profile, the shared database and Redis, its own worker
/// id, and WeChat Pay and Alipay pointed at the simulator with the run's keys.
pub fn node_env(
    index: usize,
    database_url: &str,
    redis_url: &str,
    key_prefix: &str,
    sim: &SimServer,
    keys: &Path,
) -> Vec<(String, String)> {
    let key = |name: &str| keys.join(name).display().to_string();
    let config_dir: PathBuf = processes::workspace_root().join("config");
    let sim_config = sim.config();
    let mut env = vec![
        ("PAYWARDEN_CONFIG_DIR", config_dir.display().to_string()),
        ("PAYWARDEN__ENV", "test".to_owned()),
        ("PAYWARDEN__DATABASE__URL", database_url.to_owned()),
        ("PAYWARDEN__REDIS__URL", redis_url.to_owned()),
        ("PAYWARDEN__REDIS__KEY_PREFIX", key_prefix.to_owned()),
        // Distinct per node: order and pay numbers come from a snowflake of this id.
        ("PAYWARDEN__IDS__WORKER_ID", (100 + index).to_string()),
        (
            "PAYWARDEN__TELEMETRY__LOG_FILTER",
            "info,sqlx=warn,sea_orm=warn".to_owned(),
        ),
        (
            "PAYWARDEN__EXPIRY__PROVIDER_REPLY_TIMEOUT_MILLISECONDS",
            "6000".to_owned(),
        ),
        (
            "PAYWARDEN__EXPIRY__ACTOR_REPLY_TIMEOUT_MILLISECONDS",
            "20000".to_owned(),
        ),
        // Money no order keeps is refunded by itself: the refunds face the same faults.
        ("PAYWARDEN__ANOMALIES__AUTO_REFUND", "true".to_owned()),
        // A closed automatic refund is made again every second or two; 30 tries outlast the
        // (at most 20 s) while the simulator closes every refund.
        (
            "PAYWARDEN__REFUNDS__AUTO_REFUND_RETRY_MIN_DELAY_MILLISECONDS",
            "1000".to_owned(),
        ),
        ("PAYWARDEN__REFUNDS__AUTO_REFUND_MAX_TRIES", "30".to_owned()),
        ("PAYWARDEN__PROVIDERS__WECHAT__ENABLED", "true".to_owned()),
        ("PAYWARDEN__PROVIDERS__WECHAT__MCHID", sim_config.wechat_mchid.clone()),
        ("PAYWARDEN__PROVIDERS__WECHAT__APPID", sim_config.wechat_appid.clone()),
        (
            "PAYWARDEN__PROVIDERS__WECHAT__MERCHANT_SERIAL_NO",
            sim_config.wechat_merchant_serial_no.clone(),
        ),
        (
            "PAYWARDEN__PROVIDERS__WECHAT__MERCHANT_PRIVATE_KEY_PATH",
            key(MERCHANT_PRIVATE_KEY_FILE),
        ),
        (
            "PAYWARDEN__PROVIDERS__WECHAT__PLATFORM_PUBLIC_KEY_PATH",
            key(PLATFORM_PUBLIC_KEY_FILE),
        ),
        (
            "PAYWARDEN__PROVIDERS__WECHAT__PLATFORM_SERIAL",
            sim.wechat_platform_serial().to_owned(),
        ),
        ("PAYWARDEN__PROVIDERS__WECHAT__APIV3_KEY_PATH", key(APIV3_KEY_FILE)),
        ("PAYWARDEN__PROVIDERS__WECHAT__API_BASE_URL", sim.base_url().to_owned()),
        ("PAYWARDEN__PROVIDERS__ALIPAY__ENABLED", "true".to_owned()),
        ("PAYWARDEN__PROVIDERS__ALIPAY__APP_ID", sim_config.alipay_app_id.clone()),
        (
            "PAYWARDEN__PROVIDERS__ALIPAY__APP_PRIVATE_KEY_PATH",
            key(MERCHANT_PRIVATE_KEY_FILE),
        ),
        (
            "PAYWARDEN__PROVIDERS__ALIPAY__ALIPAY_PUBLIC_KEY_PATH",
            key(PLATFORM_PUBLIC_KEY_FILE),
        ),
        ("PAYWARDEN__PROVIDERS__ALIPAY__GATEWAY_URL", sim.alipay_gateway_url()),
        (
            "PAYWARDEN__PROVIDERS__ALIPAY__SELLER_ID",
            sim_config.alipay_seller_id.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect::<Vec<_>>();
    for provider in ["WECHAT", "ALIPAY"] {
        for (setting, value) in [
            ("TIMEOUT_MILLISECONDS", PROVIDER_CALL_TIMEOUT_MS.to_string()),
            // No quick retries inside one request: a provider failure reaches the expiry
            // rule (its backoff, the retry budget, `stuck`) and the client (502/503) as it is.
            ("RETRIES", "0".to_owned()),
            ("RATE_PER_SECOND", "200".to_owned()),
            ("BREAKER_OPEN_SECONDS", "3".to_owned()),
        ] {
            env.push((format!("PAYWARDEN__PROVIDERS__{provider}__CALLS__{setting}"), value));
        }
    }
    env
}
