//! The reconciliation worker: one per node. Every poll it makes sure yesterday's run exists
//! for each enabled provider once the configured hour (China time) has passed, and steps the
//! runs that are due (a bill not published yet is asked for again later). Runs are claimed by
//! a guarded update, so nodes never step one run at once.

use std::time::Duration;

use chrono::{NaiveTime, Utc};
use sea_orm::EntityTrait;

use super::{china_today, claim, due, ensure_run, step};
use crate::engine::Engine;
use crate::error::OrderError;
use crate::gateway::wechat::transformers::china_offset;
use crate::settings::{check, Invalid};
use crate::store::Operator;

/// The `reconciliation` table of the configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    /// Reconcile yesterday's bills every day by itself (runs can always be started by hand).
    pub daily: bool,
    /// China time (`HH:MM`) after which yesterday's bills are asked for: the providers publish
    /// them in the morning (WeChat from about 08:00, Alipay before 09:00).
    #[serde(with = "hour_minute")]
    pub run_after: NaiveTime,
    /// How often the worker looks for due runs.
    #[serde(rename = "poll_interval_milliseconds", with = "crate::settings::millis")]
    pub poll_interval: Duration,
    /// A bill not published yet (or a provider failure) is asked for again after this long.
    #[serde(rename = "retry_interval_seconds", with = "crate::settings::seconds")]
    pub retry_interval: Duration,
    /// A day whose bill is still not published this many days later has none: it is compared
    /// as an empty bill (Alipay answers "no bill" for a day without trades, exactly as for a
    /// bill not made yet).
    pub empty_after_days: u32,
}

mod hour_minute {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map_err(|_| serde::de::Error::custom(format!("expected HH:MM (China time), got {text:?}")))
    }
}

impl ReconcileSettings {
    /// # Errors
    /// The first unusable value, named by its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(
            !self.poll_interval.is_zero(),
            section,
            "poll_interval_milliseconds",
            "must be positive",
        )?;
        check(
            !self.retry_interval.is_zero(),
            section,
            "retry_interval_seconds",
            "must be positive",
        )
    }
}

/// The reconciliation worker's cycles: every `reconciliation.poll_interval_milliseconds`, on
/// its own thread ([`crate::poller::Poller`]).
pub struct ReconcileWorker {
    engine: Engine,
    settings: ReconcileSettings,
}

impl ReconcileWorker {
    /// The reconciliation worker's poller, not yet started.
    pub fn poller(engine: Engine, settings: ReconcileSettings) -> crate::poller::Poller {
        let poll = settings.poll_interval;
        crate::poller::Poller::new(Self { engine, settings }, poll, false)
    }
}

#[async_trait::async_trait]
impl crate::poller::Job for ReconcileWorker {
    fn name(&self) -> &'static str {
        "reconciliation"
    }

    async fn cycle(&self) -> Result<bool, String> {
        cycle(&self.engine, &self.settings)
            .await
            .map(|()| false)
            .map_err(|err| format!("{err:?}"))
    }
}

async fn cycle(engine: &Engine, settings: &ReconcileSettings) -> Result<(), OrderError> {
    let now = Utc::now();
    if settings.daily && now.with_timezone(&china_offset()).time() >= settings.run_after {
        let yesterday = china_today(now) - chrono::Duration::days(1);
        // The deployment's configured providers, and every merchant account still carrying
        // trades (enabled, or disabled lately).
        let mut routes: Vec<crate::provider::Route> = engine
            .providers()
            .into_iter()
            .map(crate::provider::Route::configured)
            .collect();
        routes.extend(crate::store::accounts::reconciled_routes(engine.db()).await?);
        for route in &routes {
            ensure_run(engine.db(), route, yesterday, &Operator::System, false).await?;
        }
    }
    let retry = chrono::Duration::from_std(settings.retry_interval).unwrap_or(chrono::Duration::minutes(30));
    for run in due(engine.db(), Utc::now()).await? {
        // Held for as long as a retry: a node that dies mid-run only delays it.
        if !claim(engine.db(), &run, Utc::now() + retry).await? {
            continue;
        }
        if let Err(err) = step(engine, &run, settings).await {
            tracing::warn!(run_id = run.id, error.cause_chain = ?err, "reconciliation step failed; it is due again later");
        }
    }
    Ok(())
}

/// Starts (or starts again) the run of `route`'s bill of `date` now, on this node: the admin
/// route's way in. Returns once the step is done (the bill compared, not ready, or refused),
/// this node's or, when a worker took the due run first, that worker's.
///
/// # Errors
/// A database error.
pub async fn run_now(
    engine: &Engine,
    route: &crate::provider::Route,
    date: chrono::NaiveDate,
    operator: &Operator,
    settings: &ReconcileSettings,
) -> Result<entities::reconciliation_runs::Model, OrderError> {
    let run = ensure_run(engine.db(), route, date, operator, true).await?;
    let retry = chrono::Duration::from_std(settings.retry_interval).unwrap_or(chrono::Duration::minutes(30));
    let find = || async {
        entities::reconciliation_runs::Entity::find_by_id(run.id)
            .one(engine.db())
            .await?
            .ok_or(OrderError::NotFound)
    };
    if claim(engine.db(), &run, Utc::now() + retry).await? {
        step(engine, &run, settings).await?;
        return find().await;
    }
    // A worker (this node's or another's) took the run first: its step ends by writing the run
    // (completed, failed, or waiting again), which moves `updated_at`; the answer is that.
    let limit = tokio::time::Instant::now() + crate::gateway::bill::BILL_TIMEOUT + std::time::Duration::from_secs(10);
    loop {
        let now = find().await?;
        if now.status != super::WAITING || now.updated_at != run.updated_at || tokio::time::Instant::now() >= limit {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
