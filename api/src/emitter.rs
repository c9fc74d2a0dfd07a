//! What a worker emits through: zero, one or many values per input, with the
//! input's id or one the worker chooses.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;

use clusterduck_engine::body::{payload, BoxError, EmitError, Output};
use clusterduck_engine::Seq;
use rkyv::rancor;
use rkyv::Archived;

use crate::message::Message;

/// Whether `value` is the root of `input`, archived as a `U`: the input
/// itself, which can go on as its bytes.
fn is_root_of<U: Message>(value: &Archived<U>, input: &ArchivedInput<'_>) -> bool {
    let root = rkyv::api::root_position::<Archived<U>>(input.bytes.len());
    input.type_id == TypeId::of::<U>()
        && std::ptr::eq(
            (value as *const Archived<U>).cast::<u8>(),
            input.bytes[root..].as_ptr(),
        )
}

/// A worker's output for one input.
pub struct Emitter<'a, U> {
    out: &'a mut dyn Output,
    seq: Seq,
    /// The inputs, archived, when the worker takes its input in place (one,
    /// or a bundle's): what [`forward`](Self::forward) sends on as it is.
    inputs: &'a [ArchivedInput<'a>],
    error: Option<BoxError>,
    _type: PhantomData<fn(U)>,
}

/// The archived bytes of a worker's input, and the input's type.
#[derive(Clone, Copy)]
pub(crate) struct ArchivedInput<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) type_id: TypeId,
}

impl<U> fmt::Debug for Emitter<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Emitter<{}>(seq {})",
            std::any::type_name::<U>(),
            self.seq
        )
    }
}

impl<'a, U: Message> Emitter<'a, U> {
    pub(crate) fn new(out: &'a mut dyn Output, seq: Seq) -> Self {
        Self {
            out,
            seq,
            inputs: &[],
            error: None,
            _type: PhantomData,
        }
    }

    /// The emitter of a worker that was given `inputs` archived.
    pub(crate) fn with_inputs(
        out: &'a mut dyn Output,
        seq: Seq,
        inputs: &'a [ArchivedInput<'a>],
    ) -> Self {
        Self {
            inputs,
            ..Self::new(out, seq)
        }
    }

    /// The id of the input being processed.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Emits `value` with the input's id, blocking while a downstream node is
    /// full.
    pub fn emit(&mut self, value: U) {
        self.emit_at(self.seq, value);
    }

    /// Emits `value` with id `seq`.
    pub fn emit_at(&mut self, seq: Seq, value: U) {
        let sent = self.out.emit(seq, payload(value));
        self.take_result(sent);
    }

    /// Emits a copy of `value` with the input's id, the worker keeping
    /// `value` (see [`Dispatcher::send_ref`](crate::Dispatcher::send_ref)).
    pub fn emit_ref(&mut self, value: &U) {
        let sent = self.out.emit_ref(self.seq, value);
        self.take_result(sent);
    }

    fn take_result(&mut self, sent: Result<(), EmitError>) {
        match sent {
            Ok(()) => {}
            // The run is failing because of another node: the value is moot.
            Err(EmitError::Aborted(_) | EmitError::Stopping(_)) => {}
            Err(EmitError::Failed(e)) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Emits an input being processed as it is, with the input's id: its
    /// archived bytes go on without being decoded or archived again (they
    /// are copied once, into this node's ring; a value too large for the
    /// ring, which lies in its upstream's space for large values, is not
    /// copied at all when every consumer of this node is on its host: its
    /// frame refers to the value where it lies, which stays there until
    /// the consumers are done with it). For a
    /// worker that takes its input archived
    /// ([`Topology::worker_archived`](crate::Topology::worker_archived), or
    /// one value of a bundle with
    /// [`Topology::bundled_archived`](crate::Topology::bundled_archived))
    /// and emits values of that input's type; any other `value` is
    /// deserialised and emitted like [`emit`](Self::emit) would.
    pub fn forward(&mut self, value: &Archived<U>) {
        self.forward_at(self.seq, value);
    }

    /// Emits the input being processed as it is, with id `seq`: see
    /// [`forward`](Self::forward).
    pub fn forward_at(&mut self, seq: Seq, value: &Archived<U>) {
        if let Some(input) = self.inputs.iter().find(|i| is_root_of::<U>(value, i)) {
            let sent = self.out.emit_archived(seq, input.bytes);
            self.take_result(sent);
            return;
        }
        match rkyv::deserialize::<U, rancor::Error>(value) {
            Ok(owned) => self.emit_at(seq, owned),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
    }

    /// The first emit error, which fails the node once its function returns.
    pub(crate) fn finish(self) -> Result<(), BoxError> {
        self.error.map_or(Ok(()), Err)
    }
}
