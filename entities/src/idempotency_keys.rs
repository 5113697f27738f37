use sea_orm::entity::prelude::*;

use crate::types::IdempotencyStatus;

/// One idempotency key of one principal (`merchant:<id>` or `admin`): the request it was first
/// used for (by fingerprint), and once that request finished, the response every retry with
/// the key gets back. Written by the HTTP layer's idempotency middleware only.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub principal: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the request's method, path and query, and its body.
    pub fingerprint: String,
    pub request_method: String,
    pub request_path: String,
    pub status: IdempotencyStatus,
    /// The holder of an in-flight key: only it may complete or release the row.
    pub lock_token: Option<String>,
    /// An in-flight key whose holder has not renewed it by then is taken over by the next
    /// request with the key (its node died mid-request).
    pub locked_until: Option<DateTimeUtc>,
    pub response_status: Option<i16>,
    /// JSON array of `[name, value]` pairs.
    pub response_headers: Option<String>,
    pub response_body: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
