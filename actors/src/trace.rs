//! Traces across the engine: the span of whoever sent an actor message carried into the
//! actor that handles it ([`Traced`]), and the W3C trace context sent on outgoing HTTP calls
//! ([`propagate`]), so that one trace follows a payment from the HTTP request through the order
//! actor, the provider call and the database transaction.
//!
//! The spans are plain `tracing` spans; they become OpenTelemetry spans only when the service
//! installs its exporter (`telemetry.otlp_endpoint`). Without it, the global propagator is
//! the no-op one: nothing is added to any request and a span's context is empty.

use std::collections::HashMap;

use actix::Message;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans made for traces only (an order-actor message, a provider call, a
/// transaction, a webhook delivery): the log leaves them out, so without an exporter they are
/// disabled everywhere and cost a check of their callsite. (`#[instrument]` takes the same
/// text literally.)
pub const TARGET: &str = "paywarden::trace";

/// A message with the span it was sent from: its actor handles it inside a child of that span.
pub struct Traced<M> {
    pub message: M,
    pub parent: Span,
}

impl<M> Traced<M> {
    /// `message`, sent from the current span.
    pub fn new(message: M) -> Self {
        Self {
            message,
            parent: Span::current(),
        }
    }
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

/// Implements `Handler<Traced<M>>` for `$actor` and each listed message `M`: the message is
/// handled with `$span` entered (built from the actor `$this`, the sender's span `$parent` and
/// the message's name `$name`), so the spans the handler starts are children of it.
macro_rules! traced_handlers {
    ($actor:ty, |$this:ident, $parent:ident, $name:ident| $span:expr, [$($message:ty),+ $(,)?]) => {
        $(
            impl actix::Handler<$crate::trace::Traced<$message>> for $actor {
                type Result = <$actor as actix::Handler<$message>>::Result;

                fn handle(
                    &mut self,
                    traced: $crate::trace::Traced<$message>,
                    ctx: &mut Self::Context,
                ) -> Self::Result {
                    let span: tracing::Span = {
                        let $this = &*self;
                        let $parent = &traced.parent;
                        let $name = $crate::trace::message_name::<$message>();
                        $span
                    };
                    let _entered = span.enter();
                    <Self as actix::Handler<$message>>::handle(self, traced.message, ctx)
                }
            }
        )+
    };
}
pub(crate) use traced_handlers;

/// A message type's own name (`StartAttempt`), for its span.
pub fn message_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// `request` with the current span's trace context as W3C `traceparent` (and `tracestate`)
/// headers, when traces are exported; unchanged otherwise.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let context = Span::current().context();
    let mut headers: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut headers));
    headers
        .into_iter()
        .fold(request, |request, (name, value)| request.header(name, value))
}

/// The trace id of `span` (32 hex digits), when traces are exported.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Records `span`'s trace id in its `trace_id` field (declared empty), so every log line
/// inside it names the trace.
pub fn record_trace_id(span: &Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct StartAttempt;

    #[test]
    fn a_message_is_named_by_its_type_alone() {
        assert_eq!(message_name::<StartAttempt>(), "StartAttempt");
    }

    #[test]
    fn without_an_exporter_nothing_is_added_and_there_is_no_trace() {
        let span = tracing::info_span!("untraced");
        let _entered = span.enter();
        let request = propagate(reqwest::Client::new().get("http://127.0.0.1:9/"))
            .build()
            .unwrap();
        assert!(request.headers().get("traceparent").is_none());
        assert_eq!(trace_id(&span), None);
    }
}
