//! Reconciliation against the providers' bills: one run per provider and day, and the
//! differences it found, each for an operator to resolve.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = |column: ReconciliationRuns| match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(column),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => {
                big_integer(column).auto_increment().primary_key().to_owned()
            }
        };
        let item_id = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(ReconciliationItems::Id),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => big_integer(ReconciliationItems::Id)
                .auto_increment()
                .primary_key()
                .to_owned(),
        };
        manager
            .create_table(
                Table::create()
                    .table(ReconciliationRuns::Table)
                    .if_not_exists()
                    .col(id(ReconciliationRuns::Id))
                    .col(string_len(ReconciliationRuns::Provider, 16))
                    .col(string_len(ReconciliationRuns::BillDate, 10))
                    .col(string_len(ReconciliationRuns::Status, 16))
                    .col(integer(ReconciliationRuns::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(ReconciliationRuns::NextAttemptAt))
                    .col(string_len_null(ReconciliationRuns::LastError, 512))
                    .col(string_len(ReconciliationRuns::Operator, 128))
                    .col(text_null(ReconciliationRuns::Summary))
                    .col(integer(ReconciliationRuns::Items).default(0))
                    .col(timestamp_with_time_zone(ReconciliationRuns::CreatedAt))
                    .col(timestamp_with_time_zone(ReconciliationRuns::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ReconciliationRuns::CompletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReconciliationItems::Table)
                    .if_not_exists()
                    .col(item_id)
                    .col(big_integer(ReconciliationItems::RunId))
                    .col(string_len(ReconciliationItems::Kind, 32))
                    .col(string_len(ReconciliationItems::Reference, 128))
                    .col(string_len(ReconciliationItems::OutTradeNo, 128))
                    .col(big_integer_null(ReconciliationItems::ProviderAmount))
                    .col(big_integer_null(ReconciliationItems::LocalAmount))
                    .col(text(ReconciliationItems::Detail))
                    .col(string_len_null(ReconciliationItems::Action, 256))
                    .col(timestamp_with_time_zone(ReconciliationItems::CreatedAt))
                    .col(timestamp_with_time_zone_null(ReconciliationItems::ResolvedAt))
                    .col(string_len_null(ReconciliationItems::ResolvedBy, 128))
                    .col(string_len_null(ReconciliationItems::Resolution, 256))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_reconciliation_items_run")
                            .from(ReconciliationItems::Table, ReconciliationItems::RunId)
                            .to(ReconciliationRuns::Table, ReconciliationRuns::Id),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            Index::create()
                .name("ux_reconciliation_runs_provider_day")
                .table(ReconciliationRuns::Table)
                .col(ReconciliationRuns::Provider)
                .col(ReconciliationRuns::BillDate)
                .unique()
                .to_owned(),
            Index::create()
                .name("ix_reconciliation_runs_next_attempt_at")
                .table(ReconciliationRuns::Table)
                .col(ReconciliationRuns::NextAttemptAt)
                .to_owned(),
            Index::create()
                .name("ux_reconciliation_items_run_kind_reference")
                .table(ReconciliationItems::Table)
                .col(ReconciliationItems::RunId)
                .col(ReconciliationItems::Kind)
                .col(ReconciliationItems::Reference)
                .unique()
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReconciliationItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ReconciliationRuns::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ReconciliationRuns {
    Table,
    Id,
    Provider,
    BillDate,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    Operator,
    Summary,
    Items,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum ReconciliationItems {
    Table,
    Id,
    RunId,
    Kind,
    Reference,
    OutTradeNo,
    ProviderAmount,
    LocalAmount,
    Detail,
    Action,
    CreatedAt,
    ResolvedAt,
    ResolvedBy,
    Resolution,
}
