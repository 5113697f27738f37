//! A consecutive-failure circuit breaker.
//!
//! Closed: calls pass. After `failure_threshold` failures in a row it opens for `open_for`:
//! calls fail at once without touching the provider. Then one probe call is let through
//! (half-open); its success closes the breaker, its failure opens it again.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    open_for: Duration,
    consecutive_failures: u32,
    state: BreakerState,
    probe_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
            consecutive_failures: 0,
            state: BreakerState::Closed,
            probe_in_flight: false,
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now < until => false,
            BreakerState::Open { .. } | BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                if self.probe_in_flight {
                    false
                } else {
                    self.probe_in_flight = true;
                    true
                }
            }
        }
    }

    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.state = BreakerState::Closed;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.probe_in_flight = false;
        if self.state == BreakerState::HalfOpen || self.consecutive_failures >= self.failure_threshold {
            self.state = BreakerState::Open {
                until: now + self.open_for,
            };
        }
    }

    /// [`Self::on_success`], then the state it leaves.
    pub fn succeeded(&mut self) -> BreakerState {
        self.on_success();
        self.state
    }

    /// [`Self::on_failure`], then the state it leaves.
    pub fn failed(&mut self, now: Instant) -> BreakerState {
        self.on_failure(now);
        self.state
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.failure_threshold, self.open_for);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_probes_once() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(breaker.allow(now));
            breaker.on_failure(now);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.on_failure(now);
        assert!(!breaker.allow(now + Duration::from_secs(1)), "open: calls fail fast");

        let later = now + Duration::from_secs(11);
        assert!(breaker.allow(later), "one probe after the cool-down");
        assert!(!breaker.allow(later), "only one probe at a time");
        breaker.on_failure(later);
        assert!(
            !breaker.allow(later + Duration::from_secs(1)),
            "a failed probe opens again"
        );

        let much_later = later + Duration::from_secs(11);
        assert!(breaker.allow(much_later));
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow(much_later));
    }
}
