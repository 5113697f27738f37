//! The change feed: what happens after a commit that changed an order.
//!
//! Four listeners care: the refund worker (woken when a refund was committed), the outbox
//! relay (woken so a new event is delivered at once rather than at its next sweep), live status
//! streams (a broadcast of `(order, status)`), and in a cluster the publisher that tells the
//! other nodes ([`crate::cluster::bus`]). The feed is
//! handed to whatever commits changes; nothing here reads the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use actix::Recipient;
use entities::{OrderId, OrderStatus};
use tokio::sync::{broadcast, mpsc};

use crate::outbox::Wake;

/// Status changes kept for a slow live-status reader before it starts missing some (it then
/// re-reads the order; nothing is lost but the immediacy).
const CHANGES_BUFFERED: usize = 1024;

/// An order's status changed (sent after the commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderChanged {
    pub order_id: OrderId,
    pub status: OrderStatus,
}

/// Cheap to clone: every clone feeds the same listeners.
#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set once, after the relay starts (it is started after the engine it listens to), with
    /// the relay's "a wake-up is on its way" flag: while it is set, commits send nothing, so a
    /// busy relay is woken once per cycle rather than once per commit.
    relay: OnceLock<(Recipient<Wake>, Arc<AtomicBool>)>,
    /// Set once, when the refund worker starts.
    refunds: OnceLock<Recipient<Wake>>,
    changes: broadcast::Sender<OrderChanged>,
    /// Set once in a cluster: changes committed here, to be published to the other nodes
    /// (with a new order's deadline).
    remote: OnceLock<mpsc::UnboundedSender<(OrderChanged, Option<i64>)>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                relay: OnceLock::new(),
                refunds: OnceLock::new(),
                changes: broadcast::channel(CHANGES_BUFFERED).0,
                remote: OnceLock::new(),
            }),
        }
    }
}

impl ChangeFeed {
    /// Connects the outbox relay. Only the first call counts.
    /// `pending` is the relay's own flag ([`crate::outbox::OutboxRelay::wake_pending`]).
    pub fn attach_relay(&self, relay: Recipient<Wake>, pending: Arc<AtomicBool>) {
        // A second relay is a wiring mistake, but a harmless one: the first keeps its wake-ups.
        let _ = self.inner.relay.set((relay, pending));
    }

    /// Wakes the outbox relay, unless a wake-up is already on its way (the relay clears the
    /// flag when it takes one, before it reads the outbox, so this commit is seen either way).
    /// A lost wake-up is harmless: the relay also sweeps.
    pub fn wake_relay(&self) {
        if let Some((relay, pending)) = self.inner.relay.get() {
            if !pending.swap(true, Ordering::AcqRel) {
                relay.do_send(Wake);
            }
        }
    }

    /// Connects the refund worker. Only the first call counts.
    pub fn attach_refunds(&self, worker: Recipient<Wake>) {
        let _ = self.inner.refunds.set(worker);
    }

    /// Wakes the refund worker after a refund was committed. A lost wake-up only delays it
    /// to the worker's next poll.
    pub fn wake_refunds(&self) {
        self.wake_relay();
        if let Some(worker) = self.inner.refunds.get() {
            worker.do_send(Wake);
        }
    }

    /// After a commit that changed `order_id` to `status` and wrote an event.
    pub fn changed(&self, order_id: OrderId, status: OrderStatus) {
        self.announce(OrderChanged { order_id, status }, None);
    }

    /// After the commit that created `order_id`, due at `deadline_ms`.
    pub fn created(&self, order_id: OrderId, status: OrderStatus, deadline_ms: i64) {
        self.announce(OrderChanged { order_id, status }, Some(deadline_ms));
    }

    fn announce(&self, change: OrderChanged, deadline_ms: Option<i64>) {
        self.wake_relay();
        self.broadcast_local(change);
        if let Some(remote) = self.inner.remote.get() {
            // Closed only when the publisher stopped (shutdown): nothing left to tell.
            let _ = remote.send((change, deadline_ms));
        }
    }

    /// Tells this node's live status streams only (a change another node committed).
    pub fn broadcast_local(&self, change: OrderChanged) {
        // No receiver is fine: nobody is watching this order.
        let _ = self.inner.changes.send(change);
    }

    /// Connects the cluster's change publisher. Only the first call counts.
    pub fn attach_remote(&self, remote: mpsc::UnboundedSender<(OrderChanged, Option<i64>)>) {
        let _ = self.inner.remote.set(remote);
    }

    /// Every status change from now on (on this node).
    pub fn subscribe(&self) -> broadcast::Receiver<OrderChanged> {
        self.inner.changes.subscribe()
    }
}
