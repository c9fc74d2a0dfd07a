//! The loop of a worker: read the accepted upstreams, step the node's core,
//! call the function, until every upstream ended or the run aborts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Select, TryRecvError};

use super::edge::{EdgeRx, Msg, TICK};
use super::{node_failure, policy_event, EventSink, NodeOutput, RunControl};
use crate::body::{Payload, WorkerFn};
use crate::bundle::Notice;
use crate::node::{NodeCore, Step};
use crate::report::{IncompleteBundle, NodeReport, LISTED_INCOMPLETE};

/// Everything a worker thread owns.
pub(crate) struct WorkerTask<O> {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) core: NodeCore<Payload>,
    pub(crate) body: Box<dyn WorkerFn>,
    pub(crate) inputs: Vec<EdgeRx>,
    pub(crate) upstream_names: Arc<[String]>,
    pub(crate) output: O,
    pub(crate) control: Arc<RunControl>,
    pub(crate) events: Option<Box<dyn EventSink>>,
}

impl<O: NodeOutput> WorkerTask<O> {
    /// Runs the worker to the end of its inputs, or until the run aborts.
    pub(crate) fn run(mut self) -> NodeReport {
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            ..NodeReport::default()
        };
        let mut open: Vec<bool> = vec![true; self.inputs.len()];
        let mut next_input = 0;
        let mut draining = false;
        'run: loop {
            if self.control.stop.is_aborted() {
                break;
            }
            if !draining && self.control.stop.is_draining() {
                draining = true;
                self.core.drain();
            }
            let now = Instant::now();
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
            // Take what is there, one upstream after another, so that a busy
            // upstream cannot starve the others.
            let n = self.inputs.len();
            let mut took = false;
            for i in 0..n {
                let u = (next_input + i) % n;
                if !open[u] || !self.core.accepts(u) {
                    continue;
                }
                match self.inputs[u].try_recv() {
                    Ok(msg) => {
                        self.receive(u, msg, &mut report, &mut open);
                        next_input = u + 1;
                        took = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        self.receive(u, Msg::End, &mut report, &mut open);
                    }
                }
            }
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
            let received = {
                let mut select = Select::new();
                let mut waiting = Vec::new();
                for (u, rx) in self.inputs.iter().enumerate() {
                    if open[u] && self.core.accepts(u) {
                        select.recv(rx);
                        waiting.push(u);
                    }
                }
                if waiting.is_empty() {
                    std::thread::sleep(timeout);
                    None
                } else {
                    select.select_timeout(timeout).ok().map(|op| {
                        let u = waiting[op.index()];
                        (u, op.recv(&self.inputs[u]).unwrap_or(Msg::End))
                    })
                }
            };
            if let Some((u, msg)) = received {
                self.receive(u, msg, &mut report, &mut open);
            }
        }
        report.messages_out = self.output.emitted();
        report.policy = self.core.counts();
        report
    }

    fn receive(&mut self, u: usize, msg: Msg, report: &mut NodeReport, open: &mut [bool]) {
        let now = Instant::now();
        match msg {
            Msg::Data(seq, value) => {
                report.messages_in += 1;
                self.core.offer(u, seq, value, now);
            }
            Msg::End => {
                open[u] = false;
                self.core.end(u, now);
            }
        }
    }

    /// Carries out one step; an error is the node's failure message.
    fn step(&mut self, step: Step<Payload>, report: &mut NodeReport) -> Result<(), String> {
        match step {
            Step::Run { seq, input } => {
                let body = &mut self.body;
                let output = &mut self.output;
                let result = catch_unwind(AssertUnwindSafe(|| body.call(seq, input, output)));
                if let Some(message) = node_failure(result) {
                    self.control.fail(crate::report::Failure::Node {
                        node: self.name.clone(),
                        seq: Some(seq),
                        message: message.clone(),
                    });
                    return Err(message);
                }
                Ok(())
            }
            Step::Notice(notice) => {
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
                Ok(())
            }
            Step::Fatal(notice) => {
                let failure =
                    crate::report::Failure::from_notice(&self.name, &notice, &self.upstream_names);
                let message = failure.to_string();
                self.send_event(notice);
                self.control.fail(failure);
                Err(message)
            }
        }
    }

    fn send_event(&mut self, notice: Notice) {
        if let Some(sink) = &mut self.events {
            sink.event(policy_event(&self.name, notice, &self.upstream_names));
        }
    }
}
