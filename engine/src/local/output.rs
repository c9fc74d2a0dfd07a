//! A node's output in local mode: each value goes to every consumer's edge
//! and to the debugger if it watches the node. Every consumer but the last
//! gets a copy; the last gets the value itself.

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::debugger::DebugMsg;
use crate::body::{Codec, EmitError, Output, Payload};
use crate::graph::NodeId;
use crate::run::edge::{send, EdgeTx, Msg};
use crate::run::NodeOutput;
use crate::stop::StopSignal;
use crate::Seq;

/// The output of one node.
pub(crate) struct LocalOutput {
    pub(crate) node: NodeId,
    pub(crate) is_spout: bool,
    pub(crate) edges: Vec<EdgeTx>,
    pub(crate) tap: Option<Sender<DebugMsg>>,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) stop: StopSignal,
    pub(crate) emitted: u64,
    /// Set when a spout's send was refused because the run drains, so that
    /// the error the spout returns with is not taken for a failure.
    pub(crate) refused_for_stop: bool,
}

impl NodeOutput for LocalOutput {
    /// Ends the stream on every edge and lets go of the debugger.
    fn finish(&mut self) {
        for tx in &self.edges {
            // A consumer that is gone has nothing left to end.
            let _ = send(tx, Msg::End, &self.stop);
        }
        self.edges.clear();
        self.tap = None;
    }

    fn emitted(&self) -> u64 {
        self.emitted
    }

    fn refused_for_stop(&self) -> bool {
        self.refused_for_stop
    }
}

impl LocalOutput {
    fn deliver(&self, consumer: usize, seq: Seq, value: Payload) -> Result<(), EmitError> {
        let refused = match self.edges.get(consumer) {
            Some(tx) => match send(tx, Msg::Data(seq, value), &self.stop) {
                Ok(()) => return Ok(()),
                Err(Msg::Data(_, v)) => v,
                Err(Msg::End) => unreachable!("a data message comes back as data"),
            },
            None => match &self.tap {
                Some(tap) => match send(tap, DebugMsg::Output(self.node, seq, value), &self.stop) {
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
        if self.stop.is_aborted() {
            return Err(EmitError::Aborted(value));
        }
        if self.is_spout && self.stop.is_draining() {
            self.refused_for_stop = true;
            return Err(EmitError::Stopping(value));
        }
        let consumers = self.edges.len() + usize::from(self.tap.is_some());
        for consumer in 0..consumers.saturating_sub(1) {
            let copy = self
                .codec
                .duplicate(value.as_ref())
                .map_err(EmitError::Failed)?;
            self.deliver(consumer, seq, copy)?;
        }
        if consumers > 0 {
            self.deliver(consumers - 1, seq, value)?;
        }
        self.emitted += 1;
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.is_spout && self.stop.is_draining()
    }
}
