//! What a run looks like at one moment, as the master shows it: the live
//! view draws it, the status page fetches it as JSON, the Prometheus
//! endpoint encodes it. Rates and shares are of the last interval between
//! two samples of a node (about a second); counters are totals.

use serde::Serialize;

use crate::bundle::PolicyCounts;
use crate::report::RunReport;

/// A run at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Seconds since the launch.
    pub elapsed_s: f64,
    /// Where the run is.
    pub run: RunState,
    /// Every instance, in the run's order (a node's replicas in a row).
    pub nodes: Vec<NodeStatus>,
    /// Every edge between instances.
    pub edges: Vec<EdgeStatus>,
    /// The node that holds the run back now, if one does (see
    /// [`RunReport::bottleneck`]'s rule, applied to the last interval).
    pub bottleneck: Option<String>,
    /// Once the run ended: its report.
    pub report: Option<RunReport>,
    /// Once the run ended, if it failed: why.
    pub failure: Option<String>,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Nodes are starting.
    #[default]
    Starting,
    /// Values flow.
    Running,
    /// It ended: every node finished.
    Finished,
    /// It ended with a failure.
    Failed,
}

/// Where one node instance is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not heard from yet.
    #[default]
    Starting,
    /// Running: its figures come every second.
    Running,
    /// It finished its work.
    Done,
    /// It failed (its function, or its input).
    Failed,
    /// Its process ended without a report: killed, crashed.
    Dead,
    /// Its process ended and is being started again (its restarts allow
    /// it); its figures start afresh with its new process.
    Restarting,
}

impl NodeState {
    /// Its name, as shown.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Restarting => "restarting",
        }
    }
}

/// One node instance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    /// The instance's name (`J[1]` for a replica).
    pub name: String,
    /// The node it is an instance of, and which replica (0 for a node of
    /// one replica).
    pub node: String,
    /// See `node`.
    pub replica: usize,
    /// `spout`, `worker` or `bundled`.
    pub kind: String,
    /// Its host (`localhost` for this machine).
    pub host: String,
    /// Where it is.
    pub state: NodeState,
    /// Values taken and emitted, in all.
    pub values_in: u64,
    /// See `values_in`.
    pub values_out: u64,
    /// Values taken and emitted per second, over the last interval.
    pub in_per_s: f64,
    /// See `in_per_s`.
    pub out_per_s: f64,
    /// Shares of the last interval (0 to 1): working, waiting for input,
    /// held back by a full output.
    pub busy: f64,
    /// See `busy`.
    pub idle: f64,
    /// See `busy`.
    pub blocked: f64,
    /// Seconds working, waiting for input and held back, since the node
    /// started.
    pub busy_s: f64,
    /// See `busy_s`.
    pub idle_s: f64,
    /// See `busy_s`.
    pub blocked_s: f64,
    /// The median and 99th percentile of its function's time per value or
    /// bundle over the last interval, in seconds.
    pub p50_s: Option<f64>,
    /// See `p50_s`.
    pub p99_s: Option<f64>,
    /// Values its bundling table holds, and its share of the table's room.
    pub table: u64,
    /// See `table`.
    pub table_fill: f64,
    /// What its bundling policies did.
    pub policy: PolicyCounts,
    /// Its process's resident memory, now and at its peak, in KiB
    /// (process mode).
    pub rss_kib: Option<u64>,
    /// See `rss_kib`.
    pub peak_rss_kib: Option<u64>,
    /// Why it failed or died (its last process, for one restarted).
    pub error: Option<String>,
    /// Times its process was restarted.
    pub restarts: u64,
}

impl NodeStatus {
    /// Whether it is still expected to send figures.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            NodeState::Starting | NodeState::Running | NodeState::Restarting
        )
    }

    /// It moves no more: its rates and shares are zero (its totals stay).
    pub(crate) fn stop_moving(&mut self) {
        (self.in_per_s, self.out_per_s) = (0.0, 0.0);
        (self.busy, self.idle, self.blocked) = (0.0, 0.0, 0.0);
    }
}

/// Which end of an edge waits for the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Waiting {
    /// Neither, or not known.
    #[default]
    Neither,
    /// The producer: the ring is full, its consumer is slower.
    Producer,
    /// The consumer: the ring is empty, it waits for values.
    Consumer,
}

impl Waiting {
    /// Its name, as shown.
    pub fn label(self) -> &'static str {
        match self {
            Self::Neither => "-",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// The edge from one instance to another.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EdgeStatus {
    /// The producing instance.
    pub from: String,
    /// The consuming instance.
    pub to: String,
    /// Bytes of the ring the consumer holds (written, not yet released),
    /// the ring's size, and their ratio (0 to 1). For an edge across
    /// hosts, the ring is the consumer's mirror of the producer's.
    pub fill_bytes: u64,
    /// See `fill_bytes`.
    pub capacity: u64,
    /// See `fill_bytes`.
    pub fill: f64,
    /// How many ids the consumer is behind: the last id the producer
    /// emitted less the last the consumer's function was called on (for
    /// workers that keep their inputs' ids, how far behind it is).
    pub lag: Option<u64>,
    /// Which end waits for the other.
    pub waiting: Waiting,
    /// For an edge across hosts: its link.
    pub link: Option<LinkStatus>,
}

/// A cross-host edge's link.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkStatus {
    /// Bytes received in all, and per second over the last interval.
    pub bytes: u64,
    /// See `bytes`.
    pub bytes_per_s: f64,
    /// `up`, `ended` or `broken`.
    pub state: super::sample::LinkState,
}

impl Status {
    /// The status of the instance named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
