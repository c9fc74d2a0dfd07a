//! What a worker emits through: zero, one or many values per input, with the
//! input's id or one the worker chooses.

use std::fmt;
use std::marker::PhantomData;

use clusterduck_engine::body::{payload, BoxError, EmitError, Output};
use clusterduck_engine::Seq;

use crate::message::Message;

/// A worker's output for one input.
pub struct Emitter<'a, U> {
    out: &'a mut dyn Output,
    seq: Seq,
    error: Option<BoxError>,
    _type: PhantomData<fn(U)>,
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
            error: None,
            _type: PhantomData,
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
        match self.out.emit(seq, payload(value)) {
            Ok(()) => {}
            // The run is failing because of another node: the value is moot.
            Err(EmitError::Aborted(_) | EmitError::Stopping(_)) => {}
            Err(EmitError::Failed(e)) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The first emit error, which fails the node once its function returns.
    pub(crate) fn finish(self) -> Result<(), BoxError> {
        self.error.map_or(Ok(()), Err)
    }
}
