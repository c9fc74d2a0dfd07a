//! A node's output, in every mode: each value is archived once, written
//! once into the node's ring (which every consumer on its host reads in
//! place, whether a thread of the same process or another process), and
//! handed to the debugger's [`Tap`] if it watches the node.

use std::any::Any;
use std::sync::Arc;

use clusterduck_transport::RingWriter;

use super::forward::{ByReference, Forwards};
use super::{EmitGate, NodeOutput};
use crate::body::{Codec, EmitError, Output, Payload};
use crate::metrics::Probe;
use crate::Seq;

/// Where the archived outputs of a watched node go: the master's control
/// connection from a node process, the debugger's thread in local mode.
pub(crate) trait Tap: Send {
    /// Hands over one output, archived. A debugger that is gone is not the
    /// node's failure: whoever runs the debugger reports it.
    fn watched(&mut self, seq: Seq, bytes: &[u8]);
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
        }
    }

    /// Archives `value` into the ring, and for the debugger if it watches.
    fn write(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError> {
        match (&mut self.ring, &mut self.tap) {
            (None, None) => {}
            // The hot path: archived in place, straight into the ring.
            (Some(ring), None) => self
                .codec
                .write_frame(value, seq, ring)
                .map_err(EmitError::Failed)?,
            // Watched: the debugger gets the archived bytes too.
            (ring, Some(tap)) => self
                .codec
                .encode(value, &mut |bytes| {
                    if let Some(ring) = ring.as_mut() {
                        ring.write_bytes(seq, bytes)?;
                    }
                    tap.watched(seq, bytes);
                    Ok(())
                })
                .map_err(EmitError::Failed)?,
        }
        self.emitted += 1;
        self.probe.emitted(seq, self.emitted);
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
        if let Some(ring) = self.ring.as_mut() {
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
            tap.watched(seq, bytes);
        }
        self.emitted += 1;
        self.probe.emitted(seq, self.emitted);
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.gate.is_stopping()
    }

    fn replica(&self) -> (usize, usize) {
        self.replica
    }
}

impl NodeOutput for RingOutput {
    fn finish(&mut self) {
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
}
