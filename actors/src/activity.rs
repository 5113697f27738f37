//! The activity rollup: a poller that keeps the dashboard's counts
//! ([`crate::store::activity`]) a few seconds behind the log, on every node (the cursor's
//! guard lets one node count each row; the others find nothing to do).

use std::time::Duration;

use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde::Deserialize;

use crate::store::activity::{roll_up, RollupStep};

/// `[dashboard]`: how the activity counts are kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivitySettings {
    /// How often the counts catch up with the log.
    #[serde(rename = "rollup_interval_milliseconds", with = "crate::settings::millis")]
    pub interval: Duration,
    /// How long after its stamp a logged change is counted: a transaction that commits later
    /// than this after stamping its rows is not counted.
    #[serde(rename = "settle_milliseconds", with = "crate::settings::millis")]
    pub settle: Duration,
    /// How often an open dashboard reloads its figures.
    #[serde(rename = "page_refresh_seconds", with = "crate::settings::seconds")]
    pub page_refresh: Duration,
}

impl ActivitySettings {
    /// # Errors
    /// A setting out of range.
    pub fn validate(&self) -> Result<(), crate::settings::Invalid> {
        use crate::settings::check;
        let within =
            |value: Duration, low: u64| value >= Duration::from_millis(low) && value <= Duration::from_secs(3600);
        check(
            within(self.interval, 50),
            "dashboard",
            "rollup_interval_milliseconds",
            "must be between 50 and 3600000",
        )?;
        check(
            within(self.settle, 100),
            "dashboard",
            "settle_milliseconds",
            "must be between 100 and 3600000",
        )?;
        check(
            (1..=3600).contains(&self.page_refresh.as_secs()),
            "dashboard",
            "page_refresh_seconds",
            "must be between 1 and 3600",
        )
    }
}

/// Log rows counted per cycle (a cycle that reads a full batch runs again at once).
const BATCH: u64 = 20_000;

/// One cycle: count what settled since the cursor.
pub struct ActivityRollup {
    db: DatabaseConnection,
    settle: Duration,
}

impl ActivityRollup {
    pub fn poller(db: DatabaseConnection, settings: &ActivitySettings) -> crate::poller::Poller {
        crate::poller::Poller::new(
            Self {
                db,
                settle: settings.settle,
            },
            settings.interval,
            true,
        )
    }
}

#[async_trait::async_trait]
impl crate::poller::Job for ActivityRollup {
    fn name(&self) -> &'static str {
        "activity"
    }

    async fn cycle(&self) -> Result<bool, String> {
        match roll_up(&self.db, Utc::now(), self.settle, BATCH).await {
            Ok(RollupStep::Counted { until, rows, more }) => {
                if more {
                    tracing::info!(counted_until = %until, rows, "activity counts catching up with the log");
                }
                Ok(more)
            }
            Ok(RollupStep::UpToDate | RollupStep::Raced) => Ok(false),
            Err(err) => Err(format!("{err:?}")),
        }
    }
}
