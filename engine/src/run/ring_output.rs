//! A node's output, in every mode: each value is archived once, written
//! once into the node's ring (which every consumer on its host reads in
//! place, whether a thread of the same process or another process), and
//! handed to the debugger's [`Tap`] if it watches the node.

use std::any::Any;
use std::sync::Arc;

use clusterduck_transport::RingWriter;

use super::forward::{ByReference, Forwards};
use super::recovery::{Checkpoint, Resend, SentIds, Words};
use super::{EmitGate, NodeOutput};
use crate::body::{Codec, EmitError, Output, Payload, Resumed};
use crate::metrics::Probe;
use crate::Seq;

/// Where the archived outputs of a watched node go: the master's control
/// connection from a node process, the debugger's thread in local mode.
pub(crate) trait Tap: Send {
    /// Whether every output handed over so far left the process (a
    /// restartable node commits a step only then: its successor goes on
    /// after it, and does not send its outputs again).
    fn delivered(&self) -> bool {
        true
    }

    /// Waits until every output handed over so far left the process.
    fn deliver(&mut self) {}

    /// Hands over output number `number` (counted from 0 over the node's
    /// processes: a restarted node's outputs go on from its predecessor's
    /// last step, and the debugger drops numbers it has), archived. A
    /// debugger that is gone is not the node's failure: whoever runs the
    /// debugger reports it.
    fn watched(&mut self, number: u64, seq: Seq, bytes: &[u8]);
}

/// A node's output: its ring (none for a node without consumers), and the
/// debugger's tap if it watches the node.
pub(crate) struct RingOutput {
    pub(crate) ring: Option<RingWriter>,
    pub(crate) tap: Option<Box<dyn Tap>>,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) gate: EmitGate,
    pub(crate) emitted: u64,
    /// Which replica of its node the instance is, of how many.
    pub(crate) replica: (usize, usize),
    /// Large values forwarded by reference, not copied (`run::forward`).
    pub(crate) by_reference: ByReference,
    /// How long the ring held the node back, once it is finished.
    pub(crate) blocked: std::time::Duration,
    /// Where the node's metrics are published.
    pub(crate) probe: Arc<Probe>,
    /// A restartable node's: its ring is written in steps.
    pub(crate) steps: Option<Steps>,
}

/// A restartable node's output: values are published step by step (ring
/// transactions), each with the node's checkpoint; a spout's steps are its
/// sends, a worker's its calls (committed by its loop).
#[derive(Debug)]
pub(crate) struct Steps {
    /// A spout's ids so far.
    ids: Option<SentIds>,
    /// A restarted spout's filter of what it sends again.
    resend: Option<Resend>,
    /// Sends dropped as sent already.
    pub(crate) resent: u64,
    /// The progress record's words, and how many there are.
    words: Words,
    len: usize,
    /// The ring that records the steps of a node without consumers (no
    /// frame is written in it).
    log: Option<RingWriter>,
    /// The last step ended and is not published yet (its checkpoint is
    /// encoded when it is): it emitted nothing (no consumer waits for it), or the
    /// debugger's tap has not sent its outputs (a successor must not go on
    /// past outputs the debugger never got). It is published with the next
    /// step that can be, or by [`settle`](Steps::settle) before the node
    /// releases its inputs or waits.
    unpublished: bool,
    /// Values emitted when a step was last published.
    published_emitted: u64,
    /// A spout with a ring and no tap: its sends are published as they go,
    /// its checkpoint recorded once a quarter of its ring was written since
    /// the last record (at `record_by`: a successor finds the sends after
    /// the record in the ring, see `RingWriter::progress_and_after`).
    light: bool,
    record_by: u64,
    /// A restarted worker's: outputs its predecessor published after its
    /// last step, which it makes again first (see `is_published`).
    published: u64,
}

impl Steps {
    /// Ends a step, `emitted` values emitted so far: publishes what was
    /// written since the last commit in `ring` (or the log) with
    /// `checkpoint`, and begins the next; unless it is left unpublished
    /// (see `unpublished`: the step then grows into the next).
    fn commit(
        &mut self,
        ring: Option<&mut RingWriter>,
        tap: Option<&dyn Tap>,
        (checkpoint, emitted): (&Checkpoint, u64),
    ) {
        if emitted != self.published_emitted && tap.is_none_or(|t| t.delivered()) {
            self.publish(ring, (checkpoint, emitted));
        } else {
            self.unpublished = true;
        }
    }

    /// Publishes the last step, whose checkpoint is `checkpoint`, if it was
    /// left unpublished, once the tap sent its outputs.
    #[inline]
    fn settle(
        &mut self,
        ring: Option<&mut RingWriter>,
        tap: Option<&mut Box<dyn Tap>>,
        step: (&Checkpoint, u64),
    ) {
        if self.unpublished {
            if let Some(tap) = tap.filter(|t| !t.delivered()) {
                tap.deliver();
            }
            self.publish(ring, step);
        }
    }

    fn publish(
        &mut self,
        ring: Option<&mut RingWriter>,
        (checkpoint, emitted): (&Checkpoint, u64),
    ) {
        self.len = checkpoint.encode(&mut self.words);
        if let Some(ring) = ring.or(self.log.as_mut()) {
            ring.commit(&self.words[..self.len]);
            ring.begin();
        }
        self.unpublished = false;
        self.published_emitted = emitted;
    }
}

impl RingOutput {
    /// The output of a node that writes into `ring` (none without
    /// consumers), forwarding large values by reference if `by_reference`,
    /// and publishes its figures in `probe`.
    pub(crate) fn new(
        ring: Option<RingWriter>,
        codec: Arc<dyn Codec>,
        gate: EmitGate,
        replica: (usize, usize),
        by_reference: bool,
        probe: Arc<Probe>,
    ) -> Self {
        if let Some(ring) = &ring {
            probe.output(ring.blocked_waits());
        }
        Self {
            ring,
            tap: None,
            codec,
            gate,
            emitted: 0,
            replica,
            by_reference: ByReference::allowed(by_reference),
            blocked: std::time::Duration::ZERO,
            probe,
            steps: None,
        }
    }

    /// Writes the ring in steps from now on (in `log` for a node without
    /// consumers), going on from `before` (the dead predecessor's last
    /// step, for a restarted node; a worker's predecessor may have
    /// `published` outputs after it); a spout's steps are its sends.
    pub(crate) fn in_steps(
        &mut self,
        spout: bool,
        (before, published): (Option<Checkpoint>, u64),
        mut log: Option<RingWriter>,
    ) {
        self.emitted = before.as_ref().map_or(0, |c| c.emitted);
        let light = spout && self.ring.is_some() && self.tap.is_none();
        if !light {
            if let Some(ring) = self.ring.as_mut().or(log.as_mut()) {
                ring.begin();
            }
        }
        let ids = spout.then(|| SentIds::after(before.as_ref()));
        self.steps = Some(Steps {
            resent: before.as_ref().map_or(0, |c| c.skipped),
            resend: before.filter(|_| spout).map(Resend::new),
            ids,
            words: [0; RingWriter::MAX_PROGRESS],
            len: 0,
            log,
            unpublished: false,
            published_emitted: self.emitted,
            light,
            record_by: 0,
            published,
        });
        if light {
            // A first record: the sends after it are all in the ring.
            self.record_sends();
        }
    }

    /// Records a light spout's checkpoint at the end published.
    fn record_sends(&mut self) {
        let (Some(steps), Some(ring)) = (&mut self.steps, &mut self.ring) else {
            return;
        };
        let Some(ids) = &steps.ids else {
            return;
        };
        let checkpoint = Checkpoint {
            emitted: self.emitted,
            seq: ids.last.unwrap_or(0),
            rising: ids.rising,
            skipped: steps.resent,
            ..Checkpoint::default()
        };
        steps.len = checkpoint.encode(&mut steps.words);
        ring.commit(&steps.words[..steps.len]);
        steps.record_by = ring.written() + ring.capacity() as u64 / 4;
    }

    /// Whether a restarted worker's next output is one its
    /// predecessor published after its last step (a step that outgrew the
    /// ring's room is published in parts while the writer waits): it is
    /// not written again, but counted, and shown to the debugger (which
    /// drops it if it had it).
    #[inline]
    fn is_published(&mut self) -> bool {
        let Some(steps) = &mut self.steps else {
            return false;
        };
        if steps.published == 0 {
            return false;
        }
        steps.published -= 1;
        true
    }

    /// Whether a spout's send of `seq` repeats what its dead predecessor
    /// sent (it is dropped, and counted).
    #[inline]
    fn is_resent(&mut self, seq: Seq) -> bool {
        let Some(steps) = &mut self.steps else {
            return false;
        };
        let resent = steps.resend.as_mut().is_some_and(|r| r.is_resent(seq));
        steps.resent += u64::from(resent);
        resent
    }

    /// Ends a spout's step, the send of `seq`: published with the spout's
    /// checkpoint; a light spout's was published as written, and its
    /// checkpoint is recorded now and then.
    #[inline]
    fn sent(&mut self, seq: Seq) {
        let Some(steps) = &mut self.steps else {
            return;
        };
        let Some(ids) = &mut steps.ids else {
            return;
        };
        ids.sent(seq);
        if steps.light {
            if self
                .ring
                .as_ref()
                .is_some_and(|r| r.written() >= steps.record_by)
            {
                self.record_sends();
            }
            return;
        }
        let checkpoint = Checkpoint {
            emitted: self.emitted,
            seq,
            rising: ids.rising,
            skipped: steps.resent,
            ..Checkpoint::default()
        };
        steps.commit(
            self.ring.as_mut(),
            self.tap.as_deref(),
            (&checkpoint, self.emitted),
        );
        // A spout may wait in its own code before its next send: its value
        // is not left unpublished meanwhile.
        steps.settle(
            self.ring.as_mut(),
            self.tap.as_mut(),
            (&checkpoint, self.emitted),
        );
    }

    /// Archives `value` into the ring, and for the debugger if it watches.
    fn write(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError> {
        if self.is_resent(seq) {
            return Ok(());
        }
        let number = self.emitted;
        let ring = if self.is_published() {
            None
        } else {
            self.ring.as_mut()
        };
        match (ring, &mut self.tap) {
            (None, None) => {}
            // The hot path: archived in place, straight into the ring.
            (Some(ring), None) => self
                .codec
                .write_frame(value, seq, ring)
                .map_err(EmitError::Failed)?,
            // Watched: the debugger gets the archived bytes too.
            (mut ring, Some(tap)) => self
                .codec
                .encode(value, &mut |bytes| {
                    if let Some(ring) = ring.as_deref_mut() {
                        ring.write_bytes(seq, bytes)?;
                    }
                    tap.watched(number, seq, bytes);
                    Ok(())
                })
                .map_err(EmitError::Failed)?,
        }
        self.emitted += 1;
        self.probe.emitted(seq, self.emitted);
        self.sent(seq);
        Ok(())
    }
}

impl Output for RingOutput {
    fn emit(&mut self, seq: Seq, value: Payload) -> Result<(), EmitError> {
        let value = self.gate.admit(value)?;
        self.write(seq, &*value)
    }

    fn emit_ref(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError> {
        self.gate.admit_kept()?;
        self.write(seq, value)
    }

    fn emit_archived(&mut self, seq: Seq, bytes: &[u8]) -> Result<(), EmitError> {
        self.gate.admit_kept()?;
        if self.is_resent(seq) {
            return Ok(());
        }
        let published = self.is_published();
        if let Some(ring) = self.ring.as_mut().filter(|_| !published) {
            match self.by_reference.locate(bytes) {
                Some((input, value)) => {
                    ring.write_forward(seq, &value)
                        .map_err(|e| EmitError::Failed(e.into()))?;
                    self.by_reference.wrote(input, ring.written());
                }
                None => ring
                    .write_bytes(seq, bytes)
                    .map_err(|e| EmitError::Failed(e.into()))?,
            }
        }
        if let Some(tap) = &mut self.tap {
            tap.watched(self.emitted, seq, bytes);
        }
        self.emitted += 1;
        self.probe.emitted(seq, self.emitted);
        self.sent(seq);
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.gate.is_stopping()
    }

    fn replica(&self) -> (usize, usize) {
        self.replica
    }

    fn resume(&mut self) -> Option<Resumed> {
        self.steps.as_mut()?.resend.as_mut().map(Resend::resume)
    }
}

impl NodeOutput for RingOutput {
    fn finish(&mut self) {
        // The steps' log says the node finished: a successor of a process
        // that ended here, before its report was heard, learns it so.
        if let Some(log) = self.steps.as_mut().and_then(|s| s.log.take()) {
            let _ = log.finish(self.emitted);
        }
        if let Some(ring) = self.ring.take() {
            self.blocked = ring.blocked();
            // The end frame wakes every reader; a failure here means the
            // readers are gone, which the master sees for itself.
            let _ = ring.finish(self.emitted);
        }
    }

    fn flush(&mut self) {
        if let Some(ring) = self.ring.as_mut() {
            ring.flush();
        }
    }

    fn emitted(&self) -> u64 {
        self.emitted
    }

    fn forward_from(&mut self, sources: Vec<(usize, clusterduck_transport::ArenaSpan)>) {
        self.by_reference.set_sources(sources);
    }

    #[inline]
    fn forwarded(&self) -> bool {
        self.by_reference.any()
    }

    #[inline]
    fn take_forwards(&mut self) -> Forwards {
        self.by_reference.take()
    }

    fn blocked(&self) -> std::time::Duration {
        self.ring.as_ref().map_or(self.blocked, RingWriter::blocked)
    }

    fn released(&mut self) -> u64 {
        self.ring.as_mut().map_or(u64::MAX, RingWriter::released)
    }

    fn refused_for_stop(&self) -> bool {
        self.gate.refused_for_stop
    }

    fn in_steps(&self) -> bool {
        self.steps.is_some()
    }

    fn commit(&mut self, checkpoint: &Checkpoint) {
        if let Some(steps) = &mut self.steps {
            let step = (checkpoint, self.emitted);
            steps.commit(self.ring.as_mut(), self.tap.as_deref(), step);
        }
    }

    #[inline]
    fn settle_step(&mut self, checkpoint: Option<&Checkpoint>) {
        if let (Some(steps), Some(checkpoint)) = (&mut self.steps, checkpoint) {
            let step = (checkpoint, self.emitted);
            steps.settle(self.ring.as_mut(), self.tap.as_mut(), step);
        }
    }

    fn resent(&self) -> u64 {
        self.steps.as_ref().map_or(0, |s| s.resent)
    }
}
