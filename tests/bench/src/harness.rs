//! What every scenario stands on: a fresh PostgreSQL database and a private `redis-server` per
//! run, paywarden started as its own release process (the binary next to this one), and
//! readings of that process from outside (`/proc`, `/metrics`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use migration::{Migrator, MigratorTrait};
use paywarden_fault::database::RunDatabase;
use paywarden_fault::processes::{free_port, paywarden_binary, workspace_root, Node, RedisServer};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Settings given on the command line (`--set`), over every service's environment.
pub static SERVICE_SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// The development profile's merchant key (`config/development.toml`).
pub const MERCHANT_KEY: &str = "pk_dev_demo";

/// One run's database, Redis and working directory.
pub struct Harness {
    pub dir: PathBuf,
    pub db: RunDatabase,
    /// A connection of the harness's own, for setup and readings.
    pub conn: DatabaseConnection,
    pub redis: RedisServer,
    pub key_prefix: String,
    binary: PathBuf,
    nodes: usize,
}

impl Harness {
    /// A fresh, migrated database and an empty Redis.
    pub async fn new(name: &str) -> anyhow::Result<Self> {
        let harness = Self::unmigrated(name).await?;
        Migrator::up(&harness.conn, None)
            .await
            .context("migrate the run database")?;
        Ok(harness)
    }

    /// A fresh, empty database (the service migrates it at start: a binary of another
    /// version gets the schema it knows) and an empty Redis.
    pub async fn unmigrated(name: &str) -> anyhow::Result<Self> {
        let short = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = std::env::temp_dir().join(format!("paywarden-bench-{name}-{short}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let db = RunDatabase::create(&format!("bench_{short}")).await?;
        let conn = Database::connect(&db.url)
            .await
            .context("connect to the run database")?;
        let redis = RedisServer::start(&dir).await?;
        Ok(Self {
            dir,
            db,
            conn,
            redis,
            key_prefix: format!("pw_bench_{short}"),
            binary: paywarden_binary()?,
            nodes: 0,
        })
    }

    /// The environment of a paywarden process on this run's database and Redis: the
    /// development profile (sandbox on), logs at `warn`.
    pub fn service_env(&self) -> Vec<(String, String)> {
        [
            (
                "PAYWARDEN_CONFIG_DIR",
                workspace_root().join("config").display().to_string(),
            ),
            ("PAYWARDEN__ENV", "development".to_owned()),
            ("PAYWARDEN__DATABASE__URL", self.db.url.clone()),
            ("PAYWARDEN__REDIS__URL", self.redis.url()),
            ("PAYWARDEN__REDIS__KEY_PREFIX", self.key_prefix.clone()),
            ("PAYWARDEN__TELEMETRY__LOG_FILTER", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A paywarden process (not started) with `env` over [`Harness::service_env`].
    pub fn node(&mut self, env: Vec<(String, String)>) -> anyhow::Result<Service> {
        let index = self.nodes;
        self.nodes += 1;
        let mut all = self.service_env();
        all.extend(env);
        all.extend(SERVICE_SETTINGS.get().cloned().unwrap_or_default());
        let node = Node::new(
            index,
            free_port()?,
            self.binary.clone(),
            all,
            self.dir.join(format!("paywarden-{index}.log")),
        )?;
        Ok(Service {
            node,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        })
    }

    pub fn deadlines_key(&self) -> String {
        format!("{}:deadlines", self.key_prefix)
    }

    pub async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.scalar(sql).await
    }

    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.conn
            .execute(Statement::from_string(self.conn.get_database_backend(), sql.to_owned()))
            .await
            .with_context(|| format!("failed: {}", sql.chars().take(120).collect::<String>()))?;
        Ok(())
    }

    /// Drops the database and leaves the directory (the service logs) only when asked.
    pub async fn finish(self, keep_logs: bool) -> anyhow::Result<()> {
        let Self {
            dir, db, conn, redis, ..
        } = self;
        conn.close().await.ok();
        drop(redis);
        db.drop_database().await?;
        if !keep_logs {
            std::fs::remove_dir_all(&dir).ok();
        }
        Ok(())
    }
}

/// A paywarden process of a run.
pub struct Service {
    pub node: Node,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start(&mut self) -> anyhow::Result<Duration> {
        self.node.start().await
    }

    pub fn base(&self) -> String {
        self.node.base_url()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.node.pid().context("the service is not running")
    }

    /// Resident memory of the process, bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS not found")?;
        Ok(kb * 1024)
    }

    /// CPU time the process used so far (user + system).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("bad /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        let ticks: u64 = fields
            .get(11..13)
            .context("short /proc stat")?
            .iter()
            .map(|v| v.parse::<u64>().unwrap_or(0))
            .sum();
        // USER_HZ is 100 on Linux.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// One gauge or counter of `/metrics` (summed over its label sets).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base()))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                let metric = key.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum())
    }

    /// Waits until `/metrics` shows `at_least` of `name`, printing progress; returns when.
    pub async fn wait_for_metric(&self, name: &str, at_least: f64, limit: Duration) -> anyhow::Result<Instant> {
        let started = Instant::now();
        let mut last_print = Instant::now();
        loop {
            let value = self.metric(name).await.unwrap_or(0.0);
            if value >= at_least {
                return Ok(Instant::now());
            }
            if started.elapsed() > limit {
                bail!("{name} reached only {value} of {at_least} within {limit:?}");
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!("  {name}: {value} / {at_least}");
                last_print = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Orders stored directly (not through the service): `n` pending orders whose deadlines are
/// `first_deadline_ms` plus `i * spread_ms / n`, each with one item, in the database and in the
/// Redis deadline index, as a service would have left them.
pub async fn store_pending_orders(
    harness: &Harness,
    n: u64,
    first_deadline_ms: i64,
    spread_ms: i64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let chunk = 200_000u64;
    let mut from = 1u64;
    while from <= n {
        let to = (from + chunk - 1).min(n);
        harness
            .execute(&format!(
                "INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, subject, \
                 total_amount, currency, status, expires_at, created_at, version, refunded_amount) \
                 SELECT 1000000000000 + g, (1000000000000 + g)::text, 'demo', 'bench-' || g, 'x', 'u', 'bench order', \
                 2999, 'CNY', 'pending', to_timestamp(({first_deadline_ms} + g * {spread_ms} / {n}) / 1000.0), now(), 0, 0 \
                 FROM generate_series(CAST({from} AS BIGINT), CAST({to} AS BIGINT)) g"
            ))
            .await?;
        harness
            .execute(&format!(
                "INSERT INTO order_items (order_id, sku_id, name, unit_price, quantity, amount, reserved_quantity) \
                 SELECT 1000000000000 + g, 'sku-1', 'bench item', 2999, 1, 2999, 0 FROM generate_series(CAST({from} AS BIGINT), CAST({to} AS BIGINT)) g"
            ))
            .await?;
        from = to + 1;
    }
    let client = redis::Client::open(harness.redis.url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let key = harness.deadlines_key();
    let mut from = 1u64;
    while from <= n {
        let to = (from + 10_000 - 1).min(n);
        let items: Vec<(i64, i64)> = (from..=to)
            .map(|g| {
                let g = i64::try_from(g).unwrap_or(i64::MAX);
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                (first_deadline_ms + g * spread_ms / n, 1_000_000_000_000 + g)
            })
            .collect();
        let _: () = redis::cmd("ZADD").arg(&key).arg(&items).query_async(&mut redis).await?;
        from = to + 1;
    }
    eprintln!(
        "  stored {n} pending orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
