//! Which provider account a call goes through.
//!
//! A trade is started at one account and every later call for it (query, close, refund,
//! refund query, follow-up) goes through that same account, whatever the merchant's default is
//! by then: the account is recorded on the attempt (`payment_attempts.account_id`), and
//! [`Route::of_attempt`] reads it back (a refund goes through its payment's attempt).

use std::fmt;
use std::sync::Arc;

use entities::{payment_attempts, Provider};

/// A provider, and the merchant's account at it (`None`: the deployment's configured provider,
/// `[providers.<name>]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub provider: Provider,
    pub account: Option<Arc<str>>,
}

impl Route {
    /// The deployment's configured `provider`.
    pub fn configured(provider: Provider) -> Self {
        Self {
            provider,
            account: None,
        }
    }

    /// A merchant's account `account_id` at `provider`.
    pub fn account(provider: Provider, account_id: &str) -> Self {
        Self {
            provider,
            account: Some(Arc::from(account_id)),
        }
    }

    /// Where the attempt's trade lives.
    pub fn of_attempt(attempt: &payment_attempts::Model) -> Self {
        match attempt.account_id.as_deref() {
            Some(id) => Self::account(attempt.provider, id),
            None => Self::configured(attempt.provider),
        }
    }

    /// `account_key` of a reconciliation run: `""` for the configured provider.
    pub fn from_key(provider: Provider, key: &str) -> Self {
        if key.is_empty() {
            Self::configured(provider)
        } else {
            Self::account(provider, key)
        }
    }

    /// The route as a run's `account_key`.
    pub fn key(&self) -> &str {
        self.account.as_deref().unwrap_or("")
    }

    /// The account id, as the column stores it.
    pub fn account_id(&self) -> Option<String> {
        self.account.as_deref().map(str::to_owned)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Some(account) => write!(f, "{}/{account}", self.provider.as_str()),
            None => f.write_str(self.provider.as_str()),
        }
    }
}
