//! The cluster tests' rig (`tests/cluster.rs`): paywarden nodes running as one cluster
//! (`cluster.enabled`), each with its stable name (`node-0`, `node-1`...), on a database of
//! their own, one Redis (a single server or a three-master Redis Cluster) and the provider
//! simulator, plus the requests and reads those tests make: orders created at a chosen node,
//! WeChat Pay attempts started at another, placements and the cluster view of each node, the
//! nodes' metrics, and the orders' final transitions as the database holds them.
//!
//! A rig keeps its run directory (node and Redis logs) and its database unless the test ends
//! with [`Rig::finish`], so a failed test leaves everything behind for a look; its child
//! processes are killed when it is dropped, however the test ends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use paywarden_sim::keys::{write_keys, KeyMaterial};
use paywarden_sim::{SimConfig, SimServer};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{ADMIN_TOKEN, MERCHANT_KEY};
use crate::database::RunDatabase;
use crate::node_env;
use crate::processes::{free_port, paywarden_binary, Node, RedisCluster, RedisServer};

/// Partitions of the rig's clusters (the default of `cluster.partitions`).
pub const PARTITIONS: u32 = 256;
/// The final transitions of an order: the `order_logs` events of pending|stuck -> paid|closed.
const FINAL_EVENTS: &str = "('order.paid', 'order.closed')";
/// One request's limit (a forwarded request waits for the owner's actor).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);
/// A node refreshes its table of partition holders at every tick (`cluster.tick_milliseconds`,
/// 1 s by default): after this, every node has read the current holders.
const OWNERS_REFRESHED_AFTER: Duration = Duration::from_millis(1_300);

/// The Redis the nodes share.
pub enum RigRedis {
    /// One `redis-server` (`redis.mode = "single"`).
    Single(RedisServer),
    /// A three-master Redis Cluster (`redis.mode = "cluster"`).
    Cluster(RedisCluster),
}

impl RigRedis {
    fn url(&self) -> String {
        match self {
            RigRedis::Single(redis) => redis.url(),
            RigRedis::Cluster(cluster) => cluster.url(),
        }
    }

    fn mode(&self) -> &'static str {
        match self {
            RigRedis::Single(_) => "single",
            RigRedis::Cluster(_) => "cluster",
        }
    }
}

/// Which Redis a rig starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisKind {
    Single,
    Cluster,
}

/// A rig's shape.
#[derive(Clone, Debug)]
pub struct RigOptions {
    /// Cluster nodes started (named `node-0`...).
    pub nodes: usize,
    pub redis: RedisKind,
    /// Short name of the test, in the run directory's and the database's names.
    pub name: &'static str,
}

/// An order as created.
#[derive(Clone, Debug)]
pub struct CreatedOrder {
    pub order_no: String,
    /// The node that created it.
    pub created_at_node: usize,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /admin/cluster`.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterView {
    pub enabled: bool,
    /// The node that answered.
    pub node: Option<String>,
    pub partitions: u32,
    pub lease_ttl_ms: u64,
    pub nodes: Vec<ClusterNodeView>,
    /// Partitions nobody holds.
    pub unowned: Vec<u32>,
}

impl ClusterView {
    /// The node holding each partition (by partition number).
    pub fn holders(&self) -> BTreeMap<u32, String> {
        self.nodes
            .iter()
            .flat_map(|node| node.partitions.iter().map(|p| (*p, node.name.clone())))
            .collect()
    }

    /// The partitions `name` holds (none when it is not listed).
    pub fn partitions_of(&self, name: &str) -> Vec<u32> {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .map(|node| node.partitions.clone())
            .unwrap_or_default()
    }
}

/// One node of [`ClusterView`].
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterNodeView {
    pub name: String,
    pub address: String,
    pub alive: bool,
    pub alive_until_ms: i64,
    pub live_actors: u64,
    pub partitions_owned: usize,
    pub partitions: Vec<u32>,
    pub lease_expires_at_ms: Option<i64>,
}

/// `GET /admin/cluster/orders/{order_no}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Placement {
    pub partition: u32,
    pub owner: Option<String>,
    pub owned_here: bool,
    pub armed_here: bool,
    /// The node that answered.
    pub node: String,
}

/// An order's end as the database holds it.
#[derive(Clone, Debug)]
pub struct OrderEnd {
    pub order_no: String,
    pub status: String,
    /// `order_logs` rows of a final transition (`order.paid`, `order.closed`).
    pub final_transitions: i64,
    /// Every `order_logs` row, in order: `event from->to by operator`.
    pub history: String,
}

/// The running cluster and everything around it.
pub struct Rig {
    /// Logs of the nodes and of Redis; kept unless [`Rig::finish`] runs.
    pub dir: PathBuf,
    pub db: RunDatabase,
    pub sim: SimServer,
    pub redis: RigRedis,
    pub nodes: Vec<Node>,
    pub key_prefix: String,
    http: reqwest::Client,
    tag: String,
    created: AtomicU32,
}

/// The name a rig gives node `index`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The `Idempotency-Key` of [`Rig::start_wechat`] for `order_no`.
pub fn wechat_attempt_key(order_no: &str) -> String {
    format!("wechat-{order_no}")
}

impl Rig {
    /// Starts the database, Redis, the simulator (no WeChat close-too-early rule) and the
    /// nodes, then waits until the partitions are balanced over every node.
    ///
    /// # Errors
    /// Anything that does not start, or a cluster that does not settle within a minute.
    pub async fn start(options: &RigOptions) -> anyhow::Result<Self> {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let short = run_id.get(..10).unwrap_or(&run_id).to_owned();
        let dir = std::env::temp_dir().join(format!("paywarden-cluster-{}-{short}", options.name));
        std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        println!("cluster rig {}: logs in {}", options.name, dir.display());

        let binary = paywarden_binary()?;
        let keys_dir = dir.join("keys");
        write_keys(&keys_dir).context("failed to write simulator keys")?;
        let keys = KeyMaterial::read(&keys_dir)?;
        let db = RunDatabase::create(&format!("cl_{short}")).await?;
        let redis = match options.redis {
            RedisKind::Single => RigRedis::Single(RedisServer::start(&dir).await?),
            RedisKind::Cluster => RigRedis::Cluster(RedisCluster::start(&dir).await?),
        };
        let mut sim_config = SimConfig::new(keys);
        // Every close is accepted: one query and one close per unpaid trade.
        sim_config.close_too_early_seconds = 0;
        sim_config.notify_speedup = 100;
        let sim = SimServer::start(sim_config).await?;

        let key_prefix = format!("pw_cluster_{short}");
        let mut nodes = Vec::new();
        for index in 0..options.nodes.max(1) {
            let mut env = node_env(index, &db.url, &redis.url(), &key_prefix, &sim, &keys_dir);
            env.extend(
                [
                    ("PAYWARDEN__REDIS__MODE", redis.mode().to_owned()),
                    ("PAYWARDEN__CLUSTER__ENABLED", "true".to_owned()),
                    ("PAYWARDEN__CLUSTER__NODE_NAME", node_name(index)),
                    ("PAYWARDEN__CLUSTER__PARTITIONS", PARTITIONS.to_string()),
                ]
                .map(|(key, value)| (key.to_owned(), value)),
            );
            nodes.push(Node::new(
                index,
                free_port()?,
                binary.clone(),
                env,
                dir.join(format!("{}.log", node_name(index))),
            )?);
        }
        // The first node migrates the database; the others then start side by side.
        let started = Instant::now();
        if let Some((first, rest)) = nodes.split_first_mut() {
            first.start().await?;
            futures::future::try_join_all(rest.iter_mut().map(Node::start)).await?;
        }
        println!(
            "cluster rig {}: {} nodes up after {:.1} s",
            options.name,
            nodes.len(),
            started.elapsed().as_secs_f64()
        );
        let rig = Self {
            dir,
            db,
            sim,
            redis,
            nodes,
            key_prefix,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("failed to build an HTTP client")?,
            tag: format!("cluster-{short}"),
            created: AtomicU32::new(0),
        };
        let all: Vec<usize> = (0..rig.nodes.len()).collect();
        let view = rig.wait_balanced(&all, Duration::from_secs(60)).await?;
        println!(
            "cluster rig {}: balanced after {:.1} s: {}",
            options.name,
            started.elapsed().as_secs_f64(),
            view.nodes
                .iter()
                .map(|n| format!("{} {}", n.name, n.partitions_owned))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(rig)
    }

    /// Stops everything and removes the database and the run directory (a passed test).
    ///
    /// # Errors
    /// The database could not be dropped.
    pub async fn finish(self) -> anyhow::Result<()> {
        let Self {
            dir,
            db,
            sim,
            nodes,
            redis,
            ..
        } = self;
        drop(nodes);
        drop(redis);
        sim.stop().await;
        db.drop_database().await?;
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error.message = %err, "failed to remove the run directory");
        }
        Ok(())
    }

    fn node(&self, index: usize) -> anyhow::Result<&Node> {
        self.nodes.get(index).with_context(|| format!("no node {index}"))
    }

    /// Base URL of node `index`.
    ///
    /// # Errors
    /// No such node.
    pub fn base(&self, index: usize) -> anyhow::Result<String> {
        Ok(self.node(index)?.base_url())
    }

    /// `method path` at node `index` with `token`; the status and the JSON body (`null` when
    /// it is not JSON).
    ///
    /// # Errors
    /// No answer.
    pub async fn request(
        &self,
        index: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.request_keyed(index, method, path, token, body, None).await
    }

    /// Like [`Rig::request`], with an `Idempotency-Key` when `key` is given.
    ///
    /// # Errors
    /// No answer.
    pub async fn request_keyed(
        &self,
        index: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base(index)?);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: no answer"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: answer cut off"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Creates an order at node `index`, due in `ttl_seconds`.
    ///
    /// # Errors
    /// No answer, or not `201`.
    pub async fn create_order(&self, index: usize, ttl_seconds: u64) -> anyhow::Result<CreatedOrder> {
        let n = self.created.fetch_add(1, Ordering::SeqCst);
        let body = json!({
            "out_business_id": format!("{}-{n}", self.tag),
            "user_id": format!("buyer-{n}"),
            "subject": format!("cluster test order {n}"),
            "ttl_seconds": ttl_seconds,
            "items": [{ "sku_id": "free-video", "name": "a video", "unit_price": 1_990, "quantity": 1 }],
        });
        let (status, answer) = self
            .request(index, Method::POST, "/v1/orders", MERCHANT_KEY, Some(&body))
            .await?;
        if status != 201 {
            bail!("POST /v1/orders at node {index} answered {status} {answer}");
        }
        let order_no = answer["order_no"]
            .as_str()
            .with_context(|| format!("no order_no in {answer}"))?
            .to_owned();
        let expires_at = answer["expires_at"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .with_context(|| format!("no expires_at in {answer}"))?
            .with_timezone(&chrono::Utc);
        Ok(CreatedOrder {
            order_no,
            created_at_node: index,
            expires_at,
        })
    }

    /// Starts a WeChat Pay attempt of `order_no` at node `index`, with the `Idempotency-Key`
    /// [`wechat_attempt_key`]; its `pay_no`.
    ///
    /// # Errors
    /// No answer, or not `201`.
    pub async fn start_wechat(&self, index: usize, order_no: &str) -> anyhow::Result<String> {
        let (status, answer) = self.post_wechat_attempt(index, order_no).await?;
        if status != 201 {
            bail!("POST /v1/orders/{order_no}/payments at node {index} answered {status} {answer}");
        }
        Ok(answer["pay_no"]
            .as_str()
            .with_context(|| format!("no pay_no in {answer}"))?
            .to_owned())
    }

    /// `POST /v1/orders/{order_no}/payments {"provider":"wechat"}` at node `index` with the
    /// `Idempotency-Key` [`wechat_attempt_key`]: a new attempt the first time, the first
    /// answer replayed after that; the status and the answer.
    ///
    /// # Errors
    /// No answer.
    pub async fn post_wechat_attempt(&self, index: usize, order_no: &str) -> anyhow::Result<(u16, Value)> {
        self.request_keyed(
            index,
            Method::POST,
            &format!("/v1/orders/{order_no}/payments"),
            MERCHANT_KEY,
            Some(&json!({ "provider": "wechat" })),
            Some(&wechat_attempt_key(order_no)),
        )
        .await
    }

    /// Cancels `order_no` through node `index` (the merchant's cancel); the answer.
    ///
    /// # Errors
    /// No answer.
    pub async fn cancel(&self, index: usize, order_no: &str) -> anyhow::Result<(u16, Value)> {
        self.request(
            index,
            Method::POST,
            &format!("/v1/orders/{order_no}/cancel"),
            MERCHANT_KEY,
            None,
        )
        .await
    }

    /// `GET /v1/orders/{order_no}/status?refresh=true` at node `index` (the order's actor asks
    /// the provider first, so it runs at the owner).
    ///
    /// # Errors
    /// No answer.
    pub async fn refresh(&self, index: usize, order_no: &str) -> anyhow::Result<(u16, Value)> {
        self.request(
            index,
            Method::GET,
            &format!("/v1/orders/{order_no}/status?refresh=true"),
            MERCHANT_KEY,
            None,
        )
        .await
    }

    /// `GET /admin/cluster/orders/{order_no}` at node `index`.
    ///
    /// # Errors
    /// No answer, not `200`, or an unexpected body.
    pub async fn placement(&self, index: usize, order_no: &str) -> anyhow::Result<Placement> {
        let path = format!("/admin/cluster/orders/{order_no}");
        let (status, answer) = self.request(index, Method::GET, &path, ADMIN_TOKEN, None).await?;
        if status != 200 {
            bail!("GET {path} at node {index} answered {status} {answer}");
        }
        serde_json::from_value(answer.clone()).with_context(|| format!("unexpected placement {answer}"))
    }

    /// The placement of `order_no` as every running node sees it.
    ///
    /// # Errors
    /// As [`Rig::placement`].
    pub async fn placements(&self, order_no: &str) -> anyhow::Result<Vec<Placement>> {
        let running: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.pid().is_some())
            .map(|(index, _)| index)
            .collect();
        futures::future::try_join_all(running.into_iter().map(|index| self.placement(index, order_no))).await
    }

    /// Waits (up to `limit`) until exactly one running node runs `order_no`'s actor and it is
    /// the owner every node names; the placements then. An actor is armed on its owner when
    /// the owner hears of the creation on the change bus, a few milliseconds after it.
    ///
    /// # Errors
    /// Not so within `limit` (the last placements are in the message), or a request failed.
    pub async fn wait_armed_once(&self, order_no: &str, limit: Duration) -> anyhow::Result<Vec<Placement>> {
        let started = Instant::now();
        loop {
            let placements = self.placements(order_no).await?;
            let armed: Vec<&Placement> = placements.iter().filter(|p| p.armed_here).collect();
            let owners: Vec<Option<&str>> = placements.iter().map(|p| p.owner.as_deref()).collect();
            let agreed = owners.first().copied().flatten();
            let ok = armed.len() == 1
                && agreed.is_some()
                && owners.iter().all(|owner| *owner == agreed)
                && armed
                    .first()
                    .is_some_and(|p| Some(p.node.as_str()) == agreed && p.owned_here);
            if ok {
                return Ok(placements);
            }
            if started.elapsed() > limit {
                bail!("order {order_no} is not armed exactly once, on the owner all nodes name: {placements:#?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET /admin/cluster` at node `index`.
    ///
    /// # Errors
    /// No answer, not `200`, or an unexpected body.
    pub async fn cluster_view(&self, index: usize) -> anyhow::Result<ClusterView> {
        let (status, answer) = self
            .request(index, Method::GET, "/admin/cluster", ADMIN_TOKEN, None)
            .await?;
        if status != 200 {
            bail!("GET /admin/cluster at node {index} answered {status} {answer}");
        }
        serde_json::from_value(answer.clone()).with_context(|| format!("unexpected cluster view {answer}"))
    }

    /// Waits until every partition is held, and held by the node rendezvous hashing gives it
    /// among the nodes `alive` (by index): the balance the nodes converge on; and then until
    /// it has stayed so for a tick, so that every node's own table of who holds what (read
    /// from Redis at each tick, what forwarding goes by) shows it too. The view then, as the
    /// first of `alive` answers it.
    ///
    /// # Errors
    /// Not balanced within `limit` (the last view is in the message).
    pub async fn wait_balanced(&self, alive: &[usize], limit: Duration) -> anyhow::Result<ClusterView> {
        let names: Vec<String> = alive.iter().map(|i| node_name(*i)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let asked = *alive.first().context("no node to ask")?;
        let started = Instant::now();
        // Since when the view has been balanced without a break.
        let mut balanced_since: Option<Instant> = None;
        loop {
            let view = self.cluster_view(asked).await;
            if let Ok(view) = &view {
                let holders = view.holders();
                let balanced = view.unowned.is_empty()
                    && (0..view.partitions)
                        .all(|p| holders.get(&p).map(String::as_str) == actors::cluster::preferred(&refs, p))
                    && refs.iter().all(|name| !view.partitions_of(name).is_empty());
                if balanced && view.partitions == PARTITIONS {
                    match balanced_since {
                        Some(since) if since.elapsed() >= OWNERS_REFRESHED_AFTER => return Ok(view.clone()),
                        Some(_) => {}
                        None => balanced_since = Some(Instant::now()),
                    }
                } else {
                    balanced_since = None;
                }
            } else {
                balanced_since = None;
            }
            if started.elapsed() > limit {
                let shown = match view {
                    Ok(view) => format!(
                        "unowned {:?}; {}",
                        view.unowned,
                        view.nodes
                            .iter()
                            .map(|n| format!("{} (alive {}) holds {}", n.name, n.alive, n.partitions_owned))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Err(err) => format!("{err:#}"),
                };
                bail!("the partitions were not balanced over {names:?} within {limit:?}: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sum of the samples of metric `name` at node `index` whose labels contain `labels`
    /// (empty: every sample).
    ///
    /// # Errors
    /// No answer from `/metrics`.
    pub async fn metric(&self, index: usize, name: &str, labels: &str) -> anyhow::Result<f64> {
        let url = format!("{}/metrics", self.base(index)?);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}: no answer"))?
            .text()
            .await
            .with_context(|| format!("GET {url}: answer cut off"))?;
        Ok(metric_sum(&text, name, labels))
    }

    /// Waits until every order of `order_nos` is final (paid, closed...) in the database.
    ///
    /// # Errors
    /// Some still live after `limit` (named in the message, with their histories).
    pub async fn wait_final(&self, order_nos: &[String], limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let ends = self.order_ends(order_nos).await?;
            let live: Vec<&OrderEnd> = ends
                .iter()
                .filter(|end| matches!(end.status.as_str(), "pending" | "stuck"))
                .collect();
            if live.is_empty() && ends.len() == order_nos.len() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!(
                    "{} of {} orders still live after {limit:?}: {live:#?}",
                    live.len(),
                    order_nos.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each order's status, final transitions and history, from the database.
    ///
    /// # Errors
    /// A failed query.
    pub async fn order_ends(&self, order_nos: &[String]) -> anyhow::Result<Vec<OrderEnd>> {
        if order_nos.is_empty() {
            return Ok(Vec::new());
        }
        let list = order_nos
            .iter()
            .map(|no| format!("'{}'", no.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .db
            .rows(&format!(
                "SELECT o.order_no, o.status, \
                 (SELECT COUNT(*) FROM order_logs l WHERE l.order_id = o.id AND l.event IN {FINAL_EVENTS}), \
                 COALESCE((SELECT string_agg(l.event || ' ' || COALESCE(l.from_status, '-') || '->' || l.to_status \
                   || ' by ' || l.operator, '; ' ORDER BY l.id) FROM order_logs l WHERE l.order_id = o.id), '') \
                 FROM orders o WHERE o.order_no IN ({list}) ORDER BY o.order_no"
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OrderEnd {
                    order_no: row.try_get_by_index(0).context("order_no")?,
                    status: row.try_get_by_index(1).context("status")?,
                    final_transitions: row.try_get_by_index(2).context("final transitions")?,
                    history: row.try_get_by_index(3).context("history")?,
                })
            })
            .collect()
    }

    /// Opens the merchant's status stream of `order_no` (Server-Sent Events) at node `index`.
    ///
    /// # Errors
    /// No answer, or not `200`.
    pub async fn open_status_stream(&self, index: usize, order_no: &str) -> anyhow::Result<StatusStream> {
        let url = format!("{}/v1/orders/{order_no}/events", self.base(index)?);
        // No overall timeout: the stream stays open until the order is final.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("failed to build an HTTP client")?;
        let response = client
            .get(&url)
            .bearer_auth(MERCHANT_KEY)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("GET {url}: no answer"))?;
        if response.status().as_u16() != 200 {
            bail!("GET {url} answered {}", response.status());
        }
        Ok(StatusStream {
            response,
            buffer: String::new(),
        })
    }

    /// The simulator's WeChat Pay trades of `pay_nos`, by pay_no (query and close counts).
    pub fn wechat_trades(&self, pay_nos: &[String]) -> HashMap<String, paywarden_sim::SimTrade> {
        pay_nos
            .iter()
            .filter_map(|no| {
                self.sim
                    .trade(paywarden_sim::SimProvider::Wechat, no)
                    .map(|trade| (no.clone(), trade))
            })
            .collect()
    }
}

/// An open status stream (`GET /v1/orders/{order_no}/events`).
pub struct StatusStream {
    response: reqwest::Response,
    /// Received text not yet split into frames.
    buffer: String,
}

impl StatusStream {
    /// The status of the next `event: status` frame, waiting at most `limit` for it.
    ///
    /// # Errors
    /// No frame within `limit`, the stream ended, or a frame that is not a status.
    pub async fn next_status(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if !frame.lines().any(|line| line.trim() == "event: status") {
                    // A keep-alive comment.
                    continue;
                }
                let data = frame
                    .lines()
                    .find_map(|line| line.strip_prefix("data:"))
                    .with_context(|| format!("a status frame without data: {frame:?}"))?;
                let status: Value = serde_json::from_str(data.trim())
                    .with_context(|| format!("a status frame that is not JSON: {frame:?}"))?;
                return status["status"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("a status frame without a status: {frame:?}"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .with_context(|| format!("no status frame within {limit:?}"))?
                .context("the status stream failed")?
                .context("the status stream ended")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// The sum of the samples of `name` in a Prometheus text exposition whose labels contain
/// `labels` (`outcome="forwarded"`; empty: any).
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_part, value) = match rest.strip_prefix('{') {
                Some(labelled) => {
                    let (inside, value) = labelled.split_once('}')?;
                    (inside, value)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            if !label_part.contains(labels) {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_samples_are_summed_by_label() {
        let text = "# HELP paywarden_cluster_forwarded_total x\n\
                    paywarden_cluster_forwarded_total{outcome=\"forwarded\"} 7\n\
                    paywarden_cluster_forwarded_total{outcome=\"failed\"} 2\n\
                    paywarden_cluster_forwarded_total_other 9\n\
                    paywarden_cluster_takeovers_total 3\n";
        assert!((metric_sum(text, "paywarden_cluster_forwarded_total", "outcome=\"forwarded\"") - 7.0).abs() < 1e-9);
        assert!((metric_sum(text, "paywarden_cluster_forwarded_total", "") - 9.0).abs() < 1e-9);
        assert!((metric_sum(text, "paywarden_cluster_takeovers_total", "") - 3.0).abs() < 1e-9);
    }
}
