//! Operator console sessions, kept server-side so a session can be ended before its cookie
//! expires (sign-out, or an operator signing every session out) on every node alike. A row
//! holds the SHA-256 of the session's secret token (the cookie carries the token, never the
//! database), a short public id that the order log records next to the operator's name, the
//! operator's name, and its times: created, last seen (for the idle timeout), absolute expiry,
//! revoked.

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
                    .table(ConsoleSessions::Table)
                    .if_not_exists()
                    .col(string_len(ConsoleSessions::Id, 16).primary_key())
                    .col(string_len(ConsoleSessions::TokenDigest, 64).unique_key())
                    .col(string_len(ConsoleSessions::Operator, 64))
                    .col(timestamp_with_time_zone(ConsoleSessions::CreatedAt))
                    .col(timestamp_with_time_zone(ConsoleSessions::LastSeenAt))
                    .col(timestamp_with_time_zone(ConsoleSessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ConsoleSessions::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_console_sessions_expires_at")
                    .table(ConsoleSessions::Table)
                    .col(ConsoleSessions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsoleSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ConsoleSessions {
    Table,
    Id,
    TokenDigest,
    Operator,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    RevokedAt,
}
