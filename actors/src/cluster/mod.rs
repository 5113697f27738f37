//! Running several nodes on one PostgreSQL and one Redis: which node owns which order.
//!
//! Orders map to a fixed number of partitions ([`Partitioner`], from the order id). A node
//! owns a partition through a lease in Redis ([`lease`]: `SET NX PX`, renewed by the owner
//! only); owning it is what lets the node run the actors and timers of that partition's
//! orders. Each time a partition changes hands the new owner takes the next fencing token from
//! the partition's row in PostgreSQL ([`crate::store::fence`]), and every write that depends on
//! owning the partition checks it in its own transaction. [`Ownership`] is this node's view,
//! shared by the order code (is this order mine? what is my token?) and kept by the engine's
//! lease loop (`engine::cluster`). [`bus`] carries committed status changes between nodes.

pub mod bus;
pub mod lease;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use entities::OrderId;
use serde::{Deserialize, Serialize};

use crate::settings::{check, Invalid};

/// `[cluster]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Off: this node runs every order (one node, or nodes that each do everything).
    pub enabled: bool,
    /// Partitions the orders are spread over; the same on every node, fixed for a deployment.
    pub partitions: u32,
    /// This node's name, stable across its restarts (it gets the same share back). Empty: the
    /// address the server is bound to.
    pub node_name: String,
    /// Where the other nodes reach this one (requests for its orders are forwarded there).
    /// Empty: `http://<bound address>` (refused when `server.public_base_url` is set, which may
    /// be a load balancer, or when the server listens on every interface).
    pub advertise_url: String,
    /// Key of the HMAC that signs the requests one node forwards to another (the owner refuses
    /// a forward it cannot verify); the same on every node, at least 32 characters, required
    /// when `enabled`.
    pub secret: secrecy::SecretString,
    /// How long a lease lasts without renewal: a dead node's partitions are taken over this
    /// long after its last renewal.
    #[serde(rename = "lease_ttl_milliseconds", with = "crate::settings::millis")]
    pub lease_ttl: Duration,
    /// How often leases are renewed, nodes' heartbeats written and free partitions taken.
    #[serde(rename = "tick_milliseconds", with = "crate::settings::millis")]
    pub tick: Duration,
    /// How often the orders of owned partitions due soon are checked for a missing actor.
    #[serde(rename = "sweep_milliseconds", with = "crate::settings::millis")]
    pub sweep: Duration,
}

impl ClusterSettings {
    /// # Errors
    /// A value that cannot work, named by its key.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(
            (1..=16_384).contains(&self.partitions),
            section,
            "partitions",
            "must be between 1 and 16384",
        )?;
        check(
            self.lease_ttl >= Duration::from_millis(500) && self.lease_ttl <= Duration::from_secs(600),
            section,
            "lease_ttl_milliseconds",
            "must be between 500 and 600000",
        )?;
        check(
            self.tick >= Duration::from_millis(50) && self.tick.saturating_mul(3) <= self.lease_ttl,
            section,
            "tick_milliseconds",
            "must be at least 50 and at most a third of lease_ttl_milliseconds",
        )?;
        check(
            self.sweep >= Duration::from_millis(100) && self.sweep <= Duration::from_secs(3_600),
            section,
            "sweep_milliseconds",
            "must be between 100 and 3600000",
        )?;
        check(
            !self.node_name.contains('|'),
            section,
            "node_name",
            "must not contain '|'",
        )
    }

    /// How long before its lease lapses in Redis a node stops acting on a partition whose
    /// renewal it could not confirm: a fifth of the TTL, at least 200 ms, so it has stopped
    /// before another node can take the partition even with some clock drift.
    pub fn safety_margin(&self) -> Duration {
        (self.lease_ttl / 5).max(Duration::from_millis(200))
    }
}

/// Order id -> partition. The same function on every node and in SQL ([`Partitioner::sql`]),
/// so a takeover reads exactly its partitions' orders from the database.
///
/// A snowflake id is `ms << 22 | worker << 12 | sequence`: under light load the sequence is
/// mostly 0, under heavy load many orders share a millisecond, so all three parts are mixed
/// in (multiplied by primes, summed; every term stays far below `i64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioner {
    count: u32,
}

impl Partitioner {
    pub fn new(count: u32) -> Self {
        Self { count: count.max(1) }
    }

    pub fn count(self) -> u32 {
        self.count
    }

    pub fn of(self, id: OrderId) -> u32 {
        let id = id.get();
        let mixed = (id >> 22) + (id & 4095) * 7919 + ((id >> 12) & 1023) * 131;
        u32::try_from(mixed.rem_euclid(i64::from(self.count))).unwrap_or(0)
    }

    /// The same function in SQL (PostgreSQL and SQLite), over the column `column`.
    pub fn sql(self, column: &str) -> String {
        format!(
            "((({column} >> 22) + ({column} & 4095) * 7919 + (({column} >> 12) & 1023) * 131) % {})",
            self.count
        )
    }

    pub fn all(self) -> impl Iterator<Item = u32> {
        0..self.count
    }
}

/// A partition's hash tag, so that every key of one partition lives in the same Redis Cluster
/// slot and the partitions spread over the cluster: `{p17}`.
pub fn hash_tag(partition: u32) -> String {
    format!("{{p{partition}}}")
}

/// Who this node is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Stable across restarts (the share it gets follows the name).
    pub name: String,
    /// New at every start: a lease written by an earlier run of this node is not taken for
    /// this run's.
    pub incarnation: String,
    /// Base URL the other nodes forward to.
    pub address: String,
}

impl NodeIdentity {
    /// What this node writes as a lease's value.
    pub fn lease_value(&self) -> String {
        format!("{}|{}", self.name, self.incarnation)
    }
}

/// A partition this node holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// The fencing token taken when the partition was acquired.
    epoch: i64,
    /// Until when this node may act on it: the last confirmed renewal's send time plus the
    /// TTL minus the safety margin.
    valid_until: Instant,
    /// Being handed over: its actors are stopping; nothing new is started for it.
    draining: bool,
}

/// What a write that depends on owning a partition must find in the partition's fence row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub partition: u32,
    pub epoch: i64,
}

/// This node's view of the cluster: what it holds (with tokens and validity) and who holds
/// the rest (refreshed at every tick, for forwarding). Shared by the order code and the lease
/// loop; every lock is held for a map operation only.
pub struct Ownership {
    partitioner: Partitioner,
    node: NodeIdentity,
    held: RwLock<HashMap<u32, Held>>,
    /// The node holding each partition, as read at the last tick.
    owners: RwLock<Vec<Option<String>>>,
    /// Node name -> address, from the last tick's heartbeats.
    addresses: RwLock<HashMap<String, String>>,
}

impl Ownership {
    pub fn new(partitioner: Partitioner, node: NodeIdentity) -> Self {
        let count = usize::try_from(partitioner.count()).unwrap_or(0);
        Self {
            partitioner,
            node,
            held: RwLock::new(HashMap::new()),
            owners: RwLock::new(vec![None; count]),
            addresses: RwLock::new(HashMap::new()),
        }
    }

    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    pub fn partition_of(&self, id: OrderId) -> u32 {
        self.partitioner.of(id)
    }

    fn read_held(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Held>> {
        self.held.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_held(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Held>> {
        self.held.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this node may run `partition`'s actors now.
    pub fn owns(&self, partition: u32) -> bool {
        self.fence_of(partition).is_some()
    }

    pub fn owns_order(&self, id: OrderId) -> bool {
        self.owns(self.partition_of(id))
    }

    /// The fence of a partition this node may act on now.
    pub fn fence_of(&self, partition: u32) -> Option<Fence> {
        let now = Instant::now();
        self.read_held()
            .get(&partition)
            .filter(|held| !held.draining && held.valid_until > now)
            .map(|held| Fence {
                partition,
                epoch: held.epoch,
            })
    }

    pub fn fence(&self, id: OrderId) -> Option<Fence> {
        self.fence_of(self.partition_of(id))
    }

    /// Partitions held (draining ones included: their lease is still renewed).
    pub fn held(&self) -> Vec<u32> {
        let mut held: Vec<u32> = self.read_held().keys().copied().collect();
        held.sort_unstable();
        held
    }

    /// Partitions this node may act on now.
    pub fn owned(&self) -> Vec<u32> {
        let now = Instant::now();
        let mut owned: Vec<u32> = self
            .read_held()
            .iter()
            .filter(|(_, held)| !held.draining && held.valid_until > now)
            .map(|(partition, _)| *partition)
            .collect();
        owned.sort_unstable();
        owned
    }

    /// Records a partition just acquired with `epoch`, valid until `valid_until`.
    pub fn acquired(&self, partition: u32, epoch: i64, valid_until: Instant) {
        self.write_held().insert(
            partition,
            Held {
                epoch,
                valid_until,
                draining: false,
            },
        );
    }

    /// A renewal sent at some instant was confirmed: valid until `valid_until`.
    pub fn renewed(&self, partition: u32, valid_until: Instant) {
        if let Some(held) = self.write_held().get_mut(&partition) {
            held.valid_until = held.valid_until.max(valid_until);
        }
    }

    /// Stops acting on `partition` (handing it over); its lease is still held until released.
    pub fn drain(&self, partition: u32) {
        if let Some(held) = self.write_held().get_mut(&partition) {
            held.draining = true;
        }
    }

    /// The token `partition` was taken with, while held.
    pub fn epoch_of(&self, partition: u32) -> Option<i64> {
        self.read_held().get(&partition).map(|held| held.epoch)
    }

    /// Forgets `partition` if it is still held with `epoch` (not lost and taken again since).
    pub fn forget_if(&self, partition: u32, epoch: i64) -> bool {
        let mut held = self.write_held();
        if held.get(&partition).is_some_and(|h| h.epoch == epoch) {
            held.remove(&partition);
            true
        } else {
            false
        }
    }

    /// Forgets `partition` (released or lost). Returns whether it was held.
    pub fn forget(&self, partition: u32) -> bool {
        self.write_held().remove(&partition).is_some()
    }

    /// Held partitions whose validity ran out (their renewal was not confirmed in time).
    pub fn expired(&self, now: Instant) -> Vec<u32> {
        self.read_held()
            .iter()
            .filter(|(_, held)| held.valid_until <= now)
            .map(|(partition, _)| *partition)
            .collect()
    }

    /// Replaces the view of who holds what (read from Redis at a tick).
    pub fn set_owners(&self, owners: Vec<Option<String>>) {
        *self.owners.write().unwrap_or_else(std::sync::PoisonError::into_inner) = owners;
    }

    /// Replaces the node addresses (read from the heartbeats at a tick).
    pub fn set_addresses(&self, addresses: HashMap<String, String>) {
        *self
            .addresses
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = addresses;
    }

    /// The address of node `name`, as last read.
    pub fn address_of(&self, name: &str) -> Option<String> {
        self.addresses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The node holding `partition`, as last read.
    pub fn owner_node(&self, partition: u32) -> Option<String> {
        let owners = self.owners.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        owners.get(usize::try_from(partition).ok()?)?.clone()
    }

    /// Where requests for `partition` go: its owner's address, unless that is this node or
    /// nobody holds it.
    pub fn owner_address(&self, partition: u32) -> Option<String> {
        self.owner_node(partition)
            .filter(|node| *node != self.node.name)
            .and_then(|node| self.address_of(&node))
    }
}

/// Rendezvous hashing: the node a partition belongs to among `nodes` (the highest score).
/// Every node computes the same answer from the same list; when a node leaves only its
/// partitions move, and when it comes back it gets the same ones back.
pub fn preferred<'a>(nodes: &[&'a str], partition: u32) -> Option<&'a str> {
    nodes.iter().copied().max_by_key(|node| (score(node, partition), *node))
}

/// FNV-1a over the node name and the partition, then a final mix (stable across builds).
fn score(node: &str, partition: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain(partition.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Snowflake;

    #[tokio::test]
    async fn partitions_of_consecutive_orders_spread_evenly() {
        let ids = Snowflake::new(3).unwrap();
        let partitioner = Partitioner::new(16);
        let mut counts = [0u32; 16];
        for _ in 0..16_000 {
            let id: OrderId = ids.next_typed().await.unwrap();
            let p = partitioner.of(id);
            counts[usize::try_from(p).unwrap()] += 1;
        }
        // 1,000 each on average: none below half of that or above one and a half.
        assert!(counts.iter().all(|&c| (500..=1_500).contains(&c)), "{counts:?}");
    }

    #[test]
    fn the_partition_of_an_id_is_stable_and_in_range() {
        let partitioner = Partitioner::new(256);
        for id in [1_i64, 4_194_304, 1_234_567_890_123_456, i64::MAX] {
            let id = OrderId::try_from(id).unwrap();
            let p = partitioner.of(id);
            assert!(p < 256);
            assert_eq!(p, partitioner.of(id));
        }
    }

    #[test]
    fn rendezvous_moves_only_the_leaving_nodes_partitions_and_gives_them_back() {
        let three = ["a", "b", "c"];
        let two = ["a", "c"];
        let mut share = HashMap::new();
        for p in 0..256 {
            let with_b = preferred(&three, p).unwrap();
            *share.entry(with_b).or_insert(0) += 1;
            let without_b = preferred(&two, p).unwrap();
            if with_b != "b" {
                assert_eq!(with_b, without_b, "partition {p} moved though its owner stayed");
            }
            assert_eq!(
                preferred(&["c", "b", "a"], p),
                Some(with_b),
                "order of the list matters"
            );
        }
        // About a third each.
        assert!(share.values().all(|&n| (60..=110).contains(&n)), "{share:?}");
    }

    #[test]
    fn settings_refuse_a_tick_too_slow_for_the_lease() {
        let settings = ClusterSettings {
            enabled: true,
            partitions: 256,
            node_name: String::new(),
            advertise_url: String::new(),
            secret: secrecy::SecretString::from("cluster-secret-0123456789abcdef0123"),
            lease_ttl: Duration::from_secs(3),
            tick: Duration::from_secs(2),
            sweep: Duration::from_secs(5),
        };
        let err = settings.validate("cluster").unwrap_err();
        assert_eq!(err.key, "cluster.tick_milliseconds");
        let ok = ClusterSettings {
            tick: Duration::from_secs(1),
            ..settings
        };
        ok.validate("cluster").unwrap();
    }
}
