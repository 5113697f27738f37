use sea_orm::entity::prelude::*;

/// One count of the dashboard's activity: how many `series` events (`created`, `paid`,
/// `closed`, `refunded`, `close_lateness`) fell in the bucket of `resolution_seconds` starting
/// at `bucket_start`, for `label` (the provider, `none`, or a lateness bound). Kept by the
/// activity rollup; read by the console's dashboard.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "activity_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub resolution_seconds: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub series: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub label: String,
    pub tally: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
