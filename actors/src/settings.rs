//! Reading the crate's settings types straight from configuration.
//!
//! The configuration writes durations as integers with the unit in the key
//! (`retry_min_delay_milliseconds = 200`, `breaker_open_seconds = 10`); the types hold
//! [`Duration`]s. The modules here are the `#[serde(with = ...)]` adapters between the two,
//! and [`Invalid`] is what a settings type's `validate` reports: the key and the problem.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A setting that is well-typed but unusable, named by its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    pub key: String,
    pub problem: String,
}

impl Invalid {
    pub fn new(section: &str, key: &str, problem: impl Into<String>) -> Self {
        Self {
            key: if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            },
            problem: problem.into(),
        }
    }
}

/// Fails with `problem` for `section.key` unless `ok`.
///
/// # Errors
/// `ok` is false.
pub fn check(ok: bool, section: &str, key: &str, problem: &str) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(section, key, problem))
    }
}

/// A [`Duration`] written as whole milliseconds.
pub mod millis {
    use super::{Deserialize, Deserializer, Duration};

    /// # Errors
    /// The value is not a non-negative integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// A [`Duration`] written as whole seconds.
pub mod seconds {
    use super::{Deserialize, Deserializer, Duration};

    /// # Errors
    /// The value is not a non-negative integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// A list of [`Duration`]s written as whole milliseconds (see [`u64_list`] for the forms).
pub mod millis_list {
    use super::{Deserializer, Duration};

    /// # Errors
    /// An item is not a non-negative integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        super::u64_list(deserializer).map(|list| list.into_iter().map(Duration::from_millis).collect())
    }
}

/// A list of non-negative integers: a TOML array, or from the environment a comma-separated
/// string (`PAYWARDEN__OUTBOX__RETRY_SCHEDULE_MILLISECONDS=100,200`), where values are left
/// as text so a numeric secret is never reformatted.
///
/// # Errors
/// An item is not a non-negative integer.
pub fn u64_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<u64>),
        Text(String),
    }
    match Form::deserialize(deserializer)? {
        Form::List(list) => Ok(list),
        Form::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<u64>()
                    .map_err(|_| serde::de::Error::custom(format!("'{item}' is not a non-negative integer")))
            })
            .collect(),
    }
}
