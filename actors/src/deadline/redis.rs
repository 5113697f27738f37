//! The Redis sorted set: one key per deployment (`<prefix>:deadlines`), member = order id,
//! score = deadline in ms.

use std::collections::HashMap;

use async_trait::async_trait;
use entities::OrderId;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sea_orm::DatabaseConnection;

use super::{live_deadlines, Deadline, DeadlineError, DeadlineIndex, ReconcileReport, Reconciled};

/// Members written per command when rebuilding.
const BATCH: usize = 1_000;

/// The deadline index as one Redis sorted set (member = order id, score = deadline in ms),
/// rebuilt from the database when Redis lost it.
pub struct RedisDeadlineIndex {
    redis: ConnectionManager,
    key: String,
    db: DatabaseConnection,
}

impl RedisDeadlineIndex {
    /// Connects (and keeps reconnecting) to `url`.
    ///
    /// # Errors
    /// A bad URL or an unreachable server at start-up.
    pub async fn connect(url: &str, key_prefix: &str, db: DatabaseConnection) -> Result<Self, DeadlineError> {
        let client = redis::Client::open(url)?;
        let redis = ConnectionManager::new(client).await?;
        Ok(Self {
            redis,
            key: format!("{key_prefix}:deadlines"),
            db,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every (member, score) pair as stored, soonest first.
    async fn members(&self) -> Result<Vec<(i64, i64)>, DeadlineError> {
        let mut redis = self.redis.clone();
        // Redis prints integral scores without a fraction, so they read back as integers.
        Ok(redis.zrange_withscores(&self.key, 0, -1).await?)
    }
}

#[async_trait]
impl DeadlineIndex for RedisDeadlineIndex {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn add(&self, deadline: Deadline) -> Result<(), DeadlineError> {
        let mut redis = self.redis.clone();
        let _: () = redis.zadd(&self.key, deadline.order_id.get(), deadline.at_ms).await?;
        Ok(())
    }

    async fn remove(&self, order_id: OrderId) -> Result<(), DeadlineError> {
        let mut redis = self.redis.clone();
        let _: () = redis.zrem(&self.key, order_id.get()).await?;
        Ok(())
    }

    async fn reconcile(&self) -> Result<Reconciled, DeadlineError> {
        // Redis first, then the database: see the trait. Raw members, so one that is not an
        // order id counts as stale and is removed.
        // What the index holds; every live order found in it is taken out, so what is left
        // at the end is stale.
        let mut leftover: HashMap<i64, i64> = self.members().await?.into_iter().collect();
        let live = live_deadlines(&self.db).await?;
        let mut redis = self.redis.clone();
        let mut report = ReconcileReport {
            live_orders: u64::try_from(live.len()).unwrap_or(u64::MAX),
            ..ReconcileReport::default()
        };
        // ZADD the live entries the index is missing, and those whose deadline moved; an entry
        // already right is left alone (after a restart that is nearly all of them).
        let mut wrong: Vec<(i64, i64)> = Vec::new();
        for d in &live {
            match leftover.remove(&d.order_id.get()) {
                Some(at_ms) if at_ms == d.at_ms => {}
                Some(_) => wrong.push((d.at_ms, d.order_id.get())),
                None => {
                    report.added += 1;
                    wrong.push((d.at_ms, d.order_id.get()));
                }
            }
        }
        for chunk in wrong.chunks(BATCH) {
            let _: () = redis.zadd_multiple(&self.key, chunk).await?;
        }
        let stale: Vec<i64> = leftover.into_keys().collect();
        for chunk in stale.chunks(BATCH) {
            let _: () = redis.zrem(&self.key, chunk).await?;
            report.removed += u64::try_from(chunk.len()).unwrap_or(0);
        }
        Ok(Reconciled { report, live })
    }
}
