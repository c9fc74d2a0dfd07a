//! Creating and mapping a ring's segment file: the header once, the data
//! region twice back to back (see `layout`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;

use super::error::{AttachError, CreateError};
use super::layout::{prefix, Control, SegmentHeader, LAYOUT_VERSION, MAGIC, MAX_READERS};
use crate::process::ProcessStamp;
use crate::sync::Ordering::*;

/// Smallest data region.
pub(crate) const MIN_CAPACITY: usize = 4096;
/// Largest data region (frame lengths are 32-bit).
pub(crate) const MAX_CAPACITY: usize = 1 << 31;

/// A mapped ring segment: the shared memory behind a [`RingWriter`] or a
/// [`RingReader`].
///
/// [`RingWriter`]: super::RingWriter
/// [`RingReader`]: super::RingReader
#[derive(Debug)]
pub(crate) struct ShmRing {
    header: NonNull<SegmentHeader>,
    header_len: usize,
    /// Start of the doubly mapped data region (`2 * capacity` bytes).
    data: NonNull<u8>,
    capacity: usize,
    /// The writer's exclusive lock on the segment file (`flock`), held as
    /// long as this mapping: the kernel lets it go when the writer's
    /// process dies, so a successor can take it, and only one can.
    writer_lock: Option<File>,
}

// SAFETY: the mappings are plain shared memory, valid in every thread of the
// process; all shared state in them is atomics, and the data bytes are
// accessed only as the index protocol allows, by whoever owns the ShmRing.
unsafe impl Send for ShmRing {}

/// The system's page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// The header's size in the file: whole pages.
pub(crate) fn header_len() -> usize {
    std::mem::size_of::<SegmentHeader>().next_multiple_of(page_size())
}

/// The data capacity used for a request of `requested` bytes.
pub(crate) fn capacity_for(requested: usize) -> Result<usize, CreateError> {
    if requested > MAX_CAPACITY {
        return Err(CreateError::Capacity {
            requested,
            max: MAX_CAPACITY,
        });
    }
    Ok(requested
        .max(MIN_CAPACITY)
        .max(page_size())
        .next_power_of_two())
}

/// Takes the exclusive lock of a segment file, without waiting.
fn lock(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl ShmRing {
    /// Creates the segment file (mode 0600; it must not exist) and maps it,
    /// stamped as `creator`'s: it counts as stale once that process is gone
    /// ([`remove_stale_segments`](super::remove_stale_segments)).
    pub(crate) fn create_as(
        path: &Path,
        requested: usize,
        creator: ProcessStamp,
    ) -> Result<ShmRing, CreateError> {
        let capacity = capacity_for(requested)?;
        let header_len = header_len();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| CreateError::Io {
                path: path.to_owned(),
                source,
            })?;
        let io = |source| CreateError::Io {
            path: path.to_owned(),
            source,
        };
        let result = (|| {
            file.set_len((header_len + capacity) as u64).map_err(io)?;
            let mut ring = Self::map(&file, header_len, capacity, true).map_err(io)?;
            // A new file: nobody else holds its lock. (The clone shares the
            // open file, and so the lock.)
            lock(&file).map_err(io)?;
            ring.writer_lock = Some(file.try_clone().map_err(io)?);
            let me = creator;
            let h = ring.header.as_ptr();
            // SAFETY: `h` points to our fresh, zeroed, writable mapping of at
            // least a SegmentHeader; nobody else uses these fields before the
            // magic is stored below, and no reference to them exists yet.
            unsafe {
                (&raw mut (*h).version).write(LAYOUT_VERSION);
                (&raw mut (*h).header_len).write(header_len as u32);
                (&raw mut (*h).creator_pid).write(me.pid);
                (&raw mut (*h).creator_start).write(me.start_time);
                (&raw mut (*h).capacity).write(capacity as u64);
                (&raw mut (*h).max_readers).write(MAX_READERS as u32);
            }
            // The writer is this process, whoever owns the segment.
            let writer = ProcessStamp::current();
            let line = &ring.control().writer;
            line.pid.store(writer.pid, Relaxed);
            line.start_time.store(writer.start_time, Relaxed);
            // SYNC: Release pairs with the Acquire load of magic in `open`: a
            // reader that sees the magic sees the fields written above.
            ring.header().magic.store(MAGIC, Release);
            Ok(ring)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Maps an existing segment, checking its identity, its data read-only.
    pub(crate) fn open(path: &Path) -> Result<ShmRing, AttachError> {
        Self::open_as(path, false)
    }

    /// Maps an existing segment with its data writable: for the successor
    /// of a writer whose process died (`RingWriter::reopen`).
    pub(crate) fn open_writable(path: &Path) -> Result<ShmRing, AttachError> {
        Self::open_as(path, true)
    }

    fn open_as(path: &Path, writable_data: bool) -> Result<ShmRing, AttachError> {
        let io = |source| AttachError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = [0u8; prefix::LEN];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|_| AttachError::NotReady)?;
        let id = Prefix::parse(&bytes);
        if id.magic == 0 {
            return Err(AttachError::NotReady);
        }
        if id.magic != MAGIC {
            return Err(AttachError::BadMagic { found: id.magic });
        }
        if id.version != LAYOUT_VERSION {
            return Err(AttachError::Version {
                found: id.version,
                expected: LAYOUT_VERSION,
            });
        }
        let header_len = id.header_len as usize;
        let capacity = usize::try_from(id.capacity).unwrap_or(usize::MAX);
        let len = file.metadata().map_err(io)?.len();
        if header_len != self::header_len()
            || !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || len != (header_len + capacity) as u64
        {
            return Err(AttachError::Corrupt {
                what: "segment size",
            });
        }
        let mut ring = Self::map(&file, header_len, capacity, writable_data).map_err(io)?;
        if writable_data {
            // A successor's: only once the writer's process let it go.
            match lock(&file) {
                Ok(()) => ring.writer_lock = Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(AttachError::WriterActive)
                }
                Err(e) => return Err(io(e)),
            }
        }
        // SYNC: Acquire pairs with the Release store of magic in `create`.
        if ring.header().magic.load(Acquire) != MAGIC
            || ring.header().max_readers as usize != MAX_READERS
        {
            return Err(AttachError::Corrupt { what: "header" });
        }
        Ok(ring)
    }

    /// Maps the header, then the data region twice into one reservation.
    fn map(
        file: &File,
        header_len: usize,
        capacity: usize,
        writable_data: bool,
    ) -> std::io::Result<ShmRing> {
        let fd = file.as_raw_fd();
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh shared mapping of the file's first `header_len`
        // bytes, which exist (the size was checked or set); no Rust object
        // lives at the address the kernel picks.
        let header = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                header_len,
                rw,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if header == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: reserves 2 * capacity bytes of address space, no access,
        // not backed; the kernel picks an address no Rust object uses.
        let reserve = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * capacity,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if reserve == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            // SAFETY: unmaps exactly the header mapping made above.
            unsafe { libc::munmap(header, header_len) };
            return Err(err);
        }
        let prot = if writable_data { rw } else { libc::PROT_READ };
        for half in 0..2 {
            // Both halves are fully backed: `header_len` is page-aligned and
            // the file holds `header_len + capacity` bytes.
            // SAFETY: MAP_FIXED replaces part of our own reservation (no Rust
            // object lives there) with the file's data region.
            let got = unsafe {
                libc::mmap(
                    reserve.cast::<u8>().add(half * capacity).cast(),
                    capacity,
                    prot,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    header_len as libc::off_t,
                )
            };
            if got == libc::MAP_FAILED {
                let err = std::io::Error::last_os_error();
                // SAFETY: unmaps exactly the two mappings made above.
                unsafe {
                    libc::munmap(reserve, 2 * capacity);
                    libc::munmap(header, header_len);
                }
                return Err(err);
            }
        }
        Ok(ShmRing {
            header: NonNull::new(header.cast()).expect("mmap returned null"),
            header_len,
            data: NonNull::new(reserve.cast()).expect("mmap returned null"),
            capacity,
            writer_lock: None,
        })
    }

    /// The segment header.
    #[inline]
    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the header mapping lives as long as `self`, is aligned (page
        // aligned) and large enough; every field another process may change
        // is atomic, the others are fixed once the magic is stored.
        unsafe { self.header.as_ref() }
    }

    /// The shared indices.
    #[inline]
    pub(crate) fn control(&self) -> &Control {
        &self.header().control
    }

    /// Capacity of the data region in bytes.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The address of ring position `pos`: valid for `2 * capacity - (pos %
    /// capacity)` bytes, so for any frame that starts there.
    #[inline]
    pub(crate) fn at(&self, pos: u64) -> *mut u8 {
        let offset = (pos as usize) & (self.capacity - 1);
        // SAFETY: `offset < capacity`, inside the `2 * capacity` mapping.
        unsafe { self.data.as_ptr().add(offset) }
    }
}

impl Drop for ShmRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mappings made in `map`; views into them
        // borrow `self` (directly or through the writer or reader), so none
        // outlives this.
        unsafe {
            libc::munmap(self.data.as_ptr().cast(), 2 * self.capacity);
            libc::munmap(self.header.as_ptr().cast(), self.header_len);
        }
    }
}

/// The identity prefix of a segment, read from the file's first bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefix {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) header_len: u32,
    pub(crate) creator: ProcessStamp,
    pub(crate) capacity: u64,
}

impl Prefix {
    pub(crate) fn parse(b: &[u8; prefix::LEN]) -> Prefix {
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        Prefix {
            magic: u64_at(prefix::MAGIC),
            version: u32_at(prefix::VERSION),
            header_len: u32_at(prefix::HEADER_LEN),
            creator: ProcessStamp {
                pid: u32_at(prefix::CREATOR_PID),
                start_time: u64_at(prefix::CREATOR_START),
            },
            capacity: u64_at(prefix::CAPACITY),
        }
    }

    /// Reads the prefix of the segment file at `path`.
    pub(crate) fn read(path: &Path) -> std::io::Result<Prefix> {
        let mut bytes = [0u8; prefix::LEN];
        File::open(path)?.read_exact_at(&mut bytes, 0)?;
        Ok(Prefix::parse(&bytes))
    }
}
