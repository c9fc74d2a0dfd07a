//! The debugger thread of a local run: it hands watched outputs and policy
//! events to the user's sink, one at a time, in arrival order per node.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};

use crate::body::{Codec, DebugSink, Payload};
use crate::graph::NodeId;
use crate::report::{Failure, PolicyEvent};
use crate::run::ring_output::Tap;
use crate::run::{panic_message, EventSink, RunControl, TICK};
use crate::stop::StopSignal;
use crate::Seq;

/// Values in flight to the debugger, at most; a slow debugger slows the
/// watched nodes rather than losing their outputs.
const DEBUG_CAPACITY: usize = 1024;

/// What the debugger receives.
pub(crate) enum DebugMsg {
    /// An output of a watched node.
    Output(NodeId, Seq, Payload),
    /// A policy event.
    Event(PolicyEvent),
}

/// Starts the debugger thread; it ends when every sender is dropped. A sink
/// that panics fails the run.
pub(crate) fn spawn(
    mut sink: Box<dyn DebugSink>,
    control: Arc<RunControl>,
) -> (Sender<DebugMsg>, thread::JoinHandle<()>) {
    let (tx, rx): (Sender<DebugMsg>, Receiver<DebugMsg>) =
        crossbeam_channel::bounded(DEBUG_CAPACITY);
    let handle = thread::Builder::new()
        .name("clusterduck-debugger".into())
        .spawn(move || {
            let mut failed = false;
            for msg in rx {
                if failed {
                    continue; // keep draining so that senders never block
                }
                let result = catch_unwind(AssertUnwindSafe(|| match msg {
                    DebugMsg::Output(node, seq, value) => sink.output(node, seq, value),
                    DebugMsg::Event(event) => sink.event(&event),
                }));
                if let Err(panic) = result {
                    failed = true;
                    control.fail(Failure::Debugger {
                        message: panic_message(&*panic),
                    });
                }
            }
        })
        .expect("spawn the debugger thread");
    (tx, handle)
}

/// Sends `msg`, blocking while the debugger is behind; gives up if the run
/// aborts or the debugger is gone.
fn send(tx: &Sender<DebugMsg>, mut msg: DebugMsg, stop: &StopSignal) {
    loop {
        match tx.send_timeout(msg, TICK) {
            Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
            Err(SendTimeoutError::Timeout(m)) => {
                if stop.is_aborted() {
                    return;
                }
                msg = m;
            }
        }
    }
}

/// A watched node's outputs, read back from their archived bytes (as the
/// master does in process mode) and handed to the debugger thread.
pub(crate) struct LocalTap {
    pub(crate) node: NodeId,
    pub(crate) name: String,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) tx: Sender<DebugMsg>,
    pub(crate) control: Arc<RunControl>,
}

impl Tap for LocalTap {
    fn watched(&mut self, _number: u64, seq: Seq, bytes: &[u8]) {
        match self.codec.decode(bytes) {
            Ok(value) => send(
                &self.tx,
                DebugMsg::Output(self.node, seq, value),
                &self.control.stop,
            ),
            Err(e) => self.control.fail(Failure::Control {
                node: self.name.clone(),
                message: format!("bad debugger record for seq {seq}: {e}"),
            }),
        }
    }
}

/// Sends a node's policy events to the debugger thread.
pub(crate) struct LocalEvents {
    pub(crate) tx: Sender<DebugMsg>,
    pub(crate) stop: StopSignal,
}

impl EventSink for LocalEvents {
    fn event(&mut self, event: PolicyEvent) {
        // Refused only when the run aborts: the event is moot then.
        send(&self.tx, DebugMsg::Event(event), &self.stop);
    }
}
