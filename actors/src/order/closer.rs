//! The expiry closer: gathers the plain expiries of many order actors into batches
//! ([`expire_batch::close_expired`]), so that a thousand deadlines falling in the same
//! millisecond cost the database a few transactions, not a thousand.
//!
//! An actor whose timer fires sends its order here first; the closer takes whatever has
//! queued up (at most [`MAX_BATCH`]) and closes the plain ones in one transaction, answering
//! each actor with what happened to its order. An order that is not a plain expiry (an attempt
//! open, stuck, not due) comes back as [`BatchOutcome::FullPass`] and its actor runs the full
//! expiry rule, as does every order of a batch whose transaction failed. A few batches may
//! run at once (they lock their orders in id order).

use std::sync::Arc;

use chrono::Utc;
use entities::OrderId;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::cluster::Ownership;
use crate::store::expire_batch::{self, BatchOutcome};

/// Orders closed in one transaction at most.
pub const MAX_BATCH: usize = 500;
/// Batches in flight at once.
const WORKERS: usize = 2;

type Request = (OrderId, oneshot::Sender<BatchOutcome>);

/// Cheap to clone; every clone feeds the same workers.
#[derive(Clone)]
pub struct ExpiryCloser {
    queue: mpsc::UnboundedSender<Request>,
}

impl ExpiryCloser {
    /// Starts the workers on the current runtime.
    pub fn start(db: DatabaseConnection, cluster: Option<Arc<Ownership>>) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WORKERS {
            tokio::spawn(work(db.clone(), cluster.clone(), receiver.clone()));
        }
        Self { queue }
    }

    /// Closes `order_id` if it is a plain expiry; otherwise (or when the closer is gone) says
    /// the full pass decides.
    pub async fn close(&self, order_id: OrderId) -> BatchOutcome {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((order_id, reply)).is_err() {
            return BatchOutcome::FullPass;
        }
        answer.await.unwrap_or(BatchOutcome::FullPass)
    }
}

async fn work(
    db: DatabaseConnection,
    cluster: Option<Arc<Ownership>>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>,
) {
    loop {
        let mut batch: Vec<Request> = Vec::new();
        {
            // One worker gathers at a time: it waits for the first request, then takes what
            // queued up behind it.
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        }
        let ids: Vec<OrderId> = batch.iter().map(|(id, _)| *id).collect();
        let mut outcomes = match expire_batch::close_expired(&db, &ids, Utc::now(), cluster.as_deref()).await {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::warn!(orders = ids.len(), error.cause_chain = ?err, "batched close failed; each order runs its full pass");
                Default::default()
            }
        };
        for (id, reply) in batch {
            // An actor that stopped waiting (shutdown) is fine: its order is untouched or
            // closed, and the next start sees which.
            let _ = reply.send(outcomes.remove(&id).unwrap_or(BatchOutcome::FullPass));
        }
    }
}
