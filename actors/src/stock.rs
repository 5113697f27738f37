//! Tracked stock, per merchant, managed by admins. A `(merchant, sku_id)` without a row is
//! untracked: that merchant's orders for it reserve nothing, whatever other merchants track
//! under the same `sku_id`.

use chrono::Utc;
use entities::skus;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect, Set};

use crate::domain::{MerchantId, ValidationError};

/// Longest `sku_id`, in characters (the column is `varchar(64)`).
const SKU_ID_MAX_CHARS: usize = 64;

/// Whether `sku_id` can be stored: 1 to 64 characters, none of them a control character
/// (PostgreSQL refuses a NUL in text outright, which would surface as a server error).
fn is_storable_sku_id(sku_id: &str) -> bool {
    let chars = sku_id.chars().count();
    (1..=SKU_ID_MAX_CHARS).contains(&chars) && !sku_id.chars().any(char::is_control)
}

/// Sets `merchant`'s available stock of `sku_id`, creating the row if needed.
///
/// # Errors
/// A [`ValidationError`] for a negative quantity or a bad id (nothing written), else the
/// database error.
pub async fn set_available<C: ConnectionTrait>(
    conn: &C,
    merchant: &MerchantId,
    sku_id: &str,
    available: i64,
) -> Result<skus::Model, SetStockError> {
    if !is_storable_sku_id(sku_id) {
        return Err(ValidationError::new(
            "invalid_field",
            "sku_id must be 1 to 64 characters without control characters",
        )
        .into());
    }
    if available < 0 {
        return Err(ValidationError::new(
            "invalid_quantity",
            format!("available must not be negative, got {available}"),
        )
        .into());
    }
    let model = skus::Model {
        merchant_id: merchant.as_str().to_owned(),
        sku_id: sku_id.to_owned(),
        available,
        updated_at: Utc::now(),
    };
    skus::Entity::insert(skus::ActiveModel {
        merchant_id: Set(model.merchant_id.clone()),
        sku_id: Set(model.sku_id.clone()),
        available: Set(model.available),
        updated_at: Set(model.updated_at),
    })
    .on_conflict(
        OnConflict::columns([skus::Column::MerchantId, skus::Column::SkuId])
            .update_columns([skus::Column::Available, skus::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(model)
}

/// `merchant`'s stock of `sku_id`; `None` when that merchant does not track it (an id that
/// could not be stored is not tracked either).
///
/// # Errors
/// The database error.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    merchant: &MerchantId,
    sku_id: &str,
) -> Result<Option<skus::Model>, DbErr> {
    if !is_storable_sku_id(sku_id) {
        return Ok(None);
    }
    skus::Entity::find_by_id((merchant.as_str().to_owned(), sku_id.to_owned()))
        .one(conn)
        .await
}

/// Every tracked SKU, by merchant then SKU, at most `limit` rows.
///
/// # Errors
/// The database error.
pub async fn list<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<skus::Model>, DbErr> {
    skus::Entity::find()
        .order_by_asc(skus::Column::MerchantId)
        .order_by_asc(skus::Column::SkuId)
        .limit(limit)
        .all(conn)
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum SetStockError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("database error")]
    Db(#[from] DbErr),
}
