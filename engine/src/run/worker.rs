//! The loop of a worker, one for every way of taking values (see
//! `run::take`): read the accepted upstreams, step the node's core, call
//! the function, until every upstream ended or the run aborts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decoded::Decoded;
use super::forward::{Pins, PIN_POLL};
use super::held::{Held, Holding, Owned};
use super::in_place::InPlace;
use super::inlet::{BadInput, Inlet, RING_POLL};
use super::journal::{DoneAbove, Journal};
use super::recovery::Checkpoint;
use super::take::{Halt, Reading, Take};
use super::TICK;
use super::{node_failure, EventSink, NodeOutput, RunControl, Upstreams};
use crate::body::{BoxError, Output, WorkerFn};
use crate::bundle::{Notice, Order};
use crate::graph::{NodeId, NodeKind, NodeSpec};
use crate::metrics::probe::CallMeter;
use crate::metrics::Probe;
use crate::node::{NodeCore, Step};
use crate::replica::{Blame, KeyFn, Replicated, Share};
use crate::report::{IncompleteBundle, NodeReport, LISTED_INCOMPLETE};
use crate::Seq;

/// Everything a worker thread owns.
pub(crate) struct WorkerTask<O> {
    /// The instance's name (`J[1]` for a replica).
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// The node as declared.
    pub(crate) spec: NodeSpec,
    pub(crate) body: Box<dyn WorkerFn>,
    /// One per ring read: a replicated upstream is one per replica.
    pub(crate) inputs: Vec<Inlet>,
    /// Per input: which of the node's upstreams it is.
    pub(crate) upstream_of: Vec<usize>,
    /// Per input: the instance it reads (for messages).
    pub(crate) input_names: Vec<String>,
    /// The node's upstreams, as declared (for policy events).
    pub(crate) upstream_names: Arc<[String]>,
    /// A sequenced replica's share of the ids.
    pub(crate) share: Option<Share>,
    /// Per upstream: who to name for a value it did not send.
    pub(crate) blame: Vec<Blame>,
    pub(crate) output: O,
    pub(crate) control: Arc<RunControl>,
    pub(crate) events: Option<Box<dyn EventSink>>,
    /// Input frames held for values forwarded by reference.
    pub(crate) pins: Pins,
    /// Times the function (a call in many), for the node's metrics.
    pub(crate) meter: CallMeter,
    /// Whether the node bundles its inputs; in id order.
    pub(crate) bundles: bool,
    pub(crate) sequenced: bool,
    /// A restarted node's: its predecessor's last checkpoint.
    pub(crate) before: Option<Checkpoint>,
    /// Its journal, if it keeps one (see `WorkerParts`).
    journal: Option<(Journal, DoneAbove)>,
    /// Values read again and processed again since the node's first
    /// process (restarts: see `run::recovery`).
    pub(crate) replayed: u64,
    /// Values read again and dropped as done with, likewise.
    pub(crate) skipped: u64,
}

/// What a worker instance is given to run.
pub(crate) struct WorkerParts<O> {
    pub(crate) body: Box<dyn WorkerFn>,
    /// Its input rings, in the instance graph's upstream order.
    pub(crate) inputs: Vec<Inlet>,
    /// Per upstream of the node: its key function, if grouped by key.
    pub(crate) keys: Vec<Option<KeyFn>>,
    pub(crate) output: O,
    pub(crate) control: Arc<RunControl>,
    pub(crate) events: Option<Box<dyn EventSink>>,
    /// Where the node's metrics are published (its inputs registered).
    pub(crate) probe: Arc<Probe>,
    /// A restarted node's: its predecessor's last checkpoint (the output
    /// goes on from it too).
    pub(crate) before: Option<Checkpoint>,
    /// A restartable bundled node in no order's journal (see
    /// `run::journal`), and what it says a restarted one's predecessors
    /// were done with.
    pub(crate) journal: Option<(Journal, DoneAbove)>,
}

impl<O: NodeOutput> WorkerTask<O> {
    /// The task of instance `id` of `run`.
    pub(crate) fn new(run: &Replicated, id: NodeId, parts: WorkerParts<O>) -> Self {
        let replica = run.replica(id);
        let mut spec = run.graph().node(replica.node).clone();
        let before = parts.before;
        let sequenced = match &mut spec.kind {
            NodeKind::Bundled(bundling) => match bundling.order {
                Order::Sequenced { first } => {
                    // A restarted node's table starts at the next id due.
                    let next = before.as_ref().map_or(first, |b| b.seq.max(first));
                    bundling.order = Order::Sequenced { first: next };
                    true
                }
                Order::Unordered => false,
            },
            _ => false,
        };
        let bundles = matches!(spec.kind, NodeKind::Bundled(_));
        let instance = run.instances().node(id);
        let spec_upstreams = spec.upstreams.len();
        let inputs = parts
            .inputs
            .into_iter()
            .enumerate()
            .map(|(input, inlet)| {
                let key = parts.keys.get(replica.inputs[input]).cloned().flatten();
                inlet.routed(run.route(id, input, key))
            })
            .collect();
        let mut task = Self {
            name: instance.name.clone(),
            kind: spec.kind.label(),
            upstream_names: spec.upstreams.clone().into(),
            spec,
            body: parts.body,
            inputs,
            upstream_of: replica.inputs.clone(),
            input_names: instance.upstreams.clone(),
            share: run.share(id),
            blame: (0..spec_upstreams).map(|u| run.blame(id, u)).collect(),
            output: parts.output,
            control: parts.control,
            events: parts.events,
            pins: Pins::default(),
            meter: CallMeter::new(parts.probe),
            bundles,
            sequenced,
            replayed: before.as_ref().map_or(0, |b| b.replayed),
            skipped: before.as_ref().map_or(0, |b| b.skipped),
            before,
            journal: parts.journal,
        };
        if let NodeKind::Bundled(bundling) = &task.spec.kind {
            let capacity = bundling.window_len() * spec_upstreams;
            task.meter.probe().table_capacity(capacity);
        }
        // Large values that lie in an input's arena may be forwarded by
        // reference.
        let sources = task
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(i, inlet)| inlet.reader().arena_span().map(|span| (i, span)))
            .collect();
        task.output.forward_from(sources);
        task
    }

    /// Holds the input frames the values forwarded by the last call came
    /// from: `at(input)` says where that input's value lies (its frame, or
    /// one before it); from the oldest unreleased frame if it cannot say.
    /// Call after every call of the function that may have forwarded.
    #[inline]
    pub(super) fn pin_forwards(&mut self, mut at: impl FnMut(usize) -> Option<u64>) {
        if !self.output.forwarded() {
            return;
        }
        for (input, until) in self.output.take_forwards() {
            let ring = self.inputs[input].reader_mut().0;
            let pos = at(input).unwrap_or_else(|| ring.cursor());
            let hold = ring.hold_at(pos);
            self.pins.push(input, until, hold);
        }
    }

    /// Releases the input the node is done with, after the step that used
    /// it is published.
    #[inline]
    fn settle<T: Take>(&mut self, take: &mut T) {
        self.output.settle_step(take.checkpoint());
        take.settle(&mut self.inputs);
    }

    /// Ends the holds of forwarded values that every consumer is done with.
    #[inline]
    fn unpin_released(&mut self) {
        if !self.pins.is_empty() {
            let released = self.output.released();
            self.pins.release(released, &mut self.inputs);
        }
    }

    /// Runs the worker to the end of its inputs, or until the run aborts,
    /// taking values the way its function wants them: owned (decoded), or
    /// archived where they lie (in place for a plain worker; held until
    /// their bundle ran for a bundled one).
    /// A node that may be restarted holds every value until it ran, owned
    /// or archived (see `run::held`).
    pub(crate) fn run(mut self) -> NodeReport {
        if self.output.in_steps() {
            let before = self.before.take();
            return if self.body.takes_archived() && !self.bundles {
                let mut skipped = 0;
                match InPlace::in_steps(&mut self.inputs, before.as_ref(), &mut skipped) {
                    Ok(take) => {
                        self.skipped += skipped;
                        self.drive(take)
                    }
                    Err((u, bad)) => self.failed_at_start(u, bad),
                }
            } else if self.body.takes_archived() {
                let take = Holding::<Held>::new(&self.inputs);
                self.resume(take, before)
            } else {
                let take = Holding::<Owned>::new(&self.inputs);
                self.resume(take, before)
            };
        }
        match (self.body.takes_archived(), self.bundles) {
            (false, _) => {
                let take = Decoded::new(self.inputs.len());
                self.drive(take)
            }
            (true, false) => self.drive(InPlace::default()),
            (true, true) => {
                let take = Holding::<Held>::new(&self.inputs);
                self.drive(take)
            }
        }
    }

    /// Runs a node that may be restarted, going on from `before` (its
    /// predecessor's last checkpoint) if it was.
    fn resume<K: super::held::Kept>(
        mut self,
        take: Holding<K>,
        before: Option<Checkpoint>,
    ) -> NodeReport {
        let mut skipped = 0;
        let journal = self.journal.take();
        match take.in_steps(&mut self.inputs, (before, journal), &mut skipped) {
            Ok(take) => {
                self.skipped += skipped;
                self.drive(take)
            }
            Err((u, bad)) => self.failed_at_start(u, bad),
        }
    }

    /// The report of a node that could not start reading input `u`.
    fn failed_at_start(&mut self, u: usize, bad: BadInput) -> NodeReport {
        let message = self.bad_input(u, bad);
        NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            error: Some(message),
            ..NodeReport::default()
        }
    }

    /// The loop.
    fn drive<T: Take>(mut self, mut take: T) -> NodeReport {
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            ..NodeReport::default()
        };
        let mut core: NodeCore<T::Value> =
            NodeCore::with_inputs(&self.spec, self.upstream_of.clone(), self.share);
        let n = self.inputs.len();
        // Per upstream: its End frame was read; the core was told.
        let mut ended = vec![false; n];
        let mut closed = vec![false; n];
        // The upstream being worked through: stay on it while it has values
        // read, so that a batch is taken in one go; the next read goes
        // round all of them, so that a busy upstream cannot starve the
        // others.
        let mut current = 0;
        let mut draining = false;
        // Only bundling tables keep time (gap timeouts); a plain worker
        // should not pay for clock reads. The clock is read when input
        // arrives, once per read rather than per value: a batch is worked
        // through in microseconds, and gap timeouts are milliseconds.
        let timed = core.deadline_matters();
        let epoch = Instant::now();
        let clock = || if timed { Instant::now() } else { epoch };
        let mut now = clock();
        // Time slept with nothing to read (reads' own waits are the rings').
        let mut slept = Duration::ZERO;
        'run: loop {
            if self.control.stop.is_aborted() {
                break;
            }
            let probe = self.meter.probe();
            probe.taken(report.messages_in);
            if probe.wanted() {
                probe.publish(core.buffered(), core.counts());
                self.meter.resync();
            }
            if !draining && self.control.stop.is_draining() {
                draining = true;
                core.drain();
            }
            while let Some(step) = core.poll(now) {
                let result = match step {
                    Step::Run { seq, input } => take.call(&mut self, seq, input),
                    Step::Notice(notice) => {
                        self.notice(notice, &mut report, &core);
                        Ok(())
                    }
                    Step::Fatal(notice) => Err(self.fatal(notice, &core)),
                };
                if let Err(message) = result {
                    report.error = Some(message);
                    break 'run;
                }
            }
            self.settle(&mut take);
            self.unpin_released();
            if core.is_finished() {
                self.output.finish();
                break;
            }
            let order = || (0..n).map(|i| (current + i) % n);
            // Offer the next value read earlier and accepted.
            if let Some(u) = order().find(|u| take.has_read(*u) && core.accepts(*u)) {
                current = u;
                take.offer_read(u, &mut core, now);
                continue;
            }
            // Ends that are due: after every value read before them.
            let mut end_due = false;
            for u in 0..n {
                if ended[u] && !closed[u] && !take.has_read(u) {
                    closed[u] = true;
                    core.end(u, now);
                    end_due = true;
                }
            }
            if end_due {
                continue;
            }
            match take.shortcut(&mut self, &mut core, &mut report.messages_in) {
                Ok(0) => {}
                Ok(_) => continue,
                Err(message) => {
                    report.error = Some(message);
                    break 'run;
                }
            }
            // Read the accepted upstreams that have nothing read, without
            // waiting. Upstreams that run ahead in a bundling table are read
            // once the others can't be: reading them cannot complete a
            // bundle, and leaving their values in their rings lets the table
            // drain back to lockstep.
            let wanted: Upstreams = order()
                .filter(|u| {
                    !ended[*u]
                        && !take.has_read(*u)
                        && core.accepts(*u)
                        && !self.inputs[*u].is_broken()
                })
                .collect();
            let behind: Upstreams = wanted.iter().copied().filter(|u| !core.leads(*u)).collect();
            let wanted = if behind.is_empty() { wanted } else { behind };
            let mut took = false;
            for &u in &wanted {
                let at = Reading {
                    ended: &mut ended[u],
                    count: &mut report.messages_in,
                };
                match take.read(&mut self, u, &mut core, at, now, None) {
                    Ok(got) => took |= got,
                    Err(halt) => {
                        report.error = Some(self.halt(u, halt));
                        break 'run;
                    }
                }
            }
            now = clock();
            if took {
                continue;
            }
            // Nothing there: wake our consumers, then sleep on one upstream
            // (a short slice when others may have values meanwhile), until
            // the gap deadline at the latest.
            self.output.flush();
            let until_deadline = |slice: Duration| {
                core.deadline().map_or(slice, |d| {
                    slice.min(d.saturating_duration_since(Instant::now()))
                })
            };
            let Some(&u) = wanted.first() else {
                // Nothing to read: the table waits for its gap deadline, or
                // only broken upstreams are left (whoever runs them reports
                // it and stops the run).
                let nap = until_deadline(TICK);
                std::thread::sleep(nap);
                slept += nap;
                self.meter.probe().slept(nap);
                now = clock();
                continue;
            };
            current = (u + 1) % n;
            let mut slice = until_deadline(if wanted.len() == 1 { TICK } else { RING_POLL });
            if !self.pins.is_empty() {
                // The upstream may wait for the space our consumers free.
                slice = slice.min(PIN_POLL);
            }
            let at = Reading {
                ended: &mut ended[u],
                count: &mut report.messages_in,
            };
            if let Err(halt) = take.read(&mut self, u, &mut core, at, now, Some(slice)) {
                report.error = Some(self.halt(u, halt));
                break;
            }
            now = clock();
        }
        report.policy = core.counts();
        // Values the core still holds are done with.
        drop(core);
        self.settle(&mut take);
        report.messages_out = self.output.emitted();
        report.replayed = self.replayed;
        report.skipped = self.skipped;
        let waited: Duration = self.inputs.iter().map(|i| i.reader().waited()).sum();
        report.timed(epoch.elapsed(), waited + slept, self.output.blocked());
        report
    }

    /// The node's failure message for a read that stopped it at upstream
    /// `u`.
    fn halt(&mut self, u: usize, halt: Halt) -> String {
        match halt {
            Halt::Bad(bad) => self.bad_input(u, bad),
            Halt::Failed(message) => message,
        }
    }

    /// Fails the node for a value from upstream `u` that could not be read.
    pub(super) fn bad_input(&mut self, u: usize, bad: BadInput) -> String {
        let message = format!("from {}: {}", self.input_names[u], bad.message);
        // A restarted process would read it again.
        self.control.fail_for_good(crate::report::Failure::Node {
            node: self.name.clone(),
            seq: bad.seq,
            message: message.clone(),
        });
        message
    }

    /// Calls the node's function on the input with id `seq`, through
    /// `call`; a failure or panic fails the run, and is the node's failure
    /// message.
    #[inline]
    pub(super) fn call(
        &mut self,
        seq: Seq,
        call: impl FnOnce(&mut dyn WorkerFn, &mut dyn Output) -> Result<(), BoxError>,
    ) -> Result<(), String> {
        call_guarded(
            &mut *self.body,
            &mut self.output,
            (&self.control, &self.name, &mut self.meter),
            seq,
            call,
        )
    }

    /// Reports what a policy did; processing goes on.
    pub(super) fn notice<V>(
        &mut self,
        notice: Notice,
        report: &mut NodeReport,
        core: &NodeCore<V>,
    ) {
        let names = self.names_for(&notice, core);
        if let Notice::Incomplete { seq, missing } = &notice {
            if report.incomplete.len() < LISTED_INCOMPLETE {
                report.incomplete.push(IncompleteBundle {
                    seq: *seq,
                    missing: missing.iter().map(|i| names[*i].clone()).collect(),
                });
            }
        }
        self.send_event(notice, names);
    }

    /// A policy failed the run: tells the run, returns the node's failure
    /// message.
    pub(super) fn fatal<V>(&mut self, notice: Notice, core: &NodeCore<V>) -> String {
        let names = self.names_for(&notice, core);
        let failure = crate::report::Failure::from_notice(&self.name, &notice, &names);
        let message = failure.to_string();
        self.send_event(notice, names);
        self.control.fail(failure);
        message
    }

    /// The names the upstream indices of `notice` stand for: the declared
    /// ones, but a replicated upstream that a bundle misses is named by
    /// the replica it waits for (`J[1]`).
    fn names_for<V>(&self, notice: &Notice, core: &NodeCore<V>) -> Arc<[String]> {
        let (missing, seq) = match notice {
            Notice::Gap { missing, seq }
            | Notice::Evicted { missing, seq }
            | Notice::Incomplete { missing, seq } => (missing, *seq),
            _ => return self.upstream_names.clone(),
        };
        if missing.iter().all(|u| self.blame[*u] == Blame::Upstream) {
            return self.upstream_names.clone();
        }
        let mut names = self.upstream_names.to_vec();
        for &u in missing {
            let replicas: Vec<usize> = match &self.blame[u] {
                Blame::Upstream => continue,
                Blame::BySeq(inputs) => vec![inputs[(seq % inputs.len() as u64) as usize]],
                Blame::Silent => core.silent_inputs(u, seq),
            };
            if !replicas.is_empty() {
                let named: Vec<&str> = replicas
                    .iter()
                    .map(|i| self.input_names[*i].as_str())
                    .collect();
                names[u] = named.join("+");
            }
        }
        names.into()
    }

    fn send_event(&mut self, notice: Notice, upstreams: Arc<[String]>) {
        if let Some(sink) = &mut self.events {
            sink.event(crate::report::PolicyEvent {
                node: self.name.clone(),
                notice,
                upstreams,
            });
        }
    }
}

/// Calls node `name`'s function `body` on the input with id `seq`, through
/// `call` (timed by `meter` now and then); a failure or panic fails the run, and is the node's failure
/// message. (Takes the task's parts, for callers that hold its inputs.)
#[inline]
pub(super) fn call_guarded(
    body: &mut dyn WorkerFn,
    output: &mut dyn Output,
    (control, name, meter): (&RunControl, &str, &mut CallMeter),
    seq: Seq,
    call: impl FnOnce(&mut dyn WorkerFn, &mut dyn Output) -> Result<(), BoxError>,
) -> Result<(), String> {
    let result = meter.call(seq, || {
        catch_unwind(AssertUnwindSafe(|| call(body, output)))
    });
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
