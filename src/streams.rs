//! Live status streams: one change-feed subscription per node, fanned out to every open stream.
//!
//! A stream (`/v1/orders/{no}/events`, `/checkout/{no}/events`) costs nothing while its order
//! does not change: it waits on its order's [`watch`] channel and on the node's keep-alive
//! tick, with no timer and no database read of its own. The [`StreamHub`]'s one task listens
//! to the change feed; when a watched order changes it reads that order once (whatever the
//! number of streams on it) and publishes it to them. It also re-reads every watched order in
//! one query now and then, for a change this node was not told of (a cluster message lost, a
//! broadcast it fell behind on).
//!
//! Streams are bounded: per checkout link, per merchant and per node (`429` + `Retry-After`
//! beyond), and in time — a stream ends after `streams.max_lifetime_seconds` (the client
//! reconnects, as Server-Sent Events clients do by themselves), and a checkout stream when its
//! link expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use actors::changes::OrderChanged;
use actors::domain::MerchantId;
use entities::{orders, OrderId, OrderStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use crate::routes::dto::StatusResponse;

/// `[streams]`: the limits of live status streams.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Open streams one checkout link may hold.
    pub per_checkout_link: usize,
    /// Open streams one merchant (its API key) may hold.
    pub per_merchant: usize,
    /// Open streams on this node, all callers together.
    pub per_node: usize,
    /// A stream ends after this long; the client reconnects.
    #[serde(rename = "max_lifetime_seconds", with = "actors::settings::seconds")]
    pub max_lifetime: Duration,
    /// A comment line this often keeps proxies from closing an idle stream; a stream past its
    /// end is closed at the next one.
    #[serde(rename = "keepalive_milliseconds", with = "actors::settings::millis")]
    pub keepalive: Duration,
    /// Every watched order is re-read (in one query) this often, for a change this node was
    /// not told of.
    #[serde(rename = "recheck_milliseconds", with = "actors::settings::millis")]
    pub recheck: Duration,
    /// The `retry:` a client waits before reconnecting.
    pub reconnect_milliseconds: u64,
}

/// Who holds a stream, for the caps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The holder of an order's checkout link (one link per order).
    CheckoutLink(OrderId),
    /// A merchant, through its API key.
    Merchant(MerchantId),
}

/// A stream was refused: a cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Holder,
    Node,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Holder => {
                "too many open status streams for this caller; close one or retry after Retry-After seconds"
            }
            Refused::Node => "this node holds as many status streams as it may; retry after Retry-After seconds",
        }
    }
}

/// Cheap to clone: every clone is the same hub.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    settings: StreamSettings,
    state: Mutex<HubState>,
    /// The keep-alive tick every stream waits on: the time of the tick.
    tick: watch::Receiver<Instant>,
}

#[derive(Default)]
struct HubState {
    orders: HashMap<OrderId, Watched>,
    holders: HashMap<Holder, usize>,
    open: usize,
}

struct Watched {
    latest: watch::Sender<Option<Arc<orders::Model>>>,
    streams: usize,
}

impl StreamHub {
    /// Starts the hub's task, fed by `changes` (the node's change feed).
    pub fn start(db: DatabaseConnection, settings: StreamSettings, changes: broadcast::Receiver<OrderChanged>) -> Self {
        let (tick_tx, tick) = watch::channel(Instant::now());
        let hub = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                state: Mutex::new(HubState::default()),
                tick,
            }),
        };
        let weak = Arc::downgrade(&hub.inner);
        tokio::spawn(run(weak, changes, tick_tx));
        hub
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves counts that are still consistent enough to use.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open streams on this node.
    pub fn open_streams(&self) -> usize {
        self.state().open
    }

    /// When a refused caller may try again.
    pub fn retry_after(&self) -> Duration {
        self.inner.settings.keepalive.max(Duration::from_secs(1))
    }

    /// Opens a stream of `order_id` for `holder`, ending at `ends_at` at the latest (besides
    /// the configured lifetime). `seen_version` is the `Last-Event-ID` of a reconnecting
    /// client: the status it already has is not sent again.
    ///
    /// # Errors
    /// A cap is reached ([`Refused`]), or the order could not be read (it is then `Ok(None)`
    /// when it does not exist).
    pub async fn open(
        &self,
        holder: Holder,
        order_id: OrderId,
        ends_at: Option<Instant>,
        seen_version: Option<i32>,
    ) -> Result<Result<HttpResponse, Refused>, sea_orm::DbErr> {
        let settings = &self.inner.settings;
        // Registered before the order is read, so a change committed in between is seen by the
        // hub (which then reads the order after that commit).
        let (ticket, latest) = {
            let mut state = self.state();
            let cap = match holder {
                Holder::CheckoutLink(_) => settings.per_checkout_link,
                Holder::Merchant(_) => settings.per_merchant,
            };
            if state.open >= settings.per_node {
                return Ok(Err(Refused::Node));
            }
            if state.holders.get(&holder).copied().unwrap_or(0) >= cap {
                return Ok(Err(Refused::Holder));
            }
            state.open += 1;
            *state.holders.entry(holder.clone()).or_default() += 1;
            let watched = state.orders.entry(order_id).or_insert_with(|| Watched {
                latest: watch::channel(None).0,
                streams: 0,
            });
            watched.streams += 1;
            let latest = watched.latest.subscribe();
            (
                Ticket {
                    hub: self.clone(),
                    holder,
                    order_id,
                },
                latest,
            )
        };
        let Some(order) = orders::Entity::find_by_id(order_id).one(&self.inner.db).await? else {
            return Err(sea_orm::DbErr::RecordNotFound(format!("order {order_id}")));
        };
        let order = Arc::new(order);
        // The hub may have published a newer version meanwhile: the stream then sees it as a
        // change (versions at or below the one sent first are skipped).
        self.publish(&order);

        let lifetime_end = Instant::now() + settings.max_lifetime;
        let ends_at = ends_at.map_or(lifetime_end, |end| end.min(lifetime_end));
        let first = if seen_version == Some(order.version) {
            // The client has this status already: only the reconnection delay.
            Bytes::from(format!("retry: {}\n\n", settings.reconnect_milliseconds))
        } else {
            let mut first = format!("retry: {}\n", settings.reconnect_milliseconds).into_bytes();
            first.extend_from_slice(&frame(&order));
            Bytes::from(first)
        };
        let stream = Stream {
            latest,
            tick: self.inner.tick.clone(),
            last_version: order.version,
            last_status: order.status,
            done: !order.status.is_live(),
            ends_at,
            _ticket: ticket,
        };
        let rest = futures::stream::unfold(stream, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok::<Bytes, actix_web::Error>(chunk), stream))
        });
        let body = futures::StreamExt::chain(
            futures::stream::once(async move { Ok::<Bytes, actix_web::Error>(first) }),
            rest,
        );
        Ok(Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("Cache-Control", "no-cache"))
            .insert_header(("X-Accel-Buffering", "no"))
            .streaming(body)))
    }

    /// Hands `order` to its streams, unless they have a newer version.
    fn publish(&self, order: &Arc<orders::Model>) {
        let state = self.state();
        if let Some(watched) = state.orders.get(&order.id) {
            watched.latest.send_if_modified(|latest| match latest {
                Some(current) if current.version >= order.version => false,
                _ => {
                    *latest = Some(order.clone());
                    true
                }
            });
        }
    }

    fn watched(&self) -> Vec<OrderId> {
        self.state().orders.keys().copied().collect()
    }

    fn is_watched(&self, order_id: OrderId) -> bool {
        self.state().orders.contains_key(&order_id)
    }

    /// Reads `ids` (in chunks) and publishes each to its streams.
    async fn refresh(&self, ids: Vec<OrderId>) {
        for chunk in ids.chunks(500) {
            match orders::Entity::find()
                .filter(orders::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.inner.db)
                .await
            {
                Ok(found) => {
                    for order in found {
                        self.publish(&Arc::new(order));
                    }
                }
                Err(err) => {
                    tracing::warn!(error.message = %err, "failed to re-read watched orders for status streams");
                }
            }
        }
    }
}

/// One stream's place in the counts, given back when the stream is dropped (the client went
/// away, the order became final, or the stream reached its end).
struct Ticket {
    hub: StreamHub,
    holder: Holder,
    order_id: OrderId,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        state.open = state.open.saturating_sub(1);
        if let Some(count) = state.holders.get_mut(&self.holder) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.holders.remove(&self.holder);
            }
        }
        if let Some(watched) = state.orders.get_mut(&self.order_id) {
            watched.streams = watched.streams.saturating_sub(1);
            if watched.streams == 0 {
                state.orders.remove(&self.order_id);
            }
        }
    }
}

struct Stream {
    latest: watch::Receiver<Option<Arc<orders::Model>>>,
    tick: watch::Receiver<Instant>,
    last_version: i32,
    last_status: OrderStatus,
    done: bool,
    ends_at: Instant,
    _ticket: Ticket,
}

impl Stream {
    /// The next chunk to send, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            tokio::select! {
                changed = self.latest.changed() => {
                    changed.ok()?;
                    let Some(order) = self.latest.borrow_and_update().clone() else { continue };
                    if order.version <= self.last_version {
                        continue;
                    }
                    self.last_version = order.version;
                    self.done = !order.status.is_live();
                    if order.status != self.last_status {
                        self.last_status = order.status;
                        return Some(frame(&order));
                    }
                }
                ticked = self.tick.changed() => {
                    ticked.ok()?;
                    let now = *self.tick.borrow_and_update();
                    if now >= self.ends_at {
                        return None;
                    }
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    }
}

/// `id:` (the order's version, for `Last-Event-ID`) and `data:` frame of the order's status.
fn frame(order: &orders::Model) -> Bytes {
    let json = serde_json::to_string(&StatusResponse::from(order)).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("id: {}\nevent: status\ndata: {json}\n\n", order.version))
}

/// The hub's task: follows the change feed, ticks, re-reads; ends with the hub.
async fn run(
    hub: std::sync::Weak<Inner>,
    mut changes: broadcast::Receiver<OrderChanged>,
    tick: watch::Sender<Instant>,
) {
    let Some(settings) = hub.upgrade().map(|inner| inner.settings.clone()) else {
        return;
    };
    let mut keepalive = tokio::time::interval(settings.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = tokio::time::interval(settings.recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => {
                    // Take every change already queued, so a burst costs one query.
                    let mut ids = vec![change.order_id];
                    let mut lagged = false;
                    loop {
                        match changes.try_recv() {
                            Ok(change) => ids.push(change.order_id),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                            Err(_) => break,
                        }
                    }
                    Some((ids, lagged))
                }
                Err(RecvError::Lagged(_)) => Some((Vec::new(), true)),
                Err(RecvError::Closed) => return,
            },
            _ = recheck.tick() => Some((Vec::new(), true)),
            _ = keepalive.tick() => {
                tick.send_replace(Instant::now());
                None
            }
        };
        let Some(inner) = hub.upgrade() else { return };
        let hub = StreamHub { inner };
        if let Some((mut ids, all)) = due {
            if all {
                ids = hub.watched();
            } else {
                ids.retain(|id| hub.is_watched(*id));
                ids.sort_unstable();
                ids.dedup();
            }
            if !ids.is_empty() {
                hub.refresh(ids).await;
            }
        }
    }
}
