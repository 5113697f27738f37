//! Downstream delivery: subscribers (signed webhooks, the AMQP sink) and one delivery row per
//! outbox event and subscriber, with its retry state and a lease so two relays never deliver
//! the same row at once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(OutboxDeliveries::Id),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => big_integer(OutboxDeliveries::Id)
                .auto_increment()
                .primary_key()
                .to_owned(),
        };
        manager
            .create_table(
                Table::create()
                    .table(Subscribers::Table)
                    .if_not_exists()
                    .col(string_len(Subscribers::Id, 64).primary_key())
                    .col(string_len(Subscribers::Kind, 16))
                    .col(text(Subscribers::Url))
                    .col(text_null(Subscribers::Secret))
                    .col(string_len(Subscribers::EventTypes, 512))
                    .col(boolean(Subscribers::Enabled).default(true))
                    .col(timestamp_with_time_zone(Subscribers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxDeliveries::Table)
                    .if_not_exists()
                    .col(id)
                    .col(big_integer(OutboxDeliveries::OutboxId))
                    .col(big_integer(OutboxDeliveries::OrderId))
                    .col(string_len(OutboxDeliveries::SubscriberId, 64))
                    .col(string_len(OutboxDeliveries::Status, 16))
                    .col(integer(OutboxDeliveries::Attempts).default(0))
                    .col(timestamp_with_time_zone(OutboxDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(OutboxDeliveries::LeaseUntil))
                    .col(text_null(OutboxDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(OutboxDeliveries::DeliveredAt))
                    .col(timestamp_with_time_zone(OutboxDeliveries::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_outbox_deliveries_outbox")
                            .from(OutboxDeliveries::Table, OutboxDeliveries::OutboxId)
                            .to(Outbox::Table, Outbox::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_outbox_deliveries_outbox_subscriber")
                    .table(OutboxDeliveries::Table)
                    .col(OutboxDeliveries::OutboxId)
                    .col(OutboxDeliveries::SubscriberId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The relay claims due rows; per-order ordering looks up earlier rows of the same order.
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_deliveries_status_next_attempt")
                    .table(OutboxDeliveries::Table)
                    .col(OutboxDeliveries::Status)
                    .col(OutboxDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_deliveries_subscriber_order")
                    .table(OutboxDeliveries::Table)
                    .col(OutboxDeliveries::SubscriberId)
                    .col(OutboxDeliveries::OrderId)
                    .col(OutboxDeliveries::OutboxId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(timestamp_with_time_zone_null(Outbox::FannedOutAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_fanned_out_at_id")
                    .table(Outbox::Table)
                    .col(Outbox::FannedOutAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_fanned_out_at_id")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .drop_column(Outbox::FannedOutAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(OutboxDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Subscribers::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Subscribers {
    Table,
    Id,
    Kind,
    Url,
    Secret,
    EventTypes,
    Enabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OutboxDeliveries {
    Table,
    Id,
    OutboxId,
    OrderId,
    SubscriberId,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastError,
    DeliveredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    FannedOutAt,
}
