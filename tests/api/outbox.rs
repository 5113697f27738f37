//! Downstream delivery: signed webhooks with retries, dead deliveries, two relays, the AMQP
//! sink with a broker outage, a kill between commit and delivery, and the live status stream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::helpers::{
    on_both_backends, order_body, spawn_app, spawn_app_with, test_settings, Backend, TestApp, ADMIN_TOKEN, MERCHANT_A,
    MERCHANT_A_KEY, MERCHANT_B, MERCHANT_B_KEY,
};
use crate::restart::{free_port, ServiceProcess};

const RECEIVER_SECRET: &str = "whsec_test_receiver_0001";

#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    event_type: String,
    timestamp: String,
    signature: String,
    body: String,
    acknowledged: bool,
}

#[derive(Default)]
struct ReceiverState {
    /// Requests answered 500 before the receiver starts acknowledging.
    fail_first: usize,
    /// Time taken before answering.
    delay: Duration,
    /// Answer every request with a 307 to this URL instead.
    redirect_to: Option<String>,
    received: Vec<Received>,
}

/// A downstream service: records every delivery, fails the first `fail_first`.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        Self::start_with(ReceiverState {
            fail_first,
            ..ReceiverState::default()
        })
    }

    fn start_with(state: ReceiverState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(shared.clone())).route(
                "/events",
                web::post().to(
                    |req: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<ReceiverState>>>| async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let event: Value = serde_json::from_str(&text).unwrap_or_default();
                        let delay = state.lock().unwrap().delay;
                        tokio::time::sleep(delay).await;
                        let mut state = state.lock().unwrap();
                        let acknowledged = state.received.len() >= state.fail_first;
                        state.received.push(Received {
                            event_id: header("Paywarden-Event-Id"),
                            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
                            timestamp: header("Paywarden-Timestamp"),
                            signature: header("Paywarden-Signature"),
                            body: text,
                            acknowledged,
                        });
                        if let Some(location) = state.redirect_to.clone() {
                            state.received.last_mut().unwrap().acknowledged = false;
                            HttpResponse::TemporaryRedirect()
                                .insert_header(("Location", location))
                                .finish()
                        } else if acknowledged {
                            HttpResponse::Ok().finish()
                        } else {
                            HttpResponse::InternalServerError().finish()
                        }
                    },
                ),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/events"),
            state,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn acknowledged(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.acknowledged).collect()
    }

    fn set_fail_first(&self, fail_first: usize) {
        self.state.lock().unwrap().fail_first = fail_first;
    }

    async fn wait_for_acknowledged(&self, count: usize, within: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let acknowledged = self.acknowledged();
            if acknowledged.len() >= count {
                return acknowledged;
            }
            assert!(
                started.elapsed() < within,
                "only {} of {count} events acknowledged",
                acknowledged.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn app_with_receiver(backend: Backend, receiver: &Receiver, event_types: &[&str]) -> TestApp {
    let mut settings = test_settings(backend).await;
    settings.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
        url: receiver.url.clone(),
        secret: SecretString::from(RECEIVER_SECRET),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        merchant_id: None,
        signature_scheme: entities::SignatureScheme::PaywardenV1,
    }];
    spawn_app_with(settings).await
}

on_both_backends!(
    a_failing_receiver_gets_the_event_after_retries_acknowledged_once,
    each_orders_events_arrive_in_the_order_they_were_written,
    a_dead_delivery_is_listed_and_redelivered_by_an_admin,
    an_sse_client_sees_pending_then_paid_and_the_stream_closes,
    a_merchants_subscriber_gets_only_its_events_and_a_global_one_gets_every_merchants,
    a_configured_webhook_with_a_merchant_id_gets_only_that_merchants_events,
);

async fn a_failing_receiver_gets_the_event_after_retries_acknowledged_once(backend: Backend) {
    // Arrange
    let receiver = Receiver::start(2);
    let app = app_with_receiver(backend, &receiver, &["order.created"]).await;

    // Act
    let order = app.create_order(&order_body("out-1")).await;
    let acknowledged = receiver.wait_for_acknowledged(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Assert
    let all = receiver.received();
    assert_eq!(all.len(), 3, "two failures, then one acknowledged delivery: {all:?}");
    assert_eq!(acknowledged.len(), 1);
    assert!(
        all.iter().all(|r| r.event_id == acknowledged[0].event_id),
        "retries carry the same event id"
    );
    let event = &acknowledged[0];
    let now = chrono::Utc::now().timestamp();
    actors::outbox::signature::verify(
        RECEIVER_SECRET,
        &event.timestamp,
        &event.signature,
        event.body.as_bytes(),
        now,
        300,
    )
    .expect("the signature verifies");
    assert!(actors::outbox::signature::verify(
        "whsec_someone_else_000",
        &event.timestamp,
        &event.signature,
        event.body.as_bytes(),
        now,
        300
    )
    .is_err());
    let body: Value = serde_json::from_str(&event.body).unwrap();
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["order_no"], order["order_no"]);
    assert_eq!(body["event_id"], event.event_id.as_str());
    assert_eq!(body["total_amount"], 2999);
    let delivered = app
        .count("SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'delivered' AND attempts = 3")
        .await;
    assert_eq!(delivered, 1);
}

async fn each_orders_events_arrive_in_the_order_they_were_written(backend: Backend) {
    let receiver = Receiver::start(3);
    let app = app_with_receiver(backend, &receiver, &[]).await;

    let (order_no, _) = app.order_with_attempt("out-2", 1).await;
    app.wait_for_status(&order_no, "closed", Duration::from_secs(5)).await;
    let acknowledged = receiver.wait_for_acknowledged(2, Duration::from_secs(10)).await;

    let types: Vec<&str> = acknowledged.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["order.created", "order.closed"]);
}

async fn a_dead_delivery_is_listed_and_redelivered_by_an_admin(backend: Backend) {
    let receiver = Receiver::start(usize::MAX);
    let app = app_with_receiver(backend, &receiver, &["order.created"]).await;
    app.create_order(&order_body("out-3")).await;

    // Three retries (200, 400, 800 ms in the test profile) after the first attempt, then dead.
    let started = Instant::now();
    let dead = loop {
        let list: Value = app
            .get_as(ADMIN_TOKEN, "/admin/deliveries?status=dead")
            .await
            .json()
            .await
            .unwrap();
        if let Some(first) = list["deliveries"].as_array().and_then(|d| d.first()).cloned() {
            break first;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no dead delivery yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead["attempts"], 4);
    assert_eq!(dead["event_type"], "order.created");
    assert!(dead["last_error"].as_str().unwrap().contains("500"));
    assert_eq!(receiver.received().len(), 4);

    receiver.set_fail_first(0);
    let redeliver = app
        .post_as(
            ADMIN_TOKEN,
            &format!("/admin/deliveries/{}/redeliver", dead["id"]),
            None,
        )
        .await;
    assert_eq!(redeliver.status().as_u16(), 202);
    let acknowledged = receiver.wait_for_acknowledged(1, Duration::from_secs(5)).await;
    assert_eq!(acknowledged[0].event_id, dead["event_id"].as_str().unwrap());
    let as_client = app.get_as(MERCHANT_A_KEY, "/admin/deliveries?status=dead").await;
    assert_eq!(as_client.status().as_u16(), 401);
    let unknown = app.get_as(ADMIN_TOKEN, "/admin/deliveries?status=bogus").await;
    assert_eq!(unknown.status().as_u16(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
}

async fn an_sse_client_sees_pending_then_paid_and_the_stream_closes(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let (order_no, pay_no) = app.order_with_attempt("out-4", 600).await;

    let response = app
        .get_as(MERCHANT_A_KEY, &format!("/v1/orders/{order_no}/events"))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(r#""status":"pending""#), "{text}");

    let paid_at = Instant::now();
    app.sandbox_pay(&pay_no, true).await;
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rest = String::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the stream closes after the final status");

    assert!(rest.contains(r#""status":"paid""#), "{rest}");
    assert!(
        paid_at.elapsed() < Duration::from_secs(2),
        "pushed, not found by the 2 s re-check alone"
    );
}

/// The `order_no`s in the events a receiver acknowledged, with the merchant of each.
fn delivered_orders(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .acknowledged()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (
                body["order_no"].as_str().unwrap().to_owned(),
                body["merchant_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Before the fix every subscriber was global: a merchant's endpoint received every merchant's
/// events, and `POST /admin/subscribers` had no way to say whose events it wants.
async fn a_merchants_subscriber_gets_only_its_events_and_a_global_one_gets_every_merchants(backend: Backend) {
    // Arrange: one subscriber scoped to merchant A, one global (no merchant_id).
    let scoped = Receiver::start(0);
    let global = Receiver::start(0);
    let app = spawn_app(backend).await;
    let add = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/admin/subscribers"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let added = add(serde_json::json!({"url": scoped.url, "secret": RECEIVER_SECRET, "signature_scheme": "paywarden-v1", "merchant_id": MERCHANT_A})).await;
    assert_eq!(added.status().as_u16(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["merchant_id"], MERCHANT_A);
    let scoped_id = added["id"].as_str().unwrap().to_owned();
    let added =
        add(serde_json::json!({"url": global.url, "secret": RECEIVER_SECRET, "signature_scheme": "paywarden-v1"}))
            .await;
    assert_eq!(added.status().as_u16(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["merchant_id"], Value::Null, "no merchant_id: a global subscriber");
    for bad in ["", "merchant a", "m\u{e9}rchant", &"m".repeat(65)] {
        let refused = add(serde_json::json!({"url": scoped.url, "merchant_id": bad})).await;
        assert_eq!(
            crate::helpers::error_code(refused, 422).await,
            "invalid_merchant_id",
            "{bad:?}"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscribers").await,
        2,
        "nothing written"
    );
    let list: Value = app
        .get_as(ADMIN_TOKEN, "/admin/subscribers")
        .await
        .json()
        .await
        .unwrap();
    let listed = list["subscribers"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|s| s["id"] == scoped_id.as_str() && s["merchant_id"] == MERCHANT_A));
    assert!(listed
        .iter()
        .any(|s| s["id"] != scoped_id.as_str() && s["merchant_id"].is_null()));

    // Act: each merchant creates an order.
    let a_order = app.post_order(MERCHANT_A_KEY, &order_body("scope-a")).await;
    assert_eq!(a_order.status().as_u16(), 201);
    let a_order: Value = a_order.json().await.unwrap();
    let b_order = app.post_order(MERCHANT_B_KEY, &order_body("scope-b")).await;
    assert_eq!(b_order.status().as_u16(), 201);
    let b_order: Value = b_order.json().await.unwrap();
    global.wait_for_acknowledged(2, Duration::from_secs(10)).await;
    scoped.wait_for_acknowledged(1, Duration::from_secs(10)).await;
    // Past a sweep or two: anything else fanned out would have gone out by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Assert: the scoped subscriber saw A's event only; the global one saw both.
    let a = (a_order["order_no"].as_str().unwrap().to_owned(), MERCHANT_A.to_owned());
    let b = (b_order["order_no"].as_str().unwrap().to_owned(), MERCHANT_B.to_owned());
    assert_eq!(
        delivered_orders(&scoped),
        std::slice::from_ref(&a),
        "never merchant B's event"
    );
    assert_eq!(scoped.received().len(), 1);
    let mut everything = delivered_orders(&global);
    everything.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(everything, expected);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM outbox_deliveries WHERE subscriber_id = '{scoped_id}'"
        ))
        .await,
        1,
        "no delivery row for another merchant's event"
    );
}

/// `[[outbox.webhooks]]` entries scope the same way: `merchant_id` set, that merchant's events
/// only; absent, every merchant's. A narrowed scope also stops deliveries already queued.
async fn a_configured_webhook_with_a_merchant_id_gets_only_that_merchants_events(backend: Backend) {
    // Arrange
    let b_only = Receiver::start(0);
    let everything = Receiver::start(0);
    let mut settings = test_settings(backend).await;
    let configured = |receiver: &Receiver, merchant_id: Option<&str>| actors::outbox::ConfiguredWebhook {
        url: receiver.url.clone(),
        secret: SecretString::from(RECEIVER_SECRET),
        event_types: Vec::new(),
        merchant_id: merchant_id.map(str::to_owned),
        signature_scheme: entities::SignatureScheme::PaywardenV1,
    };
    settings.outbox.webhooks = vec![configured(&b_only, Some(MERCHANT_B)), configured(&everything, None)];
    let app = spawn_app_with(settings).await;

    // Act
    let a_order = app.create_order(&order_body("cfg-a")).await;
    let b_order = app.post_order(MERCHANT_B_KEY, &order_body("cfg-b")).await;
    assert_eq!(b_order.status().as_u16(), 201);
    let b_order: Value = b_order.json().await.unwrap();
    everything.wait_for_acknowledged(2, Duration::from_secs(10)).await;
    b_only.wait_for_acknowledged(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Assert
    let b = (b_order["order_no"].as_str().unwrap().to_owned(), MERCHANT_B.to_owned());
    assert_eq!(
        delivered_orders(&b_only),
        std::slice::from_ref(&b),
        "never merchant A's event"
    );
    assert_eq!(b_only.received().len(), 1);
    let mut all = delivered_orders(&everything);
    all.sort();
    let mut expected = vec![
        (a_order["order_no"].as_str().unwrap().to_owned(), MERCHANT_A.to_owned()),
        b,
    ];
    expected.sort();
    assert_eq!(all, expected);
    let list: Value = app
        .get_as(ADMIN_TOKEN, "/admin/subscribers")
        .await
        .json()
        .await
        .unwrap();
    let scopes: Vec<(&str, &Value)> = list["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["url"].as_str().unwrap(), &s["merchant_id"]))
        .collect();
    assert!(
        scopes.contains(&(b_only.url.as_str(), &Value::from(MERCHANT_B))),
        "{scopes:?}"
    );
    assert!(scopes.contains(&(everything.url.as_str(), &Value::Null)), "{scopes:?}");

    // A queued delivery whose subscriber is narrowed to another merchant (a configuration
    // change) is dead at its next try and never sent.
    app.execute(&format!(
        "UPDATE subscribers SET merchant_id = '{MERCHANT_A}' WHERE url = '{}'",
        everything.url
    ))
    .await;
    app.execute(&format!(
        "UPDATE outbox_deliveries SET status = 'pending', attempts = 0, next_attempt_at = CURRENT_TIMESTAMP \
         WHERE order_id = {} AND subscriber_id IN (SELECT id FROM subscribers WHERE url = '{}')",
        b_order["order_no"].as_str().unwrap(),
        everything.url
    ))
    .await;
    let started = Instant::now();
    while app
        .count("SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'dead' AND last_error LIKE '%merchant scope%'")
        .await
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the delivery was never judged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(everything.received().len(), 2, "merchant B's event was not sent again");
}

#[actix_web::test]
async fn two_relays_on_one_database_deliver_each_event_once() {
    let receiver = Receiver::start(0);
    let mut settings = test_settings(Backend::Postgres).await;
    settings.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
        url: receiver.url.clone(),
        secret: SecretString::from(RECEIVER_SECRET),
        event_types: vec!["order.created".to_owned()],
        merchant_id: None,
        signature_scheme: entities::SignatureScheme::PaywardenV1,
    }];
    settings.outbox.batch_size = 3;
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;

    for n in 0..12 {
        let app = if n % 2 == 0 { &first } else { &second };
        app.create_order(&order_body(&format!("two-{n}"))).await;
    }
    receiver.wait_for_acknowledged(12, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let received = receiver.received();
    let mut ids: Vec<&str> = received.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert_eq!(received.len(), 12, "no event was delivered twice");
}

#[actix_web::test]
async fn killing_the_service_between_commit_and_delivery_loses_nothing() {
    let receiver = Receiver::start(usize::MAX);
    let settings = test_settings(Backend::Postgres).await;
    let url = settings.database.url.expose_secret().to_owned();
    let prefix = settings.redis.key_prefix.clone();
    let mut service = ServiceProcess::start(&url, &prefix, free_port()).await;
    let client = reqwest::Client::new();
    let added = client
        .post(format!("{}/admin/subscribers", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"url": receiver.url, "secret": RECEIVER_SECRET, "signature_scheme": "paywarden-v1", "event_types": ["order.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status().as_u16(), 201);
    let order: Value = client
        .post(format!("{}/v1/orders", service.base))
        .bearer_auth(MERCHANT_A_KEY)
        .json(&order_body("kill-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started = Instant::now();
    while receiver.received().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    service.kill();
    receiver.set_fail_first(0);
    let _service = ServiceProcess::start(&url, &prefix, free_port()).await;

    let acknowledged = receiver.wait_for_acknowledged(1, Duration::from_secs(15)).await;
    let body: Value = serde_json::from_str(&acknowledged[0].body).unwrap();
    assert_eq!(body["order_no"], order["order_no"]);
}

/// A TCP forwarder to RabbitMQ that the test can cut and restore, to take the broker away from
/// paywarden without stopping the machine's broker under the other tests.
struct BrokerLink {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BrokerLink {
    async fn open(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task: Some(task) }
    }

    /// Drops the listener and every forwarded connection.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[actix_web::test]
async fn the_amqp_sink_publishes_with_confirms_and_catches_up_after_an_outage() {
    use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    // Arrange: a queue bound to the exchange paywarden publishes to.
    let mut link = BrokerLink::open(0).await;
    let mut settings = test_settings(Backend::Postgres).await;
    let exchange = format!("{}.events", settings.redis.key_prefix);
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@127.0.0.1:{}/%2f", link.port));
    settings.amqp.exchange = exchange.clone();
    // Long enough that the delivery is still pending when the link comes back.
    settings.outbox.retry_schedule = [300, 600, 1000, 2000, 4000]
        .into_iter()
        .map(std::time::Duration::from_millis)
        .collect();
    let connection = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio),
    )
    .await
    .expect("RabbitMQ answers on 127.0.0.1:5672");
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            &exchange,
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().as_str(),
            &exchange,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let app = spawn_app_with(settings).await;
    let next_message = || {
        let channel = channel.clone();
        let queue = queue.name().as_str().to_owned();
        async move {
            let started = Instant::now();
            loop {
                if let Some(message) = channel
                    .basic_get(&queue, BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                {
                    return Some(message);
                }
                if started.elapsed() > Duration::from_secs(10) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Act + Assert: a created order arrives as a persistent message.
    let first = app.create_order(&order_body("amqp-1")).await;
    let message = next_message().await.expect("the event reached the queue");
    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["order_no"], first["order_no"]);
    assert_eq!(message.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
        body["event_id"].as_str().map(str::to_owned)
    );

    // The broker goes away: the event waits, pending, and goes out when it is back.
    link.cut();
    let second = app.create_order(&order_body("amqp-2")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pending = app
        .count("SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'pending' AND attempts >= 1")
        .await;
    assert_eq!(pending, 1, "the delivery failed and waits for a retry");
    let _link = BrokerLink::open(link.port).await;
    let message = next_message()
        .await
        .expect("the waiting event went out once the broker was back");
    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(body["order_no"], second["order_no"]);
}

/// Before the fix any URL was accepted (169.254.169.254, loopback) and redirects were followed.
#[actix_web::test]
async fn private_targets_are_refused_and_redirects_not_followed() {
    let mut settings = test_settings(Backend::Postgres).await;
    settings.outbox.allow_private_targets = false;
    let app = spawn_app_with(settings).await;
    let add = |url: &str| {
        app.client
            .post(app.url("/admin/subscribers"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "url": url }))
            .send()
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://10.1.2.3/hook",
    ] {
        let response = add(url).await.unwrap();
        assert_eq!(crate::helpers::error_code(response, 422).await, "invalid_url", "{url}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscribers").await,
        0,
        "nothing written"
    );

    // A subscriber stored while private targets were allowed is refused at delivery time too.
    let receiver = Receiver::start(0);
    app.execute(&format!(
        "INSERT INTO subscribers (id, kind, url, secret, event_types, enabled, created_at) \
         VALUES ('sub_private', 'webhook', '{}', '{RECEIVER_SECRET}', '*', TRUE, CURRENT_TIMESTAMP)",
        receiver.url
    ))
    .await;
    app.create_order(&order_body("private-1")).await;
    let started = Instant::now();
    while app
        .count("SELECT COUNT(*) FROM outbox_deliveries WHERE attempts > 0 AND last_error LIKE '%refused%'")
        .await
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the delivery was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.received().is_empty(), "nothing reached the private address");

    // Redirects: the first receiver answers 307 to the second; the second must see nothing.
    let target = Receiver::start(0);
    let bouncer = Receiver::start_with(ReceiverState {
        redirect_to: Some(target.url.clone()),
        ..ReceiverState::default()
    });
    let mut settings = test_settings(Backend::Postgres).await;
    settings.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
        url: bouncer.url.clone(),
        secret: SecretString::from(RECEIVER_SECRET),
        event_types: Vec::new(),
        merchant_id: None,
        signature_scheme: entities::SignatureScheme::PaywardenV1,
    }];
    let redirected = spawn_app_with(settings).await;
    redirected.create_order(&order_body("redirect-1")).await;
    let started = Instant::now();
    while bouncer.received().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the delivery was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(target.received().is_empty(), "the redirect was not followed");
    assert_eq!(
        redirected
            .count("SELECT COUNT(*) FROM outbox_deliveries WHERE status = 'pending' AND last_error LIKE '%307%'")
            .await,
        1,
        "a 3xx is a failed delivery, retried later"
    );
}

/// Before the fix these special-purpose addresses passed the hand-written filter (fec0::/10,
/// 64:ff9b:1::/48, ::ffff:0:0/96, 100::/64 and the others the IANA registries list), and a URL
/// with `user:password@` was accepted, logged and listed. Each is refused with 422 and nothing
/// is stored; credentials in a URL are refused even where private targets are allowed.
#[actix_web::test]
async fn special_purpose_targets_and_urls_with_credentials_are_refused() {
    let mut settings = test_settings(Backend::Sqlite).await;
    settings.outbox.allow_private_targets = false;
    let app = spawn_app_with(settings).await;
    let lenient = spawn_app(Backend::Sqlite).await;
    let add = |app: &TestApp, url: &str| {
        app.client
            .post(app.url("/admin/subscribers"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "url": url }))
            .send()
    };
    let special = [
        ("http://[fec0::1]/hook", "site-local fec0::/10"),
        ("http://[64:ff9b:1::a9fe:a9fe]/hook", "local-use NAT64 64:ff9b:1::/48"),
        ("http://[::ffff:5db8:d822]/hook", "IPv4-mapped ::ffff:0:0/96"),
        ("http://[100::1]/hook", "discard-only 100::/64"),
        ("http://[100:0:0:1::1]/hook", "dummy prefix 100:0:0:1::/64"),
        ("http://[5f00::1]/hook", "SRv6 5f00::/16"),
        ("http://[3fff::1]/hook", "documentation 3fff::/20"),
        ("http://[2001:2::1]/hook", "benchmarking 2001:2::/48"),
        ("http://[2620:4f:8000::1]/hook", "AS112 2620:4f:8000::/48"),
        ("http://[ff02::1]/hook", "multicast ff00::/8"),
        ("http://192.0.0.9/hook", "PCP anycast 192.0.0.9/32"),
        ("http://192.31.196.1/hook", "AS112-v4 192.31.196.0/24"),
        ("http://192.88.99.1/hook", "6to4 relay anycast 192.88.99.0/24"),
        ("http://192.175.48.1/hook", "AS112 192.175.48.0/24"),
        ("http://169.254.169.254/latest/meta-data/", "link local 169.254.0.0/16"),
    ];
    for (url, range) in special {
        let response = add(&app, url).await.unwrap();
        assert_eq!(
            crate::helpers::error_code(response, 422).await,
            "invalid_url",
            "{range}: {url}"
        );
    }
    for app in [&app, &lenient] {
        let response = add(app, "https://ops:hunter2@hooks.example.com/paywarden")
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422);
        let body = response.text().await.unwrap();
        assert!(body.contains("invalid_url") && !body.contains("hunter2"), "{body}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM subscribers").await,
            0,
            "nothing written"
        );
    }
    // A public name is still accepted.
    let response = add(&app, "https://hooks.example.com/paywarden").await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

/// Before the fix a relay claimed a whole batch however long it took to send: with slow
/// receivers the lease ran out mid-batch and a second relay sent the same events again.
#[actix_web::test]
async fn a_claimed_batch_never_outlives_its_lease() {
    let receiver = Receiver::start_with(ReceiverState {
        delay: Duration::from_millis(700),
        ..ReceiverState::default()
    });
    let mut settings = test_settings(Backend::Postgres).await;
    settings.outbox.webhooks = vec![actors::outbox::ConfiguredWebhook {
        url: receiver.url.clone(),
        secret: SecretString::from(RECEIVER_SECRET),
        event_types: vec!["order.created".to_owned()],
        merchant_id: None,
        signature_scheme: entities::SignatureScheme::PaywardenV1,
    }];
    settings.outbox.batch_size = 10;
    settings.outbox.concurrency = 1;
    settings.outbox.lease = Duration::from_secs(2);
    settings.outbox.webhook_timeout = Duration::from_secs(1);
    settings.outbox.sweep_interval = Duration::from_millis(100);
    let first = spawn_app_with(settings.clone()).await;
    for n in 0..6 {
        first.create_order(&order_body(&format!("lease-{n}"))).await;
    }
    let _second = spawn_app_with(settings).await;
    receiver.wait_for_acknowledged(6, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let received = receiver.received();
    let mut ids: Vec<&str> = received.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert_eq!(received.len(), 6, "no event was sent twice");
}
