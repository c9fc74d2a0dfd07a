//! The errors of ring operations, one enum per operation.

use std::path::PathBuf;

/// Why a [`RingName`](super::RingName) could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// A run id is 1 to 64 ASCII letters, digits or `_`.
    #[error("run id {0:?} is not 1 to 64 ASCII letters, digits or '_'")]
    RunId(String),
    /// The encoded segment file name would exceed the file system's limit.
    #[error("node name {0:?} makes a segment file name longer than 255 bytes")]
    TooLong(String),
}

/// Why [`RingWriter::create`](super::RingWriter::create) failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The requested capacity exceeds the largest ring.
    #[error("ring capacity {requested} exceeds the maximum {max}")]
    Capacity {
        /// What was asked for.
        requested: usize,
        /// The largest capacity.
        max: usize,
    },
    /// Creating or mapping the segment file failed; `AlreadyExists` means a
    /// segment of that name is there (a live writer, or a stale one: see
    /// [`remove_stale_segments`](super::remove_stale_segments)).
    #[error("cannot create ring segment {path:?}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why [`RingReader::attach`](super::RingReader::attach) failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Opening or mapping the segment file failed (`NotFound`: no writer has
    /// created it yet, or it was removed).
    #[error("cannot open ring segment {path:?}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its writer has not finished setting it up: retry.
    #[error("ring segment is still being created")]
    NotReady,
    /// The file is not a Clusterduck ring segment.
    #[error("not a ring segment (magic {found:#018x})")]
    BadMagic {
        /// The first eight bytes of the file.
        found: u64,
    },
    /// The segment was made by a binary with another layout version.
    #[error("ring segment layout version {found}, this binary speaks {expected}")]
    Version {
        /// The segment's version.
        found: u32,
        /// This binary's version.
        expected: u32,
    },
    /// The header is inconsistent.
    #[error("corrupt ring segment: bad {what}")]
    Corrupt {
        /// Which part is wrong.
        what: &'static str,
    },
    /// Every reader slot is taken.
    #[error("ring already has its maximum of {max} readers")]
    Full {
        /// The number of reader slots.
        max: usize,
    },
    /// Another process writes the ring (it holds the writer's lock).
    #[error("another process writes this ring")]
    WriterActive,
    /// The writer does not keep dead readers' slots
    /// (`RingWriter::keep_dead_readers`): one cannot be taken over.
    #[error("the ring's writer does not keep dead readers' slots")]
    NotKept,
    /// No reader of that process holds a slot to take over (it never
    /// attached, it detached, or its slot was reclaimed).
    #[error("no reader of process {pid} holds a slot of this ring")]
    NoSuchReader {
        /// The process asked for.
        pid: u32,
    },
    /// The reader to take over is alive: its slot is still its own.
    #[error("the reader of process {pid} is alive: its slot cannot be taken over")]
    ReaderAlive {
        /// Its process.
        pid: u32,
    },
}

/// Why a ring could not be reopened by a successor of its writer.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    /// The segment (or its arena) could not be mapped.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// Its writer is alive: the ring is still its own.
    #[error("the writer of this ring (process {pid}) is alive")]
    WriterAlive {
        /// The writer's process.
        pid: u32,
    },
    /// The stream ended (its End frame is written): nothing more may be
    /// written, and nothing is missing.
    #[error("the ring's stream has ended")]
    Ended,
    /// The values published after the last progress record no longer lie
    /// whole in the ring (see `RingWriter::progress_and_after`): its
    /// writer recorded its progress too seldom.
    #[error("the values after the last progress record (position {from}) were overwritten: {published} bytes were published since")]
    RecordTooOld {
        /// Where the last record stands.
        from: u64,
        /// Bytes published after it.
        published: u64,
    },
    /// A frame between the slowest reader and the end is not one this
    /// writer could have written.
    #[error("corrupt ring: {what} at position {pos}")]
    Corrupt {
        /// What is wrong.
        what: &'static str,
        /// Where.
        pos: u64,
    },
}

/// Why a write failed. The ring is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The frame's payload is larger than the ring can hold.
    #[error("frame of {len} bytes exceeds the ring's maximum payload of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload.
        max: usize,
    },
    /// The value is larger than the writer's arena for large values.
    #[error("a value of {len} bytes is larger than the node's space for large values, {max} bytes (raise the launch's large_bytes)")]
    LargerThanArena {
        /// The value's length.
        len: usize,
        /// The arena's size.
        max: usize,
    },
    /// rkyv failed to serialise the value.
    #[error("cannot serialise the frame's value: {0}")]
    Serialize(#[source] rkyv::rancor::Error),
}

/// Why [`RingWriter::wait_for_readers`](super::RingWriter::wait_for_readers)
/// gave up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("only {attached} of {wanted} readers attached in time")]
pub struct WaitReadersError {
    /// Readers attached at the deadline.
    pub attached: usize,
    /// Readers waited for.
    pub wanted: usize,
}

/// Why a read failed. After any of these the reader returns the same error
/// forever.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The stream ended cleanly: the End frame was read and released. Not a
    /// failure, but nothing more will come.
    #[error("end of stream")]
    Ended,
    /// The writer's process died without ending the stream. Every frame it
    /// published before was delivered.
    #[error("the ring's writer (pid {pid}) died before ending the stream")]
    WriterDied {
        /// The writer's pid.
        pid: u32,
    },
    /// The writer was dropped (for example in a panic) without ending the
    /// stream, while its process lives on.
    #[error("the ring's writer was dropped before ending the stream")]
    WriterDropped,
    /// A frame in the ring is malformed.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A malformed frame, found while iterating a batch.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame's kind is not one this binary knows.
    #[error("frame at position {pos} has unknown kind {code}")]
    UnknownKind {
        /// The kind code found.
        code: u32,
        /// The frame's ring position.
        pos: u64,
    },
    /// The frame's length runs past the published data.
    #[error("frame at position {pos} claims {len} bytes, past the published data")]
    Length {
        /// The claimed payload length.
        len: u32,
        /// The frame's ring position.
        pos: u64,
    },
    /// The frame refers to a large value that cannot be read from the
    /// ring's arena (it cannot be mapped, or the value does not fit it).
    #[error("frame at position {pos} refers to a large value of {len} bytes that its arena does not hold")]
    LargeValue {
        /// The value's claimed length.
        len: u64,
        /// The frame's ring position.
        pos: u64,
    },
}

/// Why [`Frame::access`](super::Frame::access) refused the payload.
#[derive(Debug, thiserror::Error)]
#[error("frame payload is not a valid archive of the requested type: {0}")]
pub struct AccessError(#[source] pub rkyv::rancor::Error);
