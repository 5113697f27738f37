//! The delivery log and subscriber health.
//!
//! **`delivery_attempts`**: one row per attempt to deliver an event to a subscriber: when, the
//! receiver's status code (none when no answer came), the latency, the first KiB of its
//! answer, and the error. Listed per subscriber and per event for operators and merchants.
//!
//! **`subscribers`** gains `failing_since` (the first failure of an unbroken run of failures;
//! cleared by a success), and `disabled_at` / `disabled_reason`: a subscriber that fails for
//! `outbox.disable_after_failing_seconds`, or whose receiver answers 410 Gone, is disabled
//! (kept, visible, re-enabled by an operator), never deleted. Existing rows start healthy.
//! Down drops the table and the columns.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(DeliveryAttempts::Id),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => big_integer(DeliveryAttempts::Id)
                .auto_increment()
                .primary_key()
                .to_owned(),
        };
        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .if_not_exists()
                    .col(id)
                    .col(big_integer(DeliveryAttempts::DeliveryId))
                    .col(big_integer(DeliveryAttempts::OutboxId))
                    .col(string_len(DeliveryAttempts::SubscriberId, 64))
                    .col(timestamp_with_time_zone(DeliveryAttempts::AttemptedAt))
                    .col(integer_null(DeliveryAttempts::StatusCode))
                    .col(big_integer(DeliveryAttempts::LatencyMs))
                    .col(text_null(DeliveryAttempts::ResponseBody))
                    .col(text_null(DeliveryAttempts::Error))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_delivery_attempts_delivery")
                    .table(DeliveryAttempts::Table)
                    .col(DeliveryAttempts::DeliveryId)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        for column in [
            timestamp_with_time_zone_null(Subscribers::FailingSince),
            timestamp_with_time_zone_null(Subscribers::DisabledAt),
            text_null(Subscribers::DisabledReason),
        ] {
            manager
                .alter_table(Table::alter().table(Subscribers::Table).add_column(column).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeliveryAttempts::Table).to_owned())
            .await?;
        for column in [
            Subscribers::DisabledReason,
            Subscribers::DisabledAt,
            Subscribers::FailingSince,
        ] {
            manager
                .alter_table(Table::alter().table(Subscribers::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    DeliveryId,
    OutboxId,
    SubscriberId,
    AttemptedAt,
    StatusCode,
    LatencyMs,
    ResponseBody,
    Error,
}

#[derive(DeriveIden)]
enum Subscribers {
    Table,
    FailingSince,
    DisabledAt,
    DisabledReason,
}
