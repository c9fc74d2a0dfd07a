//! The node loops that every mode shares: a spout's run, a worker's read-
//! step-call loop, and what they need from their mode: an output for their
//! values, a sink for policy events, and the run's control.

mod decoded;
pub(crate) mod forward;
mod held;
mod in_place;
pub(crate) mod inlet;
pub(crate) mod journal;
mod lockstep;
pub(crate) mod recovery;
pub(crate) mod ring_output;
pub(crate) mod spout;
mod take;
pub(crate) mod worker;

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::body::{payload, BoxError, EmitError, Output, Payload};
use crate::report::{Failure, PolicyEvent};
use crate::stop::StopSignal;

/// How often a waiting node looks at the stop signal.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// Which of a node's upstreams to read next, by index: built at every turn
/// of a loop, so kept inline.
pub(crate) type Upstreams = smallvec::SmallVec<[usize; 8]>;

/// What the threads of a run (or of a node process) share: the stop signal
/// and the first failure.
#[derive(Default)]
pub(crate) struct RunControl {
    pub(crate) stop: StopSignal,
    failure: Mutex<Option<Failure>>,
    /// A node process that may be restarted dies where its function
    /// failed, as if killed: nothing it holds is released (see
    /// `process::node`).
    on_fault: std::sync::OnceLock<Box<Die>>,
}

/// What a node process that may be restarted does when its function fails.
type Die = dyn Fn(&Failure) + Send + Sync;

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("stop", &self.stop)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl RunControl {
    pub(crate) fn new(stop: StopSignal) -> Arc<Self> {
        Arc::new(Self {
            stop,
            failure: Mutex::new(None),
            on_fault: std::sync::OnceLock::new(),
        })
    }

    /// Makes a node function's failure call `die` (which does not return)
    /// instead of stopping the node in order.
    pub(crate) fn die_on_fault(&self, die: impl Fn(&Failure) + Send + Sync + 'static) {
        let _ = self.on_fault.set(Box::new(die));
    }

    /// Records `failure` if it is the first, and aborts the run (a node
    /// function's failure that may pass dies where it stands instead, if
    /// [`die_on_fault`](Self::die_on_fault) said so).
    pub(crate) fn fail(&self, failure: Failure) {
        if let (Failure::Node { .. }, Some(die)) = (&failure, self.on_fault.get()) {
            die(&failure);
        }
        self.fail_for_good(failure);
    }

    /// [`fail`](Self::fail), for a failure that would come again in a
    /// restarted process (bad input from upstream: it is still in the
    /// ring): the node stops in order and is not restarted.
    pub(crate) fn fail_for_good(&self, failure: Failure) {
        let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(failure);
        }
        self.stop.abort();
    }

    /// Whether the run failed (the failure stays for `take_failure`).
    pub(crate) fn has_failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The first failure, taken.
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// A node's output as its loop drives it, beyond emitting values.
pub(crate) trait NodeOutput: Output + Send {
    /// Ends the node's stream for every consumer.
    fn finish(&mut self);

    /// Makes what was emitted visible to consumers that sleep: called
    /// before the node waits for input.
    fn flush(&mut self) {}

    /// Values emitted so far.
    fn emitted(&self) -> u64;

    /// Lets values that lie in these inputs' arenas (per input index) be
    /// forwarded by reference (see `run::forward`).
    fn forward_from(&mut self, sources: Vec<(usize, clusterduck_transport::ArenaSpan)>) {
        let _ = sources;
    }

    /// Whether values were forwarded by reference since the last
    /// [`take_forwards`](Self::take_forwards): one load, for every value.
    fn forwarded(&self) -> bool {
        false
    }

    /// The values forwarded by reference since the last call.
    fn take_forwards(&mut self) -> forward::Forwards {
        forward::Forwards::new()
    }

    /// How long the output held the node back (full, its consumers slow).
    fn blocked(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Where every consumer has released the output to: frames that end at
    /// or below it are done with.
    fn released(&mut self) -> u64 {
        u64::MAX
    }

    /// Whether a spout's emit was refused because the run drains (so the
    /// error the spout returns with is not a failure).
    fn refused_for_stop(&self) -> bool;

    /// Whether the output is written in steps (the node may be restarted):
    /// its loop then ends each step with [`commit`](Self::commit).
    fn in_steps(&self) -> bool {
        false
    }

    /// Ends a step with the node's `checkpoint`: publishes what it emitted,
    /// at once if consumers wait for it; a step that emitted nothing (or
    /// whose outputs the debugger's tap has not sent yet) is published with
    /// a later one, or by [`settle_step`](Self::settle_step).
    fn commit(&mut self, checkpoint: &recovery::Checkpoint) {
        let _ = checkpoint;
    }

    /// Publishes the last step, whose checkpoint is `checkpoint`, if it was
    /// left unpublished: before the node releases the input it used (a
    /// successor never finds released what it must read again), and before
    /// it waits.
    fn settle_step(&mut self, checkpoint: Option<&recovery::Checkpoint>) {
        let _ = checkpoint;
    }

    /// A restarted spout's sends dropped as sent already.
    fn resent(&self) -> u64 {
        0
    }
}

/// What every output checks before it takes a value: the run aborting, or,
/// for a spout, the run draining (the spout should return).
#[derive(Debug)]
pub(crate) struct EmitGate {
    pub(crate) stop: StopSignal,
    pub(crate) is_spout: bool,
    /// Set when a spout's value was refused because the run drains, so that
    /// the error the spout returns with is not taken for a failure.
    pub(crate) refused_for_stop: bool,
}

impl EmitGate {
    pub(crate) fn new(stop: StopSignal, is_spout: bool) -> Self {
        Self {
            stop,
            is_spout,
            refused_for_stop: false,
        }
    }

    /// The value back if it may go on, or the error that refuses it.
    pub(crate) fn admit(&mut self, value: Payload) -> Result<Payload, EmitError> {
        if self.stop.is_aborted() {
            return Err(EmitError::Aborted(value));
        }
        if self.is_stopping() {
            self.refused_for_stop = true;
            return Err(EmitError::Stopping(value));
        }
        Ok(value)
    }

    /// Whether a value the caller keeps (a reference, archived bytes) may
    /// go on; a refusal carries `()`.
    pub(crate) fn admit_kept(&mut self) -> Result<(), EmitError> {
        self.admit(payload(())).map(drop)
    }

    /// Whether a spout should return.
    pub(crate) fn is_stopping(&self) -> bool {
        self.is_spout && self.stop.is_draining()
    }
}

/// Where a node's policy events go: the debugger, in whatever process it is.
pub(crate) trait EventSink: Send {
    /// Hands over one event.
    fn event(&mut self, event: PolicyEvent);
}

/// The message of a node function's failure, or `None` if it succeeded.
pub(crate) fn node_failure(result: thread::Result<Result<(), BoxError>>) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(format!("panicked: {}", panic_message(&*panic))),
    }
}

/// A random run id: 16 hex digits, which name the run's shared-memory
/// segments.
pub(crate) fn new_run_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    clusterduck_transport::auth::random(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Removes the segments of runs whose processes are all gone, saying so.
pub(crate) fn remove_stale_segments() {
    match clusterduck_transport::remove_stale_segments() {
        Ok(stale) => {
            for segment in stale {
                tracing::info!("stale shared-memory segment: {segment}");
            }
        }
        Err(e) => tracing::warn!("cannot look for stale segments: {e}"),
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
