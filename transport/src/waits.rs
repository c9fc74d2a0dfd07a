//! Time spent waiting, readable from any thread while the waiting goes on:
//! a ring's reader waiting for frames (idle), its writer waiting for room
//! (held back by its readers). The one who waits pays a few stores per
//! wait, nothing per frame; whoever samples it (a node's metrics, once a second)
//! sees the wait in progress too, so a writer stuck behind a stalled
//! reader shows as blocked while it is, not only once it is free again.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What every wait's start is measured from, in this process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds of the process's epoch at `at`, plus one: 0 means "not
/// waiting".
fn stamp(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64 + 1
}

/// The waits of one side of a ring: written by the one thread that waits,
/// read by any (a sequence lock: the reader reads again if a wait began or
/// ended meanwhile, so that a wait is never counted twice nor lost).
#[derive(Debug, Default)]
pub struct Waits {
    /// Odd while the waiting thread changes the figures below.
    version: AtomicU64,
    /// Nanoseconds of the waits that ended.
    ended_ns: AtomicU64,
    /// When the wait in progress started (see `stamp`), 0 if none.
    since: AtomicU64,
}

impl Waits {
    /// Changes the figures (the waiting thread only).
    #[inline]
    fn write(&self, change: impl FnOnce()) {
        let v = self.version.load(Relaxed);
        self.version.store(v + 1, Relaxed);
        // SYNC: the odd version is visible before any change (pairs with
        // the reader's Acquire fence), and before the clock is read in
        // `end` (SeqCst: the store leaves the store buffer first, so that a
        // reader that still sees the even version read its clock before).
        fence(SeqCst);
        change();
        // SYNC: Release pairs with the reader's Acquire load of the
        // version: the changes are visible with the even version.
        self.version.store(v + 2, Release);
    }

    /// A wait starts now: returns its start, for [`end`](Self::end).
    #[inline]
    pub(crate) fn begin(&self) -> Instant {
        let now = Instant::now();
        self.write(|| self.since.store(stamp(now), Relaxed));
        now
    }

    /// The wait that started at `start` ended.
    #[inline]
    pub(crate) fn end(&self, start: Instant) {
        self.write(|| {
            // Measured inside the write: a reader that counted this wait as
            // in progress took its clock before the write began, so before
            // this instant; its total is no more than the one after.
            let waited = start.elapsed().as_nanos() as u64;
            self.ended_ns
                .store(self.ended_ns.load(Relaxed) + waited, Relaxed);
            self.since.store(0, Relaxed);
        });
    }

    /// Every wait so far, the one in progress included up to now.
    pub fn total(&self) -> Duration {
        self.total_at(Instant::now())
    }

    /// Every wait up to `now` (a sampler reading several figures at one
    /// instant passes the same `now` to each): the ended ones, and the one
    /// in progress from its start to `now`. With `now` taken before the
    /// call, totals read one after the other never go down.
    pub fn total_at(&self, now: Instant) -> Duration {
        let (ended, since) = loop {
            // SYNC: Acquire pairs with the Release store of the even
            // version in `write`.
            let v = self.version.load(Acquire);
            let ended = self.ended_ns.load(Relaxed);
            let since = self.since.load(Relaxed);
            // SYNC: the loads above happen before the version is read
            // again (pairs with the writer's Release fence).
            fence(Acquire);
            if v % 2 == 0 && self.version.load(Relaxed) == v {
                break (ended, since);
            }
            std::hint::spin_loop();
        };
        let ongoing = match since {
            0 => 0,
            s => (stamp(now) - 1).saturating_sub(s - 1),
        };
        Duration::from_nanos(ended + ongoing)
    }

    /// Whether a wait is in progress.
    pub fn waiting(&self) -> bool {
        self.since.load(Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_in_progress_counts_until_it_ends_and_then_once() {
        let waits = Waits::default();
        assert_eq!(waits.total(), Duration::ZERO);
        assert!(!waits.waiting());
        let start = waits.begin();
        std::thread::sleep(Duration::from_millis(20));
        assert!(waits.waiting());
        let during = waits.total();
        assert!(during >= Duration::from_millis(20), "{during:?}");
        waits.end(start);
        let after = waits.total();
        assert!(!waits.waiting());
        assert!(after >= during, "{after:?} < {during:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(waits.total(), after, "an ended wait stops counting");
    }

    #[test]
    fn a_reader_never_sees_the_total_go_down_while_waits_begin_and_end() {
        let waits = std::sync::Arc::new(Waits::default());
        let writer = {
            let waits = waits.clone();
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    let start = waits.begin();
                    // Waits of 5 µs: one counted twice, or lost, shows as
                    // a drop of about that much.
                    while start.elapsed() < Duration::from_micros(5) {
                        std::hint::spin_loop();
                    }
                    waits.end(start);
                }
            })
        };
        // The reader's clock and the waiter's may disagree by the time a
        // store takes to be seen: well under a microsecond.
        let slack = Duration::from_micros(1);
        let mut last = Duration::ZERO;
        let mut reads = 0;
        while !writer.is_finished() {
            let now = waits.total();
            assert!(now + slack >= last, "{now:?} < {last:?}");
            last = last.max(now);
            reads += 1;
        }
        assert!(reads > 1000, "too few reads ({reads}) to see anything");
        writer.join().unwrap();
        assert!(waits.total() >= last);
    }
}
