//! Logging and traces: one `tracing` subscriber, installed once, and the span of each request.
//!
//! With `telemetry.otlp_endpoint` set, spans are also exported as OpenTelemetry traces over
//! OTLP/HTTP (protobuf, `{endpoint}/v1/traces`), batched on a thread of their own; a client's
//! W3C `traceparent` continues its trace through the request, and the trace id is in every log
//! line of the request and in the `request_id` of its error body. Unset (the default), no
//! exporter, layer or propagator exists: nothing is added to any request or response.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::TelemetrySettings;

/// The spans exported as traces: paywarden's own (requests, order actors, provider calls,
/// transactions, deliveries, expiry passes; the trace-only ones' target,
/// `paywarden::trace`, is under `paywarden`), not its libraries'.
const TRACE_FILTER: &str = "warn,paywarden=info,actors=info";

/// The trace exporter, when one runs: flushed and stopped by [`Telemetry::shutdown`].
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error.message = %err, "the trace exporter did not shut down cleanly");
            }
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` when set, else `telemetry.log_filter`; JSON
/// lines when `telemetry.json`; the OpenTelemetry layer when `telemetry.otlp_endpoint` is
/// set. A second call (tests start many apps in one process) installs nothing.
///
/// # Errors
/// The exporter could not be built from the endpoint.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    let (otel, provider) = match settings.otlp_endpoint.trim() {
        "" => (None, None),
        endpoint => {
            let provider = tracer_provider(endpoint, settings)?;
            let tracer = provider.tracer("paywarden");
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            (Some(tracing_opentelemetry::layer().with_tracer(tracer)), Some(provider))
        }
    };
    // Each layer filters for itself: the log keeps to its filter (`warn` in the tests, say)
    // and never shows the spans made for traces only; the traces carry paywarden's spans,
    // and no log event (an event's text stays in the log).
    let filter = filter.add_directive(
        format!("{}=off", actors::trace::TARGET)
            .parse()
            .map_err(|err| anyhow::anyhow!("the trace target's directive: {err}"))?,
    );
    let otel = otel.map(|layer| {
        layer
            .with_filter(EnvFilter::new(TRACE_FILTER).and(tracing_subscriber::filter::filter_fn(|meta| meta.is_span())))
    });
    // try_init fails only when a subscriber is already installed, which is fine.
    let registry = tracing_subscriber::registry().with(otel);
    let _ = if settings.json {
        registry
            .with(fmt::layer().json().with_target(false).with_filter(filter))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_target(false).with_filter(filter))
            .try_init()
    };
    Ok(Telemetry { provider })
}

fn tracer_provider(
    endpoint: &str,
    settings: &TelemetrySettings,
) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|err| anyhow::anyhow!("telemetry.otlp_endpoint: cannot export to {endpoint}: {err}"))?;
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(settings.export_delay)
                .build(),
        )
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// The current span's trace id, when traces are exported: what an error body names as its
/// `request_id`, so a merchant's trace and paywarden's log meet on one id.
pub fn current_trace_id() -> Option<String> {
    actors::trace::trace_id(&Span::current())
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
        let span = tracing::info_span!(
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
            trace_id = tracing::field::Empty,
            otel.kind = "server",
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        );
        // A client's `traceparent` continues its trace here (with no exporter the propagator
        // is the no-op one and extracts nothing).
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
        actors::trace::record_trace_id(&span);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Reads a request's headers for the trace-context propagator.
struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(actix_web::http::header::HeaderName::as_str).collect()
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
