//! What a bundling table tells the node that drives it.

use crate::Seq;

/// Something a policy did, counted in the report and shown to the debugger.
/// Upstreams are named by their index in the node's upstream list.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Notice {
    /// A second value for a pending `(seq, upstream)` was dropped.
    Duplicate {
        /// The bundle's id.
        seq: Seq,
        /// The upstream that sent it twice.
        upstream: usize,
    },
    /// A value for an id already processed (or given up) was dropped.
    Late {
        /// The value's id.
        seq: Seq,
        /// The upstream that sent it.
        upstream: usize,
    },
    /// A bundle that never completed was given up after the gap timeout (or
    /// at end of stream, when later bundles were complete).
    Gap {
        /// The missing bundle's id.
        seq: Seq,
        /// The upstreams that did not send a value for it.
        missing: Vec<usize>,
    },
    /// A pending bundle was dropped to make room ([`OverflowPolicy::EvictOldest`](super::OverflowPolicy::EvictOldest)).
    Evicted {
        /// The dropped bundle's id.
        seq: Seq,
        /// The upstreams that had not sent a value for it.
        missing: Vec<usize>,
    },
    /// A value for a new id did not fit in a full table
    /// ([`OverflowPolicy::Fail`](super::OverflowPolicy::Fail)).
    Overflow {
        /// The id that did not fit.
        seq: Seq,
        /// The upstream that sent it.
        upstream: usize,
    },
    /// A bundle was still incomplete when every upstream had ended.
    Incomplete {
        /// The bundle's id.
        seq: Seq,
        /// The upstreams that did not send a value for it.
        missing: Vec<usize>,
    },
    /// The node's process ended and was started again (process mode, with
    /// `Launch::restarts`): not a bundling policy's, but told the same way.
    Restarted {
        /// Which restart this is (1 for the first), of how many allowed.
        restart: u32,
        /// See `restart`.
        restarts: u32,
        /// How its process ended.
        cause: String,
    },
}

impl Notice {
    /// The same notice about id `f(seq)`: a replica's table counts its
    /// share of the ids as consecutive places, which its node maps back.
    pub fn map_seq(mut self, f: impl FnOnce(Seq) -> Seq) -> Self {
        match &mut self {
            Notice::Duplicate { seq, .. }
            | Notice::Late { seq, .. }
            | Notice::Gap { seq, .. }
            | Notice::Evicted { seq, .. }
            | Notice::Overflow { seq, .. }
            | Notice::Incomplete { seq, .. } => *seq = f(*seq),
            Notice::Restarted { .. } => {}
        }
        self
    }

    /// The id the notice is about.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Notice::Duplicate { seq, .. }
            | Notice::Late { seq, .. }
            | Notice::Gap { seq, .. }
            | Notice::Evicted { seq, .. }
            | Notice::Overflow { seq, .. }
            | Notice::Incomplete { seq, .. } => Some(*seq),
            Notice::Restarted { .. } => None,
        }
    }
}

/// The next thing a bundling table hands to its node.
#[derive(Debug, PartialEq, Eq)]
pub enum TableEvent<V> {
    /// A complete bundle: one value per upstream, in upstream order.
    Bundle {
        /// The bundle's id.
        seq: Seq,
        /// The values, indexed by upstream.
        values: super::BundleVec<V>,
    },
    /// A policy acted; processing goes on.
    Notice(Notice),
    /// A policy failed the run; the table delivers nothing more.
    Fatal(Notice),
}

/// Counts of what the policies did.
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
pub struct PolicyCounts {
    /// Duplicate values dropped.
    pub duplicates: u64,
    /// Late values dropped.
    pub late: u64,
    /// Bundles given up as gaps.
    pub gaps: u64,
    /// Bundles evicted from a full table.
    pub evicted: u64,
    /// Bundles incomplete at end of stream.
    pub incomplete: u64,
}

impl PolicyCounts {
    pub(crate) fn count(&mut self, notice: &Notice) {
        match notice {
            Notice::Duplicate { .. } => self.duplicates += 1,
            Notice::Late { .. } => self.late += 1,
            Notice::Gap { .. } => self.gaps += 1,
            Notice::Evicted { .. } => self.evicted += 1,
            // A full table that fails the run is the run's error, not a count.
            Notice::Overflow { .. } => {}
            Notice::Incomplete { .. } => self.incomplete += 1,
            // In the node's report's restarts.
            Notice::Restarted { .. } => {}
        }
    }
}
