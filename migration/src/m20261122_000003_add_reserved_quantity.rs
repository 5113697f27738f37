//! What each order line reserved of tracked stock at creation, so a close gives back exactly
//! that and nothing for a SKU that became tracked later.

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
                    .table(OrderItems::Table)
                    .add_column(big_integer(OrderItems::ReservedQuantity).default(0))
                    .to_owned(),
            )
            .await?;
        // Lines written before this column existed: what the release rule then assumed, a
        // reservation for every SKU tracked now.
        let backfill = Query::update()
            .table(OrderItems::Table)
            .value(OrderItems::ReservedQuantity, Expr::col(OrderItems::Quantity))
            .and_where(
                Expr::col(OrderItems::SkuId)
                    .in_subquery(Query::select().column(Skus::SkuId).from(Skus::Table).to_owned()),
            )
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OrderItems::Table)
                    .drop_column(OrderItems::ReservedQuantity)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    SkuId,
    Quantity,
    ReservedQuantity,
}

#[derive(DeriveIden)]
enum Skus {
    Table,
    SkuId,
}
