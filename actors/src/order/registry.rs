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

use actix::prelude::*;
use entities::OrderId;

use super::messages::Shutdown;
use super::{OrderActor, OrderDeps};

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

    fn pick(&self, id: OrderId) -> Option<&Arbiter> {
        let count = u64::try_from(self.arbiters.len()).ok().filter(|n| *n > 0)?;
        let slot = usize::try_from(id.get().unsigned_abs() % count).ok()?;
        self.arbiters.get(slot)
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
