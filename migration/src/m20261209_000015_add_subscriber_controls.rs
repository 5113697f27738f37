//! Per-subscriber delivery controls.
//!
//! **`subscribers`** gains `paused boolean NOT NULL DEFAULT false`: a paused subscriber's events
//! are still fanned out and kept as pending deliveries, but none is sent until it resumes; then
//! they go out in the usual order (per order, in the order they were written). Existing rows
//! are not paused. It also gains `headers text NULL`: a JSON object of extra headers sent with
//! each delivery (bounded and checked where they are set); `NULL` is none. Down drops both
//! columns (a paused subscriber then receives its pending events at once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .add_column(boolean(Subscribers::Paused).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .add_column(text_null(Subscribers::Headers))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Subscribers::Headers, Subscribers::Paused] {
            manager
                .alter_table(Table::alter().table(Subscribers::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Subscribers {
    Table,
    Paused,
    Headers,
}
