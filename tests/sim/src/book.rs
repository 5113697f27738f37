//! The simulator's shared state: the trade book per provider and `out_trade_no`, and the
//! injected faults.
//!
//! Guarded by std mutexes: every critical section is a map lookup or a field write and none
//! is held across an `.await` (the same choice as mini-redis `db.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{SimConfig, SimKeys};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimProvider {
    Wechat,
    Alipay,
}

/// The provider-side state, named as WeChat names it (Alipay's names are derived on output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimTradeState {
    Notpay,
    Success,
    Closed,
}

/// One trade, as `GET /sim/{provider}/trades/{no}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimTrade {
    pub provider: SimProvider,
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub subject: String,
    pub notify_url: String,
    pub code_url: String,
    pub state: SimTradeState,
    /// Alipay only knows a precreated trade once the buyer has scanned its code; until then
    /// query and close answer `ACQ.TRADE_NOT_EXIST`. WeChat trades exist from the prepay.
    pub scanned: bool,
    /// The provider's trade id: WeChat's `transaction_id` once paid, Alipay's `trade_no` once
    /// scanned.
    pub provider_trade_no: Option<String>,
    pub created_at: DateTime<Utc>,
    pub time_expire: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub query_count: u32,
    pub close_count: u32,
    /// Delivery attempts, including the ones `drop` made vanish.
    pub notifications_sent: u32,
    /// Attempts the merchant acknowledged as the provider requires (2xx; Alipay: `success`).
    pub notifications_acknowledged: u32,
    /// The buyer pays just as the merchant's close arrives: the close finds the trade paid
    /// (the race the expiry rule handles by querying again and compensating).
    #[serde(default)]
    pub pays_at_close: bool,
}

impl SimTrade {
    /// Applies `time_expire`. Alipay closes an unpaid trade once its timeout passes
    /// (`TRADE_CLOSED`); WeChat keeps answering `NOTPAY` but refuses the payment, so the
    /// merchant still has to close it.
    pub fn refresh(&mut self, now: DateTime<Utc>) {
        if self.provider == SimProvider::Alipay && self.state == SimTradeState::Notpay && self.expired(now) {
            self.state = SimTradeState::Closed;
        }
    }

    /// Whether `time_expire` has passed: the buyer can no longer pay.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.time_expire.is_some_and(|deadline| now >= deadline)
    }

    /// Pays an unpaid trade now (the provider side of a successful payment).
    pub(crate) fn settle(&mut self, now: DateTime<Utc>, transaction_id: String) {
        self.state = SimTradeState::Success;
        self.paid_at = Some(now);
        self.scanned = true;
        if self.provider == SimProvider::Wechat || self.provider_trade_no.is_none() {
            self.provider_trade_no = Some(transaction_id);
        }
    }
}

/// Faults injected into the provider endpoints (never the `/sim` control routes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimFaults {
    /// Added before every answer.
    pub latency_ms: u64,
    /// Share of calls (0.0..=1.0) answered with the provider's system error.
    pub error_rate: f64,
    /// Share of calls (0.0..=1.0) that hang for `timeout_ms` before a system error, longer
    /// than any sane client timeout.
    pub timeout_rate: f64,
    pub timeout_ms: u64,
}

impl SimFaults {
    /// # Errors
    /// A message naming the rate outside 0..=1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("error_rate", self.error_rate), ("timeout_rate", self.timeout_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }
}

/// What a fault roll decided for one call.
pub(crate) enum FaultAction {
    Proceed,
    SystemError,
}

/// Options of `POST /sim/{provider}/trades/{no}/pay`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimPayOptions {
    /// Send the payment notification at all (a provider that never calls back: false).
    pub notify: bool,
    /// The first `drop` delivery attempts are lost in transit: the provider counts them as
    /// failed and resends on its schedule.
    pub drop: u32,
    /// Extra copies sent after the first acknowledged one (same event id / notify_id).
    pub duplicate: u32,
    /// Wait this long before the first attempt.
    pub delay_ms: u64,
}

impl Default for SimPayOptions {
    fn default() -> Self {
        Self {
            notify: true,
            drop: 0,
            duplicate: 0,
            delay_ms: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimBuyerError {
    #[error("no such trade")]
    NotFound,
    #[error("the trade is closed and can no longer be paid")]
    Closed,
}

pub struct SimState {
    pub config: SimConfig,
    pub(crate) keys: SimKeys,
    book: Mutex<HashMap<(SimProvider, String), SimTrade>>,
    /// Refunds by provider and refund number (`out_refund_no` / `out_request_no`).
    pub(crate) refunds: Mutex<HashMap<(SimProvider, String), crate::refunds::SimRefund>>,
    pub(crate) refund_behaviour: Mutex<crate::refunds::SimRefundBehaviour>,
    pub(crate) bills: Mutex<crate::bills::BillDesk>,
    faults: Mutex<SimFaults>,
    /// Sends notifications.
    pub(crate) http: reqwest::Client,
    seq: AtomicU64,
    /// API calls received (each rolls the faults), whatever their answer.
    api_calls: AtomicU64,
}

impl SimState {
    pub(crate) fn new(config: SimConfig, keys: SimKeys) -> Self {
        Self {
            config,
            keys,
            book: Mutex::new(HashMap::new()),
            refunds: Mutex::new(HashMap::new()),
            refund_behaviour: Mutex::new(crate::refunds::SimRefundBehaviour::default()),
            bills: Mutex::new(crate::bills::BillDesk::default()),
            faults: Mutex::new(SimFaults::default()),
            http: reqwest::Client::new(),
            seq: AtomicU64::new(1),
            api_calls: AtomicU64::new(0),
        }
    }

    pub fn book(&self) -> MutexGuard<'_, HashMap<(SimProvider, String), SimTrade>> {
        lock(&self.book)
    }

    pub fn trade(&self, provider: SimProvider, out_trade_no: &str) -> Option<SimTrade> {
        let now = Utc::now();
        self.book().get_mut(&(provider, out_trade_no.to_owned())).map(|trade| {
            trade.refresh(now);
            trade.clone()
        })
    }

    /// Every trade in the book, as [`SimState::trade`] shows each one (`time_expire` applied),
    /// in no particular order.
    pub fn trades(&self) -> Vec<SimTrade> {
        let now = Utc::now();
        self.book()
            .values_mut()
            .map(|trade| {
                trade.refresh(now);
                trade.clone()
            })
            .collect()
    }

    pub fn set_faults(&self, faults: SimFaults) {
        *lock(&self.faults) = faults;
    }

    pub fn faults(&self) -> SimFaults {
        *lock(&self.faults)
    }

    /// API calls received so far.
    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps the injected latency, then rolls for an error or a hang.
    pub(crate) async fn roll_faults(&self) -> FaultAction {
        self.api_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let faults = self.faults();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let roll: f64 = rand::thread_rng().gen();
        if roll < faults.timeout_rate {
            tokio::time::sleep(Duration::from_millis(faults.timeout_ms)).await;
            return FaultAction::SystemError;
        }
        let roll: f64 = rand::thread_rng().gen();
        if roll < faults.error_rate {
            return FaultAction::SystemError;
        }
        FaultAction::Proceed
    }

    /// A fresh id with the provider's look: a date prefix and a sequence.
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}{seq:010}", Utc::now().format("%Y%m%d"))
    }

    /// The buyer scans the code. For Alipay this is when the trade comes into existence.
    ///
    /// # Errors
    /// [`SimBuyerError::NotFound`] for an unknown trade, [`SimBuyerError::Closed`] after
    /// `time_expire` or a close.
    pub fn scan(&self, provider: SimProvider, out_trade_no: &str) -> Result<SimTrade, SimBuyerError> {
        let now = Utc::now();
        let mut book = self.book();
        let trade = book
            .get_mut(&(provider, out_trade_no.to_owned()))
            .ok_or(SimBuyerError::NotFound)?;
        trade.refresh(now);
        if trade.state == SimTradeState::Closed || (trade.state == SimTradeState::Notpay && trade.expired(now)) {
            return Err(SimBuyerError::Closed);
        }
        if !trade.scanned {
            trade.scanned = true;
            if provider == SimProvider::Alipay {
                trade.provider_trade_no = Some(self.next_id("2088"));
            }
        }
        Ok(trade.clone())
    }

    /// The buyer pays (scanning first if needed). Paying a paid trade changes nothing.
    ///
    /// # Errors
    /// As [`SimState::scan`].
    pub fn pay(&self, provider: SimProvider, out_trade_no: &str) -> Result<SimTrade, SimBuyerError> {
        self.scan(provider, out_trade_no)?;
        let now = Utc::now();
        let mut book = self.book();
        let trade = book
            .get_mut(&(provider, out_trade_no.to_owned()))
            .ok_or(SimBuyerError::NotFound)?;
        trade.refresh(now);
        match trade.state {
            SimTradeState::Closed => return Err(SimBuyerError::Closed),
            SimTradeState::Success => {}
            SimTradeState::Notpay => {
                let id = self.next_id(if provider == SimProvider::Wechat {
                    "4200"
                } else {
                    "2088"
                });
                trade.settle(now, id);
                tracing::info!(?provider, out_trade_no, "simulated buyer paid");
            }
        }
        Ok(trade.clone())
    }

    /// Arms the race: the next close of this trade finds that the buyer has just paid.
    ///
    /// # Errors
    /// As [`SimState::scan`].
    pub fn pay_at_close(&self, provider: SimProvider, out_trade_no: &str) -> Result<SimTrade, SimBuyerError> {
        self.scan(provider, out_trade_no)?;
        let mut book = self.book();
        let trade = book
            .get_mut(&(provider, out_trade_no.to_owned()))
            .ok_or(SimBuyerError::NotFound)?;
        trade.pays_at_close = true;
        Ok(trade.clone())
    }

    /// Called by the close endpoints under the book lock: settles an armed race first.
    pub(crate) fn race_close(&self, trade: &mut SimTrade, now: DateTime<Utc>) {
        if trade.pays_at_close && trade.state == SimTradeState::Notpay {
            trade.pays_at_close = false;
            let id = self.next_id(if trade.provider == SimProvider::Wechat {
                "4200"
            } else {
                "2088"
            });
            trade.settle(now, id);
            tracing::info!(out_trade_no = %trade.out_trade_no, "simulated buyer paid just as the close arrived");
        }
    }

    pub(crate) fn record_delivery(&self, provider: SimProvider, out_trade_no: &str, acknowledged: bool) {
        if let Some(trade) = self.book().get_mut(&(provider, out_trade_no.to_owned())) {
            trade.notifications_sent = trade.notifications_sent.saturating_add(1);
            if acknowledged {
                trade.notifications_acknowledged = trade.notifications_acknowledged.saturating_add(1);
            }
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one insert or field write, so a panic elsewhere cannot leave a
    // half-updated map behind: a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
