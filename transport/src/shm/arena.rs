//! Values too large for a ring frame, stored out of line.
//!
//! A ring's writer may own a second segment, its *arena* (`<ring>.large`
//! in `/dev/shm`), created at its first large value. The value's bytes go
//! there, contiguous (the arena's data is mapped twice, as a ring's is),
//! and the ring gets a small frame that refers to them (kind code
//! [`LARGE_CODE`]: where in the arena, how long). Readers resolve that
//! frame to the bytes in the arena, in place: they see a Data frame like
//! any other, and never copy it.
//!
//! The arena is a byte ring too: values leave it in the order they came,
//! since their frames are released in ring order. The writer remembers,
//! for each value in the arena, where its frame ends in the ring; once the
//! slowest reader's cursor is past that position, the value's space is
//! free. A writer whose arena is full waits for the readers to release the
//! frame whose value frees enough: back-pressure, as for a full ring.

use std::collections::VecDeque;
use std::path::Path;

use super::error::{AttachError, CreateError};
use super::layout::align_frame;
use super::segment::ShmRing;
use crate::process::ProcessStamp;

/// The frame kind code of a value stored in the arena; its payload is a
/// [`LargeRef`]. Internal to the transport: readers present it as Data.
pub(crate) const LARGE_CODE: u32 = 3;

/// Where a large value lies in its arena: the payload of its ring frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct LargeRef {
    /// Its arena position (a byte count since the arena's start).
    pub(crate) pos: u64,
    /// Its length in bytes.
    pub(crate) len: u64,
}

impl LargeRef {
    /// Its bytes in a frame payload.
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.pos.to_le_bytes());
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Read back from a frame payload; `None` if it is not 16 bytes.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<LargeRef> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(LargeRef {
            pos: u64::from_le_bytes(b[..8].try_into().ok()?),
            len: u64::from_le_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// The writer's arena.
#[derive(Debug)]
pub(crate) struct Arena {
    ring: ShmRing,
    /// Arena bytes below this are written.
    written: u64,
    /// Arena bytes below this are free again.
    released: u64,
    /// Per value not yet released, oldest first: where its frame ends in
    /// the ring, and where its bytes end in the arena.
    held: VecDeque<(u64, u64)>,
}

impl Arena {
    /// Creates the arena's segment at `path`, of at least `bytes` bytes,
    /// stamped as `owner`'s.
    pub(crate) fn create(
        path: &Path,
        bytes: usize,
        owner: ProcessStamp,
    ) -> Result<Arena, CreateError> {
        Ok(Arena {
            ring: ShmRing::create_as(path, bytes, owner)?,
            written: 0,
            released: 0,
            held: VecDeque::new(),
        })
    }

    /// The arena at `path` of a ring whose writer died, for its successor:
    /// `held` lists the values its frames still refer to, oldest first
    /// (where each frame ends in the ring, and its reference): they stay
    /// until readers release those frames, and the next value goes after
    /// the last.
    pub(crate) fn reopen(path: &Path, held: &[(u64, LargeRef)]) -> Result<Arena, AttachError> {
        let ring = ShmRing::open_writable(path)?;
        let end = |r: &LargeRef| r.pos + align_frame(r.len);
        Ok(Arena {
            ring,
            written: held.last().map_or(0, |(_, r)| end(r)),
            released: held.first().map_or(0, |(_, r)| r.pos),
            held: held
                .iter()
                .map(|(frame_end, r)| (*frame_end, end(r)))
                .collect(),
        })
    }

    /// Its size in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity() as u64
    }

    /// Frees the values whose frames end at or below ring position
    /// `slowest` (every reader's cursor is there or past it).
    pub(crate) fn release(&mut self, slowest: u64) {
        while let Some(&(frame_end, arena_end)) = self.held.front() {
            if frame_end > slowest {
                break;
            }
            self.released = arena_end;
            self.held.pop_front();
        }
    }

    /// Bytes free now.
    pub(crate) fn free(&self) -> u64 {
        self.capacity() - (self.written - self.released)
    }

    /// The ring position the slowest reader must reach before `need` bytes
    /// are free: the end of the frame whose release frees enough. `None` if
    /// they are free already, or never will be (`need` exceeds the arena).
    pub(crate) fn frame_end_freeing(&self, need: u64) -> Option<u64> {
        let target = (self.written + need).checked_sub(self.capacity())?;
        self.held
            .iter()
            .find(|(_, arena_end)| *arena_end >= target)
            .map(|(frame_end, _)| *frame_end)
    }

    /// Copies `bytes` into the arena, whose free space must hold them
    /// rounded up to the frame alignment; returns where they lie.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> LargeRef {
        let need = align_frame(bytes.len() as u64);
        assert!(need <= self.free(), "an arena write without room");
        let pos = self.written;
        // The `need` bytes at `pos` are free (no reader holds a frame that
        // refers to them) and contiguous (double mapping, `need <=
        // capacity`); `bytes` cannot overlap them.
        // SAFETY: ours alone and in bounds, as above.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring.at(pos), bytes.len());
        }
        self.written += need;
        LargeRef {
            pos,
            len: bytes.len() as u64,
        }
    }

    /// The free space, where the next value goes: contiguous (double
    /// mapping), and referred to by no frame a reader holds.
    pub(crate) fn free_space(&mut self) -> &mut [u8] {
        let free = self.free() as usize;
        // SAFETY: the `free` bytes at `written` are free as above and in
        // bounds (`free <= capacity`); the borrow of `self` keeps them ours.
        unsafe { std::slice::from_raw_parts_mut(self.ring.at(self.written), free) }
    }

    /// Where the free space starts (see [`free_space`](Self::free_space)).
    pub(crate) fn next_at(&self) -> *mut u8 {
        self.ring.at(self.written)
    }

    /// Takes the first `len` bytes of the free space, written in place
    /// (through [`free_space`](Self::free_space)), as the next value.
    pub(crate) fn take(&mut self, len: usize) -> LargeRef {
        let need = align_frame(len as u64);
        assert!(need <= self.free(), "a value larger than the free space");
        let pos = self.written;
        self.written += need;
        LargeRef {
            pos,
            len: len as u64,
        }
    }

    /// Records that the frame referring to the last value put ends at ring
    /// position `frame_end`.
    pub(crate) fn hold(&mut self, frame_end: u64) {
        self.held.push_back((frame_end, self.written));
    }
}

/// A reader's view of its ring's arena: mapped when the reader attaches
/// if the writer made it already (the writer removes its name when it
/// ends, as the ring's), else at the first large frame.
#[derive(Debug, Default)]
pub(crate) struct ArenaView {
    mapped: std::cell::OnceCell<Result<ShmRing, AttachError>>,
}

impl ArenaView {
    /// The view of the arena at `path`, mapped now if it is there.
    pub(crate) fn attach(path: &Path) -> ArenaView {
        let view = ArenaView::default();
        if let Ok(ring) = ShmRing::open(path) {
            let _ = view.mapped.set(Ok(ring));
        }
        view
    }

    /// Where the arena at `path` lies in memory (mapped now if it is there
    /// and was not yet); `None` if it is not there (yet).
    pub(crate) fn span(
        &self,
        path: &Path,
        ring_capacity: usize,
    ) -> Option<super::forward::ArenaSpan> {
        if self.mapped.get().is_none() {
            // Only a mapping is kept: an arena made later is mapped then.
            let _ = self.mapped.set(Ok(ShmRing::open(path).ok()?));
        }
        let ring = self.mapped.get()?.as_ref().ok()?;
        let smallest = super::layout::max_inline(ring_capacity) + 1;
        Some(super::forward::ArenaSpan::new(ring, path, smallest))
    }

    /// The bytes `at` refers to, in the arena at `path` (mapped now if it
    /// was not yet). An error if the arena cannot be mapped or the
    /// reference does not fit it.
    pub(crate) fn bytes(&self, path: &Path, at: LargeRef) -> Result<&[u8], String> {
        let ring = self
            .mapped
            .get_or_init(|| ShmRing::open(path))
            .as_ref()
            .map_err(|e| format!("cannot map the arena of large values: {e}"))?;
        // The writer copied the value there before it published the frame
        // that refers to it (which this reader acquired), and leaves it until
        // every reader released that frame.
        value_in(ring, at)
    }
}

/// The bytes `at` refers to in `ring`, an arena, if they fit it. The caller
/// knows they were written and stay until it is done with them (the frame
/// that refers to them is unreleased).
pub(crate) fn value_in(ring: &ShmRing, at: LargeRef) -> Result<&[u8], String> {
    if at.len > ring.capacity() as u64 {
        return Err(format!(
            "a large value of {} bytes in an arena of {}",
            at.len,
            ring.capacity()
        ));
    }
    // `len <= capacity`, and the data region is mapped twice, so the bytes
    // are contiguous and in bounds; written and kept, by the caller's word.
    // SAFETY: readable, written and in bounds, as above.
    Ok(unsafe { std::slice::from_raw_parts(ring.at(at.pos), at.len as usize) })
}
