//! Refunds: one row per refund of (part of) one payment, committed before the provider is
//! asked, with its own durable timer (`next_attempt_at`) for the refund worker; and
//! `orders.refunded_amount`, what the provider has confirmed refunded of the order's payment.

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
                    .table(Orders::Table)
                    .add_column(big_integer(Orders::RefundedAmount).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .if_not_exists()
                    .col(big_integer(Refunds::RefundNo).primary_key())
                    .col(string_len(Refunds::MerchantId, 64))
                    .col(string_len(Refunds::OutRefundId, 64))
                    .col(string_len(Refunds::RequestFingerprint, 64))
                    .col(big_integer(Refunds::OrderId))
                    .col(big_integer(Refunds::PayNo))
                    .col(string_len(Refunds::Provider, 16))
                    .col(big_integer(Refunds::Amount))
                    .col(string_len(Refunds::Currency, 3))
                    .col(string_len(Refunds::Reason, 80))
                    .col(string_len(Refunds::Status, 16))
                    .col(string_len(Refunds::Operator, 128))
                    .col(boolean(Refunds::Submitted).default(false))
                    .col(timestamp_with_time_zone_null(Refunds::NextAttemptAt))
                    .col(integer(Refunds::Attempts).default(0))
                    .col(string_len_null(Refunds::ProviderRefundId, 128))
                    .col(string_len_null(Refunds::Failure, 256))
                    .col(text_null(Refunds::RawPayload))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Refunds::SucceededAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refunds_order")
                            .from(Refunds::Table, Refunds::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refunds_payment_attempt")
                            .from(Refunds::Table, Refunds::PayNo)
                            .to(PaymentAttempts::Table, PaymentAttempts::PayNo),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            Index::create()
                .name("ux_refunds_merchant_out_refund_id")
                .table(Refunds::Table)
                .col(Refunds::MerchantId)
                .col(Refunds::OutRefundId)
                .unique()
                .to_owned(),
            Index::create()
                .name("ix_refunds_order_id")
                .table(Refunds::Table)
                .col(Refunds::OrderId)
                .to_owned(),
            Index::create()
                .name("ix_refunds_next_attempt_at")
                .table(Refunds::Table)
                .col(Refunds::NextAttemptAt)
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Refunds::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::RefundedAmount)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    RefundedAmount,
}

#[derive(DeriveIden)]
enum PaymentAttempts {
    Table,
    PayNo,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    RefundNo,
    MerchantId,
    OutRefundId,
    RequestFingerprint,
    OrderId,
    PayNo,
    Provider,
    Amount,
    Currency,
    Reason,
    Status,
    Operator,
    Submitted,
    NextAttemptAt,
    Attempts,
    ProviderRefundId,
    Failure,
    RawPayload,
    CreatedAt,
    UpdatedAt,
    SucceededAt,
}
