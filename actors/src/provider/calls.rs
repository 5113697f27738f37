//! How one provider is called: its call budget, read from `providers.<name>.calls`. Apart from
//! the actor, so a provider's configuration section can name it without depending on the actor.

use std::time::Duration;

use crate::retry::RetrySchedule;
use crate::settings::{check, Invalid};

/// How one provider is called: the `providers.<name>.calls` table of the configuration, read
/// straight into this type.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCallSettings {
    /// Limit of one call to the provider, retries not included.
    #[serde(rename = "timeout_milliseconds", with = "crate::settings::millis")]
    pub timeout: Duration,
    /// Calls in flight at once; more wait their turn (a payment attempt is refused instead).
    pub max_concurrency: usize,
    /// Calls started per second (the burst is the same number).
    pub rate_per_second: u32,
    /// The share (1..=100) of the rate and of the calls in flight that background calls
    /// (expiry, refunds, bills) may take; the rest is always free for payment attempts.
    #[serde(default = "default_background_share")]
    pub background_share_percent: u32,
    /// Quick retries of a transient failure inside one request.
    pub retries: u32,
    /// Pause before the first quick retry...
    #[serde(rename = "retry_min_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_min_delay: Duration,
    /// ...and the longest one.
    #[serde(rename = "retry_max_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_max_delay: Duration,
    /// Failures in a row that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker refuses calls before one is tried again.
    #[serde(rename = "breaker_open_seconds", with = "crate::settings::seconds")]
    pub breaker_open_for: Duration,
}

impl ProviderCallSettings {
    /// The backoff of the quick retries.
    pub fn retry(&self) -> RetrySchedule {
        RetrySchedule {
            min_delay: self.retry_min_delay,
            max_delay: self.retry_max_delay,
        }
    }

    /// # Errors
    /// The first unusable value, named by its key under `section` (`providers.wechat.calls`).
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(
            !self.timeout.is_zero(),
            section,
            "timeout_milliseconds",
            "must be positive",
        )?;
        check(self.max_concurrency > 0, section, "max_concurrency", "must be positive")?;
        check(self.rate_per_second > 0, section, "rate_per_second", "must be positive")?;
        check(
            (1..=100).contains(&self.background_share_percent),
            section,
            "background_share_percent",
            "must be between 1 and 100",
        )?;
        check(
            self.retries == 0 || (!self.retry_min_delay.is_zero() && self.retry_min_delay <= self.retry_max_delay),
            section,
            "retry_min_delay_milliseconds",
            "must be positive and not above retry_max_delay_milliseconds when retries are on",
        )?;
        check(
            self.breaker_failure_threshold > 0,
            section,
            "breaker_failure_threshold",
            "must be positive",
        )?;
        check(
            !self.breaker_open_for.is_zero(),
            section,
            "breaker_open_seconds",
            "must be positive",
        )
    }
}

fn default_background_share() -> u32 {
    80
}
