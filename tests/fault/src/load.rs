//! The steady mixed load: orders created at an even pace over the run, each following one
//! script — a merchant and a buyer doing one of the things the expiry rule must survive —
//! with every choice drawn from a generator seeded per order (so a seed replays the same mix;
//! timing, of course, differs from run to run).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{Answer, Api, Caller};
use crate::Scenario;

/// Tracked SKUs and their initial stock; the scarce one runs out during a run, so creation
/// also meets `insufficient_stock` and closes give stock back to later orders.
pub(crate) fn tracked_skus(scenario: &Scenario) -> Vec<(&'static str, i64)> {
    let scarce = i64::from((scenario.orders / 12).max(4));
    vec![
        ("trk-course", 1_000_000),
        ("trk-book", 1_000_000),
        ("trk-scarce", scarce),
    ]
}

const UNTRACKED_SKUS: [&str; 2] = ["free-video", "free-ebook"];

/// What one order does after it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Script {
    /// Attempts (any provider, Alipay sometimes scanned), never paid: closed at the deadline.
    Unpaid,
    /// Paid at WeChat or Alipay; the notification normal, dropped n times, duplicated,
    /// delayed, or several of these.
    Paid,
    /// Paid with the callback lost for good: only the active query at the deadline finds it.
    LostCallback,
    /// Paid exactly at the trade's `time_expire` (a little before or after).
    PaidAtDeadline,
    /// Cancelled by the merchant; then a late buyer tries to pay what was handed out.
    Cancelled,
    /// Closed by an operator; then a late buyer tries to pay.
    ForceClosed,
    /// The buyer pays just as paywarden's close reaches the provider (cancel, force-close or
    /// expiry).
    PayAtClose,
    /// Paid with the callback lost, then the client asks for a refresh.
    Refreshed,
    /// Two attempts both paid: the first one's notification delayed so they arrive
    /// reordered, or the second paid only once the order is paid by the first.
    TwoPayments,
    /// The built-in sandbox provider, paid (notified or not) or not.
    Sandbox,
    /// Paid; once the order is paid, the provider reports the same trade again, validly
    /// signed, under another transaction id (a reused `out_trade_no`): an anomaly, never a
    /// refund of the order's own payment.
    ConflictingReport,
}

impl Script {
    const ALL: [(Script, u32); 11] = [
        (Script::Unpaid, 12),
        (Script::Paid, 20),
        (Script::LostCallback, 8),
        (Script::PaidAtDeadline, 8),
        (Script::Cancelled, 10),
        (Script::ForceClosed, 6),
        (Script::PayAtClose, 10),
        (Script::Refreshed, 6),
        (Script::TwoPayments, 8),
        (Script::Sandbox, 7),
        (Script::ConflictingReport, 5),
    ];

    fn pick(rng: &mut StdRng) -> Self {
        Self::ALL
            .choose_weighted(rng, |(_, weight)| *weight)
            .map(|(script, _)| *script)
            .unwrap_or(Script::Paid)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Script::Unpaid => "unpaid",
            Script::Paid => "paid (notification dropped/duplicated/delayed)",
            Script::LostCallback => "paid, callback lost",
            Script::PaidAtDeadline => "paid at the deadline",
            Script::Cancelled => "cancelled, then a late buyer",
            Script::ForceClosed => "force-closed, then a late buyer",
            Script::PayAtClose => "pay-at-close race",
            Script::Refreshed => "paid, callback lost, refreshed",
            Script::TwoPayments => "two payments (reordered notifications, or one after paid)",
            Script::Sandbox => "sandbox",
            Script::ConflictingReport => "paid, then reported again under another transaction id",
        }
    }
}

/// A payment the buyer made at the simulator.
#[derive(Clone, Debug)]
pub(crate) struct BuyerPayment {
    pub(crate) provider: &'static str,
    pub(crate) pay_no: String,
    /// Deliveries the simulator will make (first attempt, dropped ones, duplicates); 0 when
    /// it sends none.
    pub(crate) expected_sends: u32,
}

/// What the load did, for the report and for waiting until the simulator is done notifying.
#[derive(Clone, Default)]
pub(crate) struct Facts {
    pub(crate) scripts: HashMap<String, Script>,
    /// Named counters ("pay accepted by the simulator", ...), printed as they are.
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) buyer_payments: Vec<BuyerPayment>,
    /// Sandbox trades paid (pay_no, notified).
    pub(crate) sandbox_payments: Vec<(String, bool)>,
    /// Idempotent replays of a creation that answered another order (must be none).
    pub(crate) replay_mismatches: Vec<String>,
    /// Trades reported again under another transaction id (pay_no).
    pub(crate) conflicting_reports: Vec<String>,
    /// What the tampered bills did (label, count), and what they must not have done.
    pub(crate) bills: Vec<(String, i64)>,
    pub(crate) bill_failures: Vec<String>,
}

impl Facts {
    fn count(&mut self, name: &str) {
        *self.counters.entry(name.to_owned()).or_insert(0) += 1;
    }
}

pub(crate) struct Load {
    pub(crate) api: Api,
    sim: reqwest::Client,
    sim_base: String,
    seed: u64,
    tag: String,
    ttl: (u64, u64),
    pub(crate) facts: Mutex<Facts>,
}

/// The order as the load knows it.
struct Order {
    no: String,
    expires_at: DateTime<Utc>,
    ttl: Duration,
}

/// An attempt as the load knows it.
struct Attempt {
    provider: &'static str,
    pay_no: String,
    code_url: String,
}

impl Load {
    pub(crate) fn new(api: Api, sim_base: String, scenario: &Scenario, tag: String) -> anyhow::Result<Self> {
        Ok(Self {
            api,
            sim: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|err| anyhow::anyhow!("failed to build an HTTP client: {err}"))?,
            sim_base,
            seed: scenario.seed,
            tag,
            ttl: (scenario.ttl_seconds.0, scenario.ttl_seconds.1),
            facts: Mutex::new(Facts::default()),
        })
    }

    pub(crate) fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        // Each critical section is one insert or counter update.
        self.facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, name: &str) {
        self.facts().count(name);
    }

    /// Creates `orders` orders evenly over `duration`, each running its script in its own
    /// task; returns once every script has finished.
    pub(crate) async fn run(self: Arc<Self>, orders: u32, duration: Duration) {
        let started = Instant::now();
        let pace = duration.checked_div(orders.max(1)).unwrap_or_default();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..orders {
            let at = started + pace.saturating_mul(n);
            tokio::time::sleep_until(at.into()).await;
            let load = Arc::clone(&self);
            tasks.spawn(async move { load.order(n).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(err) = done {
                tracing::error!(error.message = %err, "an order script panicked");
                self.count("harness: script panicked");
            }
        }
    }

    async fn order(&self, n: u32) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let script = Script::pick(&mut rng);
        let ttl = rng.gen_range(self.ttl.0..=self.ttl.1);
        let Some(order) = self.create(n, ttl, &mut rng).await else {
            return;
        };
        self.facts().scripts.insert(order.no.clone(), script);
        self.count(&format!("script: {}", script.name()));
        match script {
            Script::Unpaid => self.unpaid(&order, &mut rng).await,
            Script::Paid => self.paid(&order, &mut rng).await,
            Script::LostCallback => self.lost_callback(&order, &mut rng).await,
            Script::PaidAtDeadline => self.paid_at_deadline(&order, &mut rng).await,
            Script::Cancelled => self.closed_then_late_buyer(&order, false, &mut rng).await,
            Script::ForceClosed => self.closed_then_late_buyer(&order, true, &mut rng).await,
            Script::PayAtClose => self.pay_at_close(&order, &mut rng).await,
            Script::Refreshed => self.refreshed(&order, &mut rng).await,
            Script::TwoPayments => self.two_payments(&order, &mut rng).await,
            Script::Sandbox => self.sandbox(&order, &mut rng).await,
            Script::ConflictingReport => self.conflicting_report(&order, &mut rng).await,
        }
        if rng.gen_bool(0.3) {
            self.read(&order).await;
        }
    }

    // ---- the scripts ----

    async fn unpaid(&self, order: &Order, rng: &mut StdRng) {
        for _ in 0..rng.gen_range(1..=2) {
            let provider = *["wechat", "alipay", "sandbox"].choose(rng).unwrap_or(&"wechat");
            if let Some(attempt) = self.attempt(order, provider).await {
                if provider == "alipay" && rng.gen_bool(0.5) {
                    self.sim_buyer(&attempt, "scan", None).await;
                }
            }
        }
        if rng.gen_bool(0.4) {
            sleep_part(order, rng, 0.1, 0.6).await;
            self.refresh(order).await;
        }
    }

    async fn paid(&self, order: &Order, rng: &mut StdRng) {
        let provider = real_provider(rng);
        let Some(attempt) = self.attempt(order, provider).await else {
            return;
        };
        sleep_part(order, rng, 0.05, 0.5).await;
        let options = notification_options(rng, false);
        self.buyer_pays(&attempt, options, "pay").await;
    }

    async fn conflicting_report(&self, order: &Order, rng: &mut StdRng) {
        let provider = real_provider(rng);
        let Some(attempt) = self.attempt(order, provider).await else {
            return;
        };
        sleep_part(order, rng, 0.05, 0.3).await;
        if !self.buyer_pays(&attempt, json!({}), "pay").await {
            return;
        }
        // Once paywarden recorded the payment (or the order's deadline passed), the report
        // that contradicts it.
        let until = Instant::now() + order.ttl + Duration::from_secs(5);
        while Instant::now() < until {
            let paid = self
                .sim_trade(&attempt)
                .await
                .is_some_and(|trade| trade["notifications_acknowledged"].as_u64().unwrap_or(0) > 0);
            if paid {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Sent once: acknowledged, it must have left an anomaly (a node down, it simply was
        // not delivered).
        let url = format!(
            "{}/sim/{provider}/trades/{}/notify-conflicting",
            self.sim_base, attempt.pay_no
        );
        let answer: Option<Value> = match self.sim.post(url).send().await {
            Ok(response) if response.status().is_success() => response.json().await.ok(),
            _ => None,
        };
        let acknowledged = answer.as_ref().and_then(|a| a["acknowledged"].as_bool());
        self.count(&format!(
            "contradicting report at {provider}: {}",
            match acknowledged {
                Some(true) => "acknowledged",
                Some(false) => "not acknowledged (a node down)",
                None => "not sent",
            }
        ));
        if acknowledged == Some(true) {
            self.facts().conflicting_reports.push(attempt.pay_no.clone());
        }
    }

    async fn lost_callback(&self, order: &Order, rng: &mut StdRng) {
        let Some(attempt) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        sleep_part(order, rng, 0.05, 0.7).await;
        self.buyer_pays(&attempt, json!({"notify": false}), "pay").await;
    }

    async fn paid_at_deadline(&self, order: &Order, rng: &mut StdRng) {
        let Some(attempt) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        // The trade's own time_expire (providers keep whole seconds), else the order's deadline.
        let expire = self
            .sim_trade(&attempt)
            .await
            .and_then(|trade| trade["time_expire"].as_str().map(str::to_owned))
            .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map_or(order.expires_at, |at| at.with_timezone(&Utc));
        let offset_ms: i64 = rng.gen_range(-60..=20);
        let at = expire + chrono::Duration::milliseconds(offset_ms);
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let options = notification_options(rng, true);
        let accepted = self.buyer_pays(&attempt, options, "pay at the deadline").await;
        self.count(if accepted {
            "pay at the deadline: accepted"
        } else {
            "pay at the deadline: refused"
        });
    }

    async fn closed_then_late_buyer(&self, order: &Order, force: bool, rng: &mut StdRng) {
        let mut attempts = Vec::new();
        for _ in 0..rng.gen_range(0..=2) {
            let provider = *["wechat", "alipay", "sandbox"].choose(rng).unwrap_or(&"alipay");
            if let Some(attempt) = self.attempt(order, provider).await {
                attempts.push(attempt);
            }
        }
        sleep_part(order, rng, 0.05, 0.6).await;
        let closed = if force {
            self.force_close(order).await
        } else {
            self.cancel(order).await
        };
        if !closed || !rng.gen_bool(0.6) {
            return;
        }
        // A buyer who kept the QR code pays after the order was closed.
        for attempt in attempts.iter().filter(|a| a.provider != "sandbox") {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..=800))).await;
            let options = notification_options(rng, true);
            let accepted = self.buyer_pays(attempt, options, "late buyer").await;
            self.count(if accepted {
                "late buyer after close: accepted by the provider"
            } else {
                "late buyer after close: refused by the provider"
            });
        }
    }

    async fn pay_at_close(&self, order: &Order, rng: &mut StdRng) {
        let Some(attempt) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        if self.sim_buyer(&attempt, "pay-at-close", None).await != Some(200) {
            return;
        }
        self.count("pay-at-close armed");
        sleep_part(order, rng, 0.05, 0.5).await;
        match rng.gen_range(0..3) {
            0 => {
                self.cancel(order).await;
            }
            1 => {
                self.force_close(order).await;
            }
            // The expiry pass closes it.
            _ => {}
        }
    }

    async fn refreshed(&self, order: &Order, rng: &mut StdRng) {
        let Some(attempt) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        sleep_part(order, rng, 0.05, 0.4).await;
        if !self.buyer_pays(&attempt, json!({"notify": false}), "pay").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..=500))).await;
        for _ in 0..3 {
            match self.refresh(order).await {
                Some(answer) if answer.status == 200 => {
                    self.count(if answer.str("status") == Some("paid") {
                        "refresh after a lost callback: paid"
                    } else {
                        "refresh after a lost callback: not paid"
                    });
                    return;
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    async fn two_payments(&self, order: &Order, rng: &mut StdRng) {
        let Some(first) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        let Some(second) = self.attempt(order, real_provider(rng)).await else {
            return;
        };
        sleep_part(order, rng, 0.05, 0.4).await;
        if rng.gen_bool(0.5) {
            // The first payment's notification is held back, so the second one's arrives first.
            let delay = rng.gen_range(500..=2000);
            self.buyer_pays(&first, json!({"delay_ms": delay}), "pay").await;
            self.buyer_pays(&second, notification_options(rng, false), "pay").await;
            return;
        }
        // The buyer pays one QR code and, once the order is paid, scans the other one too: a
        // trade paywarden should have closed when the order was paid.
        if !self.buyer_pays(&first, json!({}), "pay").await {
            return;
        }
        let path = format!("/v1/orders/{}/status", order.no);
        let give_up = Instant::now() + order.ttl + Duration::from_secs(10);
        while Instant::now() < give_up {
            let answer = self
                .api
                .call("order status", Method::GET, &path, Caller::Merchant, None)
                .await;
            if answer.is_some_and(|a| a.str("status") == Some("paid")) {
                let options = notification_options(rng, true);
                let accepted = self
                    .buyer_pays(&second, options, "second QR code after the order was paid")
                    .await;
                self.count(if accepted {
                    "second QR code after the order was paid: accepted by the provider"
                } else {
                    "second QR code after the order was paid: refused by the provider"
                });
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sandbox(&self, order: &Order, rng: &mut StdRng) {
        let Some(attempt) = self.attempt(order, "sandbox").await else {
            return;
        };
        if !rng.gen_bool(0.7) {
            return;
        }
        sleep_part(order, rng, 0.05, 0.6).await;
        let notify = rng.gen_bool(0.6);
        let url = format!("{}/pay?notify={notify}", attempt.code_url);
        match self
            .api
            .call_url("sandbox pay", Method::POST, &url, Caller::Admin, None)
            .await
        {
            Some(answer) if answer.status == 200 => {
                self.count("sandbox pay: accepted");
                self.facts().sandbox_payments.push((attempt.pay_no.clone(), notify));
            }
            Some(answer) => self.count(&format!("sandbox pay: answered {}", answer.status)),
            None => self.count("sandbox pay: no answer"),
        }
    }

    // ---- steps ----

    async fn create(&self, n: u32, ttl: u64, rng: &mut StdRng) -> Option<Order> {
        let mut skus: Vec<&str> = vec!["trk-course", "trk-book"];
        skus.extend(UNTRACKED_SKUS);
        // The scarce SKU is a candidate line in a quarter of the orders.
        if rng.gen_bool(0.25) {
            skus.push("trk-scarce");
        }
        skus.shuffle(rng);
        let lines = rng.gen_range(1..=3);
        let items: Vec<Value> = skus
            .iter()
            .take(lines)
            .map(|sku| {
                json!({
                    "sku_id": sku,
                    "name": format!("item {sku}"),
                    "unit_price": rng.gen_range(1..=20_000),
                    "quantity": rng.gen_range(1..=3),
                })
            })
            .collect();
        let body = json!({
            "out_business_id": format!("{}-{n}", self.tag),
            "user_id": format!("buyer-{}", n % 97),
            "subject": format!("fault suite order {n}"),
            "ttl_seconds": ttl,
            "items": items,
        });
        let answer = self
            .api
            .call(
                "create order",
                Method::POST,
                "/v1/orders",
                Caller::Merchant,
                Some(&body),
            )
            .await?;
        if answer.status == 409 && answer.code() == "insufficient_stock" {
            self.count("create: insufficient_stock");
            return None;
        }
        if !matches!(answer.status, 200 | 201) {
            self.count(&format!("create: answered {}", answer.status));
            return None;
        }
        let no = answer.str("order_no")?.to_owned();
        let expires_at = answer
            .str("expires_at")
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())?
            .with_timezone(&Utc);
        if rng.gen_bool(0.1) {
            // The merchant's retry of the same request: the same order, 200.
            if let Some(replay) = self
                .api
                .call(
                    "create order",
                    Method::POST,
                    "/v1/orders",
                    Caller::Merchant,
                    Some(&body),
                )
                .await
            {
                if replay.status == 200 && replay.str("order_no") == Some(no.as_str()) {
                    self.count("create replayed: same order");
                } else {
                    self.facts()
                        .replay_mismatches
                        .push(format!("{no}: replay answered {} {}", replay.status, replay.body));
                }
            }
        }
        Some(Order {
            no,
            expires_at,
            ttl: Duration::from_secs(ttl),
        })
    }

    async fn attempt(&self, order: &Order, provider: &'static str) -> Option<Attempt> {
        let body = json!({ "provider": provider });
        let path = format!("/v1/orders/{}/payments", order.no);
        let answer = self
            .api
            .call("start attempt", Method::POST, &path, Caller::Merchant, Some(&body))
            .await?;
        if answer.status != 201 {
            self.count(&format!(
                "attempt at {provider}: answered {} {}",
                answer.status,
                answer.code()
            ));
            return None;
        }
        self.count(&format!("attempt at {provider}: started"));
        Some(Attempt {
            provider,
            pay_no: answer.str("pay_no")?.to_owned(),
            code_url: answer.str("code_url").unwrap_or_default().to_owned(),
        })
    }

    async fn cancel(&self, order: &Order) -> bool {
        let path = format!("/v1/orders/{}/cancel", order.no);
        self.close(order, "cancel", &path, Caller::Merchant, None).await
    }

    async fn force_close(&self, order: &Order) -> bool {
        let path = format!("/admin/orders/{}/force-close", order.no);
        let body = json!({"reason": "fault suite: operator closes the order"});
        self.close(order, "force-close", &path, Caller::Admin, Some(&body))
            .await
    }

    /// A cancel or force-close, tried again while the provider cannot be reached or refuses
    /// a close this early (as a client would); true when it closed the order.
    async fn close(
        &self,
        order: &Order,
        route: &'static str,
        path: &str,
        caller: Caller,
        body: Option<&Value>,
    ) -> bool {
        for _ in 0..4 {
            let Some(answer) = self.api.call(route, Method::POST, path, caller, body).await else {
                return false;
            };
            match (answer.status, answer.code()) {
                (200, _) => {
                    self.count(&format!("{route}: closed"));
                    return true;
                }
                (409, "order_not_pending") => {
                    self.count(&format!("{route}: order no longer pending"));
                    return false;
                }
                (status, code) if status >= 500 || code == "close_not_possible_yet" => {
                    self.count(&format!("{route}: {status} {code}, tried again"));
                    if Utc::now() + chrono::Duration::seconds(1) > order.expires_at {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (status, code) => {
                    self.count(&format!("{route}: answered {status} {code}"));
                    return false;
                }
            }
        }
        false
    }

    async fn refresh(&self, order: &Order) -> Option<Answer> {
        let path = format!("/v1/orders/{}/status?refresh=true", order.no);
        let answer = self
            .api
            .call("refresh", Method::GET, &path, Caller::Merchant, None)
            .await?;
        self.count(&format!("refresh: answered {}", answer.status));
        Some(answer)
    }

    async fn read(&self, order: &Order) {
        let path = format!("/v1/orders/{}", order.no);
        self.api
            .call("read order", Method::GET, &path, Caller::Merchant, None)
            .await;
    }

    /// The buyer pays at the simulator; true when the provider took the money.
    async fn buyer_pays(&self, attempt: &Attempt, options: Value, what: &str) -> bool {
        let status = self.sim_buyer(attempt, "pay", Some(&options)).await;
        let accepted = status == Some(200);
        self.count(&format!(
            "{what} at {}: {}",
            attempt.provider,
            match status {
                Some(200) => "accepted".to_owned(),
                Some(409) => "refused, trade closed or expired".to_owned(),
                Some(other) => format!("answered {other}"),
                None => "no answer".to_owned(),
            }
        ));
        if accepted {
            let notify = options["notify"].as_bool().unwrap_or(true);
            let sends = |key: &str| options[key].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            let expected_sends = if notify {
                1 + sends("drop") + sends("duplicate")
            } else {
                0
            };
            self.facts().buyer_payments.push(BuyerPayment {
                provider: attempt.provider,
                pay_no: attempt.pay_no.clone(),
                expected_sends,
            });
        }
        accepted
    }

    /// A control route of the simulator for this attempt's trade; its status.
    async fn sim_buyer(&self, attempt: &Attempt, action: &str, body: Option<&Value>) -> Option<u16> {
        let url = format!(
            "{}/sim/{}/trades/{}/{action}",
            self.sim_base, attempt.provider, attempt.pay_no
        );
        let mut request = self.sim.post(url);
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(err) => {
                tracing::warn!(error.message = %err, "simulator control route failed");
                None
            }
        }
    }

    async fn sim_trade(&self, attempt: &Attempt) -> Option<Value> {
        let url = format!("{}/sim/{}/trades/{}", self.sim_base, attempt.provider, attempt.pay_no);
        self.sim.get(url).send().await.ok()?.json().await.ok()
    }
}

fn real_provider(rng: &mut StdRng) -> &'static str {
    if rng.gen_bool(0.5) {
        "wechat"
    } else {
        "alipay"
    }
}

/// Sleeps a random share (between `from` and `to`) of the order's TTL.
async fn sleep_part(order: &Order, rng: &mut StdRng, from: f64, to: f64) {
    let share = rng.gen_range(from..=to);
    tokio::time::sleep(order.ttl.mul_f64(share)).await;
}

/// How the simulator delivers the payment notification: normally, its first deliveries
/// lost, duplicated, delayed (so it can arrive after the active query, or after another
/// payment's), a mix, or — with `lost` — never at all.
fn notification_options(rng: &mut StdRng, lost: bool) -> Value {
    let kinds = if lost { 6 } else { 5 };
    match rng.gen_range(0..kinds) {
        0 => json!({}),
        1 => json!({"drop": rng.gen_range(1..=2)}),
        2 => json!({"duplicate": rng.gen_range(1..=2)}),
        3 => json!({"delay_ms": rng.gen_range(100..=3000)}),
        4 => json!({"drop": 1, "duplicate": 1, "delay_ms": rng.gen_range(100..=1000)}),
        _ => json!({"notify": false}),
    }
}
