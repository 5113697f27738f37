//! Fencing tokens of a cluster's partitions, in PostgreSQL (`partition_fences`).
//!
//! Redis holds the leases, but nothing on disk: a token from Redis would start again at 1
//! after Redis lost its keys, and fencing must never go backwards. So the token is the
//! partition's row here: a node that took a lease increments `epoch` and acts with the value
//! it got; every write that depends on owning the partition reads the row `FOR SHARE` inside
//! its own transaction and gives up if the epoch moved on. The increment waits for those
//! transactions to end, so once a new owner holds its token no older owner's write commits.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};

use crate::cluster::Fence;

/// How long taking a partition waits for the transactions still acting on its old token.
const LOCK_WAIT: Duration = Duration::from_millis(1_000);
/// How long a fenced transaction may sit idle before PostgreSQL ends it (and its lock).
const IDLE_LIMIT: Duration = Duration::from_millis(2_000);

/// Creates the rows of partitions `0..count` that do not exist yet.
///
/// # Errors
/// The database error.
pub async fn ensure_rows(db: &DatabaseConnection, count: u32) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let values: Vec<String> = chunk.iter().map(|p| format!("({p}, 0, '')")).collect();
        let sql = format!(
            "INSERT INTO partition_fences (partition, epoch, node) VALUES {} ON CONFLICT (partition) DO NOTHING",
            values.join(", ")
        );
        db.execute(Statement::from_string(backend, sql)).await?;
    }
    Ok(())
}

/// Takes the next token of `partition` for `node`: waits for every transaction still acting
/// on the previous one. Returns the new epoch and the node that held the previous one.
///
/// # Errors
/// The database error.
pub async fn advance(db: &DatabaseConnection, partition: u32, node: &str) -> Result<(i64, String), DbErr> {
    let backend = db.get_database_backend();
    let lock = match backend {
        DbBackend::Postgres => " FOR UPDATE",
        DbBackend::Sqlite | DbBackend::MySql => "",
    };
    let txn = db.begin().await?;
    if backend == DbBackend::Postgres {
        // A fenced transaction of a stalled node could hold its share lock for as long as that
        // node sleeps: give up after a moment (the lease is given back and taken again at a
        // later tick, once PostgreSQL ended that transaction, see `holding`).
        txn.execute(Statement::from_string(
            backend,
            format!("SET LOCAL lock_timeout = {}", LOCK_WAIT.as_millis()),
        ))
        .await?;
    }
    let previous = txn
        .query_one(Statement::from_sql_and_values(
            backend,
            format!("SELECT node FROM partition_fences WHERE partition = $1{lock}"),
            [i64::from(partition).into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("partition_fences row {partition}")))?;
    let previous: String = previous.try_get_by_index(0)?;
    let row = txn
        .query_one(Statement::from_sql_and_values(
            backend,
            "UPDATE partition_fences SET epoch = epoch + 1, node = $1, acquired_at = $2 \
             WHERE partition = $3 RETURNING epoch",
            [node.into(), Utc::now().into(), i64::from(partition).into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("partition_fences row {partition}")))?;
    let epoch: i64 = row.try_get_by_index(0)?;
    txn.commit().await?;
    Ok((epoch, previous))
}

/// Which of `fences` still hold, read `FOR SHARE` inside `conn`'s transaction: a partition
/// taken by another node since (its epoch moved on) is missing from the answer.
///
/// # Errors
/// The database error.
pub async fn holding<C: ConnectionTrait>(conn: &C, fences: &[Fence]) -> Result<Vec<u32>, DbErr> {
    if fences.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let list: Vec<String> = fences.iter().map(|f| f.partition.to_string()).collect();
    let lock = match backend {
        DbBackend::Postgres => " FOR SHARE",
        DbBackend::Sqlite | DbBackend::MySql => "",
    };
    // On PostgreSQL the same statement bounds how long this transaction may then sit idle
    // (its node paused, say) holding the share lock that a new owner waits for.
    let idle = match backend {
        DbBackend::Postgres => format!(
            ", set_config('idle_in_transaction_session_timeout', '{}', true)",
            IDLE_LIMIT.as_millis()
        ),
        DbBackend::Sqlite | DbBackend::MySql => String::new(),
    };
    let sql = format!(
        "SELECT partition, epoch{idle} FROM partition_fences WHERE partition IN ({}) ORDER BY partition{lock}",
        list.join(", ")
    );
    let rows = conn.query_all(Statement::from_string(backend, sql)).await?;
    let mut current = HashMap::with_capacity(rows.len());
    for row in rows {
        let partition: i32 = row.try_get_by_index(0)?;
        let epoch: i64 = row.try_get_by_index(1)?;
        current.insert(partition, epoch);
    }
    Ok(fences
        .iter()
        .filter(|f| {
            i32::try_from(f.partition)
                .ok()
                .and_then(|p| current.get(&p))
                .is_some_and(|epoch| *epoch == f.epoch)
        })
        .map(|f| f.partition)
        .collect())
}
