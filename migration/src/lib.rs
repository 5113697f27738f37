//! Schema migrations of paywarden, for PostgreSQL and SQLite alike.
//!
//! Migrations are history: they never import the `entities` crate, so changing an entity can
//! never rewrite what an old migration did. The service runs [`Migrator::up`] at start-up, and
//! `paywarden migrate` runs it on demand.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_order_tables;
mod m20261122_000002_create_delivery_tables;
mod m20261122_000003_add_reserved_quantity;
mod m20261201_000004_scope_skus_and_subscribers;
mod m20261201_000005_create_unmatched_notifications;
mod m20261201_000006_add_attempt_follow_up;
mod m20261201_000007_add_order_return_url;
mod m20261201_000008_create_refunds;
mod m20261201_000009_create_reconciliation_tables;
mod m20261202_000010_create_partition_fences;
mod m20261207_000012_create_idempotency_keys;
mod m20261208_000013_create_console_sessions;
mod m20261209_000014_add_webhook_signing;
mod m20261209_000015_add_subscriber_controls;
mod m20261209_000016_create_delivery_attempts;
mod m20261210_000017_add_search_indexes;
mod m20261211_000018_create_activity_counts;
mod m20261212_000019_create_merchants;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_order_tables::Migration),
            Box::new(m20261122_000002_create_delivery_tables::Migration),
            Box::new(m20261122_000003_add_reserved_quantity::Migration),
            Box::new(m20261201_000004_scope_skus_and_subscribers::Migration),
            Box::new(m20261201_000005_create_unmatched_notifications::Migration),
            Box::new(m20261201_000006_add_attempt_follow_up::Migration),
            Box::new(m20261201_000007_add_order_return_url::Migration),
            Box::new(m20261201_000008_create_refunds::Migration),
            Box::new(m20261201_000009_create_reconciliation_tables::Migration),
            Box::new(m20261202_000010_create_partition_fences::Migration),
            Box::new(m20261207_000012_create_idempotency_keys::Migration),
            Box::new(m20261208_000013_create_console_sessions::Migration),
            Box::new(m20261209_000014_add_webhook_signing::Migration),
            Box::new(m20261209_000015_add_subscriber_controls::Migration),
            Box::new(m20261209_000016_create_delivery_attempts::Migration),
            Box::new(m20261210_000017_add_search_indexes::Migration),
            Box::new(m20261211_000018_create_activity_counts::Migration),
            Box::new(m20261212_000019_create_merchants::Migration),
        ]
    }
}
