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

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use actors::metrics::EngineMetrics;

use crate::error::ApiError;

/// Set on a forwarded request: the forwarding node's name.
pub const FORWARDED_BY: &str = "x-paywarden-forwarded-by";

/// Marks an error response for an order another node owns (its address, when one does).
#[derive(Clone, Debug)]
pub struct Owner(pub Option<String>);

/// What the middleware needs; present only on a cluster node.
pub struct Forwarder {
    client: reqwest::Client,
    node: String,
}

impl Forwarder {
    /// # Errors
    /// The HTTP client could not be built.
    pub fn new(node: String, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            node,
        })
    }

    async fn send(&self, owner: &str, request: &Captured) -> Result<HttpResponse, reqwest::Error> {
        let method = reqwest::Method::from_bytes(request.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut outgoing = self
            .client
            .request(method, format!("{owner}{}", request.path))
            .header(FORWARDED_BY, &self.node)
            .body(request.body.clone());
        // `Host` goes along as the client sent it: the owner answers as the node the client
        // reached (the console's same-origin check compares it with `Origin`).
        for (name, value) in &request.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name.as_str() != FORWARDED_BY {
                outgoing = outgoing.header(name.as_str(), value.as_slice());
            }
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
    let Some(forwarder) = forwarder.filter(|_| forwardable(&request)) else {
        return next.call(request).await.map(ServiceResponse::map_into_boxed_body);
    };
    let metrics = request
        .app_data::<web::Data<crate::startup::AppState>>()
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

fn count_forward(metrics: &EngineMetrics, outcome: &str) {
    metrics.forwarded.with_label_values(&[outcome]).inc();
}
