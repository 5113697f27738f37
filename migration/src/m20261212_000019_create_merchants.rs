//! Merchants as data: the merchants, their client API keys (digests only) and their provider
//! accounts (public fields in the clear, secrets sealed under the master key).
//!
//! - **`merchants`**: `merchant_id` (the id orders carry), a display name, whether its keys
//!   work, and where it comes from (`api`; `config` for a merchant of `auth.merchant_keys`,
//!   imported at start; `orders` for one whose orders predate this table: every merchant id
//!   orders carry gets a row here, so no merchant id is ever onboarded again for another
//!   business).
//! - **`merchant_keys`**: one row per issued key: its SHA-256 digest (hex, unique: what a
//!   request's key is looked up by), a visible prefix, a label, when it was last used and
//!   when it was revoked. The key itself is never stored.
//! - **`provider_accounts`**: a merchant's WeChat Pay merchant account, Alipay app or sandbox:
//!   `config` the public fields (JSON), `secrets` the secret fields sealed with AES-256-GCM
//!   (`pwv1.<key id>.<nonce>.<ciphertext>`, bound to the account id), a fingerprint of the
//!   keys, and whether it is enabled.
//! - **`payment_attempts.account_id`**: the merchant's account a trade was started at
//!   (`NULL`: the deployment's configured provider, as before); every later call for that
//!   trade and its refunds goes through the same account.
//! - **`unmatched_notifications.account_id`**: the merchant's account an authentic
//!   notification for an unknown trade arrived for (`NULL`: the deployment's own provider).
//! - **`reconciliation_runs.account_key`**: whose bill a run compares (`''`: the deployment's
//!   configured provider; else the account id); a day is one run per provider and account
//!   (the unique index moves from `(provider, bill_date)` to `(provider, account_key,
//!   bill_date)`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchants {
    Table,
    MerchantId,
    Name,
    Enabled,
    Source,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum MerchantKeys {
    Table,
    KeyId,
    MerchantId,
    Digest,
    Prefix,
    Label,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ProviderAccounts {
    Table,
    AccountId,
    MerchantId,
    Provider,
    Enabled,
    Source,
    Config,
    Secrets,
    Fingerprint,
    CreatedAt,
    UpdatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum PaymentAttempts {
    Table,
    AccountId,
}

#[derive(DeriveIden)]
enum UnmatchedNotifications {
    Table,
    AccountId,
}

#[derive(DeriveIden)]
enum ReconciliationRuns {
    Table,
    Provider,
    AccountKey,
    BillDate,
}

const OLD_RUN_INDEX: &str = "ux_reconciliation_runs_provider_day";
const RUN_INDEX: &str = "ux_reconciliation_runs_provider_account_day";

/// Replaces the runs' unique index `from` by `to`: one run per provider and day
/// ([`OLD_RUN_INDEX`]), or per provider, account and day ([`RUN_INDEX`]).
async fn swap_run_index(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    manager
        .drop_index(Index::drop().name(from).table(ReconciliationRuns::Table).to_owned())
        .await?;
    let mut index = Index::create();
    index
        .name(to)
        .table(ReconciliationRuns::Table)
        .col(ReconciliationRuns::Provider);
    if to == RUN_INDEX {
        index.col(ReconciliationRuns::AccountKey);
    }
    index.col(ReconciliationRuns::BillDate).unique();
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Merchants::Table)
                    .if_not_exists()
                    .col(string_len(Merchants::MerchantId, 64).primary_key())
                    .col(string_len(Merchants::Name, 128))
                    .col(boolean(Merchants::Enabled))
                    .col(string_len(Merchants::Source, 16))
                    .col(timestamp_with_time_zone(Merchants::CreatedAt))
                    .col(timestamp_with_time_zone_null(Merchants::DisabledAt))
                    .to_owned(),
            )
            .await?;
        // Every merchant id the orders already carry.
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Merchants::Table)
                    .columns([
                        Merchants::MerchantId,
                        Merchants::Name,
                        Merchants::Enabled,
                        Merchants::Source,
                        Merchants::CreatedAt,
                    ])
                    .select_from(
                        Query::select()
                            .column(Alias::new("merchant_id"))
                            .column(Alias::new("merchant_id"))
                            .expr(Expr::val(true))
                            .expr(Expr::val("orders"))
                            .expr(Expr::col(Alias::new("created_at")).min())
                            .from(Alias::new("orders"))
                            .group_by_col(Alias::new("merchant_id"))
                            .to_owned(),
                    )
                    .map_err(|err| DbErr::Migration(err.to_string()))?
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MerchantKeys::Table)
                    .if_not_exists()
                    .col(string_len(MerchantKeys::KeyId, 64).primary_key())
                    .col(string_len(MerchantKeys::MerchantId, 64))
                    .col(string_len(MerchantKeys::Digest, 64))
                    .col(string_len(MerchantKeys::Prefix, 32))
                    .col(string_len(MerchantKeys::Label, 128))
                    .col(timestamp_with_time_zone(MerchantKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(MerchantKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(MerchantKeys::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_merchant_keys_digest")
                    .table(MerchantKeys::Table)
                    .col(MerchantKeys::Digest)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_merchant_keys_merchant_id")
                    .table(MerchantKeys::Table)
                    .col(MerchantKeys::MerchantId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderAccounts::Table)
                    .if_not_exists()
                    .col(string_len(ProviderAccounts::AccountId, 64).primary_key())
                    .col(string_len(ProviderAccounts::MerchantId, 64))
                    .col(string_len(ProviderAccounts::Provider, 16))
                    .col(boolean(ProviderAccounts::Enabled))
                    .col(string_len(ProviderAccounts::Source, 16))
                    .col(text(ProviderAccounts::Config))
                    .col(text(ProviderAccounts::Secrets))
                    .col(string_len(ProviderAccounts::Fingerprint, 64))
                    .col(timestamp_with_time_zone(ProviderAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(ProviderAccounts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ProviderAccounts::DisabledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_provider_accounts_merchant_provider")
                    .table(ProviderAccounts::Table)
                    .col(ProviderAccounts::MerchantId)
                    .col(ProviderAccounts::Provider)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentAttempts::Table)
                    .add_column(string_len_null(PaymentAttempts::AccountId, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UnmatchedNotifications::Table)
                    .add_column(string_len_null(UnmatchedNotifications::AccountId, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ReconciliationRuns::Table)
                    .add_column(string_len(ReconciliationRuns::AccountKey, 64).default(""))
                    .to_owned(),
            )
            .await?;
        swap_run_index(manager, OLD_RUN_INDEX, RUN_INDEX).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Without `payment_attempts.account_id`, an account's trade would be queried, closed
        // and refunded at the deployment's own provider: refused while any exists.
        let connection = manager.get_connection();
        let row = connection
            .query_one(Statement::from_string(
                connection.get_database_backend(),
                "SELECT COUNT(*) AS n FROM payment_attempts WHERE account_id IS NOT NULL",
            ))
            .await?;
        let account_trades: i64 = row.map(|row| row.try_get("", "n")).transpose()?.unwrap_or(0);
        if account_trades > 0 {
            return Err(DbErr::Migration(format!(
                "{account_trades} payment attempts were started at merchants' provider accounts; rolling back would send their calls to the deployment's own provider"
            )));
        }
        // The accounts' runs go with their accounts; the configured provider's stay.
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Alias::new("reconciliation_items"))
                    .and_where(
                        Expr::col(Alias::new("run_id")).in_subquery(
                            Query::select()
                                .column(Alias::new("id"))
                                .from(ReconciliationRuns::Table)
                                .and_where(Expr::col(ReconciliationRuns::AccountKey).ne(""))
                                .to_owned(),
                        ),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(ReconciliationRuns::Table)
                    .and_where(Expr::col(ReconciliationRuns::AccountKey).ne(""))
                    .to_owned(),
            )
            .await?;
        swap_run_index(manager, RUN_INDEX, OLD_RUN_INDEX).await?;
        // SQLite drops one column per statement.
        for (table, column) in [
            (
                UnmatchedNotifications::Table.into_iden(),
                UnmatchedNotifications::AccountId.into_iden(),
            ),
            (
                ReconciliationRuns::Table.into_iden(),
                ReconciliationRuns::AccountKey.into_iden(),
            ),
            (
                PaymentAttempts::Table.into_iden(),
                PaymentAttempts::AccountId.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        for table in [
            ProviderAccounts::Table.into_iden(),
            MerchantKeys::Table.into_iden(),
            Merchants::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
