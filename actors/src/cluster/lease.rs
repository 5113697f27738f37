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
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(partition))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut redis)
            .await?;
        Ok(set.is_some())
    }

    /// Extends the lease if `value` still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew(&self, partition: u32, value: &str, ttl: Duration) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let renewed: i64 = self
            .renew
            .key(self.key(partition))
            .arg(value)
            .arg(millis(ttl))
            .invoke_async(&mut redis)
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if `value` still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release(&self, partition: u32, value: &str) -> redis::RedisResult<bool> {
        let mut redis = self.redis.clone();
        let released: i64 = self
            .release
            .key(self.key(partition))
            .arg(value)
            .invoke_async(&mut redis)
            .await?;
        Ok(released == 1)
    }

    /// One partition's lease.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn read_one(&self, partition: u32) -> redis::RedisResult<LeaseState> {
        let mut redis = self.redis.clone();
        let (holder, ttl): (Option<String>, i64) = self.read.key(self.key(partition)).invoke_async(&mut redis).await?;
        Ok(LeaseState {
            holder,
            ttl_ms: (ttl >= 0).then_some(ttl),
        })
    }

    /// Every partition's lease, in partition order.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn read_all(&self, partitions: u32) -> redis::RedisResult<Vec<LeaseState>> {
        let reads = futures::stream::iter(0..partitions)
            .map(|partition| self.read_one(partition))
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        reads.into_iter().collect()
    }

    /// Writes this node's heartbeat and reads everyone's (this node's included).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn heartbeat(&self, entry: &NodeEntry) -> redis::RedisResult<Vec<NodeEntry>> {
        let mut redis = self.redis.clone();
        let json = serde_json::to_string(entry).unwrap_or_default();
        let key = self.nodes_key();
        let _: () = redis.hset(&key, &entry.identity.name, json).await?;
        let all: Vec<(String, String)> = redis.hgetall(&key).await?;
        Ok(all
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json).ok())
            .collect())
    }

    /// Every node's last heartbeat, without writing one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn nodes(&self) -> redis::RedisResult<Vec<NodeEntry>> {
        let mut redis = self.redis.clone();
        let all: Vec<(String, String)> = redis.hgetall(self.nodes_key()).await?;
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
        let _: () = redis.hdel(self.nodes_key(), names).await?;
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
