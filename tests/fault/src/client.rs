//! The load's HTTP client of the nodes: picks a live node for each request, tries another
//! when a node does not answer (killed), and records every answer paywarden gave, so the
//! checks can count the 5xx answers and when they came.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::seq::SliceRandom;
use reqwest::Method;
use serde_json::Value;

/// The test profile's credentials (`config/test.toml`).
pub(crate) const MERCHANT_KEY: &str = "pk_test_merchant_a";
pub(crate) const ADMIN_TOKEN: &str = "admin_test_token";

/// How long a request keeps looking for a node that answers (nodes come back within seconds).
const NO_ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// One request's limit; far above anything paywarden should take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// The nodes' addresses and whether each is up (the chaos marks a node down before killing it).
pub(crate) struct Cluster {
    nodes: Vec<(String, AtomicBool)>,
}

impl Cluster {
    pub(crate) fn new(bases: Vec<String>) -> Self {
        Self {
            nodes: bases.into_iter().map(|base| (base, AtomicBool::new(true))).collect(),
        }
    }

    pub(crate) fn set_up(&self, index: usize, up: bool) {
        if let Some((_, flag)) = self.nodes.get(index) {
            flag.store(up, Ordering::SeqCst);
        }
    }

    fn pick(&self) -> Option<&str> {
        let up: Vec<&str> = self
            .nodes
            .iter()
            .filter(|(_, up)| up.load(Ordering::SeqCst))
            .map(|(base, _)| base.as_str())
            .collect();
        up.choose(&mut rand::thread_rng()).copied()
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller {
    Merchant,
    Admin,
}

impl Caller {
    fn token(self) -> &'static str {
        match self {
            Caller::Merchant => MERCHANT_KEY,
            Caller::Admin => ADMIN_TOKEN,
        }
    }
}

/// An answer from paywarden.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub(crate) fn str(&self, field: &str) -> Option<&str> {
        self.body[field].as_str()
    }
}

/// A 5xx answer, with when its request was sent (seconds since the run started).
#[derive(Clone, Debug)]
pub(crate) struct ServerError {
    pub(crate) sent_at: f64,
    /// When its answer came: the request was in flight from `sent_at` until then.
    pub(crate) answered_at: f64,
    pub(crate) route: &'static str,
    pub(crate) status: u16,
    pub(crate) code: String,
}

#[derive(Clone, Default)]
pub(crate) struct Observed {
    /// (route, status) -> answers.
    pub(crate) answers: BTreeMap<(&'static str, u16), u64>,
    pub(crate) server_errors: Vec<ServerError>,
    /// Requests that got no answer from a node (killed under it) and were sent again.
    pub(crate) unanswered_tries: u64,
    /// Requests that found no node answering within the limit.
    pub(crate) gave_up: u64,
    /// `503 service_unavailable` with `Retry-After` (in a cluster: the order's partition was
    /// changing hands, or a forwarded request's answer was lost) and `409
    /// idempotency_key_in_use` (the first try still running), sent again with the same
    /// `Idempotency-Key` as the answer asks.
    pub(crate) retried_after: u64,
}

#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    cluster: Arc<Cluster>,
    observed: Arc<Mutex<Observed>>,
    started: Instant,
}

impl Api {
    pub(crate) fn new(cluster: Arc<Cluster>, started: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("failed to build an HTTP client")?,
            cluster,
            observed: Arc::new(Mutex::new(Observed::default())),
            started,
        })
    }

    pub(crate) fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // Each critical section is one counter update: a poisoned lock is still consistent.
        self.observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `method path` on any node that is up; on no answer (the node died under the request),
    /// again on another. Every try of one call carries the same `Idempotency-Key` (for a
    /// `POST`), so a try that took effect before its answer was lost is answered, not done
    /// again. `None`: no node answered within the limit.
    pub(crate) async fn call(
        &self,
        route: &'static str,
        method: Method,
        path: &str,
        caller: Caller,
        body: Option<&Value>,
    ) -> Option<Answer> {
        let first = Instant::now();
        let key = idempotency_key(&method);
        loop {
            if let Some(base) = self.cluster.pick() {
                let url = format!("{base}{path}");
                if let Some(answer) = self
                    .once(route, method.clone(), &url, caller, body, key.as_deref())
                    .await
                {
                    return Some(answer);
                }
            }
            if first.elapsed() > NO_ANSWER_LIMIT {
                self.observed().gave_up += 1;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Like [`Api::call`], at one given URL (a sandbox trade lives in one node's memory).
    pub(crate) async fn call_url(
        &self,
        route: &'static str,
        method: Method,
        url: &str,
        caller: Caller,
        body: Option<&Value>,
    ) -> Option<Answer> {
        let first = Instant::now();
        let key = idempotency_key(&method);
        loop {
            if let Some(answer) = self
                .once(route, method.clone(), url, caller, body, key.as_deref())
                .await
            {
                return Some(answer);
            }
            if first.elapsed() > NO_ANSWER_LIMIT {
                self.observed().gave_up += 1;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn once(
        &self,
        route: &'static str,
        method: Method,
        url: &str,
        caller: Caller,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Option<Answer> {
        let sent_at = self.started.elapsed().as_secs_f64();
        let mut request = self.http.request(method, url).bearer_auth(caller.token());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(route, error.message = %err, "no answer; trying again");
                self.observed().unanswered_tries += 1;
                return None;
            }
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key(reqwest::header::RETRY_AFTER);
        let body = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(err) => {
                // The node died while answering: no answer either.
                tracing::debug!(route, error.message = %err, "answer cut off; trying again");
                self.observed().unanswered_tries += 1;
                return None;
            }
        };
        let answer = Answer { status, body };
        let retryable = matches!(
            (status, answer.code()),
            (503, "service_unavailable") | (409, "idempotency_key_in_use")
        );
        if retryable && retry_after {
            // The documented retryable answers: send it again, with the same key.
            self.observed().retried_after += 1;
            return None;
        }
        let mut observed = self.observed();
        *observed.answers.entry((route, status)).or_insert(0) += 1;
        if status >= 500 {
            observed.server_errors.push(ServerError {
                sent_at,
                answered_at: self.started.elapsed().as_secs_f64(),
                route,
                status,
                code: answer.code().to_owned(),
            });
        }
        Some(answer)
    }
}

/// A new key for one call that can change something (reads need none).
fn idempotency_key(method: &Method) -> Option<String> {
    (method != Method::GET).then(|| format!("fault-{}", uuid::Uuid::new_v4().simple()))
}
