//! A node's output in process mode: each value is archived once, written
//! once into the node's ring (which every local consumer reads in place),
//! and sent to the master if the debugger watches the node.

use std::any::Any;
use std::sync::Arc;

use clusterduck_transport::RingWriter;

use super::control_tx::ControlTx;
use super::protocol::ToMaster;
use crate::body::{Codec, EmitError, Output, Payload};
use crate::run::{EmitGate, NodeOutput};
use crate::Seq;

pub(crate) struct RingOutput {
    pub(crate) ring: Option<RingWriter>,
    pub(crate) tap: Option<ControlTx>,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) gate: EmitGate,
    pub(crate) emitted: u64,
}

impl RingOutput {
    /// Archives `value` into the ring, and for the debugger if it watches.
    fn write(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError> {
        match (&mut self.ring, &self.tap) {
            (None, None) => {}
            // The hot path: archived in place, straight into the ring.
            (Some(ring), None) => self
                .codec
                .write_frame(value, seq, ring)
                .map_err(EmitError::Failed)?,
            // Watched: the debugger gets a copy of the archived bytes.
            (ring, Some(tap)) => {
                let mut watched = Vec::new();
                self.codec
                    .encode(value, &mut |bytes| {
                        if let Some(ring) = ring.as_mut() {
                            ring.write_bytes(seq, bytes)?;
                        }
                        watched = bytes.to_vec();
                        Ok(())
                    })
                    .map_err(EmitError::Failed)?;
                // A master that is gone ends this process soon enough.
                let _ = tap.send(&ToMaster::Output {
                    seq,
                    bytes: watched,
                });
            }
        }
        self.emitted += 1;
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
            ring.write_bytes(seq, bytes)
                .map_err(|e| EmitError::Failed(e.into()))?;
        }
        if let Some(tap) = &self.tap {
            // A master that is gone ends this process soon enough.
            let _ = tap.send(&ToMaster::Output {
                seq,
                bytes: bytes.to_vec(),
            });
        }
        self.emitted += 1;
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.gate.is_stopping()
    }
}

impl NodeOutput for RingOutput {
    fn finish(&mut self) {
        if let Some(ring) = self.ring.take() {
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

    fn refused_for_stop(&self) -> bool {
        self.gate.refused_for_stop
    }
}
