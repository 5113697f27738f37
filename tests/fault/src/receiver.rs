//! The downstream webhook receiver: verifies each delivery's signature as docs/downstream.md tells a
//! receiver to, and counts every event id it sees (a duplicate is a second sighting of an id:
//! delivery is at least once).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actors::outbox::signature::{self, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use anyhow::Context;

/// The replay window docs/downstream.md gives.
const TOLERANCE_SECONDS: i64 = 300;

#[derive(Default)]
pub(crate) struct Seen {
    /// Event id -> deliveries received.
    pub(crate) ids: HashMap<String, u32>,
}

pub(crate) struct ReceiverState {
    secret: String,
    seen: Mutex<Seen>,
    bad_signatures: AtomicU64,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<ReceiverState>,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    pub(crate) fn start(secret: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind the receiver")?;
        let address = listener.local_addr().context("receiver has no address")?;
        let state = Arc::new(ReceiverState {
            secret: secret.to_owned(),
            seen: Mutex::new(Seen::default()),
            bad_signatures: AtomicU64::new(0),
        });
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/events", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .context("receiver failed to listen")?
        .run();
        let handle = server.handle();
        let server = tokio::spawn(server);
        Ok(Self {
            url: format!("http://{address}/events"),
            state,
            handle,
            server,
        })
    }

    /// Event id -> times received.
    pub(crate) fn seen(&self) -> HashMap<String, u32> {
        lock(&self.state.seen).ids.clone()
    }

    pub(crate) fn bad_signatures(&self) -> u64 {
        self.state.bad_signatures.load(Ordering::Relaxed)
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(true).await;
        if let Err(err) = self.server.await {
            tracing::warn!(error.message = %err, "receiver task ended abnormally");
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    // One map update per critical section: a poisoned map is still whole.
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers()
        .get(name.to_ascii_lowercase().as_str())
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

async fn receive(state: web::Data<ReceiverState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let now = chrono::Utc::now().timestamp();
    let verified = signature::verify(
        &state.secret,
        header(&req, TIMESTAMP_HEADER),
        header(&req, SIGNATURE_HEADER),
        &body,
        now,
        TOLERANCE_SECONDS,
    );
    if verified.is_err() {
        state.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Unauthorized().finish();
    }
    let id = header(&req, EVENT_ID_HEADER).to_owned();
    *lock(&state.seen).ids.entry(id).or_insert(0) += 1;
    HttpResponse::NoContent().finish()
}
