//! The step of a node, without I/O: what arrives from its upstreams goes in,
//! what its function must run on (and what the policies did) comes out.

use std::time::Instant;

use crate::bundle::{BundleTable, BundleVec, Notice, PolicyCounts, TableEvent};
use crate::graph::{NodeKind, NodeSpec};
use crate::Seq;

/// What a node's function is called with.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<V> {
    /// One value from one upstream (a worker).
    One {
        /// Index of the upstream in the node's upstream list.
        upstream: usize,
        /// The value.
        value: V,
    },
    /// One value from every upstream, in upstream order (a bundled worker).
    Bundle(BundleVec<V>),
}

/// The next thing a node must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<V> {
    /// Call the node's function.
    Run {
        /// The id of the input.
        seq: Seq,
        /// The input.
        input: Input<V>,
    },
    /// Report what a policy did; processing goes on.
    Notice(Notice),
    /// A policy failed the run.
    Fatal(Notice),
}

/// The deterministic core of a worker or bundled worker.
#[derive(Debug)]
pub struct NodeCore<V> {
    join: Join<V>,
}

#[derive(Debug)]
enum Join<V> {
    Merge {
        ended: Vec<bool>,
        ready: Option<(usize, Seq, V)>,
    },
    Bundle(Box<BundleTable<V>>),
}

impl<V> NodeCore<V> {
    /// The core of `spec`, which must not be a spout.
    ///
    /// # Panics
    /// If `spec` is a spout: spouts have no inputs to step through.
    pub fn new(spec: &NodeSpec) -> Self {
        let upstreams = spec.upstreams.len();
        let join = match spec.kind {
            NodeKind::Spout => panic!("node {:?}: a spout has no input core", spec.name),
            NodeKind::Worker => Join::Merge {
                ended: vec![false; upstreams],
                ready: None,
            },
            NodeKind::Bundled(bundling) => {
                Join::Bundle(Box::new(BundleTable::new(upstreams, bundling)))
            }
        };
        Self { join }
    }

    /// Whether the next value of `upstream` may be offered now. A runtime
    /// reads only the upstreams that are accepted: that is back-pressure.
    pub fn accepts(&self, upstream: usize) -> bool {
        match &self.join {
            Join::Merge { ended, ready } => !ended[upstream] && ready.is_none(),
            Join::Bundle(table) => table.accepts(upstream),
        }
    }

    /// Whether the node bundles its inputs (a plain worker merges them).
    pub fn bundles(&self) -> bool {
        matches!(self.join, Join::Bundle(_))
    }

    /// Offers the next value from `upstream`, which must be accepted.
    pub fn offer(&mut self, upstream: usize, seq: Seq, value: V, now: Instant) {
        match &mut self.join {
            Join::Merge { ready, .. } => {
                debug_assert!(ready.is_none(), "offer before the last step was taken");
                *ready = Some((upstream, seq, value));
            }
            Join::Bundle(table) => table.offer(upstream, seq, value, now),
        }
    }

    /// Records that `upstream` ended its stream.
    pub fn end(&mut self, upstream: usize, now: Instant) {
        match &mut self.join {
            Join::Merge { ended, .. } => ended[upstream] = true,
            Join::Bundle(table) => table.end(upstream, now),
        }
    }

    /// The next step, if any, at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Step<V>> {
        match &mut self.join {
            Join::Merge { ready, .. } => ready.take().map(|(upstream, seq, value)| Step::Run {
                seq,
                input: Input::One { upstream, value },
            }),
            Join::Bundle(table) => table.poll(now).map(|event| match event {
                TableEvent::Bundle { seq, values } => Step::Run {
                    seq,
                    input: Input::Bundle(values),
                },
                TableEvent::Notice(n) => Step::Notice(n),
                TableEvent::Fatal(n) => Step::Fatal(n),
            }),
        }
    }

    /// For a sequenced bundled node: the id of the bundle that values
    /// arriving now would complete and deliver at once, with nothing else
    /// pending (see [`BundleTable::lockstep_seq`]). `None` for other nodes.
    pub fn lockstep_seq(&self) -> Option<Seq> {
        match &self.join {
            Join::Merge { .. } => None,
            Join::Bundle(table) => table.lockstep_seq(),
        }
    }

    /// Whether `upstream`'s values wait in the bundling table for the other
    /// upstreams' (see [`BundleTable::leads`]). False for other nodes.
    pub fn leads(&self, upstream: usize) -> bool {
        match &self.join {
            Join::Merge { .. } => false,
            Join::Bundle(table) => table.leads(upstream),
        }
    }

    /// Records that the runtime called the function on bundle `seq`, which
    /// [`lockstep_seq`](Self::lockstep_seq) gave, without offering its
    /// values.
    ///
    /// # Panics
    /// If `seq` is not the lockstep id.
    pub fn delivered_in_lockstep(&mut self, seq: Seq) {
        match &mut self.join {
            Join::Merge { .. } => panic!("bundle {seq} delivered to a merging node"),
            Join::Bundle(table) => table.delivered_in_lockstep(seq),
        }
    }

    /// When [`poll`](Self::poll) must be called again even if nothing
    /// arrives (a gap timeout).
    pub fn deadline(&self) -> Option<Instant> {
        match &self.join {
            Join::Merge { .. } => None,
            Join::Bundle(table) => table.deadline(),
        }
    }

    /// Whether the core keeps time (a bundling table's gap timeouts): if
    /// not, the time passed in does not matter.
    pub fn deadline_matters(&self) -> bool {
        matches!(self.join, Join::Bundle(_))
    }

    /// Whether every upstream has ended and every step has been taken.
    pub fn is_finished(&self) -> bool {
        match &self.join {
            Join::Merge { ended, ready } => ready.is_none() && ended.iter().all(|e| *e),
            Join::Bundle(table) => table.is_finished(),
        }
    }

    /// What the bundling policies did so far (zero for a plain worker).
    pub fn counts(&self) -> PolicyCounts {
        match &self.join {
            Join::Merge { .. } => PolicyCounts::default(),
            Join::Bundle(table) => table.counts(),
        }
    }

    /// Tells the node that the run drains (see [`BundleTable::drain`]).
    pub fn drain(&mut self) {
        if let Join::Bundle(table) = &mut self.join {
            table.drain();
        }
    }

    /// Values the node holds: its memory, in values.
    pub fn buffered(&self) -> usize {
        match &self.join {
            Join::Merge { ready, .. } => usize::from(ready.is_some()),
            Join::Bundle(table) => table.buffered(),
        }
    }
}
