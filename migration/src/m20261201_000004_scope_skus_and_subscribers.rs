//! Tenancy: tracked stock and webhook subscribers belong to a merchant.
//!
//! **`skus`** gains `merchant_id varchar(64) NOT NULL` and its primary key becomes
//! `(merchant_id, sku_id)`: two merchants may use the same `sku_id`, each with its own level.
//! Existing rows were one pool shared by every merchant; each is given to its owner where the
//! data names exactly one:
//!
//! - the merchant of the orders whose items name the `sku_id`, when all those orders belong to
//!   one merchant;
//! - otherwise (orders of several merchants, or no order at all) the reserved owner
//!   `UNASSIGNED`, `(unassigned)`. It can never be a merchant (merchant ids hold only
//!   letters, digits, `_` and `-`), so no merchant's order reserves from such a row and no
//!   admin route reads it, but the row and its level are kept. An operator gives it to its
//!   merchant with
//!   `UPDATE skus SET merchant_id = '<merchant>' WHERE merchant_id = '(unassigned)' AND sku_id = '<sku>'`
//!   (or sets the merchant's level with `PUT /admin/merchants/{merchant_id}/skus/{sku_id}`
//!   and leaves the old row inert).
//!
//! PostgreSQL changes the table in place; SQLite cannot change a primary key, so it builds the
//! new table, copies the rows, drops the old one and renames the new one, in one transaction.
//! Down merges each `sku_id`'s rows back into one shared row holding their sum.
//!
//! **`subscribers`** gains a nullable `merchant_id varchar(64)`: `NULL` is a global subscriber
//! (every merchant's events, registered by the operator), a value scopes it to that merchant's
//! events. Existing subscribers received every event, so they stay global (`NULL`). Down
//! disables the scoped subscribers before dropping the column: once the column is gone they
//! would otherwise receive every merchant's events.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, TransactionTrait};

/// The owner of stock rows whose merchant the data does not name.
const UNASSIGNED: &str = "(unassigned)";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => scope_skus_sqlite(manager).await?,
            DatabaseBackend::Postgres | DatabaseBackend::MySql => scope_skus_postgres(manager).await?,
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .add_column(string_len_null(Subscribers::MerchantId, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let disable_scoped = Query::update()
            .table(Subscribers::Table)
            .value(Subscribers::Enabled, false)
            .and_where(Expr::col(Subscribers::MerchantId).is_not_null())
            .to_owned();
        manager.exec_stmt(disable_scoped).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Subscribers::Table)
                    .drop_column(Subscribers::MerchantId)
                    .to_owned(),
            )
            .await?;
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => share_skus_sqlite(manager).await,
            DatabaseBackend::Postgres | DatabaseBackend::MySql => share_skus_postgres(manager).await,
        }
    }
}

/// The owner of the `skus` row in scope: the one merchant whose orders name its `sku_id`, or
/// `UNASSIGNED`.
fn owner_of_skus_row() -> String {
    format!(
        "COALESCE((SELECT CASE WHEN COUNT(DISTINCT o.merchant_id) = 1 THEN MIN(o.merchant_id) END \
         FROM order_items i JOIN orders o ON o.id = i.order_id WHERE i.sku_id = skus.sku_id), '{UNASSIGNED}')"
    )
}

/// Drops the primary key of `skus`, whatever PostgreSQL named it.
const DROP_SKUS_PRIMARY_KEY: &str = r"
DO $$
DECLARE pk text;
BEGIN
    SELECT conname INTO pk FROM pg_constraint WHERE conrelid = 'skus'::regclass AND contype = 'p';
    EXECUTE format('ALTER TABLE skus DROP CONSTRAINT %I', pk);
END $$";

async fn scope_skus_postgres(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // The migrator runs a PostgreSQL migration in one transaction.
    let db = manager.get_connection();
    db.execute_unprepared("ALTER TABLE skus ADD COLUMN merchant_id varchar(64)")
        .await?;
    db.execute_unprepared(&format!("UPDATE skus SET merchant_id = {}", owner_of_skus_row()))
        .await?;
    db.execute_unprepared("ALTER TABLE skus ALTER COLUMN merchant_id SET NOT NULL")
        .await?;
    db.execute_unprepared(DROP_SKUS_PRIMARY_KEY).await?;
    db.execute_unprepared("ALTER TABLE skus ADD CONSTRAINT skus_pkey PRIMARY KEY (merchant_id, sku_id)")
        .await?;
    Ok(())
}

async fn share_skus_postgres(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    // Each sku_id's rows become one: the first merchant's row takes the sum, the others go.
    db.execute_unprepared(
        "UPDATE skus SET available = t.total \
         FROM (SELECT sku_id, CAST(SUM(available) AS BIGINT) AS total, MIN(merchant_id) AS keep \
               FROM skus GROUP BY sku_id) t \
         WHERE skus.sku_id = t.sku_id AND skus.merchant_id = t.keep",
    )
    .await?;
    db.execute_unprepared(
        "DELETE FROM skus WHERE EXISTS \
         (SELECT 1 FROM skus k WHERE k.sku_id = skus.sku_id AND k.merchant_id < skus.merchant_id)",
    )
    .await?;
    db.execute_unprepared(DROP_SKUS_PRIMARY_KEY).await?;
    db.execute_unprepared("ALTER TABLE skus DROP COLUMN merchant_id")
        .await?;
    db.execute_unprepared("ALTER TABLE skus ADD CONSTRAINT skus_pkey PRIMARY KEY (sku_id)")
        .await?;
    Ok(())
}

async fn scope_skus_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    // The migrator gives SQLite no transaction: without one, a failure between the drop and
    // the rename would lose the table.
    let txn = manager.get_connection().begin().await?;
    let scoped = Table::create()
        .table(SkusRebuilt::Table)
        .col(string_len(Skus::MerchantId, 64))
        .col(string_len(Skus::SkuId, 64))
        .col(big_integer(Skus::Available))
        .col(timestamp_with_time_zone(Skus::UpdatedAt))
        .check(Expr::col(Skus::Available).gte(0))
        .primary_key(Index::create().col(Skus::MerchantId).col(Skus::SkuId))
        .to_owned();
    txn.execute(backend.build(&scoped)).await?;
    txn.execute_unprepared(&format!(
        "INSERT INTO skus_rebuilt (merchant_id, sku_id, available, updated_at) \
         SELECT {}, sku_id, available, updated_at FROM skus",
        owner_of_skus_row()
    ))
    .await?;
    replace_skus_sqlite(&txn).await?;
    txn.commit().await
}

async fn share_skus_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let txn = manager.get_connection().begin().await?;
    let shared = Table::create()
        .table(SkusRebuilt::Table)
        .col(string_len(Skus::SkuId, 64).primary_key())
        .col(big_integer(Skus::Available))
        .col(timestamp_with_time_zone(Skus::UpdatedAt))
        .check(Expr::col(Skus::Available).gte(0))
        .to_owned();
    txn.execute(backend.build(&shared)).await?;
    txn.execute_unprepared(
        "INSERT INTO skus_rebuilt (sku_id, available, updated_at) \
         SELECT sku_id, SUM(available), MAX(updated_at) FROM skus GROUP BY sku_id",
    )
    .await?;
    replace_skus_sqlite(&txn).await?;
    txn.commit().await
}

/// `skus_rebuilt` becomes `skus`.
async fn replace_skus_sqlite<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    txn.execute_unprepared("DROP TABLE skus").await?;
    txn.execute_unprepared("ALTER TABLE skus_rebuilt RENAME TO skus")
        .await?;
    Ok(())
}

#[derive(DeriveIden)]
enum Skus {
    MerchantId,
    SkuId,
    Available,
    UpdatedAt,
}

/// The new `skus` while it is built (SQLite).
#[derive(DeriveIden)]
enum SkusRebuilt {
    Table,
}

#[derive(DeriveIden)]
enum Subscribers {
    Table,
    MerchantId,
    Enabled,
}
