//! The step of a node, without I/O: what arrives from its upstreams goes in,
//! what its function must run on (and what the policies did) comes out.

use std::time::Instant;

use crate::bundle::{BundleTable, BundleVec, Notice, Order, PolicyCounts, TableEvent};
use crate::graph::{NodeKind, NodeSpec};
use crate::replica::Share;
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
///
/// It is fed by *inputs*: one per ring the node reads. Usually each input
/// is one upstream; a replicated upstream is several inputs (one per
/// replica) that make one upstream, whose stream ends when all of them did.
/// A bundled node sees such an upstream as one: its inputs are merged by
/// id (see [`Merged`]).
#[derive(Debug)]
pub struct NodeCore<V> {
    join: Join<V>,
    /// Per input: the upstream it is.
    upstream_of: Vec<usize>,
    /// Per input: its stream ended.
    ended: Vec<bool>,
}

#[derive(Debug)]
enum Join<V> {
    Merge {
        ready: Option<(usize, Seq, V)>,
    },
    Bundle {
        table: Box<BundleTable<V>>,
        /// A sequenced replica's share of the ids: its table counts them
        /// as consecutive places.
        share: Option<Share>,
        /// The upstreams of several inputs, merged; empty if there are none.
        merged: Vec<Merged<V>>,
        /// Per upstream: its place in `merged`, if it has several inputs
        /// (looked up at every value, so not searched for).
        merged_at: Vec<Option<usize>>,
    },
}

/// An upstream of several inputs (the replicas of a node) as one stream,
/// for a bundling table, which holds back at most one value per upstream
/// (one beyond its window, or one that finds it full) and then stops
/// reading that upstream. Each input's next value waits in its front; the
/// smallest id of the fronts goes to the table as soon as the table would
/// take it in. One the table would hold back stays in its front while
/// other inputs may still send values it can take (else the value another
/// replica has for the window's head would wait behind it); once every
/// input that has not ended has a front, the smallest goes to the table,
/// and the table's window, gaps and timeouts apply as for one upstream.
#[derive(Debug)]
struct Merged<V> {
    upstream: usize,
    /// The upstream's inputs.
    inputs: Vec<usize>,
    /// Per input of the upstream (in `inputs` order): its next value.
    fronts: Vec<Option<(Seq, V)>>,
    /// Per input: the last id it sent (before a replica's share maps it).
    last: Vec<Option<Seq>>,
    /// The table was told that the upstream ended.
    ended: bool,
}

impl<V> NodeCore<V> {
    /// The core of `spec`, which must not be a spout, with one input per
    /// upstream.
    ///
    /// # Panics
    /// If `spec` is a spout: spouts have no inputs to step through.
    pub fn new(spec: &NodeSpec) -> Self {
        Self::with_inputs(spec, (0..spec.upstreams.len()).collect(), None)
    }

    /// The core of `spec` fed by inputs that are the upstreams
    /// `upstream_of` (by index in `spec`'s), taking the ids of `share` if
    /// given (a replica of a sequenced bundled node).
    ///
    /// # Panics
    /// If `spec` is a spout, or an upstream has no input.
    pub fn with_inputs(spec: &NodeSpec, upstream_of: Vec<usize>, share: Option<Share>) -> Self {
        let upstreams = spec.upstreams.len();
        let mut inputs_of = vec![0; upstreams];
        for u in &upstream_of {
            inputs_of[*u] += 1;
        }
        assert!(
            inputs_of.iter().all(|o| *o > 0),
            "node {:?}: every upstream is an input",
            spec.name
        );
        let join = match spec.kind {
            NodeKind::Spout => panic!("node {:?}: a spout has no input core", spec.name),
            NodeKind::Worker => Join::Merge { ready: None },
            NodeKind::Bundled(mut bundling) => {
                let share = share.filter(|s| s.count > 1);
                if let (Some(share), Order::Sequenced { first }) = (share, bundling.order()) {
                    bundling.order = Order::Sequenced {
                        first: share.first_place(first),
                    };
                }
                let merged: Vec<Merged<V>> = (0..upstreams)
                    .filter(|u| inputs_of[*u] > 1)
                    .map(|u| {
                        let inputs: Vec<usize> = (0..upstream_of.len())
                            .filter(|i| upstream_of[*i] == u)
                            .collect();
                        Merged {
                            upstream: u,
                            fronts: inputs.iter().map(|_| None).collect(),
                            last: vec![None; inputs.len()],
                            inputs,
                            ended: false,
                        }
                    })
                    .collect();
                let mut merged_at = vec![None; upstreams];
                for (k, m) in merged.iter().enumerate() {
                    merged_at[m.upstream] = Some(k);
                }
                Join::Bundle {
                    table: Box::new(BundleTable::new(upstreams, bundling)),
                    share,
                    merged,
                    merged_at,
                }
            }
        };
        Self {
            join,
            ended: vec![false; upstream_of.len()],
            upstream_of,
        }
    }

    /// Whether the next value of `input` may be offered now. A runtime
    /// reads only the inputs that are accepted: that is back-pressure.
    pub fn accepts(&self, input: usize) -> bool {
        if self.ended[input] {
            return false;
        }
        match &self.join {
            Join::Merge { ready } => ready.is_none(),
            Join::Bundle {
                table,
                merged,
                merged_at,
                ..
            } => {
                let upstream = self.upstream_of[input];
                match merged_at[upstream] {
                    Some(k) => merged[k].front(input).is_none(),
                    None => table.accepts(upstream),
                }
            }
        }
    }

    /// For an upstream of several inputs whose value for id `seq` a bundle
    /// misses: the inputs that have sent nothing at or past `seq` and have
    /// not ended (the replicas it waits for). Empty for an upstream of one
    /// input.
    pub fn silent_inputs(&self, upstream: usize, seq: Seq) -> Vec<usize> {
        match &self.join {
            Join::Bundle {
                merged, merged_at, ..
            } => merged_at[upstream]
                .map(|k| &merged[k])
                .into_iter()
                .flat_map(|m| {
                    m.inputs
                        .iter()
                        .zip(&m.last)
                        .filter(|(i, last)| !self.ended[**i] && last.is_none_or(|l| l < seq))
                        .map(|(i, _)| *i)
                })
                .collect(),
            Join::Merge { .. } => Vec::new(),
        }
    }

    /// Whether the node bundles its inputs (a plain worker merges them).
    pub fn bundles(&self) -> bool {
        matches!(self.join, Join::Bundle { .. })
    }

    /// Offers the next value from `input`, which must be accepted.
    pub fn offer(&mut self, input: usize, seq: Seq, value: V, now: Instant) {
        let upstream = self.upstream_of[input];
        match &mut self.join {
            Join::Merge { ready } => {
                debug_assert!(ready.is_none(), "offer before the last step was taken");
                *ready = Some((upstream, seq, value));
            }
            Join::Bundle {
                table,
                share,
                merged,
                merged_at,
            } => {
                let sent = seq;
                let seq = share.map_or(seq, |s| s.compress(seq));
                match merged_at[upstream] {
                    Some(k) => {
                        let m = &mut merged[k];
                        let at = m.position(input);
                        m.last[at] = Some(sent);
                        m.fronts[at] = Some((seq, value));
                        m.pump(table, &self.ended, now);
                    }
                    None => table.offer(upstream, seq, value, now),
                }
            }
        }
    }

    /// Records that `input` ended its stream.
    pub fn end(&mut self, input: usize, now: Instant) {
        if std::mem::replace(&mut self.ended[input], true) {
            return;
        }
        let upstream = self.upstream_of[input];
        if let Join::Bundle {
            table,
            merged,
            merged_at,
            ..
        } = &mut self.join
        {
            match merged_at[upstream] {
                // Its other inputs' fronts may be the smallest now.
                Some(k) => merged[k].pump(table, &self.ended, now),
                None => table.end(upstream, now),
            }
        }
    }

    /// The next step, if any, at `now`.
    #[inline]
    pub fn poll(&mut self, now: Instant) -> Option<Step<V>> {
        match &mut self.join {
            // A worker's step, taken once per value: kept inline.
            Join::Merge { ready } => ready.take().map(|(upstream, seq, value)| Step::Run {
                seq,
                input: Input::One { upstream, value },
            }),
            Join::Bundle { .. } => self.poll_table(now),
        }
    }

    /// The next step of a bundling table.
    fn poll_table(&mut self, now: Instant) -> Option<Step<V>> {
        let Join::Bundle {
            table,
            share,
            merged,
            ..
        } = &mut self.join
        else {
            return None;
        };
        // The table may take a merged upstream's values again.
        for m in merged.iter_mut() {
            m.pump(table, &self.ended, now);
        }
        let expand = |seq| share.map_or(seq, |s| s.expand(seq));
        table.poll(now).map(|event| match event {
            TableEvent::Bundle { seq, values } => Step::Run {
                seq: expand(seq),
                input: Input::Bundle(values),
            },
            TableEvent::Notice(n) => Step::Notice(n.map_seq(expand)),
            TableEvent::Fatal(n) => Step::Fatal(n.map_seq(expand)),
        })
    }

    /// For a sequenced bundled node with one input per upstream: the id of
    /// the bundle that values arriving now would complete and deliver at
    /// once, with nothing else pending (see [`BundleTable::lockstep_seq`]).
    /// `None` for other nodes.
    pub fn lockstep_seq(&self) -> Option<Seq> {
        match &self.join {
            Join::Bundle {
                table,
                share,
                merged,
                ..
            } if merged.is_empty() => table
                .lockstep_seq()
                .map(|seq| share.map_or(seq, |s| s.expand(seq))),
            _ => None,
        }
    }

    /// Whether `input`'s values wait in the bundling table for the other
    /// upstreams' (see [`BundleTable::leads`]). False for other nodes.
    pub fn leads(&self, input: usize) -> bool {
        match &self.join {
            Join::Merge { .. } => false,
            Join::Bundle { table, .. } => table.leads(self.upstream_of[input]),
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
            Join::Bundle { table, share, .. } => {
                table.delivered_in_lockstep(share.map_or(seq, |s| s.compress(seq)))
            }
        }
    }

    /// When [`poll`](Self::poll) must be called again even if nothing
    /// arrives (a gap timeout).
    pub fn deadline(&self) -> Option<Instant> {
        match &self.join {
            Join::Merge { .. } => None,
            Join::Bundle { table, .. } => table.deadline(),
        }
    }

    /// Whether the core keeps time (a bundling table's gap timeouts): if
    /// not, the time passed in does not matter.
    pub fn deadline_matters(&self) -> bool {
        matches!(self.join, Join::Bundle { .. })
    }

    /// Whether every upstream has ended and every step has been taken.
    pub fn is_finished(&self) -> bool {
        match &self.join {
            Join::Merge { ready } => ready.is_none() && self.ended.iter().all(|e| *e),
            Join::Bundle { table, .. } => table.is_finished(),
        }
    }

    /// What the bundling policies did so far (zero for a plain worker).
    pub fn counts(&self) -> PolicyCounts {
        match &self.join {
            Join::Merge { .. } => PolicyCounts::default(),
            Join::Bundle { table, .. } => table.counts(),
        }
    }

    /// Tells the node that the run drains (see [`BundleTable::drain`]).
    pub fn drain(&mut self) {
        if let Join::Bundle { table, .. } = &mut self.join {
            table.drain();
        }
    }

    /// Values the node holds: its memory, in values.
    pub fn buffered(&self) -> usize {
        match &self.join {
            Join::Merge { ready } => usize::from(ready.is_some()),
            Join::Bundle { table, merged, .. } => {
                let fronts: usize = merged
                    .iter()
                    .map(|m| m.fronts.iter().flatten().count())
                    .sum();
                table.buffered() + fronts
            }
        }
    }
}

impl<V> Merged<V> {
    fn position(&self, input: usize) -> usize {
        self.inputs
            .iter()
            .position(|i| *i == input)
            .expect("an input of the merged upstream")
    }

    fn front(&self, input: usize) -> Option<&(Seq, V)> {
        self.fronts[self.position(input)].as_ref()
    }

    /// Hands the table the fronts, smallest id first, while it takes the
    /// upstream's values (see the type's documentation); tells it the
    /// upstream ended once every input did and no front is left.
    fn pump(&mut self, table: &mut BundleTable<V>, ended: &[bool], now: Instant) {
        while !self.ended && table.accepts(self.upstream) {
            let smallest = (0..self.fronts.len())
                .filter_map(|at| self.fronts[at].as_ref().map(|(seq, _)| (*seq, at)))
                .min();
            let Some((seq, at)) = smallest else {
                if self.inputs.iter().all(|i| ended[*i]) {
                    self.ended = true;
                    table.end(self.upstream, now);
                }
                return;
            };
            // A value the table would hold back waits while another input
            // may still send one it can take.
            let others_may_send = self
                .inputs
                .iter()
                .zip(&self.fronts)
                .any(|(input, front)| front.is_none() && !ended[*input]);
            if !table.fits(seq) && others_may_send {
                return;
            }
            if let Some((seq, value)) = self.fronts[at].take() {
                table.offer(self.upstream, seq, value, now);
            }
        }
    }
}
