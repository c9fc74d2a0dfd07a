//! What a spout sends through: `send(seq, value)` to every downstream node.

use std::fmt;
use std::marker::PhantomData;

use clusterduck_engine::body::{payload, EmitError, Output, Resumed};
use clusterduck_engine::Seq;

use crate::message::{unbox, Message};

/// A spout's output. Each [`send`](Self::send) relays a value with the id the
/// spout chose to every downstream node (and to the debugger if it watches
/// the spout).
pub struct Dispatcher<'a, T> {
    out: &'a mut dyn Output,
    _type: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for Dispatcher<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dispatcher<{}>", std::any::type_name::<T>())
    }
}

/// Why a value was not sent. The value comes back.
pub enum SendError<T> {
    /// The run is draining (Ctrl-C or [`StopSignal::drain`](crate::StopSignal::drain)):
    /// the spout should return. Returning this error with `?` is a clean end,
    /// not a failure.
    Stopping(T),
    /// The run is failing because of another node; what the spout does now is
    /// discarded.
    Aborted(T),
    /// The value could not be archived, copied for a second consumer, or
    /// written to the node's output.
    Failed(String),
}

impl<T> SendError<T> {
    /// The value that was not sent, if it is still there.
    pub fn into_value(self) -> Option<T> {
        match self {
            SendError::Stopping(v) | SendError::Aborted(v) => Some(v),
            SendError::Failed(_) => None,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Stopping(_) => f.write_str("SendError::Stopping(..)"),
            SendError::Aborted(_) => f.write_str("SendError::Aborted(..)"),
            SendError::Failed(e) => write!(f, "SendError::Failed({e:?})"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Stopping(_) => f.write_str("the run is stopping"),
            SendError::Aborted(_) => f.write_str("the run was aborted"),
            SendError::Failed(e) => write!(f, "could not send the value: {e}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<'a, T: Message> Dispatcher<'a, T> {
    pub(crate) fn new(out: &'a mut dyn Output) -> Self {
        Self {
            out,
            _type: PhantomData,
        }
    }

    /// Sends `value` with id `seq` to every downstream node, blocking while
    /// one of them is full (back-pressure: nothing is dropped).
    pub fn send(&mut self, seq: Seq, value: T) -> Result<(), SendError<T>> {
        self.out.emit(seq, payload(value)).map_err(|e| match e {
            EmitError::Stopping(v) => match unbox::<T>(v) {
                Ok(v) => SendError::Stopping(v),
                Err(e) => SendError::Failed(e.to_string()),
            },
            EmitError::Aborted(v) => match unbox::<T>(v) {
                Ok(v) => SendError::Aborted(v),
                Err(e) => SendError::Failed(e.to_string()),
            },
            EmitError::Failed(e) => SendError::Failed(e.to_string()),
        })
    }

    /// Sends a copy of `value` with id `seq`, like [`send`](Self::send),
    /// the spout keeping `value`: a spout that fills one buffer again and
    /// again (a camera frame, a line read from a file) sends it without
    /// giving it away. In process mode the value is archived straight from
    /// the reference into the spout's ring, as any value is, so this costs
    /// no more than `send` (and saves building a value per send); in local
    /// mode each consumer gets a copy.
    ///
    /// ```
    /// # use clusterduck::{Launch, Topology};
    /// # let mut t = Topology::new();
    /// let lines = t.spout("lines", |out| {
    ///     let mut line = String::new();
    ///     for i in 0..3u64 {
    ///         line.clear();
    ///         line.push_str(&format!("line {i}"));
    ///         out.send_ref(i, &line)?;
    ///     }
    ///     Ok(())
    /// });
    /// # t.sink("print", &lines, |_, l: String| { println!("{l}"); Ok(()) });
    /// # t.launch(Launch::local()).unwrap();
    /// ```
    pub fn send_ref(&mut self, seq: Seq, value: &T) -> Result<(), SendError<()>> {
        self.out.emit_ref(seq, value).map_err(|e| match e {
            EmitError::Stopping(_) => SendError::Stopping(()),
            EmitError::Aborted(_) => SendError::Aborted(()),
            EmitError::Failed(e) => SendError::Failed(e.to_string()),
        })
    }

    /// Whether the run is draining and the spout should return. A spout that
    /// waits on something else than [`send`](Self::send) (a socket, a timer)
    /// should look at this between waits.
    pub fn is_stopping(&self) -> bool {
        self.out.is_stopping()
    }

    /// Which replica of the spout this is (0 for a spout of one replica):
    /// with several, each replica's function runs, and should send its
    /// share (e.g. the ids `seq` with `seq % replicas() == replica()`).
    pub fn replica(&self) -> usize {
        self.out.replica().0
    }

    /// For a spout restarted after its process died (see
    /// [`Launch::restarts`](crate::Launch::restarts)): what its earlier
    /// processes sent, as their ring recorded it; `None` on a first run.
    ///
    /// A restarted spout's function is called again from its start. One
    /// that sends the same values in the same order again needs nothing:
    /// what it sends again is dropped before it reaches the ring (by id,
    /// while its ids only went up; else its first [`Resumed::sent`]
    /// values). One that cannot (its source moved on) or should not (its
    /// values are costly) asks here and goes on after what was sent:
    /// asking says so, and nothing it sends is then dropped by count.
    ///
    /// ```
    /// # use clusterduck::{Launch, Topology};
    /// # let mut t = Topology::new();
    /// let ids = t.spout("ids", |out| {
    ///     let sent = out.resume().map_or(0, |r| r.sent);
    ///     for seq in sent..100u64 {
    ///         out.send(seq, seq)?;
    ///     }
    ///     Ok(())
    /// });
    /// # t.sink("print", &ids, |_, _: u64| Ok(()));
    /// # t.launch(Launch::local()).unwrap();
    /// ```
    pub fn resume(&mut self) -> Option<Resumed> {
        self.out.resume()
    }

    /// How many replicas the spout runs as.
    pub fn replicas(&self) -> usize {
        self.out.replica().1
    }
}
