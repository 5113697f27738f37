//! What every request meets first and every answer carries.
//!
//! - **A deadline on the body.** A request's body is read whole, within
//!   `server.body_read_timeout_milliseconds` and `server.max_body_bytes`, before any handler —
//!   including those that read it before authenticating (checkout payments, provider
//!   notifications, the console's sign-in, a request forwarded to another node). A body
//!   trickled slowly is answered `408 request_timeout` and the connection closed; one too large
//!   `413 payload_too_large`. Handlers then read the body from memory.
//! - **Headers.** Every answer: `X-Content-Type-Options: nosniff`; `Cache-Control: no-store`
//!   unless the route chose its own caching (answers carry checkout links, QR codes, a
//!   subscriber's secret); `Strict-Transport-Security` when the public base URL is `https`.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, ResponseError};
use futures::StreamExt;

use crate::error::ApiError;

/// One year, as browsers expect of a site that is https only.
const HSTS: &str = "max-age=31536000";

/// The limits and headers of [`guard`], shared by every worker.
#[derive(Clone, Debug)]
pub struct Edge {
    pub body_read_timeout: Duration,
    pub max_body_bytes: usize,
    /// The public base URL is `https`: answers carry `Strict-Transport-Security`.
    pub https: bool,
}

/// App-wide middleware: reads the body within its deadline, then sets the answer's headers.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(edge) = req.app_data::<actix_web::web::Data<Edge>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    match read_body(&mut req, &edge).await {
        Ok(Some(body)) => req.set_payload(body.into()),
        Ok(None) => {}
        Err(err) => {
            let mut response = err.error_response();
            // The rest of the body is still on its way (or never comes): this connection
            // cannot carry another request.
            response
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            set_headers(&mut response, &edge);
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    match next.call(req).await {
        Ok(mut response) => {
            set_headers(response.response_mut(), &edge);
            Ok(response.map_into_left_body())
        }
        // An error of a middleware inside (a refused credential, say) gets the headers too: its
        // answer is made here, with them, and carried by the error.
        Err(err) => {
            let mut response = err.error_response();
            set_headers(&mut response, &edge);
            Err(actix_web::error::InternalError::from_response(err, response).into())
        }
    }
}

/// The whole body, or `None` when the request has none.
async fn read_body(req: &mut ServiceRequest, edge: &Edge) -> Result<Option<Bytes>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if !chunked && declared.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let too_large = || ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("the body is larger than {} bytes", edge.max_body_bytes),
    };
    if declared.is_some_and(|length| length > edge.max_body_bytes) {
        return Err(too_large());
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + edge.body_read_timeout;
    loop {
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => {
                return Err(ApiError::BadRequest {
                    status: StatusCode::REQUEST_TIMEOUT,
                    code: "request_timeout",
                    message: format!(
                        "the body did not arrive within {} ms; nothing was done",
                        edge.body_read_timeout.as_millis()
                    ),
                })
            }
            Ok(None) => return Ok(Some(body.freeze())),
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > edge.max_body_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Some(Err(err))) => {
                return Err(ApiError::bad_request(
                    "invalid_json",
                    format!("the body could not be read: {err}"),
                ))
            }
        }
    }
}

fn set_headers<B>(response: &mut actix_web::HttpResponse<B>, edge: &Edge) {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if edge.https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}
