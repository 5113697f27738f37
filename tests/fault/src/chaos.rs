//! The faults injected while the load runs, at fixed shares of the load's duration:
//! `kill -9` of a node and its restart (several times, every node in turn), a Redis restart
//! that loses every key, the provider simulator failing and timing out a share of its
//! calls for a while before it recovers, and a while in which the provider closes every
//! refund without moving money (automatic refunds must be made again under new numbers).
//! (The pay-at-close race and the contradicting reports are part of the load.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use paywarden_sim::refunds::{SimRefundBehaviour, SimRefundMode};
use paywarden_sim::{SimFaults, SimServer};

use crate::client::Cluster;
use crate::processes::{Node, RedisServer};
use crate::Scenario;

/// How long a killed node stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug)]
enum Event {
    KillNode(usize),
    RestartRedis,
    ProviderFails,
    ProviderRecovers,
    RefundsClosed,
    RefundsSucceed,
}

/// What happened when (seconds since the run started), for the report.
#[derive(Default)]
pub(crate) struct Timeline {
    pub(crate) entries: Vec<(f64, String)>,
    /// When the provider started and stopped failing.
    pub(crate) provider_failing: Option<(f64, f64)>,
    /// Since when it fails, while it does.
    failing_since: Option<f64>,
    pub(crate) node_kills: u32,
    pub(crate) redis_restarts: u32,
}

/// The schedule: kills spread evenly (at least four, one more per 30 s of load beyond two
/// minutes), each node in turn; Redis restarted at 30 % (and 80 % on long runs); the provider
/// failing from 40 % to 65 %.
fn schedule(scenario: &Scenario) -> Vec<(Duration, Event)> {
    let load = scenario.load_duration;
    let at = |share: f64| load.mul_f64(share);
    let extra = u32::try_from(load.as_secs().saturating_sub(120) / 30).unwrap_or(0);
    let kills = 4 + extra;
    let mut events: Vec<(Duration, Event)> = (0..kills)
        .map(|k| {
            let share = f64::from(k + 1) / f64::from(kills + 1);
            // Start with the last node, so a two-node run kills 1, 0, 1, 0.
            let count = u32::try_from(scenario.nodes.max(1)).unwrap_or(1);
            let index = usize::try_from((count - 1 + count * kills - k) % count).unwrap_or(0);
            (at(share), Event::KillNode(index))
        })
        .collect();
    events.push((at(0.3), Event::RestartRedis));
    if load >= Duration::from_secs(300) {
        events.push((at(0.8), Event::RestartRedis));
    }
    events.push((at(0.4), Event::ProviderFails));
    events.push((at(0.65), Event::ProviderRecovers));
    // A fifth of the load, at most 20 s: automatic refunds closed early in it are made again
    // (about every second or two) until it ends, within their tries.
    events.push((at(0.15), Event::RefundsClosed));
    events.push((at(0.35).min(at(0.15) + Duration::from_secs(20)), Event::RefundsSucceed));
    events.sort_by_key(|(at, _)| *at);
    events
}

pub(crate) struct Chaos<'a> {
    pub(crate) nodes: &'a mut [Node],
    pub(crate) redis: &'a mut RedisServer,
    pub(crate) sim: &'a SimServer,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) started: Instant,
    pub(crate) deadline_keys: Vec<String>,
    pub(crate) timeline: Timeline,
}

impl Chaos<'_> {
    fn note(&mut self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        tracing::info!(at, "{what}");
        self.timeline.entries.push((at, what));
    }

    /// Runs the schedule; ends with every node up and the provider healthy.
    pub(crate) async fn run(&mut self, scenario: &Scenario) -> anyhow::Result<()> {
        for (at, event) in schedule(scenario) {
            tokio::time::sleep_until((self.started + at).into()).await;
            match event {
                Event::KillNode(index) => self.kill_node(index).await?,
                Event::RestartRedis => {
                    let lost = self.redis.zcard_sum(&self.deadline_keys).unwrap_or(-1);
                    self.redis.kill_and_restart().await?;
                    self.timeline.redis_restarts += 1;
                    self.note(format!(
                        "redis-server killed (-9) and restarted empty: {lost} deadline entries lost"
                    ));
                }
                Event::ProviderFails => {
                    let faults = SimFaults {
                        latency_ms: 0,
                        error_rate: scenario.provider_error_rate,
                        timeout_rate: scenario.provider_timeout_rate,
                        timeout_ms: scenario.provider_timeout_ms,
                    };
                    self.sim.set_faults(faults);
                    self.timeline.failing_since = Some(self.started.elapsed().as_secs_f64());
                    self.note(format!(
                        "provider simulator failing: {:.0} % of calls hang {} ms then fail, {:.0} % of the rest fail at once",
                        scenario.provider_timeout_rate * 100.0,
                        scenario.provider_timeout_ms,
                        scenario.provider_error_rate * 100.0
                    ));
                }
                Event::ProviderRecovers => self.provider_recovers(),
                Event::RefundsClosed => {
                    self.sim.set_refund_behaviour(SimRefundBehaviour {
                        mode: SimRefundMode::Close,
                        hang_ms: 0,
                    });
                    self.note("provider simulator closes every new refund without moving money".to_owned());
                }
                Event::RefundsSucceed => {
                    self.sim.set_refund_behaviour(SimRefundBehaviour::default());
                    self.note("provider simulator makes refunds again".to_owned());
                }
            }
        }
        // A schedule cut short (an error above) still leaves a healthy provider behind.
        self.provider_recovers();
        self.sim.set_refund_behaviour(SimRefundBehaviour::default());
        Ok(())
    }

    fn provider_recovers(&mut self) {
        if let Some(from) = self.timeline.failing_since.take() {
            self.sim.set_faults(SimFaults::default());
            let at = self.started.elapsed().as_secs_f64();
            self.timeline.provider_failing = Some((from, at));
            self.note("provider simulator recovered".to_owned());
        }
    }

    async fn kill_node(&mut self, index: usize) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        self.cluster.set_up(index, false);
        let pid = node.pid().unwrap_or_default();
        node.kill();
        self.timeline.node_kills += 1;
        self.note(format!("node {index} killed (-9, pid {pid})"));
        tokio::time::sleep(DOWN_FOR).await;
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        let took = node.start().await?;
        self.cluster.set_up(index, true);
        self.note(format!(
            "node {index} restarted (answering after {:.1} s)",
            took.as_secs_f64()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_is_killed_and_the_provider_recovers_before_the_load_ends() {
        for nodes in 1..=3 {
            let scenario = Scenario {
                nodes,
                ..Scenario::ci()
            };
            let events = schedule(&scenario);
            for index in 0..nodes {
                assert!(
                    events
                        .iter()
                        .any(|(_, e)| matches!(e, Event::KillNode(i) if *i == index)),
                    "node {index} of {nodes} is never killed"
                );
            }
            assert!(events.iter().all(|(at, _)| *at < scenario.load_duration));
            assert!(events.iter().any(|(_, e)| matches!(e, Event::ProviderRecovers)));
        }
    }
}
