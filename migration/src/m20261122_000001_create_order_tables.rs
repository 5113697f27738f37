//! The foundation schema: orders and their items, payment attempts, the audit log, the outbox,
//! provider webhook receipts and tracked stock.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();

        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(big_integer(Orders::Id).primary_key())
                    .col(string_len(Orders::OrderNo, 32).unique_key())
                    .col(string_len(Orders::MerchantId, 64))
                    .col(string_len(Orders::OutBusinessId, 128))
                    .col(string_len(Orders::RequestFingerprint, 64))
                    .col(string_len(Orders::UserId, 128))
                    .col(string_len(Orders::Subject, 256))
                    .col(big_integer(Orders::TotalAmount))
                    .col(string_len(Orders::Currency, 3))
                    .col(string_len(Orders::Status, 24))
                    .col(string_len_null(Orders::CloseReason, 256))
                    .col(timestamp_with_time_zone(Orders::ExpiresAt))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone_null(Orders::PaidAt))
                    .col(timestamp_with_time_zone_null(Orders::ClosedAt))
                    .col(integer(Orders::Version).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_orders_merchant_out_business_id")
                    .table(Orders::Table)
                    .col(Orders::MerchantId)
                    .col(Orders::OutBusinessId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The SQL deadline index and the reconcile step read live orders by deadline.
        manager
            .create_index(
                Index::create()
                    .name("ix_orders_status_expires_at")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .if_not_exists()
                    .col(id_column(backend, OrderItems::Id))
                    .col(big_integer(OrderItems::OrderId))
                    .col(string_len(OrderItems::SkuId, 64))
                    .col(string_len(OrderItems::Name, 256))
                    .col(big_integer(OrderItems::UnitPrice))
                    .col(big_integer(OrderItems::Quantity))
                    .col(big_integer(OrderItems::Amount))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_items_order")
                            .from(OrderItems::Table, OrderItems::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        create_order_id_index(
            manager,
            "ix_order_items_order_id",
            OrderItems::Table,
            OrderItems::OrderId,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(PaymentAttempts::Table)
                    .if_not_exists()
                    .col(big_integer(PaymentAttempts::PayNo).primary_key())
                    .col(big_integer(PaymentAttempts::OrderId))
                    .col(string_len(PaymentAttempts::Provider, 16))
                    .col(string_len(PaymentAttempts::Status, 24))
                    .col(big_integer(PaymentAttempts::Amount))
                    .col(string_len(PaymentAttempts::Currency, 3))
                    .col(text_null(PaymentAttempts::CodeUrl))
                    .col(string_len_null(PaymentAttempts::ProviderTxnId, 128))
                    .col(text_null(PaymentAttempts::RawPayload))
                    .col(timestamp_with_time_zone(PaymentAttempts::CreatedAt))
                    .col(timestamp_with_time_zone(PaymentAttempts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(PaymentAttempts::PaidAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payment_attempts_order")
                            .from(PaymentAttempts::Table, PaymentAttempts::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        create_order_id_index(
            manager,
            "ix_payment_attempts_order_id",
            PaymentAttempts::Table,
            PaymentAttempts::OrderId,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderLogs::Table)
                    .if_not_exists()
                    .col(id_column(backend, OrderLogs::Id))
                    .col(big_integer(OrderLogs::OrderId))
                    .col(string_len(OrderLogs::Event, 48))
                    .col(string_len_null(OrderLogs::FromStatus, 24))
                    .col(string_len(OrderLogs::ToStatus, 24))
                    .col(string_len(OrderLogs::Operator, 96))
                    .col(text_null(OrderLogs::Reason))
                    .col(timestamp_with_time_zone(OrderLogs::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_logs_order")
                            .from(OrderLogs::Table, OrderLogs::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        create_order_id_index(manager, "ix_order_logs_order_id", OrderLogs::Table, OrderLogs::OrderId).await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(id_column(backend, Outbox::Id))
                    .col(uuid(Outbox::EventId).unique_key())
                    .col(string_len(Outbox::EventType, 48))
                    .col(big_integer(Outbox::OrderId))
                    .col(string_len(Outbox::MerchantId, 64))
                    .col(text(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .to_owned(),
            )
            .await?;
        // The relay reads undelivered rows in insertion order.
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_published_at_id")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await?;
        create_order_id_index(manager, "ix_outbox_order_id", Outbox::Table, Outbox::OrderId).await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookReceipts::Table)
                    .if_not_exists()
                    .col(id_column(backend, WebhookReceipts::Id))
                    .col(string_len(WebhookReceipts::Provider, 16))
                    .col(string_len(WebhookReceipts::EventId, 128))
                    .col(big_integer_null(WebhookReceipts::OrderId))
                    .col(timestamp_with_time_zone(WebhookReceipts::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_webhook_receipts_provider_event_id")
                    .table(WebhookReceipts::Table)
                    .col(WebhookReceipts::Provider)
                    .col(WebhookReceipts::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Skus::Table)
                    .if_not_exists()
                    .col(string_len(Skus::SkuId, 64).primary_key())
                    .col(big_integer(Skus::Available))
                    .col(timestamp_with_time_zone(Skus::UpdatedAt))
                    .check(Expr::col(Skus::Available).gte(0))
                    .to_owned(),
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Skus::Table).to_owned()).await?;
        manager
            .drop_table(Table::drop().table(WebhookReceipts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OrderLogs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PaymentAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OrderItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await?;
        Ok(())
    }
}

/// A 64-bit auto-increment primary key. SQLite only auto-increments a column declared exactly
/// `integer primary key` (which is 64-bit there), so it gets that; Postgres gets `bigserial`.
fn id_column<T: IntoIden>(backend: DatabaseBackend, name: T) -> ColumnDef {
    match backend {
        DatabaseBackend::Sqlite => pk_auto(name),
        DatabaseBackend::Postgres | DatabaseBackend::MySql => {
            big_integer(name).auto_increment().primary_key().to_owned()
        }
    }
}

async fn create_order_id_index<T: IntoIden + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    column: C,
) -> Result<(), DbErr> {
    manager
        .create_index(Index::create().name(name).table(table).col(column).to_owned())
        .await
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    OrderNo,
    MerchantId,
    OutBusinessId,
    RequestFingerprint,
    UserId,
    Subject,
    TotalAmount,
    Currency,
    Status,
    CloseReason,
    ExpiresAt,
    CreatedAt,
    PaidAt,
    ClosedAt,
    Version,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    Id,
    OrderId,
    SkuId,
    Name,
    UnitPrice,
    Quantity,
    Amount,
}

#[derive(DeriveIden)]
enum PaymentAttempts {
    Table,
    PayNo,
    OrderId,
    Provider,
    Status,
    Amount,
    Currency,
    CodeUrl,
    ProviderTxnId,
    RawPayload,
    CreatedAt,
    UpdatedAt,
    PaidAt,
}

#[derive(DeriveIden)]
enum OrderLogs {
    Table,
    Id,
    OrderId,
    Event,
    FromStatus,
    ToStatus,
    Operator,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventId,
    EventType,
    OrderId,
    MerchantId,
    Payload,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum WebhookReceipts {
    Table,
    Id,
    Provider,
    EventId,
    OrderId,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum Skus {
    Table,
    SkuId,
    Available,
    UpdatedAt,
}
