//! A durable follow-up per payment attempt whose trade may still take money after its order
//! was settled: a second attempt of a paid order the provider would not close yet, a trade
//! the provider did not know yet when the order closed (an Alipay QR code never scanned stays
//! payable until its `time_expire`). The follow-up worker looks at each until the provider
//! confirms it closed, or a final query after `time_expire` plus the clock margin says unpaid.
//!
//! Also `paid_amount`: what the provider reports was paid on the trade, which differs from
//! `amount` for a payment of another amount (kept, so an operator accepting it records what
//! was really taken).
//!
//! Trades left open before this column existed are put on the follow-up now: pending attempts
//! of orders that are no longer live, and attempts closed without a payment of orders created
//! in the last day (a QR code the provider did not know yet may still have been paid); the
//! worker lets go of each after one look when it can no longer be paid.

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
            .alter_table(
                Table::alter()
                    .table(PaymentAttempts::Table)
                    .add_column(big_integer_null(PaymentAttempts::PaidAmount))
                    .to_owned(),
            )
            .await?;
        let now = chrono::Utc::now();
        let live = ["pending", "stuck"];
        let open_of_final_orders = Query::update()
            .table(PaymentAttempts::Table)
            .value(PaymentAttempts::FollowUpAt, now)
            .and_where(Expr::col(PaymentAttempts::Status).eq("pending"))
            .and_where(
                Expr::col(PaymentAttempts::OrderId).in_subquery(
                    Query::select()
                        .column(Orders::Id)
                        .from(Orders::Table)
                        .and_where(Expr::col(Orders::Status).is_not_in(live))
                        .to_owned(),
                ),
            )
            .to_owned();
        manager.exec_stmt(open_of_final_orders).await?;
        let recently_closed = Query::update()
            .table(PaymentAttempts::Table)
            .value(PaymentAttempts::FollowUpAt, now)
            .and_where(Expr::col(PaymentAttempts::Status).eq("closed"))
            .and_where(Expr::col(PaymentAttempts::ProviderTxnId).is_null())
            .and_where(
                Expr::col(PaymentAttempts::OrderId).in_subquery(
                    Query::select()
                        .column(Orders::Id)
                        .from(Orders::Table)
                        .and_where(Expr::col(Orders::CreatedAt).gt(now - chrono::Duration::days(1)))
                        .to_owned(),
                ),
            )
            .to_owned();
        manager.exec_stmt(recently_closed).await?;
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
                    .drop_column(PaymentAttempts::PaidAmount)
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
    PaidAmount,
    Status,
    OrderId,
    ProviderTxnId,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    Status,
    CreatedAt,
}
