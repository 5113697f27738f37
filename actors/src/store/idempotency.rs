//! Idempotent order creation: one order per merchant and `out_business_id`.
//!
//! A second request with the same key is a replay when its content fingerprint matches (the
//! client gets the first order back) and a conflict when it does not (the key was reused for
//! something else, which is a client bug worth a loud 409).

use entities::{orders, OrderId};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::domain::NewOrder;

#[derive(Debug, PartialEq, Eq)]
pub enum NextAction {
    /// No order holds the key yet.
    Create,
    /// Same key, same content: answer the existing order.
    Replay(OrderId),
    /// Same key, different content.
    Conflict,
}

/// # Errors
/// The database error.
pub async fn next_action<C: ConnectionTrait>(conn: &C, order: &NewOrder) -> Result<NextAction, DbErr> {
    let existing: Option<(OrderId, String)> = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .column(orders::Column::RequestFingerprint)
        .filter(orders::Column::MerchantId.eq(order.merchant_id.as_str()))
        .filter(orders::Column::OutBusinessId.eq(order.out_business_id.as_str()))
        .into_tuple()
        .one(conn)
        .await?;
    Ok(match existing {
        None => NextAction::Create,
        Some((id, fingerprint)) if fingerprint == order.fingerprint() => NextAction::Replay(id),
        Some(_) => NextAction::Conflict,
    })
}
