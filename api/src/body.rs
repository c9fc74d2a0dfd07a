//! Typed closures turned into the engine's node functions.

use std::any::TypeId;
use std::marker::PhantomData;

use clusterduck_engine::body::{BoxError, Output, Payload, SpoutFn, WorkerFn};
use clusterduck_engine::bundle::BundleVec;
use clusterduck_engine::node::Input;
use clusterduck_engine::Seq;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::Archived;
use smallvec::SmallVec;

use crate::dispatcher::Dispatcher;
use crate::emitter::{ArchivedInput, Emitter};
use crate::message::{unbox, Message};
use crate::node::BundleValues;

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

/// The value of a merged worker's input.
fn single<T: Message>(input: Input<Payload>) -> Result<T, BoxError> {
    match input {
        Input::One { value, .. } => unbox::<T>(value),
        Input::Bundle(_) => Err("internal error: a merged worker got a bundle".into()),
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
        let value = single::<T>(input)?;
        let mut emitter = Emitter::new(out, seq);
        (self.f)(seq, value, &mut emitter)?;
        emitter.finish()
    }
}

/// A worker's function that takes its input archived, in place.
pub(crate) struct InPlace<T, U, F> {
    pub(crate) f: F,
    /// Where a value given owned is archived.
    pub(crate) scratch: AlignedVec,
    pub(crate) _type: PhantomData<fn(T) -> U>,
}

impl<T, U, F> InPlace<T, U, F>
where
    T: Message,
    U: Message,
    F: FnMut(Seq, &Archived<T>, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    /// Validates `bytes` as an archived `T` and calls the function with it.
    fn call_with(&mut self, seq: Seq, bytes: &[u8], out: &mut dyn Output) -> Result<(), BoxError> {
        let value = rkyv::access::<Archived<T>, rancor::Error>(bytes)
            .map_err(|e| format!("bad value: {e}"))?;
        let inputs = [ArchivedInput {
            bytes,
            type_id: TypeId::of::<T>(),
        }];
        let mut emitter = Emitter::with_inputs(out, seq, &inputs);
        (self.f)(seq, value, &mut emitter)?;
        emitter.finish()
    }
}

impl<T, U, F> WorkerFn for InPlace<T, U, F>
where
    T: Message,
    U: Message,
    F: FnMut(Seq, &Archived<T>, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    fn takes_archived(&self) -> bool {
        true
    }

    fn call_archived(
        &mut self,
        seq: Seq,
        _upstream: usize,
        bytes: &[u8],
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        self.call_with(seq, bytes, out)
    }

    /// Where values are not in rings (local mode), each is archived here
    /// first, into a buffer reused from call to call.
    fn call(
        &mut self,
        seq: Seq,
        input: Input<Payload>,
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let value = single::<T>(input)?;
        let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
            &value,
            std::mem::take(&mut self.scratch),
        )?;
        let result = self.call_with(seq, &bytes, out);
        self.scratch = bytes;
        result
    }
}

/// A bundled worker's function that takes its values archived, in place.
pub(crate) struct InPlaceBundled<V, U, F> {
    pub(crate) f: F,
    /// The type of each upstream's values (of all, for a `Vec` bundle).
    pub(crate) types: Vec<TypeId>,
    pub(crate) _type: PhantomData<fn(V) -> U>,
}

impl<V, U, F> InPlaceBundled<V, U, F>
where
    V: BundleValues,
    U: Message,
    F: for<'a> FnMut(Seq, V::Archived<'a>, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    /// Validates one archived value per upstream and calls the function
    /// with them.
    fn call_with(
        &mut self,
        seq: Seq,
        values: &[&[u8]],
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let archived = V::access(values)?;
        let types = &self.types;
        let inputs: SmallVec<[ArchivedInput<'_>; 8]> = values
            .iter()
            .enumerate()
            .map(|(i, bytes)| ArchivedInput {
                bytes,
                type_id: types.get(i).copied().unwrap_or(types[0]),
            })
            .collect();
        let mut emitter = Emitter::with_inputs(out, seq, &inputs);
        (self.f)(seq, archived, &mut emitter)?;
        emitter.finish()
    }
}

impl<V, U, F> WorkerFn for InPlaceBundled<V, U, F>
where
    V: BundleValues,
    U: Message,
    F: for<'a> FnMut(Seq, V::Archived<'a>, &mut Emitter<'_, U>) -> Result<(), BoxError> + Send,
{
    fn takes_archived(&self) -> bool {
        true
    }

    fn call_archived_bundle(
        &mut self,
        seq: Seq,
        values: &[&[u8]],
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        self.call_with(seq, values, out)
    }

    /// Where values are not in rings (local mode), each is archived first.
    fn call(
        &mut self,
        seq: Seq,
        input: Input<Payload>,
        out: &mut dyn Output,
    ) -> Result<(), BoxError> {
        let Input::Bundle(values) = input else {
            return Err("internal error: a bundled worker got one value".into());
        };
        let archived = V::archive(values)?;
        let slices: SmallVec<[&[u8]; 8]> = archived.iter().map(|a| a.as_slice()).collect();
        self.call_with(seq, &slices, out)
    }
}

/// A bundled worker's function, with the unpacking of its bundle type (kept
/// as a function so that the borrowed handles of the bundle type do not
/// have to outlive the run).
pub(crate) struct Bundled<V, U, F> {
    pub(crate) f: F,
    pub(crate) unpack: fn(BundleVec<Payload>) -> Result<V, BoxError>,
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
