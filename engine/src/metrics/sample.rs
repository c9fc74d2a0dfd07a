//! One node's figures at one moment, as its sampler reads them from its
//! probe and sends them to the master (once a second): counters and time
//! totals since the node started, which the master turns into rates and
//! shares of the last second.

use crate::bundle::PolicyCounts;

/// A node's figures at one moment. Totals are since the node started.
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
pub struct NodeSample {
    /// Nanoseconds since the node started.
    pub ran_ns: u64,
    /// Values taken from upstreams.
    pub values_in: u64,
    /// Values emitted.
    pub values_out: u64,
    /// Nanoseconds spent waiting for input.
    pub idle_ns: u64,
    /// Nanoseconds held back by a full output.
    pub blocked_ns: u64,
    /// The median and 99th percentile of the function's time per value or
    /// bundle since the last sample, in nanoseconds (none without calls).
    pub p50_ns: Option<u64>,
    /// See `p50_ns`.
    pub p99_ns: Option<u64>,
    /// Values the bundling table holds, and how many it may (0: no table).
    pub table: u64,
    /// See `table`.
    pub table_capacity: u64,
    /// What the bundling policies did.
    pub policy: PolicyCounts,
    /// The process's resident memory, now and at its peak, in KiB
    /// (process mode).
    pub rss_kib: Option<u64>,
    /// See `rss_kib`.
    pub peak_rss_kib: Option<u64>,
    /// The id of the last value or bundle the function was called on.
    pub last_seq_in: Option<u64>,
    /// The id of the last value emitted.
    pub last_seq_out: Option<u64>,
    /// Per input ring, in the node's input order.
    pub inputs: Vec<InputSample>,
}

/// One input of a node: the edge from an upstream instance.
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
pub struct InputSample {
    /// The upstream instance.
    pub upstream: String,
    /// Bytes of the ring this node has not released, and the ring's size.
    pub fill_bytes: u64,
    /// See `fill_bytes`.
    pub capacity: u64,
    /// Nanoseconds the node waited on this input.
    pub idle_ns: u64,
    /// The link, for an upstream on another host.
    pub link: Option<LinkSample>,
}

/// A cross-host input's link.
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
pub struct LinkSample {
    /// Bytes received so far.
    pub bytes: u64,
    /// Whether it carries the stream still.
    pub state: LinkState,
}

/// A link's state.
#[derive(
    Clone,
    Copy,
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
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Connected, carrying the stream.
    #[default]
    Up,
    /// The stream ended: everything arrived.
    Ended,
    /// The connection broke before the end (it reconnects within the
    /// run's link grace, or the run fails).
    Broken,
}

impl LinkState {
    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Ended,
            2 => Self::Broken,
            _ => Self::Up,
        }
    }

    /// Its name, as shown.
    pub fn label(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Ended => "ended",
            Self::Broken => "broken",
        }
    }
}
