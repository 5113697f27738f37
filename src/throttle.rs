//! Throttling of credential failures: the admin token (`/admin`, the sandbox's control routes),
//! the console's sign-in (`/admin/ui/login`) and the merchants' API keys (`/v1`).
//!
//! Each client address ([`crate::client_addr`]; an IPv6 address counts by its /64, which one
//! host usually holds whole) may fail `throttle.max_failures` times per
//! `throttle.window_seconds`. The failure that reaches the limit is still answered as usual;
//! from then on the address gets `429 too_many_failures` with `Retry-After` for
//! `throttle.block_seconds`, without its credential being looked at. An address that fails again
//! after a block is blocked again at its next failure, for twice as long each time, up to
//! `throttle.max_block_seconds`; it is forgotten once it has not failed for
//! `window_seconds + max_block_seconds`.
//!
//! The global limit never refuses a credential that is right: while more than
//! `throttle.global_failures_per_second` failures arrive in one second, from however many
//! addresses, each address is blocked at its first failure instead of its `max_failures`-th. So a
//! flood from many addresses is slowed to one guess per address and block, and a client that
//! sends the right credential from an address that is not blocked is served as always.
//!
//! Memory is bounded: at most `throttle.max_tracked_addresses` addresses are remembered, the
//! one that failed longest ago giving way to a new one; forgotten addresses are dropped as
//! failures arrive. A credential that is right does not clear an address's failures (a valid
//! merchant key would otherwise reset the count of guesses at the admin token).
//!
//! Every refused credential is logged (the surface and the address, never the credential) and
//! counted in `paywarden_auth_failures_total{surface, outcome}`: `outcome="refused"` for a wrong
//! credential, `"throttled"` for a request answered 429 without being checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;

/// `[throttle]`: limits on credential failures per client address and in total.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Failures an address may have per window before it is blocked.
    pub max_failures: u32,
    #[serde(rename = "window_seconds", with = "actors::settings::seconds")]
    pub window: Duration,
    /// The first block; each further one is twice as long.
    #[serde(rename = "block_seconds", with = "actors::settings::seconds")]
    pub block: Duration,
    #[serde(rename = "max_block_seconds", with = "actors::settings::seconds")]
    pub max_block: Duration,
    /// Above this many failures in one second (all addresses together), an address is blocked
    /// at its first failure.
    pub global_failures_per_second: u32,
    /// Most addresses remembered at once.
    pub max_tracked_addresses: usize,
}

impl ThrottleSettings {
    /// # Errors
    /// A limit of zero, or a longest block shorter than the first.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_failures == 0 || self.global_failures_per_second == 0 || self.max_tracked_addresses == 0 {
            anyhow::bail!(
                "throttle.max_failures, throttle.global_failures_per_second and throttle.max_tracked_addresses must be positive"
            );
        }
        if self.window.is_zero() || self.block.is_zero() || self.max_block < self.block {
            anyhow::bail!(
                "throttle.window_seconds and throttle.block_seconds must be positive, and throttle.max_block_seconds at least throttle.block_seconds"
            );
        }
        Ok(())
    }
}

/// Where a credential was presented: a label of the failure metric, and a field of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The admin token on `/admin` (and the sandbox's control routes outside development).
    Admin,
    /// The admin token at the console's sign-in.
    Console,
    /// A merchant's API key on `/v1`.
    Client,
}

impl Surface {
    pub fn label(self) -> &'static str {
        match self {
            Surface::Admin => "admin",
            Surface::Console => "console",
            Surface::Client => "client",
        }
    }
}

/// What the service remembers of one address.
#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    /// Blocks so far; the next one lasts `block * 2^strikes`.
    strikes: u32,
    blocked_until: Option<Instant>,
    last_failure: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            failures: 0,
            strikes: 0,
            blocked_until: None,
            last_failure: now,
        }
    }
}

/// What a failure did to its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Counted: the address may still try.
    Counted,
    /// The address is now blocked for this long.
    Blocked(Duration),
}

/// The pure part: the table and its rules, on a clock the caller passes in.
struct FailureTable {
    settings: ThrottleSettings,
    /// Least recently failed first, so forgotten addresses are found at that end.
    entries: LruCache<IpAddr, Entry>,
    second_start: Instant,
    failures_this_second: u32,
}

impl FailureTable {
    fn new(settings: ThrottleSettings, now: Instant) -> Self {
        let cap = NonZeroUsize::new(settings.max_tracked_addresses).unwrap_or(NonZeroUsize::MIN);
        Self {
            settings,
            entries: LruCache::new(cap),
            second_start: now,
            failures_this_second: 0,
        }
    }

    fn forgotten(&self, entry: &Entry, now: Instant) -> bool {
        entry.blocked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(entry.last_failure) >= self.settings.window + self.settings.max_block
    }

    /// How long `key` is still blocked, if it is.
    fn blocked_for(&self, key: &IpAddr, now: Instant) -> Option<Duration> {
        let until = self.entries.peek(key)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, key: IpAddr, now: Instant) -> Failure {
        while let Some((_, oldest)) = self.entries.peek_lru() {
            if !self.forgotten(oldest, now) {
                break;
            }
            self.entries.pop_lru();
        }
        if now.saturating_duration_since(self.second_start) >= Duration::from_secs(1) {
            self.second_start = now;
            self.failures_this_second = 0;
        }
        self.failures_this_second = self.failures_this_second.saturating_add(1);
        let flood = self.failures_this_second > self.settings.global_failures_per_second;

        let settings = &self.settings;
        let entry = self.entries.get_or_insert_mut(key, || Entry::new(now));
        if now.saturating_duration_since(entry.window_start) >= settings.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        // After a block, one more failure blocks again: the delay grows while failures go on.
        let limit = if flood || entry.strikes > 0 {
            1
        } else {
            settings.max_failures
        };
        if entry.failures < limit {
            return Failure::Counted;
        }
        let factor = 2u32.saturating_pow(entry.strikes.min(30));
        let block = settings.block.saturating_mul(factor).min(settings.max_block);
        entry.strikes = entry.strikes.saturating_add(1);
        entry.failures = 0;
        entry.window_start = now;
        entry.blocked_until = Some(now + block);
        Failure::Blocked(block)
    }
}

/// The throttle every credential check goes through, shared by the workers (`web::Data`).
pub struct Throttle {
    /// A std mutex: held for a few map operations, never across an `.await`.
    table: Mutex<FailureTable>,
    failures: IntCounterVec,
}

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64.
fn key_of(addr: Option<IpAddr>) -> IpAddr {
    match addr.map(|addr| addr.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        Some(v4) => v4,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// A `Retry-After` in whole seconds, at least one.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl Throttle {
    /// # Errors
    /// The metric could not be registered (its name is taken).
    pub fn new(settings: ThrottleSettings, registry: &Registry) -> anyhow::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                "auth_failures_total",
                "Credentials refused (outcome=refused) and requests answered 429 without checking theirs (outcome=throttled), by surface: admin, console, client",
            ),
            &["surface", "outcome"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        Ok(Self {
            table: Mutex::new(FailureTable::new(settings, Instant::now())),
            failures,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, FailureTable> {
        // A panic while holding the lock leaves a table that is still consistent enough to use.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before a credential is checked: `Err(wait)` when `addr` is blocked (counted, not logged:
    /// the block was logged when it began).
    ///
    /// # Errors
    /// How long the address is still blocked.
    pub fn check(&self, surface: Surface, addr: Option<IpAddr>) -> Result<(), Duration> {
        match self.table().blocked_for(&key_of(addr), Instant::now()) {
            None => Ok(()),
            Some(wait) => {
                self.failures.with_label_values(&[surface.label(), "throttled"]).inc();
                Err(wait)
            }
        }
    }

    /// After a credential was refused: counts it against `addr`, logs it.
    pub fn fail(&self, surface: Surface, addr: Option<IpAddr>) {
        let outcome = self.table().fail(key_of(addr), Instant::now());
        self.failures.with_label_values(&[surface.label(), "refused"]).inc();
        let client = addr.map(|addr| addr.to_string()).unwrap_or_default();
        match outcome {
            Failure::Counted => tracing::warn!(surface = surface.label(), client = %client, "credential refused"),
            Failure::Blocked(block) => tracing::warn!(
                surface = surface.label(),
                client = %client,
                blocked_seconds = whole_seconds(block),
                "credential refused; client address throttled"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            max_failures: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(10),
            max_block: Duration::from_secs(40),
            global_failures_per_second: 100,
            max_tracked_addresses: 4,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn an_address_is_blocked_at_its_limit_and_each_later_block_is_twice_as_long() {
        let t0 = Instant::now();
        let mut table = FailureTable::new(settings(), t0);
        assert_eq!(table.fail(ip(1), t0), Failure::Counted);
        assert_eq!(table.fail(ip(1), t0), Failure::Counted);
        assert_eq!(table.fail(ip(1), t0), Failure::Blocked(Duration::from_secs(10)));
        assert_eq!(table.blocked_for(&ip(1), t0), Some(Duration::from_secs(10)));
        assert_eq!(table.blocked_for(&ip(2), t0), None, "another address is not blocked");

        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(table.blocked_for(&ip(1), t1), None, "the block ends");
        assert_eq!(table.fail(ip(1), t1), Failure::Blocked(Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(table.fail(ip(1), t2), Failure::Blocked(Duration::from_secs(40)));
        let t3 = t2 + Duration::from_secs(40);
        assert_eq!(
            table.fail(ip(1), t3),
            Failure::Blocked(Duration::from_secs(40)),
            "capped"
        );

        let later = t3 + Duration::from_secs(40) + Duration::from_secs(100);
        assert_eq!(
            table.fail(ip(1), later),
            Failure::Counted,
            "forgotten after a quiet while"
        );
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut table = FailureTable::new(settings(), t0);
        for minute in 0..10u64 {
            let now = t0 + Duration::from_secs(61 * minute);
            assert_eq!(table.fail(ip(1), now), Failure::Counted);
            assert_eq!(table.fail(ip(1), now), Failure::Counted);
        }
    }

    #[test]
    fn during_a_global_flood_each_address_is_blocked_at_its_first_failure() {
        let t0 = Instant::now();
        let mut table = FailureTable::new(
            ThrottleSettings {
                global_failures_per_second: 2,
                max_tracked_addresses: 100,
                ..settings()
            },
            t0,
        );
        assert_eq!(table.fail(ip(1), t0), Failure::Counted);
        assert_eq!(table.fail(ip(2), t0), Failure::Counted);
        assert_eq!(table.fail(ip(3), t0), Failure::Blocked(Duration::from_secs(10)));
        assert_eq!(table.blocked_for(&ip(4), t0), None, "a clean address is not refused");
        let next_second = t0 + Duration::from_secs(1);
        assert_eq!(table.fail(ip(5), next_second), Failure::Counted, "the flood is over");
    }

    #[test]
    fn the_table_holds_at_most_its_cap_and_forgets_quiet_addresses() {
        let t0 = Instant::now();
        let mut table = FailureTable::new(settings(), t0);
        for n in 0..50 {
            table.fail(ip(n), t0);
        }
        assert_eq!(table.entries.len(), 4);
        let quiet = t0 + Duration::from_secs(101);
        table.fail(ip(200), quiet);
        assert_eq!(table.entries.len(), 1, "the quiet ones are dropped");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key_of(Some(a)), key_of(Some(b)));
        assert_ne!(key_of(Some(a)), key_of(Some(c)));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key_of(Some(mapped)), ip(1));
    }

    #[test]
    fn a_retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}
