//! Merchants and their client API keys, as data.
//!
//! A key is `pwk_` and the base64url of 32 random bytes: shown once when issued, stored as its
//! SHA-256 digest only (a key that random needs no slow hash: nothing can be guessed from the
//! digest). A request's key is looked up by its digest ([`lookup`]), through the cache of
//! `crate`'s callers; revoking a key or disabling its merchant makes the lookup answer nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use entities::{merchant_keys, merchants};
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::{text_field, MerchantId, ValidationError};

/// Where a merchant row comes from.
pub const SOURCE_API: &str = "api";
pub const SOURCE_CONFIG: &str = "config";
/// A merchant whose orders predate the merchants table (recorded by the upgrade).
pub const SOURCE_ORDERS: &str = "orders";

/// What an issued key starts with.
pub const KEY_PREFIX: &str = "pwk_";
/// How many of a key's characters are shown to tell keys apart (`pwk_` and 8 more).
const VISIBLE_CHARS: usize = 12;

/// Why a merchant or key change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("merchant not found")]
    NotFound,
    #[error("key not found")]
    KeyNotFound,
    #[error("provider account not found")]
    AccountNotFound,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The hex SHA-256 of a key: what is stored and looked up.
pub fn key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new merchant; `merchant_exists` when the id is taken.
///
/// # Errors
/// An invalid id or name, a taken id, or the database.
pub async fn create(db: &DatabaseConnection, merchant_id: &str, name: &str) -> Result<merchants::Model, MerchantError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let name = text_field("name", name, 128)?;
    let inserted = insert_new(db, &merchant, &name, SOURCE_API, Utc::now()).await?;
    if inserted == 0 {
        return Err(ValidationError::new(
            "merchant_exists",
            format!("merchant {merchant} exists; merchant ids are never reused"),
        )
        .into());
    }
    get(db, &merchant).await
}

/// Rows for the merchants of `auth.merchant_keys`, where none exists yet (`source: config`);
/// an existing row, and whether it is enabled, is left as it is (one recorded from its
/// orders at the upgrade is marked `config`).
///
/// # Errors
/// The database.
pub async fn import_configured(db: &impl ConnectionTrait, merchants: &[MerchantId]) -> Result<(), DbErr> {
    let now = Utc::now();
    for merchant in merchants {
        insert_new(db, merchant, merchant.as_str(), SOURCE_CONFIG, now).await?;
    }
    Ok(())
}

/// An enabled merchant's row, unless its id exists: the rows written (0 or 1).
async fn insert_new(
    db: &impl ConnectionTrait,
    merchant: &MerchantId,
    name: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    merchants::Entity::insert(merchants::ActiveModel {
        merchant_id: Set(merchant.as_str().to_owned()),
        name: Set(name.to_owned()),
        enabled: Set(true),
        source: Set(source.to_owned()),
        created_at: Set(now),
        disabled_at: Set(None),
    })
    .on_conflict(
        OnConflict::column(merchants::Column::MerchantId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
}

/// Every merchant, by id.
///
/// # Errors
/// The database.
pub async fn list(db: &DatabaseConnection) -> Result<Vec<merchants::Model>, DbErr> {
    merchants::Entity::find()
        .order_by_asc(merchants::Column::MerchantId)
        .all(db)
        .await
}

/// One merchant.
///
/// # Errors
/// `NotFound`, or the database.
pub async fn get(db: &DatabaseConnection, merchant: &MerchantId) -> Result<merchants::Model, MerchantError> {
    merchants::Entity::find_by_id(merchant.as_str())
        .one(db)
        .await?
        .ok_or(MerchantError::NotFound)
}

/// Disables a merchant: its keys stop working (configured or issued); its live orders still
/// resolve. Disabling a disabled merchant changes nothing.
///
/// # Errors
/// `NotFound`, or the database.
pub async fn disable(db: &DatabaseConnection, merchant: &MerchantId) -> Result<merchants::Model, MerchantError> {
    merchants::Entity::update_many()
        .col_expr(merchants::Column::Enabled, false.into())
        .col_expr(merchants::Column::DisabledAt, Some(Utc::now()).into())
        .filter(merchants::Column::MerchantId.eq(merchant.as_str()))
        .filter(merchants::Column::Enabled.eq(true))
        .exec(db)
        .await?;
    get(db, merchant).await
}

/// A new key of an enabled merchant: the row, and the key itself (shown once).
///
/// # Errors
/// An invalid label, an unknown or disabled merchant, or the database.
pub async fn issue_key(
    db: &DatabaseConnection,
    merchant: &MerchantId,
    label: &str,
) -> Result<(merchant_keys::Model, SecretString), MerchantError> {
    let label = text_field("label", label, 128)?;
    let owner = get(db, merchant).await?;
    if !owner.enabled {
        return Err(ValidationError::new(
            "merchant_disabled",
            format!("merchant {merchant} is disabled: no key can be issued to it"),
        )
        .into());
    }
    let mut random = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let key = SecretString::from(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random)));
    let row = merchant_keys::Model {
        key_id: format!("key_{}", uuid::Uuid::new_v4().simple()),
        merchant_id: merchant.as_str().to_owned(),
        digest: key_digest(key.expose_secret()),
        prefix: key.expose_secret().chars().take(VISIBLE_CHARS).collect(),
        label,
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    };
    merchant_keys::Entity::insert(merchant_keys::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok((row, key))
}

/// A merchant's keys, newest first (revoked ones included).
///
/// # Errors
/// An unknown merchant, or the database.
pub async fn keys(db: &DatabaseConnection, merchant: &MerchantId) -> Result<Vec<merchant_keys::Model>, MerchantError> {
    get(db, merchant).await?;
    Ok(merchant_keys::Entity::find()
        .filter(merchant_keys::Column::MerchantId.eq(merchant.as_str()))
        .order_by_desc(merchant_keys::Column::CreatedAt)
        .order_by_desc(merchant_keys::Column::KeyId)
        .all(db)
        .await?)
}

/// Revokes a merchant's key (a revoked key stays revoked, at its first revocation's time).
///
/// # Errors
/// A key not of this merchant, or the database.
pub async fn revoke_key(
    db: &DatabaseConnection,
    merchant: &MerchantId,
    key_id: &str,
) -> Result<merchant_keys::Model, MerchantError> {
    merchant_keys::Entity::update_many()
        .col_expr(merchant_keys::Column::RevokedAt, Some(Utc::now()).into())
        .filter(merchant_keys::Column::KeyId.eq(key_id))
        .filter(merchant_keys::Column::MerchantId.eq(merchant.as_str()))
        .filter(merchant_keys::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    merchant_keys::Entity::find_by_id(key_id)
        .filter(merchant_keys::Column::MerchantId.eq(merchant.as_str()))
        .one(db)
        .await?
        .ok_or(MerchantError::KeyNotFound)
}

/// What a key's digest authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOwner {
    pub merchant: MerchantId,
    pub key_id: String,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The merchant of an issued key, if the key is not revoked and its merchant is enabled.
///
/// # Errors
/// The database.
pub async fn lookup(db: &DatabaseConnection, digest: &str) -> Result<Option<KeyOwner>, DbErr> {
    let Some(key) = merchant_keys::Entity::find()
        .filter(merchant_keys::Column::Digest.eq(digest))
        .filter(merchant_keys::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Ok(merchant) = MerchantId::parse(&key.merchant_id) else {
        return Ok(None);
    };
    Ok(is_enabled(db, &merchant).await?.then_some(KeyOwner {
        merchant,
        key_id: key.key_id,
        last_used_at: key.last_used_at,
    }))
}

/// Whether the merchant exists and is enabled. A merchant of `auth.merchant_keys` has a row
/// from start-up on ([`import_configured`]).
///
/// # Errors
/// The database.
pub async fn is_enabled(db: &DatabaseConnection, merchant: &MerchantId) -> Result<bool, DbErr> {
    Ok(merchants::Entity::find_by_id(merchant.as_str())
        .filter(merchants::Column::Enabled.eq(true))
        .one(db)
        .await?
        .is_some())
}

/// Records that a key was used at `at` (callers do it at most once a minute per key).
///
/// # Errors
/// The database.
pub async fn touch_key(db: &DatabaseConnection, key_id: &str, at: DateTime<Utc>) -> Result<(), DbErr> {
    merchant_keys::Entity::update_many()
        .col_expr(merchant_keys::Column::LastUsedAt, Some(at).into())
        .filter(merchant_keys::Column::KeyId.eq(key_id))
        .exec(db)
        .await?;
    Ok(())
}
