//! The master's view of a running run: each instance's last two samples
//! and state, turned into a [`Status`] on demand (rates and shares of the
//! interval between the two samples, measured on the node's own clock).

use std::time::{Duration, Instant};

use super::sample::{InputSample, NodeSample};
use super::status::{EdgeStatus, LinkStatus, NodeState, NodeStatus, RunState, Status, Waiting};
use crate::graph::NodeId;
use crate::replica::Replicated;
use crate::report::{bottleneck_of, ratio, split, RunReport};

/// A ring at least this full holds its producer back: the producer waits.
const FULL: f64 = 0.9;
/// A consumer idle at least this share of the interval on an empty input
/// waits for it.
const STARVED: f64 = 0.5;

/// One instance, as last heard of.
#[derive(Debug)]
struct Tracked {
    status: NodeStatus,
    /// The last two samples: rates are their difference.
    last: Option<NodeSample>,
    prev: Option<NodeSample>,
}

impl Tracked {
    /// Input `input` in the last sample and the one before.
    fn input(&self, input: usize) -> (Option<&InputSample>, Option<&InputSample>) {
        fn of(s: &Option<NodeSample>, input: usize) -> Option<&InputSample> {
            s.as_ref().and_then(|s| s.inputs.get(input))
        }
        (of(&self.last, input), of(&self.prev, input))
    }

    /// Nanoseconds between the last two samples (0 before the second).
    fn interval_ns(&self) -> u64 {
        match (&self.last, &self.prev) {
            (Some(last), Some(prev)) => last.ran_ns.saturating_sub(prev.ran_ns),
            _ => 0,
        }
    }

    /// `count` over that interval, per second.
    fn per_second(&self, count: u64) -> f64 {
        match self.interval_ns() {
            0 => 0.0,
            ns => count as f64 / (ns as f64 / 1e9),
        }
    }
}

/// The master's view of a run.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    nodes: Vec<Tracked>,
    /// Per instance: its upstream instances, in input order.
    upstreams: Vec<Vec<NodeId>>,
    ended: Option<RunState>,
}

impl Live {
    /// The view of `run`'s instances, placed on `hosts` (per instance).
    pub fn new(run: &Replicated, hosts: &[String], started: Instant) -> Self {
        let graph = run.instances();
        let nodes = (0..graph.nodes().len())
            .map(|id| {
                let spec = graph.node(id);
                let replica = run.replica(id);
                Tracked {
                    status: NodeStatus {
                        name: spec.name.clone(),
                        node: run.graph().node(replica.node).name.clone(),
                        replica: replica.index,
                        kind: spec.kind.label().to_owned(),
                        host: hosts.get(id).cloned().unwrap_or_default(),
                        ..NodeStatus::default()
                    },
                    last: None,
                    prev: None,
                }
            })
            .collect();
        let upstreams = (0..graph.nodes().len())
            .map(|id| graph.upstreams(id).to_vec())
            .collect();
        Self {
            started,
            nodes,
            upstreams,
            ended: None,
        }
    }

    /// Instance `id` sent `sample`; whether it was its first (the node
    /// now counts as running).
    pub fn record(&mut self, id: NodeId, sample: NodeSample) -> bool {
        let Some(node) = self.nodes.get_mut(id) else {
            return false;
        };
        if !node.status.is_live() {
            // Sent before its end, come after: it moves no more.
            return false;
        }
        let first = matches!(
            node.status.state,
            NodeState::Starting | NodeState::Restarting
        );
        if first {
            node.status.state = NodeState::Running;
        }
        node.prev = node.last.replace(sample);
        update(&mut node.status, node.last.as_ref(), node.prev.as_ref());
        first
    }

    /// Instance `id` is being restarted, after its process ended (`cause`):
    /// its figures start afresh with its new process.
    pub fn restarting(&mut self, id: NodeId, cause: String) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        node.status.state = NodeState::Restarting;
        node.status.error = Some(cause);
        node.status.restarts += 1;
        node.status.stop_moving();
        (node.last, node.prev) = (None, None);
    }

    /// Instance `id` is now in `state` (`error`: why it failed or died).
    /// A node that finished or failed stays so when its process then ends.
    pub fn set_state(&mut self, id: NodeId, state: NodeState, error: Option<String>) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        let settled = matches!(node.status.state, NodeState::Done | NodeState::Failed);
        if settled && state == NodeState::Dead {
            return;
        }
        node.status.state = state;
        if error.is_some() {
            node.status.error = error;
        }
        if !node.status.is_live() {
            node.status.stop_moving();
        }
    }

    /// The run ended so, with `report`: nodes whose report holds an error
    /// failed (those seen dead stay dead).
    pub fn end(&mut self, state: RunState, report: &RunReport) {
        self.ended = Some(state);
        for (node, r) in self.nodes.iter_mut().zip(&report.nodes) {
            let s = &mut node.status;
            if let (Some(error), false) = (&r.error, s.state == NodeState::Dead) {
                s.state = NodeState::Failed;
                s.error = Some(error.clone());
            }
            // The report's totals are the final ones (the last sample may
            // be a second old).
            s.values_in = r.messages_in;
            s.values_out = r.messages_out;
            s.policy = r.policy;
            s.peak_rss_kib = r.peak_rss_kib.or(s.peak_rss_kib);
            (s.busy_s, s.idle_s, s.blocked_s) = (
                r.busy.as_secs_f64(),
                r.idle.as_secs_f64(),
                r.blocked.as_secs_f64(),
            );
            s.stop_moving();
        }
    }

    /// The run now.
    pub fn status(&self) -> Status {
        let nodes: Vec<NodeStatus> = self.nodes.iter().map(|n| n.status.clone()).collect();
        let edges = self.edges();
        let bottleneck = bottleneck_of(
            nodes
                .iter()
                .filter(|n| n.is_live())
                .map(|n| (n.name.as_str(), n.busy, n.blocked)),
        )
        .map(str::to_owned);
        let run = self.ended.unwrap_or_else(|| {
            if self.nodes.iter().any(|n| n.last.is_some()) {
                RunState::Running
            } else {
                RunState::Starting
            }
        });
        Status {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            run,
            nodes,
            edges,
            bottleneck,
            report: None,
            failure: None,
        }
    }

    fn edges(&self) -> Vec<EdgeStatus> {
        let mut edges = Vec::new();
        for (to, ups) in self.upstreams.iter().enumerate() {
            let consumer = &self.nodes[to];
            for (input, &from) in ups.iter().enumerate() {
                let producer = &self.nodes[from];
                let mut edge = EdgeStatus {
                    from: producer.status.name.clone(),
                    to: consumer.status.name.clone(),
                    ..EdgeStatus::default()
                };
                let (now, before) = consumer.input(input);
                if let Some(i) = now {
                    edge.fill_bytes = i.fill_bytes;
                    edge.capacity = i.capacity;
                    edge.fill = share(i.fill_bytes, i.capacity);
                    let idle = before.map_or(0.0, |b| {
                        share(i.idle_ns.saturating_sub(b.idle_ns), consumer.interval_ns())
                    });
                    edge.waiting = waiting(edge.fill, idle, consumer.status.is_live());
                    edge.link = i.link.as_ref().map(|l| {
                        let then = before.and_then(|b| b.link.as_ref()).map_or(0, |b| b.bytes);
                        LinkStatus {
                            bytes: l.bytes,
                            bytes_per_s: consumer.per_second(l.bytes.saturating_sub(then)),
                            state: l.state,
                        }
                    });
                }
                let sent = producer.last.as_ref().and_then(|s| s.last_seq_out);
                let taken = consumer.last.as_ref().and_then(|s| s.last_seq_in);
                edge.lag = match (sent, taken) {
                    (Some(sent), Some(taken)) => Some(sent.saturating_sub(taken)),
                    (Some(sent), None) => Some(sent + 1),
                    _ => None,
                };
                edges.push(edge);
            }
        }
        edges
    }
}

/// Which end of an edge waits: the producer when the ring is (nearly)
/// full, the consumer when it waited on this input at least half of the
/// last interval. Decided per edge: a producer blocked by one slow consumer
/// does not wait for its fast ones, and they may wait for it.
fn waiting(fill: f64, consumer_idle: f64, consumer_live: bool) -> Waiting {
    if fill >= FULL {
        Waiting::Producer
    } else if consumer_idle >= STARVED && consumer_live {
        Waiting::Consumer
    } else {
        Waiting::Neither
    }
}

/// `part` of `all`, 0 to 1.
fn share(part: u64, all: u64) -> f64 {
    ratio(part as f64, all as f64)
}

/// Sets `status`'s figures from a node's last two samples.
fn update(status: &mut NodeStatus, last: Option<&NodeSample>, prev: Option<&NodeSample>) {
    let Some(last) = last else {
        return;
    };
    status.values_in = last.values_in;
    status.values_out = last.values_out;
    status.table = last.table;
    status.table_fill = share(last.table, last.table_capacity);
    status.policy = last.policy;
    status.rss_kib = last.rss_kib;
    status.peak_rss_kib = last.peak_rss_kib;
    status.p50_s = last.p50_ns.map(|ns| ns as f64 / 1e9);
    status.p99_s = last.p99_ns.map(|ns| ns as f64 / 1e9);
    let ns = Duration::from_nanos;
    let (busy, idle, blocked) = split(ns(last.ran_ns), ns(last.idle_ns), ns(last.blocked_ns));
    // Counters never go down (the clocks of a waiting thread and of the
    // sampler may disagree by a few nanoseconds).
    status.busy_s = status.busy_s.max(busy.as_secs_f64());
    status.idle_s = status.idle_s.max(idle.as_secs_f64());
    status.blocked_s = status.blocked_s.max(blocked.as_secs_f64());
    // Rates and shares need an interval: from the second sample on (the
    // first one's, the node's first moments, says little).
    let Some(prev) = prev else {
        return;
    };
    let ran = last.ran_ns.saturating_sub(prev.ran_ns);
    if ran == 0 {
        return;
    }
    let secs = ran as f64 / 1e9;
    status.in_per_s = last.values_in.saturating_sub(prev.values_in) as f64 / secs;
    status.out_per_s = last.values_out.saturating_sub(prev.values_out) as f64 / secs;
    let (busy, idle, blocked) = split(
        ns(ran),
        ns(last.idle_ns.saturating_sub(prev.idle_ns)),
        ns(last.blocked_ns.saturating_sub(prev.blocked_ns)),
    );
    let of_ran = |d: Duration| ratio(d.as_secs_f64(), secs);
    (status.busy, status.idle, status.blocked) = (of_ran(busy), of_ran(idle), of_ran(blocked));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Graph, NodeSpec};
    use crate::metrics::sample::{InputSample, LinkSample, LinkState};
    use crate::replica::Scale;

    const S: u64 = 1_000_000_000;

    /// A -> W -> K, with W on another host than A.
    fn live() -> Live {
        let graph = Graph::new(vec![
            NodeSpec::spout("A", "u64"),
            NodeSpec::worker("W", ["A"], "u64"),
            NodeSpec::worker("K", ["W"], "u64"),
        ])
        .unwrap();
        let run = Replicated::new(graph, &Scale::single(3)).unwrap();
        let hosts = ["h1", "h2", "h2"].map(String::from);
        Live::new(&run, &hosts, Instant::now())
    }

    fn input(upstream: &str, fill: u64, idle_ns: u64, link: Option<u64>) -> InputSample {
        InputSample {
            upstream: upstream.into(),
            fill_bytes: fill,
            capacity: 1000,
            idle_ns,
            link: link.map(|bytes| LinkSample {
                bytes,
                state: LinkState::Up,
            }),
        }
    }

    #[test]
    fn rates_shares_edges_and_the_bottleneck_come_from_the_last_two_samples() {
        let mut live = live();
        assert_eq!(live.status().run, RunState::Starting);
        // A second apart: A blocked 90 %, W busy 80 %, K idle 90 %.
        let a = |ran, out, blocked| NodeSample {
            ran_ns: ran,
            values_out: out,
            blocked_ns: blocked,
            last_seq_out: out.checked_sub(1),
            ..NodeSample::default()
        };
        let w = |ran, n, idle, bytes, fill| NodeSample {
            ran_ns: ran,
            values_in: n,
            values_out: n,
            idle_ns: idle,
            last_seq_in: n.checked_sub(1),
            last_seq_out: n.checked_sub(1),
            inputs: vec![input("A", fill, idle, Some(bytes))],
            ..NodeSample::default()
        };
        let k = |ran, n, idle| NodeSample {
            ran_ns: ran,
            values_in: n,
            idle_ns: idle,
            last_seq_in: n.checked_sub(1),
            inputs: vec![input("W", 0, idle, None)],
            ..NodeSample::default()
        };
        assert!(live.record(0, a(S, 1000, 0)));
        assert!(!live.record(0, a(2 * S, 3000, S * 9 / 10)));
        live.record(1, w(S, 500, 0, 64_000, 0));
        live.record(1, w(2 * S, 1500, S / 5, 128_000, 950));
        live.record(2, k(S, 500, 0));
        live.record(2, k(2 * S, 1500, S * 9 / 10));
        let status = live.status();
        assert_eq!(status.run, RunState::Running);
        let node = |name| status.node(name).unwrap();
        assert_eq!(node("A").out_per_s, 2000.0);
        assert!((node("A").blocked - 0.9).abs() < 1e-9);
        assert!((node("W").busy - 0.8).abs() < 1e-9);
        assert!((node("K").idle - 0.9).abs() < 1e-9);
        assert_eq!(node("W").host, "h2");
        assert_eq!(status.bottleneck.as_deref(), Some("W"));
        let edge = |from: &str| status.edges.iter().find(|e| e.from == from).unwrap();
        let aw = edge("A");
        assert_eq!((aw.to.as_str(), aw.fill_bytes), ("W", 950));
        assert_eq!(aw.waiting, Waiting::Producer, "a full ring holds A back");
        assert_eq!(aw.lag, Some(2999 - 1499));
        let link = aw.link.as_ref().unwrap();
        assert_eq!((link.bytes, link.bytes_per_s), (128_000, 64_000.0));
        assert_eq!(edge("W").waiting, Waiting::Consumer, "K waits for W");

        // W dies: shown dead, no longer moving, no longer the bottleneck.
        live.set_state(1, NodeState::Dead, Some("killed by signal 9".into()));
        let status = live.status();
        let dead = status.node("W").unwrap();
        assert_eq!(dead.state, NodeState::Dead);
        assert_eq!((dead.busy, dead.in_per_s), (0.0, 0.0));
        assert_eq!(status.bottleneck, None);
        // Restarted: shown so, then running on its new process's figures,
        // which start afresh (no rate from the old process's counters).
        live.restarting(1, "killed by signal 9".into());
        let w_now = live.status().node("W").unwrap().clone();
        assert_eq!((w_now.state, w_now.restarts), (NodeState::Restarting, 1));
        assert!(live.record(1, w(S / 2, 100, 0, 0, 0)));
        let w_now = live.status().node("W").unwrap().clone();
        assert_eq!(
            (w_now.state, w_now.values_in, w_now.in_per_s),
            (NodeState::Running, 100, 0.0)
        );
        assert!(!live.record(1, w(S + S / 2, 1100, 0, 0, 0)));
        assert_eq!(live.status().node("W").unwrap().in_per_s, 1000.0);
        live.set_state(1, NodeState::Dead, Some("killed by signal 9".into()));
        // A node that finished stays so when its process ends, and a
        // sample sent before its end moves it no more.
        live.set_state(2, NodeState::Done, None);
        live.set_state(2, NodeState::Dead, Some("exited".into()));
        assert!(!live.record(2, k(3 * S, 2500, S)));
        let k_now = live.status().node("K").unwrap().clone();
        assert_eq!(
            (k_now.state, k_now.values_in, k_now.in_per_s),
            (NodeState::Done, 1500, 0.0)
        );

        // The end: the report's totals, not the last sample's.
        let mut report = RunReport::default();
        for (name, n) in [("A", 4000), ("W", 4000), ("K", 4000)] {
            report.nodes.push(crate::report::NodeReport {
                name: name.into(),
                messages_in: n,
                messages_out: n,
                busy: Duration::from_secs(3),
                ..Default::default()
            });
        }
        live.end(RunState::Finished, &report);
        let end = live.status();
        assert_eq!(end.run, RunState::Finished);
        assert_eq!(end.node("A").unwrap().values_out, 4000);
        assert_eq!(end.node("K").unwrap().busy_s, 3.0);
        assert_eq!(
            end.node("W").unwrap().state,
            NodeState::Dead,
            "seen dead, stays dead"
        );
    }

    #[test]
    fn a_first_sample_gives_counters_and_no_rates() {
        let mut live = live();
        live.record(
            0,
            NodeSample {
                ran_ns: S / 100,
                values_out: 10,
                ..NodeSample::default()
            },
        );
        let a = live.status().node("A").unwrap().clone();
        assert_eq!((a.values_out, a.out_per_s, a.busy), (10, 0.0, 0.0));
        assert_eq!(
            live.status().bottleneck,
            None,
            "a first moment is no bottleneck"
        );
    }
}
