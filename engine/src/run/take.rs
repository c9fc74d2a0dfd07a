//! How a worker's loop takes its upstreams' values: the one thing in which
//! the ways of running a worker differ. Everything else (abort and drain,
//! ends, which upstream to read, flushing before a wait, the report) is the
//! loop's, written once in `run::worker`.
//!
//! Three ways exist: values decoded into owned ones and queued
//! (`run::decoded`), handed to the function in place while the read holds
//! them (`run::in_place`: plain workers that take archived values), and
//! held in their rings until their bundle ran (`run::held`: bundled workers
//! that take archived values).

use std::time::{Duration, Instant};

use super::inlet::{BadInput, Inlet};
use super::worker::WorkerTask;
use super::NodeOutput;
use crate::node::{Input, NodeCore};
use crate::Seq;

/// Why a read stops the node.
pub(crate) enum Halt {
    /// A frame or value that could not be read: the node fails with it.
    Bad(BadInput),
    /// The function failed while a read handed it values (the run was
    /// told); the node's failure message.
    Failed(String),
}

impl From<BadInput> for Halt {
    fn from(bad: BadInput) -> Self {
        Halt::Bad(bad)
    }
}

/// Where a read stands for one upstream: whether its stream ended, and the
/// count of values read from every upstream.
pub(crate) struct Reading<'a> {
    /// Set when the upstream's End frame is read.
    pub(crate) ended: &'a mut bool,
    /// Values read, all upstreams (the report's `messages_in`).
    pub(crate) count: &'a mut u64,
}

/// One way of taking values; see the module's documentation.
pub(crate) trait Take {
    /// What the node's core holds for a value.
    type Value;

    /// Whether `upstream` has values read and not yet offered to the core:
    /// they are offered before the upstream is read again, and its end
    /// takes effect after them.
    fn has_read(&self, upstream: usize) -> bool {
        let _ = upstream;
        false
    }

    /// Offers `upstream`'s next value read earlier to `core`, which accepts
    /// it. Called only when [`has_read`](Self::has_read) says so.
    fn offer_read(&mut self, upstream: usize, core: &mut NodeCore<Self::Value>, now: Instant) {
        let _ = (upstream, core, now);
    }

    /// Reads `upstream`'s ring, waiting up to `wait` if given (else not at
    /// all), at most a batch; what it takes goes to `core`, or to the
    /// function. Returns whether anything came (an end counts).
    fn read<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        upstream: usize,
        core: &mut NodeCore<Self::Value>,
        at: Reading<'_>,
        now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, Halt>;

    /// Calls the function on an input the core gave. An error is the node's
    /// failure message (the run was told).
    fn call<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Self::Value>,
    ) -> Result<(), String>;

    /// A restartable node's checkpoint, as of its last call.
    fn checkpoint(&self) -> Option<&crate::run::recovery::Checkpoint> {
        None
    }

    /// Lets the rings' writers have the space of the values the node is
    /// done with: after each round of steps, and at the end.
    fn settle(&mut self, inputs: &mut [Inlet]) {
        let _ = inputs;
    }

    /// Runs what can run without going through the core, if anything (see
    /// `run::lockstep`). Returns how many inputs ran.
    fn shortcut<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        core: &mut NodeCore<Self::Value>,
        count: &mut u64,
    ) -> Result<usize, String> {
        let _ = (task, core, count);
        Ok(0)
    }
}
