//! The call budget of one provider: its rate limit and its bound on calls in flight, shared by
//! two lanes.
//!
//! - **Attempts** (a buyer waiting for a QR code) are admitted now or never: when the budget is
//!   spent the caller gets [`GatewayError::Busy`] at once, with the time after which a retry
//!   can succeed, instead of waiting out the call timeout (the HTTP facade answers `503` with
//!   `Retry-After`). Admission happens before anything is written.
//! - **Background** calls (expiry queries and closes, refunds, bills) wait their turn, first in
//!   their own lane, which holds at most `background_share_percent` of the rate and of the
//!   calls in flight, then for the shared budget. However many expiry passes are queued, the
//!   rest of the budget stays free for attempts.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProviderCallSettings;
use crate::gateway::GatewayError;

/// When a full concurrency bound frees a slot is unknown; a client is told to come back after
/// this long.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The budget of one provider, shared by its actor and every client of it.
pub struct CallLimits {
    rate: DefaultDirectRateLimiter,
    permits: Arc<Semaphore>,
    background_rate: DefaultDirectRateLimiter,
    background_permits: Arc<Semaphore>,
}

/// The right to make one call (its retries included); holds its place in the bound on calls
/// in flight until dropped.
#[derive(Debug)]
pub struct Admission {
    _shared: Option<OwnedSemaphorePermit>,
    _lane: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// For a client with no budget of its own (a test double).
    pub fn unlimited() -> Self {
        Self {
            _shared: None,
            _lane: None,
        }
    }
}

impl CallLimits {
    pub fn new(settings: &ProviderCallSettings) -> Self {
        let share = u64::from(settings.background_share_percent.clamp(1, 100));
        let background_rate = u64::from(settings.rate_per_second) * share / 100;
        let background_concurrency = u64::try_from(settings.max_concurrency).unwrap_or(u64::MAX) * share / 100;
        Self {
            rate: limiter(settings.rate_per_second),
            permits: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            background_rate: limiter(u32::try_from(background_rate).unwrap_or(u32::MAX)),
            background_permits: Arc::new(Semaphore::new(
                usize::try_from(background_concurrency).unwrap_or(usize::MAX).max(1),
            )),
        }
    }

    /// Admits a payment attempt now, or says how long until the budget has room again.
    ///
    /// # Errors
    /// [`GatewayError::Busy`] when the rate limit or the bound on calls in flight is reached.
    pub fn admit(&self) -> Result<Admission, GatewayError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Busy {
                retry_after: BUSY_RETRY_AFTER,
            })?;
        if let Err(not_until) = self.rate.check() {
            return Err(GatewayError::Busy {
                retry_after: not_until.wait_time_from(self.rate.clock().now()),
            });
        }
        Ok(Admission {
            _shared: Some(permit),
            _lane: None,
        })
    }

    /// Waits for a background call's turn: its own lane first, then the shared budget.
    ///
    /// # Errors
    /// [`GatewayError::Crashed`] if the budget was torn down (the actor is stopping).
    pub async fn wait(&self) -> Result<Admission, GatewayError> {
        self.background_rate.until_ready().await;
        let lane = self
            .background_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::Crashed)?;
        self.rate.until_ready().await;
        let shared = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::Crashed)?;
        Ok(Admission {
            _shared: Some(shared),
            _lane: Some(lane),
        })
    }

    /// A quick retry within an admitted call waits for the rate limit only: the call already
    /// holds its place among the calls in flight.
    pub async fn retry_ready(&self) {
        self.rate.until_ready().await;
    }
}

fn limiter(per_second: u32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(
        NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate_per_second: u32, max_concurrency: usize) -> ProviderCallSettings {
        ProviderCallSettings {
            timeout: Duration::from_secs(1),
            max_concurrency,
            rate_per_second,
            background_share_percent: 50,
            retries: 0,
            retry_min_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(10),
            breaker_failure_threshold: 5,
            breaker_open_for: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn an_attempt_past_the_rate_is_refused_with_the_wait_until_the_next_slot() {
        let limits = CallLimits::new(&settings(2, 10));
        let _first = limits.admit().expect("within the burst");
        let _second = limits.admit().expect("within the burst");

        let refused = limits.admit().expect_err("the burst is spent");

        let GatewayError::Busy { retry_after } = refused else {
            panic!("{refused:?}")
        };
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500),
            "{retry_after:?}"
        );
    }

    #[tokio::test]
    async fn an_attempt_past_the_calls_in_flight_is_refused_until_one_ends() {
        let limits = CallLimits::new(&settings(1000, 1));
        let held = limits.admit().expect("the one slot");

        assert!(matches!(limits.admit(), Err(GatewayError::Busy { .. })));
        drop(held);
        assert!(limits.admit().is_ok());
    }

    #[tokio::test]
    async fn background_calls_leave_the_rest_of_the_budget_to_attempts() {
        let limits = Arc::new(CallLimits::new(&settings(1000, 4)));
        // Half of the 4 slots for background calls: two run, the third waits in its lane.
        let first = limits.wait().await.unwrap();
        let _second = limits.wait().await.unwrap();
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.wait().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third background call waits for its lane");

        let _attempt = limits.admit().expect("an attempt still gets a slot");
        let _another = limits.admit().expect("and another");
        assert!(matches!(limits.admit(), Err(GatewayError::Busy { .. })));

        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiting call runs once a background call ends")
            .unwrap()
            .unwrap();
    }
}
