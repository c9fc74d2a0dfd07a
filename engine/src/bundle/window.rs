//! The reorder window of a sequenced bundled node: a ring of slots indexed
//! by `seq mod window`, delivering complete bundles strictly in id order.

use std::collections::VecDeque;
use std::time::Instant;

use super::config::{Bundling, GapPolicy};
use super::event::{Notice, PolicyCounts, TableEvent};
use super::BundleVec;
use crate::Seq;

/// A sequenced bundling table.
///
/// Invariants:
/// - every stored value has an id in `[next, next + window)`, in the slot
///   `seq % window`; `slots[i].count` is the number of `Some` among that
///   slot's values;
/// - at most one value per upstream is held back (its id was at or past
///   `next + window` when it arrived); an upstream with a held value is not
///   read ([`accepts`](Self::accepts) is false) until the window reaches it;
/// - `blocked_since` is set exactly while the head bundle is incomplete and
///   some later value is stored or held, and is reset each time the head moves.
#[derive(Debug)]
pub struct ReorderWindow<V> {
    config: Bundling,
    upstreams: usize,
    next: Seq,
    slots: Vec<Slot>,
    /// `values[slot * upstreams + upstream]`.
    values: Vec<Option<V>>,
    stored: usize,
    /// Per upstream, how many of the stored values are its.
    stored_from: Vec<usize>,
    /// Slots holding a complete bundle (never the head's: it is delivered
    /// at once).
    complete: usize,
    held: Vec<Option<(Seq, V)>>,
    /// How many `held` are `Some`.
    held_count: usize,
    ended: Vec<bool>,
    /// How many `ended` are true.
    ended_count: usize,
    /// `window - 1` when the window is a power of two, for a cheap modulo.
    mask: Option<Seq>,
    blocked_since: Option<Instant>,
    events: VecDeque<TableEvent<V>>,
    counts: PolicyCounts,
    failed: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    seq: Seq,
    count: usize,
}

impl<V> ReorderWindow<V> {
    /// A window over `upstreams` inputs, starting at `first`.
    ///
    /// # Panics
    /// If `upstreams` or the configured window is zero (graph validation
    /// rejects both before a table is made).
    pub fn new(upstreams: usize, first: Seq, config: Bundling) -> Self {
        assert!(upstreams > 0 && config.window > 0, "empty reorder window");
        Self {
            config,
            upstreams,
            next: first,
            slots: vec![Slot::default(); config.window],
            values: (0..config.window * upstreams).map(|_| None).collect(),
            stored: 0,
            stored_from: vec![0; upstreams],
            complete: 0,
            held: (0..upstreams).map(|_| None).collect(),
            held_count: 0,
            ended: vec![false; upstreams],
            ended_count: 0,
            mask: config
                .window
                .is_power_of_two()
                .then(|| config.window as Seq - 1),
            blocked_since: None,
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
    /// held back beyond the window (which stops its upstream being read).
    pub fn fits(&self, seq: Seq) -> bool {
        seq < self.next.saturating_add(self.config.window as Seq)
    }

    /// Offers the next value of `upstream`, which must be accepted.
    pub fn offer(&mut self, upstream: usize, seq: Seq, value: V, now: Instant) {
        debug_assert!(self.accepts(upstream), "offer from a blocked upstream");
        if self.failed {
            return;
        }
        if seq >= self.next.saturating_add(self.config.window as Seq) {
            self.held[upstream] = Some((seq, value));
            self.held_count += 1;
        } else {
            self.store(upstream, seq, value);
        }
        self.advance(now);
    }

    /// Marks `upstream` as ended: it will offer nothing more.
    pub fn end(&mut self, upstream: usize, now: Instant) {
        if !self.ended[upstream] {
            self.ended[upstream] = true;
            self.ended_count += 1;
        }
        self.advance(now);
    }

    /// The next event, applying the gap timeout at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<TableEvent<V>> {
        if self.events.is_empty() && !self.failed {
            if let Some(since) = self.blocked_since {
                if now.saturating_duration_since(since) >= self.config.gap_timeout {
                    self.give_up_head();
                    self.advance(now);
                }
            }
        }
        self.events.pop_front()
    }

    /// The id whose bundle the window would deliver the moment every
    /// upstream offered a value for it, when that is all it would do: nothing
    /// is stored or held back, no event waits to be polled, no upstream has
    /// ended and the window has not failed. `None` otherwise.
    ///
    /// A driver that has that id's value from every upstream at hand (the
    /// upstreams are in lockstep) may run the bundle itself and say so with
    /// [`delivered_in_lockstep`](Self::delivered_in_lockstep) instead of
    /// offering the values: the outcome is the same, without the slots.
    pub fn lockstep_seq(&self) -> Option<Seq> {
        let idle = self.stored == 0
            && self.held_count == 0
            && self.ended_count == 0
            && self.events.is_empty()
            && !self.failed;
        idle.then_some(self.next)
    }

    /// Whether `upstream` runs ahead: values of its wait in the window
    /// while another upstream has none there. Reading it further cannot
    /// complete a bundle (each needs a value of the upstream that has none
    /// stored); a runtime may read the others first, so that the window
    /// drains and the upstreams fall back into
    /// [`lockstep`](Self::lockstep_seq).
    pub fn leads(&self, upstream: usize) -> bool {
        self.stored_from[upstream] > 0 && self.stored_from.contains(&0)
    }

    /// Records that the driver ran bundle `seq` itself, with one value from
    /// every upstream; `seq` is what [`lockstep_seq`](Self::lockstep_seq)
    /// gave. The head moves on as if the bundle had been offered and polled.
    ///
    /// # Panics
    /// If `seq` is not the lockstep id.
    pub fn delivered_in_lockstep(&mut self, seq: Seq) {
        assert_eq!(
            self.lockstep_seq(),
            Some(seq),
            "bundle {seq} delivered out of lockstep"
        );
        // Nothing is stored or held: the head has no slot to clear and no
        // gap clock runs (`blocked_since` is None, by the invariant).
        self.next += 1;
    }

    /// When [`poll`](Self::poll) must be called again for the gap timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.blocked_since.map(|t| t + self.config.gap_timeout)
    }

    /// Whether every upstream has ended and every event has been taken.
    pub fn is_finished(&self) -> bool {
        self.events.is_empty()
            && (self.failed || (self.ended.iter().all(|e| *e) && self.buffered() == 0))
    }

    /// The next id to be processed.
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    /// Values stored or held back: the table's memory, in values.
    pub fn buffered(&self) -> usize {
        self.stored + self.held_count
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

    fn slot_of(&self, seq: Seq) -> usize {
        match self.mask {
            Some(mask) => (seq & mask) as usize,
            None => (seq % self.config.window as Seq) as usize,
        }
    }

    fn store(&mut self, upstream: usize, seq: Seq, value: V) {
        if seq < self.next {
            self.notice(Notice::Late { seq, upstream });
            return;
        }
        let slot = self.slot_of(seq);
        let cell = slot * self.upstreams + upstream;
        if self.slots[slot].count > 0 && self.values[cell].is_some() {
            self.notice(Notice::Duplicate { seq, upstream });
            return;
        }
        debug_assert!(self.slots[slot].count == 0 || self.slots[slot].seq == seq);
        self.slots[slot].seq = seq;
        self.slots[slot].count += 1;
        if self.slots[slot].count == self.upstreams {
            self.complete += 1;
        }
        self.values[cell] = Some(value);
        self.stored += 1;
        self.stored_from[upstream] += 1;
    }

    /// Delivers every complete head bundle and gives up the heads that can
    /// never complete, then re-evaluates whether the head blocks progress.
    ///
    /// A head that misses a value from an upstream that has ended can never
    /// complete. If a later bundle is complete, the head is a gap (the gap
    /// policy applies at once: waiting cannot help). If a later bundle can
    /// still complete (every ended upstream sent its value), the head waits
    /// like any other, so that what it is called does not depend on how the
    /// upstreams' values interleave: it becomes a gap when that bundle
    /// completes, or when the gap timeout runs out. Otherwise no later
    /// bundle can complete: if the head holds values it is reported
    /// incomplete; if it holds none, nobody sent that id and the head moves
    /// on to the next id that was sent.
    fn advance(&mut self, now: Instant) {
        while !self.failed {
            let head = self.slot_of(self.next);
            let count = self.slots[head].count;
            if count == self.upstreams {
                let values = self.take_complete(head);
                self.events.push_back(TableEvent::Bundle {
                    seq: self.next,
                    values,
                });
                self.move_head();
                continue;
            }
            let waiting_beyond = self.stored > count || self.held_count > 0;
            let can_complete = self.ended_count == 0 || self.can_complete(head);
            // Without a later bundle to wait for, the head is given up once
            // no upstream that could still send it can be read: each has
            // ended or is held back (values beyond the window).
            let settled = || {
                (0..self.upstreams)
                    .all(|u| self.ended[u] || self.held[u].is_some() || self.has(head, u))
            };
            if !can_complete && (self.complete > 0 || (!self.later_can_complete(head) && settled()))
            {
                if self.complete > 0 {
                    self.give_up_head();
                } else if count > 0 {
                    let missing = self.missing(head);
                    let seq = self.next;
                    self.take_slot(head);
                    self.notice(Notice::Incomplete { seq, missing });
                    self.move_head();
                } else if waiting_beyond {
                    self.skip_unsent();
                } else {
                    self.blocked_since = None;
                    break;
                }
                continue;
            }
            match (waiting_beyond, self.blocked_since) {
                (true, None) => self.blocked_since = Some(now),
                (false, Some(_)) => self.blocked_since = None,
                _ => {}
            }
            break;
        }
    }

    /// Moves the head past ids that nobody sent, to the next id stored or
    /// held, when every upstream has ended.
    fn skip_unsent(&mut self) {
        let window = self.config.window as Seq;
        let stored_next = (0..window)
            .map(|d| self.next + d)
            .find(|seq| self.slots[self.slot_of(*seq)].count > 0);
        let target = stored_next.or_else(|| self.held.iter().flatten().map(|(seq, _)| *seq).min());
        if let Some(target) = target {
            // `move_head` takes the head to `target` and stores the held
            // values that fit from there.
            self.next = target.max(self.next + 1) - 1;
            self.move_head();
        }
    }

    /// Applies the gap policy to the head: skips it, or fails the table.
    fn give_up_head(&mut self) {
        let head = self.slot_of(self.next);
        let notice = Notice::Gap {
            seq: self.next,
            missing: self.missing(head),
        };
        match self.config.on_gap {
            GapPolicy::Fail => {
                self.counts.count(&notice);
                self.events.push_back(TableEvent::Fatal(notice));
                self.failed = true;
                self.blocked_since = None;
            }
            GapPolicy::Skip => {
                self.take_slot(head);
                self.notice(notice);
                self.move_head();
            }
        }
    }

    /// Moves the head one id on and stores the held values that now fit.
    fn move_head(&mut self) {
        self.next += 1;
        self.blocked_since = None;
        if self.held_count == 0 {
            return;
        }
        let limit = self.next.saturating_add(self.config.window as Seq);
        for upstream in 0..self.upstreams {
            if matches!(self.held[upstream], Some((seq, _)) if seq < limit) {
                if let Some((seq, value)) = self.held[upstream].take() {
                    self.held_count -= 1;
                    self.store(upstream, seq, value);
                }
            }
        }
    }

    /// Takes the values of a complete slot, in upstream order.
    fn take_complete(&mut self, slot: usize) -> BundleVec<V> {
        let cells = slot * self.upstreams..(slot + 1) * self.upstreams;
        let values: BundleVec<V> = self.values[cells]
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        self.stored -= self.upstreams;
        for from in &mut self.stored_from {
            *from -= 1;
        }
        self.complete -= 1;
        self.slots[slot].count = 0;
        values
    }

    /// Whether a bundle after the head (in `head_slot`) can still complete:
    /// one stored in the window holds a value of every upstream that has
    /// ended (an ended upstream holds nothing back: it is not read while
    /// it does).
    fn later_can_complete(&self, head_slot: usize) -> bool {
        // Cheap refusal first: an ended upstream with nothing stored past
        // the head rules every later bundle out.
        let ended_have_later = (0..self.upstreams)
            .filter(|u| self.ended[*u])
            .all(|u| self.stored_from[u] > usize::from(self.has(head_slot, u)));
        ended_have_later
            && (1..self.config.window as Seq).any(|d| {
                let slot = self.slot_of(self.next + d);
                let cells = &self.values[slot * self.upstreams..(slot + 1) * self.upstreams];
                self.slots[slot].count > 0
                    && (0..self.upstreams).all(|u| !self.ended[u] || cells[u].is_some())
            })
    }

    /// Whether `slot` holds a value of `upstream`.
    fn has(&self, slot: usize, upstream: usize) -> bool {
        self.values[slot * self.upstreams + upstream].is_some()
    }

    /// Whether every upstream missing from `slot` can still send.
    fn can_complete(&self, slot: usize) -> bool {
        let cells = &self.values[slot * self.upstreams..(slot + 1) * self.upstreams];
        (0..self.upstreams).all(|u| cells[u].is_some() || !self.ended[u])
    }

    fn take_slot(&mut self, slot: usize) -> Vec<Option<V>> {
        let cells = slot * self.upstreams..(slot + 1) * self.upstreams;
        let values: Vec<Option<V>> = self.values[cells].iter_mut().map(Option::take).collect();
        for (from, value) in self.stored_from.iter_mut().zip(&values) {
            *from -= usize::from(value.is_some());
        }
        self.stored -= self.slots[slot].count;
        if self.slots[slot].count == self.upstreams {
            self.complete -= 1;
        }
        self.slots[slot].count = 0;
        values
    }

    fn missing(&self, slot: usize) -> Vec<usize> {
        let cells = &self.values[slot * self.upstreams..(slot + 1) * self.upstreams];
        (0..self.upstreams)
            .filter(|u| cells[*u].is_none())
            .collect()
    }

    fn notice(&mut self, notice: Notice) {
        self.counts.count(&notice);
        self.events.push_back(TableEvent::Notice(notice));
    }
}
