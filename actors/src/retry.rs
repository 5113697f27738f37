//! The one retry schedule of the engine: exponential backoff with jitter, from `backon`.
//!
//! Used in two places: the provider actor's quick in-call retries of transient failures, and
//! the order actor's slower re-runs of the expiry rule while a provider is down.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

#[derive(Clone, Copy, Debug)]
pub struct RetrySchedule {
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetrySchedule {
    /// The delay before retry number `attempt` (0-based): `min_delay * 2^attempt`, capped at
    /// `max_delay`, with random jitter so many orders retrying together spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut delay = self.min_delay;
        for _ in 0..=attempt.min(32) {
            match backoff.next() {
                Some(next) => delay = next,
                None => break,
            }
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap_with_jitter() {
        let schedule = RetrySchedule {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        let first = schedule.delay(0);
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let third = schedule.delay(2);
        assert!(
            third >= Duration::from_millis(400) && third <= Duration::from_millis(800),
            "{third:?}"
        );
        for attempt in 5..40 {
            // Jitter may add up to the delay again on top of the cap.
            assert!(schedule.delay(attempt) <= Duration::from_secs(4), "attempt {attempt}");
        }
    }
}
