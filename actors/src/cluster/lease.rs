//! The partition leases and the node heartbeats in Redis.
//!
//! - `<prefix>:{p17}:lease` holds `name|incarnation` of the owner, with a TTL: taken with
//!   `SET NX PX`, renewed and released only by the node whose value it holds (a script compares
//!   the value first), so a node never extends or deletes a lease another node took meanwhile.
//! - `<prefix>:{cluster}:nodes` is a hash of every node's heartbeat (address, how long it
//!   counts as alive, its share), written at every tick.
//!
//! Every key is one slot (its hash tag), so the scripts run on a Redis Cluster as they do on a
//! single server.

use std::time::Duration;

use futures::StreamExt;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use super::{hash_tag, NodeIdentity};
use crate::redis_conn::RedisConn;

/// Lease commands in flight at once when every partition is read.
const CONCURRENCY: usize = 64;
/// How long one lease or heartbeat command may take: a renewal that hangs must not hold up
/// the others (the lease's validity runs out meanwhile).
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// `future`, failed as a Redis I/O error when it takes longer than [`OP_TIMEOUT`].
async fn bounded<T>(future: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(OP_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis command timed out",
        ))),
    }
}

/// A node's heartbeat, as stored in the nodes hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeEntry {
    #[serde(flatten)]
    pub identity: NodeIdentity,
    /// Counts as alive until then (ms since the Unix epoch).
    pub alive_until_ms: i64,
    pub live_actors: u64,
    pub partitions_owned: u64,
}

/// A partition's lease as read: its holder's value and the time left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    pub holder: Option<String>,
    pub ttl_ms: Option<i64>,
}

impl LeaseState {
    /// The holder's node name.
    pub fn node(&self) -> Option<&str> {
        self.holder
            .as_deref()
            .map(|value| value.split('|').next().unwrap_or(value))
    }
}

pub struct Leases {
    redis: RedisConn,
    prefix: String,
    renew: Script,
    release: Script,
    read: Script,
}

impl Leases {
    pub fn new(redis: RedisConn, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            renew: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
                 else return 0 end",
            ),
            release: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   return redis.call('DEL', KEYS[1]) \
                 else return 0 end",
            ),
            read: Script::new("return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"),
        }
    }

    fn key(&self, partition: u32) -> String {
        format!("{}:{}:lease", self.prefix, hash_tag(partition))
    }

    fn nodes_key(&self) -> String {
        format!("{}:{{cluster}}:nodes", self.prefix)
    }

    /// Takes the lease of `partition` if nobody holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn try_acquire(&self, partition: u32, value: &str, ttl: Duration) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.key(partition))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let set: Option<String> = bounded(set.query_async(&mut redis)).await?;
        Ok(set.is_some())
    }

    /// Extends the lease if `value` still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew(&self, partition: u32, value: &str, ttl: Duration) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let mut invocation = self.renew.key(self.key(partition));
        invocation.arg(value).arg(millis(ttl));
        let renewed: i64 = bounded(invocation.invoke_async(&mut redis)).await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if `value` still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release(&self, partition: u32, value: &str) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let mut invocation = self.release.key(self.key(partition));
        invocation.arg(value);
        let released: i64 = bounded(invocation.invoke_async(&mut redis)).await?;
        Ok(released == 1)
    }

    /// One partition's lease.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn read_one(&self, partition: u32) -> redis::RedisResult<LeaseState> {
        let mut redis = self.redis.clone();
        let invocation = self.read.key(self.key(partition));
        let (holder, ttl): (Option<String>, i64) = bounded(invocation.invoke_async(&mut redis)).await?;
        Ok(LeaseState {
            holder,
            ttl_ms: (ttl >= 0).then_some(ttl),
        })
    }

    /// Every partition's lease, in partition order; `None` where it could not be read (one
    /// shard of a Redis Cluster failing over must not blind the node to the others).
    pub async fn read_all(&self, partitions: u32) -> Vec<Option<LeaseState>> {
        futures::stream::iter(0..partitions)
            .map(|partition| async move { self.read_one(partition).await.ok() })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    }

    /// Writes this node's heartbeat and reads everyone's (this node's included).
    ///
    /// # Returns
    /// Whether this node's entry was missing before (its first heartbeat, or Redis lost the
    /// hash), and every node's entry.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn heartbeat(&self, entry: &NodeEntry) -> redis::RedisResult<(bool, Vec<NodeEntry>)> {
        let mut redis = self.redis.clone();
        let json = serde_json::to_string(entry).unwrap_or_default();
        let added: i64 = bounded(redis.hset(self.nodes_key(), &entry.identity.name, json)).await?;
        Ok((added > 0, self.nodes().await?))
    }

    /// Records the deployment's partition count the first time, and answers the recorded
    /// one: every node must map orders to partitions alike.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn recorded_partitions(&self, count: u32) -> redis::RedisResult<u32> {
        let mut redis = self.redis.clone();
        let key = format!("{}:{{cluster}}:partitions", self.prefix);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(count).arg("NX");
        let _: Option<String> = bounded(set.query_async(&mut redis)).await?;
        let recorded: u32 = bounded(redis.get(&key)).await?;
        Ok(recorded)
    }

    /// Every node's last heartbeat, without writing one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn nodes(&self) -> redis::RedisResult<Vec<NodeEntry>> {
        let mut redis = self.redis.clone();
        let all: Vec<(String, String)> = bounded(redis.hgetall(self.nodes_key())).await?;
        Ok(all
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Removes heartbeats of nodes gone for a while (so the hash does not grow forever), and
    /// this node's own entry when it stops (`names`).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn forget_nodes(&self, names: &[String]) -> redis::RedisResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        let _: () = bounded(redis.hdel(self.nodes_key(), names)).await?;
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
