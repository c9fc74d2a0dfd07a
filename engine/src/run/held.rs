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

use super::inlet::{owns, read_failed, BadInput, Inlet};
use super::take::{Halt, Reading, Take};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
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

/// The rings' frames held by the node: per upstream, where to read on and
/// which frames read are not released yet.
pub(crate) struct Holding {
    /// Per upstream: where to read on from, past the frames held.
    next: Vec<u64>,
    ledgers: Rc<RefCell<Vec<Ledger>>>,
}

impl Holding {
    /// For `inputs`, read from where each stands.
    pub(crate) fn new(inputs: &[Inlet]) -> Self {
        Self {
            next: inputs.iter().map(|i| i.reader().cursor()).collect(),
            ledgers: Rc::new(RefCell::new(
                inputs.iter().map(|_| Ledger::default()).collect(),
            )),
        }
    }
}

impl Take for Holding {
    type Value = Held;

    fn read<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        u: usize,
        core: &mut NodeCore<Held>,
        at: Reading<'_>,
        now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, Halt> {
        let Reading { ended, count } = at;
        let next = &mut self.next[u];
        let batch = task.inputs[u].batch();
        let (ring, broken, mut route) = task.inputs[u].parts();
        let end = match ring.published_past(*next, wait.unwrap_or(Duration::ZERO)) {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(false),
            Err(e) => return Ok(read_failed(e, ended, broken)?),
        };
        // Frames read, and values of this replica's among them.
        let (mut taken, mut offered) = (0, 0);
        // A read stops where the table empties: the values after may be in
        // lockstep again (see `run::lockstep`).
        while *next < end
            && taken < batch
            && !*ended
            && core.accepts(u)
            && (offered == 0 || core.buffered() > 0)
        {
            let (frame, after) = ring.frame_at(*next).map_err(BadInput::frame)?;
            let (kind, seq) = (frame.kind(), frame.seq());
            let index = self.ledgers.borrow_mut()[u].hold(after);
            let held = Held {
                upstream: u,
                index,
                pos: *next,
                ledgers: self.ledgers.clone(),
            };
            *next = after;
            match kind {
                // Another replica's: done with at once.
                FrameKind::Data if !owns(&mut route, seq, frame.bytes())? => {}
                FrameKind::Data => {
                    *count += 1;
                    offered += 1;
                    core.offer(u, seq, held, now);
                }
                // Done with at once: dropping it says so.
                FrameKind::End => *ended = true,
                other => return Err(BadInput::unexpected(other, seq).into()),
            }
            taken += 1;
        }
        Ok(true)
    }

    /// Calls the function with a bundle of held values, where they lie.
    fn call<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Held>,
    ) -> Result<(), String> {
        let Input::Bundle(held) = input else {
            return Err("internal error: a bundled worker got one value".into());
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
        // The frames borrow the inlets; the call, the body and the output.
        let values = &frames[..];
        call_guarded(
            &mut *task.body,
            &mut task.output,
            (&task.control, &task.name, &mut task.meter),
            seq,
            |body, out| body.call_archived_bundle(seq, values, out),
        )?;
        drop(frames);
        // A value forwarded by reference stays where it is: its frame, held
        // until the bundle ran, is held on.
        task.pin_forwards(|input| held.iter().find(|h| h.upstream == input).map(|h| h.pos));
        Ok(())
    }

    fn settle(&mut self, inputs: &mut [Inlet]) {
        let mut ledgers = self.ledgers.borrow_mut();
        for (u, ledger) in ledgers.iter_mut().enumerate() {
            if let Some(end) = ledger.releasable() {
                inputs[u].reader_mut().0.release_to(end);
            }
        }
    }

    /// Upstreams in lockstep: their bundles run straight from the rings,
    /// when no frame is held.
    fn shortcut<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        core: &mut NodeCore<Held>,
        count: &mut u64,
    ) -> Result<usize, String> {
        if !self.ledgers.borrow().iter().all(Ledger::is_empty) {
            return Ok(0);
        }
        task.run_lockstep(core, &mut self.next, count)
    }
}
