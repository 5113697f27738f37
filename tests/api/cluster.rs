//! Fencing of a cluster's partitions, against PostgreSQL: a node whose partition was taken by
//! another node cannot commit a decision that depends on owning it, and taking a partition
//! waits for the transactions still acting on the previous token. (Three real nodes on one
//! database and Redis, and on a Redis Cluster, are in `tests/fault/tests/cluster.rs`.)

use std::time::{Duration, Instant};

use actors::cluster::{Fence, NodeIdentity, Ownership, Partitioner};
use actors::store::expire_batch::{close_expired, BatchOutcome};
use actors::store::fence;
use actors::store::transitions::{self, Applied, CloseReason, OrderUpdate};
use actors::store::Operator;
use actors::OrderError;
use entities::{orders, OrderId, OrderStatus};
use sea_orm::{EntityTrait, TransactionTrait};

use crate::helpers::{order_body, spawn_app, Backend, TestApp};

const PARTITIONS: u32 = 8;

/// A pending order (its actor is busy with a long TTL) and its partition.
async fn order(app: &TestApp, out_business_id: &str) -> (OrderId, u32) {
    let order = app.create_order(&order_body(out_business_id)).await;
    let id: i64 = order["order_no"]
        .as_str()
        .expect("order_no")
        .parse()
        .expect("numeric order_no");
    let id = OrderId::try_from(id).expect("an order id");
    (id, Partitioner::new(PARTITIONS).of(id))
}

async fn status(app: &TestApp, id: OrderId) -> OrderStatus {
    orders::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("read")
        .expect("the order")
        .status
}

async fn log_rows(app: &TestApp, id: OrderId) -> usize {
    use sea_orm::{ColumnTrait, QueryFilter};
    entities::order_logs::Entity::find()
        .filter(entities::order_logs::Column::OrderId.eq(id))
        .all(&app.db)
        .await
        .expect("read")
        .len()
}

#[actix_web::test]
async fn a_close_with_a_stale_fencing_token_is_refused_and_writes_nothing() {
    let app = spawn_app(Backend::Postgres).await;
    let (id, partition) = order(&app, "fenced-close").await;
    fence::ensure_rows(&app.db, PARTITIONS).await.unwrap();
    let (first, previous) = fence::advance(&app.db, partition, "node-a").await.unwrap();
    assert_eq!(previous, "");
    // Another node takes the partition.
    let (second, previous) = fence::advance(&app.db, partition, "node-b").await.unwrap();
    assert_eq!((second, previous.as_str()), (first + 1, "node-a"));
    let logs_before = log_rows(&app, id).await;

    let close = || OrderUpdate::Closed {
        reason: CloseReason::Expired,
    };
    let stale = Fence {
        partition,
        epoch: first,
    };
    let refused = transitions::apply(&app.db, id, close(), &Operator::System, None, Some(stale)).await;
    assert!(matches!(refused, Err(OrderError::Fenced)), "{refused:?}");
    assert_eq!(status(&app, id).await, OrderStatus::Pending);
    assert_eq!(log_rows(&app, id).await, logs_before, "nothing written");

    let current = Fence {
        partition,
        epoch: second,
    };
    let applied = transitions::apply(&app.db, id, close(), &Operator::System, None, Some(current))
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Done(_)), "{applied:?}");
    assert_eq!(status(&app, id).await, OrderStatus::Closed);
}

#[actix_web::test]
async fn taking_a_partition_waits_for_a_transaction_still_acting_on_the_old_token() {
    let app = spawn_app(Backend::Postgres).await;
    fence::ensure_rows(&app.db, PARTITIONS).await.unwrap();
    let partition = 3;
    let (old, _) = fence::advance(&app.db, partition, "node-a").await.unwrap();
    let old_fence = Fence { partition, epoch: old };

    // The old owner is inside a fenced transaction.
    let txn = app.db.begin().await.unwrap();
    assert_eq!(fence::holding(&txn, &[old_fence]).await.unwrap(), vec![partition]);
    let db = app.db.clone();
    let taking = tokio::spawn(async move { fence::advance(&db, partition, "node-b").await });
    // The new owner's token is not handed out while that transaction runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !taking.is_finished(),
        "the token moved on under a running fenced transaction"
    );
    txn.commit().await.unwrap();
    let (new, previous) = taking.await.unwrap().unwrap();
    assert_eq!((new, previous.as_str()), (old + 1, "node-a"));
    // From now on the old token holds nowhere.
    let txn = app.db.begin().await.unwrap();
    assert!(fence::holding(&txn, &[old_fence]).await.unwrap().is_empty());
    assert_eq!(
        fence::holding(&txn, &[Fence { partition, epoch: new }]).await.unwrap(),
        vec![partition]
    );
}

#[actix_web::test]
async fn a_batch_leaves_out_orders_of_a_partition_whose_token_moved_on() {
    let app = spawn_app(Backend::Postgres).await;
    let (id, partition) = order(&app, "fenced-batch").await;
    fence::ensure_rows(&app.db, PARTITIONS).await.unwrap();
    let (mine, _) = fence::advance(&app.db, partition, "node-a").await.unwrap();
    let ownership = Ownership::new(
        Partitioner::new(PARTITIONS),
        NodeIdentity {
            name: "node-a".to_owned(),
            incarnation: "1".to_owned(),
            address: "http://127.0.0.1:1".to_owned(),
        },
    );
    ownership.acquired(partition, mine, Instant::now() + Duration::from_secs(60));
    // node-b took the partition; node-a has not noticed yet.
    let (theirs, _) = fence::advance(&app.db, partition, "node-b").await.unwrap();
    let due = chrono::Utc::now() + chrono::Duration::days(1);

    let outcomes = close_expired(&app.db, &[id], due, Some(&ownership)).await.unwrap();
    assert_eq!(outcomes.get(&id), Some(&BatchOutcome::FullPass));
    assert_eq!(status(&app, id).await, OrderStatus::Pending);

    // With the current token the same batch closes it.
    ownership.acquired(partition, theirs, Instant::now() + Duration::from_secs(60));
    let outcomes = close_expired(&app.db, &[id], due, Some(&ownership)).await.unwrap();
    assert!(
        matches!(outcomes.get(&id), Some(BatchOutcome::Closed(_))),
        "{outcomes:?}"
    );
    assert_eq!(status(&app, id).await, OrderStatus::Closed);
}

#[actix_web::test]
async fn a_stalled_fenced_transaction_neither_blocks_a_takeover_nor_outlives_its_idle_limit() {
    let app = spawn_app(Backend::Postgres).await;
    fence::ensure_rows(&app.db, PARTITIONS).await.unwrap();
    let partition = 5;
    let (old, _) = fence::advance(&app.db, partition, "node-a").await.unwrap();
    // node-a stalls (paused, say) inside a fenced transaction.
    let stalled = app.db.begin().await.unwrap();
    let old_fence = Fence { partition, epoch: old };
    assert_eq!(fence::holding(&stalled, &[old_fence]).await.unwrap(), vec![partition]);

    // node-b's takeover gives up after a moment instead of waiting for node-a to wake up.
    let started = Instant::now();
    let attempt = tokio::time::timeout(Duration::from_secs(5), fence::advance(&app.db, partition, "node-b"))
        .await
        .expect("taking the token does not wait for a stalled node");
    assert!(
        attempt.is_err(),
        "the token moved on under a running fenced transaction"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // PostgreSQL ends the stalled transaction once it sat idle past its limit; the next
    // takeover attempt gets the token, and the stalled transaction can commit nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (new, previous) = fence::advance(&app.db, partition, "node-b").await.unwrap();
    assert_eq!((new, previous.as_str()), (old + 1, "node-a"));
    assert!(stalled.commit().await.is_err(), "the stalled transaction committed");
}

/// Two cluster nodes in this process on one fresh PostgreSQL database and one Redis key
/// prefix, ticking fast; returns once every partition is held by the node it belongs to.
async fn spawn_two_nodes() -> (TestApp, TestApp) {
    spawn_two_nodes_with(|_, _| {}).await
}

/// [`spawn_two_nodes`], each node's settings changed by `tweak(node index, settings)` first.
async fn spawn_two_nodes_with(tweak: impl Fn(u16, &mut paywarden::config::Settings)) -> (TestApp, TestApp) {
    let mut settings = crate::helpers::test_settings(Backend::Postgres).await;
    settings.redis.url = secrecy::SecretString::from(crate::helpers::redis_url());
    settings.cluster.enabled = true;
    settings.cluster.partitions = PARTITIONS;
    settings.cluster.lease_ttl = Duration::from_millis(600);
    settings.cluster.tick = Duration::from_millis(100);
    let mut nodes = Vec::new();
    for n in 0..2_u16 {
        let mut node = settings.clone();
        node.cluster.node_name = format!("node-{n}");
        node.ids.worker_id = n;
        tweak(n, &mut node);
        nodes.push(crate::helpers::spawn_app_with(node).await);
    }
    let started = Instant::now();
    loop {
        let view: serde_json::Value = nodes[0]
            .client
            .get(nodes[0].url("/admin/cluster"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let held: Vec<(u64, String)> = view["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|node| {
                let name = node["name"].as_str().unwrap_or_default().to_owned();
                node["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |p| Some((p.as_u64()?, name.clone())))
            })
            .collect();
        let settled = held.len() == usize::try_from(PARTITIONS).unwrap()
            && held.iter().all(|(partition, name)| {
                actors::cluster::preferred(&["node-0", "node-1"], u32::try_from(*partition).unwrap())
                    == Some(name.as_str())
            });
        if settled {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not balanced: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = nodes.pop().unwrap();
    (nodes.pop().unwrap(), second)
}

/// A new order (created at `app`) whose partition `owner` holds: its number.
async fn order_owned_by(app: &TestApp, owner: &TestApp, owner_name: &str) -> String {
    for n in 0..64 {
        let order = app
            .create_order(&crate::helpers::order_body(&format!(
                "owned-{owner_name}-{n}-{}",
                uuid::Uuid::new_v4()
            )))
            .await;
        let order_no = order["order_no"].as_str().unwrap().to_owned();
        let placement: serde_json::Value = owner
            .client
            .get(owner.url(&format!("/admin/cluster/orders/{order_no}")))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if placement["owned_here"] == true {
            return order_no;
        }
    }
    panic!("no order of {owner_name} in 64 tries");
}

/// How a test body goes on the wire.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
}

/// `POST path` with `body` written by hand (so the framing and the encoding are the test's):
/// the status and the response headers, lowercase.
async fn raw_post(app: &TestApp, path: &str, key: &str, body: Vec<u8>, framing: Framing, gzip: bool) -> (u16, String) {
    use std::io::{Read, Write};
    let address = app.address.trim_start_matches("http://").to_owned();
    let path = path.to_owned();
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || {
        let body = if gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).unwrap();
            encoder.finish().unwrap()
        } else {
            body
        };
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        );
        if gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
        let mut wire = Vec::new();
        match framing {
            Framing::Length => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                wire.extend_from_slice(head.as_bytes());
                wire.extend_from_slice(&body);
            }
            Framing::Chunked => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                wire.extend_from_slice(head.as_bytes());
                // Two chunks, as a proxy streaming the body would send them.
                let (first, second) = body.split_at(body.len() / 2);
                for chunk in [first, second] {
                    wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            }
        }
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(&wire).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, answer)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_chunked_or_gzipped_request_gets_the_same_answer_at_the_owner_and_at_another_node() {
    // Arrange: two nodes; for each case, an order owned by node-1.
    let (node0, node1) = spawn_two_nodes().await;
    let cases = [
        (Framing::Chunked, false, "a chunked body"),
        (Framing::Length, true, "a gzip body"),
        (Framing::Chunked, true, "a chunked gzip body"),
        (Framing::Length, false, "a plain body"),
    ];
    let body = serde_json::json!({ "provider": "sandbox" }).to_string().into_bytes();
    for (framing, gzip, case) in cases {
        for (at, name) in [(&node1, "the owner"), (&node0, "another node")] {
            let order_no = order_owned_by(&node0, &node1, "node-1").await;

            // Act
            let path = format!("/v1/orders/{order_no}/payments");
            let (status, answer) =
                raw_post(at, &path, crate::helpers::MERCHANT_A_KEY, body.clone(), framing, gzip).await;

            // Assert
            assert_eq!(status, 201, "{case} at {name}: {answer}");
        }
    }
}

#[actix_web::test]
async fn a_request_that_fails_authentication_is_answered_by_the_receiving_node_and_not_forwarded() {
    // Arrange
    let (node0, node1) = spawn_two_nodes().await;
    let order_no = order_owned_by(&node0, &node1, "node-1").await;
    let body = serde_json::json!({ "provider": "sandbox" }).to_string().into_bytes();

    // Act: a wrong key at the node that does not own the order, with each framing.
    for framing in [Framing::Length, Framing::Chunked] {
        let path = format!("/v1/orders/{order_no}/payments");
        let (status, answer) = raw_post(&node0, &path, "pk_wrong_key_123", body.clone(), framing, false).await;

        // Assert
        assert_eq!(status, 401, "{framing:?}: {answer}");
    }
    let metrics = node0.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with("cluster_forwarded_total") || line.contains("cluster_forwarded_total{")),
        "nothing was forwarded: {metrics}"
    );
    assert_eq!(
        node1.count("SELECT COUNT(*) FROM payment_attempts").await,
        0,
        "the owner started no attempt"
    );
}

/// Before the fix the owner took any request carrying the forward marker as a forward from
/// another node. Now a forward must be signed with `cluster.secret`, over this request, and
/// recently: anything else is refused by the owner (401, counted) and changes nothing.
#[actix_web::test]
async fn a_forged_forward_is_refused_by_the_owner() {
    use paywarden::forward::{forward_signature, FORWARDED_BY, FORWARD_SIGNATURE, FORWARD_TIMESTAMP};

    // Arrange
    let (node0, node1) = spawn_two_nodes().await;
    let body = serde_json::json!({ "provider": "sandbox" }).to_string();
    let secret = node1.settings.cluster.secret.clone();
    let other = secrecy::SecretString::from("not-the-cluster-secret-0123456789abcdef");
    let signed = |secret: &secrecy::SecretString, path: &str, at: i64| {
        vec![
            (FORWARDED_BY, "node-0".to_owned()),
            (FORWARD_TIMESTAMP, at.to_string()),
            (
                FORWARD_SIGNATURE,
                forward_signature(secret, "node-0", "POST", path, at, body.as_bytes()),
            ),
        ]
    };
    type Forge<'a> = Box<dyn Fn(&str) -> Vec<(&'static str, String)> + 'a>;
    let cases: [(&str, Forge); 5] = [
        (
            "the marker alone",
            Box::new(|_| vec![(FORWARDED_BY, "node-0".to_owned())]),
        ),
        (
            "a made-up signature",
            Box::new(|_| {
                vec![
                    (FORWARDED_BY, "node-0".to_owned()),
                    (FORWARD_TIMESTAMP, chrono::Utc::now().timestamp().to_string()),
                    (FORWARD_SIGNATURE, format!("v1={}", "0".repeat(64))),
                ]
            }),
        ),
        (
            "signed with another secret",
            Box::new(|path| signed(&other, path, chrono::Utc::now().timestamp())),
        ),
        (
            "signed for another order",
            Box::new(|_| signed(&secret, "/v1/orders/1/payments", chrono::Utc::now().timestamp())),
        ),
        (
            "correctly signed five minutes ago",
            Box::new(|path| signed(&secret, path, chrono::Utc::now().timestamp() - 300)),
        ),
    ];
    for (case, forge) in &cases {
        let order_no = order_owned_by(&node0, &node1, "node-1").await;
        let path = format!("/v1/orders/{order_no}/payments");

        // Act: straight to the owner, with a valid merchant key and the forged forward.
        let mut request = node1
            .client
            .post(node1.url(&path))
            .bearer_auth(crate::helpers::MERCHANT_A_KEY)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in forge(&path) {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();

        // Assert
        assert_eq!(response.status().as_u16(), 401, "{case}");
    }
    assert_eq!(
        node1.count("SELECT COUNT(*) FROM payment_attempts").await,
        0,
        "no forged forward started an attempt"
    );
    let metrics = node1.metrics().await;
    assert!(
        metrics.contains(r#"cluster_forwarded_total{outcome="refused"} 5"#),
        "{metrics}"
    );

    // A forward signed as a node signs it goes through.
    let order_no = order_owned_by(&node0, &node1, "node-1").await;
    let path = format!("/v1/orders/{order_no}/payments");
    let mut request = node1
        .client
        .post(node1.url(&path))
        .bearer_auth(crate::helpers::MERCHANT_A_KEY)
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in signed(&secret, &path, chrono::Utc::now().timestamp()) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status().as_u16(), 201);
}

/// The node holding each partition's lease, as Redis holds it now (`None`: free).
async fn lease_holders(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<Option<String>> {
    let mut holders = Vec::new();
    for partition in 0..PARTITIONS {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}:{{p{partition}}}:lease"))
            .query_async(redis)
            .await
            .unwrap();
        holders.push(value.map(|v| v.split('|').next().unwrap_or_default().to_owned()));
    }
    holders
}

#[actix_web::test]
async fn after_redis_loses_its_keys_no_node_takes_the_partitions_of_another_live_node() {
    // Arrange: two balanced nodes.
    let (node0, _node1) = spawn_two_nodes().await;
    let prefix = node0.settings.redis.key_prefix.clone();
    let mut redis = redis::Client::open(crate::helpers::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = lease_holders(&mut redis, &prefix).await;
    assert!(before.iter().all(Option::is_some), "{before:?}");

    // Act: Redis restarts without its data (this cluster's keys only: the Redis is shared).
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();

    // Assert: for three lease periods (600 ms each) no partition is held by another node than
    // before; then each node holds its share again.
    let watch_until = Instant::now() + Duration::from_millis(1_800);
    while Instant::now() < watch_until {
        let now = lease_holders(&mut redis, &prefix).await;
        for (partition, (was, is)) in before.iter().zip(&now).enumerate() {
            if is.is_some() {
                assert_eq!(
                    is, was,
                    "partition {partition} taken by another node while its holder lived"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    while lease_holders(&mut redis, &prefix).await != before {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the shares did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn the_follow_up_of_a_live_order_s_trades_runs_on_the_order_s_owner_only() {
    // Arrange: two nodes; node-0's provider hangs, and node-0 waits for it, so a look node-0
    // took at a trade would not end for seconds.
    let (node0, node1) = spawn_two_nodes_with(|n, settings| {
        if n == 0 {
            settings.providers.sandbox.calls.timeout = Duration::from_secs(10);
            settings.providers.sandbox.calls.retries = 0;
        }
    })
    .await;
    node0
        .sandbox_faults(serde_json::json!({ "mode": "timeout", "delay_ms": 10_000 }))
        .await;
    // One trade at a time: each round, whichever node polls first would claim it.
    for round in 0..6 {
        let order_no = order_owned_by(&node1, &node1, "node-1").await;
        let response = node1
            .post_payment(crate::helpers::MERCHANT_A_KEY, &order_no, "sandbox")
            .await;
        assert_eq!(response.status().as_u16(), 201);
        let attempt: serde_json::Value = response.json().await.unwrap();
        let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();

        // Act: the live order's trade falls due for the follow-up.
        node1
            .execute(&format!(
                "UPDATE payment_attempts SET follow_up_at = CURRENT_TIMESTAMP - INTERVAL '1 second' WHERE pay_no = {pay_no}"
            ))
            .await;

        // Assert: the owner closes it at its provider at once; node-0 did not claim it.
        let started = Instant::now();
        loop {
            let trade = node1.sandbox_trade(&pay_no).await;
            if trade["close_count"].as_u64() >= Some(1) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "round {round}: trade {pay_no} not closed by its order's owner: {trade}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
