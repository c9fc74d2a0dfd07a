//! The bytes of a ring segment, as both sides of a ring see them.
//!
//! A segment is one file under `/dev/shm`:
//!
//! ```text
//! offset 0            SegmentHeader (repr(C)): identity, then Control
//! offset header_len   data region: `capacity` bytes (a power of two, whole pages)
//! ```
//!
//! Invariants:
//! - Everything is `repr(C)` with fixed offsets, and nothing in the segment
//!   is an address: positions are byte counts, so each process may map the
//!   segment wherever it likes.
//! - The first 40 bytes ([`SegmentHeader`]'s identity prefix: magic, version,
//!   header length, creator pid and start time, capacity) keep their offsets in
//!   every layout version, so that a newer binary can still recognise, report
//!   and clean up an older segment.
//! - `magic` is written last, with Release, when the creator has filled in
//!   everything else; a reader that sees it with Acquire sees a whole header.
//! - All-zero bytes are the initial state of [`Control`]: a fresh file (which
//!   `ftruncate` zeroes) needs no further initialisation.
//! - The data region is mapped twice, back to back, so that a frame that runs
//!   past the end of the region continues, in the second mapping, at its
//!   start: every frame is contiguous in memory and is never split or padded.
//! - A frame is a [`FrameHeader`] then its payload, starting on a
//!   [`FRAME_ALIGN`] boundary; its size is rounded up to that alignment.

use crate::sync::{AtomicU32, AtomicU64};

/// "CLDKRING", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"CLDKRING");

/// Bumped whenever anything after the identity prefix changes.
pub(crate) const LAYOUT_VERSION: u32 = 2;

/// How many readers a ring can have at once.
#[cfg(not(loom))]
pub(crate) const MAX_READERS: usize = 32;
/// Few slots keep the model's state space small.
#[cfg(loom)]
pub(crate) const MAX_READERS: usize = 2;

/// Alignment of every frame and payload: rkyv's `AlignedVec` alignment, so an
/// archive serialised elsewhere lands aligned in the ring.
pub(crate) const FRAME_ALIGN: u64 = 16;

/// Size of a [`FrameHeader`].
pub(crate) const FRAME_HEADER_LEN: u64 = 16;

/// Rounds `n` up to [`FRAME_ALIGN`].
#[inline]
pub(crate) const fn align_frame(n: u64) -> u64 {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The largest payload a ring of `capacity` bytes with an arena keeps in
/// the ring itself: larger ones go to the arena.
#[inline]
pub(crate) const fn max_inline(capacity: usize) -> usize {
    capacity / 4 - FRAME_HEADER_LEN as usize
}

/// The bytes a frame with a payload of `len` bytes takes in the ring.
#[inline]
pub(crate) const fn frame_size(len: u64) -> u64 {
    FRAME_HEADER_LEN + align_frame(len)
}

/// Keeps what it holds on its own cache line pair, so that one side's
/// writes do not evict what the other side polls (128 bytes: adjacent-line
/// prefetch on x86 pulls lines in pairs).
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The header at offset 0 of every segment.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SegmentHeader {
    /// [`MAGIC`] once the header is complete; 0 before.
    pub(crate) magic: AtomicU64,
    /// [`LAYOUT_VERSION`] of the creator.
    pub(crate) version: u32,
    /// Offset of the data region: a whole number of pages.
    pub(crate) header_len: u32,
    /// Pid of the process that created the segment: its owner (the writer,
    /// unless created for a longer-lived owner; the writing process is in
    /// [`WriterLine`]).
    pub(crate) creator_pid: u32,
    /// Explicit padding, zero.
    pub(crate) _pad: u32,
    /// Start time of the creator (clock ticks since boot, from
    /// `/proc/<pid>/stat`), so that a reused pid is not taken for the writer.
    pub(crate) creator_start: u64,
    /// Size of the data region in bytes: a power of two, whole pages.
    pub(crate) capacity: u64,
    /// Number of reader slots in [`Control`].
    pub(crate) max_readers: u32,
    /// Explicit padding, zero.
    pub(crate) _reserved: [u32; 5],
    /// The shared indices and wake-up words.
    pub(crate) control: Control,
}

/// Offsets of the identity prefix: fixed in every layout version.
pub(crate) mod prefix {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 8;
    pub(crate) const HEADER_LEN: usize = 12;
    pub(crate) const CREATOR_PID: usize = 16;
    pub(crate) const CREATOR_START: usize = 24;
    pub(crate) const CAPACITY: usize = 32;
    pub(crate) const LEN: usize = 40;
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(SegmentHeader, magic) == prefix::MAGIC);
    assert!(offset_of!(SegmentHeader, version) == prefix::VERSION);
    assert!(offset_of!(SegmentHeader, header_len) == prefix::HEADER_LEN);
    assert!(offset_of!(SegmentHeader, creator_pid) == prefix::CREATOR_PID);
    assert!(offset_of!(SegmentHeader, creator_start) == prefix::CREATOR_START);
    assert!(offset_of!(SegmentHeader, capacity) == prefix::CAPACITY);
    assert!(offset_of!(SegmentHeader, control) == 128);
    assert!(std::mem::size_of::<FrameHeader>() as u64 == FRAME_HEADER_LEN);
    assert!(std::mem::align_of::<FrameHeader>() as u64 <= FRAME_ALIGN);
};

/// What the writer and the readers share to coordinate: every field is an
/// atomic, and all zeroes is the initial state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    /// Written by the writer on every publish; polled by readers.
    pub(crate) writer: Line<WriterLine>,
    /// Readers announce they sleep here; the writer wakes them.
    pub(crate) data_wake: Line<WakeLine>,
    /// The writer announces it sleeps here (ring full); readers wake it.
    pub(crate) space_wake: Line<WakeLine>,
    /// One slot per attached reader.
    pub(crate) slots: [Line<ReaderSlot>; MAX_READERS],
    /// The writer's last two progress records (see `RingWriter::commit`),
    /// written in turn.
    pub(crate) progress: [Line<Progress>; 2],
}

/// Positions a progress record holds, at most.
pub(crate) const MAX_PROGRESS: usize = 32;

/// What a writer's committed frames stand for, in its caller's terms (for a
/// node: how far it had read each input): valid when `out_pos` is the
/// published position. Written by the writer only; read by its successor.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Progress {
    /// The end of the frames this record goes with; `u64::MAX` while the
    /// record is being written.
    pub(crate) out_pos: AtomicU64,
    /// Which commit wrote it: the newer of two valid records wins.
    pub(crate) generation: AtomicU64,
    /// How many positions it holds.
    pub(crate) len: AtomicU32,
    pub(crate) _pad: AtomicU32,
    pub(crate) positions: [AtomicU64; MAX_PROGRESS],
}

/// The writer's published state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WriterLine {
    /// Bytes ever published: every frame below it is complete and readable.
    /// Only grows. A position maps to offset `pos % capacity` in the data.
    pub(crate) write_pos: AtomicU64,
    /// [`WRITER_OPEN`], [`WRITER_ENDED`] or [`WRITER_ABANDONED`]. Changes
    /// once, after the last publish (back to open when a successor reopens
    /// an abandoned ring).
    pub(crate) state: AtomicU32,
    /// Non-zero when the writer may be restarted: readers whose writer dies
    /// wait for a successor instead of failing.
    pub(crate) restartable: AtomicU32,
    /// The writing process (the creator, or the successor that reopened
    /// the ring): pid, then start time. Readers watch its liveness; the
    /// pid is a successor's claim (compared and swapped).
    pub(crate) pid: AtomicU32,
    /// Non-zero when the writer keeps dead readers' slots for a successor
    /// to take over (`RingWriter::keep_dead_readers`).
    pub(crate) keeps_dead: AtomicU32,
    pub(crate) start_time: AtomicU64,
}

/// The writer is writing.
pub(crate) const WRITER_OPEN: u32 = 0;
/// The writer wrote an End frame and will write nothing more.
pub(crate) const WRITER_ENDED: u32 = 1;
/// The writer was dropped (or panicked) without writing an End frame.
pub(crate) const WRITER_ABANDONED: u32 = 2;

/// A futex word and the flag that says someone sleeps on it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WakeLine {
    /// Bumped by the waker before each wake-up call: the futex word.
    pub(crate) futex: AtomicU32,
    /// Non-zero when a sleeper may be waiting on `futex`; the waker swaps it
    /// to zero and makes the system call only then.
    pub(crate) sleepers: AtomicU32,
}

/// One reader's cursor and identity.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ReaderSlot {
    /// [`SLOT_FREE`], [`SLOT_CLAIMED`] or [`SLOT_ACTIVE`].
    pub(crate) state: AtomicU32,
    /// Pid of the reader's process.
    pub(crate) pid: AtomicU32,
    /// Start time of the reader's process, as for `creator_start`.
    pub(crate) start_time: AtomicU64,
    /// Bytes this reader has released: the writer may overwrite positions
    /// below `cursor + capacity`. Only grows while the slot is active.
    pub(crate) cursor: AtomicU64,
}

/// Nobody holds the slot.
pub(crate) const SLOT_FREE: u32 = 0;
/// A reader is attaching: the writer ignores the slot.
pub(crate) const SLOT_CLAIMED: u32 = 1;
/// The writer waits for this slot's cursor.
pub(crate) const SLOT_ACTIVE: u32 = 2;

/// The header of each frame in the data region.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameHeader {
    /// Payload length in bytes (the frame takes `frame_size(len)`).
    pub(crate) len: u32,
    /// The frame kind's code (see `FrameKind`).
    pub(crate) kind: u32,
    /// The sequence id the writer gave the frame.
    pub(crate) seq: u64,
}

#[cfg(loom)]
impl Control {
    /// A zeroed control block, for the model tests.
    pub(crate) fn new_for_model() -> Self {
        fn wake() -> Line<WakeLine> {
            Line(WakeLine {
                futex: AtomicU32::new(0),
                sleepers: AtomicU32::new(0),
            })
        }
        Control {
            writer: Line(WriterLine {
                write_pos: AtomicU64::new(0),
                state: AtomicU32::new(WRITER_OPEN),
                restartable: AtomicU32::new(0),
                pid: AtomicU32::new(0),
                keeps_dead: AtomicU32::new(0),
                start_time: AtomicU64::new(0),
            }),
            data_wake: wake(),
            space_wake: wake(),
            slots: std::array::from_fn(|_| {
                Line(ReaderSlot {
                    state: AtomicU32::new(SLOT_FREE),
                    pid: AtomicU32::new(0),
                    start_time: AtomicU64::new(0),
                    cursor: AtomicU64::new(0),
                })
            }),
            progress: std::array::from_fn(|_| {
                Line(Progress {
                    out_pos: AtomicU64::new(0),
                    generation: AtomicU64::new(0),
                    len: AtomicU32::new(0),
                    _pad: AtomicU32::new(0),
                    positions: std::array::from_fn(|_| AtomicU64::new(0)),
                })
            }),
        }
    }
}
