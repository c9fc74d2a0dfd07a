//! The debugger thread of a local run: it hands watched outputs and policy
//! events to the user's sink, one at a time, in arrival order per node.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use crate::body::{DebugSink, Payload};
use crate::graph::NodeId;
use crate::report::{Failure, PolicyEvent};
use crate::run::{panic_message, RunControl};
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
