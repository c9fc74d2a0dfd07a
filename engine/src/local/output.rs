//! A node's output in local mode: each value goes to every consumer's edge
//! and to the debugger if it watches the node. Every consumer but the last
//! gets a copy; the last gets the value itself.

use std::any::Any;
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::debugger::DebugMsg;
use crate::body::{Codec, EmitError, Output, Payload};
use crate::graph::NodeId;
use crate::run::edge::{send, EdgeTx, Msg};
use crate::run::{EmitGate, NodeOutput};
use crate::Seq;

/// The output of one node.
pub(crate) struct LocalOutput {
    pub(crate) node: NodeId,
    pub(crate) gate: EmitGate,
    pub(crate) edges: Vec<EdgeTx>,
    pub(crate) tap: Option<Sender<DebugMsg>>,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) emitted: u64,
}

impl NodeOutput for LocalOutput {
    /// Ends the stream on every edge and lets go of the debugger.
    fn finish(&mut self) {
        for tx in &self.edges {
            // A consumer that is gone has nothing left to end.
            let _ = send(tx, Msg::End, &self.gate.stop);
        }
        self.edges.clear();
        self.tap = None;
    }

    fn emitted(&self) -> u64 {
        self.emitted
    }

    fn refused_for_stop(&self) -> bool {
        self.gate.refused_for_stop
    }
}

impl LocalOutput {
    fn deliver(&self, consumer: usize, seq: Seq, value: Payload) -> Result<(), EmitError> {
        let refused = match self.edges.get(consumer) {
            Some(tx) => match send(tx, Msg::Data(seq, value), &self.gate.stop) {
                Ok(()) => return Ok(()),
                Err(Msg::Data(_, v)) => v,
                Err(_) => unreachable!("a data message comes back as data"),
            },
            None => match &self.tap {
                Some(tap) => match send(
                    tap,
                    DebugMsg::Output(self.node, seq, value),
                    &self.gate.stop,
                ) {
                    Ok(()) => return Ok(()),
                    Err(DebugMsg::Output(_, _, v)) => v,
                    Err(_) => unreachable!("an output message comes back as output"),
                },
                None => return Ok(()),
            },
        };
        Err(EmitError::Aborted(refused))
    }
}

impl Output for LocalOutput {
    fn emit(&mut self, seq: Seq, value: Payload) -> Result<(), EmitError> {
        let value = self.gate.admit(value)?;
        let consumers = self.edges.len() + usize::from(self.tap.is_some());
        for consumer in 0..consumers.saturating_sub(1) {
            let copy = self.codec.duplicate(&*value).map_err(EmitError::Failed)?;
            self.deliver(consumer, seq, copy)?;
        }
        if consumers > 0 {
            self.deliver(consumers - 1, seq, value)?;
        }
        self.emitted += 1;
        Ok(())
    }

    fn emit_ref(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError> {
        self.gate.admit_kept()?;
        let copy = self.codec.duplicate(value).map_err(EmitError::Failed)?;
        self.emit(seq, copy)
    }

    fn emit_archived(&mut self, seq: Seq, bytes: &[u8]) -> Result<(), EmitError> {
        self.gate.admit_kept()?;
        let value = self.codec.decode(bytes).map_err(EmitError::Failed)?;
        self.emit(seq, value)
    }

    fn is_stopping(&self) -> bool {
        self.gate.is_stopping()
    }
}
