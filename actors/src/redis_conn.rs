//! One Redis connection for a single server or a Redis Cluster, chosen by configuration.
//!
//! Every Redis user (the deadline index, the partition leases, the change bus) talks through
//! [`RedisConn`], which implements [`ConnectionLike`], so every command and script runs the
//! same way on both. Keys that must live together carry a hash tag (`paywarden:{p17}:...`).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use serde::Deserialize;

/// How long a command may take on a Redis Cluster before the client fails it (its own
/// default is shorter than reading a large deadline set; the lease commands bound their own
/// time).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `redis.mode`: one server, or a Redis Cluster reached through seed addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Single,
    Cluster,
}

/// Cheap to clone; every clone shares the connection (multiplexed, reconnecting).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to `url` (single), or to the cluster whose seed nodes `url` lists separated by
    /// commas (cluster).
    ///
    /// # Errors
    /// A bad URL or no server answering.
    pub async fn connect(url: &str, mode: RedisMode) -> RedisResult<Self> {
        match mode {
            RedisMode::Single => {
                // No response timeout on the connection: rebuilding a million-entry index reads
                // it in one reply; the lease commands bound their own time.
                let config = ConnectionManagerConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
                let client = redis::Client::open(url)?;
                Ok(Self::Single(ConnectionManager::new_with_config(client, config).await?))
            }
            RedisMode::Cluster => {
                let client = redis::cluster::ClusterClient::builder(seeds(url))
                    .response_timeout(RESPONSE_TIMEOUT)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// The seed addresses of a `redis.url` (one, or several separated by commas).
pub fn seeds(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_split_on_commas_and_trimmed() {
        assert_eq!(
            seeds("redis://a:1, redis://b:2,,redis://c:3"),
            vec!["redis://a:1", "redis://b:2", "redis://c:3"]
        );
        assert_eq!(seeds("redis://a:1"), vec!["redis://a:1"]);
    }
}
