//! What a run did, node by node, and why it failed if it did.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::bundle::{Notice, PolicyCounts};
pub use crate::failure::Failure;
use crate::Seq;

/// At most this many incomplete bundles are listed per node in a report;
/// all are counted.
pub const LISTED_INCOMPLETE: usize = 16;

/// A policy event of a node, with its upstreams' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEvent {
    /// The node whose policy acted.
    pub node: String,
    /// What it did; upstreams are indexes into [`upstreams`](Self::upstreams).
    pub notice: Notice,
    /// The node's upstreams, in input order.
    pub upstreams: Arc<[String]>,
}

impl PolicyEvent {
    fn names(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|i| self.upstreams[*i].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The names of the upstreams that did not send the bundle, for gaps,
    /// evictions and incomplete bundles.
    pub fn missing(&self) -> Vec<String> {
        match &self.notice {
            Notice::Gap { missing, .. }
            | Notice::Evicted { missing, .. }
            | Notice::Incomplete { missing, .. } => {
                missing.iter().map(|i| self.upstreams[*i].clone()).collect()
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for PolicyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = &self.node;
        match &self.notice {
            Notice::Duplicate { seq, upstream } => write!(
                f,
                "node {node}: dropped a duplicate of seq {seq} from {}",
                self.upstreams[*upstream]
            ),
            Notice::Late { seq, upstream } => write!(
                f,
                "node {node}: dropped late seq {seq} from {} (already processed)",
                self.upstreams[*upstream]
            ),
            Notice::Gap { seq, missing } => write!(
                f,
                "node {node}: seq {seq} never completed: nothing from {}",
                self.names(missing)
            ),
            Notice::Evicted { seq, missing } => write!(
                f,
                "node {node}: evicted pending seq {seq} from a full table: nothing from {}",
                self.names(missing)
            ),
            Notice::Overflow { seq, upstream } => write!(
                f,
                "node {node}: table full when seq {seq} arrived from {}",
                self.upstreams[*upstream]
            ),
            Notice::Incomplete { seq, missing } => write!(
                f,
                "node {node}: seq {seq} incomplete at end of stream: nothing from {}",
                self.names(missing)
            ),
        }
    }
}

/// A bundle still incomplete at end of stream.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IncompleteBundle {
    /// Its id.
    pub seq: Seq,
    /// The upstreams that did not send a value for it.
    pub missing: Vec<String>,
}

/// What one node did.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// `spout`, `worker` or `bundled`.
    pub kind: String,
    /// Values received from upstreams, dropped ones included.
    pub messages_in: u64,
    /// Values emitted.
    pub messages_out: u64,
    /// What the bundling policies did.
    pub policy: PolicyCounts,
    /// The first [`LISTED_INCOMPLETE`] bundles incomplete at end of stream.
    pub incomplete: Vec<IncompleteBundle>,
    /// Why the node failed, if it did.
    pub error: Option<String>,
    /// The peak resident memory of the node's process, in KiB (process
    /// mode; none in local mode, where nodes share one process).
    pub peak_rss_kib: Option<u64>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// One report per node, in declaration order.
    pub nodes: Vec<NodeReport>,
    /// From start to end.
    pub elapsed: Duration,
    /// In process mode, from the launch to the moment every node was ready
    /// and the spouts were told to start (host agents and node processes
    /// started, rings created, links set up); none if the run never started,
    /// and in local mode.
    pub launch: Option<Duration>,
    /// Whether the run was asked to drain (Ctrl-C or a stop request) before
    /// its spouts ended.
    pub drained_on_request: bool,
}

impl RunReport {
    /// The report of the node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "run report ({:.3}s{}):",
            self.elapsed.as_secs_f64(),
            if self.drained_on_request {
                ", drained on request"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  {:<16} {:<8} {:>12} {:>12} {:>6} {:>6} {:>6} {:>7} {:>10} {:>9}",
            "node", "kind", "in", "out", "dup", "late", "gap", "evicted", "incomplete", "rss MiB"
        )?;
        for n in &self.nodes {
            let p = &n.policy;
            let rss = n
                .peak_rss_kib
                .map(|k| format!("{:.1}", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  {:<16} {:<8} {:>12} {:>12} {:>6} {:>6} {:>6} {:>7} {:>10} {:>9}",
                n.name,
                n.kind,
                n.messages_in,
                n.messages_out,
                p.duplicates,
                p.late,
                p.gaps,
                p.evicted,
                p.incomplete,
                rss
            )?;
            for b in &n.incomplete {
                writeln!(
                    f,
                    "    incomplete seq {}: nothing from {}",
                    b.seq,
                    b.missing.join(", ")
                )?;
            }
            if let Some(e) = &n.error {
                writeln!(f, "    error: {e}")?;
            }
        }
        Ok(())
    }
}

/// A failed run: the cause and what the run did until then.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{failure}")]
pub struct RunFailure {
    /// The first failure.
    pub failure: Failure,
    /// What the run did until it stopped.
    pub report: RunReport,
}
