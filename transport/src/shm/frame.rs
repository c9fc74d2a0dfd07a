//! Frames: what a ring carries, and the zero-copy view a reader gets of one.

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::Archive;

use super::error::AccessError;

/// What a frame means. Codes are part of the segment layout: a new kind gets a
/// new code, and a reader that meets a code it does not know reports
/// [`FrameError::UnknownKind`](super::FrameError::UnknownKind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A message: its payload is a value (usually an rkyv archive).
    Data,
    /// End of stream: nothing follows. Its payload is empty.
    End,
}

impl FrameKind {
    /// The code stored in the frame header.
    pub(crate) const fn code(self) -> u32 {
        match self {
            FrameKind::Data => 1,
            FrameKind::End => 2,
        }
    }

    /// The kind of a stored code.
    pub(crate) const fn from_code(code: u32) -> Option<FrameKind> {
        match code {
            1 => Some(FrameKind::Data),
            2 => Some(FrameKind::End),
            _ => None,
        }
    }
}

/// A frame in a ring, read in place: nothing is copied. It borrows the
/// [`Batch`](super::Batch) it came from; the ring space is released when the
/// batch is dropped.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub(crate) kind: FrameKind,
    pub(crate) seq: u64,
    pub(crate) bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame's kind.
    #[inline]
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The sequence id the writer gave the frame.
    #[inline]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The payload. It starts on a 16-byte boundary.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload as an archived `T`, validated first by rkyv's `bytecheck`
    /// (so bytes from a buggy writer are an error, not undefined behaviour).
    pub fn access<T>(&self) -> Result<&'a T::Archived, AccessError>
    where
        T: Archive,
        T::Archived: for<'v> CheckBytes<HighValidator<'v, rancor::Error>>,
    {
        rkyv::access::<T::Archived, rancor::Error>(self.bytes).map_err(AccessError)
    }

    /// The payload as an archived `T`, not validated.
    ///
    /// # Safety
    ///
    /// The payload must be a valid archive of `T`, i.e. [`Frame::access`]
    /// would succeed on it. That holds when the frame was written by
    /// [`RingWriter::write_value`](super::RingWriter::write_value) with a `T`
    /// (or a type with the same archived form) and the ring's header check
    /// passed at attach (same magic and layout version, so the same frame
    /// format): the writer is then trusted code of the same binary, which is
    /// what this skips re-checking. It does not hold for bytes from elsewhere.
    pub unsafe fn access_unchecked<T: Archive>(&self) -> &'a T::Archived {
        // SAFETY: the caller guarantees the payload is a valid archive of T;
        // it is 16-byte aligned (every frame payload is) and lives for 'a.
        unsafe { rkyv::access_unchecked::<T::Archived>(self.bytes) }
    }
}

/// The rkyv writer behind [`RingWriter::write_value`](super::RingWriter::write_value):
/// it serialises straight into the ring's free space and, if the value
/// outgrows that space, spills everything into a reusable scratch buffer,
/// which the writer then copies into the ring once space is free.
#[derive(Debug)]
pub struct FrameBuf<'a> {
    ring: &'a mut [u8],
    spill: &'a mut rkyv::util::AlignedVec,
    len: usize,
    spilled: bool,
}

impl<'a> FrameBuf<'a> {
    pub(crate) fn new(ring: &'a mut [u8], spill: &'a mut rkyv::util::AlignedVec) -> Self {
        FrameBuf {
            ring,
            spill,
            len: 0,
            spilled: false,
        }
    }

    /// Bytes written; whether they went to the scratch buffer.
    pub(crate) fn finish(&self) -> (usize, bool) {
        (self.len, self.spilled)
    }
}

impl rkyv::ser::Positional for FrameBuf<'_> {
    #[inline]
    fn pos(&self) -> usize {
        self.len
    }
}

impl<E> rkyv::ser::Writer<E> for FrameBuf<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        if !self.spilled {
            if let Some(dst) = self.ring.get_mut(self.len..self.len + bytes.len()) {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                return Ok(());
            }
            // Positions are relative to the start, and the scratch buffer is
            // aligned like the ring: the archive stays valid when moved.
            self.spill.clear();
            self.spill.extend_from_slice(&self.ring[..self.len]);
            self.spilled = true;
        }
        self.spill.extend_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

/// The serializer [`RingWriter::write_value`](super::RingWriter::write_value)
/// runs: a value that derives rkyv's `Serialize` fits it.
pub type FrameSerializer<'a> = rkyv::api::high::HighSerializer<
    FrameBuf<'a>,
    rkyv::ser::allocator::ArenaHandle<'a>,
    rancor::Error,
>;
