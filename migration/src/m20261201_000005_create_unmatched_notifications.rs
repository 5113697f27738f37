//! Authentic provider notifications for a trade paywarden does not know (a restored database,
//! another deployment's trade): money may have been taken, so each is kept for an operator to
//! list and resolve, and acknowledged only once stored.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(UnmatchedNotifications::Id),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => big_integer(UnmatchedNotifications::Id)
                .auto_increment()
                .primary_key()
                .to_owned(),
        };
        manager
            .create_table(
                Table::create()
                    .table(UnmatchedNotifications::Table)
                    .if_not_exists()
                    .col(id)
                    .col(string_len(UnmatchedNotifications::Provider, 16))
                    .col(string_len(UnmatchedNotifications::EventId, 128))
                    .col(string_len(UnmatchedNotifications::PayNo, 64))
                    .col(string_len(UnmatchedNotifications::TradeState, 24))
                    .col(big_integer_null(UnmatchedNotifications::Amount))
                    .col(string_len_null(UnmatchedNotifications::ProviderTxnId, 128))
                    .col(text(UnmatchedNotifications::Payload))
                    .col(timestamp_with_time_zone(UnmatchedNotifications::ReceivedAt))
                    .col(timestamp_with_time_zone_null(UnmatchedNotifications::ResolvedAt))
                    .col(string_len_null(UnmatchedNotifications::ResolvedBy, 96))
                    .col(string_len_null(UnmatchedNotifications::Resolution, 256))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_unmatched_notifications_provider_event_id")
                    .table(UnmatchedNotifications::Table)
                    .col(UnmatchedNotifications::Provider)
                    .col(UnmatchedNotifications::EventId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UnmatchedNotifications::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UnmatchedNotifications {
    Table,
    Id,
    Provider,
    EventId,
    PayNo,
    TradeState,
    Amount,
    ProviderTxnId,
    Payload,
    ReceivedAt,
    ResolvedAt,
    ResolvedBy,
    Resolution,
}
