//! The loop of a worker: read the accepted upstreams, step the node's core,
//! call the function, until every upstream ended or the run aborts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::inlet::{wait_any, BadInput, Inbox, Inlet};
use super::TICK;
use super::{node_failure, policy_event, EventSink, NodeOutput, RunControl, Upstreams};
use crate::body::{BoxError, Output, Payload, WorkerFn};
use crate::bundle::Notice;
use crate::graph::NodeSpec;
use crate::node::{NodeCore, Step};
use crate::report::{IncompleteBundle, NodeReport, LISTED_INCOMPLETE};
use crate::Seq;

/// Everything a worker thread owns.
pub(crate) struct WorkerTask<O> {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) spec: NodeSpec,
    pub(crate) core: NodeCore<Payload>,
    pub(crate) body: Box<dyn WorkerFn>,
    pub(crate) inputs: Vec<Inlet>,
    pub(crate) upstream_names: Arc<[String]>,
    pub(crate) output: O,
    pub(crate) control: Arc<RunControl>,
    pub(crate) events: Option<Box<dyn EventSink>>,
}

impl<O: NodeOutput> WorkerTask<O> {
    /// Runs the worker to the end of its inputs, or until the run aborts.
    pub(crate) fn run(mut self) -> NodeReport {
        if self.runs_in_place() {
            return self.run_in_place();
        }
        if self.runs_held() {
            return self.run_held();
        }
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            ..NodeReport::default()
        };
        let n = self.inputs.len();
        let mut inbox: Vec<Inbox> = (0..n).map(|_| Inbox::default()).collect();
        // The input being worked through: stay on it while it has values, so
        // that a batch is taken in one go; move on when it runs dry, so that a
        // busy upstream cannot starve the others.
        let mut current = 0;
        let mut draining = false;
        // Only bundling tables keep time (gap timeouts); a plain worker
        // should not pay for clock reads. The clock is read when input
        // arrives, once per read rather than per value: a batch is worked
        // through in microseconds, and gap timeouts are milliseconds.
        let timed = self.core.deadline_matters();
        let epoch = Instant::now();
        let clock = || if timed { Instant::now() } else { epoch };
        let mut now = clock();
        'run: loop {
            if self.control.stop.is_aborted() {
                break;
            }
            if !draining && self.control.stop.is_draining() {
                draining = true;
                self.core.drain();
            }
            while let Some(step) = self.core.poll(now) {
                if let Err(message) = self.step(step, &mut report) {
                    report.error = Some(message);
                    break 'run;
                }
            }
            if self.core.is_finished() {
                self.output.finish();
                break;
            }
            // Offer the next value that is there and accepted.
            let ready = (0..n)
                .map(|i| (current + i) % n)
                .find(|u| !inbox[*u].queue.is_empty() && self.core.accepts(*u));
            if let Some(u) = ready {
                current = u;
                let (seq, value) = inbox[u].queue.pop_front().expect("a queued value");
                report.messages_in += 1;
                self.core.offer(u, seq, value, now);
                continue;
            }
            // Ends that are due.
            let mut ended = false;
            for (u, inbox) in inbox.iter_mut().enumerate() {
                if inbox.ended && !inbox.closed && inbox.queue.is_empty() {
                    inbox.closed = true;
                    self.core.end(u, now);
                    ended = true;
                }
            }
            if ended {
                continue;
            }
            // Read the upstreams that are empty and accepted, without waiting.
            let wanted: Upstreams = (0..n)
                .map(|i| (current + i) % n)
                .filter(|u| {
                    !inbox[*u].ended
                        && inbox[*u].queue.is_empty()
                        && self.core.accepts(*u)
                        && !self.inputs[*u].is_broken()
                })
                .collect();
            let mut took = false;
            for u in &wanted {
                match self.inputs[*u].try_fill(&mut inbox[*u]) {
                    Ok(got) => took |= got,
                    Err(bad) => {
                        report.error = Some(self.bad_input(*u, bad));
                        break 'run;
                    }
                }
            }
            now = clock();
            if took {
                continue;
            }
            // Nothing there: sleep until something arrives, the gap deadline
            // passes, or a tick to look at the stop signal.
            self.output.flush();
            let timeout = self
                .core
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()).min(TICK))
                .unwrap_or(TICK);
            if let Err(bad) = wait_any(&mut self.inputs, &mut inbox, &wanted, current, timeout) {
                let u = wanted.first().copied().unwrap_or(0);
                report.error = Some(self.bad_input(u, bad));
                break 'run;
            }
            now = clock();
        }
        report.messages_out = self.output.emitted();
        report.policy = self.core.counts();
        report
    }

    /// Fails the node for a value from upstream `u` that could not be read.
    pub(super) fn bad_input(&mut self, u: usize, bad: BadInput) -> String {
        let message = format!("from {}: {}", self.upstream_names[u], bad.message);
        self.control.fail(crate::report::Failure::Node {
            node: self.name.clone(),
            seq: bad.seq,
            message: message.clone(),
        });
        message
    }

    /// Carries out one step; an error is the node's failure message.
    fn step(&mut self, step: Step<Payload>, report: &mut NodeReport) -> Result<(), String> {
        match step {
            Step::Run { seq, input } => self.call(seq, |body, out| body.call(seq, input, out)),
            Step::Notice(notice) => {
                self.notice(notice, report);
                Ok(())
            }
            Step::Fatal(notice) => Err(self.fatal(notice)),
        }
    }

    /// Calls the node's function on the input with id `seq`, through
    /// `call`; a failure or panic fails the run, and is the node's failure
    /// message.
    pub(super) fn call(
        &mut self,
        seq: Seq,
        call: impl FnOnce(&mut dyn WorkerFn, &mut dyn Output) -> Result<(), BoxError>,
    ) -> Result<(), String> {
        call_guarded(
            &mut *self.body,
            &mut self.output,
            &self.control,
            &self.name,
            seq,
            call,
        )
    }

    /// Reports what a policy did; processing goes on.
    pub(super) fn notice(&mut self, notice: Notice, report: &mut NodeReport) {
        if let Notice::Incomplete { seq, missing } = &notice {
            if report.incomplete.len() < LISTED_INCOMPLETE {
                report.incomplete.push(IncompleteBundle {
                    seq: *seq,
                    missing: missing
                        .iter()
                        .map(|i| self.upstream_names[*i].clone())
                        .collect(),
                });
            }
        }
        self.send_event(notice);
    }

    /// A policy failed the run: tells the run, returns the node's failure
    /// message.
    pub(super) fn fatal(&mut self, notice: Notice) -> String {
        let failure =
            crate::report::Failure::from_notice(&self.name, &notice, &self.upstream_names);
        let message = failure.to_string();
        self.send_event(notice);
        self.control.fail(failure);
        message
    }

    fn send_event(&mut self, notice: Notice) {
        if let Some(sink) = &mut self.events {
            sink.event(policy_event(&self.name, notice, &self.upstream_names));
        }
    }
}

/// Calls node `name`'s function `body` on the input with id `seq`, through
/// `call`; a failure or panic fails the run, and is the node's failure
/// message. (Takes the task's parts, for callers that hold its inputs.)
pub(super) fn call_guarded(
    body: &mut dyn WorkerFn,
    output: &mut dyn Output,
    control: &RunControl,
    name: &str,
    seq: Seq,
    call: impl FnOnce(&mut dyn WorkerFn, &mut dyn Output) -> Result<(), BoxError>,
) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| call(body, output)));
    match node_failure(result) {
        None => Ok(()),
        Some(message) => {
            control.fail(crate::report::Failure::Node {
                node: name.to_owned(),
                seq: Some(seq),
                message: message.clone(),
            });
            Err(message)
        }
    }
}
