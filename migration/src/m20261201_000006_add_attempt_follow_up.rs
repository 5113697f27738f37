//! A durable follow-up per payment attempt whose trade may still take money after its order
//! was settled: a second attempt of a paid order the provider would not close yet, a trade
//! the provider did not know yet when the order closed (an Alipay QR code never scanned stays
//! payable until its `time_expire`). The follow-up worker looks at each until the provider
//! confirms it closed, or a final query after `time_expire` plus the clock margin says unpaid.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentAttempts::Table)
                    .add_column(timestamp_with_time_zone_null(PaymentAttempts::FollowUpAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_payment_attempts_follow_up_at")
                    .table(PaymentAttempts::Table)
                    .col(PaymentAttempts::FollowUpAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_payment_attempts_follow_up_at")
                    .table(PaymentAttempts::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentAttempts::Table)
                    .drop_column(PaymentAttempts::FollowUpAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum PaymentAttempts {
    Table,
    FollowUpAt,
}
