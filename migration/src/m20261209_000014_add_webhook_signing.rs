//! Webhook signing schemes and secret rotation.
//!
//! **`subscribers`** gains `signature_scheme varchar(32) NOT NULL`: `standard-webhooks-v1`
//! (the Standard Webhooks headers `webhook-id`, `webhook-timestamp`, `webhook-signature`, the
//! default for subscribers added from now on) or `paywarden-v1` (the `Paywarden-*` headers).
//! Every existing row gets `paywarden-v1`: its receiver checks those headers today and must
//! keep working until its owner moves it.
//!
//! **`subscriber_secrets`** holds a webhook's previous secrets while a rotation overlaps: each
//! row signs deliveries beside the current secret until `expires_at`, then the relay deletes
//! it. Down drops the table (deliveries then carry the current secret only) and the column.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The default fills the existing rows; new rows always name their scheme.
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .add_column(string_len(Subscribers::SignatureScheme, 32).default("paywarden-v1"))
                    .to_owned(),
            )
            .await?;
        let id = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => pk_auto(SubscriberSecrets::Id),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => big_integer(SubscriberSecrets::Id)
                .auto_increment()
                .primary_key()
                .to_owned(),
        };
        manager
            .create_table(
                Table::create()
                    .table(SubscriberSecrets::Table)
                    .if_not_exists()
                    .col(id)
                    .col(string_len(SubscriberSecrets::SubscriberId, 64))
                    .col(text(SubscriberSecrets::Secret))
                    .col(timestamp_with_time_zone(SubscriberSecrets::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subscriber_secrets_subscriber")
                    .table(SubscriberSecrets::Table)
                    .col(SubscriberSecrets::SubscriberId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SubscriberSecrets::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .drop_column(Subscribers::SignatureScheme)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Subscribers {
    Table,
    SignatureScheme,
}

#[derive(DeriveIden)]
enum SubscriberSecrets {
    Table,
    Id,
    SubscriberId,
    Secret,
    ExpiresAt,
}
