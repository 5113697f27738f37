//! paywarden as a cluster: real nodes (`cluster.enabled`, named `node-0`...) on one database,
//! one Redis (a single server, or a three-master Redis Cluster) and the provider simulator.
//! Each order is run by exactly one node, the owner of its partition; requests reaching
//! another node are forwarded to it; a killed node's partitions are taken over within
//! seconds and its orders still end exactly once; the deadline sets spread over a Redis
//! Cluster's masters; a status change reaches a status stream open on another node at once.
//!
//! They need PostgreSQL on 127.0.0.1:5432 and `redis-server` and `redis-cli` on the PATH.
//! `.config/nextest.toml` runs them alone (their timings are asserted). Run them with
//! `cargo nextest run -p paywarden-fault --test cluster --no-capture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use paywarden_fault::cluster_rig::{
    node_name, CreatedOrder, OrderEnd, Placement, RedisKind, Rig, RigOptions, RigRedis, PARTITIONS,
};

/// Nodes of every test.
const NODES: usize = 3;
/// Requests in flight at once while the tests create orders and start attempts.
const CONCURRENCY: usize = 6;
/// How long an order may take to be armed on its owner after it was created.
const ARMING_LIMIT: Duration = Duration::from_secs(3);
/// How long the orders get to end once created (their TTLs included).
const FINAL_LIMIT: Duration = Duration::from_secs(60);
/// The takeover of a killed node's partitions must be done within this (lease TTL 5 s, plus
/// at most a tick of 1 s, plus the time it takes).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);
/// A status change on one node must reach a stream open on another within this.
const STREAM_LAG_LIMIT: Duration = Duration::from_secs(1);

const FORWARDED: &str = "paywarden_cluster_forwarded_total";
const TAKEOVERS: &str = "paywarden_cluster_takeovers_total";

fn init_log() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,paywarden_fault=info")
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// An order the test made, and its WeChat Pay attempt (with the node it was started at).
#[derive(Clone, Debug)]
struct Made {
    order: CreatedOrder,
    wechat: Option<(usize, String)>,
}

/// Creates `count` orders due in `ttl_seconds`, order `n` at node `n % NODES`; when
/// `with_wechat(n)`, starts a WeChat Pay attempt for it at the next node (the order's owner
/// or not: a request for an order another node owns is forwarded).
async fn make_orders(rig: &Rig, count: usize, ttl_seconds: u64, with_wechat: impl Fn(usize) -> bool) -> Vec<Made> {
    let jobs: Vec<(usize, bool)> = (0..count).map(|n| (n, with_wechat(n))).collect();
    let mut made: Vec<(usize, Made)> = futures::stream::iter(jobs)
        .map(|(n, wechat)| async move {
            let at = n % NODES;
            let order = rig
                .create_order(at, ttl_seconds)
                .await
                .unwrap_or_else(|err| panic!("order {n} at node {at}: {err:#}"));
            let wechat = if wechat {
                let attempt_at = (at + 1) % NODES;
                let pay_no = rig
                    .start_wechat(attempt_at, &order.order_no)
                    .await
                    .unwrap_or_else(|err| panic!("WeChat attempt of order {n} at node {attempt_at}: {err:#}"));
                Some((attempt_at, pay_no))
            } else {
                None
            };
            (n, Made { order, wechat })
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    made.sort_by_key(|(n, _)| *n);
    made.into_iter().map(|(_, made)| made).collect()
}

/// Every order armed on exactly one node, the owner every running node names; the
/// placements by order number.
async fn check_armed_once(rig: &Rig, made: &[Made]) -> BTreeMap<String, Vec<Placement>> {
    let started = Instant::now();
    let placements: BTreeMap<String, Vec<Placement>> = futures::stream::iter(made)
        .map(|m| async move {
            let placements = rig
                .wait_armed_once(&m.order.order_no, ARMING_LIMIT)
                .await
                .unwrap_or_else(|err| panic!("{err:#}"));
            (m.order.order_no.clone(), placements)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let earliest = made.iter().map(|m| m.order.expires_at).min();
    // Checked while the orders were pending: a final order has no actor anywhere.
    if let Some(earliest) = earliest {
        assert!(
            chrono::Utc::now() < earliest,
            "the placements were checked only after the first deadline ({earliest}): the machine is too slow for \
             this test's TTLs"
        );
    }
    println!(
        "{} order(s): each armed on exactly one node, its owner (checked on every node in {:.1} s)",
        made.len(),
        started.elapsed().as_secs_f64()
    );
    placements
}

/// The owner's name of an order's placements.
fn owner(placements: &[Placement]) -> String {
    placements.first().and_then(|p| p.owner.clone()).expect("an owner")
}

fn order_nos(made: &[Made]) -> Vec<String> {
    made.iter().map(|m| m.order.order_no.clone()).collect()
}

/// Every order closed, with exactly one final transition in `order_logs`.
fn assert_closed_once(ends: &[OrderEnd], expected: usize) {
    assert_eq!(ends.len(), expected, "orders found in the database");
    let wrong: Vec<&OrderEnd> = ends
        .iter()
        .filter(|end| end.status != "closed" || end.final_transitions != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "orders not closed with exactly one final transition: {wrong:#?}"
    );
}

/// Every WeChat Pay trade of `made` closed exactly once at the simulator, and queried at most
/// `max_queries` times.
fn assert_trades_closed_once(rig: &Rig, made: &[Made], max_queries: u32) -> usize {
    let pay_nos: Vec<String> = made
        .iter()
        .filter_map(|m| m.wechat.as_ref().map(|(_, pay_no)| pay_no.clone()))
        .collect();
    let trades = rig.wechat_trades(&pay_nos);
    assert_eq!(
        trades.len(),
        pay_nos.len(),
        "every attempt's trade is in the simulator's book"
    );
    let wrong: Vec<String> = trades
        .iter()
        .filter(|(_, trade)| trade.close_count != 1 || trade.query_count > max_queries || trade.query_count == 0)
        .map(|(pay_no, trade)| {
            format!(
                "{pay_no}: queried {} times, closed {} times ({:?})",
                trade.query_count, trade.close_count, trade.state
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "WeChat trades not closed exactly once (at most {max_queries} queries): {wrong:#?}"
    );
    pay_nos.len()
}

async fn metric_total(rig: &Rig, nodes: &[usize], name: &str, labels: &str) -> f64 {
    let mut total = 0.0;
    for index in nodes {
        total += rig.metric(*index, name, labels).await.expect("metrics answer");
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_redis_arm_each_order_once_and_call_the_provider_once_per_trade() {
    init_log();
    let rig = Rig::start(&RigOptions {
        nodes: NODES,
        redis: RedisKind::Single,
        name: "steady",
    })
    .await
    .expect("the rig starts");

    let made = make_orders(&rig, 30, 12, |_| true).await;
    let placements = check_armed_once(&rig, &made).await;

    // Attempts started at a node that does not own the order were forwarded to the owner.
    let expected_forwards = made
        .iter()
        .filter(|m| {
            let (at, _) = m.wechat.as_ref().expect("an attempt");
            node_name(*at) != owner(&placements[&m.order.order_no])
        })
        .count();
    let all: Vec<usize> = (0..NODES).collect();
    let forwarded = metric_total(&rig, &all, FORWARDED, "outcome=\"forwarded\"").await;
    let failed = metric_total(&rig, &all, FORWARDED, "outcome=\"failed\"").await;
    let no_owner = metric_total(&rig, &all, FORWARDED, "outcome=\"no_owner\"").await;
    println!("attempts started at another node than the owner: {expected_forwards}; forwarded {forwarded}, failed {failed}, no owner {no_owner}");
    assert!(expected_forwards > 0, "no attempt was started away from its owner");
    assert!(
        forwarded >= f64::from(u32::try_from(expected_forwards).unwrap()),
        "{forwarded} requests forwarded, {expected_forwards} expected"
    );
    assert!(
        failed == 0.0 && no_owner == 0.0,
        "forwarding failed: {failed} failed, {no_owner} with no owner"
    );

    // Every attempt carried an Idempotency-Key (`Rig::start_wechat`): recorded once, by the node that ran it (the
    // forwarding node released its claim), and replayed by any node without a new attempt.
    let keys = rig
        .db
        .scalar("SELECT COUNT(*) FROM idempotency_keys WHERE status = 'completed'")
        .await
        .expect("the database answers");
    let all_keys = rig
        .db
        .scalar("SELECT COUNT(*) FROM idempotency_keys")
        .await
        .expect("the database answers");
    let attempts_made = i64::try_from(made.len()).unwrap();
    assert_eq!(
        (keys, all_keys),
        (attempts_made, attempts_made),
        "one completed key per attempt"
    );
    let forwarded_one = made
        .iter()
        .find(|m| {
            let (at, _) = m.wechat.as_ref().expect("an attempt");
            node_name(*at) != owner(&placements[&m.order.order_no])
        })
        .expect("an attempt was forwarded");
    let (at, pay_no) = forwarded_one.wechat.clone().expect("an attempt");
    let order_no = &forwarded_one.order.order_no;
    for index in (0..NODES).filter(|index| *index != at) {
        let (status, answer) = rig.post_wechat_attempt(index, order_no).await.expect("an answer");
        assert_eq!(
            (status, answer["pay_no"].as_str()),
            (201, Some(pay_no.as_str())),
            "replayed at node {index}"
        );
    }
    let attempts = rig
        .db
        .scalar(&format!(
            "SELECT COUNT(*) FROM payment_attempts a JOIN orders o ON o.id = a.order_id WHERE o.order_no = '{order_no}'"
        ))
        .await
        .expect("the database answers");
    assert_eq!(attempts, 1, "the replays started no attempt");

    let took = rig
        .wait_final(&order_nos(&made), FINAL_LIMIT)
        .await
        .expect("every order ends");
    println!(
        "every order final {:.1} s after the placements were checked",
        took.as_secs_f64()
    );
    let ends = rig.order_ends(&order_nos(&made)).await.expect("the database answers");
    assert_closed_once(&ends, made.len());
    // Unpaid at the deadline: one query (NOTPAY), one close, by the owner alone.
    let trades = assert_trades_closed_once(&rig, &made, 1);
    println!("{trades} WeChat trades: each queried once and closed once");

    rig.finish().await.expect("the rig stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_partitions_are_taken_over_within_ten_seconds_and_its_orders_resolve_once() {
    init_log();
    let mut rig = Rig::start(&RigOptions {
        nodes: NODES,
        redis: RedisKind::Single,
        name: "takeover",
    })
    .await
    .expect("the rig starts");

    let made = make_orders(&rig, 30, 12, |n| n % 2 == 0).await;
    let placements = check_armed_once(&rig, &made).await;
    let before = rig.cluster_view(0).await.expect("the cluster view");
    let former: Vec<u32> = before.partitions_of("node-1");
    let on_node_1 = placements.values().filter(|p| owner(p) == "node-1").count();
    println!(
        "node-1 holds {} partitions and runs {on_node_1} of the {} orders",
        former.len(),
        made.len()
    );
    assert!(!former.is_empty() && on_node_1 > 0, "node-1 runs nothing to take over");
    let takeovers_before = metric_total(&rig, &[0, 2], TAKEOVERS, "").await;

    rig.nodes[1].kill();
    let killed = Instant::now();
    let former_set: HashSet<u32> = former.iter().copied().collect();
    let took = loop {
        let view = rig.cluster_view(0).await.expect("the cluster view");
        let holders = view.holders();
        let left = former_set
            .iter()
            .filter(|p| holders.get(p).is_none_or(|holder| holder == "node-1"))
            .count();
        if left == 0 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "{left} of node-1's partitions still not taken over after 30 s (unowned {:?})",
            view.unowned
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "node-1 killed: its {} partitions taken over in {:.2} s",
        former.len(),
        took.as_secs_f64()
    );
    assert!(took <= TAKEOVER_LIMIT, "the takeover took {took:?}");
    // Each ends with the node rendezvous hashing gives it among the two left, and every
    // takeover is counted. A node's heartbeat lapses no later than its first lease (leases are
    // renewed before the heartbeat is written), so a partition normally moves once; one can
    // move twice only when the node it belongs to misses a whole tick and another node takes
    // it first, then hands it on.
    rig.wait_balanced(&[0, 2], Duration::from_secs(5))
        .await
        .expect("balanced over node-0 and node-2");
    let takeovers = metric_total(&rig, &[0, 2], TAKEOVERS, "").await - takeovers_before;
    let moved = f64::from(u32::try_from(former.len()).unwrap());
    println!(
        "takeovers counted: {takeovers} for {} partitions ({} moved twice)",
        former.len(),
        takeovers - moved
    );
    assert!(
        takeovers >= moved,
        "{takeovers} takeovers counted for {} partitions",
        former.len()
    );

    rig.wait_final(&order_nos(&made), FINAL_LIMIT)
        .await
        .expect("every order ends");
    let ends = rig.order_ends(&order_nos(&made)).await.expect("the database answers");
    assert_closed_once(&ends, made.len());
    let trades = assert_trades_closed_once(&rig, &made, 1);
    println!(
        "{} orders closed once each, {trades} WeChat trades closed once each",
        made.len()
    );

    // node-1 comes back under the same name and gets its share back.
    let restart = Instant::now();
    rig.nodes[1].start().await.expect("node-1 restarts");
    let view = rig
        .wait_balanced(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("balanced over the three again");
    let share = view.partitions_of("node-1").len();
    println!(
        "node-1 restarted: holds {share} partitions again after {:.1} s",
        restart.elapsed().as_secs_f64()
    );
    assert!(
        share >= usize::try_from(PARTITIONS).unwrap() / NODES / 2,
        "node-1 got only {share} partitions back"
    );

    let more = make_orders(&rig, 15, 5, |n| n % 2 == 1).await;
    let placements = check_armed_once(&rig, &more).await;
    assert!(
        placements.values().any(|p| owner(p) == "node-1"),
        "no new order runs on the restarted node"
    );
    rig.wait_final(&order_nos(&more), FINAL_LIMIT)
        .await
        .expect("every new order ends");
    let ends = rig.order_ends(&order_nos(&more)).await.expect("the database answers");
    assert_closed_once(&ends, more.len());
    assert_trades_closed_once(&rig, &more, 1);

    rig.finish().await.expect("the rig stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_stops_acting_on_the_partitions_taken_while_it_slept() {
    init_log();
    let rig = Rig::start(&RigOptions {
        nodes: NODES,
        redis: RedisKind::Single,
        name: "paused",
    })
    .await
    .expect("the rig starts");

    // Due a few seconds after node-1's partitions are taken over, and closed by their new
    // owners while node-1 still sleeps with its own actors and timers for them.
    let made = make_orders(&rig, 30, 10, |_| true).await;
    let placements = check_armed_once(&rig, &made).await;
    let former: HashSet<u32> = rig
        .cluster_view(0)
        .await
        .expect("the cluster view")
        .partitions_of("node-1")
        .into_iter()
        .collect();
    let on_node_1: Vec<&String> = placements
        .iter()
        .filter(|(_, p)| owner(p) == "node-1")
        .map(|(order_no, _)| order_no)
        .collect();
    assert!(!on_node_1.is_empty(), "node-1 runs none of the orders");

    rig.nodes[1].signal("STOP").expect("node-1 paused");
    let paused = Instant::now();
    loop {
        let holders = rig.cluster_view(0).await.expect("the cluster view").holders();
        if former
            .iter()
            .all(|p| holders.get(p).is_some_and(|holder| holder != "node-1"))
        {
            break;
        }
        assert!(
            paused.elapsed() < Duration::from_secs(30),
            "node-1's partitions not taken over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "node-1 paused: its {} partitions taken over in {:.2} s",
        former.len(),
        paused.elapsed().as_secs_f64()
    );
    rig.wait_final(&order_nos(&made), FINAL_LIMIT)
        .await
        .expect("every order ends while node-1 sleeps");

    // node-1 wakes up: its timers for those orders are long due. It must do nothing with
    // them: no provider call, no write; its actors stop and its leases are gone.
    rig.nodes[1].signal("CONT").expect("node-1 resumed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for order_no in &on_node_1 {
        let placement = rig.placement(1, order_no).await.expect("node-1 answers");
        assert!(!placement.armed_here, "node-1 still runs {order_no} after waking up");
    }
    let lost = rig
        .metric(1, "paywarden_cluster_leases_lost_total", "")
        .await
        .expect("node-1's metrics");
    println!(
        "node-1 resumed: {lost} partitions given up, none of its {} orders' actors left",
        on_node_1.len()
    );
    assert!(lost >= 1.0, "node-1 never noticed that it lost its partitions");
    let ends = rig.order_ends(&order_nos(&made)).await.expect("the database answers");
    assert_closed_once(&ends, made.len());
    assert_trades_closed_once(&rig, &made, 1);
    rig.wait_balanced(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("node-1 takes its share back");

    rig.finish().await.expect("the rig stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_redis_cluster_holds_the_deadline_sets_spread_over_its_masters() {
    init_log();
    let rig = Rig::start(&RigOptions {
        nodes: NODES,
        redis: RedisKind::Cluster,
        name: "rediscluster",
    })
    .await
    .expect("the rig starts");

    let made = make_orders(&rig, 30, 120, |n| n % 3 == 0).await;
    let placements = check_armed_once(&rig, &made).await;
    let partitions: HashSet<u32> = placements
        .values()
        .filter_map(|p| p.first().map(|p| p.partition))
        .collect();

    let RigRedis::Cluster(cluster) = &rig.redis else {
        panic!("the rig runs a Redis Cluster");
    };
    let sizes = cluster.dbsizes().expect("every master answers DBSIZE");
    let deadline_pattern = format!("{}:*:deadlines", rig.key_prefix);
    let deadline_sets = cluster
        .count_keys(&deadline_pattern)
        .expect("every master answers KEYS");
    println!("keys per master: {sizes:?}; deadline sets per master: {deadline_sets:?}");
    assert!(sizes.iter().all(|n| *n > 0), "a master holds no key: {sizes:?}");
    assert!(
        deadline_sets.iter().all(|n| *n > 0),
        "a master holds no deadline set: {deadline_sets:?}"
    );
    // One set per partition that has a pending order.
    assert_eq!(
        deadline_sets.iter().sum::<i64>(),
        i64::try_from(partitions.len()).unwrap(),
        "deadline sets for {} partitions with pending orders",
        partitions.len()
    );

    // A refresh (a status read that asks the provider through the order's actor) at node-1:
    // the orders it does not own are forwarded. Only orders without an attempt, so the
    // provider is asked nothing and every trade keeps its one query.
    let refreshable: Vec<&Made> = made.iter().filter(|m| m.wechat.is_none()).collect();
    let not_node_1 = refreshable
        .iter()
        .filter(|m| owner(&placements[&m.order.order_no]) != node_name(1))
        .count();
    let forwarded_before = rig
        .metric(1, FORWARDED, "outcome=\"forwarded\"")
        .await
        .expect("metrics");
    for m in &refreshable {
        let (status, body) = rig.refresh(1, &m.order.order_no).await.expect("the refresh answers");
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("pending")),
            "refresh of {}",
            m.order.order_no
        );
    }
    let forwarded = rig
        .metric(1, FORWARDED, "outcome=\"forwarded\"")
        .await
        .expect("metrics")
        - forwarded_before;
    println!(
        "{} refreshes at node-1, {forwarded} forwarded to the owner",
        refreshable.len()
    );
    assert!(
        (forwarded - f64::from(u32::try_from(not_node_1).unwrap())).abs() < 0.5,
        "{forwarded} refreshes forwarded, {not_node_1} orders owned elsewhere"
    );

    // All cancelled through node-0: the orders it does not own are forwarded.
    let not_node_0 = placements.values().filter(|p| owner(p) != node_name(0)).count();
    let forwarded_before = rig
        .metric(0, FORWARDED, "outcome=\"forwarded\"")
        .await
        .expect("metrics");
    let shared = &rig;
    let answers: Vec<(String, u16, String)> = futures::stream::iter(&made)
        .map(|m| async move {
            let (status, body) = shared.cancel(0, &m.order.order_no).await.expect("the cancel answers");
            (
                m.order.order_no.clone(),
                status,
                body["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let refused: Vec<&(String, u16, String)> = answers
        .iter()
        .filter(|(_, status, order_status)| *status != 200 || order_status != "closed")
        .collect();
    assert!(refused.is_empty(), "cancels not answered 200 closed: {refused:#?}");
    let forwarded = rig
        .metric(0, FORWARDED, "outcome=\"forwarded\"")
        .await
        .expect("metrics")
        - forwarded_before;
    println!("{} cancels at node-0, {forwarded} forwarded to the owner", made.len());
    assert!(
        (forwarded - f64::from(u32::try_from(not_node_0).unwrap())).abs() < 0.5,
        "{forwarded} cancels forwarded, {not_node_0} orders owned elsewhere"
    );
    let ends = rig.order_ends(&order_nos(&made)).await.expect("the database answers");
    assert_closed_once(&ends, made.len());
    assert_trades_closed_once(&rig, &made, 1);

    // A final order leaves its deadline set (an emptied set is gone).
    let started = Instant::now();
    loop {
        let left = cluster
            .count_keys(&deadline_pattern)
            .expect("every master answers KEYS");
        if left.iter().all(|n| *n == 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "deadline sets left after every order closed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    rig.finish().await.expect("the rig stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_on_one_node_reaches_a_status_stream_on_another_within_a_second() {
    init_log();
    let rig = Rig::start(&RigOptions {
        nodes: NODES,
        redis: RedisKind::Single,
        name: "stream",
    })
    .await
    .expect("the rig starts");

    // Several orders: a stream re-reads its order every 2 s by itself, so one quick change
    // could be that; three in a row are the change bus.
    for n in 0..3 {
        let made = make_orders(&rig, 1, 60, |_| false).await;
        let order_no = made[0].order.order_no.clone();
        let placements = check_armed_once(&rig, &made).await;
        let owner_name = owner(&placements[&order_no]);
        let owner_index = (0..NODES).find(|i| node_name(*i) == owner_name).expect("a known owner");
        let watcher = (owner_index + 1 + n % 2) % NODES;

        let mut stream = rig
            .open_status_stream(watcher, &order_no)
            .await
            .expect("the stream opens");
        let first = stream
            .next_status(Duration::from_secs(5))
            .await
            .expect("the first frame");
        assert_eq!(first, "pending");

        let sent = Instant::now();
        let (status, body) = rig.cancel(owner_index, &order_no).await.expect("the cancel answers");
        let answered = Instant::now();
        assert_eq!(status, 200, "cancel at the owner: {body}");
        let next = stream
            .next_status(Duration::from_secs(5))
            .await
            .expect("the change reaches the stream");
        let seen = Instant::now();
        assert_eq!(next, "closed");
        let lag = seen.saturating_duration_since(answered);
        println!(
            "order {order_no}: cancelled at {owner_name} (answered in {} ms), seen by the stream at {} {} ms after the answer",
            answered.duration_since(sent).as_millis(),
            node_name(watcher),
            lag.as_millis()
        );
        assert!(
            lag < STREAM_LAG_LIMIT,
            "the stream on {} saw the change after {lag:?}",
            node_name(watcher)
        );
    }

    rig.finish().await.expect("the rig stops");
}
