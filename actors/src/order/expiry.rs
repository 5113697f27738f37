//! The expiry rule (seeds 000 and 001) as pure decisions, and its tunables.

use std::time::Duration;

use crate::retry::RetrySchedule;

/// Tunables of the expiry rule.
#[derive(Clone, Debug)]
pub struct ExpirySettings {
    /// Backoff between passes while a provider fails.
    pub retry: RetrySchedule,
    /// Failed passes before the order is marked `stuck`.
    pub retry_budget: u32,
    /// Pause between passes of a stuck order (it keeps trying until the provider is back).
    pub stuck_retry_interval: Duration,
    /// Wait before looking again at a trade in USERPAYING.
    pub userpaying_grace: Duration,
    /// USERPAYING re-checks before the trade is closed like an unpaid one.
    pub userpaying_max_rechecks: u32,
    /// Limit on one reply of a provider actor (its retries included).
    pub provider_reply_timeout: Duration,
    /// Limit on one reply of an order actor.
    pub actor_reply_timeout: Duration,
    /// Overdue orders re-armed at start-up fire at this rate, not all at once.
    pub overdue_per_second: u32,
    /// Arbiters (threads) the order actors are spread over.
    pub arbiters: usize,
    /// Allowance for the provider's clock when judging that its `time_expire` has passed.
    pub provider_clock_margin: Duration,
    /// Timer-driven expiry passes running at once; the rest wait their turn cheaply instead of
    /// all holding database work in flight when many deadlines fall together.
    pub max_concurrent_passes: usize,
}
