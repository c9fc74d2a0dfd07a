//! The master's view of a running run: each instance's last two samples
//! and state, turned into a [`Status`] on demand (rates and shares of the
//! interval between the two samples, measured on the node's own clock).

use std::time::Instant;

use super::sample::{InputSample, NodeSample};
use super::status::{EdgeStatus, LinkStatus, NodeState, NodeStatus, RunState, Status, Waiting};
use crate::graph::NodeId;
use crate::replica::Replicated;
use crate::report::{bottleneck_of, RunReport};

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

    /// Nanoseconds between the last two samples (the first: since the
    /// node started).
    fn interval_ns(&self) -> u64 {
        let last = self.last.as_ref().map_or(0, |s| s.ran_ns);
        last.saturating_sub(self.prev.as_ref().map_or(0, |s| s.ran_ns))
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
        let first = node.status.state == NodeState::Starting;
        if first {
            node.status.state = NodeState::Running;
        }
        node.prev = node.last.replace(sample);
        update(&mut node.status, node.last.as_ref(), node.prev.as_ref());
        first
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
            // Nothing moves any more.
            let s = &mut node.status;
            (s.in_per_s, s.out_per_s, s.busy, s.idle, s.blocked) = (0.0, 0.0, 0.0, 0.0, 0.0);
        }
    }

    /// The run ended so, with `report`: nodes whose report holds an error
    /// failed (those seen dead stay dead).
    pub fn end(&mut self, state: RunState, report: &RunReport) {
        self.ended = Some(state);
        for (node, r) in self.nodes.iter_mut().zip(&report.nodes) {
            if let (Some(error), false) = (&r.error, node.status.state == NodeState::Dead) {
                node.status.state = NodeState::Failed;
                node.status.error = Some(error.clone());
            }
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
                    edge.waiting = if edge.fill >= FULL || producer.status.blocked >= STARVED {
                        Waiting::Producer
                    } else if idle >= STARVED && consumer.status.is_live() {
                        Waiting::Consumer
                    } else {
                        Waiting::Neither
                    };
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

/// `part` of `all`, 0 to 1.
fn share(part: u64, all: u64) -> f64 {
    if all == 0 {
        0.0
    } else {
        (part as f64 / all as f64).clamp(0.0, 1.0)
    }
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
    status.p50_s = last.p50_ns.map(|ns| ns as f64 / 1e9);
    status.p99_s = last.p99_ns.map(|ns| ns as f64 / 1e9);
    let idle = last.idle_ns.min(last.ran_ns);
    let blocked = last.blocked_ns.min(last.ran_ns - idle);
    status.idle_s = idle as f64 / 1e9;
    status.blocked_s = blocked as f64 / 1e9;
    status.busy_s = (last.ran_ns - idle - blocked) as f64 / 1e9;
    // The first sample's interval is the node's life so far.
    let zero = NodeSample::default();
    let prev = prev.unwrap_or(&zero);
    let ran = last.ran_ns.saturating_sub(prev.ran_ns);
    if ran == 0 {
        return;
    }
    let secs = ran as f64 / 1e9;
    status.in_per_s = last.values_in.saturating_sub(prev.values_in) as f64 / secs;
    status.out_per_s = last.values_out.saturating_sub(prev.values_out) as f64 / secs;
    status.idle = share(last.idle_ns.saturating_sub(prev.idle_ns), ran);
    status.blocked =
        share(last.blocked_ns.saturating_sub(prev.blocked_ns), ran).min(1.0 - status.idle);
    status.busy = (1.0 - status.idle - status.blocked).max(0.0);
}
