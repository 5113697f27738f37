//! Idempotency keys of the mutating `POST` routes: one row per (principal, key), holding the
//! request's fingerprint, whether its first request is still in flight (and until when its
//! holder's lease runs), and once it finished, the response replayed to every retry. Rows live
//! `expires_at` (24 h after they were created) and are then deleted.

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
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    // `merchant:<id>` or `admin`.
                    .col(string_len(IdempotencyKeys::Principal, 80))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    .col(string_len(IdempotencyKeys::Fingerprint, 64))
                    .col(string_len(IdempotencyKeys::RequestMethod, 16))
                    .col(string_len(IdempotencyKeys::RequestPath, 512))
                    .col(string_len(IdempotencyKeys::Status, 16))
                    .col(string_len_null(IdempotencyKeys::LockToken, 32))
                    .col(timestamp_with_time_zone_null(IdempotencyKeys::LockedUntil))
                    .col(small_integer_null(IdempotencyKeys::ResponseStatus))
                    .col(text_null(IdempotencyKeys::ResponseHeaders))
                    .col(binary_null(IdempotencyKeys::ResponseBody))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyKeys::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::Principal)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_idempotency_keys_expires_at")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Principal,
    Key,
    Fingerprint,
    RequestMethod,
    RequestPath,
    Status,
    LockToken,
    LockedUntil,
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
    CreatedAt,
    ExpiresAt,
}
