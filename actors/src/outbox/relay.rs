//! The outbox relay actor: moves outbox events to their subscribers, at least once, in order
//! per order.
//!
//! Woken (`Wake`) right after each commit that wrote an event, with a periodic sweep as the
//! safety net (a lost wake-up, a delivery whose retry came due, another node's events). One
//! cycle: fan out new events into one delivery row per interested subscriber, claim due rows
//! under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two running relays never hold the
//! same row; SQLite runs one instance), deliver them concurrently, and record each outcome:
//! delivered, or retried later on the configured schedule (with jitter), or dead once it is
//! spent. A delivery waits while an earlier event of the same order for the same subscriber is
//! still pending, so each order's events arrive in the order they were written; the deliveries
//! of a paused or disabled subscriber wait (pending, in that order) until it resumes. Every
//! attempt is written to `delivery_attempts`; a webhook that fails without a success for
//! `disable_after_failing_seconds` is disabled (kept, never deleted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entities::{delivery_attempts, outbox, outbox_deliveries, subscribers, DeliveryStatus, SubscriberKind};
use futures::StreamExt;
use rand::Rng;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait, Value,
};

use super::amqp::AmqpSink;
use super::signature::signed_headers;
use crate::settings::{check, Invalid};

/// How the relay claims and delivers: the `outbox` section of the configuration, read straight
/// into this type.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Rows fanned out, and deliveries claimed, per cycle.
    pub batch_size: u64,
    #[serde(rename = "sweep_interval_milliseconds", with = "crate::settings::millis")]
    pub sweep_interval: Duration,
    /// Commits that wake the relay while a cycle runs are served by one cycle this long after
    /// it: under load the relay's reads are shared by many events instead of costing a few
    /// round trips per commit. A wake of an idle relay starts a cycle at once.
    #[serde(
        rename = "coalesce_milliseconds",
        with = "crate::settings::millis",
        default = "default_coalesce"
    )]
    pub coalesce: Duration,
    /// How long a claimed row is held by this relay.
    #[serde(rename = "lease_seconds", with = "crate::settings::seconds")]
    pub lease: Duration,
    /// Pause after the n-th failed attempt; once spent, the delivery is dead.
    #[serde(rename = "retry_schedule_milliseconds", with = "crate::settings::millis_list")]
    pub retry_schedule: Vec<Duration>,
    #[serde(rename = "webhook_timeout_milliseconds", with = "crate::settings::millis")]
    pub webhook_timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Whether webhooks may target loopback, private and link-local addresses (development
    /// and tests); see [`super::target`].
    pub allow_private_targets: bool,
    /// How long a rotated-out webhook secret keeps signing when the rotation names no
    /// overlap, and the overlaps a rotation may ask for.
    #[serde(rename = "rotation_overlap_default_seconds", with = "crate::settings::seconds")]
    pub rotation_overlap_default: Duration,
    #[serde(rename = "rotation_overlap_min_seconds", with = "crate::settings::seconds")]
    pub rotation_overlap_min: Duration,
    #[serde(rename = "rotation_overlap_max_seconds", with = "crate::settings::seconds")]
    pub rotation_overlap_max: Duration,
    /// A webhook subscriber that fails this long without a success is disabled.
    #[serde(
        rename = "disable_after_failing_seconds",
        with = "crate::settings::seconds",
        default = "default_disable_after"
    )]
    pub disable_after_failing: Duration,
    /// Most events one replay may queue again.
    #[serde(default = "default_replay_max")]
    pub replay_max_events: u64,
    /// Webhook subscribers declared in configuration, registered at start-up (admins can add
    /// more at run time).
    #[serde(default)]
    pub webhooks: Vec<ConfiguredWebhook>,
}

fn default_coalesce() -> Duration {
    Duration::from_millis(20)
}

fn default_disable_after() -> Duration {
    Duration::from_secs(3 * 24 * 60 * 60)
}

fn default_replay_max() -> u64 {
    10_000
}

/// A webhook subscriber declared in configuration (`[[outbox.webhooks]]`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredWebhook {
    pub url: String,
    pub secret: secrecy::SecretString,
    /// Empty: every event type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// The merchant whose events it receives; absent: a global subscriber, every merchant's
    /// events (the operator's own consumers).
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// How its deliveries are signed. Absent: `paywarden-v1`, the scheme entries were signed
    /// with before `standard-webhooks-v1` existed, so a declared receiver keeps verifying
    /// across an upgrade; a new entry names `standard-webhooks-v1` (and a `whsec_` secret).
    #[serde(default = "configured_scheme")]
    pub signature_scheme: entities::SignatureScheme,
}

fn configured_scheme() -> entities::SignatureScheme {
    entities::SignatureScheme::PaywardenV1
}

impl RelaySettings {
    /// The overlaps a secret rotation may ask for.
    pub fn overlap_bounds(&self) -> super::subscribers::OverlapBounds {
        super::subscribers::OverlapBounds {
            default: self.rotation_overlap_default,
            min: self.rotation_overlap_min,
            max: self.rotation_overlap_max,
        }
    }

    /// Deliveries claimed per cycle: the batch size, cut to what surely finishes inside the
    /// lease. With `concurrency` in flight and each taking at most `webhook_timeout`, a claim
    /// of `concurrency × rounds` is done after `rounds` timeouts; one timeout of the lease is
    /// kept as margin (the database writes after the requests). So no second relay ever takes
    /// over a lease whose deliveries are still being sent.
    pub fn claim_limit(&self) -> u64 {
        let timeout = self.webhook_timeout.as_millis().max(1);
        let rounds = (self.lease.as_millis() / timeout).saturating_sub(1).max(1);
        let per_round = u128::try_from(self.concurrency.max(1)).unwrap_or(1);
        let fits = u64::try_from(rounds.saturating_mul(per_round)).unwrap_or(u64::MAX);
        self.batch_size.min(fits).max(1)
    }

    /// # Errors
    /// The first unusable value, named by its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(self.batch_size > 0, section, "batch_size", "must be positive")?;
        check(
            !self.sweep_interval.is_zero(),
            section,
            "sweep_interval_milliseconds",
            "must be positive",
        )?;
        check(!self.lease.is_zero(), section, "lease_seconds", "must be positive")?;
        check(
            !self.retry_schedule.is_empty(),
            section,
            "retry_schedule_milliseconds",
            "must list at least one pause",
        )?;
        check(
            !self.webhook_timeout.is_zero(),
            section,
            "webhook_timeout_milliseconds",
            "must be positive",
        )?;
        check(self.concurrency > 0, section, "concurrency", "must be positive")?;
        check(
            !self.rotation_overlap_min.is_zero() && self.rotation_overlap_min <= self.rotation_overlap_max,
            section,
            "rotation_overlap_min_seconds",
            "must be positive and at most rotation_overlap_max_seconds",
        )?;
        check(
            (self.rotation_overlap_min..=self.rotation_overlap_max).contains(&self.rotation_overlap_default),
            section,
            "rotation_overlap_default_seconds",
            "must be within rotation_overlap_min_seconds and rotation_overlap_max_seconds",
        )?;
        for (index, webhook) in self.webhooks.iter().enumerate() {
            // One subscriber row per URL: a second entry would silently replace the first
            // (its scope included).
            check(
                !self.webhooks[..index]
                    .iter()
                    .any(|earlier| earlier.url.trim() == webhook.url.trim()),
                section,
                "webhooks.url",
                "each webhook URL may be declared once",
            )?;
            if let Some(merchant_id) = &webhook.merchant_id {
                check(
                    crate::domain::MerchantId::parse(merchant_id).is_ok(),
                    section,
                    "webhooks.merchant_id",
                    "must be a merchant id: 1 to 64 letters, digits, '_' or '-'",
                )?;
            }
        }
        check(
            self.lease >= self.webhook_timeout * 2,
            section,
            "lease_seconds",
            "must be at least twice webhook_timeout_milliseconds (a claimed delivery must finish inside its lease)",
        )
    }
}

pub use crate::poller::{Drain, Wake};

/// What a delivery cycle needs; shared with the cycle in flight.
pub struct RelayCore {
    db: DatabaseConnection,
    http: reqwest::Client,
    amqp: Option<AmqpSink>,
    settings: RelaySettings,
}

/// Delivers outbox rows to subscribers, at least once and per order in order. One per node, on
/// its own thread; woken by the [`ChangeFeed`](crate::changes::ChangeFeed) after each commit
/// that wrote an event, and by its own sweep. Runs one cycle at a time.
pub struct OutboxRelay {
    core: Arc<RelayCore>,
    running: bool,
    /// A wake-up came while a cycle ran: run another one right after.
    again: bool,
    /// Set by [`Drain`]: told when the cycle in flight ends.
    draining: crate::poller::Draining,
    pending: Arc<AtomicBool>,
}

impl OutboxRelay {
    pub fn new(db: DatabaseConnection, http: reqwest::Client, amqp: Option<AmqpSink>, settings: RelaySettings) -> Self {
        Self {
            core: Arc::new(RelayCore {
                db,
                http,
                amqp,
                settings,
            }),
            running: false,
            again: false,
            draining: crate::poller::Draining::default(),
            pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set by whoever sends this relay a commit's [`Wake`], cleared when the relay takes it:
    /// senders skip sending while one is on its way.
    pub fn wake_pending(&self) -> Arc<AtomicBool> {
        self.pending.clone()
    }

    /// Starts the relay on its own arbiter (thread).
    pub fn start_on_own_arbiter(self) -> Addr<Self> {
        let arbiter = Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| self)
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let sweep = self.core.settings.sweep_interval;
        ctx.run_interval(sweep, |_, ctx| ctx.notify(Wake));
        ctx.notify(Wake);
    }
}

impl Handler<Wake> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, _msg: Wake, ctx: &mut Self::Context) {
        // Before any read of this wake's cycle: a commit after this sends a new wake-up.
        self.pending.store(false, Ordering::Release);
        if self.draining.asked() {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        self.again = false;
        let core = self.core.clone();
        ctx.spawn(
            async move { cycle(&core).await }
                .into_actor(self)
                .map(|result, relay, ctx| {
                    relay.running = false;
                    if relay.draining.asked() {
                        relay.stop_drained(ctx);
                        return;
                    }
                    let more = match result {
                        Ok(more) => more,
                        Err(err) => {
                            tracing::error!(error.cause_chain = ?err, "outbox relay cycle failed");
                            false
                        }
                    };
                    if more {
                        ctx.notify(Wake);
                    } else if relay.again {
                        // Wakes coalesce: the next cycle serves every commit of the pause.
                        relay.running = true;
                        ctx.run_later(relay.core.settings.coalesce, |relay, ctx| {
                            relay.running = false;
                            if !relay.draining.asked() {
                                ctx.notify(Wake);
                            } else {
                                relay.stop_drained(ctx);
                            }
                        });
                    }
                }),
        );
    }
}

impl OutboxRelay {
    fn stop_drained(&mut self, ctx: &mut Context<Self>) {
        self.draining.stopped();
        ctx.stop();
    }
}

impl Handler<Drain> for OutboxRelay {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        let stopped = self.draining.wait();
        if !self.running {
            self.stop_drained(ctx);
        }
        stopped
    }
}

/// One cycle; true when a batch was full (more work is likely waiting).
async fn cycle(core: &RelayCore) -> Result<bool, DbErr> {
    let fanned = fan_out(core).await?;
    let claimed = claim(core).await?;
    let claimed_count = u64::try_from(claimed.len()).unwrap_or(u64::MAX);
    if !claimed.is_empty() {
        deliver_all(core, claimed).await?;
    }
    Ok(fanned == core.settings.batch_size || claimed_count == claim_limit(core))
}

/// Delivery rows per INSERT (SQLite allows 32,766 bound values; a row binds 10).
const DELIVERY_ROWS_PER_INSERT: usize = 1_000;

/// Creates the delivery rows of events not yet fanned out: one per enabled subscriber that
/// wants the event's type and may receive its merchant's events. Returns the events handled.
async fn fan_out(core: &RelayCore) -> Result<u64, DbErr> {
    let events = outbox::Entity::find()
        .filter(outbox::Column::FannedOutAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .limit(core.settings.batch_size)
        .all(&core.db)
        .await?;
    if events.is_empty() {
        return Ok(0);
    }
    let subscribers = subscribers::Entity::find()
        .filter(subscribers::Column::Enabled.eq(true))
        .all(&core.db)
        .await?;
    let now = Utc::now();
    let mut rows: Vec<outbox_deliveries::ActiveModel> = Vec::new();
    // Events nobody wants (nothing to wait for: published at once), and the others.
    let (mut unwanted, mut wanted) = (Vec::new(), Vec::new());
    for event in &events {
        let before = rows.len();
        rows.extend(
            subscribers
                .iter()
                // A scoped subscriber gets its own merchant's events only; a global one every event.
                .filter(|s| s.wants(&event.event_type) && s.may_receive(&event.merchant_id))
                .map(|s| outbox_deliveries::ActiveModel {
                    id: NotSet,
                    outbox_id: Set(event.id),
                    order_id: Set(event.order_id),
                    subscriber_id: Set(s.id.clone()),
                    status: Set(DeliveryStatus::Pending),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(None),
                    last_error: Set(None),
                    delivered_at: Set(None),
                    created_at: Set(now),
                }),
        );
        if rows.len() == before {
            unwanted.push(event.id);
        } else {
            wanted.push(event.id);
        }
    }
    // One statement per kind for the whole batch, not one per event: under load the relay
    // must cost a fraction of the writes that produced the events.
    let txn = core.db.begin().await?;
    for chunk in rows.chunks(DELIVERY_ROWS_PER_INSERT) {
        // Another relay may have fanned these events out a moment ago: keep its rows.
        outbox_deliveries::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    outbox_deliveries::Column::OutboxId,
                    outbox_deliveries::Column::SubscriberId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    if !wanted.is_empty() {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::FannedOutAt, Expr::value(now))
            .filter(outbox::Column::Id.is_in(wanted))
            .exec(&txn)
            .await?;
    }
    if !unwanted.is_empty() {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::FannedOutAt, Expr::value(now))
            .col_expr(outbox::Column::PublishedAt, Expr::value(now))
            .filter(outbox::Column::Id.is_in(unwanted))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(u64::try_from(events.len()).unwrap_or(u64::MAX))
}

/// Deliveries one cycle claims: what the webhooks finish inside the lease, and with an AMQP
/// sink no more than its one-at-a-time publishes finish too.
fn claim_limit(core: &RelayCore) -> u64 {
    let webhooks = core.settings.claim_limit();
    match core.amqp {
        Some(_) => webhooks.min(super::amqp::publishes_within(core.settings.lease)),
        None => webhooks,
    }
}

/// Leases due deliveries whose earlier events (same order, same subscriber) are done.
async fn claim(core: &RelayCore) -> Result<Vec<outbox_deliveries::Model>, DbErr> {
    let now = Utc::now();
    let lease = chrono::Duration::from_std(core.settings.lease).unwrap_or_else(|_| chrono::Duration::seconds(60));
    let backend = core.db.get_database_backend();
    let limit = i64::try_from(claim_limit(core)).unwrap_or(1);
    let (sql, lock, values): (&str, bool, Vec<Value>) = match backend {
        DatabaseBackend::Postgres => (
            POSTGRES_CLAIM,
            true,
            vec![(now + lease).into(), now.into(), limit.into(), now.into()],
        ),
        // Positional `?`: lease end, now (due), now (lease), limit, now (outer re-check).
        DatabaseBackend::Sqlite | DatabaseBackend::MySql => (
            SQLITE_CLAIM,
            false,
            vec![(now + lease).into(), now.into(), now.into(), limit.into(), now.into()],
        ),
    };
    let rows = core
        .db
        .query_all(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(row.try_get_by_index::<i64>(0)?);
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tracing::debug!(claimed = ids.len(), skip_locked = lock, "outbox deliveries claimed");
    outbox_deliveries::Entity::find()
        .filter(outbox_deliveries::Column::Id.is_in(ids))
        .order_by_asc(outbox_deliveries::Column::Id)
        .all(&core.db)
        .await
}

/// `$1` lease end, `$2` now, `$3` batch size, `$4` now (the outer re-check).
const POSTGRES_CLAIM: &str = r#"
UPDATE outbox_deliveries SET lease_until = $1
WHERE id IN (
    SELECT d.id FROM outbox_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= $2
      AND (d.lease_until IS NULL OR d.lease_until < $2)
      AND NOT EXISTS (
          SELECT 1 FROM outbox_deliveries e
          WHERE e.subscriber_id = d.subscriber_id AND e.order_id = d.order_id
            AND e.status = 'pending' AND e.outbox_id < d.outbox_id)
      AND NOT EXISTS (SELECT 1 FROM subscribers s
          WHERE s.id = d.subscriber_id AND (s.paused OR NOT s.enabled))
    ORDER BY d.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
  AND (lease_until IS NULL OR lease_until < $4)
RETURNING id"#;

const SQLITE_CLAIM: &str = r#"
UPDATE outbox_deliveries SET lease_until = ?
WHERE id IN (
    SELECT d.id FROM outbox_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= ?
      AND (d.lease_until IS NULL OR d.lease_until < ?)
      AND NOT EXISTS (
          SELECT 1 FROM outbox_deliveries e
          WHERE e.subscriber_id = d.subscriber_id AND e.order_id = d.order_id
            AND e.status = 'pending' AND e.outbox_id < d.outbox_id)
      AND NOT EXISTS (SELECT 1 FROM subscribers s
          WHERE s.id = d.subscriber_id AND (s.paused OR NOT s.enabled))
    ORDER BY d.id
    LIMIT ?)
  AND (lease_until IS NULL OR lease_until < ?)
RETURNING id"#;

async fn deliver_all(core: &RelayCore, claimed: Vec<outbox_deliveries::Model>) -> Result<(), DbErr> {
    let outbox_ids: Vec<i64> = claimed.iter().map(|d| d.outbox_id).collect();
    let events: HashMap<i64, outbox::Model> = outbox::Entity::find()
        .filter(outbox::Column::Id.is_in(outbox_ids))
        .all(&core.db)
        .await?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let subscribers: HashMap<String, subscribers::Model> = subscribers::Entity::find()
        .all(&core.db)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    // Rotated-out secrets still in their overlap sign beside the current one.
    let previous = super::subscribers::previous_secrets(&core.db, Utc::now()).await?;
    let results: Vec<(outbox_deliveries::Model, Attempt)> = futures::stream::iter(claimed)
        .map(|delivery| {
            let event = events.get(&delivery.outbox_id);
            let subscriber = subscribers.get(&delivery.subscriber_id);
            let previous = subscriber
                .and_then(|s| previous.get(&s.id))
                .map(Vec::as_slice)
                .unwrap_or_default();
            async move {
                let attempt = match (event, subscriber) {
                    // Again at delivery: a configured subscriber's scope may have narrowed
                    // since the row was fanned out. Another merchant's event never goes out.
                    (Some(event), Some(subscriber)) if !subscriber.may_receive(&event.merchant_id) => Attempt::unsent(
                        Failure::Final("the event is outside the subscriber's merchant scope".to_owned()),
                    ),
                    (Some(event), Some(subscriber)) => deliver(core, event, subscriber, previous).await,
                    _ => Attempt::unsent(Failure::Retry("subscriber or event no longer exists".to_owned())),
                };
                (delivery, attempt)
            }
        })
        .buffer_unordered(core.settings.concurrency.max(1))
        .collect()
        .await;
    let now = Utc::now();
    let log: Vec<delivery_attempts::ActiveModel> = results
        .iter()
        .map(|(delivery, attempt)| attempt.row(delivery, now))
        .collect();
    // One statement for the cycle's log (a row binds 9 values).
    for chunk in log.chunks(DELIVERY_ROWS_PER_INSERT) {
        delivery_attempts::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&core.db)
            .await?;
    }
    let mut succeeded: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    for (delivery, attempt) in results {
        if matches!(attempt.result, Err(Failure::Gone(_))) && !gone.contains(&delivery.subscriber_id) {
            gone.push(delivery.subscriber_id.clone());
        }
        let is_webhook = subscribers
            .get(&delivery.subscriber_id)
            .is_some_and(|s| s.kind == SubscriberKind::Webhook);
        if is_webhook {
            let list = if attempt.result.is_ok() {
                &mut succeeded
            } else {
                &mut failed
            };
            if !list.contains(&delivery.subscriber_id) {
                list.push(delivery.subscriber_id.clone());
            }
        }
        record(core, &delivery, attempt.result).await?;
    }
    failed.retain(|id| !succeeded.contains(id));
    for id in &gone {
        disable(core, id, "the receiver answered 410 Gone".to_owned(), now).await?;
    }
    health(core, &succeeded, &failed, now).await
}

/// Keeps each webhook's failure record: a success clears it, a failure starts it, and one that
/// has lasted `disable_after_failing` disables the subscriber (its deliveries then wait).
async fn health(core: &RelayCore, succeeded: &[String], failed: &[String], now: DateTime<Utc>) -> Result<(), DbErr> {
    if !succeeded.is_empty() {
        subscribers::Entity::update_many()
            .col_expr(
                subscribers::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(subscribers::Column::Id.is_in(succeeded.to_vec()))
            .filter(subscribers::Column::FailingSince.is_not_null())
            .exec(&core.db)
            .await?;
    }
    if failed.is_empty() {
        return Ok(());
    }
    subscribers::Entity::update_many()
        .col_expr(subscribers::Column::FailingSince, Expr::value(now))
        .filter(subscribers::Column::Id.is_in(failed.to_vec()))
        .filter(subscribers::Column::FailingSince.is_null())
        .exec(&core.db)
        .await?;
    let cutoff = now
        - chrono::Duration::from_std(core.settings.disable_after_failing).unwrap_or_else(|_| chrono::Duration::days(3));
    let overdue = subscribers::Entity::find()
        .filter(subscribers::Column::Id.is_in(failed.to_vec()))
        .filter(subscribers::Column::Enabled.eq(true))
        .filter(subscribers::Column::FailingSince.lte(cutoff))
        .all(&core.db)
        .await?;
    for subscriber in overdue {
        let since = subscriber.failing_since.unwrap_or(now);
        disable(
            core,
            &subscriber.id,
            format!("every delivery failed since {}", since.to_rfc3339()),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Disables a webhook subscriber, keeping it and its pending deliveries for an operator.
async fn disable(core: &RelayCore, id: &str, reason: String, now: DateTime<Utc>) -> Result<(), DbErr> {
    let updated = subscribers::Entity::update_many()
        .col_expr(subscribers::Column::Enabled, Expr::value(false))
        .col_expr(subscribers::Column::DisabledAt, Expr::value(now))
        .col_expr(subscribers::Column::DisabledReason, Expr::value(reason.clone()))
        .filter(subscribers::Column::Id.eq(id))
        .filter(subscribers::Column::Enabled.eq(true))
        .exec(&core.db)
        .await?;
    if updated.rows_affected > 0 {
        tracing::warn!(subscriber_id = %id, reason = %reason, "webhook subscriber disabled");
        announce_disabled(core, id, &reason, now).await?;
    }
    Ok(())
}

/// Tells the merchant's other endpoints (enabled, not paused webhooks) that `id` was disabled:
/// a signed `webhook_endpoint.disabled` event, sent once now, outside the outbox (not queued,
/// not retried), whatever event types they chose. A global subscriber has no merchant to tell:
/// the metric and the console's banner tell the operators.
async fn announce_disabled(core: &RelayCore, id: &str, reason: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    let Some(disabled) = subscribers::Entity::find_by_id(id.to_owned()).one(&core.db).await? else {
        return Ok(());
    };
    let Some(merchant) = disabled.merchant_id.clone() else {
        return Ok(());
    };
    let others = subscribers::Entity::find()
        .filter(subscribers::Column::MerchantId.eq(merchant.clone()))
        .filter(subscribers::Column::Kind.eq(SubscriberKind::Webhook))
        .filter(subscribers::Column::Enabled.eq(true))
        .filter(subscribers::Column::Paused.eq(false))
        .filter(subscribers::Column::Id.ne(id))
        .all(&core.db)
        .await?;
    if others.is_empty() {
        return Ok(());
    }
    let previous = super::subscribers::previous_secrets(&core.db, now).await?;
    for other in others {
        let event_id = uuid::Uuid::new_v4();
        let payload = serde_json::json!({
            "event_id": event_id,
            "type": "webhook_endpoint.disabled",
            "occurred_at": now,
            "merchant_id": merchant,
            "endpoint_id": disabled.id,
            "url": disabled.url,
            "reason": reason,
        })
        .to_string();
        let secrets = previous.get(&other.id).cloned().unwrap_or_default();
        let attempt = post_webhook(
            &core.http,
            core.settings.webhook_timeout,
            core.settings.allow_private_targets,
            &other,
            &secrets,
            &event_id.to_string(),
            &payload,
        )
        .await;
        tracing::info!(subscriber_id = %other.id, disabled = %id, status = ?attempt.status_code, delivered = attempt.result.is_ok(), "a disabled endpoint announced to its merchant's other endpoint");
    }
    Ok(())
}

/// Longest part of a receiver's answer kept in the delivery log.
const RESPONSE_BODY_MAX_BYTES: usize = 1024;

/// One attempt: its outcome and what the delivery log keeps of it.
struct Attempt {
    result: Result<(), Failure>,
    status_code: Option<u16>,
    latency: Duration,
    response_body: Option<String>,
}

impl Attempt {
    /// Nothing was sent.
    fn unsent(failure: Failure) -> Self {
        Self {
            result: Err(failure),
            status_code: None,
            latency: Duration::ZERO,
            response_body: None,
        }
    }

    fn row(&self, delivery: &outbox_deliveries::Model, now: DateTime<Utc>) -> delivery_attempts::ActiveModel {
        let error = match &self.result {
            Ok(()) => None,
            Err(
                Failure::Retry(error) | Failure::RetryAfter(error, _) | Failure::Gone(error) | Failure::Final(error),
            ) => Some(error.clone()),
        };
        delivery_attempts::ActiveModel {
            id: NotSet,
            delivery_id: Set(delivery.id),
            outbox_id: Set(delivery.outbox_id),
            subscriber_id: Set(delivery.subscriber_id.clone()),
            attempted_at: Set(now),
            status_code: Set(self.status_code.map(i32::from)),
            latency_ms: Set(i64::try_from(self.latency.as_millis()).unwrap_or(i64::MAX)),
            response_body: Set(self.response_body.clone()),
            error: Set(error),
        }
    }
}

/// The first [`RESPONSE_BODY_MAX_BYTES`] of an answer, read no further.
async fn body_prefix(mut response: reqwest::Response) -> Option<String> {
    let mut kept: Vec<u8> = Vec::new();
    while kept.len() < RESPONSE_BODY_MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    kept.truncate(RESPONSE_BODY_MAX_BYTES);
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

async fn deliver(
    core: &RelayCore,
    event: &outbox::Model,
    subscriber: &subscribers::Model,
    previous_secrets: &[String],
) -> Attempt {
    // Its own trace: the event was committed earlier, by a request or a pass long finished.
    let span = tracing::info_span!(
        target: crate::trace::TARGET,
        parent: None,
        "webhook delivery",
        event_type = %event.event_type,
        subscriber = %subscriber.id,
        kind = ?subscriber.kind,
        outcome = tracing::field::Empty,
        status_code = tracing::field::Empty,
    );
    let attempt = deliver_traced(core, event, subscriber, previous_secrets)
        .instrument(span.clone())
        .await;
    span.record("outcome", if attempt.result.is_ok() { "delivered" } else { "failed" });
    if let Some(code) = attempt.status_code {
        span.record("status_code", code);
    }
    attempt
}

async fn deliver_traced(
    core: &RelayCore,
    event: &outbox::Model,
    subscriber: &subscribers::Model,
    previous_secrets: &[String],
) -> Attempt {
    match subscriber.kind {
        SubscriberKind::Webhook => {
            post_webhook(
                &core.http,
                core.settings.webhook_timeout,
                core.settings.allow_private_targets,
                subscriber,
                previous_secrets,
                &event.event_id.to_string(),
                &event.payload,
            )
            .await
        }
        SubscriberKind::Amqp => {
            let started = std::time::Instant::now();
            let result = match &core.amqp {
                Some(sink) => sink
                    .publish(&event.event_id.to_string(), &event.event_type, event.payload.as_bytes())
                    .await
                    .map_err(|err| Failure::Retry(err.to_string())),
                None => Err(Failure::Retry(
                    "the amqp sink is not configured on this node".to_owned(),
                )),
            };
            Attempt {
                result,
                latency: started.elapsed(),
                status_code: None,
                response_body: None,
            }
        }
    }
}

/// One signed POST of `payload` to a webhook subscriber, under `event_id`, with its custom
/// headers; the target is checked again first.
async fn post_webhook(
    http: &reqwest::Client,
    timeout: Duration,
    allow_private_targets: bool,
    subscriber: &subscribers::Model,
    previous_secrets: &[String],
    event_id: &str,
    payload: &str,
) -> Attempt {
    // Again at delivery: an address literal never reaches the resolver's check.
    if let Err(problem) = super::target::check_url(&subscriber.url, allow_private_targets) {
        return Attempt::unsent(Failure::Retry(format!("target refused: {problem}")));
    }
    let secrets: Vec<&str> = std::iter::once(subscriber.secret.as_deref().unwrap_or_default())
        .chain(previous_secrets.iter().map(String::as_str))
        .collect();
    let timestamp = Utc::now().timestamp();
    let headers = match signed_headers(
        subscriber.signature_scheme,
        &secrets,
        event_id,
        timestamp,
        payload.as_bytes(),
    ) {
        Ok(headers) => headers,
        Err(problem) => return Attempt::unsent(Failure::Retry(format!("cannot sign: {problem}"))),
    };
    let mut request = crate::trace::propagate(http.post(&subscriber.url))
        .timeout(timeout)
        .header("content-type", "application/json");
    // The subscriber's own headers first: none of them can be a signature header.
    for (name, value) in super::headers::CustomHeaders::from_column(subscriber.headers.as_deref()) {
        request = request.header(name, value);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let started = std::time::Instant::now();
    let response = match request.body(payload.to_owned()).send().await {
        Ok(response) => response,
        Err(err) => {
            return Attempt {
                latency: started.elapsed(),
                ..Attempt::unsent(Failure::Retry(format!("request failed: {err}")))
            }
        }
    };
    let latency = started.elapsed();
    let status = response.status();
    let result = if status.is_success() {
        Ok(())
    } else {
        Err(failure_of(status, response.headers()))
    };
    Attempt {
        result,
        status_code: Some(status.as_u16()),
        latency,
        response_body: body_prefix(response).await,
    }
}

/// What a test ping got back: the receiver's status (none when nothing answered), how long it
/// took, and why it failed, if it did.
#[derive(Clone, Debug)]
pub struct PingAnswer {
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

/// Sends a signed `ping` event to a webhook subscriber now, outside the outbox (nothing is
/// queued or retried), signed as its deliveries are.
pub async fn ping(
    http: &reqwest::Client,
    settings: &RelaySettings,
    subscriber: &subscribers::Model,
    previous_secrets: &[String],
) -> PingAnswer {
    let event_id = uuid::Uuid::new_v4();
    let payload = serde_json::json!({
        "event_id": event_id,
        "type": "ping",
        "occurred_at": Utc::now(),
        "merchant_id": subscriber.merchant_id,
        "endpoint_id": subscriber.id,
    })
    .to_string();
    let attempt = post_webhook(
        http,
        settings.webhook_timeout,
        settings.allow_private_targets,
        subscriber,
        previous_secrets,
        &event_id.to_string(),
        &payload,
    )
    .await;
    let error = match attempt.result {
        Ok(()) => None,
        Err(Failure::Retry(error) | Failure::RetryAfter(error, _) | Failure::Gone(error) | Failure::Final(error)) => {
            Some(error)
        }
    };
    PingAnswer {
        status_code: attempt.status_code,
        latency: attempt.latency,
        error,
    }
}

/// Why a delivery did not go through.
enum Failure {
    /// Tried again on the retry schedule, dead once it is spent.
    Retry(String),
    /// Like `Retry`, no sooner than the receiver asked (`Retry-After` on a 429 or 503).
    RetryAfter(String, Duration),
    /// The receiver answered 410 Gone: dead at once, and the subscriber is disabled.
    Gone(String),
    /// Dead at once: trying again cannot help.
    Final(String),
}

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for longer.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// A `Retry-After` value: delta-seconds or an HTTP date, capped at [`RETRY_AFTER_MAX`].
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// What a receiver's non-2xx answer means for the delivery.
fn failure_of(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> Failure {
    let error = format!("answered {status}");
    match status {
        reqwest::StatusCode::GONE => Failure::Gone(error),
        reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::SERVICE_UNAVAILABLE => headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, Utc::now()))
            .map_or(Failure::Retry(error.clone()), |wait| Failure::RetryAfter(error, wait)),
        _ => Failure::Retry(error),
    }
}

async fn record(
    core: &RelayCore,
    delivery: &outbox_deliveries::Model,
    outcome: Result<(), Failure>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let attempts = delivery.attempts.saturating_add(1);
    let update = outbox_deliveries::Entity::update_many()
        .col_expr(outbox_deliveries::Column::Attempts, Expr::value(attempts))
        .col_expr(
            outbox_deliveries::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(outbox_deliveries::Column::Id.eq(delivery.id))
        .filter(outbox_deliveries::Column::Status.eq(DeliveryStatus::Pending));
    match outcome {
        Ok(()) => {
            update
                .col_expr(
                    outbox_deliveries::Column::Status,
                    Expr::value(DeliveryStatus::Delivered),
                )
                .col_expr(outbox_deliveries::Column::DeliveredAt, Expr::value(now))
                .col_expr(
                    outbox_deliveries::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .exec(&core.db)
                .await?;
            tracing::debug!(delivery_id = delivery.id, attempts, "event delivered");
            mark_published_if_done(core, delivery.outbox_id, now).await?;
        }
        Err(failure) => {
            let (error, retryable, at_least) = match failure {
                Failure::Retry(error) => (error, true, Duration::ZERO),
                Failure::RetryAfter(error, wait) => (error, true, wait),
                Failure::Gone(error) | Failure::Final(error) => (error, false, Duration::ZERO),
            };
            let spent =
                !retryable || usize::try_from(attempts).unwrap_or(usize::MAX) > core.settings.retry_schedule.len();
            if spent {
                tracing::warn!(delivery_id = delivery.id, attempts, error = %error, "delivery is dead");
                update
                    .col_expr(outbox_deliveries::Column::Status, Expr::value(DeliveryStatus::Dead))
                    .col_expr(outbox_deliveries::Column::LastError, Expr::value(error))
                    .exec(&core.db)
                    .await?;
                mark_published_if_done(core, delivery.outbox_id, now).await?;
            } else {
                let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
                let pause = core
                    .settings
                    .retry_schedule
                    .get(index)
                    .copied()
                    .unwrap_or(Duration::from_secs(60));
                // The schedule's pause, or longer when the receiver asked for it.
                let wait = jitter(pause).max(at_least);
                let next = now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(60));
                tracing::info!(delivery_id = delivery.id, attempts, error = %error, retry_in = ?pause, "delivery failed; will retry");
                update
                    .col_expr(outbox_deliveries::Column::NextAttemptAt, Expr::value(next))
                    .col_expr(outbox_deliveries::Column::LastError, Expr::value(error))
                    .exec(&core.db)
                    .await?;
            }
        }
    }
    Ok(())
}

/// ±10 %: subscribers that failed together do not retry together.
fn jitter(pause: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    pause.mul_f64(factor)
}

async fn mark_published_if_done(core: &RelayCore, outbox_id: i64, now: DateTime<Utc>) -> Result<(), DbErr> {
    let pending = outbox_deliveries::Entity::find()
        .filter(outbox_deliveries::Column::OutboxId.eq(outbox_id))
        .filter(outbox_deliveries::Column::Status.eq(DeliveryStatus::Pending))
        .count(&core.db)
        .await?;
    if pending == 0 {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(now))
            .filter(outbox::Column::Id.eq(outbox_id))
            .filter(outbox::Column::PublishedAt.is_null())
            .exec(&core.db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(batch_size: u64, lease_seconds: u64, timeout_seconds: u64, concurrency: usize) -> RelaySettings {
        RelaySettings {
            batch_size,
            sweep_interval: Duration::from_secs(5),
            coalesce: Duration::from_millis(20),
            lease: Duration::from_secs(lease_seconds),
            retry_schedule: vec![Duration::from_secs(10)],
            webhook_timeout: Duration::from_secs(timeout_seconds),
            concurrency,
            allow_private_targets: false,
            rotation_overlap_default: Duration::from_secs(86_400),
            rotation_overlap_min: Duration::from_secs(60),
            rotation_overlap_max: Duration::from_secs(604_800),
            disable_after_failing: Duration::from_secs(259_200),
            replay_max_events: 10_000,
            webhooks: Vec::new(),
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_capped() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(retry_after("Mon, 30 Nov 2026 00:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("999999999", now), Some(RETRY_AFTER_MAX));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn a_cycle_claims_only_what_finishes_inside_the_lease() {
        // The shipped defaults: 16 in flight, 10 s each, 60 s lease: 5 rounds (one kept as
        // margin) of 16 = 80, below the batch of 100 (which took up to 70 s).
        assert_eq!(settings(100, 60, 10, 16).claim_limit(), 80);
        assert_eq!(
            settings(10, 600, 10, 16).claim_limit(),
            10,
            "the batch size still bounds it"
        );
        assert_eq!(settings(10, 2, 1, 1).claim_limit(), 1);
        assert_eq!(settings(10, 1, 1, 4).claim_limit(), 4, "at least one round");
        assert!(
            settings(10, 1, 1, 4).validate("outbox").is_err(),
            "but such a lease is refused"
        );
        assert!(settings(100, 60, 10, 16).validate("outbox").is_ok());
        // AMQP publishes run one at a time, up to 6 s each: 9 fit a 60 s lease with margin.
        assert_eq!(super::super::amqp::publishes_within(Duration::from_secs(60)), 9);
        assert_eq!(super::super::amqp::publishes_within(Duration::from_secs(5)), 1);
    }
}
