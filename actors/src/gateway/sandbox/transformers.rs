//! Wire types of the sandbox provider and their mapping onto [`TradeState`].

use chrono::{DateTime, Utc};
use entities::{MinorUnit, PayNo};
use serde::{Deserialize, Serialize};

use crate::gateway::{PaidTrade, TradeState};

/// The sandbox's own trade states, named like a real provider's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SandboxTradeState {
    Notpay,
    Success,
    Closed,
}

/// One trade in the sandbox's book, as its query API and control routes show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxTrade {
    pub out_trade_no: PayNo,
    pub amount: MinorUnit,
    pub currency: String,
    pub subject: String,
    pub trade_state: SandboxTradeState,
    pub transaction_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub time_expire: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// How many times paywarden queried / closed this trade (for tests and demos).
    pub query_count: u32,
    pub close_count: u32,
}

impl SandboxTrade {
    pub fn to_state(&self) -> TradeState {
        match self.trade_state {
            SandboxTradeState::Notpay => TradeState::NotPaid,
            SandboxTradeState::Closed => TradeState::Closed,
            SandboxTradeState::Success => match (&self.transaction_id, self.paid_at) {
                (Some(txn), Some(paid_at)) => TradeState::Paid(PaidTrade {
                    provider_txn_id: txn.clone(),
                    amount: self.amount,
                    paid_at,
                }),
                // A SUCCESS without a transaction id cannot be produced by the sandbox; report
                // it as unpaid rather than invent an id.
                _ => TradeState::NotPaid,
            },
        }
    }
}

/// The body of a sandbox payment notification. The signature covers `"{timestamp}.{body}"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxNotification {
    /// Unique per notification event; a retry of the same event keeps it.
    pub id: String,
    pub out_trade_no: PayNo,
    pub trade_state: SandboxTradeState,
    pub transaction_id: String,
    pub amount: MinorUnit,
    pub paid_at: DateTime<Utc>,
}

impl SandboxNotification {
    pub fn to_state(&self) -> TradeState {
        match self.trade_state {
            SandboxTradeState::Notpay => TradeState::NotPaid,
            SandboxTradeState::Closed => TradeState::Closed,
            SandboxTradeState::Success => TradeState::Paid(PaidTrade {
                provider_txn_id: self.transaction_id.clone(),
                amount: self.amount,
                paid_at: self.paid_at,
            }),
        }
    }
}
