//! The Redis sorted set: one key per deployment (`<prefix>:deadlines`), member = order id,
//! score = deadline in ms.

use std::collections::HashSet;

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
        let indexed: HashSet<i64> = self.members().await?.into_iter().map(|(id, _)| id).collect();
        let live = live_deadlines(&self.db).await?;
        let live_ids: HashSet<i64> = live.iter().map(|d| d.order_id.get()).collect();
        let mut redis = self.redis.clone();
        let mut report = ReconcileReport {
            live_orders: u64::try_from(live.len()).unwrap_or(u64::MAX),
            ..ReconcileReport::default()
        };
        // ZADD every live entry (it also corrects a moved deadline); count the missing ones.
        for chunk in live.chunks(BATCH) {
            let items: Vec<(i64, i64)> = chunk.iter().map(|d| (d.at_ms, d.order_id.get())).collect();
            let _: () = redis.zadd_multiple(&self.key, &items).await?;
            report.added +=
                u64::try_from(chunk.iter().filter(|d| !indexed.contains(&d.order_id.get())).count()).unwrap_or(0);
        }
        let stale: Vec<i64> = indexed.difference(&live_ids).copied().collect();
        for chunk in stale.chunks(BATCH) {
            let _: () = redis.zrem(&self.key, chunk).await?;
            report.removed += u64::try_from(chunk.len()).unwrap_or(0);
        }
        Ok(Reconciled { report, live })
    }
}
