//! The expiry rule (seeds 000 and 001) as pure decisions: the whole rule, in one file.
//!
//! At an order's deadline its actor runs a *pass*. This module decides every step of it from
//! data alone, with no I/O and no actor; `pass` carries the decisions out (provider
//! calls, guarded transactions) and [`super::OrderActor`] arms the next wake-up.
//!
//! 1. [`start`]: a final order needs nothing, not even a provider call; an early timer waits.
//! 2. For each open attempt, [`on_query`] reads the provider's answer:
//!    - paid -> **compensate** (recorded by `store::payment`, which checks the amount and
//!      decides on the order's status at that moment);
//!    - USERPAYING -> hold for a grace, at most `userpaying_max_rechecks` times, then treat it
//!      as unpaid;
//!    - unpaid -> close it at the provider, and [`on_close`] reads that answer: closed or
//!      unknown -> the attempt is closed; "already paid" -> query again ([`on_requery`]) and
//!      compensate; "too early" (WeChat's first 5 minutes) -> closed once the trade's
//!      `time_expire` is safely past, else hold until the provider accepts a close;
//!    - closed, or unknown to the provider (QR never scanned) -> the attempt is closed;
//!    - provider failure -> hold; the pass will be retried.
//! 3. [`conclude`]: any provider failure -> retry with backoff, or mark the order `stuck` once
//!    `retry_budget` passes failed; else wait for USERPAYING or a too-early close; else close
//!    the order (stock released).
//! 4. [`next_wake`]: when the actor runs the next pass, from the outcome and its counters.
//!
//! A refresh (the client's "ask the provider now") compensates a paid trade and changes
//! nothing else; a cancel or force-close runs the same rule before the deadline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::OrderStatus;

use crate::domain::OperatorReason;
use crate::gateway::{CloseOutcome, PaidTrade, TradeState};
use crate::retry::RetrySchedule;
use crate::settings::{check, Invalid};
use crate::store::{AttemptCloseReason, CloseReason};

/// How long after a trade's `time_expire` plus the clock margin its final query waits, so that
/// "past time_expire" is judged strictly after it.
const AFTER_TIME_EXPIRE: chrono::Duration = chrono::Duration::milliseconds(100);

/// Why a pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// The deadline timer fired (or a retry of it is due).
    Expire,
    /// The buyer or merchant cancels before the deadline.
    Cancel,
    /// An operator closes the order now.
    ForceClose { reason: OperatorReason },
    /// Query only: compensate if paid, never close anything.
    Refresh,
}

impl Intent {
    /// The reason recorded when this pass closes the order.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            Intent::Expire | Intent::Refresh => CloseReason::Expired,
            Intent::Cancel => CloseReason::Cancelled,
            Intent::ForceClose { reason } => CloseReason::ForceClosed(reason.clone()),
        }
    }
}

/// What the order actor counts between passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Consecutive passes that failed on a provider; decides backoff and `stuck`.
    pub provider_failures: u32,
    /// USERPAYING re-checks done; bounded by `userpaying_max_rechecks`.
    pub userpaying_rechecks: u32,
}

/// What a pass knows before it asks any provider.
#[derive(Clone, Copy, Debug)]
pub struct PassContext<'a> {
    pub intent: &'a Intent,
    /// The order's status when the pass read it (pending or stuck).
    pub status: OrderStatus,
    /// The order's deadline; every provider trade was created with it as `time_expire`.
    pub deadline: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub counters: Counters,
    pub settings: &'a ExpirySettings,
}

impl PassContext<'_> {
    fn is_refresh(&self) -> bool {
        *self.intent == Intent::Refresh
    }

    /// Only a timer pass gives up waiting for a buyer in USERPAYING.
    fn userpaying_exhausted(&self) -> bool {
        *self.intent == Intent::Expire && self.counters.userpaying_rechecks >= self.settings.userpaying_max_rechecks
    }

    /// When a trade created with `time_expire` = the deadline surely can no longer be paid:
    /// the deadline plus a margin for the provider's clock.
    fn time_expire_safely_past(&self) -> DateTime<Utc> {
        time_expire_safely_past(self.deadline, self.settings)
    }
}

/// When a trade created with `time_expire` = `deadline` surely can no longer be paid: the
/// deadline plus a margin for the provider's clock.
pub fn time_expire_safely_past(deadline: DateTime<Utc>, settings: &ExpirySettings) -> DateTime<Utc> {
    chrono::Duration::from_std(settings.provider_clock_margin)
        .ok()
        .and_then(|margin| deadline.checked_add_signed(margin))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The follow-up of one trade that may still take money though its order no longer waits for
/// it: a second attempt of a paid order that the provider would not close yet (or could not
/// be asked), or a trade the provider did not know yet when the order closed (an Alipay QR
/// code never scanned stays payable until its `time_expire`). It is looked at until the
/// provider confirms it closed, or a query after `time_expire` plus the clock margin still
/// says unpaid. A payment found there is recorded (money after close, or a second payment:
/// refund owed), never lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// The provider holds a payment: record it.
    Record(PaidTrade),
    /// The trade is still open: close it at the provider.
    CloseAtProvider,
    /// Over: the trade can no longer be paid (a pending attempt is closed for this reason).
    Done(AttemptCloseReason),
    /// Look again then.
    Again(DateTime<Utc>),
}

/// Facts a follow-up decides on.
#[derive(Clone, Copy, Debug)]
pub struct FollowUpContext {
    pub now: DateTime<Utc>,
    /// The order's deadline, the trade's `time_expire`, plus the clock margin.
    pub safely_past: DateTime<Utc>,
    /// Pause between two looks while the trade is payable.
    pub interval: Duration,
}

impl FollowUpContext {
    fn later(&self) -> DateTime<Utc> {
        let step = chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::seconds(60));
        self.now.checked_add_signed(step).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The next look while the trade is payable: after the interval, but no later than just
    /// after `time_expire` is safely past (when one final query settles it).
    fn next_look(&self) -> DateTime<Utc> {
        let last = self
            .safely_past
            .checked_add_signed(AFTER_TIME_EXPIRE)
            .unwrap_or(self.safely_past);
        if self.now > self.safely_past {
            self.later()
        } else {
            self.later().min(last)
        }
    }
}

/// The provider's answer to a follow-up's query.
pub fn follow_up_on_query(ctx: &FollowUpContext, answer: Result<&TradeState, Failed>) -> FollowUp {
    let Ok(state) = answer else {
        return FollowUp::Again(ctx.later());
    };
    match state {
        TradeState::Paid(trade) => FollowUp::Record(trade.clone()),
        TradeState::Closed => FollowUp::Done(AttemptCloseReason::ClosedAtProvider),
        TradeState::NotPaid | TradeState::UserPaying | TradeState::NotFound if ctx.now > ctx.safely_past => {
            FollowUp::Done(AttemptCloseReason::UnpaidAfterTimeExpire)
        }
        // Open at the provider (also a trade closed here that the buyer has since scanned):
        // close it there, so it can no longer take money.
        TradeState::NotPaid | TradeState::UserPaying => FollowUp::CloseAtProvider,
        TradeState::NotFound => FollowUp::Again(ctx.next_look()),
    }
}

/// The provider's answer to a follow-up's close.
pub fn follow_up_on_close(ctx: &FollowUpContext, answer: Result<&CloseOutcome, Failed>) -> FollowUp {
    match answer {
        Ok(CloseOutcome::Closed) => FollowUp::Done(AttemptCloseReason::ClosedAtProvider),
        // Unknown to the provider: payable once scanned, until time_expire.
        Ok(CloseOutcome::NotFound) => FollowUp::Again(ctx.next_look()),
        // Paid between the query and the close: the next look records it.
        Ok(CloseOutcome::AlreadyPaid) => FollowUp::Again(ctx.now),
        Ok(CloseOutcome::TooEarly { retry_at }) => FollowUp::Again((*retry_at).min(ctx.next_look())),
        Err(Failed) => FollowUp::Again(ctx.later()),
    }
}

/// Whether an attempt a pass closes stays on the follow-up, and until when the first look:
/// one the provider did not know (never scanned) can still be paid until `time_expire`.
pub fn follow_up_after_close(ctx: &FollowUpContext, why: AttemptCloseReason) -> Option<DateTime<Utc>> {
    (why == AttemptCloseReason::UnknownToProvider && ctx.now <= ctx.safely_past).then(|| ctx.next_look())
}

/// Rule 1: whether the pass goes on to the providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The order is final: nothing to do, no provider call.
    Final(OrderStatus),
    /// A timer pass before the deadline (the deadline moved, or the clock did): wait.
    NotYet { at: DateTime<Utc> },
    /// Ask the provider about each open attempt.
    Proceed,
}

pub fn start(intent: &Intent, status: OrderStatus, deadline: DateTime<Utc>, now: DateTime<Utc>) -> Start {
    if !status.is_live() {
        return Start::Final(status);
    }
    if *intent == Intent::Expire && now < deadline {
        return Start::NotYet { at: deadline };
    }
    Start::Proceed
}

/// The order holds a payment of another amount than its attempt's (an attempt in
/// `amount_mismatch`, anomaly recorded, order `stuck`): nothing automatic settles money the
/// order does not accept. Every pass but an operator's force-close stops here, with no
/// provider call and no new anomaly; the operator force-closes or accepts the payment.
pub fn on_mismatched_payment(intent: &Intent) -> Option<PassOutcome> {
    match intent {
        Intent::ForceClose { .. } => None,
        Intent::Expire | Intent::Cancel | Intent::Refresh => Some(PassOutcome::NeedsOperator),
    }
}

/// A provider call that failed (timeout, transport, 5xx, circuit open): retryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// What to do next with one open attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The provider holds the payment: record it.
    Compensate(PaidTrade),
    /// Unpaid: close the trade at the provider.
    CloseAtProvider,
    /// The trade is over at the provider: close the attempt here.
    MarkClosed(AttemptCloseReason),
    /// The close said "already paid": query again.
    QueryAgain,
    /// Leave the attempt open for now.
    Hold(Hold),
}

impl Step {
    /// The step's name, for the pass's trace.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Compensate(_) => "compensate",
            Step::CloseAtProvider => "close_at_provider",
            Step::MarkClosed(_) => "mark_closed",
            Step::QueryAgain => "query_again",
            Step::Hold(_) => "hold",
        }
    }
}

/// Why an attempt stays open after this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// A refresh changes nothing but a payment.
    Refresh,
    /// The provider could not be asked: retry the pass.
    ProviderFailed,
    /// The buyer is paying right now: look again after the grace.
    UserPaying,
    /// The provider will not close it yet: look again then.
    Until(DateTime<Utc>),
}

/// The provider's answer to a query of an open attempt.
pub fn on_query(ctx: &PassContext<'_>, answer: Result<&TradeState, Failed>) -> Step {
    let Ok(state) = answer else {
        return Step::Hold(Hold::ProviderFailed);
    };
    match state {
        TradeState::Paid(trade) => Step::Compensate(trade.clone()),
        _ if ctx.is_refresh() => Step::Hold(Hold::Refresh),
        TradeState::UserPaying if !ctx.userpaying_exhausted() => Step::Hold(Hold::UserPaying),
        TradeState::UserPaying | TradeState::NotPaid => Step::CloseAtProvider,
        TradeState::Closed => Step::MarkClosed(AttemptCloseReason::ClosedAtProvider),
        TradeState::NotFound => Step::MarkClosed(AttemptCloseReason::UnknownToProvider),
    }
}

/// The provider's answer to closing an unpaid trade.
pub fn on_close(ctx: &PassContext<'_>, answer: Result<&CloseOutcome, Failed>) -> Step {
    let Ok(outcome) = answer else {
        return Step::Hold(Hold::ProviderFailed);
    };
    match outcome {
        CloseOutcome::Closed => Step::MarkClosed(AttemptCloseReason::ClosedAtProvider),
        CloseOutcome::NotFound => Step::MarkClosed(AttemptCloseReason::UnknownToProvider),
        // Paid between our query and our close.
        CloseOutcome::AlreadyPaid => Step::QueryAgain,
        CloseOutcome::TooEarly { retry_at } => {
            // The trade was created with `time_expire` = the deadline: once that has passed
            // (plus a margin for the provider's clock) and the query still said unpaid, the
            // provider can no longer take the payment, so the attempt is over.
            let safely_past = ctx.time_expire_safely_past();
            if ctx.now > safely_past {
                Step::MarkClosed(AttemptCloseReason::UnpaidAfterTimeExpire)
            } else {
                // Look again when the provider accepts a close, or when time_expire is safely
                // past, whichever comes first.
                let expired = safely_past.checked_add_signed(AFTER_TIME_EXPIRE).unwrap_or(safely_past);
                Step::Hold(Hold::Until((*retry_at).min(expired)))
            }
        }
    }
}

/// The answer to the second query after a close said "already paid".
pub fn on_requery(answer: Result<&TradeState, Failed>) -> Step {
    match answer {
        Ok(TradeState::Paid(trade)) => Step::Compensate(trade.clone()),
        // "Already paid" and then not paid: the provider contradicts itself; ask again later.
        Ok(TradeState::NotPaid | TradeState::UserPaying | TradeState::Closed | TradeState::NotFound) | Err(Failed) => {
            Step::Hold(Hold::ProviderFailed)
        }
    }
}

/// What the attempts of one pass held back, folded together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    pub provider_failed: bool,
    pub userpaying: bool,
    /// The latest time a too-early close asked to be tried again.
    pub until: Option<DateTime<Utc>>,
}

impl Holds {
    pub fn add(&mut self, hold: Hold) {
        match hold {
            Hold::Refresh => {}
            Hold::ProviderFailed => self.provider_failed = true,
            Hold::UserPaying => self.userpaying = true,
            Hold::Until(at) => self.until = Some(self.until.map_or(at, |t| t.max(at))),
        }
    }
}

/// How a pass ends once every attempt was looked at and none was paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conclusion {
    /// A refresh: the order stays as it is.
    Open,
    /// A provider could not be asked. `mark_stuck` carries the reason when this failure spends
    /// the retry budget of a pending order.
    ProviderTrouble { mark_stuck: Option<String> },
    /// Wait for the buyer in USERPAYING.
    UserPaying,
    /// Wait until the provider accepts a close.
    TooEarly { retry_at: DateTime<Utc> },
    /// Every attempt is closed: close the order.
    CloseOrder(CloseReason),
}

impl Conclusion {
    /// The conclusion's name, for the pass's trace.
    pub fn name(&self) -> &'static str {
        match self {
            Conclusion::Open => "open",
            Conclusion::ProviderTrouble { mark_stuck: Some(_) } => "mark_stuck",
            Conclusion::ProviderTrouble { mark_stuck: None } => "provider_trouble",
            Conclusion::UserPaying => "user_paying",
            Conclusion::TooEarly { .. } => "too_early",
            Conclusion::CloseOrder(_) => "close_order",
        }
    }
}

/// Rule 3.
pub fn conclude(ctx: &PassContext<'_>, holds: &Holds) -> Conclusion {
    if ctx.is_refresh() {
        return Conclusion::Open;
    }
    if holds.provider_failed {
        let failures = ctx.counters.provider_failures.saturating_add(1);
        let spent = *ctx.intent == Intent::Expire
            && ctx.status == OrderStatus::Pending
            && failures >= ctx.settings.retry_budget;
        return Conclusion::ProviderTrouble {
            mark_stuck: spent.then(|| format!("provider unreachable after {failures} attempts")),
        };
    }
    if holds.userpaying {
        return Conclusion::UserPaying;
    }
    if let Some(retry_at) = holds.until {
        return Conclusion::TooEarly { retry_at };
    }
    Conclusion::CloseOrder(ctx.intent.close_reason())
}

/// How a pass ended, as the actor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassOutcome {
    /// The order is final (or was already): the actor stops.
    Final(OrderStatus),
    /// A timer pass came before the deadline: re-arm.
    NotYet { at: DateTime<Utc> },
    /// A provider could not be reached; `stuck` says whether the order is now stuck.
    ProviderTrouble { stuck: bool },
    /// A trade is in USERPAYING: look again after the grace.
    UserPaying,
    /// The provider will not close yet (WeChat's first 5 minutes): try again then.
    TooEarly { retry_at: DateTime<Utc> },
    /// Something only an operator can settle (a paid amount that differs): the order is stuck
    /// and automatic passes stop.
    NeedsOperator,
    /// A refresh found the order still open.
    Open(OrderStatus),
}

/// A pass that did not reach an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassFailure {
    /// The order row is gone.
    OrderGone,
    /// The database failed; run the pass again.
    Error,
}

/// When the actor runs its next pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The order is final: drop it from the deadline index and stop.
    Finish,
    /// Stop timing, stay indexed: an operator has to act (force-close).
    Park,
    /// At this instant.
    At(DateTime<Utc>),
    /// After this pause.
    After(Duration),
    /// After the backoff delay of the expiry retry schedule for this (0-based) retry; the
    /// schedule adds jitter, which is why the actor computes it.
    Backoff { retry: u32 },
}

/// Rule 4: the next wake-up after a timer pass, and the counters to keep.
pub fn next_wake(
    result: Result<&PassOutcome, PassFailure>,
    counters: Counters,
    deadline: DateTime<Utc>,
    settings: &ExpirySettings,
) -> (Wake, Counters) {
    let mut next = counters;
    let wake = match result {
        Ok(PassOutcome::Final(_)) | Err(PassFailure::OrderGone) => Wake::Finish,
        Ok(PassOutcome::NotYet { at }) => Wake::At(*at),
        Ok(PassOutcome::ProviderTrouble { stuck }) => {
            next.provider_failures = counters.provider_failures.saturating_add(1);
            if *stuck {
                Wake::After(settings.stuck_retry_interval)
            } else {
                Wake::Backoff {
                    retry: counters.provider_failures,
                }
            }
        }
        Ok(PassOutcome::UserPaying) => {
            next.userpaying_rechecks = counters.userpaying_rechecks.saturating_add(1);
            Wake::After(settings.userpaying_grace)
        }
        Ok(PassOutcome::TooEarly { retry_at }) => Wake::At(*retry_at),
        Ok(PassOutcome::NeedsOperator) => Wake::Park,
        Ok(PassOutcome::Open(_)) => Wake::At(deadline),
        Err(PassFailure::Error) => {
            next.provider_failures = counters.provider_failures.saturating_add(1);
            Wake::Backoff {
                retry: counters.provider_failures,
            }
        }
    };
    (wake, next)
}

/// Why a cancel or force-close did not close the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseRefused {
    /// The order is (now) in this status, which a close cannot change.
    NotPending(OrderStatus),
    /// The provider could not be reached; the order stays open.
    ProviderUnreachable,
    /// The buyer is paying, or the provider refuses a close this early: try again shortly.
    NotPossibleYet,
}

/// The answer to a cancel or force-close.
pub fn close_reply(outcome: &PassOutcome) -> Result<OrderStatus, CloseRefused> {
    match outcome {
        PassOutcome::Final(OrderStatus::Closed) => Ok(OrderStatus::Closed),
        PassOutcome::Final(status) | PassOutcome::Open(status) => Err(CloseRefused::NotPending(*status)),
        PassOutcome::ProviderTrouble { .. } => Err(CloseRefused::ProviderUnreachable),
        PassOutcome::UserPaying | PassOutcome::TooEarly { .. } | PassOutcome::NotYet { .. } => {
            Err(CloseRefused::NotPossibleYet)
        }
        PassOutcome::NeedsOperator => Err(CloseRefused::NotPending(OrderStatus::Stuck)),
    }
}

/// The answer to a refresh: the status the order is in after it, or `None` when the provider
/// could not be asked.
pub fn refresh_reply(outcome: &PassOutcome) -> Option<OrderStatus> {
    match outcome {
        PassOutcome::Final(status) | PassOutcome::Open(status) => Some(*status),
        PassOutcome::NeedsOperator => Some(OrderStatus::Stuck),
        PassOutcome::ProviderTrouble { .. } => None,
        PassOutcome::UserPaying | PassOutcome::TooEarly { .. } | PassOutcome::NotYet { .. } => {
            Some(OrderStatus::Pending)
        }
    }
}

/// Tunables of the expiry rule: the `expiry` section of the configuration, read straight into
/// this type (durations are written with their unit in the key).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpirySettings {
    /// Backoff between passes while a provider fails: first pause...
    #[serde(rename = "retry_min_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_min_delay: Duration,
    /// ...and the longest one.
    #[serde(rename = "retry_max_delay_milliseconds", with = "crate::settings::millis")]
    pub retry_max_delay: Duration,
    /// Failed passes before the order is marked `stuck`.
    pub retry_budget: u32,
    /// Pause between passes of a stuck order (it keeps trying until the provider is back).
    #[serde(rename = "stuck_retry_interval_seconds", with = "crate::settings::seconds")]
    pub stuck_retry_interval: Duration,
    /// Wait before looking again at a trade in USERPAYING.
    #[serde(rename = "userpaying_grace_milliseconds", with = "crate::settings::millis")]
    pub userpaying_grace: Duration,
    /// USERPAYING re-checks before the trade is closed like an unpaid one.
    pub userpaying_max_rechecks: u32,
    /// Limit on one reply of a provider actor (its retries included).
    #[serde(rename = "provider_reply_timeout_milliseconds", with = "crate::settings::millis")]
    pub provider_reply_timeout: Duration,
    /// Limit on one reply of an order actor.
    #[serde(rename = "actor_reply_timeout_milliseconds", with = "crate::settings::millis")]
    pub actor_reply_timeout: Duration,
    /// Overdue orders re-armed at start-up fire at this rate, not all at once.
    pub overdue_per_second: u32,
    /// Arbiters (threads) the order actors are spread over.
    pub arbiters: usize,
    /// Allowance for the provider's clock when judging that its `time_expire` has passed.
    #[serde(rename = "provider_clock_margin_milliseconds", with = "crate::settings::millis")]
    pub provider_clock_margin: Duration,
    /// Timer-driven expiry passes running at once; the rest wait their turn cheaply instead of
    /// all holding database work in flight when many deadlines fall together.
    pub max_concurrent_passes: usize,
    /// Pause between two looks at a trade on the follow-up (see [`FollowUp`]).
    #[serde(rename = "follow_up_interval_milliseconds", with = "crate::settings::millis")]
    pub follow_up_interval: Duration,
}

impl ExpirySettings {
    /// The backoff between passes while a provider fails.
    pub fn retry(&self) -> RetrySchedule {
        RetrySchedule {
            min_delay: self.retry_min_delay,
            max_delay: self.retry_max_delay,
        }
    }

    /// # Errors
    /// The first unusable value, named by its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(self.retry_budget > 0, section, "retry_budget", "must be positive")?;
        check(
            !self.retry_min_delay.is_zero() && self.retry_min_delay <= self.retry_max_delay,
            section,
            "retry_min_delay_milliseconds",
            "must be positive and not above retry_max_delay_milliseconds",
        )?;
        check(
            !self.stuck_retry_interval.is_zero(),
            section,
            "stuck_retry_interval_seconds",
            "must be positive",
        )?;
        check(
            !self.provider_reply_timeout.is_zero(),
            section,
            "provider_reply_timeout_milliseconds",
            "must be positive",
        )?;
        check(
            self.actor_reply_timeout >= self.provider_reply_timeout,
            section,
            "actor_reply_timeout_milliseconds",
            "must not be below provider_reply_timeout_milliseconds (an actor waits for its provider)",
        )?;
        check(
            self.overdue_per_second > 0,
            section,
            "overdue_per_second",
            "must be positive",
        )?;
        check(self.arbiters > 0, section, "arbiters", "must be positive")?;
        check(
            self.max_concurrent_passes > 0,
            section,
            "max_concurrent_passes",
            "must be positive",
        )?;
        check(
            !self.follow_up_interval.is_zero(),
            section,
            "follow_up_interval_milliseconds",
            "must be positive",
        )
    }
}

#[cfg(test)]
mod tests {
    //! The expiry rule, row by row. Each table names its rows; a failure says which.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::type_complexity)]

    use chrono::TimeZone;
    use entities::MinorUnit;

    use super::*;

    #[test]
    fn a_followed_trade_is_watched_until_closed_or_past_time_expire() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let secs = |n: i64| now + chrono::Duration::seconds(n);
        let ctx = |safely_past: DateTime<Utc>| FollowUpContext {
            now,
            safely_past,
            interval: Duration::from_secs(60),
        };
        let paid = PaidTrade {
            provider_txn_id: "t".into(),
            amount: MinorUnit::new(1).unwrap(),
            paid_at: now,
        };
        let after = |at: DateTime<Utc>| at + AFTER_TIME_EXPIRE;
        let queries: [(&str, FollowUpContext, Result<TradeState, Failed>, FollowUp); 9] = [
            (
                "paid: record it",
                ctx(secs(600)),
                Ok(TradeState::Paid(paid.clone())),
                FollowUp::Record(paid.clone()),
            ),
            (
                "closed at the provider: done",
                ctx(secs(600)),
                Ok(TradeState::Closed),
                FollowUp::Done(AttemptCloseReason::ClosedAtProvider),
            ),
            (
                "open and unpaid: close it",
                ctx(secs(600)),
                Ok(TradeState::NotPaid),
                FollowUp::CloseAtProvider,
            ),
            (
                "closed here, unknown there: look again",
                ctx(secs(600)),
                Ok(TradeState::NotFound),
                FollowUp::Again(secs(60)),
            ),
            (
                "closed here, since scanned there: close it",
                ctx(secs(600)),
                Ok(TradeState::NotPaid),
                FollowUp::CloseAtProvider,
            ),
            (
                "look again no later than just past time_expire",
                ctx(secs(10)),
                Ok(TradeState::NotFound),
                FollowUp::Again(after(secs(10))),
            ),
            (
                "unpaid after time_expire: done",
                ctx(secs(-1)),
                Ok(TradeState::NotFound),
                FollowUp::Done(AttemptCloseReason::UnpaidAfterTimeExpire),
            ),
            (
                "open, unpaid after time_expire: done",
                ctx(secs(-1)),
                Ok(TradeState::NotPaid),
                FollowUp::Done(AttemptCloseReason::UnpaidAfterTimeExpire),
            ),
            (
                "provider failed: look again later",
                ctx(secs(-1)),
                Err(Failed),
                FollowUp::Again(secs(60)),
            ),
        ];
        for (row, ctx, answer, expected) in queries {
            assert_eq!(
                follow_up_on_query(&ctx, answer.as_ref().map_err(|f| *f)),
                expected,
                "{row}"
            );
        }
        let closes: [(&str, Result<CloseOutcome, Failed>, FollowUp); 5] = [
            (
                "closed",
                Ok(CloseOutcome::Closed),
                FollowUp::Done(AttemptCloseReason::ClosedAtProvider),
            ),
            (
                "unknown: payable once scanned",
                Ok(CloseOutcome::NotFound),
                FollowUp::Again(secs(60)),
            ),
            (
                "already paid: query at once",
                Ok(CloseOutcome::AlreadyPaid),
                FollowUp::Again(now),
            ),
            (
                "too early: when the provider allows",
                Ok(CloseOutcome::TooEarly { retry_at: secs(5) }),
                FollowUp::Again(secs(5)),
            ),
            ("failed: later", Err(Failed), FollowUp::Again(secs(60))),
        ];
        for (row, answer, expected) in closes {
            assert_eq!(
                follow_up_on_close(&ctx(secs(600)), answer.as_ref().map_err(|f| *f)),
                expected,
                "{row}"
            );
        }
        assert_eq!(
            follow_up_after_close(&ctx(secs(600)), AttemptCloseReason::UnknownToProvider),
            Some(secs(60)),
            "a trade unknown before time_expire is followed"
        );
        assert_eq!(
            follow_up_after_close(&ctx(secs(-1)), AttemptCloseReason::UnknownToProvider),
            None
        );
        assert_eq!(
            follow_up_after_close(&ctx(secs(600)), AttemptCloseReason::ClosedAtProvider),
            None
        );
    }

    #[test]
    fn a_payment_of_another_amount_waits_for_an_operator_unless_force_closed() {
        let rows = [
            (
                "expire: park, no provider call",
                Intent::Expire,
                Some(PassOutcome::NeedsOperator),
            ),
            (
                "refresh: answer stuck",
                Intent::Refresh,
                Some(PassOutcome::NeedsOperator),
            ),
            ("cancel: refused", Intent::Cancel, Some(PassOutcome::NeedsOperator)),
            (
                "force-close: proceeds",
                Intent::ForceClose { reason: reason("r") },
                None,
            ),
        ];
        for (row, intent, expected) in rows {
            assert_eq!(on_mismatched_payment(&intent), expected, "{row}");
        }
        assert_eq!(
            close_reply(&PassOutcome::NeedsOperator),
            Err(CloseRefused::NotPending(OrderStatus::Stuck))
        );
        assert_eq!(refresh_reply(&PassOutcome::NeedsOperator), Some(OrderStatus::Stuck));
    }

    fn reason(text: &str) -> OperatorReason {
        OperatorReason::parse(text).unwrap()
    }

    fn settings() -> ExpirySettings {
        ExpirySettings {
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(10),
            retry_budget: 3,
            stuck_retry_interval: Duration::from_secs(60),
            userpaying_grace: Duration::from_secs(5),
            userpaying_max_rechecks: 2,
            provider_reply_timeout: Duration::from_secs(5),
            actor_reply_timeout: Duration::from_secs(5),
            overdue_per_second: 100,
            arbiters: 1,
            provider_clock_margin: Duration::from_secs(30),
            max_concurrent_passes: 8,
            follow_up_interval: Duration::from_millis(200),
        }
    }

    fn deadline() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn paid() -> PaidTrade {
        PaidTrade {
            provider_txn_id: "txn-1".into(),
            amount: MinorUnit::new(1999).unwrap(),
            paid_at: deadline(),
        }
    }

    fn ctx<'a>(
        intent: &'a Intent,
        counters: Counters,
        now: DateTime<Utc>,
        settings: &'a ExpirySettings,
    ) -> PassContext<'a> {
        PassContext {
            intent,
            status: OrderStatus::Pending,
            deadline: deadline(),
            now,
            counters,
            settings,
        }
    }

    const FRESH: Counters = Counters {
        provider_failures: 0,
        userpaying_rechecks: 0,
    };

    #[test]
    fn a_pass_starts_only_for_a_live_order_past_its_deadline() {
        let rows = [
            (
                "final order: no provider call",
                Intent::Expire,
                OrderStatus::Paid,
                secs(1),
                Start::Final(OrderStatus::Paid),
            ),
            (
                "closed order: no provider call",
                Intent::Cancel,
                OrderStatus::Closed,
                secs(1),
                Start::Final(OrderStatus::Closed),
            ),
            (
                "timer before the deadline waits",
                Intent::Expire,
                OrderStatus::Pending,
                secs(-1),
                Start::NotYet { at: deadline() },
            ),
            (
                "timer at the deadline proceeds",
                Intent::Expire,
                OrderStatus::Pending,
                secs(0),
                Start::Proceed,
            ),
            (
                "stuck order proceeds",
                Intent::Expire,
                OrderStatus::Stuck,
                secs(90),
                Start::Proceed,
            ),
            (
                "cancel before the deadline proceeds",
                Intent::Cancel,
                OrderStatus::Pending,
                secs(-60),
                Start::Proceed,
            ),
            (
                "refresh before the deadline proceeds",
                Intent::Refresh,
                OrderStatus::Pending,
                secs(-60),
                Start::Proceed,
            ),
            (
                "force-close before the deadline proceeds",
                Intent::ForceClose {
                    reason: reason("fraud"),
                },
                OrderStatus::Pending,
                secs(-60),
                Start::Proceed,
            ),
        ];
        for (row, intent, status, offset, expected) in rows {
            assert_eq!(
                start(&intent, status, deadline(), deadline() + offset),
                expected,
                "{row}"
            );
        }
    }

    #[test]
    fn the_providers_answer_to_a_query_decides_each_attempt() {
        let settings = settings();
        let within = Counters {
            userpaying_rechecks: 1,
            ..FRESH
        };
        let spent = Counters {
            userpaying_rechecks: 2,
            ..FRESH
        };
        let force = Intent::ForceClose { reason: reason("r") };
        let rows: Vec<(&str, &Intent, Counters, Result<TradeState, Failed>, Step)> = vec![
            (
                "paid: compensate",
                &Intent::Expire,
                FRESH,
                Ok(TradeState::Paid(paid())),
                Step::Compensate(paid()),
            ),
            (
                "paid on refresh: compensate",
                &Intent::Refresh,
                FRESH,
                Ok(TradeState::Paid(paid())),
                Step::Compensate(paid()),
            ),
            (
                "paid on cancel: compensate",
                &Intent::Cancel,
                FRESH,
                Ok(TradeState::Paid(paid())),
                Step::Compensate(paid()),
            ),
            (
                "unpaid: close at the provider",
                &Intent::Expire,
                FRESH,
                Ok(TradeState::NotPaid),
                Step::CloseAtProvider,
            ),
            (
                "unpaid on cancel: close at the provider",
                &Intent::Cancel,
                FRESH,
                Ok(TradeState::NotPaid),
                Step::CloseAtProvider,
            ),
            (
                "unpaid on force-close: close at the provider",
                &force,
                FRESH,
                Ok(TradeState::NotPaid),
                Step::CloseAtProvider,
            ),
            (
                "USERPAYING within the grace budget: wait",
                &Intent::Expire,
                within,
                Ok(TradeState::UserPaying),
                Step::Hold(Hold::UserPaying),
            ),
            (
                "USERPAYING after the grace budget: close like unpaid",
                &Intent::Expire,
                spent,
                Ok(TradeState::UserPaying),
                Step::CloseAtProvider,
            ),
            (
                "USERPAYING on cancel never exhausts the grace",
                &Intent::Cancel,
                spent,
                Ok(TradeState::UserPaying),
                Step::Hold(Hold::UserPaying),
            ),
            (
                "closed at the provider: close the attempt",
                &Intent::Expire,
                FRESH,
                Ok(TradeState::Closed),
                Step::MarkClosed(AttemptCloseReason::ClosedAtProvider),
            ),
            (
                "not found (QR never scanned): close the attempt",
                &Intent::Expire,
                FRESH,
                Ok(TradeState::NotFound),
                Step::MarkClosed(AttemptCloseReason::UnknownToProvider),
            ),
            (
                "provider failure: hold for a retry",
                &Intent::Expire,
                FRESH,
                Err(Failed),
                Step::Hold(Hold::ProviderFailed),
            ),
            (
                "refresh of an unpaid trade changes nothing",
                &Intent::Refresh,
                FRESH,
                Ok(TradeState::NotPaid),
                Step::Hold(Hold::Refresh),
            ),
            (
                "refresh of a closed trade changes nothing",
                &Intent::Refresh,
                FRESH,
                Ok(TradeState::Closed),
                Step::Hold(Hold::Refresh),
            ),
            (
                "refresh of an unknown trade changes nothing",
                &Intent::Refresh,
                FRESH,
                Ok(TradeState::NotFound),
                Step::Hold(Hold::Refresh),
            ),
            (
                "refresh while USERPAYING changes nothing",
                &Intent::Refresh,
                spent,
                Ok(TradeState::UserPaying),
                Step::Hold(Hold::Refresh),
            ),
            (
                "refresh failing: hold",
                &Intent::Refresh,
                FRESH,
                Err(Failed),
                Step::Hold(Hold::ProviderFailed),
            ),
        ];
        for (row, intent, counters, answer, expected) in rows {
            let ctx = ctx(intent, counters, deadline() + secs(1), &settings);
            assert_eq!(on_query(&ctx, answer.as_ref().map_err(|f| *f)), expected, "{row}");
        }
    }

    #[test]
    fn the_providers_answer_to_a_close_decides_each_attempt() {
        let settings = settings();
        let retry_at = deadline() + secs(240);
        let too_early = CloseOutcome::TooEarly { retry_at };
        let soon = CloseOutcome::TooEarly {
            retry_at: deadline() + secs(5),
        };
        let rows: Vec<(&str, chrono::Duration, Result<CloseOutcome, Failed>, Step)> = vec![
            (
                "closed: close the attempt",
                secs(1),
                Ok(CloseOutcome::Closed),
                Step::MarkClosed(AttemptCloseReason::ClosedAtProvider),
            ),
            (
                "not found: close the attempt",
                secs(1),
                Ok(CloseOutcome::NotFound),
                Step::MarkClosed(AttemptCloseReason::UnknownToProvider),
            ),
            (
                "already paid on close: query again",
                secs(1),
                Ok(CloseOutcome::AlreadyPaid),
                Step::QueryAgain,
            ),
            (
                "provider failure on close: hold for a retry",
                secs(1),
                Err(Failed),
                Step::Hold(Hold::ProviderFailed),
            ),
            (
                "too early, time_expire not yet past: look again when time_expire is safely past",
                secs(1),
                Ok(too_early.clone()),
                Step::Hold(Hold::Until(deadline() + secs(30) + chrono::Duration::milliseconds(100))),
            ),
            (
                "too early, provider accepts a close sooner: look again then",
                secs(1),
                Ok(soon),
                Step::Hold(Hold::Until(deadline() + secs(5))),
            ),
            (
                "too early, within the clock margin: still wait",
                secs(30),
                Ok(too_early.clone()),
                Step::Hold(Hold::Until(deadline() + secs(30) + chrono::Duration::milliseconds(100))),
            ),
            (
                "too early but time_expire safely past and unpaid: the attempt is over",
                secs(31),
                Ok(too_early),
                Step::MarkClosed(AttemptCloseReason::UnpaidAfterTimeExpire),
            ),
        ];
        for (row, offset, answer, expected) in rows {
            let ctx = ctx(&Intent::Expire, FRESH, deadline() + offset, &settings);
            assert_eq!(on_close(&ctx, answer.as_ref().map_err(|f| *f)), expected, "{row}");
        }
    }

    #[test]
    fn after_already_paid_a_second_query_compensates_or_retries() {
        let rows: Vec<(&str, Result<TradeState, Failed>, Step)> = vec![
            (
                "paid: compensate",
                Ok(TradeState::Paid(paid())),
                Step::Compensate(paid()),
            ),
            (
                "not paid after all: retry",
                Ok(TradeState::NotPaid),
                Step::Hold(Hold::ProviderFailed),
            ),
            (
                "closed after all: retry",
                Ok(TradeState::Closed),
                Step::Hold(Hold::ProviderFailed),
            ),
            ("query fails: retry", Err(Failed), Step::Hold(Hold::ProviderFailed)),
        ];
        for (row, answer, expected) in rows {
            assert_eq!(on_requery(answer.as_ref().map_err(|f| *f)), expected, "{row}");
        }
    }

    #[test]
    fn the_pass_concludes_from_what_its_attempts_held_back() {
        let settings = settings();
        let failed = Holds {
            provider_failed: true,
            ..Holds::default()
        };
        let paying = Holds {
            userpaying: true,
            ..Holds::default()
        };
        let later = deadline() + secs(240);
        let early = Holds {
            until: Some(later),
            ..Holds::default()
        };
        let everything = Holds {
            provider_failed: true,
            userpaying: true,
            until: Some(later),
        };
        let below = Counters {
            provider_failures: 1,
            ..FRESH
        };
        let at = Counters {
            provider_failures: 2,
            ..FRESH
        };
        let force = Intent::ForceClose {
            reason: reason("fraud"),
        };
        let rows: Vec<(&str, &Intent, OrderStatus, Counters, Holds, Conclusion)> = vec![
            (
                "every attempt closed: close the order",
                &Intent::Expire,
                OrderStatus::Pending,
                FRESH,
                Holds::default(),
                Conclusion::CloseOrder(CloseReason::Expired),
            ),
            (
                "no attempt at all: close the order",
                &Intent::Expire,
                OrderStatus::Pending,
                FRESH,
                Holds::default(),
                Conclusion::CloseOrder(CloseReason::Expired),
            ),
            (
                "stuck order, provider back: close it",
                &Intent::Expire,
                OrderStatus::Stuck,
                at,
                Holds::default(),
                Conclusion::CloseOrder(CloseReason::Expired),
            ),
            (
                "cancel: close as cancelled",
                &Intent::Cancel,
                OrderStatus::Pending,
                FRESH,
                Holds::default(),
                Conclusion::CloseOrder(CloseReason::Cancelled),
            ),
            (
                "force-close: close with the operator's reason",
                &force,
                OrderStatus::Pending,
                FRESH,
                Holds::default(),
                Conclusion::CloseOrder(CloseReason::ForceClosed(reason("fraud"))),
            ),
            (
                "refresh: the order stays open",
                &Intent::Refresh,
                OrderStatus::Pending,
                FRESH,
                Holds::default(),
                Conclusion::Open,
            ),
            (
                "refresh with a failing provider: still open",
                &Intent::Refresh,
                OrderStatus::Pending,
                FRESH,
                failed,
                Conclusion::Open,
            ),
            (
                "provider failure below the budget: retry",
                &Intent::Expire,
                OrderStatus::Pending,
                below,
                failed,
                Conclusion::ProviderTrouble { mark_stuck: None },
            ),
            (
                "provider failure at the budget: mark stuck",
                &Intent::Expire,
                OrderStatus::Pending,
                at,
                failed,
                Conclusion::ProviderTrouble {
                    mark_stuck: Some("provider unreachable after 3 attempts".into()),
                },
            ),
            (
                "provider failure of a stuck order: retry, already stuck",
                &Intent::Expire,
                OrderStatus::Stuck,
                at,
                failed,
                Conclusion::ProviderTrouble { mark_stuck: None },
            ),
            (
                "provider failure on cancel never marks stuck",
                &Intent::Cancel,
                OrderStatus::Pending,
                at,
                failed,
                Conclusion::ProviderTrouble { mark_stuck: None },
            ),
            (
                "provider failure on force-close never marks stuck",
                &force,
                OrderStatus::Pending,
                at,
                failed,
                Conclusion::ProviderTrouble { mark_stuck: None },
            ),
            (
                "USERPAYING: wait for the buyer",
                &Intent::Expire,
                OrderStatus::Pending,
                FRESH,
                paying,
                Conclusion::UserPaying,
            ),
            (
                "too-early close: wait for the provider",
                &Intent::Expire,
                OrderStatus::Pending,
                FRESH,
                early,
                Conclusion::TooEarly { retry_at: later },
            ),
            (
                "a failure outranks waiting",
                &Intent::Expire,
                OrderStatus::Pending,
                FRESH,
                everything,
                Conclusion::ProviderTrouble { mark_stuck: None },
            ),
        ];
        for (row, intent, status, counters, holds, expected) in rows {
            let mut ctx = ctx(intent, counters, deadline() + secs(1), &settings);
            ctx.status = status;
            assert_eq!(conclude(&ctx, &holds), expected, "{row}");
        }
    }

    #[test]
    fn too_early_holds_fold_to_the_latest_time() {
        let mut holds = Holds::default();
        holds.add(Hold::Until(deadline() + secs(10)));
        holds.add(Hold::Until(deadline() + secs(5)));
        holds.add(Hold::Refresh);
        assert_eq!(holds.until, Some(deadline() + secs(10)));
        assert!(!holds.provider_failed && !holds.userpaying);
    }

    #[test]
    fn the_next_wake_follows_from_the_outcome_and_the_counters() {
        let settings = settings();
        let two_failures = Counters {
            provider_failures: 2,
            userpaying_rechecks: 0,
        };
        let later = deadline() + secs(240);
        let rows: Vec<(&str, Result<PassOutcome, PassFailure>, Counters, Wake, Counters)> = vec![
            (
                "paid: finish",
                Ok(PassOutcome::Final(OrderStatus::Paid)),
                FRESH,
                Wake::Finish,
                FRESH,
            ),
            (
                "closed: finish",
                Ok(PassOutcome::Final(OrderStatus::Closed)),
                FRESH,
                Wake::Finish,
                FRESH,
            ),
            (
                "order row gone: finish",
                Err(PassFailure::OrderGone),
                FRESH,
                Wake::Finish,
                FRESH,
            ),
            (
                "early timer: wake at the deadline",
                Ok(PassOutcome::NotYet { at: later }),
                FRESH,
                Wake::At(later),
                FRESH,
            ),
            (
                "first provider failure: first backoff step",
                Ok(PassOutcome::ProviderTrouble { stuck: false }),
                FRESH,
                Wake::Backoff { retry: 0 },
                Counters {
                    provider_failures: 1,
                    ..FRESH
                },
            ),
            (
                "third provider failure: third backoff step",
                Ok(PassOutcome::ProviderTrouble { stuck: false }),
                two_failures,
                Wake::Backoff { retry: 2 },
                Counters {
                    provider_failures: 3,
                    ..FRESH
                },
            ),
            (
                "stuck: retry at the stuck interval",
                Ok(PassOutcome::ProviderTrouble { stuck: true }),
                two_failures,
                Wake::After(Duration::from_secs(60)),
                Counters {
                    provider_failures: 3,
                    ..FRESH
                },
            ),
            (
                "USERPAYING: look again after the grace, counted",
                Ok(PassOutcome::UserPaying),
                FRESH,
                Wake::After(Duration::from_secs(5)),
                Counters {
                    userpaying_rechecks: 1,
                    ..FRESH
                },
            ),
            (
                "too-early close: wake when the provider allows",
                Ok(PassOutcome::TooEarly { retry_at: later }),
                FRESH,
                Wake::At(later),
                FRESH,
            ),
            (
                "amount mismatch: park for an operator",
                Ok(PassOutcome::NeedsOperator),
                FRESH,
                Wake::Park,
                FRESH,
            ),
            (
                "refresh left it open: keep the deadline",
                Ok(PassOutcome::Open(OrderStatus::Pending)),
                FRESH,
                Wake::At(deadline()),
                FRESH,
            ),
            (
                "database failure: back off like a provider failure",
                Err(PassFailure::Error),
                FRESH,
                Wake::Backoff { retry: 0 },
                Counters {
                    provider_failures: 1,
                    ..FRESH
                },
            ),
        ];
        for (row, result, counters, wake, next) in rows {
            let got = next_wake(result.as_ref().map_err(|f| *f), counters, deadline(), &settings);
            assert_eq!(got, (wake, next), "{row}");
        }
    }

    #[test]
    fn cancel_force_close_and_refresh_answer_from_the_outcome() {
        let later = deadline() + secs(240);
        let rows = [
            (
                "closed",
                PassOutcome::Final(OrderStatus::Closed),
                Ok(OrderStatus::Closed),
                Some(OrderStatus::Closed),
            ),
            (
                "paid first",
                PassOutcome::Final(OrderStatus::Paid),
                Err(CloseRefused::NotPending(OrderStatus::Paid)),
                Some(OrderStatus::Paid),
            ),
            (
                "provider down",
                PassOutcome::ProviderTrouble { stuck: false },
                Err(CloseRefused::ProviderUnreachable),
                None,
            ),
            (
                "buyer paying",
                PassOutcome::UserPaying,
                Err(CloseRefused::NotPossibleYet),
                Some(OrderStatus::Pending),
            ),
            (
                "too early",
                PassOutcome::TooEarly { retry_at: later },
                Err(CloseRefused::NotPossibleYet),
                Some(OrderStatus::Pending),
            ),
            (
                "needs an operator",
                PassOutcome::NeedsOperator,
                Err(CloseRefused::NotPending(OrderStatus::Stuck)),
                Some(OrderStatus::Stuck),
            ),
            (
                "still open",
                PassOutcome::Open(OrderStatus::Pending),
                Err(CloseRefused::NotPending(OrderStatus::Pending)),
                Some(OrderStatus::Pending),
            ),
        ];
        for (row, outcome, close, refresh) in rows {
            assert_eq!(close_reply(&outcome), close, "close: {row}");
            assert_eq!(refresh_reply(&outcome), refresh, "refresh: {row}");
        }
    }

    #[test]
    fn close_reasons_are_stored_as_before() {
        assert_eq!(Intent::Expire.close_reason().to_string(), "expired");
        assert_eq!(Intent::Cancel.close_reason().to_string(), "cancelled");
        assert_eq!(
            Intent::ForceClose {
                reason: reason("fraud suspected")
            }
            .close_reason()
            .to_string(),
            "force-closed: fraud suspected"
        );
    }
}
