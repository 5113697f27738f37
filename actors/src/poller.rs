//! The one driver of background work that polls the database: "claim what is due, work it,
//! sleep until the next interval or a wake-up", one cycle at a time, on its own thread.
//!
//! A [`Job`] says what one cycle does; the [`Poller`] runs it every interval and on each
//! [`Wake`], never two at once (a wake-up during a cycle runs one more right after it), and on
//! [`Drain`] finishes the cycle in flight, starts no other, and stops. The follow-up, the
//! refund worker and the reconciliation worker are pollers; the outbox relay keeps its own
//! actor (it coalesces commits' wake-ups) but answers the same [`Drain`].

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, Arbiter, AsyncContext, Context, Handler, Message, ResponseFuture,
    WrapFuture,
};

/// Work is waiting: run a cycle now (or right after the one in flight).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The service is stopping: finish the cycle in flight, start no other, then stop. Replies once
/// the worker has stopped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Who is waiting for a worker to stop: a worker being drained finishes its cycle in flight,
/// starts no other, then tells each of them ([`Drain`]). Shared by the pollers and the relay.
#[derive(Debug, Default)]
pub struct Draining(Vec<tokio::sync::oneshot::Sender<()>>);

impl Draining {
    /// Whether a drain was asked for.
    pub fn asked(&self) -> bool {
        !self.0.is_empty()
    }

    /// Records one more waiter; the future ends once the worker said it stopped (or was
    /// dropped, which stops it too).
    pub fn wait(&mut self) -> ResponseFuture<()> {
        let (done, stopped) = tokio::sync::oneshot::channel();
        self.0.push(done);
        Box::pin(async move {
            let _ = stopped.await;
        })
    }

    /// Tells every waiter the worker stopped.
    pub fn stopped(&mut self) {
        for done in self.0.drain(..) {
            // The caller may have stopped waiting; nothing to tell then.
            let _ = done.send(());
        }
    }
}

/// What one cycle of a poller does.
#[async_trait::async_trait]
pub trait Job: Send + Sync + 'static {
    /// For logs and metrics: `follow_up`, `refunds`, `reconciliation`.
    fn name(&self) -> &'static str;

    /// One cycle: claim what is due and work it. `Ok(true)`: more is due right away (a full
    /// batch), so another cycle runs at once. An error is logged; the next cycle retries.
    async fn cycle(&self) -> Result<bool, String>;
}

/// Runs a [`Job`] every `interval`, when woken, and until drained.
pub struct Poller {
    job: Arc<dyn Job>,
    interval: Duration,
    run_at_start: bool,
    running: bool,
    /// A wake-up arrived during a cycle: run another right after it.
    again: bool,
    /// Set by [`Drain`]: told when the cycle in flight ends.
    draining: Draining,
}

impl Poller {
    /// A poller of `job` every `interval`; with `run_at_start`, a first cycle at once (work
    /// the previous run of this node left due).
    pub fn new(job: impl Job, interval: Duration, run_at_start: bool) -> Self {
        Self {
            job: Arc::new(job),
            interval,
            run_at_start,
            running: false,
            again: false,
            draining: Draining::default(),
        }
    }

    /// Starts the poller on its own arbiter (thread).
    pub fn start_on_own_arbiter(self) -> Addr<Self> {
        let arbiter = Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| self)
    }

    fn run_cycle(&mut self, ctx: &mut Context<Self>) {
        if self.draining.asked() {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        self.again = false;
        let job = self.job.clone();
        ctx.spawn(
            async move { job.cycle().await }
                .into_actor(self)
                .map(|result, poller, ctx| {
                    poller.running = false;
                    if poller.draining.asked() {
                        poller.stop_drained(ctx);
                        return;
                    }
                    let more = match result {
                        Ok(more) => more,
                        Err(err) => {
                            tracing::warn!(worker = poller.job.name(), error.message = %err, "cycle failed; the next one retries");
                            false
                        }
                    };
                    if more || std::mem::take(&mut poller.again) {
                        poller.run_cycle(ctx);
                    }
                }),
        );
    }

    fn stop_drained(&mut self, ctx: &mut Context<Self>) {
        self.draining.stopped();
        ctx.stop();
    }
}

impl Actor for Poller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A tick during a cycle is dropped (the cycle in flight looks anyway); only a wake-up,
        // which says new work was committed, asks for one more.
        ctx.run_interval(self.interval, |poller, ctx| {
            if !poller.running {
                poller.run_cycle(ctx);
            }
        });
        if self.run_at_start {
            self.run_cycle(ctx);
        }
    }
}

impl Handler<Wake> for Poller {
    type Result = ();

    fn handle(&mut self, _msg: Wake, ctx: &mut Self::Context) {
        self.run_cycle(ctx);
    }
}

impl Handler<Drain> for Poller {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        let stopped = self.draining.wait();
        if !self.running {
            self.stop_drained(ctx);
        }
        stopped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        started: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        take: Duration,
    }

    #[async_trait::async_trait]
    impl Job for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        async fn cycle(&self) -> Result<bool, String> {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.take).await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(false)
        }
    }

    #[actix::test]
    async fn a_drain_waits_for_the_cycle_in_flight_and_starts_no_other() {
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let job = Counting {
            started: started.clone(),
            finished: finished.clone(),
            take: Duration::from_millis(200),
        };
        let poller = Poller::new(job, Duration::from_millis(50), true).start_on_own_arbiter();
        tokio::time::sleep(Duration::from_millis(50)).await;
        poller.send(Wake).await.unwrap();

        poller.send(Drain).await.unwrap();
        let (started_then, finished_then) = (started.load(Ordering::SeqCst), finished.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(300)).await;

        assert_eq!(
            started_then, 1,
            "the wake-up during the cycle ran nothing more once draining"
        );
        assert_eq!(
            finished_then, 1,
            "the drain answered after the cycle in flight finished"
        );
        assert_eq!(started.load(Ordering::SeqCst), 1, "no cycle after the drain");
        assert!(!poller.connected(), "the poller stopped");
    }
}
