use sea_orm::entity::prelude::*;

use crate::types::Provider;

/// One reconciliation of one account's bill of one day (China time): unique per provider,
/// account and day, so running the same day again reuses the run and adds no item twice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconciliation_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub provider: Provider,
    /// Whose bill: `""` the deployment's configured provider, else a merchant's account id.
    pub account_key: String,
    /// `YYYY-MM-DD`, the bill's day in China time.
    pub bill_date: String,
    /// `waiting` (for its bill, or its next step), `completed`.
    pub status: String,
    /// Times the bill was asked for.
    pub attempts: i32,
    /// When the reconciliation worker asks for the bill next (`None` once completed): the
    /// durable timer of a bill not published yet.
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    /// Who started it: `system` (the daily schedule) or `admin:<name>`.
    pub operator: String,
    /// Counts and totals per side, as JSON (`provider_payments`, `local_payments`,
    /// `provider_refunds`, `local_refunds`, each `{count, total}`).
    #[sea_orm(column_type = "Text", nullable)]
    pub summary: Option<String>,
    /// Differences found (items), over every completion of the run.
    pub items: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
