//! Time spent waiting, readable from any thread while the waiting goes on:
//! a ring's reader waiting for frames (idle), its writer waiting for room
//! (held back by its readers). The one who waits pays two stores per wait,
//! nothing per frame; whoever samples it (a node's metrics, once a second)
//! sees the wait in progress too, so a writer stuck behind a stalled
//! reader shows as blocked while it is, not only once it is free again.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// The waits of one side of a ring.
#[derive(Debug, Default)]
pub struct Waits {
    /// Nanoseconds of the waits that ended.
    ended_ns: AtomicU64,
    /// When the wait in progress started (see `stamp`), 0 if none.
    since: AtomicU64,
}

impl Waits {
    /// A wait starts now: returns its start, for [`end`](Self::end).
    #[inline]
    pub(crate) fn begin(&self) -> Instant {
        let now = Instant::now();
        self.since.store(stamp(now), Relaxed);
        now
    }

    /// The wait that started at `start` ended.
    #[inline]
    pub(crate) fn end(&self, start: Instant) {
        let waited = start.elapsed().as_nanos() as u64;
        self.ended_ns
            .store(self.ended_ns.load(Relaxed) + waited, Relaxed);
        self.since.store(0, Relaxed);
    }

    /// Every wait so far, the one in progress included up to now.
    pub fn total(&self) -> Duration {
        // The wait in progress, then the ended ones: a wait that ends in
        // between is counted once, as ended (its start was read before).
        let since = self.since.load(Relaxed);
        let ended = self.ended_ns.load(Relaxed);
        let ongoing = match since {
            0 => 0,
            s => (stamp(Instant::now()) - 1).saturating_sub(s - 1),
        };
        let again = self.ended_ns.load(Relaxed);
        if again != ended {
            // It ended meanwhile: its time is in `again`.
            return Duration::from_nanos(again);
        }
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
}
