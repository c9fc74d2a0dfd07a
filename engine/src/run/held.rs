//! Taking values held in their rings: the way of a bundled worker that
//! takes its values archived, in place, and of every worker that may be
//! restarted.
//!
//! Each value stays where it lies in its upstream's ring, held (not
//! released) from the moment the node reads it until it has been processed
//! or the core dropped it; the node reads on past the values it holds. The
//! core works on handles ([`Kept`]: the [`Held`] frame itself, or the value
//! decoded with its frame held), so every policy (window, gaps, duplicates,
//! timeouts) is the one the decoding loop runs. Ring space is released in
//! order, up to the first value still held: the reorder window lives in the
//! rings, and a window needs ring space for its values, not heap.
//!
//! A restartable node ends each call with a checkpoint (see
//! `run::recovery`): per input, where the frames it is done with end and
//! how far it read. Its ring space is released only below what it is done
//! with, so that a successor that takes its place re-reads every value
//! whose outputs were not published; it starts reading at the checkpoint,
//! and drops, as done already, the values of a sequenced node below the
//! next id due.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clusterduck_transport::FrameKind;
use smallvec::SmallVec;

use super::inlet::{owns, read_failed, BadInput, Inlet};
use super::journal::{DoneAbove, Journal};
use super::recovery::{Checkpoint, Position};
use super::take::{Halt, Reading, Take};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
use crate::body::Payload;
use crate::node::{Input, NodeCore};
use crate::Seq;

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
        self.ledgers.borrow_mut()[self.upstream].done(self.index, self.pos);
    }
}

/// The frames read from one ring and not released yet, in ring order: which
/// the node is done with, and where each ends.
#[derive(Debug, Default)]
struct Ledger {
    /// The number of the first frame in `frames`.
    first: u64,
    /// Where the first frame in `frames` begins: below, the node is done.
    start: u64,
    /// Per frame: where it ends, and whether the node is done with it.
    frames: VecDeque<(u64, bool)>,
    /// A journaling node's: where the frames done with since its last step
    /// begin (see `run::journal`).
    journaled: Option<Vec<u64>>,
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

    /// Frame `index`, at `pos`, is done with.
    fn done(&mut self, index: u64, pos: u64) {
        if let Some(frame) = self.frames.get_mut((index - self.first) as usize) {
            frame.1 = true;
        }
        if let Some(journaled) = &mut self.journaled {
            journaled.push(pos);
        }
    }

    /// The frames done with since the last call that lie above the done
    /// line (those below it a checkpoint covers), into `entries` as
    /// `(u, position)`.
    fn take_journaled(&mut self, u: usize, entries: &mut Vec<(usize, u64)>) {
        let line = self.done_to();
        if let Some(journaled) = &mut self.journaled {
            entries.extend(journaled.drain(..).filter(|p| *p >= line).map(|p| (u, p)));
        }
    }

    /// Forgets the frames done with, up to the first still held; returns
    /// where they end, if any were.
    fn releasable(&mut self) -> Option<u64> {
        let mut end = None;
        while let Some(&(e, true)) = self.frames.front() {
            self.frames.pop_front();
            self.first += 1;
            self.start = e;
            end = Some(e);
        }
        end
    }

    /// Where the frames the node is done with end, up to the first still
    /// held (what [`releasable`](Self::releasable) would release).
    fn done_to(&self) -> u64 {
        self.frames
            .iter()
            .take_while(|(_, done)| *done)
            .last()
            .map_or(self.start, |(end, _)| *end)
    }
}

/// What the core holds for a value held in its ring: the frame itself
/// (taken archived), or the value decoded with its frame held.
pub(crate) trait Kept: Sized {
    /// Whether bundles in lockstep may run straight from the rings (see
    /// `run::lockstep`: the function takes archived values).
    const LOCKSTEP: bool;

    /// The handle of the value read from `inlet` where `held` lies.
    fn keep(held: Held, inlet: &Inlet) -> Result<Self, BadInput>;

    /// Calls the function on `input`, the values with id `seq`; the frames
    /// are done with once the call returned.
    fn call<O: NodeOutput>(
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Self>,
    ) -> Result<(), String>;
}

/// A value decoded, its frame held until it has been processed.
#[derive(Debug)]
pub(crate) struct Owned {
    value: Payload,
    _held: Held,
}

/// The rings' frames held by the node: per upstream, where to read on and
/// which frames read are not released yet; and, for a restarted node, where
/// its predecessor stood.
pub(crate) struct Holding<K> {
    /// Per upstream: where to read on from, past the frames held.
    next: Vec<u64>,
    ledgers: Rc<RefCell<Vec<Ledger>>>,
    /// A restarted node's: its predecessor's last checkpoint.
    before: Option<Checkpoint>,
    /// The checkpoint written at every call, if the node may be restarted.
    checkpoint: Option<Checkpoint>,
    /// A restartable node in no order's: its journal, and, restarted, the
    /// frames its predecessors were done with above their done lines.
    journal: Option<(Journal, DoneAbove)>,
    /// Scratch for a step's journal entries.
    entries: Vec<(usize, u64)>,
    _kept: PhantomData<K>,
}

impl<K: Kept> Holding<K> {
    /// For `inputs`, read from where each stands.
    pub(crate) fn new(inputs: &[Inlet]) -> Self {
        let next: Vec<u64> = inputs.iter().map(|i| i.reader().cursor()).collect();
        Self {
            ledgers: Rc::new(RefCell::new(
                next.iter()
                    .map(|start| Ledger {
                        start: *start,
                        ..Ledger::default()
                    })
                    .collect(),
            )),
            next,
            before: None,
            checkpoint: None,
            journal: None,
            entries: Vec::new(),
            _kept: PhantomData,
        }
    }

    /// Checkpoints every call, for a node that may be restarted; a
    /// restarted one goes on from `before`, its predecessor's last
    /// checkpoint: each input is released and read on from where the
    /// predecessor was done with it, and the values it skips are counted in
    /// `skipped`. A node in no order keeps a `journal` of the frames it is
    /// done with out of order. An input that cannot be read there is named
    /// by index.
    pub(crate) fn in_steps(
        mut self,
        inputs: &mut [Inlet],
        (before, journal): (Option<Checkpoint>, Option<(Journal, DoneAbove)>),
        skipped: &mut u64,
    ) -> Result<Self, (usize, BadInput)> {
        if journal.is_some() {
            for ledger in self.ledgers.borrow_mut().iter_mut() {
                ledger.journaled = Some(Vec::new());
            }
        }
        self.journal = journal;
        if let Some(before) = &before {
            for (u, inlet) in inputs.iter_mut().enumerate() {
                let done = before.inputs[u].done;
                *skipped += inlet.skip_to(done).map_err(|bad| (u, bad))?;
                let at = self.next[u].max(done);
                self.next[u] = at;
                self.ledgers.borrow_mut()[u].start = at;
            }
        }
        self.checkpoint = Some(Checkpoint {
            seq: Seq::MAX,
            inputs: vec![Position::default(); inputs.len()],
            ..Checkpoint::default()
        });
        self.before = before;
        Ok(self)
    }

    /// Ends a restartable node's call of bundle or value `seq`: a step,
    /// with the node's checkpoint.
    fn commit<O: NodeOutput>(&mut self, task: &mut WorkerTask<O>, seq: Seq) {
        let Some(checkpoint) = &mut self.checkpoint else {
            return;
        };
        checkpoint.emitted = task.output.emitted();
        checkpoint.replayed = task.replayed;
        checkpoint.skipped = task.skipped;
        if task.sequenced {
            checkpoint.seq = seq + 1;
        }
        let mut ledgers = self.ledgers.borrow_mut();
        if let Some((journal, _)) = &mut self.journal {
            // Written before the step is committed: a step committed
            // always has its entries (see `run::journal`).
            self.entries.clear();
            for (u, ledger) in ledgers.iter_mut().enumerate() {
                ledger.take_journaled(u, &mut self.entries);
            }
            match journal.step(&self.entries) {
                Ok(tag) => checkpoint.step = tag,
                Err(message) => {
                    // Nothing committed without its entries: the node
                    // stops (a restart goes on from the last step).
                    task.control.fail(crate::report::Failure::Node {
                        node: task.name.clone(),
                        seq: Some(seq),
                        message,
                    });
                    return;
                }
            }
        }
        for (u, at) in checkpoint.inputs.iter_mut().enumerate() {
            *at = Position {
                done: ledgers[u].done_to(),
                read: self.next[u],
            };
        }
        task.output.commit(checkpoint);
    }

    /// Whether the value with id `seq` at `pos` of upstream `u` was done
    /// with by the predecessor: read by it, and below the next id due of a
    /// sequenced node, or named in the journal of a node in no order.
    fn done_before(&self, u: usize, pos: u64, seq: Seq) -> bool {
        let Some(b) = &self.before else {
            return false;
        };
        if pos >= b.inputs[u].read {
            return false;
        }
        match &self.journal {
            Some((_, done)) => done.contains(u, pos),
            None => b.seq != Seq::MAX && seq < b.seq,
        }
    }
}

impl<K: Kept> Take for Holding<K> {
    type Value = K;

    fn read<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        u: usize,
        core: &mut NodeCore<K>,
        at: Reading<'_>,
        now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, Halt> {
        let Reading { ended, count } = at;
        let batch = task.inputs[u].batch();
        let (ring, broken, _) = task.inputs[u].parts();
        let end = match ring.published_past(self.next[u], wait.unwrap_or(Duration::ZERO)) {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(false),
            Err(e) => return Ok(read_failed(e, ended, broken)?),
        };
        // Frames read, and values of this replica's among them.
        let (mut taken, mut offered) = (0, 0);
        // A read stops where the table empties: the values after may be in
        // lockstep again (see `run::lockstep`).
        while self.next[u] < end
            && taken < batch
            && !*ended
            && core.accepts(u)
            && (offered == 0 || core.buffered() > 0)
        {
            let pos = self.next[u];
            let (ring, _, mut route) = task.inputs[u].parts();
            let (frame, after) = ring.frame_at(pos).map_err(BadInput::frame)?;
            let (kind, seq) = (frame.kind(), frame.seq());
            let mine = kind == FrameKind::Data && owns(&mut route, seq, frame.bytes())?;
            let index = self.ledgers.borrow_mut()[u].hold(after);
            let held = Held {
                upstream: u,
                index,
                pos,
                ledgers: self.ledgers.clone(),
            };
            self.next[u] = after;
            match kind {
                // Another replica's: done with at once.
                FrameKind::Data if !mine => {}
                // Done with by the predecessor: done with at once.
                FrameKind::Data if self.done_before(u, pos, seq) => task.skipped += 1,
                FrameKind::Data => {
                    *count += 1;
                    offered += 1;
                    if self.before.as_ref().is_some_and(|b| pos < b.inputs[u].read) {
                        task.replayed += 1;
                    }
                    let value = K::keep(held, &task.inputs[u])?;
                    core.offer(u, seq, value, now);
                }
                // Done with at once: dropping it says so.
                FrameKind::End => *ended = true,
                other => return Err(BadInput::unexpected(other, seq).into()),
            }
            taken += 1;
        }
        Ok(true)
    }

    fn call<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<K>,
    ) -> Result<(), String> {
        K::call(task, seq, input)?;
        self.commit(task, seq);
        Ok(())
    }

    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    fn settle(&mut self, inputs: &mut [Inlet]) {
        let mut ledgers = self.ledgers.borrow_mut();
        for (u, ledger) in ledgers.iter_mut().enumerate() {
            if let Some(end) = ledger.releasable() {
                inputs[u].reader_mut().0.release_to(end);
            }
        }
        // The step is published by now (`NodeOutput::settle_step`): the
        // journal's frames its done lines passed are not needed any more.
        if let (Some((journal, _)), Some(checkpoint)) = (&mut self.journal, &self.checkpoint) {
            journal.release_below(&checkpoint.inputs);
        }
    }

    /// Upstreams in lockstep: their bundles run straight from the rings,
    /// when no frame is held.
    fn shortcut<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        core: &mut NodeCore<K>,
        count: &mut u64,
    ) -> Result<usize, String> {
        if !K::LOCKSTEP || !self.ledgers.borrow().iter().all(Ledger::is_empty) {
            return Ok(0);
        }
        let ran = task.run_lockstep(core, &mut self.next, self.checkpoint.as_mut(), count);
        let mut ledgers = self.ledgers.borrow_mut();
        for (ledger, next) in ledgers.iter_mut().zip(&self.next) {
            ledger.start = *next;
        }
        ran
    }
}

impl Kept for Held {
    const LOCKSTEP: bool = true;

    fn keep(held: Held, _: &Inlet) -> Result<Self, BadInput> {
        Ok(held)
    }

    /// Calls the function with the held values, where they lie.
    fn call<O: NodeOutput>(
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Held>,
    ) -> Result<(), String> {
        let held: SmallVec<[Held; 8]> = match input {
            Input::Bundle(held) => held.into_iter().collect(),
            Input::One { value, .. } => smallvec::smallvec![value],
        };
        let mut frames: SmallVec<[&[u8]; 8]> = SmallVec::with_capacity(held.len());
        for h in &held {
            let ring = task.inputs[h.upstream].reader();
            match ring.frame_at(h.pos) {
                Ok((frame, _)) => frames.push(frame.bytes()),
                Err(e) => {
                    let message = format!("a held value was lost: {e}");
                    task.control.fail(crate::report::Failure::Node {
                        node: task.name.clone(),
                        seq: Some(seq),
                        message: message.clone(),
                    });
                    return Err(message);
                }
            }
        }
        let bundled = task.bundles;
        let from = task.upstream_of[held[0].upstream];
        // The frames borrow the inlets; the call, the body and the output.
        let values = &frames[..];
        call_guarded(
            &mut *task.body,
            &mut task.output,
            (&task.control, &task.name, &mut task.meter),
            seq,
            |body, out| {
                if bundled {
                    body.call_archived_bundle(seq, values, out)
                } else {
                    body.call_archived(seq, from, values[0], out)
                }
            },
        )?;
        drop(frames);
        // A value forwarded by reference stays where it is: its frame, held
        // until the bundle ran, is held on.
        task.pin_forwards(|input| held.iter().find(|h| h.upstream == input).map(|h| h.pos));
        Ok(())
    }
}

impl Kept for Owned {
    const LOCKSTEP: bool = false;

    fn keep(held: Held, inlet: &Inlet) -> Result<Self, BadInput> {
        let (frame, _) = inlet.reader().frame_at(held.pos).map_err(BadInput::frame)?;
        Ok(Owned {
            value: inlet.decode(frame.seq(), frame.bytes())?,
            _held: held,
        })
    }

    /// Calls the function with the decoded values; their frames are done
    /// with once it returned.
    fn call<O: NodeOutput>(
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Owned>,
    ) -> Result<(), String> {
        let (input, held): (Input<Payload>, SmallVec<[Held; 8]>) = match input {
            Input::One { upstream, value } => (
                Input::One {
                    upstream,
                    value: value.value,
                },
                smallvec::smallvec![value._held],
            ),
            Input::Bundle(values) => {
                let mut held = SmallVec::with_capacity(values.len());
                let values = values
                    .into_iter()
                    .map(|v| {
                        held.push(v._held);
                        v.value
                    })
                    .collect();
                (Input::Bundle(values), held)
            }
        };
        task.call(seq, |body, out| body.call(seq, input, out))?;
        drop(held);
        Ok(())
    }
}
