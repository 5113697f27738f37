//! Admin routes, one file per resource: merchants with their keys and provider accounts, orders, stock, subscribers, deliveries, unmatched
//! notifications, the cluster and deadline index, console sessions. Behind the admin token.
//! What each does lives in [`crate::operations`]; here are the HTTP shapes.

mod cluster;
mod deliveries;
mod merchants;
mod orders;
mod provider_accounts;
mod sessions;
mod stock;
mod subscribers;
mod unmatched;

pub use self::cluster::*;
pub use self::deliveries::*;
pub use self::merchants::*;
pub use self::orders::*;
pub use self::provider_accounts::*;
pub use self::sessions::*;
pub use self::stock::*;
pub use self::subscribers::*;
pub use self::unmatched::*;

/// Most rows one list answers.
const LIST_LIMIT_MAX: u64 = 1000;
