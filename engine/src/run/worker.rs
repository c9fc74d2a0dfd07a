//! The loop of a worker: read the accepted upstreams, step the node's core,
//! call the function, until every upstream ended or the run aborts.

use std::collections::VecDeque;
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
use crate::Seq;

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

/// What has arrived from one upstream and not been offered yet: at most one
/// batch, since an upstream is read only when its queue is empty.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<(Seq, Payload)>,
    /// The End message arrived; it takes effect once the queue is empty.
    ended: bool,
    /// The core was told of the end.
    closed: bool,
}

impl Inbox {
    fn put(&mut self, msg: Msg) {
        match msg {
            Msg::Data(seq, value) => self.queue.push_back((seq, value)),
            Msg::Batch(values) => self.queue.extend(values),
            Msg::End => self.ended = true,
        }
    }
}

impl<O: NodeOutput> WorkerTask<O> {
    /// Runs the worker to the end of its inputs, or until the run aborts.
    pub(crate) fn run(mut self) -> NodeReport {
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
        // should not pay for a clock read per value.
        let timed = self.core.deadline_matters();
        let epoch = Instant::now();
        let clock = || if timed { Instant::now() } else { epoch };
        'run: loop {
            if self.control.stop.is_aborted() {
                break;
            }
            if !draining && self.control.stop.is_draining() {
                draining = true;
                self.core.drain();
            }
            let now = clock();
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
            let wanted = |u: usize, inbox: &[Inbox], core: &NodeCore<Payload>| {
                !inbox[u].ended && inbox[u].queue.is_empty() && core.accepts(u)
            };
            let mut took = false;
            for i in 0..n {
                let u = (current + i) % n;
                if !wanted(u, &inbox, &self.core) {
                    continue;
                }
                match self.inputs[u].try_recv() {
                    Ok(msg) => {
                        inbox[u].put(msg);
                        took = true;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        inbox[u].put(Msg::End);
                        took = true;
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
                    if wanted(u, &inbox, &self.core) {
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
                inbox[u].put(msg);
            }
        }
        report.messages_out = self.output.emitted();
        report.policy = self.core.counts();
        report
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
