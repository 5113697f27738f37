//! Snowflake ids for orders and payment attempts.
//!
//! Layout of the 63 usable bits: 41 bits of milliseconds since [`EPOCH_MS`] (good until 2093),
//! 10 bits of worker id (one per running instance, from configuration), 12 bits of sequence
//! within the millisecond. Ids from one generator strictly increase.
//!
//! A clock that steps backwards is the classic way to mint a duplicate id. A small step (NTP
//! slewing, at most [`MAX_BACKWARDS_WAIT_MS`]) is waited out; a larger one fails loudly rather
//! than risk a duplicate pay_no at a provider.
//!
//! Ids are made on actor threads and HTTP workers, so waiting (for the clock to catch up, or for
//! the next millisecond once 4096 ids were taken in one) is an async sleep with the lock
//! released: no thread is blocked and no other caller waits on the lock meanwhile.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use entities::InvalidId;

/// 2024-01-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
pub const MAX_WORKER_ID: u16 = 1023;
/// The largest backwards clock step waited out instead of failing.
pub const MAX_BACKWARDS_WAIT_MS: i64 = 20;
const SEQUENCE_BITS: u32 = 12;
const WORKER_BITS: u32 = 10;
const MAX_SEQUENCE: i64 = (1 << SEQUENCE_BITS) - 1;
/// How long [`Snowflake::next_id`] waits in all for the clock before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_millis(200);
/// The shortest pause between two looks at the clock while waiting.
const MIN_PAUSE: Duration = Duration::from_micros(200);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("worker id {0} is out of range; expected 0..={MAX_WORKER_ID}")]
    WorkerOutOfRange(u16),
    #[error("system clock moved backwards by {0} ms; refusing to generate ids until it catches up")]
    ClockMovedBackwards(i64),
    #[error("system clock is before the id epoch")]
    ClockBeforeEpoch,
    /// Zero, made in the very first millisecond of the epoch by worker 0: not a valid id.
    #[error("generated an invalid id")]
    Invalid(#[from] InvalidId),
}

/// Source of the current time in ms since the Unix epoch; injectable for tests.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The id generator of one node (its worker id comes from configuration). Shared by order
/// creation on the HTTP workers and attempt creation in the order actors.
pub struct Snowflake<C: Clock = SystemClock> {
    worker_id: i64,
    clock: C,
    /// (last millisecond used, last sequence used in it). A std mutex: the critical section is a
    /// few arithmetic operations, never held across an await.
    state: Mutex<(i64, i64)>,
}

impl Snowflake<SystemClock> {
    /// # Errors
    /// [`IdError::WorkerOutOfRange`] when `worker_id` does not fit in 10 bits.
    pub fn new(worker_id: u16) -> Result<Self, IdError> {
        Self::with_clock(worker_id, SystemClock)
    }
}

impl<C: Clock> Snowflake<C> {
    /// # Errors
    /// [`IdError::WorkerOutOfRange`] when `worker_id` does not fit in 10 bits.
    pub fn with_clock(worker_id: u16, clock: C) -> Result<Self, IdError> {
        if worker_id > MAX_WORKER_ID {
            return Err(IdError::WorkerOutOfRange(worker_id));
        }
        Ok(Self {
            worker_id: i64::from(worker_id),
            clock,
            state: Mutex::new((0, 0)),
        })
    }

    /// The next id. Waits (asynchronously, holding no lock) while the clock is a little behind
    /// the last id, or while this millisecond's 4096 ids are spent.
    ///
    /// # Errors
    /// [`IdError::ClockMovedBackwards`] when the clock is behind the last id by more than
    /// [`MAX_BACKWARDS_WAIT_MS`] (or does not catch up in time); [`IdError::ClockBeforeEpoch`]
    /// on a wildly wrong clock.
    pub async fn next_id(&self) -> Result<i64, IdError> {
        let give_up = Instant::now() + GIVE_UP_AFTER;
        loop {
            let target_ms = match self.try_next()? {
                Next::Id(id) => return Ok(id),
                Next::WaitUntil(target_ms) => target_ms,
            };
            let behind_ms = target_ms.saturating_sub(self.clock.now_ms());
            if Instant::now() >= give_up {
                return Err(IdError::ClockMovedBackwards(behind_ms));
            }
            let pause = Duration::from_millis(u64::try_from(behind_ms).unwrap_or(0)).max(MIN_PAUSE);
            tokio::time::sleep(pause).await;
        }
    }

    /// The next id as an [`entities::OrderId`] or [`entities::PayNo`].
    ///
    /// # Errors
    /// As [`Self::next_id`], and [`IdError::Invalid`] for the one id that is not positive.
    pub async fn next_typed<T: TryFrom<i64, Error = InvalidId>>(&self) -> Result<T, IdError> {
        Ok(T::try_from(self.next_id().await?)?)
    }

    /// One look at the clock under the lock: an id, or the millisecond to wait for.
    fn try_next(&self) -> Result<Next, IdError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last_ms, last_seq) = *state;
        let now = self.clock.now_ms();
        if now < last_ms {
            let behind = last_ms - now;
            if behind > MAX_BACKWARDS_WAIT_MS {
                return Err(IdError::ClockMovedBackwards(behind));
            }
            return Ok(Next::WaitUntil(last_ms));
        }
        let seq = if now == last_ms {
            if last_seq >= MAX_SEQUENCE {
                // 4096 ids in this millisecond already: wait for the next one.
                return Ok(Next::WaitUntil(last_ms + 1));
            }
            last_seq + 1
        } else {
            0
        };
        let since_epoch = now - EPOCH_MS;
        if since_epoch < 0 {
            return Err(IdError::ClockBeforeEpoch);
        }
        *state = (now, seq);
        Ok(Next::Id(
            (since_epoch << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | seq,
        ))
    }
}

enum Next {
    Id(i64),
    /// The clock must reach this millisecond first.
    WaitUntil(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    struct FakeClock(Arc<AtomicI64>);

    impl Clock for FakeClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn ids_strictly_increase_and_carry_the_worker_id() {
        let ids = Snowflake::new(7).unwrap();
        let mut last = 0;
        for _ in 0..20_000 {
            let id = ids.next_id().await.unwrap();
            assert!(id > last, "{id} is not above {last}");
            assert_eq!((id >> SEQUENCE_BITS) & 0x3ff, 7);
            last = id;
        }
    }

    #[test]
    fn worker_id_out_of_range_is_refused() {
        assert_eq!(Snowflake::new(1024).err(), Some(IdError::WorkerOutOfRange(1024)));
    }

    #[tokio::test]
    async fn a_large_backwards_clock_step_fails_loudly() {
        let now = Arc::new(AtomicI64::new(EPOCH_MS + 1_000_000));
        let ids = Snowflake::with_clock(1, FakeClock(now.clone())).unwrap();
        ids.next_id().await.unwrap();
        now.fetch_sub(5_000, Ordering::SeqCst);
        assert_eq!(ids.next_id().await, Err(IdError::ClockMovedBackwards(5_000)));
        // Once the clock is back past the last id, generation resumes, still increasing.
        now.fetch_add(5_001, Ordering::SeqCst);
        assert!(ids.next_id().await.is_ok());
    }

    #[tokio::test]
    async fn a_small_backwards_clock_step_is_waited_out() {
        let now = Arc::new(AtomicI64::new(EPOCH_MS + 1_000_000));
        let ids = Snowflake::with_clock(1, FakeClock(now.clone())).unwrap();
        let first = ids.next_id().await.unwrap();
        now.fetch_sub(3, Ordering::SeqCst);
        let clock = now.clone();
        let mover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            clock.fetch_add(4, Ordering::SeqCst);
        });
        let second = ids.next_id().await.unwrap();
        mover.join().unwrap();
        assert!(second > first);
    }

    #[tokio::test]
    async fn a_caller_waiting_for_the_clock_does_not_hold_the_lock() {
        // The clock stands still, so the second id of this millisecond past 4096 must wait for
        // the next one; meanwhile another caller can still take the lock (and gets told to wait
        // too, rather than blocking on it).
        let now = Arc::new(AtomicI64::new(EPOCH_MS + 1_000_000));
        let ids = Arc::new(Snowflake::with_clock(1, FakeClock(now.clone())).unwrap());
        for _ in 0..=MAX_SEQUENCE {
            ids.next_id().await.unwrap();
        }
        let waiting = tokio::spawn({
            let ids = ids.clone();
            async move { ids.next_id().await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(ids.state.try_lock().is_ok(), "the waiting caller holds the lock");
        assert!(matches!(ids.try_next(), Ok(Next::WaitUntil(_))));
        now.fetch_add(1, Ordering::SeqCst);
        let next = waiting.await.unwrap().unwrap();
        assert_eq!(next & MAX_SEQUENCE, 0, "the new millisecond starts the sequence again");
    }
}
