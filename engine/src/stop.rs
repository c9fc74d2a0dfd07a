//! How a run is asked to end: drain (spouts stop, the pipeline empties) or
//! abort (everything stops now).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a node of an aborted run may take to stop before the run ends
/// without it: its process is killed, its thread (in local mode) left
/// behind.
pub const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Bits of the switch: a drain was asked for; the run aborts. Both may be
/// set (a drain, then a failure or a second Ctrl-C).
const DRAIN: u8 = 1;
const ABORT: u8 = 2;

/// A shared switch that ends a run. Cloning gives another handle to the
/// same switch.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<AtomicU8>);

impl StopSignal {
    /// A switch in the running position.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to drain: spouts are told to return, every value already
    /// dispatched is still processed. Returns false if it was already
    /// draining or aborting.
    pub fn drain(&self) -> bool {
        // Relaxed: the flag carries no data; nodes only poll it.
        self.0.fetch_or(DRAIN, Ordering::Relaxed) == 0
    }

    /// Asks the run to stop at once.
    pub fn abort(&self) {
        // Relaxed: as in `drain`.
        self.0.fetch_or(ABORT, Ordering::Relaxed);
    }

    /// Whether spouts must stop (draining or aborting).
    pub fn is_draining(&self) -> bool {
        // Relaxed: as in `drain`.
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Whether every node must stop now.
    pub fn is_aborted(&self) -> bool {
        // Relaxed: as in `drain`.
        self.0.load(Ordering::Relaxed) & ABORT != 0
    }

    /// Whether a drain was asked for (Ctrl-C or [`drain`](Self::drain)),
    /// whatever happened next; a failure alone aborts without asking.
    pub fn drain_requested(&self) -> bool {
        // Relaxed: as in `drain`.
        self.0.load(Ordering::Relaxed) & DRAIN != 0
    }
}

impl StopSignal {
    /// Whether `other` is a handle to the same switch.
    pub fn same_as(&self, other: &StopSignal) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
