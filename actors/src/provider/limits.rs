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
//!   rest of the budget stays free for attempts (at least one call of it).
//!
//! In a cluster the configured budget is the cluster's; each node takes its share of it.

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
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
///
/// The configured budget is the deployment's: on a cluster node it is split over the live
/// nodes ([`BudgetShare`], set again by the cluster loop whenever they change), so N nodes send
/// no more than the configured rate to one merchant account between them.
pub struct CallLimits {
    settings: ProviderCallSettings,
    /// This node's lanes for its current share. Replaced (not resized) when the share changes:
    /// calls in flight keep their places in the old bounds, so for a moment after a change a
    /// node may have both in flight.
    lanes: RwLock<Arc<Lanes>>,
}

/// One node's share of a budget: its place among the live nodes (sorted by name), so every
/// node computes the same split and the shares add up to the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetShare {
    pub nodes: u32,
    /// This node's position among them, from 0.
    pub index: u32,
}

impl BudgetShare {
    /// A node alone: the whole budget.
    pub const WHOLE: Self = Self { nodes: 1, index: 0 };

    /// This node's part of `total`: an equal part, the remainder going to the first nodes; at
    /// least 1 (a node with no budget could not serve a single attempt).
    pub fn of(self, total: u32) -> u32 {
        let nodes = self.nodes.max(1);
        let extra = u32::from(self.index < total % nodes);
        (total / nodes + extra).max(1)
    }
}

/// The bounds of one node's share: shared by both lanes, and each lane's own.
struct Lanes {
    share: BudgetShare,
    rate: DefaultDirectRateLimiter,
    permits: Arc<Semaphore>,
    attempt_rate: DefaultDirectRateLimiter,
    attempt_permits: Arc<Semaphore>,
    background_rate: DefaultDirectRateLimiter,
    background_permits: Arc<Semaphore>,
}

impl Lanes {
    fn new(settings: &ProviderCallSettings, share: BudgetShare) -> Self {
        let percent = settings.background_share_percent.clamp(1, 100);
        let rate = split(share.of(settings.rate_per_second), percent);
        let concurrency = split(
            share.of(u32::try_from(settings.max_concurrency).unwrap_or(u32::MAX)),
            percent,
        );
        Self {
            share,
            rate: limiter(rate.shared),
            permits: Arc::new(Semaphore::new(usize::try_from(concurrency.shared).unwrap_or(1))),
            attempt_rate: limiter(rate.total),
            attempt_permits: Arc::new(Semaphore::new(usize::try_from(concurrency.total).unwrap_or(1))),
            background_rate: limiter(rate.background),
            background_permits: Arc::new(Semaphore::new(usize::try_from(concurrency.background).unwrap_or(1))),
        }
    }
}

/// One bound split between the lanes.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    /// The node's share: what payment attempts may take.
    total: u32,
    /// At most this much of it for background calls...
    background: u32,
    /// ...and both lanes together: the share, except for a share of one call (below).
    shared: u32,
}

/// Splits a share so that background calls take at most `percent` of it and never all of it:
/// at least one call is always left for payment attempts. A share of one call cannot be split
/// that way: background calls then get one of their own besides it (otherwise either the
/// expiry queries or the buyers would get nothing), the one place the budget is exceeded.
fn split(total: u32, percent: u32) -> Split {
    let total = total.max(1);
    let wanted = u64::from(total) * u64::from(percent) / 100;
    let background = u32::try_from(wanted)
        .unwrap_or(u32::MAX)
        .clamp(1, total.saturating_sub(1).max(1));
    Split {
        total,
        background,
        shared: total.max(background.saturating_add(1)),
    }
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
    /// The whole budget, until a [`BudgetShare`] is set.
    pub fn new(settings: &ProviderCallSettings) -> Self {
        Self {
            settings: settings.clone(),
            lanes: RwLock::new(Arc::new(Lanes::new(settings, BudgetShare::WHOLE))),
        }
    }

    fn lanes(&self) -> Arc<Lanes> {
        self.lanes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes this node's `share` of the configured budget (from now on; a no-op when it is the
    /// share already held).
    pub fn set_share(&self, share: BudgetShare) {
        let mut lanes = self.lanes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lanes.share != share {
            tracing::info!(
                nodes = share.nodes,
                rate_per_second = share.of(self.settings.rate_per_second),
                "provider call budget shared over the live nodes"
            );
            *lanes = Arc::new(Lanes::new(&self.settings, share));
        }
    }

    /// Admits a payment attempt now, or says how long until the budget has room again.
    ///
    /// # Errors
    /// [`GatewayError::Busy`] when the rate limit or the bound on calls in flight is reached.
    pub fn admit(&self) -> Result<Admission, GatewayError> {
        let lanes = self.lanes();
        let busy = |_| GatewayError::Busy {
            retry_after: BUSY_RETRY_AFTER,
        };
        let lane = lanes.attempt_permits.clone().try_acquire_owned().map_err(busy)?;
        let permit = lanes.permits.clone().try_acquire_owned().map_err(busy)?;
        for rate in [&lanes.attempt_rate, &lanes.rate] {
            if let Err(not_until) = rate.check() {
                return Err(GatewayError::Busy {
                    retry_after: not_until.wait_time_from(rate.clock().now()),
                });
            }
        }
        Ok(Admission {
            _shared: Some(permit),
            _lane: Some(lane),
        })
    }

    /// Waits for a background call's turn: its own lane first, then the shared budget.
    ///
    /// # Errors
    /// [`GatewayError::Crashed`] if the budget was torn down (the actor is stopping).
    pub async fn wait(&self) -> Result<Admission, GatewayError> {
        let lanes = self.lanes();
        lanes.background_rate.until_ready().await;
        let lane = lanes
            .background_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::Crashed)?;
        lanes.rate.until_ready().await;
        let shared = lanes
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
        let lanes = self.lanes();
        lanes.rate.until_ready().await;
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

    #[tokio::test]
    async fn with_a_budget_of_one_call_a_background_call_in_flight_still_leaves_one_for_an_attempt() {
        // Arrange: the smallest budget, an expiry query in flight.
        let limits = CallLimits::new(&settings(1, 1));
        let _background = limits.wait().await.expect("a background call runs");

        // Act
        let attempt = limits.admit();

        // Assert
        assert!(attempt.is_ok(), "{attempt:?}");
    }

    #[test]
    fn a_cluster_budget_is_split_over_the_live_nodes_and_adds_up_to_it() {
        for (total, nodes) in [(10, 3), (2, 2), (7, 1), (100, 7), (3, 5)] {
            let shares: Vec<u32> = (0..nodes).map(|index| BudgetShare { nodes, index }.of(total)).collect();
            let sum: u32 = shares.iter().sum();
            // Every node gets at least one call; otherwise the parts add up to the budget.
            assert_eq!(sum, total.max(nodes), "{total} over {nodes}: {shares:?}");
            assert!(
                shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1,
                "{shares:?}"
            );
        }
    }

    #[test]
    fn background_calls_never_take_the_whole_share() {
        for (total, percent, expected) in [
            (
                1,
                80,
                Split {
                    total: 1,
                    background: 1,
                    shared: 2,
                },
            ),
            (
                2,
                80,
                Split {
                    total: 2,
                    background: 1,
                    shared: 2,
                },
            ),
            (
                10,
                80,
                Split {
                    total: 10,
                    background: 8,
                    shared: 10,
                },
            ),
            (
                10,
                100,
                Split {
                    total: 10,
                    background: 9,
                    shared: 10,
                },
            ),
            (
                10,
                1,
                Split {
                    total: 10,
                    background: 1,
                    shared: 10,
                },
            ),
        ] {
            assert_eq!(split(total, percent), expected, "{total} at {percent}%");
        }
    }

    #[tokio::test]
    async fn a_node_of_two_admits_half_of_the_cluster_rate_and_all_of_it_once_alone() {
        // Arrange: a cluster budget of 4 calls per second, two live nodes.
        let limits = CallLimits::new(&settings(4, 10));
        limits.set_share(BudgetShare { nodes: 2, index: 0 });

        // Act / Assert: a burst of its half.
        let _calls: Vec<_> = (0..2)
            .map(|n| limits.admit().unwrap_or_else(|e| panic!("call {n}: {e:?}")))
            .collect();
        assert!(matches!(limits.admit(), Err(GatewayError::Busy { .. })));

        // The other node left: the whole budget.
        limits.set_share(BudgetShare::WHOLE);
        let _calls: Vec<_> = (0..4)
            .map(|n| limits.admit().unwrap_or_else(|e| panic!("call {n}: {e:?}")))
            .collect();
        assert!(matches!(limits.admit(), Err(GatewayError::Busy { .. })));
    }
}
