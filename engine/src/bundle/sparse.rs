//! The table of an unordered bundled node: pending bundles keyed by id, for
//! ids that may be sparse or hashed, bounded in size.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::Instant;

use super::config::{Bundling, GapPolicy, OverflowPolicy};
use super::event::{Notice, PolicyCounts, TableEvent};
use super::seq_hash::SeqHasher;
use crate::Seq;

type SeqMap<V> = HashMap<Seq, V, BuildHasherDefault<SeqHasher>>;
type SeqSet = HashSet<Seq, BuildHasherDefault<SeqHasher>>;

/// The fewest finished ids an unordered table remembers.
pub(crate) const MIN_REMEMBERED: usize = 4096;

/// An unordered bundling table.
///
/// Invariants:
/// - `pending` holds at most `window` bundles, each with at least one value
///   and fewer than one per upstream; `by_age` indexes the same bundles by
///   arrival stamp;
/// - `done` remembers the last [`remembered`](Self::remembered) ids delivered
///   or given up, so that a straggler for one of them is counted late instead
///   of opening a bundle that could never complete (a straggler older than
///   that opens a new bundle, which ends as a gap or incomplete);
/// - at most one value per upstream is held back, only under
///   [`OverflowPolicy::Backpressure`].
#[derive(Debug)]
pub struct SparseTable<V> {
    config: Bundling,
    upstreams: usize,
    pending: SeqMap<Pending<V>>,
    by_age: BTreeMap<u64, Seq>,
    stamp: u64,
    done: SeqSet,
    done_order: VecDeque<Seq>,
    held: Vec<Option<(Seq, V)>>,
    ended: Vec<bool>,
    events: VecDeque<TableEvent<V>>,
    counts: PolicyCounts,
    failed: bool,
}

#[derive(Debug)]
struct Pending<V> {
    values: Box<[Option<V>]>,
    count: usize,
    stamp: u64,
    arrived: Instant,
}

impl<V> Pending<V> {
    fn missing(&self) -> Vec<usize> {
        (0..self.values.len())
            .filter(|u| self.values[*u].is_none())
            .collect()
    }
}

impl<V> SparseTable<V> {
    /// A table over `upstreams` inputs.
    ///
    /// # Panics
    /// If `upstreams` or the configured capacity is zero (graph validation
    /// rejects both before a table is made).
    pub fn new(upstreams: usize, config: Bundling) -> Self {
        assert!(upstreams > 0 && config.window > 0, "empty bundling table");
        Self {
            config,
            upstreams,
            pending: SeqMap::default(),
            by_age: BTreeMap::new(),
            stamp: 0,
            done: SeqSet::default(),
            done_order: VecDeque::new(),
            held: (0..upstreams).map(|_| None).collect(),
            ended: vec![false; upstreams],
            events: VecDeque::new(),
            counts: PolicyCounts::default(),
            failed: false,
        }
    }

    /// Whether a value from `upstream` may be offered now.
    pub fn accepts(&self, upstream: usize) -> bool {
        !self.failed && !self.ended[upstream] && self.held[upstream].is_none()
    }

    /// Whether a value with id `seq` would be taken in now, rather than
    /// held back for want of room (which stops its upstream being read).
    pub fn fits(&self, seq: Seq) -> bool {
        self.pending.len() < self.config.window
            || self.config.on_overflow != OverflowPolicy::Backpressure
            || self.pending.contains_key(&seq)
            || self.done.contains(&seq)
    }

    /// Offers the next value of `upstream`, which must be accepted.
    pub fn offer(&mut self, upstream: usize, seq: Seq, value: V, now: Instant) {
        debug_assert!(self.accepts(upstream), "offer from a blocked upstream");
        if !self.failed {
            self.store(upstream, seq, value, now);
        }
    }

    /// Marks `upstream` as ended: the bundles that miss its value can never
    /// complete and are reported incomplete.
    pub fn end(&mut self, upstream: usize, now: Instant) {
        self.ended[upstream] = true;
        let mut orphans: Vec<(u64, Seq)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.values[upstream].is_none())
            .map(|(seq, p)| (p.stamp, *seq))
            .collect();
        orphans.sort_unstable();
        for (_, seq) in orphans {
            if let Some(p) = self.remove(seq) {
                self.remember(seq);
                self.notice(Notice::Incomplete {
                    seq,
                    missing: p.missing(),
                });
            }
        }
        self.admit_held(now);
    }

    /// The next event, applying the gap timeout at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<TableEvent<V>> {
        if self.events.is_empty() && !self.failed {
            if let Some((seq, arrived)) = self.oldest() {
                if now.saturating_duration_since(arrived) >= self.config.gap_timeout {
                    self.give_up(seq, now);
                }
            }
        }
        self.events.pop_front()
    }

    /// When [`poll`](Self::poll) must be called again for the gap timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest()
            .map(|(_, arrived)| arrived + self.config.gap_timeout)
    }

    /// Whether every upstream has ended and every event has been taken.
    pub fn is_finished(&self) -> bool {
        self.events.is_empty()
            && (self.failed || (self.ended.iter().all(|e| *e) && self.buffered() == 0))
    }

    /// Values stored or held back: the table's memory, in values.
    pub fn buffered(&self) -> usize {
        self.pending.values().map(|p| p.count).sum::<usize>()
            + self.held.iter().filter(|h| h.is_some()).count()
    }

    /// What the policies did so far.
    pub fn counts(&self) -> PolicyCounts {
        self.counts
    }

    /// From now on, gaps are skipped and counted: see
    /// [`BundleTable::drain`](super::BundleTable::drain).
    pub fn drain(&mut self) {
        self.config.on_gap = GapPolicy::Skip;
    }

    /// How many finished ids the table remembers to recognise late values:
    /// four times the capacity, and at least 4096.
    pub fn remembered(&self) -> usize {
        (self.config.window.saturating_mul(4)).max(MIN_REMEMBERED)
    }

    fn store(&mut self, upstream: usize, seq: Seq, value: V, now: Instant) {
        if self.done.contains(&seq) {
            self.notice(Notice::Late { seq, upstream });
            return;
        }
        if let Some(p) = self.pending.get_mut(&seq) {
            if p.values[upstream].is_some() {
                self.notice(Notice::Duplicate { seq, upstream });
                return;
            }
            p.values[upstream] = Some(value);
            p.count += 1;
            if p.count == self.upstreams {
                let p = self.remove(seq).expect("pending bundle");
                self.remember(seq);
                let values = p.values.into_vec().into_iter().flatten().collect();
                self.events.push_back(TableEvent::Bundle { seq, values });
                self.admit_held(now);
            }
            return;
        }
        if (0..self.upstreams).any(|u| u != upstream && self.ended[u]) {
            // A new bundle that misses an ended upstream can never complete.
            // (The offering upstream may have ended itself: a value it sent
            // before its end was held back while the table was full.) The
            // values other upstreams hold back for it go with it: they
            // arrived, and are not missing.
            let mut arrived = vec![false; self.upstreams];
            arrived[upstream] = true;
            for (u, held) in self.held.iter_mut().enumerate() {
                if matches!(held, Some((s, _)) if *s == seq) {
                    *held = None;
                    arrived[u] = true;
                }
            }
            let missing = (0..self.upstreams).filter(|u| !arrived[*u]).collect();
            self.remember(seq);
            self.notice(Notice::Incomplete { seq, missing });
            return;
        }
        if self.upstreams == 1 {
            self.remember(seq);
            self.events.push_back(TableEvent::Bundle {
                seq,
                values: std::iter::once(value).collect(),
            });
            return;
        }
        if self.pending.len() >= self.config.window {
            match self.config.on_overflow {
                OverflowPolicy::Backpressure => {
                    self.held[upstream] = Some((seq, value));
                    return;
                }
                OverflowPolicy::EvictOldest => {
                    if let Some((oldest, _)) = self.oldest() {
                        let p = self.remove(oldest).expect("oldest pending bundle");
                        self.remember(oldest);
                        self.notice(Notice::Evicted {
                            seq: oldest,
                            missing: p.missing(),
                        });
                    }
                }
                OverflowPolicy::Fail => {
                    self.fail(Notice::Overflow { seq, upstream });
                    return;
                }
            }
        }
        let mut values: Box<[Option<V>]> = (0..self.upstreams).map(|_| None).collect();
        values[upstream] = Some(value);
        self.stamp += 1;
        self.by_age.insert(self.stamp, seq);
        self.pending.insert(
            seq,
            Pending {
                values,
                count: 1,
                stamp: self.stamp,
                arrived: now,
            },
        );
        // Values other upstreams hold back for this id (they came while
        // the table was full) join it: they take no more room.
        for u in 0..self.upstreams {
            if matches!(&self.held[u], Some((s, _)) if *s == seq) {
                if let Some((s, value)) = self.held[u].take() {
                    self.store(u, s, value, now);
                }
            }
        }
    }

    /// Stores the values held back while the table was full, as long as
    /// there is room.
    fn admit_held(&mut self, now: Instant) {
        for upstream in 0..self.upstreams {
            if self.pending.len() >= self.config.window || self.failed {
                return;
            }
            if let Some((seq, value)) = self.held[upstream].take() {
                self.store(upstream, seq, value, now);
            }
        }
    }

    fn give_up(&mut self, seq: Seq, now: Instant) {
        let Some(p) = self.pending.get(&seq) else {
            return;
        };
        let notice = Notice::Gap {
            seq,
            missing: p.missing(),
        };
        match self.config.on_gap {
            GapPolicy::Fail => self.fail(notice),
            GapPolicy::Skip => {
                self.remove(seq);
                self.remember(seq);
                self.notice(notice);
                self.admit_held(now);
            }
        }
    }

    fn oldest(&self) -> Option<(Seq, Instant)> {
        let (_, seq) = self.by_age.first_key_value()?;
        Some((*seq, self.pending[seq].arrived))
    }

    fn remove(&mut self, seq: Seq) -> Option<Pending<V>> {
        let p = self.pending.remove(&seq)?;
        self.by_age.remove(&p.stamp);
        Some(p)
    }

    fn remember(&mut self, seq: Seq) {
        if self.done.insert(seq) {
            self.done_order.push_back(seq);
            if self.done_order.len() > self.remembered() {
                if let Some(old) = self.done_order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
    }

    fn fail(&mut self, notice: Notice) {
        self.counts.count(&notice);
        self.events.push_back(TableEvent::Fatal(notice));
        self.failed = true;
    }

    fn notice(&mut self, notice: Notice) {
        self.counts.count(&notice);
        self.events.push_back(TableEvent::Notice(notice));
    }
}
