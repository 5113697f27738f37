//! The order registry: order id -> the address of its running actor.
//!
//! A plain map behind a std mutex (every critical section is one map operation, never across an
//! await). Actors are spread over a few dedicated arbiters (threads) by order id. Finding a
//! live order whose actor is not running (after a restart, or after it stopped) activates one
//! from the database: see `Engine::actor_for`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use entities::OrderId;

use crate::engine::EngineCore;
use crate::order::OrderActor;

pub struct OrderRegistry {
    actors: Mutex<HashMap<OrderId, Addr<OrderActor>>>,
    arbiters: Vec<ArbiterHandle>,
}

impl OrderRegistry {
    pub(crate) fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        Self {
            actors: Mutex::new(HashMap::new()),
            arbiters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Addr<OrderActor>>> {
        // Each critical section is a single map operation, so a poisoned map is still whole.
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: OrderId) -> Option<Addr<OrderActor>> {
        self.lock().get(&id).filter(|addr| addr.connected()).cloned()
    }

    /// The running actor of `id`, or a new one armed to fire at `fire_at_ms`.
    pub(crate) fn get_or_spawn(
        &self,
        core: &Arc<EngineCore>,
        id: OrderId,
        deadline_ms: i64,
        fire_at_ms: i64,
    ) -> Addr<OrderActor> {
        let mut actors = self.lock();
        if let Some(addr) = actors.get(&id).filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let core_for_actor = core.clone();
        let actor = move |_: &mut Context<OrderActor>| OrderActor::new(core_for_actor, id, deadline_ms, fire_at_ms);
        let addr = match self.pick(id) {
            Some(arbiter) => OrderActor::start_in_arbiter(arbiter, actor),
            None => OrderActor::create(actor),
        };
        actors.insert(id, addr.clone());
        core.metrics.live_actors.inc();
        addr
    }

    fn pick(&self, id: OrderId) -> Option<&ArbiterHandle> {
        let count = u64::try_from(self.arbiters.len()).ok().filter(|n| *n > 0)?;
        let slot = usize::try_from(id.0.unsigned_abs() % count).ok()?;
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
}
