//! An edge between two nodes of one process: a bounded channel of values,
//! closed by an end-of-stream message.

use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};

use crate::body::Payload;
use crate::stop::StopSignal;
use crate::Seq;

/// How often a blocked node looks at the stop signal.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// What travels on an edge.
pub(crate) enum Msg {
    /// A value and its id.
    Data(Seq, Payload),
    /// The producer's stream ended.
    End,
}

/// The sending end of an edge.
pub(crate) type EdgeTx = Sender<Msg>;
/// The receiving end of an edge.
pub(crate) type EdgeRx = Receiver<Msg>;

/// A bounded edge: `capacity` values in flight at most (back-pressure).
pub(crate) fn edge(capacity: usize) -> (EdgeTx, EdgeRx) {
    crossbeam_channel::bounded(capacity.max(1))
}

/// Sends `msg`, blocking while the edge is full; gives it back if the run
/// aborts or the consumer is gone.
pub(crate) fn send<T>(tx: &Sender<T>, mut msg: T, stop: &StopSignal) -> Result<(), T> {
    loop {
        match tx.send_timeout(msg, TICK) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(m)) => {
                if stop.is_aborted() {
                    return Err(m);
                }
                msg = m;
            }
            Err(SendTimeoutError::Disconnected(m)) => return Err(m),
        }
    }
}
