//! The fencing tokens of a cluster's partitions: one row per partition, whose `epoch` grows by
//! one each time a node takes the partition's lease. A node's writes that depend on owning a
//! partition (an expiry close, a batch of them) read the row `FOR SHARE` in their transaction
//! and give up when the epoch is no longer theirs; taking a partition updates the row, which
//! waits for those transactions and fences every later one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PartitionFences::Table)
                    .if_not_exists()
                    .col(integer(PartitionFences::Partition).primary_key())
                    .col(big_integer(PartitionFences::Epoch).default(0))
                    .col(string_len(PartitionFences::Node, 128).default(""))
                    .col(timestamp_with_time_zone_null(PartitionFences::AcquiredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PartitionFences::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PartitionFences {
    Table,
    Partition,
    Epoch,
    Node,
    AcquiredAt,
}
