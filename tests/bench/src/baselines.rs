//! The usual ways of expiring unpaid orders, as faithful minimal versions, run over the same
//! deadline schedule as paywarden (each order created at the same offset with the same TTL):
//!
//! - a database poller (seed 000): every interval, one `UPDATE … SET status = 'closed' WHERE
//!   status = 'pending' AND expires_at <= now()` (the most efficient form of the poller);
//! - a Redis sorted-set poller: every second, `ZRANGEBYSCORE deadlines -inf now`, close those
//!   rows in one `UPDATE`, `ZREM` them;
//! - RabbitMQ per-message TTL + dead-letter on one queue (seed 001): each order published when
//!   created with `expiration` = its TTL to a queue without consumers whose dead letters go to
//!   the queue a consumer closes orders from.
//!
//! Each closes rows of its own table in the run's database; lateness = `closed_at` (stamped
//! with `clock_timestamp()` in the closing statement) − deadline.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::harness::{now_ms, Harness};
use crate::report::Spread;

/// One order of the schedule: when it is created (ms after the start) and its TTL.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    pub created_offset_ms: i64,
    pub ttl_ms: i64,
}

pub struct BaselineResult {
    pub name: &'static str,
    pub lateness: Spread,
}

const TABLES: [&str; 4] = [
    "bench_db_poll_1s",
    "bench_db_poll_60s",
    "bench_zset_poll_1s",
    "bench_amqp_dlx",
];

/// Runs the four baselines at once over `schedule`, on `harness`'s database and Redis and the
/// broker at `amqp_url`.
pub async fn run(harness: &Harness, schedule: &[Planned], amqp_url: &str) -> anyhow::Result<Vec<BaselineResult>> {
    let setup = Instant::now();
    // The schedule starts once every table is filled.
    let start_ms = now_ms() + 10_000 + i64::try_from(schedule.len() / 20).unwrap_or(0);
    for table in TABLES {
        harness
            .execute(&format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, status TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL, closed_at TIMESTAMPTZ)"
            ))
            .await?;
        harness
            .execute(&format!(
                "CREATE INDEX {table}_due ON {table} (expires_at) WHERE status = 'pending'"
            ))
            .await?;
        for (chunk_index, chunk) in schedule.chunks(5_000).enumerate() {
            let values: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, planned)| {
                    let id = chunk_index * 5_000 + i;
                    let deadline = start_ms + planned.created_offset_ms + planned.ttl_ms;
                    format!("({id}, 'pending', to_timestamp({deadline} / 1000.0))")
                })
                .collect();
            harness
                .execute(&format!(
                    "INSERT INTO {table} (id, status, expires_at) VALUES {}",
                    values.join(",")
                ))
                .await?;
        }
    }
    let redis_client = redis::Client::open(harness.redis.url())?;
    let mut redis = redis_client.get_multiplexed_async_connection().await?;
    let zset = format!("{}:baseline", harness.key_prefix);
    for (chunk_index, chunk) in schedule.chunks(10_000).enumerate() {
        let items: Vec<(i64, usize)> = chunk
            .iter()
            .enumerate()
            .map(|(i, planned)| {
                (
                    start_ms + planned.created_offset_ms + planned.ttl_ms,
                    chunk_index * 10_000 + i,
                )
            })
            .collect();
        let _: () = redis::cmd("ZADD")
            .arg(&zset)
            .arg(&items)
            .query_async(&mut redis)
            .await?;
    }
    let amqp = Amqp::connect(amqp_url, &harness.key_prefix).await?;
    eprintln!(
        "  baselines set up in {:.1} s; the schedule starts in {:.1} s",
        setup.elapsed().as_secs_f64(),
        crate::report::float(start_ms - now_ms()) / 1000.0
    );

    let last_deadline = schedule
        .iter()
        .map(|p| p.created_offset_ms + p.ttl_ms)
        .max()
        .unwrap_or(0);
    // The 60-second poller needs up to a minute past the last deadline.
    let end_ms = start_ms + last_deadline + 65_000;
    let db = &harness.conn;
    let (db_1s, db_60s, zset_1s, amqp_result) = tokio::join!(
        db_poller(db, TABLES[0], Duration::from_secs(1), start_ms, end_ms),
        db_poller(db, TABLES[1], Duration::from_secs(60), start_ms, end_ms),
        zset_poller(db, redis.clone(), &zset, start_ms, end_ms),
        amqp.run(db, schedule, start_ms, end_ms),
    );
    db_1s?;
    db_60s?;
    zset_1s?;
    amqp_result?;
    amqp.delete().await.ok();
    let names = [
        "DB poller, 1 s interval",
        "DB poller, 60 s interval",
        "Redis sorted-set poller, 1 s",
        "RabbitMQ per-message TTL + DLX",
    ];
    let mut results = Vec::new();
    for (table, name) in TABLES.iter().zip(names) {
        results.push(BaselineResult {
            name,
            lateness: Spread::of_micros(lateness(db, table).await?),
        });
    }
    Ok(results)
}

async fn execute(db: &DatabaseConnection, sql: String) -> anyhow::Result<u64> {
    Ok(db
        .execute(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .rows_affected())
}

async fn sleep_until_ms(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    }
}

/// Lateness of every closed row, µs; a row never closed counts as closed at the end.
async fn lateness(db: &DatabaseConnection, table: &str) -> anyhow::Result<Vec<i64>> {
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT CAST(EXTRACT(EPOCH FROM (COALESCE(closed_at, clock_timestamp()) - expires_at)) * 1000000 AS BIGINT) FROM {table}"
            ),
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<i64>(0).map_err(anyhow::Error::from))
        .collect()
}

async fn db_poller(
    db: &DatabaseConnection,
    table: &str,
    interval: Duration,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<()> {
    sleep_until_ms(start_ms).await;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while now_ms() < end_ms {
        ticks.tick().await;
        execute(
            db,
            format!(
                "UPDATE {table} SET status = 'closed', closed_at = clock_timestamp() \
                 WHERE status = 'pending' AND expires_at <= clock_timestamp()"
            ),
        )
        .await?;
    }
    Ok(())
}

async fn zset_poller(
    db: &DatabaseConnection,
    mut redis: redis::aio::MultiplexedConnection,
    key: &str,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<()> {
    sleep_until_ms(start_ms).await;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while now_ms() < end_ms {
        ticks.tick().await;
        let due: Vec<i64> = redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(now_ms())
            .query_async(&mut redis)
            .await?;
        for chunk in due.chunks(5_000) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            execute(
                db,
                format!(
                    "UPDATE {} SET status = 'closed', closed_at = clock_timestamp() WHERE status = 'pending' AND id IN ({})",
                    TABLES[2],
                    ids.join(",")
                ),
            )
            .await?;
            let _: () = redis::cmd("ZREM").arg(key).arg(chunk).query_async(&mut redis).await?;
        }
    }
    Ok(())
}

/// One delay queue dead-lettering into the queue a consumer closes orders from.
struct Amqp {
    connection: Connection,
    delay_queue: String,
    expired_queue: String,
    exchange: String,
}

impl Amqp {
    async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let connection = Connection::connect(url, properties)
            .await
            .with_context(|| format!("RabbitMQ does not answer at {url}"))?;
        let amqp = Self {
            connection,
            delay_queue: format!("{prefix}.delay"),
            expired_queue: format!("{prefix}.expired"),
            exchange: format!("{prefix}.dlx"),
        };
        let channel = amqp.connection.create_channel().await?;
        channel
            .exchange_declare(
                &amqp.exchange,
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                &amqp.expired_queue,
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                &amqp.expired_queue,
                &amqp.exchange,
                "expired",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(amqp.exchange.clone().into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString("expired".into()),
        );
        channel
            .queue_declare(&amqp.delay_queue, QueueDeclareOptions::default(), arguments)
            .await?;
        Ok(amqp)
    }

    /// Publishes each order when it is created, with its TTL; closes each dead letter.
    async fn run(
        &self,
        db: &DatabaseConnection,
        schedule: &[Planned],
        start_ms: i64,
        end_ms: i64,
    ) -> anyhow::Result<()> {
        let publisher = self.connection.create_channel().await?;
        let consumer_channel = self.connection.create_channel().await?;
        consumer_channel.basic_qos(500, BasicQosOptions::default()).await?;
        let mut consumer = consumer_channel
            .basic_consume(
                &self.expired_queue,
                "bench",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let total = schedule.len();
        let publish = async {
            let mut order: Vec<(usize, &Planned)> = schedule.iter().enumerate().collect();
            order.sort_by_key(|(_, planned)| planned.created_offset_ms);
            for (id, planned) in order {
                sleep_until_ms(start_ms + planned.created_offset_ms).await;
                let properties = BasicProperties::default().with_expiration(planned.ttl_ms.to_string().into());
                publisher
                    .basic_publish(
                        "",
                        &self.delay_queue,
                        BasicPublishOptions::default(),
                        id.to_string().as_bytes(),
                        properties,
                    )
                    .await?;
            }
            anyhow::Ok(())
        };
        let consume = async {
            let mut closed = 0usize;
            while closed < total {
                let wait = Duration::from_millis(u64::try_from((end_ms - now_ms()).max(1)).unwrap_or(1));
                let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await else {
                    break;
                };
                let delivery = delivery?;
                let id: i64 = std::str::from_utf8(&delivery.data)?.parse()?;
                execute(
                    db,
                    format!(
                        "UPDATE {} SET status = 'closed', closed_at = clock_timestamp() WHERE id = {id} AND status = 'pending'",
                        TABLES[3]
                    ),
                )
                .await?;
                delivery.ack(BasicAckOptions::default()).await?;
                closed += 1;
            }
            anyhow::Ok(())
        };
        let (published, consumed) = tokio::join!(publish, consume);
        published?;
        consumed
    }

    async fn delete(&self) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        for queue in [&self.delay_queue, &self.expired_queue] {
            channel.queue_delete(queue, QueueDeleteOptions::default()).await?;
        }
        channel
            .exchange_delete(&self.exchange, ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }
}
