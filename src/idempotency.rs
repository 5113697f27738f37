//! `Idempotency-Key` on the routes that create or change something: every `POST` of `/v1`
//! and `/admin` ([`crate::routes::Endpoint::takes_idempotency_key`]), with Stripe's semantics.
//!
//! A middleware of those scopes, inside authentication (the key belongs to the merchant, or to
//! the operators) and inside forwarding ([`crate::forward`]):
//! - no header: the request runs as before;
//! - a key that is not 1 to 255 printable ASCII characters (or two headers): `400
//!   invalid_idempotency_key`, nothing written;
//! - the key's first request finished: its response again (status, headers, body), with
//!   `Idempotent-Replayed: true`, and nothing runs;
//! - the key was first used for another request (method, path with query, body: see
//!   [`Fingerprint`]): `409 idempotency_key_reused`;
//! - the key's first request is still running, on any node: `409 idempotency_key_in_use` with
//!   `Retry-After`;
//! - otherwise the request runs holding the key, and its answer is stored, unless the answer
//!   asks to be retried (a 5xx, or any answer with `Retry-After`: provider busy, actor or node
//!   not answering, order changing nodes, concurrent update, close not possible yet). Then the
//!   key is released and the retry with it runs again: storing such an answer would replay a
//!   "retry" for 24 h and block the very retry the key exists for. Running again is safe: a
//!   refund is idempotent per `out_refund_id`, a cancel or force-close of a closed order is
//!   refused as not pending, and a payment attempt whose answer was lost at most leaves a
//!   second, unused attempt that expires with the order (money is taken once whichever QR is
//!   paid; a second payment is refunded automatically).
//!
//! Forwarding: on a node that does not run the order, the handler answers "elsewhere" without
//! doing anything; that answer carries `Retry-After`, so the key is released before the request
//! is forwarded, and the owner claims, runs and stores it. The key is therefore recorded once,
//! by the node that did the work, and shared through the database. The request runs in a task
//! of its own, so a forwarding node (or client) that gives up does not cut it short: it
//! finishes and its answer is stored for the retry. While it runs its lease is renewed; a node
//! that dies mid-request leaves a lease that lapses within [`IN_FLIGHT_LEASE`], and the next
//! request with the key runs.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use actors::domain::MerchantId;
use actors::store::idempotency_keys::{
    self, Claim, Fingerprint, IdempotencyKey, KeyedRequest, LockToken, Principal, StoredResponse,
};
use sea_orm::DatabaseConnection;

use crate::error::ApiError;
use crate::state::AppState;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// How long a key is kept (and replayed) after its first request: Stripe's 24 h.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a running request holds its key without renewing it. A node that dies
/// mid-request blocks retries with the key this long at most.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(10);
/// How often a running request renews its lease: three times within a lease, so one slow
/// renewal does not lose it.
const LEASE_RENEWAL: Duration = Duration::from_secs(3);
/// How often expired keys are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Largest body a request with a key may have: the forwarding middleware's buffer, above the
/// routes' own limit (`server.max_body_bytes`), which still answers a body too large for them.
const MAX_BUFFERED: usize = 256 * 1024;

/// Response headers not stored: they belong to the connection or to the moment.
const NOT_STORED: &[&str] = &[
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "date",
    "set-cookie",
    IDEMPOTENT_REPLAYED,
];

/// The routes that take a key, as method and route pattern: handed to the scopes as app data
/// by the route table ([`crate::routes::Endpoint::takes_idempotency_key`]), the one list of
/// routes.
#[derive(Debug, Default)]
pub struct KeyedRoutes(pub std::collections::HashSet<(actix_web::http::Method, String)>);

/// Whether the request is one of the routes that take a key: by its route pattern and method.
fn takes_key(request: &ServiceRequest) -> bool {
    let Some(pattern) = request.match_pattern() else {
        return false;
    };
    request
        .app_data::<actix_web::web::Data<KeyedRoutes>>()
        .is_some_and(|keyed| keyed.0.contains(&(request.method().clone(), pattern)))
}

/// The key the request carries, if any.
fn key_of(request: &ServiceRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "invalid Idempotency-Key; expected one header, got several",
        ));
    }
    IdempotencyKey::parse(value.as_bytes())
        .map(Some)
        .map_err(|err| ApiError::bad_request(err.code, err.message))
}

/// Whose key it is, from what authentication put in the request.
fn principal_of(request: &ServiceRequest) -> Option<Principal> {
    let extensions = request.extensions();
    let principal = match extensions.get::<MerchantId>() {
        Some(merchant) => Some(Principal::merchant(merchant)),
        None => extensions.get::<crate::auth::Admin>().map(|_| Principal::admin()),
    };
    principal
}

/// Whether the body's length is known and within [`MAX_BUFFERED`] (no length and no transfer
/// encoding: no body).
fn bounded(request: &ServiceRequest) -> bool {
    match request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
    {
        Some(length) => length <= MAX_BUFFERED,
        None => !request.headers().contains_key(header::TRANSFER_ENCODING),
    }
}

/// Whether an answer is the final one for its key (stored and replayed) rather than one that
/// asks to be retried (the key is released).
fn is_final(response: &HttpResponse<impl MessageBody>) -> bool {
    !response.status().is_server_error() && !response.headers().contains_key(header::RETRY_AFTER)
}

/// The middleware (`from_fn`) of `/v1` and `/admin`, inside their authentication.
///
/// # Errors
/// The body could not be read, or the request's own error.
pub async fn idempotency(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !takes_key(&request) {
        return next.call(request).await.map(ServiceResponse::map_into_boxed_body);
    }
    let key = match key_of(&request) {
        Ok(Some(key)) => key,
        Ok(None) => return next.call(request).await.map(ServiceResponse::map_into_boxed_body),
        Err(err) => return Ok(request.error_response(err)),
    };
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let (Some(principal), Some(state)) = (principal_of(&request), state) else {
        return Ok(request.error_response(ApiError::Internal(anyhow::anyhow!(
            "idempotency middleware without a principal or state"
        ))));
    };
    if !bounded(&request) {
        return Ok(request.error_response(ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: format!(
                "a request with an Idempotency-Key needs a body of known length, at most {MAX_BUFFERED} bytes"
            ),
        }));
    }
    let body = request.extract::<web::Bytes>().await?;
    request.set_payload(Payload::from(body.clone()));
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let keyed = KeyedRequest {
        principal,
        key,
        fingerprint: Fingerprint::of(&method, &path, &body),
        method,
        path,
    };
    match idempotency_keys::claim(&state.db, &keyed, IN_FLIGHT_LEASE, KEY_RETENTION).await {
        Err(err) => Ok(request.error_response(ApiError::from(err))),
        Ok(Claim::Replay(stored)) => Ok(request.into_response(replay(stored))),
        Ok(Claim::Mismatch) => Ok(request.error_response(ApiError::IdempotencyKeyReused)),
        Ok(Claim::InFlight) => Ok(request.error_response(ApiError::IdempotencyKeyInUse)),
        Ok(Claim::Proceed(token)) => {
            // Its own task: the request finishes, and its answer is stored, even when whoever
            // sent it stops waiting.
            let db = state.db.clone();
            match actix_web::rt::spawn(run_holding_key(db, keyed, token, request, next)).await {
                Ok(result) => result,
                Err(err) => Err(ApiError::Internal(anyhow::anyhow!("the request's task failed: {err}")).into()),
            }
        }
    }
}

/// Runs the request while holding its key (renewing the lease), then stores its answer or
/// releases the key.
async fn run_holding_key(
    db: DatabaseConnection,
    keyed: KeyedRequest,
    token: LockToken,
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // A task of its own, so renewing never waits on the request (nor the request on it: with
    // SQLite's one connection, the request may hold it for a while).
    let renewal = AbortOnDrop(tokio::spawn(renew_lease(db.clone(), keyed.clone(), token.clone())));
    let result = next.call(request).await;
    drop(renewal);
    let response = match result {
        Ok(response) if is_final(response.response()) => response,
        other => {
            release(&db, &keyed, &token).await;
            return other.map(ServiceResponse::map_into_boxed_body);
        }
    };
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(err) => {
            release(&db, &keyed, &token).await;
            let err: Box<dyn std::error::Error> = err.into();
            return Err(ApiError::Internal(anyhow::anyhow!("failed to read the response body: {err}")).into());
        }
    };
    let stored = StoredResponse {
        status: head.status().as_u16(),
        headers: stored_headers(head.headers()),
        body: bytes.to_vec(),
    };
    match idempotency_keys::complete(&db, &keyed, &token, &stored).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            principal = keyed.principal.as_str(),
            "idempotency key lost before its answer was stored (lease lapsed); a retry runs again"
        ),
        Err(err) => tracing::error!(
            principal = keyed.principal.as_str(),
            error.message = %err,
            "failed to store an idempotency key's answer; a retry runs again once its lease lapses"
        ),
    }
    Ok(ServiceResponse::new(request, head.set_body(BoxBody::new(bytes))))
}

/// Stops the lease renewal however the request's task ends (a panic, a worker stopping): a
/// renewal left running would hold the key in flight for good.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn renew_lease(db: DatabaseConnection, keyed: KeyedRequest, token: LockToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + LEASE_RENEWAL, LEASE_RENEWAL);
    loop {
        ticks.tick().await;
        match idempotency_keys::renew(&db, &keyed, &token, IN_FLIGHT_LEASE).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    principal = keyed.principal.as_str(),
                    "idempotency key lost while its request ran"
                );
                return;
            }
            Err(err) => tracing::warn!(error.message = %err, "failed to renew an idempotency key's lease"),
        }
    }
}

async fn release(db: &DatabaseConnection, keyed: &KeyedRequest, token: &LockToken) {
    if let Err(err) = idempotency_keys::release(db, keyed, token).await {
        // The lease lapses by itself: a retry waits at most that long.
        tracing::warn!(error.message = %err, "failed to release an idempotency key");
    }
}

fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect()
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
            response.append_header((name, value));
        }
    }
    response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    response.body(stored.body)
}

/// Deletes expired keys every [`SWEEP_INTERVAL`] until stopped; every node runs one (a delete
/// of rows already gone is harmless).
pub struct Sweeper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    pub fn start(db: DatabaseConnection) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => match idempotency_keys::delete_expired(&db).await {
                        Ok(0) => {}
                        Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
                        Err(err) => tracing::warn!(error.message = %err, "failed to delete expired idempotency keys"),
                    },
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the sweep (after the delete in flight, if any).
    pub async fn stop(self) {
        // Already ended: nothing to stop.
        let _ = self.stop.send(());
        if let Err(err) = self.task.await {
            tracing::warn!(error.message = %err, "the idempotency key sweep ended badly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_ask_for_a_retry_are_not_final() {
        let with = |status: StatusCode, retry_after: bool| {
            let mut response = HttpResponse::build(status);
            if retry_after {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            is_final(&response.finish())
        };
        assert!(with(StatusCode::CREATED, false));
        assert!(with(StatusCode::NOT_FOUND, false));
        assert!(with(StatusCode::CONFLICT, false));
        assert!(!with(StatusCode::CONFLICT, true), "concurrent update, in use");
        assert!(
            !with(StatusCode::SERVICE_UNAVAILABLE, true),
            "busy, elsewhere, outcome unknown"
        );
        assert!(!with(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(!with(StatusCode::BAD_GATEWAY, false));
    }

    #[test]
    fn connection_headers_are_not_stored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        headers.insert(header::DATE, HeaderValue::from_static("Mon, 07 Dec 2026 12:00:00 GMT"));
        assert_eq!(
            stored_headers(&headers),
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
    }
}
