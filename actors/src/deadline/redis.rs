//! The Redis sorted sets: member = order id, score = deadline in ms. One key per deployment
//! (`<prefix>:deadlines`), or in a cluster one per partition with the partition's hash tag
//! (`<prefix>:{p17}:deadlines`), so the index spreads over a Redis Cluster and a takeover
//! reads and repairs only the partitions it took.

use std::collections::HashMap;

use async_trait::async_trait;
use entities::{OrderId, OrderStatus};
use redis::AsyncCommands;
use sea_orm::DatabaseConnection;

use super::{live_deadlines, live_deadlines_in, Deadline, DeadlineError, DeadlineIndex, ReconcileReport, Reconciled};
use crate::cluster::{hash_tag, Partitioner};
use crate::redis_conn::RedisConn;

/// Members written per command when rebuilding.
const BATCH: usize = 1_000;

/// The deadline index in Redis sorted sets, rebuilt from the database when Redis lost them.
pub struct RedisDeadlineIndex {
    redis: RedisConn,
    prefix: String,
    /// In a cluster: one set per partition.
    partitioner: Option<Partitioner>,
    db: DatabaseConnection,
}

impl RedisDeadlineIndex {
    pub fn new(redis: RedisConn, key_prefix: &str, partitioner: Option<Partitioner>, db: DatabaseConnection) -> Self {
        Self {
            redis,
            prefix: key_prefix.to_owned(),
            partitioner,
            db,
        }
    }

    /// The set holding `order_id`'s deadline.
    pub fn key_of(&self, order_id: OrderId) -> String {
        match self.partitioner {
            Some(partitioner) => self.partition_key(partitioner.of(order_id)),
            None => format!("{}:deadlines", self.prefix),
        }
    }

    pub fn partition_key(&self, partition: u32) -> String {
        format!("{}:{}:deadlines", self.prefix, hash_tag(partition))
    }

    /// Every (member, score) pair of `key`, soonest first.
    async fn members(&self, key: &str) -> Result<Vec<(i64, i64)>, DeadlineError> {
        let mut redis = self.redis.clone();
        // Redis prints integral scores without a fraction, so they read back as integers.
        Ok(redis.zrange_withscores(key, 0, -1).await?)
    }

    /// Makes the sets of `keys` hold exactly `live` (each entry in the set `key_of` names).
    /// The sets are read before the database was (see the trait).
    async fn repair(
        &self,
        mut leftover: HashMap<String, HashMap<i64, i64>>,
        live: Vec<Deadline>,
    ) -> Result<Reconciled, DeadlineError> {
        let mut redis = self.redis.clone();
        let mut report = ReconcileReport {
            live_orders: u64::try_from(live.len()).unwrap_or(u64::MAX),
            ..ReconcileReport::default()
        };
        // ZADD the live entries a set is missing, and those whose deadline moved; an entry
        // already right is left alone (after a restart that is nearly all of them).
        let mut wrong: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for d in &live {
            let key = self.key_of(d.order_id);
            match leftover.get_mut(&key).and_then(|set| set.remove(&d.order_id.get())) {
                Some(at_ms) if at_ms == d.at_ms => {}
                Some(_) => wrong.entry(key).or_default().push((d.at_ms, d.order_id.get())),
                None => {
                    report.added += 1;
                    wrong.entry(key).or_default().push((d.at_ms, d.order_id.get()));
                }
            }
        }
        for (key, entries) in &wrong {
            for chunk in entries.chunks(BATCH) {
                let _: () = redis.zadd_multiple(key, chunk).await?;
            }
        }
        for (key, stale) in leftover {
            let stale: Vec<i64> = stale.into_keys().collect();
            for chunk in stale.chunks(BATCH) {
                let _: () = redis.zrem(&key, chunk).await?;
                report.removed += u64::try_from(chunk.len()).unwrap_or(0);
            }
        }
        Ok(Reconciled { report, live })
    }
}

#[async_trait]
impl DeadlineIndex for RedisDeadlineIndex {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn add(&self, deadline: Deadline) -> Result<(), DeadlineError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .zadd(self.key_of(deadline.order_id), deadline.order_id.get(), deadline.at_ms)
            .await?;
        Ok(())
    }

    async fn remove(&self, order_id: OrderId) -> Result<(), DeadlineError> {
        let mut redis = self.redis.clone();
        let _: () = redis.zrem(self.key_of(order_id), order_id.get()).await?;
        Ok(())
    }

    async fn reconcile(&self) -> Result<Reconciled, DeadlineError> {
        if let Some(partitioner) = self.partitioner {
            let all: Vec<u32> = partitioner.all().collect();
            return self.reconcile_partitions(partitioner, &all).await;
        }
        // Redis first, then the database: see the trait. Raw members, so one that is not an
        // order id counts as stale and is removed.
        let key = format!("{}:deadlines", self.prefix);
        let leftover = HashMap::from([(key.clone(), self.members(&key).await?.into_iter().collect())]);
        let live = live_deadlines(&self.db).await?;
        self.repair(leftover, live).await
    }

    async fn reconcile_partitions(
        &self,
        partitioner: Partitioner,
        partitions: &[u32],
    ) -> Result<Reconciled, DeadlineError> {
        let mut leftover = HashMap::with_capacity(partitions.len());
        for &partition in partitions {
            let key = self.partition_key(partition);
            let members = self.members(&key).await?.into_iter().collect();
            leftover.insert(key, members);
        }
        let live = live_deadlines_in(&self.db, partitioner, partitions, None, &OrderStatus::LIVE).await?;
        self.repair(leftover, live).await
    }
}
