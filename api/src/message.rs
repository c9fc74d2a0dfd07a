//! What a value must be to travel between nodes: archivable by rkyv (the
//! same bounds in every mode, so user code does not change when nodes move
//! to other processes or hosts), `Send` and `'static`.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use clusterduck_engine::body::{payload, BoxError, Codec, FrameSerializer, Payload, RingWriter};
use clusterduck_engine::Seq;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// A value that can flow between nodes.
///
/// Implemented for every type that derives rkyv's `Archive`, `Serialize` and
/// `Deserialize` (with the archived type checkable, which the derive gives)
/// and is `Send + 'static`; never implement it by hand.
///
/// ```
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Photo {
///     camera: String,
///     pixels: Vec<u8>,
/// }
/// fn takes<T: clusterduck::Message>() {}
/// takes::<Photo>();
/// takes::<(u64, String)>();
/// ```
pub trait Message:
    Sized
    + rkyv::Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + rkyv::Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + for<'a> rkyv::Serialize<FrameSerializer<'a>>
    + Send
    + 'static
{
}

impl<T> Message for T where
    T: rkyv::Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + for<'a> rkyv::Serialize<FrameSerializer<'a>>
        + Send
        + 'static
{
}

/// The engine's codec for values of type `T`.
pub(crate) struct TypedCodec<T>(PhantomData<fn() -> T>);

impl<T> TypedCodec<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> fmt::Debug for TypedCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedCodec<{}>", std::any::type_name::<T>())
    }
}

impl<T: Message> TypedCodec<T> {
    /// `value` as a `T`.
    fn typed<'v>(&self, value: &'v (dyn Any + Send)) -> Result<&'v T, BoxError> {
        value
            .downcast_ref::<T>()
            .ok_or_else(|| format!("a value is not of type {}", self.type_name()).into())
    }
}

impl<T: Message> Codec for TypedCodec<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn duplicate(&self, value: &(dyn Any + Send)) -> Result<Payload, BoxError> {
        let value = self.typed(value)?;
        let bytes = rkyv::to_bytes::<rancor::Error>(value)?;
        let copy = rkyv::from_bytes::<T, rancor::Error>(&bytes)?;
        Ok(payload(copy))
    }

    fn encode(
        &self,
        value: &(dyn Any + Send),
        write: &mut dyn FnMut(&[u8]) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let value = self.typed(value)?;
        // One scratch buffer per thread, reused: no allocation per value.
        SCRATCH.with(|scratch| {
            let mut buffer = scratch.take();
            buffer.clear();
            let result = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buffer);
            match result {
                Ok(bytes) => {
                    let written = write(&bytes);
                    scratch.set(bytes);
                    written
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn write_frame(
        &self,
        value: &(dyn Any + Send),
        seq: Seq,
        ring: &mut RingWriter,
    ) -> Result<(), BoxError> {
        Ok(ring.write_value(seq, self.typed(value)?)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Payload, BoxError> {
        let value = if (bytes.as_ptr() as usize) % ARCHIVE_ALIGN == 0 {
            rkyv::from_bytes::<T, rancor::Error>(bytes)?
        } else {
            let mut aligned = AlignedVec::<ARCHIVE_ALIGN>::with_capacity(bytes.len());
            aligned.extend_from_slice(bytes);
            rkyv::from_bytes::<T, rancor::Error>(&aligned)?
        };
        Ok(payload(value))
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<AlignedVec> = std::cell::Cell::new(AlignedVec::new());
}

/// The alignment archived values are read at: rkyv's largest primitive
/// alignment, which its `AlignedVec` also uses.
const ARCHIVE_ALIGN: usize = 16;

/// Unboxes a value the engine carried, which the typed API made of type `T`.
pub(crate) fn unbox<T: Message>(value: Payload) -> Result<T, BoxError> {
    value.downcast::<T>().map(|v| v.into_inner()).map_err(|_| {
        format!(
            "internal error: a value is not of the declared type {}",
            std::any::type_name::<T>()
        )
        .into()
    })
}
