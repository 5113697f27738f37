use sea_orm::entity::prelude::*;

/// The activity rollup's cursor (one row, `id` 1): every `order_logs` row stamped before
/// `counted_until` is in `activity_counts`, once. `None` before the first cycle.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "activity_rollup")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub counted_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
