//! Who looks at a running run: the live terminal view, the status page and
//! the Prometheus endpoint are [`Watch`]es; the master (or a local run)
//! keeps an [`Observer`] that feeds them a [`Status`] every second, at
//! once when a node's state changes, and a last time with the report.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::live::Live;
use super::sample::NodeSample;
use super::status::{NodeState, RunState, Status};
use crate::graph::NodeId;
use crate::report::{RunFailure, RunReport};
use crate::run::panic_message;

/// How often watchers are shown the run.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Something that shows a running run. Called on the thread that
/// supervises the run: a watcher must not block (a slow one delays the
/// supervision, not the data).
pub trait Watch: Send {
    /// The run now; once it ended, with its report (`Status::report`).
    fn show(&mut self, status: &Status);

    /// The run ended; `status` holds its report. Called once, last.
    fn end(&mut self, status: &Status) {
        self.show(status);
    }
}

/// A run's watchers (none by default).
#[derive(Default)]
pub struct Watchers(pub Vec<Box<dyn Watch>>);

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watchers({})", self.0.len())
    }
}

/// The run's view and its watchers.
pub struct Observer {
    live: Live,
    watchers: Vec<Box<dyn Watch>>,
    next: Instant,
    changed: bool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("watchers", &self.watchers.len())
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Feeds `watchers` from `live`.
    pub fn new(live: Live, watchers: Watchers) -> Self {
        Self {
            live,
            watchers: watchers.0,
            next: Instant::now(),
            changed: false,
        }
    }

    /// Whether anyone watches (otherwise samples need not be taken).
    pub fn is_watched(&self) -> bool {
        !self.watchers.is_empty()
    }

    /// Instance `id` sent `sample` (its first: watchers see it at the next
    /// tick).
    pub fn record(&mut self, id: NodeId, sample: NodeSample) {
        self.changed |= self.live.record(id, sample);
    }

    /// Instance `id` is being restarted after its process ended (`cause`):
    /// watchers see it at the next tick.
    pub fn restarting(&mut self, id: NodeId, cause: String) {
        self.live.restarting(id, cause);
        self.changed = true;
    }

    /// Instance `id` changed state: watchers see it at the next tick.
    pub fn set_state(&mut self, id: NodeId, state: NodeState, error: Option<String>) {
        self.live.set_state(id, state, error);
        self.changed = true;
    }

    /// Shows the run if a second passed, or a node changed state.
    pub fn tick(&mut self, now: Instant) {
        if self.watchers.is_empty() || (now < self.next && !self.changed) {
            return;
        }
        self.next = now + REFRESH;
        self.changed = false;
        let status = self.live.status();
        self.each(|w| w.show(&status));
    }

    /// Calls every watcher; one that panics is dropped, and the run goes
    /// on (a view's fault is not the run's).
    fn each(&mut self, mut f: impl FnMut(&mut dyn Watch)) {
        self.watchers
            .retain_mut(|w| match catch_unwind(AssertUnwindSafe(|| f(&mut **w))) {
                Ok(()) => true,
                Err(panic) => {
                    tracing::warn!(
                        "a watcher of the run panicked ({}); it is dropped",
                        panic_message(&*panic)
                    );
                    false
                }
            });
    }

    /// The run ended with `result`: watchers see it last, with its report.
    pub fn end(mut self, result: &Result<RunReport, Box<RunFailure>>) {
        if self.watchers.is_empty() {
            return;
        }
        let (state, report, failure) = match result {
            Ok(report) => (RunState::Finished, report, None),
            Err(f) => (RunState::Failed, &f.report, Some(f.failure.to_string())),
        };
        self.live.end(state, report);
        let mut status = self.live.status();
        status.bottleneck = report.bottleneck().map(|n| n.name.clone());
        status.report = Some(report.clone());
        status.failure = failure;
        self.each(|w| w.end(&status));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;

    use super::*;
    use crate::graph::{Graph, NodeSpec};
    use crate::replica::{Replicated, Scale};

    struct Counting(Arc<AtomicUsize>);
    impl Watch for Counting {
        fn show(&mut self, _: &Status) {
            self.0.fetch_add(1, Relaxed);
        }
    }
    struct Panicking;
    impl Watch for Panicking {
        fn show(&mut self, _: &Status) {
            panic!("a broken view");
        }
    }

    #[test]
    fn a_watcher_that_panics_is_dropped_and_the_others_go_on() {
        let graph = Graph::new(vec![NodeSpec::spout("A", "u64")]).unwrap();
        let run = Replicated::new(graph, &Scale::single(1)).unwrap();
        let live = Live::new(&run, &["localhost".to_owned()], Instant::now());
        let shown = Arc::new(AtomicUsize::new(0));
        let watchers = Watchers(vec![Box::new(Panicking), Box::new(Counting(shown.clone()))]);
        let mut observer = Observer::new(live, watchers);
        observer.tick(Instant::now());
        assert_eq!(shown.load(Relaxed), 1);
        assert_eq!(observer.watchers.len(), 1, "the panicking one is gone");
        observer.set_state(0, NodeState::Done, None);
        observer.tick(Instant::now());
        assert_eq!(shown.load(Relaxed), 2, "a state change shows at once");
        observer.end(&Ok(RunReport::default()));
        assert_eq!(shown.load(Relaxed), 3, "and the end");
    }
}
