//! Traces: the service, run as its own process with `telemetry.otlp_endpoint` set, exports its
//! spans over OTLP/HTTP to a small receiver here, which decodes them with the
//! `opentelemetry-proto` types. A merchant's `traceparent` continues through the request, the
//! order actor, the provider call and the transaction; the sandbox's notification carries the
//! trace back in; an expiry pass is a trace of its own with its provider calls and decisions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};

use crate::helpers::{order_body, test_settings, Backend, ADMIN_TOKEN, MERCHANT_A_KEY};
use crate::restart::ServiceProcess;

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct Exported {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Exported>>>;

async fn receive(body: web::Bytes, received: web::Data<Received>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = received.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|attribute| {
                        let value = match attribute.value.as_ref().and_then(|value| value.value.as_ref()) {
                            Some(AnyValue::StringValue(text)) => text.clone(),
                            Some(AnyValue::IntValue(number)) => number.to_string(),
                            Some(AnyValue::BoolValue(flag)) => flag.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (attribute.key.clone(), value)
                    })
                    .collect();
                spans.push(Exported {
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes,
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

/// Starts the receiver; its base URL and what it received.
fn start_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let data = web::Data::new(received.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/traces", web::post().to(receive))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (address, received)
}

/// The spans received so far once `ready` holds of them (the exporter sends in batches).
async fn spans_when(received: &Received, what: &str, ready: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
    let started = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        if ready(&spans) {
            return spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} never arrived; received: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named<'a>(spans: &'a [Exported], name: &str) -> impl Iterator<Item = &'a Exported> + 'a {
    let name = name.to_owned();
    spans.iter().filter(move |span| span.name == name)
}

fn parent_of<'a>(spans: &'a [Exported], span: &Exported) -> Option<&'a Exported> {
    spans.iter().find(|candidate| candidate.span_id == span.parent_span_id)
}

/// Whether `ancestor` is `span`'s parent, or its parent's, and so on.
fn descends_from(spans: &[Exported], span: &Exported, ancestor: &Exported) -> bool {
    let mut at = span;
    while let Some(parent) = parent_of(spans, at) {
        if parent.span_id == ancestor.span_id {
            return true;
        }
        at = parent;
    }
    false
}

#[actix_web::test]
async fn a_payment_and_an_expiry_pass_are_followed_in_one_trace_each() {
    let (collector, received) = start_receiver();
    let settings = test_settings(Backend::Postgres).await;
    let database_url = secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_paywarden"));
    command
        .env("PAYWARDEN_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("PAYWARDEN__ENV", "test")
        .env("PAYWARDEN__DATABASE__URL", &database_url)
        .env("PAYWARDEN__TELEMETRY__OTLP_ENDPOINT", &collector)
        .env("PAYWARDEN__TELEMETRY__EXPORT_DELAY_MILLISECONDS", "100")
        .env("PAYWARDEN__TELEMETRY__JSON", "true")
        .env("PAYWARDEN__TELEMETRY__LOG_FILTER", "info,sqlx=warn,sea_orm=warn");
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("traces-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let out = file.try_clone().unwrap();
    let mut service = ServiceProcess::spawn_with_output(command, port, out.into(), file.into()).await;
    let client = reqwest::Client::new();
    let base = service.base.clone();

    // A merchant's trace: its traceparent on every call it makes.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let created: Value = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(MERCHANT_A_KEY)
        .header("traceparent", &traceparent)
        .json(&order_body("traced-paid"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_no = created["order_no"].as_str().unwrap().to_owned();
    let attempt: Value = client
        .post(format!("{base}/v1/orders/{order_no}/payments"))
        .bearer_auth(MERCHANT_A_KEY)
        .header("traceparent", &traceparent)
        .json(&json!({"provider": "sandbox"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
    let paid = client
        .post(format!("{base}/sandbox/trades/{pay_no}/pay?notify=true"))
        .bearer_auth(ADMIN_TOKEN)
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    service
        .wait_for_status(
            MERCHANT_A_KEY,
            &order_no,
            "paid",
            Duration::from_secs(10),
            "the payment",
        )
        .await;

    // Assert: one trace, the merchant's, from the requests to the transactions.
    let routes = [
        "/v1/orders",
        "/v1/orders/{order_no}/payments",
        "/sandbox/trades/{pay_no}/pay",
        "/webhooks/sandbox",
    ];
    // Spans arrive as they end, in batches: wait for the last of each kind.
    let spans = spans_when(&received, "the payment's spans", |spans| {
        named(spans, "order actor")
            .any(|span| span.trace_id == trace && span.attributes["message"] == "PaymentNotified")
            && named(spans, "db transaction")
                .any(|span| span.trace_id == trace && span.attributes["change"] == "payment")
            && routes.iter().all(|route| {
                named(spans, "HTTP request")
                    .any(|span| span.trace_id == trace && span.attributes.get("http.route").is_some_and(|r| r == route))
            })
    })
    .await;
    let in_trace: Vec<Exported> = spans.iter().filter(|span| span.trace_id == trace).cloned().collect();
    let requests: Vec<&Exported> = named(&in_trace, "HTTP request").collect();
    let route_of = |span: &Exported| span.attributes.get("http.route").cloned().unwrap_or_default();
    let request_at = |route: &str| {
        *requests
            .iter()
            .find(|span| route_of(span) == route)
            .unwrap_or_else(|| panic!("a request span for {route} in {requests:#?}"))
    };
    let create = request_at("/v1/orders");
    assert_eq!(
        create.parent_span_id, "00f067aa0ba902b7",
        "the merchant's span is the parent"
    );
    assert!(named(&in_trace, "db transaction")
        .any(|span| span.attributes["change"] == "create" && descends_from(&in_trace, span, create)));
    let payment = request_at("/v1/orders/{order_no}/payments");
    let start = named(&in_trace, "order actor")
        .find(|span| span.attributes["message"] == "StartAttempt")
        .expect("the attempt went through the order actor");
    assert!(descends_from(&in_trace, start, payment));
    let create_qr = named(&in_trace, "provider call")
        .find(|span| span.attributes["operation"] == "create_qr")
        .expect("a provider call for the QR code");
    assert_eq!(create_qr.parent_span_id, start.span_id);
    assert_eq!(create_qr.attributes["provider"], "sandbox");
    assert_eq!(create_qr.attributes["outcome"], "ok");
    assert!(create_qr.attributes.contains_key("latency_ms"));
    // The sandbox's notification came back in with the trace: its request span descends from
    // the pay request's.
    let pay = request_at("/sandbox/trades/{pay_no}/pay");
    let notification = request_at("/webhooks/sandbox");
    assert!(descends_from(&in_trace, notification, pay), "{notification:#?}");
    let notified = named(&in_trace, "order actor")
        .find(|span| span.attributes["message"] == "PaymentNotified")
        .unwrap();
    assert!(descends_from(&in_trace, notified, notification));
    let recorded = named(&in_trace, "db transaction")
        .find(|span| span.attributes["change"] == "payment")
        .unwrap();
    assert!(descends_from(&in_trace, recorded, notified));
    // No span carries a credential, a request or an answer: not the keys, not the sandbox's
    // QR link (in the attempt's answer), not the notification's signature.
    let code_url = attempt["code_url"].as_str().unwrap_or("sandbox://").to_owned();
    let forbidden = [
        MERCHANT_A_KEY,
        ADMIN_TOKEN,
        crate::helpers::SANDBOX_SECRET,
        code_url.as_str(),
        "Sandbox-Signature",
        "Bearer",
    ];
    for span in &spans {
        for (key, value) in &span.attributes {
            for text in forbidden {
                assert!(!value.contains(text) && !key.contains(text), "{text} in {span:#?}");
            }
            assert!(!key.contains("body"), "{span:#?}");
        }
    }

    // An expiry pass with an attempt: its own trace, query and close at the provider, then the
    // transactions, with its decisions.
    let mut expiring = order_body("traced-expired");
    expiring["ttl_seconds"] = 1.into();
    let created: Value = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&expiring)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expired_no = created["order_no"].as_str().unwrap().to_owned();
    let started = client
        .post(format!("{base}/v1/orders/{expired_no}/payments"))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&json!({"provider": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 201);
    let expired_pay_no = started.json::<Value>().await.unwrap()["pay_no"]
        .as_str()
        .unwrap()
        .to_owned();
    service
        .wait_for_status(
            MERCHANT_A_KEY,
            &expired_no,
            "closed",
            Duration::from_secs(15),
            "the expiry",
        )
        .await;
    let spans = spans_when(&received, "the expiry pass", |spans| {
        named(spans, "expiry pass").any(|pass| {
            let in_pass = |name: &str, key: &str, value: &str| {
                named(spans, name)
                    .any(|span| span.trace_id == pass.trace_id && span.attributes.get(key).is_some_and(|v| v == value))
            };
            pass.attributes
                .get("decisions")
                .is_some_and(|d| d.contains("close_order"))
                && in_pass("db transaction", "to", "closed")
                && in_pass("db transaction", "pay_no", &expired_pay_no)
                && in_pass("provider call", "operation", "query")
                && in_pass("provider call", "operation", "close")
        })
    })
    .await;
    // The pass of this order: the one whose transaction closed its attempt.
    let pass = named(&spans, "expiry pass")
        .find(|pass| {
            spans.iter().any(|span| {
                span.trace_id == pass.trace_id
                    && span.name == "db transaction"
                    && span.attributes.get("pay_no") == Some(&expired_pay_no)
            })
        })
        .unwrap();
    assert!(pass.attributes["decisions"].contains("close_order"), "{pass:#?}");
    assert_eq!(pass.parent_span_id, "", "an expiry pass starts its own trace");
    assert!(pass.attributes["decisions"].contains("close_at_provider"), "{pass:#?}");
    let in_pass: Vec<&Exported> = spans.iter().filter(|span| span.trace_id == pass.trace_id).collect();
    for operation in ["query", "close"] {
        let call = in_pass
            .iter()
            .find(|span| span.name == "provider call" && span.attributes["operation"] == operation)
            .unwrap_or_else(|| panic!("a {operation} call in the pass: {in_pass:#?}"));
        assert_eq!(call.parent_span_id, pass.span_id);
        assert_eq!(call.attributes["outcome"], "ok");
    }
    let closed_attempt = in_pass
        .iter()
        .find(|span| span.name == "db transaction" && span.attributes["change"] == "attempt")
        .expect("the attempt's transaction in the pass");
    assert_eq!(closed_attempt.attributes["pay_no"], expired_pay_no);
    assert_eq!(closed_attempt.attributes["order_id"], pass.attributes["order_id"]);

    // A failure's request_id is the trace id, so the merchant's trace and the log meet.
    let failing = client
        .put(format!("{base}/sandbox/faults"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"mode": "error"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status().as_u16(), 200);
    let order: Value = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&order_body("traced-failure"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let refused = client
        .post(format!(
            "{base}/v1/orders/{}/payments",
            order["order_no"].as_str().unwrap()
        ))
        .bearer_auth(MERCHANT_A_KEY)
        .header("traceparent", format!("00-{other_trace}-b7ad6b7169203331-01"))
        .json(&json!({"provider": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 502);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], other_trace);

    service.terminate(Duration::from_secs(20)).await;
    // The log line of that failure names the trace too (JSON lines carry their spans' fields).
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|line| line.contains("request failed"))
        .unwrap_or_else(|| panic!("the failure was logged: {logged}"));
    assert!(line.contains(&format!("\"trace_id\":\"{other_trace}\"")), "{line}");
}
