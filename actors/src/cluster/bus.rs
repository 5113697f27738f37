//! Committed status changes between nodes, over Redis pub/sub (`<prefix>:changes`).
//!
//! Every node publishes the changes it commits (after the commit) and hears everyone else's:
//! its live status streams see a change made on another node within milliseconds, and the
//! owner of a partition hears of an order created on another node (its deadline comes along)
//! and arms it at once. Pub/sub delivers at most once: a message lost while a subscriber
//! reconnects costs a status stream its immediacy (it re-reads the order) and an order its
//! early arming (the owner's sweep arms it before its deadline).
//!
//! On a Redis Cluster, `PUBLISH` reaches the subscribers of every node, so the subscriber
//! connects to one seed node.

use std::time::Duration;

use entities::{OrderId, OrderStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::changes::OrderChanged;
use crate::redis_conn::RedisConn;

/// Changes published in one round trip at most.
const BATCH: usize = 256;
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// A change as published.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// The publishing node's incarnation (a node skips its own changes).
    #[serde(rename = "n")]
    pub node: String,
    #[serde(rename = "o")]
    pub order_id: i64,
    #[serde(rename = "s")]
    pub status: OrderStatus,
    /// A newly created order's deadline (ms since the Unix epoch).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
}

impl Change {
    pub fn order_changed(&self) -> Option<OrderChanged> {
        Some(OrderChanged {
            order_id: OrderId::try_from(self.order_id).ok()?,
            status: self.status,
        })
    }
}

pub fn channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// Publishes what `changes` receives until every sender is gone.
pub fn start_publisher(
    redis: RedisConn,
    channel: String,
    node: String,
    mut changes: mpsc::UnboundedReceiver<(OrderChanged, Option<i64>)>,
) {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while changes.recv_many(&mut batch, BATCH).await > 0 {
            let mut pipe = redis::pipe();
            for (change, deadline_ms) in batch.drain(..) {
                let message = Change {
                    node: node.clone(),
                    order_id: change.order_id.get(),
                    status: change.status,
                    deadline_ms,
                };
                if let Ok(json) = serde_json::to_string(&message) {
                    pipe.cmd("PUBLISH").arg(&channel).arg(json).ignore();
                }
            }
            let mut redis = redis.clone();
            if let Err(err) = pipe.query_async::<()>(&mut redis).await {
                tracing::warn!(error.message = %err, "failed to publish status changes to the other nodes");
            }
        }
    });
}

/// Calls `on_change` with every change another node publishes, reconnecting as needed.
pub fn start_subscriber(
    url: String,
    channel: String,
    node: String,
    on_change: impl Fn(Change) + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        loop {
            match listen(&url, &channel, &node, &on_change).await {
                Ok(()) => tracing::warn!("change subscription ended; subscribing again"),
                Err(err) => tracing::warn!(error.message = %err, "change subscription failed; subscribing again"),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
}

async fn listen(url: &str, channel: &str, node: &str, on_change: &impl Fn(Change)) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match serde_json::from_str::<Change>(&payload) {
            Ok(change) if change.node != node => on_change(change),
            Ok(_) => {}
            Err(err) => tracing::warn!(error.message = %err, "unreadable change message; skipped"),
        }
    }
    Ok(())
}
