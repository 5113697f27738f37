//! Idempotency keys of the mutating HTTP routes (`Idempotency-Key`), with Stripe's semantics:
//! the first request with a key runs, its response is stored, and every later request with the
//! same key and the same request gets that response back; the same key with another request is
//! refused, and so is one that arrives while the first is still running.
//!
//! Keys are scoped by [`Principal`] (a merchant, or the operators), live in the database so
//! every node sees them, and are kept [`claim`]'s `retention` (24 h or more). A first request
//! holds its key with a lease ([`LockToken`], `locked_until`) that its node renews while the
//! request runs: a node that dies mid-request leaves a lease that lapses, and the next request
//! with the key takes the key over and runs. The HTTP layer decides what to store (see
//! `paywarden::idempotency`); this module only keeps the rows.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::idempotency_keys::{ActiveModel, Column, Entity, Model};
use entities::IdempotencyStatus;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::domain::{MerchantId, ValidationError};

/// Longest key accepted, in bytes (Stripe's limit).
pub const MAX_KEY_BYTES: usize = 255;

/// A client's idempotency key: 1 to 255 printable ASCII characters (`0x20`–`0x7E`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// `invalid_idempotency_key`: empty, longer than 255 bytes, or a byte outside printable ASCII.
    pub fn parse(raw: &[u8]) -> Result<Self, ValidationError> {
        let invalid = |why: &str| {
            ValidationError::new(
                "invalid_idempotency_key",
                format!("invalid Idempotency-Key; expected 1 to {MAX_KEY_BYTES} printable ASCII characters, {why}"),
            )
        };
        if raw.is_empty() {
            return Err(invalid("got an empty value"));
        }
        if raw.len() > MAX_KEY_BYTES {
            return Err(invalid(&format!("got {} bytes", raw.len())));
        }
        if let Some(byte) = raw.iter().find(|byte| !(0x20..=0x7e).contains(*byte)) {
            return Err(invalid(&format!("got byte 0x{byte:02x}")));
        }
        let text = String::from_utf8(raw.to_vec()).map_err(|_| invalid("got a byte outside ASCII"))?;
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose key it is: two principals may use the same key independently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    pub fn merchant(merchant: &MerchantId) -> Self {
        Self(format!("merchant:{}", merchant.as_str()))
    }

    /// The operators (the admin token): one scope for all of them.
    pub fn admin() -> Self {
        Self("admin".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What makes two requests "the same request": SHA-256 (hex) of the method, the path with its
/// query, and the body. A JSON body is hashed in a canonical form (object keys sorted, no
/// whitespace), so a client that serializes the same parameters in another order or layout is
/// still the same request; any other body is hashed as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(method: &str, path_and_query: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(b"\n");
        hasher.update(path_and_query.as_bytes());
        hasher.update(b"\n");
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => {
                let mut canonical = Vec::with_capacity(body.len());
                write_canonical(&json, &mut canonical);
                hasher.update(b"json:");
                hasher.update(&canonical);
            }
            Err(_) => {
                hasher.update(b"raw:");
                hasher.update(body);
            }
        }
        Self(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// JSON with object keys in byte order and no whitespace (`serde_json`'s map keeps insertion
/// order in this workspace, so serializing the parsed value is not enough).
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (name, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(name.clone()), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &serde_json::Value, out: &mut Vec<u8>) {
    // Serializing a scalar into a Vec cannot fail; an empty write would only weaken the hash.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Proof of holding an in-flight key: completing or releasing it needs this token, so a node
/// whose lease lapsed (and was taken over) cannot overwrite the new holder's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockToken(String);

impl LockToken {
    fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl fmt::Display for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request that carries a key.
#[derive(Clone, Debug)]
pub struct KeyedRequest {
    pub principal: Principal,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub method: String,
    /// Path and query, for people reading the table.
    pub path: String,
}

/// A response as stored and replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What to do with a request that carries a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now (new, expired, or its holder's lease lapsed): run it,
    /// then [`complete`] or [`release`] the key.
    Proceed(LockToken),
    /// The key's first request finished: answer what it answered.
    Replay(StoredResponse),
    /// The key was first used for another request (another fingerprint).
    Mismatch,
    /// The key's first request is still running (its lease is live).
    InFlight,
}

fn delta(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::hours(24))
}

/// How often [`claim`] looks again when the row changed under it (taken over, deleted).
const CLAIM_ROUNDS: usize = 3;

/// Takes the key for `request`, or says why not. `lease`: how long the key stays this
/// request's without a [`renew`]; `retention`: how long the key is kept from now.
///
/// # Errors
/// The database error.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    request: &KeyedRequest,
    lease: Duration,
    retention: Duration,
) -> Result<Claim, DbErr> {
    for _ in 0..CLAIM_ROUNDS {
        let now = Utc::now();
        let token = LockToken::new();
        let fresh = fresh_row(request, &token, now, lease, retention);
        let inserted = Entity::insert(fresh.clone())
            .on_conflict(
                OnConflict::columns([Column::Principal, Column::Key])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        if inserted == 1 {
            return Ok(Claim::Proceed(token));
        }
        let Some(existing) =
            Entity::find_by_id((request.principal.as_str().to_owned(), request.key.as_str().to_owned()))
                .one(conn)
                .await?
        else {
            // Deleted between the two statements (released, or swept): try again.
            continue;
        };
        if existing.expires_at <= now {
            // Past its retention: the key is free again, as if the sweep had run.
            let taken = Entity::update_many()
                .set(fresh)
                .filter(key_of(request))
                .filter(Column::ExpiresAt.lte(now))
                .exec(conn)
                .await?;
            if taken.rows_affected == 1 {
                return Ok(Claim::Proceed(token));
            }
            continue;
        }
        if existing.fingerprint != request.fingerprint.as_str() {
            return Ok(Claim::Mismatch);
        }
        match existing.status {
            IdempotencyStatus::Completed => return Ok(Claim::Replay(stored(existing))),
            IdempotencyStatus::InFlight if existing.locked_until.is_some_and(|until| until > now) => {
                return Ok(Claim::InFlight);
            }
            IdempotencyStatus::InFlight => {
                // Its holder stopped renewing (its node died mid-request): take it over, if no
                // other request did first.
                let mut held_by = Column::LockToken.is_null();
                if let Some(old) = &existing.lock_token {
                    held_by = Column::LockToken.eq(old.as_str());
                }
                let taken = Entity::update_many()
                    .set(ActiveModel {
                        lock_token: Set(Some(token.0.clone())),
                        locked_until: Set(Some(now + delta(lease))),
                        ..Default::default()
                    })
                    .filter(key_of(request))
                    .filter(Column::Status.eq(IdempotencyStatus::InFlight))
                    .filter(held_by)
                    .exec(conn)
                    .await?;
                if taken.rows_affected == 1 {
                    tracing::info!(
                        principal = request.principal.as_str(),
                        "idempotency key taken over from a request whose lease lapsed"
                    );
                    return Ok(Claim::Proceed(token));
                }
            }
        }
    }
    // The row kept changing under us: another request is busy with the key.
    Ok(Claim::InFlight)
}

fn fresh_row(
    request: &KeyedRequest,
    token: &LockToken,
    now: DateTime<Utc>,
    lease: Duration,
    retention: Duration,
) -> ActiveModel {
    ActiveModel {
        principal: Set(request.principal.as_str().to_owned()),
        key: Set(request.key.as_str().to_owned()),
        fingerprint: Set(request.fingerprint.as_str().to_owned()),
        request_method: Set(request.method.clone()),
        request_path: Set(truncated(&request.path, 512)),
        status: Set(IdempotencyStatus::InFlight),
        lock_token: Set(Some(token.0.clone())),
        locked_until: Set(Some(now + delta(lease))),
        response_status: Set(None),
        response_headers: Set(None),
        response_body: Set(None),
        created_at: Set(now),
        expires_at: Set(now + delta(retention)),
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn key_of(request: &KeyedRequest) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(Column::Principal.eq(request.principal.as_str()))
        .add(Column::Key.eq(request.key.as_str()))
}

fn held(request: &KeyedRequest, token: &LockToken) -> sea_orm::Condition {
    key_of(request)
        .add(Column::Status.eq(IdempotencyStatus::InFlight))
        .add(Column::LockToken.eq(token.0.as_str()))
}

fn stored(row: Model) -> StoredResponse {
    let headers = row
        .response_headers
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    StoredResponse {
        status: row
            .response_status
            .and_then(|status| u16::try_from(status).ok())
            .unwrap_or(500),
        headers,
        body: row.response_body.unwrap_or_default(),
    }
}

/// Extends the lease of a key this request holds. `false`: it is no longer held (taken over).
///
/// # Errors
/// The database error.
pub async fn renew<C: ConnectionTrait>(
    conn: &C,
    request: &KeyedRequest,
    token: &LockToken,
    lease: Duration,
) -> Result<bool, DbErr> {
    let renewed = Entity::update_many()
        .set(ActiveModel {
            locked_until: Set(Some(Utc::now() + delta(lease))),
            ..Default::default()
        })
        .filter(held(request, token))
        .exec(conn)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Stores the response of the key's first request. `false`: the key was no longer held (its
/// lease lapsed and another request took it over), nothing stored.
///
/// # Errors
/// The database error.
pub async fn complete<C: ConnectionTrait>(
    conn: &C,
    request: &KeyedRequest,
    token: &LockToken,
    response: &StoredResponse,
) -> Result<bool, DbErr> {
    let headers = serde_json::to_string(&response.headers).map_err(|err| DbErr::Custom(err.to_string()))?;
    let status = i16::try_from(response.status).map_err(|err| DbErr::Custom(err.to_string()))?;
    let completed = Entity::update_many()
        .set(ActiveModel {
            status: Set(IdempotencyStatus::Completed),
            lock_token: Set(None),
            locked_until: Set(None),
            response_status: Set(Some(status)),
            response_headers: Set(Some(headers)),
            response_body: Set(Some(response.body.clone())),
            ..Default::default()
        })
        .filter(held(request, token))
        .exec(conn)
        .await?;
    Ok(completed.rows_affected == 1)
}

/// Gives the key up without a stored response (the answer asked to be retried): the next
/// request with the key runs.
///
/// # Errors
/// The database error.
pub async fn release<C: ConnectionTrait>(conn: &C, request: &KeyedRequest, token: &LockToken) -> Result<bool, DbErr> {
    let deleted = Entity::delete_many().filter(held(request, token)).exec(conn).await?;
    Ok(deleted.rows_affected == 1)
}

/// Deletes the keys past their retention; answers how many.
///
/// # Errors
/// The database error.
pub async fn delete_expired<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let deleted = Entity::delete_many()
        .filter(Column::ExpiresAt.lt(Utc::now()))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_in_another_order_or_layout_has_the_same_fingerprint() {
        let a = Fingerprint::of(
            "POST",
            "/v1/orders/1/refunds",
            br#"{"amount":1,"reason":"r","out_refund_id":"x"}"#,
        );
        let b = Fingerprint::of(
            "POST",
            "/v1/orders/1/refunds",
            b"{ \"out_refund_id\": \"x\",\n  \"reason\": \"r\", \"amount\": 1 }",
        );
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn another_method_path_query_or_body_changes_the_fingerprint() {
        let base = Fingerprint::of("POST", "/v1/orders/1/cancel", b"");
        let others = [
            (Fingerprint::of("PUT", "/v1/orders/1/cancel", b""), "method"),
            (Fingerprint::of("POST", "/v1/orders/2/cancel", b""), "path"),
            (Fingerprint::of("POST", "/v1/orders/1/cancel?x=1", b""), "query"),
            (Fingerprint::of("POST", "/v1/orders/1/cancel", b"{}"), "body"),
            (
                Fingerprint::of("POST", "/v1/orders/1/cancel", br#"{"a":[1,2]}"#),
                "json body",
            ),
        ];
        for (other, what) in others {
            assert_ne!(base, other, "{what}");
        }
        assert_ne!(
            Fingerprint::of("POST", "/p", br#"{"a":[1,2]}"#),
            Fingerprint::of("POST", "/p", br#"{"a":[2,1]}"#),
            "array order matters"
        );
        // A body that is not JSON is hashed as it is, and is not mistaken for the same JSON.
        assert_ne!(
            Fingerprint::of("POST", "/p", b"{\"a\":1"),
            Fingerprint::of("POST", "/p", b"{\"a\": 1")
        );
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        let long = "k".repeat(MAX_KEY_BYTES);
        for good in ["a", "order-42/attempt 1", "~!@#$%^&*()", long.as_str()] {
            assert!(IdempotencyKey::parse(good.as_bytes()).is_ok(), "{good:?}");
        }
        let too_long = "k".repeat(MAX_KEY_BYTES + 1);
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (too_long.as_bytes(), "256 bytes"),
            (b"tab\there", "control character"),
            ("ключ".as_bytes(), "not ASCII"),
            (b"del\x7f", "DEL"),
        ];
        for (bad, what) in cases {
            let err = IdempotencyKey::parse(bad).expect_err(what);
            assert_eq!(err.code, "invalid_idempotency_key", "{what}");
        }
    }

    #[test]
    fn principals_of_two_merchants_and_the_operators_differ() {
        let a = MerchantId::parse("merchant_a").map(|id| Principal::merchant(&id));
        let b = MerchantId::parse("merchant_b").map(|id| Principal::merchant(&id));
        assert_ne!(a, b);
        assert_ne!(a, Ok(Principal::admin()));
    }
}
