//! Large values forwarded by reference: a node that passes on a large value
//! it read (`Emitter::forward`) can write, instead of a copy, a frame that
//! refers to the value where it lies, in its upstream's arena. Its readers
//! map that arena too and read the value there, in place, as any frame.
//!
//! The frame (kind code [`FORWARD_CODE`]) holds the value's place in the
//! arena (a [`LargeRef`]) and the arena's path. Its bytes stay valid for as
//! long as the forwarding node holds the frame it read them from (see
//! [`RingReader::hold_at`](super::RingReader::hold_at)): it must, until its
//! own readers have released the frame that refers to them. The arena must
//! be on the readers' host: a TCP link does not carry such frames.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::arena::LargeRef;
use super::name::{SEGMENT_PREFIX, SHM_DIR};
use super::segment::ShmRing;

/// The frame kind code of a value forwarded by reference; its payload is a
/// [`LargeRef`] then the arena's path. Internal to the transport: readers
/// present it as Data.
pub(crate) const FORWARD_CODE: u32 = 4;

/// How many other rings' arenas one reader maps at most (a reader of a node
/// that forwards values of each of its upstreams maps one per upstream): a
/// node forwards by reference from so many of its inputs at most.
pub const FORWARDED_ARENAS: usize = 32;

const FOREIGN_SLOTS: usize = FORWARDED_ARENAS;

/// Where a ring's arena of large values lies in this process's memory, to
/// tell whether bytes a node holds are one of that ring's large values.
/// Got from [`RingReader::arena_span`](super::RingReader::arena_span).
#[derive(Clone, Debug)]
pub struct ArenaSpan {
    /// The addresses of the arena's data, mapped twice: `[start, end)`.
    start: usize,
    end: usize,
    capacity: u64,
    /// The shortest value the ring puts in its arena.
    smallest: usize,
    path: Arc<Path>,
}

impl ArenaSpan {
    pub(crate) fn new(ring: &ShmRing, path: &Path, smallest: usize) -> ArenaSpan {
        let start = ring.at(0) as usize;
        let capacity = ring.capacity();
        ArenaSpan {
            start,
            end: start + 2 * capacity,
            capacity: capacity as u64,
            smallest,
            path: path.into(),
        }
    }

    /// The shortest value the ring puts in its arena: shorter bytes are
    /// never one of its large values.
    pub fn smallest(&self) -> usize {
        self.smallest
    }

    /// The large value `bytes` are, if they lie in this arena.
    #[inline]
    pub fn locate(&self, bytes: &[u8]) -> Option<ArenaValue> {
        let at = bytes.as_ptr() as usize;
        if bytes.len() < self.smallest
            || at < self.start
            || at + bytes.len() > self.end
            || bytes.len() as u64 > self.capacity
        {
            return None;
        }
        Some(ArenaValue {
            at: LargeRef {
                pos: ((at - self.start) as u64) % self.capacity,
                len: bytes.len() as u64,
            },
            path: self.path.clone(),
        })
    }
}

/// A large value where it lies in a ring's arena: what a forwarding frame
/// refers to ([`RingWriter::write_forward`](super::RingWriter::write_forward)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaValue {
    pub(crate) at: LargeRef,
    pub(crate) path: Arc<Path>,
}

impl ArenaValue {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.at.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.at.len == 0
    }

    /// The payload of the frame that refers to it.
    pub(crate) fn to_payload(&self) -> Vec<u8> {
        let mut payload = self.at.to_bytes().to_vec();
        payload.extend_from_slice(self.path.as_os_str().as_bytes());
        payload
    }
}

/// A forwarding frame's payload read back: where the value lies and in
/// which arena; `None` unless the path names a segment of ours in the
/// shared-memory directory.
pub(crate) fn from_payload(payload: &[u8]) -> Option<(LargeRef, &Path)> {
    let at = LargeRef::from_bytes(payload.get(..16)?)?;
    let path = Path::new(OsStr::from_bytes(&payload[16..]));
    let file = path.file_name()?.to_str()?;
    let ours = path.parent() == Some(Path::new(SHM_DIR))
        && file.starts_with(SEGMENT_PREFIX)
        && file.ends_with(".large");
    ours.then_some((at, path))
}

/// The other rings' arenas a reader mapped, for the forwarding frames it
/// read: each mapped at its first such frame and kept while the reader
/// lives (a frame's bytes borrow the reader).
#[derive(Debug, Default)]
pub(crate) struct ForeignArenas {
    slots: [OnceCell<(PathBuf, Result<ShmRing, String>)>; FOREIGN_SLOTS],
}

impl ForeignArenas {
    /// The bytes `at` refers to in the arena at `path`.
    pub(crate) fn bytes(&self, path: &Path, at: LargeRef) -> Result<&[u8], String> {
        for slot in &self.slots {
            let (mapped, ring) = slot.get_or_init(|| {
                let ring = ShmRing::open(path).map_err(|e| e.to_string());
                (path.to_owned(), ring)
            });
            if mapped != path {
                continue;
            }
            let ring = ring
                .as_ref()
                .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
            // The forwarding node holds the frame it read these bytes from
            // until every reader of its own ring, this one included, has
            // released the frame that refers to them (the caller holds that
            // frame), for as long as it runs (see `write_forward`).
            return super::arena::value_in(ring, at)
                .map_err(|e| format!("{e}: {}", path.display()));
        }
        Err(format!(
            "more than {FOREIGN_SLOTS} arenas forwarded from; {} is one too many",
            path.display()
        ))
    }
}
