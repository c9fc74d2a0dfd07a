//! The loop of a bundled worker that takes its values archived, in place.
//!
//! Each value stays where it lies in its upstream's ring, held (not
//! released) from the moment the node reads it until its bundle has been
//! processed or the bundling table dropped it; the node reads on past the
//! values it holds. The bundling table works on [`Held`] handles, so every
//! policy (window, gaps, duplicates, timeouts) is the one the decoding loop
//! runs. Ring space is released in order, up to the first value still held:
//! the reorder window lives in the rings, and a window needs ring space for
//! its values, not heap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clusterduck_transport::FrameKind;
use smallvec::SmallVec;

use super::inlet::{read_failed, BadInput, RING_POLL};
use super::worker::{call_guarded, WorkerTask};
use super::TICK;
use super::{NodeOutput, Upstreams};
use crate::node::{Input, NodeCore, Step};
use crate::report::NodeReport;

/// Where the loop stands in reading one upstream.
struct Reading<'a> {
    /// Where to read on from: past the frames held.
    next: &'a mut u64,
    /// The upstream's End frame was read.
    ended: &'a mut bool,
    ledgers: &'a Rc<RefCell<Vec<Ledger>>>,
    /// Values read, all upstreams.
    count: &'a mut u64,
}

/// A value held in its upstream's ring: where its frame lies. Dropping it
/// tells the ledger that the node is done with it.
#[derive(Debug)]
pub(crate) struct Held {
    upstream: usize,
    /// Its number in its upstream's ledger.
    index: u64,
    /// Its frame's position in the ring.
    pos: u64,
    ledgers: Rc<RefCell<Vec<Ledger>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.ledgers.borrow_mut()[self.upstream].done(self.index);
    }
}

/// The frames read from one ring and not released yet, in ring order: which
/// the node is done with, and where each ends.
#[derive(Debug, Default)]
struct Ledger {
    /// The number of the first frame in `frames`.
    first: u64,
    /// Per frame: where it ends, and whether the node is done with it.
    frames: VecDeque<(u64, bool)>,
}

impl Ledger {
    /// Notes a frame that ends at `end`; returns its number.
    fn hold(&mut self, end: u64) -> u64 {
        self.frames.push_back((end, false));
        self.first + self.frames.len() as u64 - 1
    }

    /// Whether no frame read from the ring waits to be released.
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn done(&mut self, index: u64) {
        if let Some(frame) = self.frames.get_mut((index - self.first) as usize) {
            frame.1 = true;
        }
    }

    /// Forgets the frames done with, up to the first still held; returns
    /// where they end, if any were.
    fn releasable(&mut self) -> Option<u64> {
        let mut end = None;
        while let Some(&(e, true)) = self.frames.front() {
            self.frames.pop_front();
            self.first += 1;
            end = Some(e);
        }
        end
    }
}

impl<O: NodeOutput> WorkerTask<O> {
    /// Whether this worker runs [`run_held`](Self::run_held).
    pub(crate) fn runs_held(&self) -> bool {
        self.body.takes_archived() && self.core.bundles()
    }

    /// Runs the bundled worker to the end of its inputs, or until the run
    /// aborts, calling its function with each bundle's values in place.
    pub(crate) fn run_held(mut self) -> NodeReport {
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            ..NodeReport::default()
        };
        let n = self.inputs.len();
        let ledgers = Rc::new(RefCell::new(
            (0..n).map(|_| Ledger::default()).collect::<Vec<_>>(),
        ));
        let mut core: NodeCore<Held> = NodeCore::new(&self.spec);
        // Where to read each ring from next: past the frames held.
        let mut next: Vec<u64> = self.inputs.iter().map(|i| i.reader().cursor()).collect();
        let mut ended = vec![false; n];
        let mut closed = vec![false; n];
        let mut current = 0;
        let mut draining = false;
        let mut now = Instant::now();
        'run: loop {
            if self.control.stop.is_aborted() {
                break;
            }
            if !draining && self.control.stop.is_draining() {
                draining = true;
                core.drain();
            }
            while let Some(step) = core.poll(now) {
                let result = match step {
                    Step::Run { seq, input } => self.call_bundle(seq, input),
                    Step::Notice(notice) => {
                        self.notice(notice, &mut report);
                        Ok(())
                    }
                    Step::Fatal(notice) => Err(self.fatal(notice)),
                };
                if let Err(message) = result {
                    report.error = Some(message);
                    break 'run;
                }
            }
            self.release(&ledgers);
            if core.is_finished() {
                self.output.finish();
                break;
            }
            let mut end_due = false;
            for u in 0..n {
                if ended[u] && !closed[u] {
                    closed[u] = true;
                    core.end(u, now);
                    end_due = true;
                }
            }
            if end_due {
                continue;
            }
            // Upstreams in lockstep: their bundles run straight from the
            // rings (see `run::lockstep`); the rest is read below.
            if ledgers.borrow().iter().all(Ledger::is_empty) {
                match self.run_lockstep(&mut core, &mut next, &mut report.messages_in) {
                    Ok(0) => {}
                    Ok(_) => continue,
                    Err(message) => {
                        report.error = Some(message);
                        break 'run;
                    }
                }
            }
            // Read what is there from the accepted upstreams, without waiting.
            let wanted: Upstreams = (0..n)
                .map(|i| (current + i) % n)
                .filter(|u| !ended[*u] && core.accepts(*u) && !self.inputs[*u].is_broken())
                .collect();
            // Upstreams that run ahead are read once the others can't be:
            // reading them cannot complete a bundle, and leaving their
            // frames in their rings lets the table drain back to lockstep.
            let behind: Upstreams = wanted.iter().copied().filter(|u| !core.leads(*u)).collect();
            let wanted = if behind.is_empty() { wanted } else { behind };
            let mut took = false;
            for u in &wanted {
                let at = Reading {
                    next: &mut next[*u],
                    ended: &mut ended[*u],
                    ledgers: &ledgers,
                    count: &mut report.messages_in,
                };
                match self.read_held(*u, at, &mut core, now, None) {
                    Ok(got) => took |= got,
                    Err(bad) => {
                        report.error = Some(self.bad_input(*u, bad));
                        break 'run;
                    }
                }
            }
            if took {
                now = self.clock(&core, now);
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
                // Nothing accepted: the table waits for its gap deadline.
                std::thread::sleep(until_deadline(TICK));
                now = self.clock(&core, now);
                continue;
            };
            current = (u + 1) % n;
            let slice = until_deadline(if wanted.len() == 1 { TICK } else { RING_POLL });
            let at = Reading {
                next: &mut next[u],
                ended: &mut ended[u],
                ledgers: &ledgers,
                count: &mut report.messages_in,
            };
            if let Err(bad) = self.read_held(u, at, &mut core, now, Some(slice)) {
                report.error = Some(self.bad_input(u, bad));
                break;
            }
            now = self.clock(&core, now);
        }
        report.policy = core.counts();
        drop(core);
        self.release(&ledgers);
        report.messages_out = self.output.emitted();
        report
    }

    /// The time for the bundling table: read only where it keeps time.
    fn clock(&self, core: &NodeCore<Held>, last: Instant) -> Instant {
        if core.deadline_matters() {
            Instant::now()
        } else {
            last
        }
    }

    /// Calls the function with a bundle of held values.
    fn call_bundle(&mut self, seq: crate::Seq, input: Input<Held>) -> Result<(), String> {
        let Input::Bundle(held) = input else {
            return Err("internal error: a bundled worker got one value".into());
        };
        let mut frames: SmallVec<[&[u8]; 8]> = SmallVec::with_capacity(held.len());
        for h in &held {
            let ring = self.inputs[h.upstream].reader();
            match ring.frame_at(h.pos) {
                Ok((frame, _)) => frames.push(frame.bytes()),
                Err(e) => {
                    let message = format!("a held value was lost: {e}");
                    self.control.fail(crate::report::Failure::Node {
                        node: self.name.clone(),
                        seq: Some(seq),
                        message: message.clone(),
                    });
                    return Err(message);
                }
            }
        }
        // The frames borrow the inlets; the call, the body and the output.
        let frames = &frames[..];
        call_guarded(
            &mut *self.body,
            &mut self.output,
            &self.control,
            &self.name,
            seq,
            |body, out| body.call_archived_bundle(seq, frames, out),
        )
    }

    /// Lets each ring's writer have the space of the frames done with.
    fn release(&mut self, ledgers: &Rc<RefCell<Vec<Ledger>>>) {
        let mut ledgers = ledgers.borrow_mut();
        for (u, ledger) in ledgers.iter_mut().enumerate() {
            if let Some(end) = ledger.releasable() {
                self.inputs[u].reader_mut().0.release_to(end);
            }
        }
    }

    /// Reads upstream `u`'s ring from `next` on (waiting up to `wait`),
    /// offering each value to `core` as a held handle while it accepts
    /// them, at most a batch. Returns whether anything came.
    fn read_held(
        &mut self,
        u: usize,
        at: Reading<'_>,
        core: &mut NodeCore<Held>,
        now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, BadInput> {
        let Reading {
            next,
            ended,
            ledgers,
            count,
        } = at;
        let batch = self.inputs[u].batch();
        let (ring, broken) = self.inputs[u].reader_mut();
        let end = match ring.published_past(*next, wait.unwrap_or(Duration::ZERO)) {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(false),
            Err(e) => return read_failed(e, ended, broken),
        };
        let mut taken = 0;
        // A read stops where the table empties: the values after may be in
        // lockstep again (see `run::lockstep`).
        while *next < end
            && taken < batch
            && !*ended
            && core.accepts(u)
            && (taken == 0 || core.buffered() > 0)
        {
            let (frame, after) = ring.frame_at(*next).map_err(BadInput::frame)?;
            let (kind, seq) = (frame.kind(), frame.seq());
            let index = ledgers.borrow_mut()[u].hold(after);
            let held = Held {
                upstream: u,
                index,
                pos: *next,
                ledgers: ledgers.clone(),
            };
            *next = after;
            match kind {
                FrameKind::Data => {
                    *count += 1;
                    core.offer(u, seq, held, now);
                }
                // Done with at once: dropping it says so.
                FrameKind::End => *ended = true,
                other => return Err(BadInput::unexpected(other, seq)),
            }
            taken += 1;
        }
        Ok(true)
    }
}
