//! Typed closures turned into the engine's node functions.

use std::marker::PhantomData;

use clusterduck_engine::body::{BoxError, Output, Payload, SpoutFn, WorkerFn};
use clusterduck_engine::node::Input;
use clusterduck_engine::Seq;

use crate::dispatcher::Dispatcher;
use crate::emitter::Emitter;
use crate::message::{unbox, Message};

pub(crate) struct Spout<T, F> {
    pub(crate) f: F,
    pub(crate) _type: PhantomData<fn(T)>,
}

impl<T, F> SpoutFn for Spout<T, F>
where
    T: Message,
    F: FnOnce(&mut Dispatcher<'_, T>) -> Result<(), BoxError> + Send,
{
    fn run(self: Box<Self>, out: &mut dyn Output) -> Result<(), BoxError> {
        (self.f)(&mut Dispatcher::new(out))
    }
}

pub(crate) struct Merge<T, U, F> {
    pub(crate) f: F,
    pub(crate) _type: PhantomData<fn(T) -> U>,
}

impl<T, U, F> WorkerFn for Merge<T, U, F>
where
    T: Message,
    U: Message,
    F: FnMut(Seq, T, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    fn call(
        &mut self,
        seq: Seq,
        input: Input<Payload>,
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let value = match input {
            Input::One { value, .. } => unbox::<T>(value)?,
            Input::Bundle(_) => return Err("internal error: a merged worker got a bundle".into()),
        };
        let mut emitter = Emitter::new(out, seq);
        (self.f)(seq, value, &mut emitter)?;
        emitter.finish()
    }
}

/// A bundled worker's function, with the unpacking of its bundle type (kept
/// as a function so that the borrowed handles of the bundle type do not
/// have to outlive the run).
pub(crate) struct Bundled<V, U, F> {
    pub(crate) f: F,
    pub(crate) unpack: fn(Vec<Payload>) -> Result<V, BoxError>,
    pub(crate) _type: PhantomData<fn(V) -> U>,
}

impl<V, U, F> WorkerFn for Bundled<V, U, F>
where
    V: Send + 'static,
    U: Message,
    F: FnMut(Seq, V, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    fn call(
        &mut self,
        seq: Seq,
        input: Input<Payload>,
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let values = match input {
            Input::Bundle(values) => (self.unpack)(values)?,
            Input::One { .. } => {
                return Err("internal error: a bundled worker got one value".into())
            }
        };
        let mut emitter = Emitter::new(out, seq);
        (self.f)(seq, values, &mut emitter)?;
        emitter.finish()
    }
}
