//! Forwarding a request for an order another cluster node runs to that node.
//!
//! A request may reach any node. When the engine answers that another node owns the order's
//! partition ([`actors::OrderError::Elsewhere`], which the error response marks with
//! [`Owner`]), this middleware sends the same request (method, path, query, headers, body) to
//! the owner's address and answers with the owner's response as it is: status, headers, body.
//! Nothing was written on this node: the engine checks ownership before anything changes.
//! A request that was itself forwarded is never forwarded again (the owner changed meanwhile:
//! the client gets `503` with `Retry-After: 1`), and a request for a partition nobody holds
//! right now (a takeover under way) gets the same.
//!
//! A request cut off after it was sent (the owner died, or did not answer in time) may have
//! taken effect there: the client gets `503 service_unavailable` with `Retry-After: 1`, and is
//! asked to send it again with the same `Idempotency-Key` ([`crate::idempotency`]; the key is
//! recorded by the node that runs the request, never by the forwarding one).
//!
//! Only requests that can change something are buffered and forwarded, and a status read with
//! `refresh=true` (it asks the provider through the order's actor): not other `GET`s, which are
//! reads any node answers from the database, and not provider notifications, which any node
//! applies with the order's guarded transaction.
//!
//! The body is buffered as it arrived on the wire, whatever its framing (a length or chunks, as
//! a proxy streaming it sends) and still encoded (`Content-Encoding: gzip`): the handler here
//! decodes it as it would on a single node, and the owner gets the same bytes under the same
//! headers, so it answers what a single node would. Forwarding is decided on the handler's
//! answer, which comes after authentication: a request that fails it is answered here and
//! never reaches the owner.
//!
//! # Signed forwards
//!
//! A forward carries the client's credentials to the owner, and the owner must know it came
//! from a node of the cluster, not from anyone who copies the marker header. The forwarding
//! node signs it with `cluster.secret` (the same on every node): HMAC-SHA256 over the
//! forwarding node's name, the method, the path with its query, a Unix timestamp and the
//! SHA-256 of the body ([`forward_signature`]), sent in [`FORWARD_TIMESTAMP`] and
//! [`FORWARD_SIGNATURE`]. A request carrying any of the forward headers is verified before
//! anything else runs: a missing or wrong signature, a timestamp more than
//! [`FORWARD_MAX_SKEW`] away from the owner's clock, or a node that is not clustered, and it is
//! refused with `401` (logged, counted in `cluster_forwarded_total{outcome="refused"}`). The
//! signature does not hide the request: between nodes on an untrusted network, give each node
//! an `https://` `cluster.advertise_url` (behind a TLS terminator that reaches it).

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use actors::metrics::EngineMetrics;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Owner};

/// Set on a forwarded request: the forwarding node's name.
pub const FORWARDED_BY: &str = "x-paywarden-forwarded-by";
/// Set on a forwarded request: when it was signed, Unix seconds.
pub const FORWARD_TIMESTAMP: &str = "x-paywarden-forward-timestamp";
/// Set on a forwarded request: `v1=<hex HMAC-SHA256>` ([`forward_signature`]).
pub const FORWARD_SIGNATURE: &str = "x-paywarden-forward-signature";
/// A forward signed further than this from the owner's clock (either way) is refused: a
/// captured forward cannot be replayed later. Nodes keep their clocks in sync (NTP).
pub const FORWARD_MAX_SKEW: Duration = Duration::from_secs(30);

/// The headers that make a request a forward; never copied from a client's request.
const FORWARD_HEADERS: [&str; 3] = [FORWARDED_BY, FORWARD_TIMESTAMP, FORWARD_SIGNATURE];

/// The signature of a forward: `v1=` and the hex HMAC-SHA256, under the cluster secret, of
/// `v1\n<node>\n<METHOD>\n<path?query>\n<timestamp>\n<hex SHA-256 of the body>`.
pub fn forward_signature(
    secret: &SecretString,
    node: &str,
    method: &str,
    path: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    format!(
        "v1={}",
        hex::encode(
            forward_mac(secret, node, method, path, timestamp, body)
                .finalize()
                .into_bytes()
        )
    )
}

fn forward_mac(
    secret: &SecretString,
    node: &str,
    method: &str,
    path: &str,
    timestamp: i64,
    body: &[u8],
) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    let digest = hex::encode(Sha256::digest(body));
    mac.update(format!("v1\n{node}\n{method}\n{path}\n{timestamp}\n{digest}").as_bytes());
    mac
}

/// Why a request carrying the forward headers was refused.
#[derive(Debug, PartialEq, Eq)]
enum ForwardRefused {
    NotClustered,
    MissingHeader(&'static str),
    BadTimestamp,
    Stale { skew_seconds: i64 },
    BadSignature,
    BodyTooLarge,
}

impl std::fmt::Display for ForwardRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotClustered => f.write_str("this node is not part of a cluster"),
            Self::MissingHeader(name) => write!(f, "missing header {name}"),
            Self::BadTimestamp => f.write_str("the timestamp is not Unix seconds"),
            Self::Stale { skew_seconds } => write!(f, "signed {skew_seconds} s away from this node's clock"),
            Self::BadSignature => f.write_str("the signature does not match"),
            Self::BodyTooLarge => f.write_str("the body is larger than any forward"),
        }
    }
}

/// Checks a forward's headers against its method, path, body and `now` (Unix seconds).
fn verify_forward(
    secret: &SecretString,
    headers: &actix_web::http::header::HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<(), ForwardRefused> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(ForwardRefused::MissingHeader(name))
    };
    let node = header(FORWARDED_BY)?;
    let timestamp: i64 = header(FORWARD_TIMESTAMP)?
        .parse()
        .map_err(|_| ForwardRefused::BadTimestamp)?;
    let signature = header(FORWARD_SIGNATURE)?;
    let skew = now.saturating_sub(timestamp);
    let max = i64::try_from(FORWARD_MAX_SKEW.as_secs()).unwrap_or(i64::MAX);
    if skew.abs() > max {
        return Err(ForwardRefused::Stale { skew_seconds: skew });
    }
    let given = signature
        .strip_prefix("v1=")
        .and_then(|hex_mac| hex::decode(hex_mac).ok())
        .ok_or(ForwardRefused::BadSignature)?;
    // Constant-time comparison.
    forward_mac(secret, node, method, path, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| ForwardRefused::BadSignature)
}

/// What the middleware needs; present only on a cluster node.
pub struct Forwarder {
    client: reqwest::Client,
    node: String,
    /// `cluster.secret`: signs the forwards this node sends and checks the ones it receives.
    secret: SecretString,
}

impl Forwarder {
    /// # Errors
    /// The HTTP client could not be built.
    pub fn new(node: String, secret: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            node,
            secret,
        })
    }

    async fn send(&self, owner: &str, request: &Captured) -> Result<HttpResponse, reqwest::Error> {
        let method = reqwest::Method::from_bytes(request.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
        let timestamp = chrono::Utc::now().timestamp();
        // Signed as it goes on the wire: building the URL may percent-encode the path or query
        // (the owner verifies what it receives).
        let url = reqwest::Url::parse(&format!("{owner}{}", request.path)).map_err(|_| {
            // Not a URL the client could reach either; answered as an unreachable owner.
            tracing::warn!(owner, "the owner's address and the request path make no URL");
        });
        let sent_path = url.as_ref().map_or_else(
            |()| request.path.clone(),
            |url| match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            },
        );
        let signature = forward_signature(
            &self.secret,
            &self.node,
            method.as_str(),
            &sent_path,
            timestamp,
            &request.body,
        );
        let mut outgoing = self
            .client
            .request(method, format!("{owner}{sent_path}"))
            .header(FORWARDED_BY, &self.node)
            .header(FORWARD_TIMESTAMP, timestamp.to_string())
            .header(FORWARD_SIGNATURE, signature)
            .body(request.body.clone());
        // `Host` goes along as the client sent it: the owner answers as the node the client
        // reached (the console's same-origin check compares it with `Origin`).
        for (name, value) in &request.headers {
            if !HOP_BY_HOP.contains(&name.as_str())
                && !FORWARD_HEADERS.contains(&name.as_str())
                && name != "x-forwarded-for"
            {
                outgoing = outgoing.header(name.as_str(), value.as_slice());
            }
        }
        if let Some(client) = request.client {
            outgoing = outgoing.header("x-forwarded-for", client.to_string());
        }
        let response = outgoing.send().await?;
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut answer = HttpResponse::build(status);
        for (name, value) in response.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                answer.append_header((name.as_str(), value.as_bytes()));
            }
        }
        let body = response.bytes().await?;
        Ok(answer.body(body))
    }
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

struct Captured {
    method: Method,
    path: String,
    /// Names and raw values (a value need not be text).
    headers: Vec<(String, Vec<u8>)>,
    /// As received: not decoded.
    body: web::Bytes,
    /// The client as this node saw it ([`crate::client_addr::client_addr`]): the owner is told
    /// this, never a client's own `X-Forwarded-For`.
    client: Option<std::net::IpAddr>,
}

/// Bodies buffered for forwarding at most (the extractor's default limit; the routes' own limit,
/// `server.max_body_bytes`, is lower). A larger body is left to the handler, which refuses it
/// with the usual error envelope.
const MAX_BUFFERED: usize = 256 * 1024;

fn forwardable(request: &ServiceRequest) -> bool {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        // A status read that asks the provider first runs in the order's actor.
        || request.query_string().split('&').any(|pair| pair == "refresh=true");
    // A declared length above the bound is not buffered; chunks are, up to the bound.
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    changes && declared.is_none_or(|length| length <= MAX_BUFFERED) && !request.path().starts_with("/webhooks/")
}

/// The request's body as it came (framing removed, encoding kept), when it is at most
/// [`MAX_BUFFERED`]; the request gets the same bytes back for its handler either way (a larger
/// body: what was read, then the rest of the stream).
///
/// # Errors
/// The body could not be read (the client went away mid-body).
async fn buffer_raw_body(request: &mut ServiceRequest) -> Result<Option<web::Bytes>, actix_web::Error> {
    use futures::StreamExt;
    let mut stream = request.parts_mut().1.take();
    let mut buffered = web::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buffered.extend_from_slice(&chunk?);
        if buffered.len() > MAX_BUFFERED {
            let read = futures::stream::once(futures::future::ready(Ok(buffered.freeze())));
            let rest: std::pin::Pin<Box<dyn futures::Stream<Item = Result<web::Bytes, PayloadError>>>> =
                Box::pin(read.chain(stream));
            request.set_payload(Payload::from(rest));
            return Ok(None);
        }
    }
    let body = buffered.freeze();
    request.set_payload(Payload::from(body.clone()));
    Ok(Some(body))
}

/// The middleware (`from_fn`); a no-op unless a [`Forwarder`] is registered.
///
/// # Errors
/// The body could not be read (too large, say): answered as that error.
pub async fn forward(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let forwarder = request.app_data::<web::Data<Forwarder>>().cloned();
    if FORWARD_HEADERS.iter().any(|name| request.headers().contains_key(*name)) {
        if let Err(refused) = check_forward(&mut request, forwarder.as_ref().map(|data| data.get_ref())).await? {
            let claimed = request
                .headers()
                .get(FORWARDED_BY)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect::<String>();
            tracing::warn!(claimed_node = %claimed, reason = %refused, peer = ?request.peer_addr(), "refused a forward that could not be verified");
            if let Some(state) = request.app_data::<web::Data<crate::state::AppState>>() {
                count_forward(state.engine.metrics(), "refused");
            }
            let (http_request, _) = request.into_parts();
            return Ok(ServiceResponse::new(
                http_request,
                ApiError::Unauthorized.error_response(),
            ));
        }
    }
    let Some(forwarder) = forwarder.filter(|_| forwardable(&request)) else {
        return next.call(request).await.map(ServiceResponse::map_into_boxed_body);
    };
    let metrics = request
        .app_data::<web::Data<crate::state::AppState>>()
        .map(|state| state.engine.clone());
    let Some(body) = buffer_raw_body(&mut request).await? else {
        return next.call(request).await.map(ServiceResponse::map_into_boxed_body);
    };
    let captured = Captured {
        method: request.method().clone(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body,
        client: crate::client_addr::client_addr(request.request()),
    };
    let already_forwarded = request.headers().contains_key(FORWARDED_BY);
    let response = next.call(request).await?;
    let owner = response.response().extensions().get::<Owner>().cloned();
    let Some(Owner(owner)) = owner else {
        return Ok(response.map_into_boxed_body());
    };
    let count = |outcome: &str| {
        if let Some(engine) = &metrics {
            count_forward(engine.metrics(), outcome);
        }
    };
    let Some(owner) = owner.filter(|_| !already_forwarded) else {
        count("no_owner");
        return Ok(response.map_into_boxed_body());
    };
    let (http_request, _) = response.into_parts();
    match forwarder.send(&owner, &captured).await {
        Ok(answer) => {
            count("forwarded");
            Ok(ServiceResponse::new(http_request, answer))
        }
        Err(err) => {
            count("failed");
            tracing::warn!(owner = %owner, error.message = %err, "could not forward a request to the order's owner");
            // Not connected: the owner never saw it, so it is safe to send again. Cut off
            // after it was sent: the owner may have done it. The client is told to send it
            // again with the same Idempotency-Key: the owner stored its answer under that key
            // if it finished (the retry gets it back), or released the key if it failed, or
            // died holding it (the key's lease lapses and the retry runs). See
            // `crate::idempotency`.
            let answer = if err.is_connect() {
                ApiError::Order(actors::OrderError::Elsewhere(None))
            } else {
                ApiError::OutcomeUnknown
            };
            Ok(ServiceResponse::new(http_request, answer.error_response()))
        }
    }
}

/// Verifies a request that carries the forward headers (the body is buffered for it and given
/// back to the handler).
///
/// # Errors
/// The body could not be read.
async fn check_forward(
    request: &mut ServiceRequest,
    forwarder: Option<&Forwarder>,
) -> Result<Result<(), ForwardRefused>, actix_web::Error> {
    let Some(forwarder) = forwarder else {
        return Ok(Err(ForwardRefused::NotClustered));
    };
    let Some(body) = buffer_raw_body(request).await? else {
        return Ok(Err(ForwardRefused::BodyTooLarge));
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned());
    Ok(verify_forward(
        &forwarder.secret,
        request.headers(),
        request.method().as_str(),
        &path,
        &body,
        chrono::Utc::now().timestamp(),
    ))
}

fn count_forward(metrics: &EngineMetrics, outcome: &str) {
    metrics.forwarded.with_label_values(&[outcome]).inc();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    fn headers(node: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in [
            (FORWARDED_BY, node.to_owned()),
            (FORWARD_TIMESTAMP, timestamp.to_string()),
            (FORWARD_SIGNATURE, signature.to_owned()),
        ] {
            map.insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
        }
        map
    }

    #[test]
    fn a_forward_verifies_only_with_the_same_secret_request_and_a_fresh_timestamp() {
        let secret = SecretString::from("cluster-secret-0123456789abcdef0123");
        let now = 1_800_000_000;
        let body = br#"{"provider":"sandbox"}"#;
        let path = "/v1/orders/1/payments?x=1";
        let signed = forward_signature(&secret, "node-0", "POST", path, now, body);
        let ok = headers("node-0", now, &signed);
        assert_eq!(verify_forward(&secret, &ok, "POST", path, body, now + 5), Ok(()));

        let other = SecretString::from("another-secret-0123456789abcdef0123");
        let cases: [(&str, Result<(), ForwardRefused>); 7] = [
            ("another secret", verify_forward(&other, &ok, "POST", path, body, now)),
            ("another body", verify_forward(&secret, &ok, "POST", path, b"{}", now)),
            (
                "another path",
                verify_forward(&secret, &ok, "POST", "/v1/orders/2/payments?x=1", body, now),
            ),
            ("another method", verify_forward(&secret, &ok, "PUT", path, body, now)),
            (
                "another node",
                verify_forward(&secret, &headers("node-9", now, &signed), "POST", path, body, now),
            ),
            ("too old", verify_forward(&secret, &ok, "POST", path, body, now + 31)),
            (
                "from the future",
                verify_forward(&secret, &ok, "POST", path, body, now - 31),
            ),
        ];
        for (case, outcome) in cases {
            assert!(outcome.is_err(), "{case}");
        }
        let mut missing = ok.clone();
        missing.remove(FORWARD_SIGNATURE);
        assert_eq!(
            verify_forward(&secret, &missing, "POST", path, body, now),
            Err(ForwardRefused::MissingHeader(FORWARD_SIGNATURE))
        );
        assert_eq!(
            verify_forward(&secret, &headers("node-0", now, "v1=zz"), "POST", path, body, now),
            Err(ForwardRefused::BadSignature)
        );
    }
}
