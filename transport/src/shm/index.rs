//! The index protocol of a ring: who may write where, who waits for whom, and
//! who wakes whom. It touches only [`Control`]'s atomics, never the data, so
//! the loom model tests (below) run it unchanged.
//!
//! Positions are byte counts that only grow. The writer may write below
//! `min(active cursors) + capacity` and publishes `write_pos`; a reader reads
//! below `write_pos` and releases by storing its cursor.
//!
//! Waking follows one pattern on both sides. The sleeper loads the futex
//! word, stores its flag, issues a SeqCst fence, re-checks its condition and
//! only then sleeps on the word. The waker changes the condition, issues a
//! SeqCst fence and makes a wake-up call only if it sees the flag. The two
//! fences are ordered one way or the other: either the sleeper's re-check
//! sees the change, or the waker sees the flag, bumps the word and wakes.
//!
//! The writer's fence is the costly part of a publish (it drains the store
//! buffer, whose stores miss in cache because readers poll those lines), so a
//! publish does it only every [`CHECK_EVERY`] frames, or when it sees a
//! sleeper without a fence; [`WriterIndex::wake_readers`] does it always, and
//! the writer calls it whenever it stops writing for a while (flush, wait,
//! end). A reader that fell asleep in the short window between is therefore
//! woken at the latest by the writer's next pause.

use std::time::Duration;

use super::layout::{Control, WakeLine, SLOT_ACTIVE, SLOT_CLAIMED, SLOT_FREE, WRITER_OPEN};
use crate::sync::{fence, futex_wait, futex_wake_all, spin_loop, yield_now, Ordering::*, Wake};

/// A publish makes the fenced wake-up check at least this often, by default.
pub(crate) const CHECK_EVERY: u32 = 64;

/// Busy-wait iterations before yielding.
#[cfg(not(loom))]
const SPINS: u32 = 128;
#[cfg(loom)]
const SPINS: u32 = 1;

/// `sched_yield` iterations before sleeping: a yield returns at once when
/// nothing else wants the core, and lets another node run when something does.
#[cfg(not(loom))]
const YIELDS: u32 = 16;
#[cfg(loom)]
const YIELDS: u32 = 1;

/// Longest single futex sleep: after it, the sleeper checks that the other
/// side is still alive (see the callers' `on_timeout`).
pub(crate) const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// Bumps `line.futex` and wakes its sleepers, if any announced themselves.
///
/// The caller has issued the SeqCst fence that pairs with the sleeper's.
fn wake(line: &WakeLine) -> bool {
    // The plain load first: the swap would take the line for writing on
    // every call even when nobody sleeps.
    if line.sleepers.load(Relaxed) != 0 && line.sleepers.swap(0, Relaxed) != 0 {
        // SYNC: Release pairs with the Acquire load of the futex word in
        // `prepare_sleep` (both sides): a sleeper that loads the bumped word
        // also sees the change made before this call.
        line.futex.fetch_add(1, Release);
        futex_wake_all(&line.futex);
        true
    } else {
        false
    }
}

/// The writer's side of the protocol.
#[derive(Debug)]
pub(crate) struct WriterIndex {
    /// The end of the frames written; stored in `write_pos` (published) at
    /// once, or at the next commit while commits are deferred.
    written: u64,
    /// The last position stored in `write_pos`.
    visible: u64,
    /// Publishing waits for [`commit`](Self::commit).
    deferred: bool,
    /// The writer may write below this position: the slowest active cursor
    /// plus capacity, as of the last [`Self::refresh`] (a cached copy of the
    /// readers' side, conservative as cursors only grow).
    limit: u64,
    capacity: u64,
    /// Publishes since the last fenced wake-up check.
    since_check: u32,
    /// Publishes between two fenced wake-up checks, at most.
    check_every: u32,
}

impl WriterIndex {
    /// The writer of a fresh ring (`write_pos` 0).
    pub(crate) fn new(capacity: u64) -> Self {
        WriterIndex {
            written: 0,
            visible: 0,
            deferred: false,
            limit: 0,
            capacity,
            since_check: 0,
            check_every: CHECK_EVERY,
        }
    }

    /// The index of a writer that goes on from `published`, where its
    /// predecessor stopped.
    pub(crate) fn resume(capacity: u64, published: u64) -> Self {
        WriterIndex {
            written: published,
            visible: published,
            ..Self::new(capacity)
        }
    }

    /// Makes the fenced wake-up check at least every `publishes` publishes
    /// (1: at every one).
    pub(crate) fn check_every(&mut self, publishes: u32) {
        self.check_every = publishes.max(1);
    }

    /// The end of the frames written: where the next one goes.
    #[inline]
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// The last position readers were shown (below `written` only while
    /// publishing is deferred).
    #[inline]
    pub(crate) fn visible(&self) -> u64 {
        self.visible
    }

    /// Bytes that may be written at [`Self::written`] as far as is known
    /// without looking at the readers again.
    #[inline]
    pub(crate) fn free(&self) -> u64 {
        self.limit.saturating_sub(self.written)
    }

    /// Defers publishing to [`commit`](Self::commit) (or not).
    pub(crate) fn defer(&mut self, on: bool) {
        self.deferred = on;
    }

    /// Publishes every frame written.
    pub(crate) fn commit(&mut self, ctl: &Control) {
        if self.written > self.visible {
            self.show(ctl);
        }
    }

    /// Re-reads the readers' cursors; returns the bytes free.
    pub(crate) fn refresh(&mut self, ctl: &Control) -> u64 {
        // SYNC: pairs with the fence in `ReaderIndex::attach`: either this
        // scan sees the attaching reader active, or that reader sees every
        // position published before this fence and starts at or after it
        // (so the limit computed here without it overwrites nothing it reads).
        fence(SeqCst);
        // What readers cannot see yet they cannot release: the writer stays
        // within a ring of what they were shown (a transaction that would
        // outgrow it is published in parts).
        let mut min = self.visible;
        for slot in &ctl.slots {
            // SYNC: Acquire pairs with the Release store of SLOT_ACTIVE in
            // `ReaderIndex::attach`: the cursor loaded below is at least the
            // one stored before it.
            if slot.state.load(Acquire) == SLOT_ACTIVE {
                // SYNC: Acquire pairs with the Release store of the cursor in
                // `ReaderIndex::release`: the reader's reads of the bytes below
                // it happen before we overwrite them.
                min = min.min(slot.cursor.load(Acquire));
            }
        }
        self.limit = min + self.capacity;
        self.free()
    }

    /// Makes every frame below `pos` visible to readers (at the next
    /// commit, while publishing is deferred).
    #[inline]
    pub(crate) fn publish(&mut self, ctl: &Control, pos: u64) {
        debug_assert!(pos >= self.written && pos <= self.limit);
        self.written = pos;
        if !self.deferred {
            self.show(ctl);
        }
    }

    /// Stores `written` for readers to see.
    #[inline]
    fn show(&mut self, ctl: &Control) {
        let pos = self.written;
        // SYNC: Release pairs with the Acquire load of write_pos in
        // `ReaderIndex::write_pos`: a reader that sees `pos` sees the frame
        // bytes written before this store.
        ctl.writer.write_pos.store(pos, Release);
        self.visible = pos;
        self.since_check += 1;
        // A reader asleep for a while shows up here without a fence; one
        // falling asleep right now is caught by the next fenced check.
        if self.since_check >= self.check_every || ctl.data_wake.sleepers.load(Relaxed) != 0 {
            self.wake_readers(ctl);
        }
    }

    /// The fenced wake-up check: wakes readers sleeping on published data.
    pub(crate) fn wake_readers(&mut self, ctl: &Control) -> bool {
        self.since_check = 0;
        // SYNC: pairs with the fence in `ReaderIndex::prepare_sleep`: either
        // the reader's re-check sees our last write_pos (or state) store, or
        // we see its sleepers flag here.
        fence(SeqCst);
        wake(&ctl.data_wake)
    }

    /// Sets the writer's final state, and wakes the readers to see it.
    pub(crate) fn close(&mut self, ctl: &Control, state: u32) {
        // SYNC: Release pairs with the Acquire load of state in
        // `ReaderIndex::state`: a reader that sees the final state sees the
        // last write_pos.
        ctl.writer.state.store(state, Release);
        self.wake_readers(ctl);
    }

    /// Announces that the writer is about to sleep until `need` bytes are
    /// free; returns the futex word value to sleep on, or `None` if the space
    /// is there after all.
    fn prepare_sleep(&mut self, ctl: &Control, need: u64) -> Option<u32> {
        // The word is read before the flag is raised: a wake-up that takes
        // our flag down afterwards must then have bumped the word past this
        // value, so the futex wait below returns at once.
        // SYNC: Acquire pairs with the Release bump in `wake`.
        let word = ctl.space_wake.futex.load(Acquire);
        // Flags are only ever changed by read-modify-writes: on x86 an xchg
        // costs what the fence does, on a path that is about to sleep anyway,
        // and loom (0.7) models a plain store racing another thread's swap
        // more weakly than C++20 does, reporting lost wake-ups that cannot
        // happen; with RMWs its model is exact.
        ctl.space_wake.sleepers.swap(1, Relaxed);
        // SYNC: pairs with the fence in `ReaderIndex::release` and `detach`:
        // either our re-check (in refresh) sees the reader's new cursor, or
        // the reader sees our flag and wakes us.
        fence(SeqCst);
        if self.refresh(ctl) >= need {
            // Only the writer sleeps on space: clearing its own flag saves a
            // reader a needless wake-up call.
            ctl.space_wake.sleepers.swap(0, Relaxed);
            None
        } else {
            Some(word)
        }
    }

    /// Blocks until `need` bytes are free: spin, yield, then futex sleep.
    /// `on_timeout` runs after each [`SLEEP_SLICE`] without a wake-up (the
    /// caller reaps dead readers there).
    pub(crate) fn wait_for_space(
        &mut self,
        ctl: &Control,
        need: u64,
        mut on_timeout: impl FnMut(&mut Self),
    ) {
        if self.free() >= need || self.refresh(ctl) >= need {
            return;
        }
        // Readers are behind: none may sleep on a frame we published.
        self.wake_readers(ctl);
        for i in 0..SPINS + YIELDS {
            if i < SPINS {
                spin_loop();
            } else {
                yield_now();
            }
            if self.refresh(ctl) >= need {
                return;
            }
        }
        while let Some(word) = self.prepare_sleep(ctl, need) {
            if futex_wait(&ctl.space_wake.futex, word, SLEEP_SLICE) == Wake::TimedOut {
                on_timeout(self);
            }
        }
    }

    /// The active slots holding the writer back from `need` free bytes.
    pub(crate) fn blocking_slots<'c>(
        &self,
        ctl: &'c Control,
        need: u64,
    ) -> impl Iterator<Item = usize> + 'c {
        let limit_needed = (self.written + need).saturating_sub(self.capacity);
        ctl.slots.iter().enumerate().filter_map(move |(i, slot)| {
            // SYNC: Acquire pairs with the Release store of SLOT_ACTIVE in
            // `ReaderIndex::attach`, so the pid read by the caller is the
            // reader's.
            let active = slot.state.load(Acquire) == SLOT_ACTIVE;
            (active && slot.cursor.load(Relaxed) < limit_needed).then_some(i)
        })
    }

    /// Frees the slot of a reader whose process died. Returns false if the
    /// slot had already changed.
    pub(crate) fn reclaim(&mut self, ctl: &Control, slot: usize) -> bool {
        // SYNC: Release pairs with the Acquire CAS in `ReaderIndex::attach`
        // of the slot's next owner.
        ctl.slots[slot]
            .state
            .compare_exchange(SLOT_ACTIVE, SLOT_FREE, Release, Relaxed)
            .is_ok()
    }
}

/// Why a reader's wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataWait {
    /// Frames are there, up to this position.
    Ready(u64),
    /// No frames, and the writer's state is no longer open.
    Closed,
    /// `on_timeout` asked to stop.
    Stopped,
}

/// A reader's side of the protocol.
#[derive(Debug)]
pub(crate) struct ReaderIndex {
    slot: usize,
    /// Everything below is released.
    cursor: u64,
}

impl ReaderIndex {
    /// Claims a free slot and starts reading at the writer's current
    /// position. `None` if every slot is taken.
    pub(crate) fn attach(ctl: &Control, pid: u32, start_time: u64) -> Option<Self> {
        for (i, slot) in ctl.slots.iter().enumerate() {
            // SYNC: Acquire pairs with the Release stores of SLOT_FREE in
            // `detach` and `WriterIndex::reclaim`: the previous owner is done.
            if slot
                .state
                .compare_exchange(SLOT_FREE, SLOT_CLAIMED, Acquire, Relaxed)
                .is_err()
            {
                continue;
            }
            slot.pid.store(pid, Relaxed);
            slot.start_time.store(start_time, Relaxed);
            slot.cursor
                .store(ctl.writer.write_pos.load(Relaxed), Relaxed);
            // SYNC: Release pairs with the Acquire load of state in
            // `WriterIndex::refresh`: a writer that sees the slot active sees
            // the cursor stored above.
            slot.state.store(SLOT_ACTIVE, Release);
            // SYNC: pairs with the fence in `WriterIndex::refresh`; see there.
            fence(SeqCst);
            // SYNC: Acquire pairs with the Release store in `publish`.
            let start = ctl.writer.write_pos.load(Acquire);
            slot.cursor.store(start, Release);
            return Some(ReaderIndex {
                slot: i,
                cursor: start,
            });
        }
        None
    }

    /// Takes over the active slot of the reader process `dead` (its slot
    /// and its cursor: what it had not released is read again), as process
    /// `pid` started at `start_time`. `None` if no active slot is `dead`'s,
    /// or another process took it over first. The writer must not reclaim
    /// dead readers' slots meanwhile (`RingWriter::keep_dead_readers`).
    pub(crate) fn take_over(
        ctl: &Control,
        dead: (u32, u64),
        pid: u32,
        start_time: u64,
    ) -> Option<Self> {
        for (i, slot) in ctl.slots.iter().enumerate() {
            // SYNC: Acquire pairs with the Release store of SLOT_ACTIVE in
            // `attach`: the slot's identity and cursor are the owner's.
            if slot.state.load(Acquire) != SLOT_ACTIVE || slot.start_time.load(Relaxed) != dead.1 {
                continue;
            }
            // The pid is the claim: of two takers, one wins.
            // SYNC: AcqRel: Acquire pairs with the dead reader's Release
            // stores to its slot (its cursor is seen); Release orders our
            // claim before the start time and cursor work below.
            if slot
                .pid
                .compare_exchange(dead.0, pid, AcqRel, Relaxed)
                .is_err()
            {
                continue;
            }
            slot.start_time.store(start_time, Relaxed);
            // SYNC: Acquire pairs with the Release store in `release`: the
            // dead reader's releases are all seen.
            let cursor = slot.cursor.load(Acquire);
            return Some(ReaderIndex { slot: i, cursor });
        }
        None
    }

    /// The slot this reader holds.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Everything below is released.
    #[inline]
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The writer's published position.
    #[inline]
    pub(crate) fn write_pos(ctl: &Control) -> u64 {
        // SYNC: Acquire pairs with the Release store in
        // `WriterIndex::publish`: the frames below are completely written.
        ctl.writer.write_pos.load(Acquire)
    }

    /// The writer's state ([`WRITER_OPEN`] until it ends or is dropped).
    #[inline]
    pub(crate) fn state(ctl: &Control) -> u32 {
        // SYNC: Acquire pairs with the Release store in `WriterIndex::close`.
        ctl.writer.state.load(Acquire)
    }

    /// Lets the writer overwrite everything below `pos`.
    #[inline]
    pub(crate) fn release(&mut self, ctl: &Control, pos: u64) {
        debug_assert!(pos >= self.cursor);
        self.cursor = pos;
        // SYNC: Release pairs with the Acquire load of the cursor in
        // `WriterIndex::refresh`: our reads of the released frames happen
        // before the writer overwrites them.
        ctl.slots[self.slot].cursor.store(pos, Release);
        // SYNC: pairs with the fence in `WriterIndex::prepare_sleep`: either
        // the writer's re-check sees our cursor, or we see its flag.
        fence(SeqCst);
        wake(&ctl.space_wake);
    }

    /// Gives the slot back; the writer stops waiting for this reader.
    pub(crate) fn detach(self, ctl: &Control) {
        // SYNC: Release pairs with the Acquire load of state in
        // `WriterIndex::refresh` (the writer overwrites our frames only after
        // our reads) and the Acquire CAS in `attach` of the next owner.
        ctl.slots[self.slot].state.store(SLOT_FREE, Release);
        // SYNC: pairs with the fence in `WriterIndex::prepare_sleep`.
        fence(SeqCst);
        wake(&ctl.space_wake);
    }

    /// Announces that this reader is about to sleep; returns the futex word
    /// value to sleep on, or `None` if there is something to read (or the
    /// writer closed) after all.
    fn prepare_sleep(&self, ctl: &Control, past: u64) -> Option<u32> {
        // Word first, then flag: see `WriterIndex::prepare_sleep`. (Loom
        // found the other order losing a wake-up: a redundant wake-up for
        // data already read took the flag down, and the sleeper then slept on
        // the bumped word with no flag raised.)
        // SYNC: Acquire pairs with the Release bump in `wake`.
        let word = ctl.data_wake.futex.load(Acquire);
        // An RMW, as in `WriterIndex::prepare_sleep`.
        ctl.data_wake.sleepers.swap(1, Relaxed);
        // SYNC: pairs with the fence in `WriterIndex::wake_readers`: either
        // our re-check below sees the writer's position or state, or the
        // writer sees our flag and wakes us.
        fence(SeqCst);
        if Self::write_pos(ctl) > past || Self::state(ctl) != WRITER_OPEN {
            None
        } else {
            Some(word)
        }
    }

    /// Non-blocking: what is there to read now.
    #[inline]
    pub(crate) fn poll(&self, ctl: &Control) -> Option<DataWait> {
        self.poll_past(ctl, self.cursor)
    }

    /// Non-blocking: what is published past position `past` (at or past
    /// the cursor: a reader that holds frames reads on past them).
    #[inline]
    pub(crate) fn poll_past(&self, ctl: &Control, past: u64) -> Option<DataWait> {
        let end = Self::write_pos(ctl);
        if end > past {
            Some(DataWait::Ready(end))
        } else if Self::state(ctl) != WRITER_OPEN {
            // The state is stored after the last publish: look again.
            let end = Self::write_pos(ctl);
            Some(if end > past {
                DataWait::Ready(end)
            } else {
                DataWait::Closed
            })
        } else {
            None
        }
    }

    /// Blocks until there is something to read past position `past` (the
    /// cursor, or further for a reader that holds frames) or the writer
    /// closed: spin, yield, then futex sleep in slices of at most `slice`.
    /// After each slice without a wake-up, `on_timeout` returns the next
    /// slice, or `None` to stop.
    pub(crate) fn wait_for_data(
        &self,
        ctl: &Control,
        past: u64,
        mut slice: Duration,
        mut on_timeout: impl FnMut() -> Option<Duration>,
    ) -> DataWait {
        for i in 0..SPINS + YIELDS {
            if let Some(found) = self.poll_past(ctl, past) {
                return found;
            }
            if i < SPINS {
                spin_loop();
            } else {
                yield_now();
            }
        }
        loop {
            if let Some(found) = self.poll_past(ctl, past) {
                return found;
            }
            if let Some(word) = self.prepare_sleep(ctl, past) {
                if futex_wait(&ctl.data_wake.futex, word, slice.min(SLEEP_SLICE)) == Wake::TimedOut
                {
                    match on_timeout() {
                        Some(next) => slice = next,
                        None => return DataWait::Stopped,
                    }
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
