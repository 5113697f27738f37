//! The dashboard's activity counts: orders created, paid and closed, refunds succeeded and the
//! expiry rule's close lateness, per five-minute and per one-hour bucket, kept by the rollup
//! from the append-only `order_logs` so that a dashboard load
//! reads a few hundred rows whatever the number of orders. `activity_rollup` holds the one
//! cursor: everything logged before `counted_until` is counted, once.
//!
//! Also the indexes the rollup and the console's lists read by: `order_logs.created_at`, and
//! `(created_at, key)` of orders, refunds and deliveries (the lists' pages, newest first).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ActivityCounts {
    Table,
    ResolutionSeconds,
    BucketStart,
    Series,
    Label,
    Tally,
}

#[derive(DeriveIden)]
enum ActivityRollup {
    Table,
    Id,
    CountedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ActivityCounts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ActivityCounts::ResolutionSeconds).integer().not_null())
                    .col(
                        ColumnDef::new(ActivityCounts::BucketStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ActivityCounts::Series).string_len(32).not_null())
                    .col(ColumnDef::new(ActivityCounts::Label).string_len(32).not_null())
                    .col(ColumnDef::new(ActivityCounts::Tally).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(ActivityCounts::ResolutionSeconds)
                            .col(ActivityCounts::BucketStart)
                            .col(ActivityCounts::Series)
                            .col(ActivityCounts::Label),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ActivityRollup::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ActivityRollup::Id).integer().not_null().primary_key())
                    .col(
                        ColumnDef::new(ActivityRollup::CountedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ActivityRollup::Table)
                    .columns([ActivityRollup::Id])
                    .values_panic([1.into()])
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(Alias::new(table)).if_not_exists();
            for column in columns {
                index.col(Alias::new(*column));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ActivityRollup::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ActivityCounts::Table).to_owned())
            .await
    }
}

const INDEXES: [(&str, &str, &[&str]); 4] = [
    ("ix_order_logs_created_at", "order_logs", &["created_at"]),
    ("ix_orders_created_at_id", "orders", &["created_at", "id"]),
    (
        "ix_refunds_created_at_refund_no",
        "refunds",
        &["created_at", "refund_no"],
    ),
    (
        "ix_outbox_deliveries_created_at_id",
        "outbox_deliveries",
        &["created_at", "id"],
    ),
];
