//! The cluster loop of a node: leases, balance, takeover, the change bus, the sweep.
//!
//! Every `tick` the node writes its heartbeat and reads everyone's, reads every partition's
//! lease, renews its own, hands over the partitions that belong to another live node (stops
//! their actors after the pass in flight, then releases the lease), and takes the free ones
//! that belong to it, or that stayed free for a whole tick (their preferred node is not taking
//! them). Which node a partition belongs to is rendezvous hashing over the live nodes' names
//! ([`crate::cluster::preferred`]): each node gets about its share, a leaving node's
//! partitions spread over the others, and a returning node gets the same share back.
//!
//! Taking a partition: lease (`SET NX PX`), then the next fencing token from PostgreSQL (which
//! waits for the old owner's fenced transactions), then exactly that partition's live orders
//! are read from the database, its deadline set repaired, and its actors armed (overdue ones
//! spread at `expiry.overdue_per_second`).
//!
//! A watchdog stops acting on a partition as soon as its last confirmed renewal is older than
//! the TTL minus a safety margin, so a node that was paused or cut off from Redis has stopped
//! before another node can take the partition; anything it still writes is fenced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use entities::OrderStatus;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::Engine;
use crate::cluster::bus::{self, Change};
use crate::cluster::lease::{LeaseState, Leases, NodeEntry};
use crate::cluster::{preferred, ClusterSettings, Ownership};
use crate::deadline::live_deadlines_in;
use crate::order::messages::Shutdown;
use crate::provider::BudgetShare;
use crate::redis_conn::RedisConn;

/// How long a handed-over partition's actors get to finish their pass in flight.
const HANDOVER_GRACE: Duration = Duration::from_secs(5);
/// Lease renewals sent at once.
const RENEWALS_IN_FLIGHT: usize = 64;
/// Heartbeats older than this are removed from the nodes hash.
const FORGET_NODES_AFTER_MS: i64 = 60_000;

/// What the engine needs to run as a cluster node.
pub struct ClusterParts {
    pub ownership: Arc<Ownership>,
    pub settings: ClusterSettings,
    pub redis: RedisConn,
    /// A single server's URL (a seed node's, on a Redis Cluster) for the change subscription.
    pub subscribe_url: String,
    pub key_prefix: String,
}

/// The running cluster side of an engine.
pub(super) struct ClusterState {
    pub(super) ownership: Arc<Ownership>,
    settings: ClusterSettings,
    leases: Leases,
    redis: RedisConn,
    subscribe_url: String,
    channel: String,
    stop: watch::Sender<bool>,
}

impl ClusterState {
    pub(super) fn new(parts: ClusterParts) -> Self {
        Self {
            leases: Leases::new(parts.redis.clone(), &parts.key_prefix),
            channel: bus::channel(&parts.key_prefix),
            ownership: parts.ownership,
            settings: parts.settings,
            redis: parts.redis,
            subscribe_url: parts.subscribe_url,
            stop: watch::channel(false).0,
        }
    }
}

/// `GET /admin/cluster`.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    pub partitions: u32,
    pub lease_ttl_ms: u64,
    pub nodes: Vec<NodeView>,
    /// Partitions nobody holds right now (between a node's death and the takeover).
    pub unowned: Vec<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub alive: bool,
    /// Heartbeat validity, ms since the Unix epoch.
    pub alive_until_ms: i64,
    pub live_actors: u64,
    pub partitions_owned: usize,
    pub partitions: Vec<u32>,
    /// When the first of its leases lapses unless renewed (ms since the Unix epoch).
    pub lease_expires_at_ms: Option<i64>,
}

/// Where an order is run (`GET /admin/cluster/orders/{id}`), as the answering node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct OrderPlacement {
    pub partition: u32,
    pub owner: Option<String>,
    /// This node owns the partition now.
    pub owned_here: bool,
    /// This node runs an actor for the order now.
    pub armed_here: bool,
    pub node: String,
}

impl Engine {
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.cluster.as_ref().map(|state| &state.ownership)
    }

    /// Starts the cluster loops (leases, watchdog, sweep, change bus); the node takes its
    /// share within a tick or two. Needs a running Tokio runtime.
    ///
    /// # Errors
    /// The fence rows could not be created, Redis could not be reached, or the other nodes
    /// use another partition count.
    pub async fn start_cluster(&self) -> Result<(), ClusterStartError> {
        let Some(state) = self.cluster.clone() else {
            return Ok(());
        };
        let count = state.ownership.partitioner().count();
        let recorded = state.leases.recorded_partitions(count).await?;
        if recorded != count {
            return Err(ClusterStartError::Partitions {
                configured: count,
                recorded,
            });
        }
        crate::store::fence::ensure_rows(self.db(), count).await?;
        let node = state.ownership.node().incarnation.clone();
        let (publish, published) = mpsc::unbounded_channel();
        self.deps().feed.attach_remote(publish);
        bus::start_publisher(state.redis.clone(), state.channel.clone(), node.clone(), published);
        let engine = self.clone();
        bus::start_subscriber(
            state.subscribe_url.clone(),
            state.channel.clone(),
            node,
            move |change| engine.on_remote_change(&change),
        );
        tokio::spawn(self.clone().lease_loop(state.clone()));
        tokio::spawn(self.clone().watchdog(state.clone()));
        tokio::spawn(self.clone().sweep_loop(state));
        Ok(())
    }

    /// A change committed on another node: live status streams here hear of it; a new order
    /// of a partition this node owns gets its actor; an actor here whose order another node
    /// settled (a notification applied there) stops.
    fn on_remote_change(&self, change: &Change) {
        let Some(changed) = change.order_changed() else { return };
        self.deps().feed.broadcast_local(changed);
        let owns = self.ownership().is_some_and(|o| o.owns_order(changed.order_id));
        match (changed.status, change.deadline_ms) {
            (OrderStatus::Pending, Some(deadline_ms)) if owns => {
                self.registry.get_or_spawn(changed.order_id, deadline_ms, deadline_ms);
            }
            (status, _) if !status.is_live() => {
                if let Some(addr) = self.registry.get(changed.order_id) {
                    addr.do_send(Shutdown);
                }
            }
            _ => {}
        }
    }

    async fn lease_loop(self, state: Arc<ClusterState>) {
        let mut stop = state.stop.subscribe();
        let mut ticker = tokio::time::interval(state.settings.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Partitions seen free at the previous tick.
        let mut free_before: HashSet<u32> = HashSet::new();
        let mut membership = Membership::default();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if let Err(err) = self.tick(&state, &mut free_before, &mut membership).await {
                tracing::warn!(error.message = %err, "cluster tick failed; leases are renewed at the next one");
            }
        }
    }

    async fn tick(
        &self,
        state: &Arc<ClusterState>,
        free_before: &mut HashSet<u32>,
        membership: &mut Membership,
    ) -> Result<(), TickError> {
        let ownership = &state.ownership;
        let me = ownership.node().clone();
        let value = me.lease_value();
        let ttl = state.settings.lease_ttl;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let partitions = ownership.partitioner().count();

        // Leases first, then the heartbeat: the heartbeat says alive until this tick's
        // renewals were sent plus the TTL, so it never outlives a lease renewed in this tick,
        // and a node killed in the middle of its renewals counts as dead no later than its
        // first lease lapses (its partitions then go straight to the nodes they belong to).
        let sent = Instant::now();
        let sent_ms = Utc::now().timestamp_millis();
        // Each partition on its own: one that cannot be read or renewed (a Redis Cluster shard
        // failing over) is neither renewed nor given up; the watchdog drops it if that lasts.
        let table = state.leases.read_all(partitions).await;
        let valid_until = sent + ttl - state.settings.safety_margin();
        let held = ownership.held();
        let renewals = futures::stream::iter(held.iter().copied())
            .map(|partition| {
                // Unknown: the renewal script decides.
                let holds =
                    lease_at(&table, partition).is_none_or(|lease| lease.holder.as_deref() == Some(value.as_str()));
                let (leases, value) = (&state.leases, &value);
                async move {
                    let renewed = if holds {
                        leases.renew(partition, value, ttl).await
                    } else {
                        Ok(false)
                    };
                    (partition, renewed)
                }
            })
            .buffer_unordered(RENEWALS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        // Anything another node holds now (or that lapsed) is lost.
        let mut lost = Vec::new();
        for (partition, renewed) in renewals {
            match renewed {
                Ok(true) => ownership.renewed(partition, valid_until),
                Ok(false) => lost.push(partition),
                Err(err) => {
                    tracing::warn!(partition, error.message = %err, "could not renew a lease; trying at the next tick");
                }
            }
        }
        if !lost.is_empty() {
            self.lose(state, &lost, "the lease was taken or expired in Redis").await;
        }
        // Not taken again in the same tick: their actors are still stopping, and a new
        // actor is started only once the old one is gone.
        let lost: HashSet<u32> = lost.into_iter().collect();

        let now_ms = Utc::now().timestamp_millis();
        let entry = NodeEntry {
            identity: me.clone(),
            alive_until_ms: sent_ms.saturating_add(ttl_ms),
            live_actors: u64::try_from(self.registry.len()).unwrap_or(u64::MAX),
            partitions_owned: u64::try_from(ownership.owned().len()).unwrap_or(u64::MAX),
        };
        let (own_entry_was_missing, nodes) = state.leases.heartbeat(&entry).await?;
        if let Some(twin) = nodes.iter().find(|n| {
            n.identity.name == me.name && n.identity.incarnation != me.incarnation && n.alive_until_ms > now_ms
        }) {
            // Two live processes under one name would take each other's share for their own.
            tracing::error!(
                node = %me.name,
                other_address = %twin.identity.address,
                "another live node uses this node's cluster.node_name; give each node its own"
            );
        }
        let gone: Vec<String> = nodes
            .iter()
            .filter(|n| n.alive_until_ms < now_ms.saturating_sub(FORGET_NODES_AFTER_MS))
            .map(|n| n.identity.name.clone())
            .collect();
        state.leases.forget_nodes(&gone).await?;
        let mut seen: Vec<String> = nodes
            .iter()
            .filter(|n| n.alive_until_ms > now_ms)
            .map(|n| n.identity.name.clone())
            .collect();
        seen.push(me.name.clone());
        let view = membership.observe(Instant::now(), own_entry_was_missing, seen, ttl);
        if own_entry_was_missing && !view.settled {
            tracing::warn!(
                known = ?view.alive,
                "this node's heartbeat was gone from Redis (Redis lost its data?); taking only this node's share for a lease period"
            );
        }
        let alive: Vec<&str> = view.alive.iter().map(String::as_str).collect();
        if let Some(index) = alive.iter().position(|name| *name == me.name) {
            self.deps().providers.share_budget(BudgetShare {
                nodes: u32::try_from(alive.len()).unwrap_or(u32::MAX),
                index: u32::try_from(index).unwrap_or(0),
            });
        }

        // Hand over what belongs to another live node.
        let handover: Vec<u32> = ownership
            .owned()
            .into_iter()
            .filter(|p| preferred(&alive, *p) != Some(me.name.as_str()))
            .collect();
        if !handover.is_empty() {
            let handover: Vec<(u32, i64)> = handover
                .into_iter()
                .filter_map(|p| ownership.epoch_of(p).map(|epoch| (p, epoch)))
                .collect();
            for (partition, _) in &handover {
                ownership.drain(*partition);
            }
            tokio::spawn(self.clone().hand_over(state.clone(), handover));
        }

        // Take what is free and ours, or free for a whole tick.
        let free: HashSet<u32> = (0..partitions)
            .filter(|p| lease_at(&table, *p).is_some_and(|lease| lease.holder.is_none()))
            .collect();
        let wanted = partitions_to_take(&me.name, &alive, view.settled, &free, free_before, &lost);
        *free_before = free;
        let mut acquired = Vec::new();
        for partition in wanted {
            let sent = Instant::now();
            match state.leases.try_acquire(partition, &value, ttl).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    // What was taken so far is still armed below.
                    tracing::warn!(partition, error.message = %err, "could not take a lease; trying at the next tick");
                    break;
                }
            }
            match crate::store::fence::advance(self.db(), partition, &me.name).await {
                Ok((epoch, previous)) => {
                    ownership.acquired(partition, epoch, sent + ttl - state.settings.safety_margin());
                    acquired.push(partition);
                    if !previous.is_empty() && previous != me.name {
                        self.deps().metrics.takeovers.inc();
                    }
                }
                Err(err) => {
                    tracing::warn!(partition, error.message = %err, "could not take the fencing token; lease given back");
                    if let Err(err) = state.leases.release(partition, &value).await {
                        tracing::warn!(partition, error.message = %err, "could not release a lease; it lapses by itself");
                    }
                }
            }
        }
        if !acquired.is_empty() {
            // On its own task: a large partition takes a while to read and arm, and the next
            // tick must renew the leases on time meanwhile.
            let engine = self.clone();
            tokio::spawn(async move { engine.arm_partitions(&acquired).await });
        }

        // Who holds what, and where each node is, for forwarding.
        let owners = table
            .iter()
            .map(|lease| lease.as_ref().and_then(LeaseState::node).map(str::to_owned))
            .collect();
        ownership.set_owners(owners);
        ownership.set_addresses(
            nodes
                .iter()
                .map(|n| (n.identity.name.clone(), n.identity.address.clone()))
                .collect(),
        );
        self.deps()
            .metrics
            .partitions_owned
            .set(i64::try_from(ownership.owned().len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Reads exactly `partitions`' live orders, repairs their deadline sets, arms them.
    async fn arm_partitions(&self, partitions: &[u32]) {
        let Some(ownership) = self.ownership() else { return };
        let started = Instant::now();
        match self
            .deps()
            .index
            .reconcile_partitions(ownership.partitioner(), partitions)
            .await
        {
            Ok(reconciled) => {
                // Only what is still this node's (a partition may have moved on meanwhile).
                let live: Vec<_> = reconciled
                    .live
                    .into_iter()
                    .filter(|d| ownership.owns_order(d.order_id))
                    .collect();
                let (armed, overdue) = self.arm_all(&live);
                tracing::info!(
                    partitions = partitions.len(),
                    armed,
                    overdue,
                    index_added = reconciled.report.added,
                    index_removed = reconciled.report.removed,
                    took_ms = started.elapsed().as_millis(),
                    "partitions taken; their pending orders armed"
                );
            }
            Err(err) => {
                // The sweep arms whatever falls due; the next reconcile repairs the index.
                tracing::warn!(error.message = %err, "could not read the taken partitions' orders; the sweep arms them");
            }
        }
    }

    /// Stops acting on `partitions` at once (their actors stop after the pass in flight,
    /// whose writes are fenced).
    async fn lose(&self, state: &ClusterState, partitions: &[u32], why: &str) {
        let ownership = &state.ownership;
        let mut gone = HashSet::new();
        for partition in partitions {
            if ownership.forget(*partition) {
                gone.insert(*partition);
            }
        }
        if gone.is_empty() {
            return;
        }
        self.deps()
            .metrics
            .leases_lost
            .inc_by(u64::try_from(gone.len()).unwrap_or(0));
        let stopped = self
            .registry
            .stop_where(|id| gone.contains(&ownership.partition_of(id)), None)
            .await;
        tracing::warn!(partitions = ?gone, actors = stopped, reason = why, "partitions lost; their actors stop");
    }

    /// Gives `partitions` (already draining) to the node they belong to: their actors stop
    /// after the pass in flight, then the leases are released.
    async fn hand_over(self, state: Arc<ClusterState>, partitions: Vec<(u32, i64)>) {
        let ownership = &state.ownership;
        let set: HashSet<u32> = partitions.iter().map(|(p, _)| *p).collect();
        let stopped = self
            .registry
            .stop_where(|id| set.contains(&ownership.partition_of(id)), Some(HANDOVER_GRACE))
            .await;
        let value = ownership.node().lease_value();
        for (partition, epoch) in &partitions {
            // Lost and taken again meanwhile: that is a new holding, not this handover's.
            if !ownership.forget_if(*partition, *epoch) {
                continue;
            }
            if let Err(err) = state.leases.release(*partition, &value).await {
                tracing::warn!(partition, error.message = %err, "could not release a lease; it lapses by itself");
            }
        }
        tracing::info!(
            partitions = partitions.len(),
            actors = stopped,
            "partitions handed over"
        );
    }

    async fn watchdog(self, state: Arc<ClusterState>) {
        let mut stop = state.stop.subscribe();
        let period = (state.settings.tick / 4).max(Duration::from_millis(25));
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let expired = state.ownership.expired(Instant::now());
            if !expired.is_empty() {
                self.lose(&state, &expired, "no renewal confirmed in time").await;
            }
        }
    }

    /// Arms the orders of owned partitions due soon that have no actor here (an order created
    /// on another node whose change message was lost, say).
    async fn sweep_loop(self, state: Arc<ClusterState>) {
        let mut stop = state.stop.subscribe();
        let mut ticker = tokio::time::interval(state.settings.sweep);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let owned = state.ownership.owned();
            let horizon = Utc::now() + state.settings.sweep * 2;
            // Pending only: a stuck order is parked for an operator; its actor is not meant to
            // run until someone asks.
            let pending = [OrderStatus::Pending];
            match live_deadlines_in(
                self.db(),
                state.ownership.partitioner(),
                &owned,
                Some(horizon),
                &pending,
            )
            .await
            {
                Ok(due) => {
                    let missing: Vec<_> = due
                        .into_iter()
                        .filter(|d| self.registry.get(d.order_id).is_none() && state.ownership.owns_order(d.order_id))
                        .collect();
                    if !missing.is_empty() {
                        tracing::info!(orders = missing.len(), "sweep armed orders that had no actor");
                        self.arm_all(&missing);
                    }
                }
                Err(err) => tracing::warn!(error.message = %err, "cluster sweep failed"),
            }
        }
    }

    /// Stops the loops and gives every lease back (after the actors stopped), so the other
    /// nodes take over at their next tick instead of after the TTL.
    pub(super) async fn leave_cluster(&self) {
        let Some(state) = &self.cluster else { return };
        let _ = state.stop.send(true);
        let value = state.ownership.node().lease_value();
        let held = state.ownership.held();
        for partition in &held {
            state.ownership.forget(*partition);
            if let Err(err) = state.leases.release(*partition, &value).await {
                tracing::warn!(partition, error.message = %err, "could not release a lease; it lapses by itself");
            }
        }
        let _ = state.leases.forget_nodes(&[state.ownership.node().name.clone()]).await;
        tracing::info!(partitions = held.len(), "left the cluster; leases released");
    }

    /// The cluster as Redis holds it now.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn cluster_view(&self) -> Result<Option<ClusterView>, redis::RedisError> {
        let Some(state) = &self.cluster else { return Ok(None) };
        let partitions = state.ownership.partitioner().count();
        let nodes = state.leases.nodes().await?;
        let table = state.leases.read_all(partitions).await;
        let now_ms = Utc::now().timestamp_millis();
        let mut by_node: HashMap<&str, (Vec<u32>, Option<i64>)> = HashMap::new();
        let mut unowned = Vec::new();
        for (partition, lease) in (0..partitions).zip(&table) {
            // A lease that could not be read is left out of both.
            let Some(lease) = lease else { continue };
            match lease.node() {
                Some(node) => {
                    let entry = by_node.entry(node).or_default();
                    entry.0.push(partition);
                    if let Some(ttl) = lease.ttl_ms {
                        let at = now_ms.saturating_add(ttl);
                        entry.1 = Some(entry.1.map_or(at, |first: i64| first.min(at)));
                    }
                }
                None => unowned.push(partition),
            }
        }
        let mut views: Vec<NodeView> = nodes
            .iter()
            .map(|n| {
                let (owned, expires) = by_node.remove(n.identity.name.as_str()).unwrap_or_default();
                NodeView {
                    name: n.identity.name.clone(),
                    address: n.identity.address.clone(),
                    alive: n.alive_until_ms > now_ms,
                    alive_until_ms: n.alive_until_ms,
                    live_actors: n.live_actors,
                    partitions_owned: owned.len(),
                    partitions: owned,
                    lease_expires_at_ms: expires,
                }
            })
            .collect();
        // Leases of a node whose heartbeat is already gone.
        for (name, (owned, expires)) in by_node {
            views.push(NodeView {
                name: name.to_owned(),
                address: String::new(),
                alive: false,
                alive_until_ms: 0,
                live_actors: 0,
                partitions_owned: owned.len(),
                partitions: owned,
                lease_expires_at_ms: expires,
            });
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(ClusterView {
            node: state.ownership.node().name.clone(),
            partitions,
            lease_ttl_ms: u64::try_from(state.settings.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            nodes: views,
            unowned,
        }))
    }

    /// Where requests for `partition` go now: the lease's holder read from Redis (the view of
    /// the last tick may be a tick old right after partitions moved), its address from the
    /// heartbeats. `None`: nobody else holds it (a takeover under way, or this node is
    /// handing it over).
    pub(super) async fn owner_now(&self, partition: u32) -> Option<String> {
        let state = self.cluster.as_ref()?;
        let ownership = &state.ownership;
        match state.leases.read_one(partition).await {
            Ok(lease) => {
                let node = lease.node()?;
                if node == ownership.node().name {
                    return None;
                }
                ownership.address_of(node)
            }
            Err(err) => {
                tracing::warn!(partition, error.message = %err, "could not read a lease; forwarding by the last tick's view");
                ownership.owner_address(partition)
            }
        }
    }

    /// Where `order_id` is run, as this node sees it.
    pub fn placement(&self, order_id: entities::OrderId) -> Option<OrderPlacement> {
        let ownership = self.ownership()?;
        let partition = ownership.partition_of(order_id);
        let owned_here = ownership.owns(partition);
        Some(OrderPlacement {
            partition,
            owner: if owned_here {
                Some(ownership.node().name.clone())
            } else {
                ownership.owner_node(partition)
            },
            owned_here,
            armed_here: self.registry.get(order_id).is_some(),
            node: ownership.node().name.clone(),
        })
    }
}

/// The nodes a tick shares the partitions among, as [`Membership::observe`] decides.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MembershipView {
    /// Sorted, this node included.
    alive: Vec<String>,
    /// False while the node waits out a lease period after Redis lost the heartbeats: it
    /// takes its own share only, not partitions that merely look abandoned.
    settled: bool,
}

/// What a node remembers of the membership between ticks, to notice Redis losing it.
///
/// After Redis restarts without its data every lease is free and the heartbeats are gone: the
/// first node to tick would see itself alone and take every partition while the others still
/// act on theirs (each until its next renewal fails), so two nodes could call the provider for
/// the same orders. A node whose own heartbeat is missing (it had written one before) counts
/// the nodes alive at its previous tick as alive for one lease TTL, by which time every live
/// node has ticked and written its heartbeat again; only then does it go back to taking
/// partitions left free.
#[derive(Debug, Default)]
struct Membership {
    /// The nodes the previous tick shared partitions among.
    last: Vec<String>,
    /// Until when, and the nodes counted alive meanwhile.
    settling: Option<(Instant, Vec<String>)>,
    ticked: bool,
}

impl Membership {
    /// `seen`: the nodes whose heartbeats are live now (this node included);
    /// `own_entry_was_missing`: this node's heartbeat was not in Redis before this tick wrote it.
    fn observe(
        &mut self,
        now: Instant,
        own_entry_was_missing: bool,
        seen: Vec<String>,
        lease_ttl: Duration,
    ) -> MembershipView {
        if own_entry_was_missing && self.ticked {
            let mut known = self.last.clone();
            if let Some((_, before)) = self.settling.take() {
                known.extend(before);
            }
            self.settling = Some((now + lease_ttl, known));
        }
        self.ticked = true;
        let mut alive = seen;
        let settled = match &self.settling {
            Some((until, known)) if now < *until => {
                alive.extend(known.iter().cloned());
                false
            }
            _ => {
                self.settling = None;
                true
            }
        };
        alive.sort_unstable();
        alive.dedup();
        self.last.clone_from(&alive);
        MembershipView { alive, settled }
    }
}

/// The free partitions a node takes at a tick, in order: those that belong to it among `alive`,
/// and, once the membership is `settled`, those free since the previous tick too (the node
/// they belong to is not taking them). Never one it lost at this tick (its actors are still
/// stopping).
fn partitions_to_take(
    me: &str,
    alive: &[&str],
    settled: bool,
    free: &HashSet<u32>,
    free_before: &HashSet<u32>,
    lost: &HashSet<u32>,
) -> Vec<u32> {
    let mut wanted: Vec<u32> = free
        .iter()
        .copied()
        .filter(|p| !lost.contains(p))
        .filter(|p| preferred(alive, *p) == Some(me) || (settled && free_before.contains(p)))
        .collect();
    wanted.sort_unstable();
    wanted
}

/// A partition's lease as read at this tick; `None`: it could not be read.
fn lease_at(table: &[Option<LeaseState>], partition: u32) -> Option<&LeaseState> {
    usize::try_from(partition)
        .ok()
        .and_then(|p| table.get(p))
        .and_then(Option::as_ref)
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error(
        "cluster.partitions is {configured} here but {recorded} for the running cluster: every node must use the same count"
    )]
    Partitions { configured: u32, recorded: u32 },
}

#[derive(Debug, thiserror::Error)]
enum TickError {
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(600);

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_node_whose_heartbeat_vanished_keeps_counting_the_nodes_it_knew_for_a_lease_period() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut membership = Membership::default();
        // (at, own entry was missing, heartbeats seen, expected alive, expected settled)
        let ticks = [
            (0, true, vec!["a"], vec!["a"], true),
            (100, false, vec!["a", "b"], vec!["a", "b"], true),
            (200, false, vec!["a", "b"], vec!["a", "b"], true),
            // Redis lost everything: a sees only itself.
            (300, true, vec!["a"], vec!["a", "b"], false),
            (400, false, vec!["a"], vec!["a", "b"], false),
            (500, false, vec!["a", "b"], vec!["a", "b"], false),
            // A lease period later, what Redis shows again.
            (900, false, vec!["a", "b"], vec!["a", "b"], true),
        ];
        for (at, missing, seen, alive, settled) in ticks {
            let view = membership.observe(ms(at), missing, names(&seen), TTL);
            assert_eq!(
                view,
                MembershipView {
                    alive: names(&alive),
                    settled
                },
                "tick at {at} ms"
            );
        }
    }

    #[test]
    fn a_node_that_really_died_meanwhile_is_dropped_after_the_lease_period() {
        let start = Instant::now();
        let mut membership = Membership::default();
        membership.observe(start, true, names(&["a"]), TTL);
        membership.observe(start + Duration::from_millis(100), false, names(&["a", "b", "c"]), TTL);
        let lost = membership.observe(start + Duration::from_millis(200), true, names(&["a"]), TTL);
        assert_eq!(lost.alive, names(&["a", "b", "c"]));
        let later = membership.observe(start + Duration::from_millis(900), false, names(&["a", "b"]), TTL);
        assert_eq!(
            later,
            MembershipView {
                alive: names(&["a", "b"]),
                settled: true
            }
        );
    }

    #[test]
    fn while_settling_a_node_takes_only_its_own_share_of_the_free_partitions() {
        let alive = ["a", "b"];
        let all: HashSet<u32> = (0..16).collect();
        let none = HashSet::new();
        let own: Vec<u32> = (0..16).filter(|p| preferred(&alive, *p) == Some("a")).collect();
        assert!(!own.is_empty() && own.len() < 16, "{own:?}");

        let settling = partitions_to_take("a", &alive, false, &all, &all, &none);
        let settled = partitions_to_take("a", &alive, true, &all, &all, &none);

        assert_eq!(settling, own, "only its own share while settling");
        assert_eq!(
            settled,
            (0..16).collect::<Vec<_>>(),
            "partitions free for a tick, once settled"
        );
        let lost: HashSet<u32> = own.iter().copied().take(1).collect();
        let without_lost = partitions_to_take("a", &alive, false, &all, &none, &lost);
        assert_eq!(without_lost, own[1..].to_vec(), "never one lost at this tick");
    }
}
