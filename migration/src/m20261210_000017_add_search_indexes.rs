//! Indexes for the operators' search, which finds an order by any of its ids across merchants:
//! the merchant's own `out_business_id` and `out_refund_id` (unique per merchant, so far
//! indexed only behind `merchant_id`) and the provider's transaction id.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new(table))
                        .col(Alias::new(column))
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}

const INDEXES: [(&str, &str, &str); 3] = [
    ("ix_orders_out_business_id", "orders", "out_business_id"),
    (
        "ix_payment_attempts_provider_txn_id",
        "payment_attempts",
        "provider_txn_id",
    ),
    ("ix_refunds_out_refund_id", "refunds", "out_refund_id"),
];
