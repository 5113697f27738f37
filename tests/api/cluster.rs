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
