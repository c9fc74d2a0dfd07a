//! The held loop's short way for upstreams in lockstep (see `run::held`).
//!
//! When the bundling table holds nothing and the next frame of every ring is
//! a value for the table's next id, that bundle is complete on arrival: the
//! table would store each value, find the head complete, queue the bundle
//! and hand it out at the next poll, and the loop would then look each frame
//! up again, call the function and release the frames. Here the function is
//! called on the frames where they lie, the table is told that the bundle
//! was delivered, and the rings are released past them: no handles, ledgers,
//! slots or events. The outcome is the table's own (the same bundles, in the
//! same order, the same counts), and any frame out of step (another id, an
//! End frame, a bad frame, nothing there yet) is left to the general path,
//! which runs every policy on it.
//!
//! Two spouts sending the same ids in order, the common case of a join, stay
//! in lockstep for as long as the join keeps up with them.

use std::time::Duration;

use clusterduck_transport::FrameKind;
use smallvec::SmallVec;

use super::recovery::{Checkpoint, Position};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
use crate::node::NodeCore;

/// Bundles run in lockstep per step of a restartable node, at most: their
/// outputs are published together (a step per bundle costs a progress
/// record per bundle, 15 % of the join's time).
const LOCKSTEP_STEP: usize = 16;

/// Writes into `checkpoint` where a node stands after running bundle `seq`
/// in lockstep, every ring read and done to `next`, with its counts of
/// values emitted, replayed and skipped.
fn stepped(checkpoint: &mut Checkpoint, (seq, next): (u64, &[u64]), counts: (u64, u64, u64)) {
    checkpoint.seq = seq + 1;
    (checkpoint.emitted, checkpoint.replayed, checkpoint.skipped) = counts;
    for (at, &pos) in checkpoint.inputs.iter_mut().zip(next) {
        *at = Position {
            done: pos,
            read: pos,
        };
    }
}

/// Per upstream: one value per upstream of a bundle, kept inline.
type PerUpstream<T> = SmallVec<[T; 4]>;

impl<O: NodeOutput> WorkerTask<O> {
    /// Runs, straight from the rings, the bundles that arrive in lockstep
    /// from `next` on (each ring's read position, with no frame held before
    /// it), at most a batch of them, moving `next` and releasing the rings
    /// past them, and counting their values in `count`; a restartable node
    /// ends each bundle with its `checkpoint` (see `run::recovery`). Returns
    /// how many ran: 0 when the table or the rings are not in lockstep. An
    /// error is the node's failure message (the function failed).
    pub(super) fn run_lockstep<V>(
        &mut self,
        core: &mut NodeCore<V>,
        next: &mut [u64],
        mut checkpoint: Option<&mut Checkpoint>,
        count: &mut u64,
    ) -> Result<usize, String> {
        let Some(mut seq) = core.lockstep_seq() else {
            return Ok(0);
        };
        let n = self.inputs.len();
        // How far each ring is published: nothing there, an end or a failure
        // is the general path's to handle.
        let mut ends: PerUpstream<u64> = SmallVec::with_capacity(n);
        for (inlet, &at) in self.inputs.iter_mut().zip(next.iter()) {
            let (ring, &mut false) = inlet.reader_mut() else {
                return Ok(0);
            };
            match ring.published_past(at, Duration::ZERO) {
                Ok(Some(end)) => ends.push(end),
                _ => return Ok(0),
            }
        }
        let limit = self.inputs[0].batch();
        let stride = self.share.map_or(1, |s| s.count);
        let mut ran = 0;
        let mut result = Ok(());
        // Values forwarded by reference: the input, where its bundle's read
        // began, and where the forwarding frame ends in the output.
        let mut forwarded: SmallVec<[(usize, u64, u64); 2]> = SmallVec::new();
        {
            let Self {
                inputs,
                body,
                output,
                control,
                name,
                meter,
                replayed,
                skipped,
                ..
            } = self;
            let rings: PerUpstream<_> = inputs.iter().map(|i| (i.reader(), i.route())).collect();
            let mut frames: PerUpstream<&[u8]> = SmallVec::with_capacity(n);
            let mut after: PerUpstream<u64> = SmallVec::with_capacity(n);
            'bundles: while ran < limit {
                frames.clear();
                after.clear();
                for u in 0..n {
                    let (ring, route) = rings[u];
                    let mut at = next[u];
                    loop {
                        if at >= ends[u] {
                            break 'bundles;
                        }
                        match ring.frame_at(at) {
                            // The id due is this replica's own.
                            Ok((frame, end))
                                if frame.kind() == FrameKind::Data && frame.seq() == seq =>
                            {
                                frames.push(frame.bytes());
                                after.push(end);
                                break;
                            }
                            // Another replica's: passed over.
                            Ok((frame, end))
                                if frame.kind() == FrameKind::Data
                                    && route.and_then(|r| r.owns_id(frame.seq()))
                                        == Some(false) =>
                            {
                                at = end;
                            }
                            // Out of step, or not a frame at all: the
                            // general path reads it again and applies the
                            // policies.
                            _ => break 'bundles,
                        }
                    }
                }
                let values = &frames[..];
                let guard = (&**control, name.as_str(), &mut *meter);
                result = call_guarded(&mut **body, output, guard, seq, |body, out| {
                    body.call_archived_bundle(seq, values, out)
                });
                if result.is_err() {
                    break;
                }
                if output.forwarded() {
                    // Held from where the bundle's read began on each ring:
                    // its frame, and any other replica's passed over.
                    for (input, until) in output.take_forwards() {
                        forwarded.push((input, next[input], until));
                    }
                }
                next.copy_from_slice(&after);
                core.delivered_in_lockstep(seq);
                // A step of a few bundles: their outputs are published
                // together, a few microseconds apart at most.
                if ran % LOCKSTEP_STEP == LOCKSTEP_STEP - 1 {
                    if let Some(checkpoint) = checkpoint.as_deref_mut() {
                        let counts = (output.emitted(), *replayed, *skipped);
                        stepped(checkpoint, (seq, &next[..]), counts);
                        output.commit(checkpoint);
                    }
                }
                *count += n as u64;
                ran += 1;
                // The table stays idle: the next bundle due is the next id
                // of the node's share.
                seq += stride;
            }
        }
        // Committed before the rings are released past them (see
        // `WorkerTask::settle`).
        if let Some(checkpoint) = checkpoint {
            if ran % LOCKSTEP_STEP != 0 {
                let counts = (self.output.emitted(), self.replayed, self.skipped);
                stepped(checkpoint, (seq - stride, &next[..]), counts);
                self.output.commit(checkpoint);
            }
            self.output.settle_step(Some(checkpoint));
        }
        // Held before the rings are released past them.
        for (input, at, until) in forwarded {
            let hold = self.inputs[input].reader_mut().0.hold_at(at);
            self.pins.push(input, until, hold);
        }
        for (inlet, &at) in self.inputs.iter_mut().zip(next.iter()) {
            let (ring, _) = inlet.reader_mut();
            {
                if at > ring.cursor() {
                    ring.release_to(at);
                }
            }
        }
        result.map(|()| ran)
    }
}
