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
            Notice::Restarted {
                restart,
                restarts,
                cause,
            } => write!(
                f,
                "node {node}: restarted (restart {restart} of {restarts}): {cause}"
            ),
        }
    }
}

/// A bundle still incomplete at end of stream.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct IncompleteBundle {
    /// Its id.
    pub seq: Seq,
    /// The upstreams that did not send a value for it.
    pub missing: Vec<String>,
}

/// What one node did.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
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
    /// Time the node worked: in its function and the engine's work around
    /// it (a spout's own pauses included), neither waiting for input nor
    /// held back by its consumers.
    #[serde(rename = "busy_s", with = "seconds", default)]
    pub busy: Duration,
    /// Time it waited for input (a spout: none).
    #[serde(rename = "idle_s", with = "seconds", default)]
    pub idle: Duration,
    /// Time it was held back by its consumers: its output full.
    #[serde(rename = "blocked_s", with = "seconds", default)]
    pub blocked: Duration,
    /// Its restarts, in order (process mode, with `Launch::restarts`).
    /// The other figures are its last process's, but `messages_out`,
    /// `replayed` and `skipped`, which count over its processes.
    #[serde(default)]
    pub restarts: Vec<Restart>,
    /// Values its restarted processes read again and processed again
    /// (their outputs had not been published when the process died).
    #[serde(default)]
    pub replayed: u64,
    /// Values its restarted processes read again and dropped, done with
    /// already (their outputs were published); a spout's: sends dropped as
    /// sent already.
    #[serde(default)]
    pub skipped: u64,
}

/// One restart of a node: why its process ended, and how long until its
/// successor was running.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Restart {
    /// How its process ended (`killed by signal 9 (SIGKILL)`), or the
    /// failure it reported.
    pub cause: String,
    /// From its end seen to its successor told to start.
    #[serde(rename = "recovered_in_s", with = "seconds", default)]
    pub recovered_in: Duration,
}

impl NodeReport {
    /// The share of its time the node was busy, 0 to 1 (0 if it took no
    /// time at all).
    pub fn busy_share(&self) -> f64 {
        share(self.busy, self)
    }

    /// The share of its time its consumers held it back, 0 to 1.
    pub fn blocked_share(&self) -> f64 {
        share(self.blocked, self)
    }

    /// Sets the time figures of a node that ran for `ran`, of which it
    /// waited `idle` for input and was held back `blocked`.
    pub(crate) fn timed(&mut self, ran: Duration, idle: Duration, blocked: Duration) {
        (self.busy, self.idle, self.blocked) = split(ran, idle, blocked);
    }
}

/// A node's time `ran` split into busy, idle and blocked, from the time it
/// waited for input and was held back (each counted within what is left).
pub(crate) fn split(
    ran: Duration,
    idle: Duration,
    blocked: Duration,
) -> (Duration, Duration, Duration) {
    let idle = idle.min(ran);
    let blocked = blocked.min(ran - idle);
    (ran - idle - blocked, idle, blocked)
}

/// `part` of `all`, 0 to 1 (0 of nothing).
pub(crate) fn ratio(part: f64, all: f64) -> f64 {
    if all > 0.0 {
        (part / all).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn share(part: Duration, n: &NodeReport) -> f64 {
    ratio(
        part.as_secs_f64(),
        (n.busy + n.idle + n.blocked).as_secs_f64(),
    )
}

/// A node counts as the run's bottleneck when it was busy at least this
/// share of its time.
pub const BOTTLENECK_BUSY: f64 = 0.5;

/// What a run did. As JSON (`serde`), durations are seconds: `elapsed_s`,
/// `launch_s`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// One report per node, in declaration order.
    pub nodes: Vec<NodeReport>,
    /// From start to end.
    #[serde(rename = "elapsed_s", with = "seconds")]
    pub elapsed: Duration,
    /// In process mode, from the launch to the moment every node was ready
    /// and the spouts were told to start (host agents and node processes
    /// started, rings created, links set up); none if the run never started,
    /// and in local mode.
    #[serde(rename = "launch_s", with = "seconds::optional")]
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

impl RunReport {
    /// The node that held the run back: of the nodes busy at least
    /// [`BOTTLENECK_BUSY`] of their time and held back by their consumers
    /// less than they were busy (a node mostly blocked waits for the one
    /// downstream), the busiest. `None` when no node was that busy: the run
    /// was paced by its spouts or by nothing in particular.
    pub fn bottleneck(&self) -> Option<&NodeReport> {
        bottleneck_of(
            self.nodes
                .iter()
                .map(|n| (n, n.busy_share(), n.blocked_share())),
        )
    }
}

/// Of `nodes` (each with its busy and blocked shares of a time), the one
/// that held the others back: busy at least [`BOTTLENECK_BUSY`], held back
/// by its consumers less than it was busy, and the busiest of those. The
/// rule of the final report and of the live figures.
pub(crate) fn bottleneck_of<T>(nodes: impl Iterator<Item = (T, f64, f64)>) -> Option<T> {
    nodes
        .filter(|(_, busy, blocked)| *busy >= BOTTLENECK_BUSY && blocked < busy)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _, _)| n)
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
            "  {:<16} {:<8} {:>12} {:>12} {:>6} {:>6} {:>6} {:>7} {:>10} {:>6} {:>8} {:>9}",
            "node",
            "kind",
            "in",
            "out",
            "dup",
            "late",
            "gap",
            "evicted",
            "incomplete",
            "busy%",
            "blocked%",
            "rss MiB"
        )?;
        for n in &self.nodes {
            let p = &n.policy;
            let rss = n
                .peak_rss_kib
                .map(|k| format!("{:.1}", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  {:<16} {:<8} {:>12} {:>12} {:>6} {:>6} {:>6} {:>7} {:>10} {:>6.0} {:>8.0} {:>9}",
                n.name,
                n.kind,
                n.messages_in,
                n.messages_out,
                p.duplicates,
                p.late,
                p.gaps,
                p.evicted,
                p.incomplete,
                n.busy_share() * 100.0,
                n.blocked_share() * 100.0,
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
            for (i, r) in n.restarts.iter().enumerate() {
                writeln!(
                    f,
                    "    restart {}: {}; running again after {:.0} ms",
                    i + 1,
                    r.cause,
                    r.recovered_in.as_secs_f64() * 1e3
                )?;
            }
            if n.replayed > 0 || n.skipped > 0 {
                writeln!(
                    f,
                    "    after its restarts: {} values processed again, {} dropped as done",
                    n.replayed, n.skipped
                )?;
            }
            if let Some(e) = &n.error {
                writeln!(f, "    error: {e}")?;
            }
        }
        if let Some(n) = self.bottleneck() {
            writeln!(
                f,
                "  bottleneck: {} (busy {:.0} % of its time)",
                n.name,
                n.busy_share() * 100.0
            )?;
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

/// Durations as seconds (a float), for reports as JSON.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }

    pub(super) mod optional {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(in super::super) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&d.as_secs_f64()),
                None => s.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<f64>::deserialize(d)?
                .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn a_report_reads_back_from_its_json_with_durations_in_seconds() {
        let report = RunReport {
            nodes: vec![NodeReport {
                name: "C".into(),
                kind: "bundled".into(),
                messages_in: 20,
                messages_out: 9,
                policy: PolicyCounts {
                    gaps: 1,
                    ..PolicyCounts::default()
                },
                incomplete: vec![IncompleteBundle {
                    seq: 7,
                    missing: vec!["B".into()],
                }],
                error: None,
                peak_rss_kib: Some(4096),
                busy: Duration::from_millis(900),
                idle: Duration::from_millis(500),
                blocked: Duration::from_millis(100),
                restarts: vec![Restart {
                    cause: "killed by signal 9 (SIGKILL)".into(),
                    recovered_in: Duration::from_millis(12),
                }],
                replayed: 3,
                skipped: 2,
            }],
            elapsed: Duration::from_millis(1500),
            launch: Some(Duration::from_millis(250)),
            drained_on_request: false,
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"elapsed_s\":1.5"), "{json}");
        assert!(json.contains("\"launch_s\":0.25"), "{json}");
        assert!(json.contains("\"gaps\":1"), "{json}");
        assert!(json.contains("\"recovered_in_s\":0.012"), "{json}");
        assert_eq!(serde_json::from_str::<RunReport>(&json).unwrap(), report);
        let local = RunReport {
            launch: None,
            ..report
        };
        let json = serde_json::to_string(&local).unwrap();
        assert!(json.contains("\"launch_s\":null"), "{json}");
        assert_eq!(serde_json::from_str::<RunReport>(&json).unwrap(), local);
    }
}
