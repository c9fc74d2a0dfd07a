//! Taking values in place: each value is handed to the function where it
//! lies in its upstream's ring, while the read holds it, never decoded,
//! copied or queued. The way of a plain worker (nothing to bundle or
//! reorder) whose function takes archived values: its core only keeps
//! track of the ends.
//!
//! A worker that may be restarted ends each call with a checkpoint (see
//! `run::recovery`): the value's input is done with up to the end of its
//! frame. The read releases its frames after the calls, so after their
//! steps were committed.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::inlet::{BadInput, Inlet, Keep, Visit};
use super::recovery::{Checkpoint, Position};
use super::take::{Halt, Reading, Take};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
use crate::node::{Input, NodeCore};
use crate::Seq;

/// Nothing to keep: values go to the function as they are read; a
/// restartable node's checkpoint, written at every call.
#[derive(Default)]
pub(crate) struct InPlace {
    checkpoint: Option<Checkpoint>,
}

impl InPlace {
    /// Checkpoints every call, for a node that may be restarted; a
    /// restarted one goes on from `before`, its predecessor's last
    /// checkpoint: each input is released to where the predecessor was
    /// done with it, the values skipped counted in `skipped`. An input that
    /// cannot be read there is named by index.
    pub(crate) fn in_steps(
        inputs: &mut [Inlet],
        before: Option<&Checkpoint>,
        skipped: &mut u64,
    ) -> Result<Self, (usize, BadInput)> {
        let mut checkpoint = Checkpoint {
            seq: crate::Seq::MAX,
            inputs: vec![Position::default(); inputs.len()],
            ..Checkpoint::default()
        };
        for (u, inlet) in inputs.iter_mut().enumerate() {
            if let Some(before) = before {
                *skipped += inlet
                    .skip_to(before.inputs[u].done)
                    .map_err(|bad| (u, bad))?;
            }
            let at = inlet.reader().cursor();
            checkpoint.inputs[u] = Position { done: at, read: at };
        }
        Ok(Self {
            checkpoint: Some(checkpoint),
        })
    }
}

impl Take for InPlace {
    /// Nothing is offered to the core.
    type Value = Infallible;

    fn read<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        upstream: usize,
        _core: &mut NodeCore<Infallible>,
        at: Reading<'_>,
        _now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, Halt> {
        let WorkerTask {
            name,
            body,
            inputs,
            output,
            control,
            upstream_of,
            pins,
            meter,
            replayed,
            skipped,
            ..
        } = task;
        let checkpoint = &mut self.checkpoint;
        let Reading { ended, count } = at;
        let from = upstream_of[upstream];
        // Where the last value forwarded by reference went in the output.
        let mut until = None;
        let (got, hold) = inputs[upstream].visit(wait, ended, |visit| {
            let (seq, bytes, end) = match visit {
                Visit::Value(seq, bytes, end) => (seq, bytes, end),
                // The read releases its frames next: the step that used
                // them is committed first (see `WorkerTask::settle`).
                Visit::Done => {
                    output.settle_step(checkpoint.as_ref());
                    return Ok(Keep::No);
                }
            };
            *count += 1;
            call_guarded(
                &mut **body,
                &mut *output,
                (control, name, &mut *meter),
                seq,
                |body, out| body.call_archived(seq, from, bytes, out),
            )
            .map_err(Halt::Failed)?;
            if let Some(checkpoint) = checkpoint {
                checkpoint.emitted = output.emitted();
                (checkpoint.replayed, checkpoint.skipped) = (*replayed, *skipped);
                checkpoint.inputs[upstream] = Position {
                    done: end,
                    read: end,
                };
                output.commit(checkpoint);
            }
            if !output.forwarded() {
                return Ok(Keep::No);
            }
            until = output.take_forwards().last().map(|&(_, end)| end);
            Ok::<_, Halt>(Keep::Yes)
        })?;
        if let (Some(hold), Some(until)) = (hold, until) {
            pins.push(upstream, until, hold);
        }
        Ok(got)
    }

    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    fn call<O: NodeOutput>(
        &mut self,
        _task: &mut WorkerTask<O>,
        _seq: Seq,
        input: Input<Infallible>,
    ) -> Result<(), String> {
        match input {
            Input::One { value, .. } => match value {},
            Input::Bundle(_) => Err("internal error: a plain worker got a bundle".into()),
        }
    }
}
