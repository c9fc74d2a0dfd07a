//! The user's code as the engine runs it: type-erased node functions, the
//! output they emit into, and the codec that copies values for fan-out.
//!
//! The `clusterduck` crate turns typed closures into these; the engine never
//! sees a user type.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

pub use clusterduck_transport::{FrameSerializer, RingWriter};
use smallbox::space::S4;
use smallbox::{smallbox, SmallBox};

use crate::graph::NodeId;
use crate::node::Input;
use crate::replica::KeyFn;
use crate::report::PolicyEvent;
use crate::Seq;

/// A value in flight between two nodes of one process. Values of at most
/// four words (a number and a `String`, a `Vec`, a small struct of such) are
/// held inline, so carrying one through the engine allocates nothing; larger
/// ones go to the heap.
pub type Payload = SmallBox<dyn Any + Send, S4>;

/// Wraps `value` for the engine.
#[inline]
pub fn payload<T: Any + Send>(value: T) -> Payload {
    smallbox!(value)
}

/// The error a node function returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How the values of one node's output type are copied.
pub trait Codec: Send + Sync + fmt::Debug {
    /// The value type's name, for messages and the fingerprint.
    fn type_name(&self) -> &'static str;

    /// A copy of `value`, made as another process would see it: archived,
    /// then read back. Fan-out gives each consumer its own value this way,
    /// so value types need no `Clone`.
    fn duplicate(&self, value: &(dyn Any + Send)) -> Result<Payload, BoxError>;

    /// Archives `value` and hands the bytes to `write`. The bytes must be
    /// read back from an address aligned to 16.
    fn encode(
        &self,
        value: &(dyn Any + Send),
        write: &mut dyn FnMut(&[u8]) -> Result<(), BoxError>,
    ) -> Result<(), BoxError>;

    /// Archives `value` in place into `ring`, as a Data frame with id `seq`
    /// (no copy through a buffer), waiting for ring space if needed.
    fn write_frame(
        &self,
        value: &(dyn Any + Send),
        seq: Seq,
        ring: &mut RingWriter,
    ) -> Result<(), BoxError>;

    /// Reads a value back from its archived form, validating it first:
    /// bytes from another process are never trusted.
    fn decode(&self, bytes: &[u8]) -> Result<Payload, BoxError>;
}

/// Why a value could not be emitted; the value comes back.
#[derive(Debug)]
pub enum EmitError {
    /// The run is draining (Ctrl-C or a stop request): a spout should return.
    Stopping(Payload),
    /// The run is failing; whatever the node does now is discarded.
    Aborted(Payload),
    /// The value could not be archived, copied or written.
    Failed(BoxError),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Stopping(_) => write!(f, "the run is stopping"),
            EmitError::Aborted(_) => write!(f, "the run was aborted"),
            EmitError::Failed(e) => write!(f, "could not emit the value: {e}"),
        }
    }
}

impl std::error::Error for EmitError {}

/// Where a node function's values go: every consumer of the node, and the
/// debugger if it watches the node.
pub trait Output {
    /// Sends `value` with id `seq`, blocking while a consumer is full.
    fn emit(&mut self, seq: Seq, value: Payload) -> Result<(), EmitError>;

    /// Sends a copy of `value`, which the caller keeps: in process mode it
    /// is archived straight from the reference, as any value is; elsewhere
    /// it is copied (archived and read back). When the run refuses the
    /// value, the error carries `()`.
    fn emit_ref(&mut self, seq: Seq, value: &(dyn Any + Send)) -> Result<(), EmitError>;

    /// Sends a value already archived: `bytes` as [`Codec::encode`] makes
    /// them for the node's output type (a value that came in archived, sent
    /// on as it is). In process mode they are copied into the ring as they
    /// are; elsewhere they are read back first. When the run refuses the
    /// value, the error carries `()`: the bytes stay the caller's.
    fn emit_archived(&mut self, seq: Seq, bytes: &[u8]) -> Result<(), EmitError>;

    /// Whether the run is draining and a spout should return.
    fn is_stopping(&self) -> bool;

    /// Which replica of its node the caller is, and of how many.
    fn replica(&self) -> (usize, usize) {
        (0, 1)
    }

    /// For a spout restarted after its process died: what its earlier
    /// processes sent. The spout takes the resume in hand: its sends are no
    /// longer dropped by count (see [`Resumed`]). `None` for a first run.
    fn resume(&mut self) -> Option<Resumed> {
        None
    }
}

/// What the earlier processes of a restarted spout sent, as its ring
/// recorded it (see `docs/RECOVERY.md`).
///
/// A restarted spout's function is called again from its start. What it
/// sends again is dropped before it reaches the ring: while its ids had
/// only gone up, every id up to `last_seq`; otherwise its first `sent`
/// values, as a spout that sends the same values in the same order again
/// would (unless it asked for this resume, which says that it goes on
/// after what was sent instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// Values sent (and kept) by the earlier processes.
    pub sent: u64,
    /// The id of the last of them, if any.
    pub last_seq: Option<Seq>,
}

/// A spout's function, run once.
pub trait SpoutFn: Send {
    /// Runs the spout to the end of its stream.
    fn run(self: Box<Self>, out: &mut dyn Output) -> Result<(), BoxError>;
}

/// A worker's function, called once per input or bundle.
pub trait WorkerFn: Send {
    /// Processes one input with id `seq`.
    fn call(
        &mut self,
        seq: Seq,
        input: Input<Payload>,
        out: &mut dyn Output,
    ) -> Result<(), BoxError>;

    /// Whether the function takes its values archived, in place, through
    /// [`call_archived`](Self::call_archived) (a plain worker) or
    /// [`call_archived_bundle`](Self::call_archived_bundle) (a bundled
    /// one), where they lie in rings. A worker whose inputs are all rings is
    /// then called with them there, never decoded; elsewhere it is called
    /// with owned values.
    fn takes_archived(&self) -> bool {
        false
    }

    /// Processes the value with id `seq` from upstream `upstream`, given as
    /// the archived bytes in its upstream's ring (unchecked: the function
    /// validates them).
    fn call_archived(
        &mut self,
        seq: Seq,
        upstream: usize,
        bytes: &[u8],
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let _ = (seq, upstream, bytes, out);
        Err("internal error: this worker takes owned values".into())
    }

    /// Processes the bundle with id `seq`, given as the archived bytes of
    /// one value per upstream, in upstream order, where they lie in their
    /// rings (unchecked: the function validates them).
    fn call_archived_bundle(
        &mut self,
        seq: Seq,
        values: &[&[u8]],
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let _ = (seq, values, out);
        Err("internal error: this worker takes owned bundles".into())
    }
}

/// A node's function.
pub enum Body {
    /// A spout's.
    Spout(Box<dyn SpoutFn>),
    /// A worker's or bundled worker's.
    Worker(Box<dyn WorkerFn>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Body::Spout(_) => "Body::Spout",
            Body::Worker(_) => "Body::Worker",
        })
    }
}

/// Makes another instance of a node's function, as it was declared.
pub type Again = Box<dyn Fn() -> Body + Send>;

/// What runs a node: its function and its output's codec.
pub struct NodeImpl {
    /// The node's function.
    pub body: Body,
    /// The codec of the node's output type.
    pub codec: Arc<dyn Codec>,
    /// Another instance of the function, for each further replica that
    /// runs in this process (local mode); `None` if it cannot be copied.
    pub again: Option<Again>,
    /// Per upstream: the key of a value, for an input grouped by key.
    pub keys: Vec<Option<KeyFn>>,
}

impl fmt::Debug for NodeImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeImpl")
            .field("body", &self.body)
            .field("codec", &self.codec)
            .field("again", &self.again.is_some())
            .finish_non_exhaustive()
    }
}

/// Receives, in the launching process, the outputs of the watched nodes and
/// every policy event. Called from one thread, in arrival order per node.
pub trait DebugSink: Send {
    /// An output of watched node `node`.
    fn output(&mut self, node: NodeId, seq: Seq, value: Payload);

    /// A policy event of any node.
    fn event(&mut self, event: &PolicyEvent);
}
