//! Logging set-up: one `tracing` subscriber, installed once, and the span of each request.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber: `RUST_LOG` when set, else `default_filter`; JSON lines when
/// `json`. A second call (tests start many apps in one process) is a no-op.
pub fn init(default_filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // try_init fails only when a subscriber is already installed, which is fine.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The span every request's log lines are recorded in: tracing-actix-web's fields, with the
/// path as `http.target` and never the query string, which can carry a checkout link's token,
/// and the client address of [`crate::client_addr`].
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %request.match_pattern().unwrap_or_else(|| "default".to_owned()),
            http.target = %request.path(),
            // The socket peer, or behind a trusted proxy its X-Forwarded-For: never a header
            // anyone may send (`connection_info().realip_remote_addr()` would take it).
            http.client_ip = %crate::client_addr::client_addr(request.request())
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
            http.user_agent = %user_agent,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::RequestSpan;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut captured = self.0.lock().map_err(|_| std::io::Error::other("a writer panicked"))?;
            captured.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn a_request_s_log_lines_name_its_path_but_not_its_query() {
        use actix_web::{test, web, App, HttpResponse};

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // The test's runtime is single-threaded: the thread's default subscriber sees it all.
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(tracing_actix_web::TracingLogger::<RequestSpan>::new())
                .route(
                    "/checkout/{order_no}",
                    web::get().to(|| async {
                        tracing::info!("checkout page served");
                        HttpResponse::Ok().finish()
                    }),
                ),
        )
        .await;
        let request = test::TestRequest::with_uri("/checkout/42?t=1764601234.c2VjcmV0LW1hYw").to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.status().is_success());
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("/checkout/42"), "{logged}");
        assert!(
            !logged.contains("c2VjcmV0LW1hYw"),
            "the checkout token is in the log: {logged}"
        );
    }

    /// Before the fix the log named whatever `X-Forwarded-For` a client sent as its address.
    #[actix_web::test]
    async fn a_request_s_log_names_the_peer_unless_the_peer_is_a_trusted_proxy() {
        use actix_web::{test, web, App, HttpResponse};

        use crate::client_addr::TrustedProxies;

        for (trusted, expected, absent) in [
            (vec![], "192.0.2.7", "203.0.113.66"),
            (vec!["192.0.2.0/24".to_owned()], "203.0.113.66", "192.0.2.7"),
        ] {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let app = test::init_service(
                App::new()
                    .wrap(tracing_actix_web::TracingLogger::<RequestSpan>::new())
                    .app_data(web::Data::new(TrustedProxies::parse(&trusted).unwrap()))
                    .route(
                        "/healthz",
                        web::get().to(|| async {
                            tracing::info!("answered");
                            HttpResponse::Ok().finish()
                        }),
                    ),
            )
            .await;
            let request = test::TestRequest::with_uri("/healthz")
                .peer_addr("192.0.2.7:40000".parse().unwrap())
                .insert_header(("X-Forwarded-For", "203.0.113.66"))
                .to_request();
            assert!(test::call_service(&app, request).await.status().is_success());
            let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            assert!(logged.contains(&format!("http.client_ip={expected}")), "{logged}");
            assert!(!logged.contains(absent), "trusting {trusted:?}: {logged}");
        }
    }
}
