//! The order registry: order id -> the address of its running actor.
//!
//! A plain map behind a std mutex (every critical section is one map operation, never across an
//! await). Actors are spread over a few dedicated arbiters (threads) by order id. The engine
//! asks [`OrderRegistry::get_or_spawn`] for a live order's actor; one that is not running (after
//! a restart, or after it stopped) is activated then.
//!
//! The registry owns the arbiters and the shared [`OrderDeps`]; an actor holds the deps and
//! only a weak reference back here (to unregister when it stops), so nothing forms a cycle and
//! [`OrderRegistry::shutdown`] can end everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::dev::channel::{self, AddressReceiver};
use actix::prelude::*;
use entities::OrderId;

use super::messages::Shutdown;
use super::{OrderActor, OrderDeps};

/// Messages an order actor's mailbox holds before senders wait (actix's default).
const MAILBOX_CAPACITY: usize = 16;

/// Owned by the engine; the only place order actors are started and stopped.
pub struct OrderRegistry {
    actors: Mutex<HashMap<OrderId, Addr<OrderActor>>>,
    arbiters: Vec<Arbiter>,
    deps: Arc<OrderDeps>,
    /// Set at shutdown: no actor is started any more.
    closed: AtomicBool,
}

impl OrderRegistry {
    /// A registry whose actors run on `arbiters` new threads (at least one).
    pub fn new(deps: Arc<OrderDeps>, arbiters: usize) -> Arc<Self> {
        Arc::new(Self {
            actors: Mutex::new(HashMap::new()),
            arbiters: (0..arbiters.max(1)).map(|_| Arbiter::new()).collect(),
            deps,
            closed: AtomicBool::new(false),
        })
    }

    pub fn deps(&self) -> &Arc<OrderDeps> {
        &self.deps
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Addr<OrderActor>>> {
        // Each critical section is a single map operation, so a poisoned map is still whole.
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: OrderId) -> Option<Addr<OrderActor>> {
        self.lock().get(&id).filter(|addr| addr.connected()).cloned()
    }

    /// The running actor of `id`, or a new one armed to fire at `fire_at_ms`; `None` once the
    /// registry is shut down.
    pub fn get_or_spawn(self: &Arc<Self>, id: OrderId, deadline_ms: i64, fire_at_ms: i64) -> Option<Addr<OrderActor>> {
        let mut actors = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if let Some(addr) = actors.get(&id).filter(|addr| addr.connected()) {
            return Some(addr.clone());
        }
        let deps = self.deps.clone();
        let registry = Arc::downgrade(self);
        let actor = move |_: &mut Context<OrderActor>| OrderActor::new(deps, registry, id, deadline_ms, fire_at_ms);
        let addr = match self.pick(id) {
            Some(arbiter) => OrderActor::start_in_arbiter(&arbiter.handle(), actor),
            None => OrderActor::create(actor),
        };
        actors.insert(id, addr.clone());
        self.deps.metrics.live_actors.inc();
        Some(addr)
    }

    /// Starts an actor for each order of `batch` (id, deadline, fire at) that has none, as
    /// [`OrderRegistry::get_or_spawn`] would, but cheaply enough for a restart that re-arms a
    /// million: every address is registered under one lock, and each arbiter receives its
    /// share as one task that starts them all, instead of one cross-thread wake-up per actor.
    /// Returns how many were started; `None` once the registry is shut down.
    pub fn arm_batch(self: &Arc<Self>, batch: &[(OrderId, i64, i64)]) -> Option<usize> {
        type Start = (AddressReceiver<OrderActor>, OrderId, i64, i64);
        let mut shares: Vec<Vec<Start>> = (0..self.arbiters.len().max(1)).map(|_| Vec::new()).collect();
        {
            let mut actors = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            for &(id, deadline_ms, fire_at_ms) in batch {
                if actors.get(&id).is_some_and(Addr::connected) {
                    continue;
                }
                let (sender, receiver) = channel::channel(MAILBOX_CAPACITY);
                actors.insert(id, Addr::new(sender));
                let slot = self.slot(id);
                if let Some(share) = shares.get_mut(slot) {
                    share.push((receiver, id, deadline_ms, fire_at_ms));
                }
            }
        }
        let mut started = 0;
        for (slot, share) in shares.into_iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            started += share.len();
            let deps = self.deps.clone();
            let registry = Arc::downgrade(self);
            let start_all = move || {
                for (receiver, id, deadline_ms, fire_at_ms) in share {
                    let actor = OrderActor::new(deps.clone(), registry.clone(), id, deadline_ms, fire_at_ms);
                    Context::with_receiver(receiver).run(actor);
                }
            };
            match self.arbiters.get(slot) {
                Some(arbiter) => {
                    arbiter.spawn_fn(start_all);
                }
                None => start_all(),
            }
        }
        self.deps
            .metrics
            .live_actors
            .add(i64::try_from(started).unwrap_or(i64::MAX));
        Some(started)
    }

    /// The arbiter an order's actor runs on (by id).
    fn slot(&self, id: OrderId) -> usize {
        let count = u64::try_from(self.arbiters.len().max(1)).unwrap_or(1);
        usize::try_from(id.get().unsigned_abs() % count).unwrap_or(0)
    }

    fn pick(&self, id: OrderId) -> Option<&Arbiter> {
        self.arbiters.get(self.slot(id))
    }

    /// Stops the actors of the orders `in_partition` says yes to (a partition handed over or
    /// lost), each after its pass in flight. With a `grace`, waits for them (at most that
    /// long); returns how many were asked to stop.
    pub async fn stop_where(&self, in_partition: impl Fn(OrderId) -> bool, grace: Option<Duration>) -> usize {
        let stopping: Vec<Addr<OrderActor>> = self
            .lock()
            .iter()
            .filter(|(id, _)| in_partition(**id))
            .map(|(_, addr)| addr.clone())
            .collect();
        match grace {
            Some(grace) => {
                let stops = stopping.iter().map(|addr| addr.send(Shutdown).timeout(grace));
                futures::future::join_all(stops).await;
            }
            None => {
                for addr in &stopping {
                    addr.do_send(Shutdown);
                }
            }
        }
        stopping.len()
    }

    /// Called by a stopped actor. No successor can be registered yet: `get_or_spawn` replaces
    /// an entry only once its actor is gone, which is after this ran.
    pub(crate) fn remove(&self, id: OrderId) {
        self.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every order actor, letting a pass in flight finish first (a pass is atomic in its
    /// actor, so [`Shutdown`] is handled only after it), for at most `grace`; then stops the
    /// arbiters. Deadlines stay indexed: the next start re-arms every pending order.
    ///
    /// Returns the actors that had not stopped within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::Release);
        // Waiting passes give up their turn: they run again after the restart.
        self.deps.passes.close();
        let running: Vec<Addr<OrderActor>> = self.lock().values().cloned().collect();
        let stops = running.iter().map(|addr| addr.send(Shutdown).timeout(grace));
        let results = futures::future::join_all(stops).await;
        let late = results
            .iter()
            .filter(|result| matches!(result, Err(MailboxError::Timeout)))
            .count();
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        late
    }
}
