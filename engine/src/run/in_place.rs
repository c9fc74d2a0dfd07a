//! Taking values in place: each value is handed to the function where it
//! lies in its upstream's ring, while the read holds it, never decoded,
//! copied or queued. The way of a plain worker (nothing to bundle or
//! reorder) whose function takes archived values: its core only keeps
//! track of the ends.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::inlet::Keep;
use super::take::{Halt, Reading, Take};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
use crate::node::{Input, NodeCore};
use crate::Seq;

/// Nothing to keep: values go to the function as they are read.
pub(crate) struct InPlace;

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
            ..
        } = task;
        let Reading { ended, count } = at;
        let from = upstream_of[upstream];
        // Where the last value forwarded by reference went in the output.
        let mut until = None;
        let (got, hold) = inputs[upstream].visit(wait, ended, |seq, bytes| {
            *count += 1;
            call_guarded(
                &mut **body,
                &mut *output,
                (control, name, &mut *meter),
                seq,
                |body, out| body.call_archived(seq, from, bytes, out),
            )
            .map_err(Halt::Failed)?;
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
