//! The writing end of a ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;
use rkyv::Serialize;

use super::arena::{Arena as LargeArena, LargeRef, LARGE_CODE};
use super::error::{AttachError, CreateError, ReopenError, WaitReadersError, WriteError};
use super::forward::{ArenaValue, FORWARD_CODE};
use super::frame::{FrameBuf, FrameKind, FrameSerializer};
use super::index::WriterIndex;
use super::layout::{
    align_frame, frame_size, FrameHeader, FRAME_ALIGN, FRAME_HEADER_LEN, MAX_PROGRESS, SLOT_ACTIVE,
    WRITER_ABANDONED, WRITER_ENDED, WRITER_OPEN,
};
use super::name::RingName;
use super::segment::ShmRing;
use crate::process::ProcessStamp;
use crate::sync::fence;
use crate::sync::Ordering::*;
use crate::waits::Waits;

/// Free bytes below which an in-place write looks at the readers' cursors
/// again.
const REFRESH_BELOW: u64 = 4096;

/// A reader whose process died while the writer waited for it; its slot was
/// reclaimed and the writer went on without it (or, with
/// [`RingWriter::keep_dead_readers`], kept for a new process to take over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadReader {
    /// The reader's slot.
    pub slot: usize,
    /// The dead process.
    pub process: ProcessStamp,
    /// Its cursor: it had released the frames below this position.
    pub cursor: u64,
}

/// The one writer of a ring: it owns the segment (and removes it when
/// dropped), writes frames in place, and waits for the slowest reader when
/// the ring is full (back-pressure: nothing is ever dropped).
///
/// Frames become visible to readers as they are written. A reader that went
/// to sleep in the instant of a write may be woken only at the writer's next
/// write (which sees it asleep) or fenced check (at most
/// [`CHECK_EVERY`](Self::CHECK_EVERY) frames later, or at
/// [`flush`](Self::flush)), and otherwise finds the frame when its sleep
/// slice ends (20 ms): call `flush` before the writer's thread stops writing
/// for a while, e.g. before it blocks on its own input. A writer that cannot
/// know when it pauses (it runs someone else's code between writes) and
/// cannot afford that rare delay may [`wake_every`](Self::wake_every)`(1)`,
/// at the price of a fence per frame.
pub struct RingWriter {
    ring: ShmRing,
    name: RingName,
    index: WriterIndex,
    arena: Arena,
    scratch: AlignedVec,
    dead: Vec<DeadReader>,
    ended: bool,
    /// Bytes of the arena for large values (0: none; values must fit a
    /// frame).
    large_bytes: usize,
    /// The arena, made with the setting.
    large: Option<LargeArena>,
    /// Leave the arena's name when dropped (`keep_arena_name`), which is
    /// then stamped as this process's.
    keep_arena_name: bool,
    arena_owner: Option<ProcessStamp>,
    /// Time writes waited for room.
    blocked: Arc<Waits>,
    /// The transaction in progress (`begin`): whether it had to be
    /// published in parts.
    tx: Option<bool>,
    /// The generation of the next progress record, and which of the two
    /// it goes to.
    next_record: (u64, usize),
    /// With `keep_dead_readers`: the dead readers whose slots are kept
    /// (and hold the writer back) until a new process takes them over.
    kept_dead: Option<Vec<DeadReader>>,
    /// The last value written went to the arena: the next is serialised
    /// there first (a stream of large values is copied once, not twice).
    last_large: bool,
    /// Values that did not fit the free space and went through `scratch`.
    pub(crate) spills: usize,
}

impl std::fmt::Debug for RingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("name", &self.name)
            .field("ring", &self.ring)
            .field("index", &self.index)
            .field("dead", &self.dead)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl RingWriter {
    /// Frames between two fenced wake-up checks, at most.
    pub const CHECK_EVERY: u32 = super::index::CHECK_EVERY;

    /// Positions a progress record holds, at most (see
    /// [`commit`](Self::commit)).
    pub const MAX_PROGRESS: usize = MAX_PROGRESS;

    /// Creates the ring's segment with a data region of at least
    /// `capacity_bytes` (rounded up to a power of two, at least a page).
    ///
    /// Readers that attach see the frames written after they attach: use
    /// [`wait_for_readers`](Self::wait_for_readers) before the first write.
    pub fn create(name: &RingName, capacity_bytes: usize) -> Result<RingWriter, CreateError> {
        Self::create_owned(name, capacity_bytes, ProcessStamp::current())
    }

    /// [`create`](Self::create), the segment stamped as `owner`'s: it
    /// counts as stale only once that process is gone
    /// ([`remove_stale_segments`](super::remove_stale_segments)). A ring
    /// whose writer may die and be [reopened](Self::reopen) is owned by a
    /// process that outlives its writers (the run's agent or master), so
    /// that another run's clean-up leaves it while its run goes on.
    pub fn create_owned(
        name: &RingName,
        capacity_bytes: usize,
        owner: ProcessStamp,
    ) -> Result<RingWriter, CreateError> {
        let ring = ShmRing::create_as(name.path(), capacity_bytes, owner)?;
        let index = WriterIndex::new(ring.capacity() as u64);
        Ok(Self::with(ring, name, index, None, (1, 0)))
    }

    /// The writer of `ring` at `index`, with its arena `large` (if any),
    /// whose next progress record is `next_record`.
    fn with(
        ring: ShmRing,
        name: &RingName,
        index: WriterIndex,
        large: Option<LargeArena>,
        next_record: (u64, usize),
    ) -> RingWriter {
        RingWriter {
            ring,
            name: name.clone(),
            index,
            arena: Arena::new(),
            scratch: AlignedVec::new(),
            dead: Vec::new(),
            ended: false,
            large_bytes: large.as_ref().map_or(0, |a| a.capacity() as usize),
            large,
            keep_arena_name: false,
            arena_owner: None,
            blocked: Arc::default(),
            kept_dead: None,
            tx: None,
            next_record,
            last_large: false,
            spills: 0,
        }
    }

    /// Reopens the ring `name` whose writer's process died, as its
    /// successor (a restarted node): writing goes on after the last frame
    /// the dead writer published (a frame it had begun and not published is
    /// gone: it was never visible), its readers see the next frames as if
    /// nothing happened, and the values its frames still hold in the arena
    /// stay until they are released. The ring keeps its owner and its
    /// names (the arena's is kept for its owner to remove), restarts stay
    /// expected and dead readers kept as the dead writer set them;
    /// `wake_every` is set again by the caller. A ring whose writer is
    /// alive (it holds the writer's lock), or whose stream ended, is
    /// refused ([`ReopenError::Ended`]: nothing is missing); a ring whose
    /// writer was dropped without expecting restarts is gone (its name
    /// removed).
    pub fn reopen(name: &RingName) -> Result<RingWriter, ReopenError> {
        // The writer's lock: the kernel let it go when its process died,
        // and only one successor gets it.
        let ring = match ShmRing::open_writable(name.path()) {
            Err(AttachError::WriterActive) => {
                let pid = ShmRing::open(name.path())
                    .map(|r| r.control().writer.pid.load(Relaxed))
                    .unwrap_or(0);
                return Err(ReopenError::WriterAlive { pid });
            }
            ring => ring?,
        };
        let ctl = ring.control();
        let line = &ctl.writer;
        // SYNC: Acquire pairs with the Release store in `WriterIndex::close`
        // (the dead writer's last stores are seen).
        if line.state.load(Acquire) == WRITER_ENDED {
            return Err(ReopenError::Ended);
        }
        // Everything is checked before the ring is taken: a successor that
        // fails leaves it as it was.
        let capacity = ring.capacity() as u64;
        // SYNC: Acquire pairs with the Release store in `WriterIndex::show`.
        let mut index = WriterIndex::resume(capacity, line.write_pos.load(Acquire));
        let slowest = slowest_cursor(ctl, index.written());
        let held = large_values_held(&ring, slowest, index.written())?;
        let arena_path = name.arena_path();
        let large = match LargeArena::reopen(&arena_path, &held) {
            Ok(arena) => Some(arena),
            Err(AttachError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && held.is_empty() =>
            {
                None
            }
            Err(e) => return Err(e.into()),
        };
        index.refresh(ctl);
        // Taken: readers follow this process from their next look.
        let me = ProcessStamp::current();
        line.pid.store(me.pid, Relaxed);
        // SYNC: Release pairs with the Acquire load in the readers'
        // `current_writer`.
        line.start_time.store(me.start_time, Release);
        // What the dead writer set on itself (restarts expected, dead
        // readers kept) stays: its readers, and a reader being restarted
        // too, must not see the ring as not restartable in between.
        // A stream its writer dropped unended (it died between closing and
        // removing its name) is open again.
        // SYNC: Release pairs with the readers' Acquire loads of the state.
        line.state.store(WRITER_OPEN, Release);
        // The next record after the newest, in the other slot than the
        // valid one (which stays until the next commit).
        let newest = (0..2)
            .max_by_key(|i| ctl.progress[*i].generation.load(Relaxed))
            .unwrap_or(0);
        let next_record = (
            ctl.progress[newest].generation.load(Relaxed) + 1,
            match valid_record(ctl, index.written()) {
                Some(valid) => 1 - valid,
                None => 0,
            },
        );
        let mut writer = Self::with(ring, name, index, large, next_record);
        // The arena's name stays: values forwarded from it may be read after
        // this writer ends; its owner removes it with the run's segments.
        writer.keep_arena_name = writer.large.is_some();
        Ok(writer)
    }

    /// Starts a transaction: the frames written from now on are published
    /// together, at [`commit`](Self::commit), with a progress record (what
    /// they stand for). A successor that [reopens](Self::reopen) the ring
    /// finds the progress of the last transaction whose frames readers
    /// saw, and no frame of a transaction that was not committed: a node
    /// that records how far it had read its inputs resumes there, and
    /// writes nothing twice. A transaction larger than the ring's free
    /// room is published in parts as it goes (`commit` says so).
    pub fn begin(&mut self) {
        self.tx = Some(false);
        self.index.defer(true);
    }

    /// Commits the transaction begun (if any): stores `progress` (at most
    /// [`MAX_PROGRESS`](Self::MAX_PROGRESS) positions, the caller's own), then publishes the
    /// frames written since `begin`. Returns whether they were published
    /// all at once (false: the transaction outgrew the ring and was
    /// published in parts, so a successor may repeat its first part).
    pub fn commit(&mut self, progress: &[u64]) -> bool {
        assert!(
            progress.len() <= MAX_PROGRESS,
            "at most {MAX_PROGRESS} positions"
        );
        let whole = !self.tx.take().unwrap_or(false);
        let ctl = self.ring.control();
        let (generation, slot) = self.next_record;
        let record = &ctl.progress[slot];
        // Invalid while written: a successor finding it so takes the other.
        record.out_pos.store(u64::MAX, Relaxed);
        // SYNC: the invalidation is stored before the record's fields (a
        // process that dies half-way leaves an invalid record).
        fence(Release);
        for (at, p) in record.positions.iter().zip(progress) {
            at.store(*p, Relaxed);
        }
        record.len.store(progress.len() as u32, Relaxed);
        record.generation.store(generation, Relaxed);
        // SYNC: Release: the fields above are stored before the record is
        // valid; and it is valid before its frames are published (below).
        record.out_pos.store(self.index.written(), Release);
        self.next_record = (generation + 1, 1 - slot);
        self.index.defer(false);
        self.index.commit(ctl);
        whole
    }

    /// The progress of the last committed transaction whose frames are
    /// published (a successor's look, after [`reopen`](Self::reopen));
    /// `None` if none was. Frames published after it belong to a
    /// transaction published in parts, or written outside transactions: a
    /// successor that resumes from this progress writes them again.
    pub fn progress(&self) -> Option<Vec<u64>> {
        let ctl = self.ring.control();
        let record = &ctl.progress[valid_record(ctl, self.index.visible())?];
        let len = (record.len.load(Relaxed) as usize).min(MAX_PROGRESS);
        Some(
            record.positions[..len]
                .iter()
                .map(|p| p.load(Relaxed))
                .collect(),
        )
    }

    /// The last committed progress record, and the ids of the values
    /// published after it, in order (a successor's look, after
    /// [`reopen`](Self::reopen)). A writer that publishes every value as
    /// it goes and records its progress only now and then (outside
    /// transactions: [`commit`](Self::commit) without `begin`) finds
    /// exactly where it stood: the record, and what followed. Without a
    /// record, the ids from the ring's start. The values after the record
    /// must lie whole in the ring: record at least every
    /// [`capacity`](Self::capacity) / 4 bytes (else
    /// [`ReopenError::RecordTooOld`]).
    pub fn progress_and_after(&self) -> Result<(Option<Vec<u64>>, Vec<u64>), ReopenError> {
        let ctl = self.ring.control();
        let published = self.index.visible();
        let from = valid_record(ctl, published).map_or(0, |i| {
            // SYNC: Acquire pairs with the Release store in `commit`.
            ctl.progress[i].out_pos.load(Acquire)
        });
        // The dead writer may have written one value past what it
        // published, over the oldest bytes of the ring's length before it.
        if published - from > self.capacity() as u64 / 2 {
            return Err(ReopenError::RecordTooOld {
                from,
                published: published - from,
            });
        }
        let mut ids = Vec::new();
        // `from <= pos < published`, within half a ring of the end
        // published: intact.
        walk_frames(&self.ring, from, published, |_, header, _| {
            if header.kind != FrameKind::End.code() {
                ids.push(header.seq);
            }
            Ok(())
        })?;
        Ok((self.progress(), ids))
    }

    /// Says that the writer may be restarted (see [`reopen`](Self::reopen)):
    /// a reader whose writer's process dies then waits for a successor
    /// instead of failing with [`ReadError::WriterDied`]; whoever restarts
    /// the writer decides, and ends the readers' wait (a run that gives up
    /// ends its readers). The ring's name then outlives this writer, ended
    /// or not: its successor reopens it by name, and its owner removes it.
    pub fn expect_restarts(&mut self) {
        // SYNC: Release pairs with the Acquire load in the readers'
        // `writer_died`.
        self.ring.control().writer.restartable.store(1, Release);
    }

    /// The ring's name.
    pub fn name(&self) -> &RingName {
        &self.name
    }

    /// The data region's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The largest payload a frame can have.
    pub fn max_payload(&self) -> usize {
        self.ring.capacity() - FRAME_HEADER_LEN as usize
    }

    /// Lets values larger than a quarter of the ring go out of line, into
    /// an arena of `bytes` bytes: a segment beside the ring, made now
    /// (before readers attach, so that they map it as they attach; its
    /// pages take memory only once written). Without one (0, the default)
    /// a value must fit a frame. Readers read large values in place there,
    /// as any frame. The arena is bounded: a value that finds it full waits
    /// for the readers to release earlier ones; one larger than `bytes` is
    /// refused ([`WriteError::LargerThanArena`]). Once only.
    pub fn set_large_bytes(&mut self, bytes: usize) -> Result<(), CreateError> {
        assert!(self.large.is_none(), "the arena is made once");
        if bytes > 0 {
            let owner = self.arena_owner.unwrap_or_else(ProcessStamp::current);
            self.large = Some(LargeArena::create(&self.name.arena_path(), bytes, owner)?);
        }
        self.large_bytes = bytes;
        Ok(())
    }

    /// Leaves the arena's name in place when the writer is dropped, so that
    /// readers of values forwarded from it (`write_forward` on another
    /// ring) can still map it after this writer ended: the arena is
    /// stamped as `owner`'s, the process that runs the rings (it is not
    /// stale while that one lives), which removes it
    /// ([`remove_run_segments`](super::remove_run_segments)). Before
    /// [`set_large_bytes`](Self::set_large_bytes).
    pub fn keep_arena_name(&mut self, owner: ProcessStamp) {
        assert!(
            self.large.is_none(),
            "the arena's owner is set before it is made"
        );
        self.keep_arena_name = true;
        self.arena_owner = Some(owner);
    }

    /// The largest payload written in the ring itself; larger ones go to
    /// the arena, if there is one.
    pub fn max_inline(&self) -> usize {
        if self.large_bytes == 0 {
            self.max_payload()
        } else {
            super::layout::max_inline(self.ring.capacity())
        }
    }

    /// How many readers are attached now.
    pub fn readers(&self) -> usize {
        self.ring
            .control()
            .slots
            .iter()
            .filter(|s| s.state.load(Relaxed) == SLOT_ACTIVE)
            .count()
    }

    /// Waits until at least `n` readers are attached, or `timeout` passes.
    pub fn wait_for_readers(&self, n: usize, timeout: Duration) -> Result<(), WaitReadersError> {
        let deadline = Instant::now() + timeout;
        loop {
            let attached = self.readers();
            if attached >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(WaitReadersError {
                    attached,
                    wanted: n,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes a Data frame holding `bytes`, waiting for ring space if needed.
    #[inline]
    pub fn write_bytes(&mut self, seq: u64, bytes: &[u8]) -> Result<(), WriteError> {
        self.write_raw(FrameKind::Data, seq, bytes)
    }

    /// Serialises `value` with rkyv straight into the ring as a Data frame,
    /// waiting for ring space if needed. Readers get it with
    /// [`Frame::access`](super::Frame::access).
    ///
    /// The value is serialised in place into the free space the writer knows
    /// of; if it does not fit there (the ring is nearly full), it is
    /// serialised into a reusable scratch buffer and copied in once.
    pub fn write_value<T>(&mut self, seq: u64, value: &T) -> Result<(), WriteError>
    where
        T: for<'a> Serialize<FrameSerializer<'a>>,
    {
        if self.last_large {
            return self.write_value_out_of_line(seq, value);
        }
        let max = self.max_payload();
        // Look at the readers again only when the cached space runs low, as
        // that takes a fence and a scan of the reader slots: under back-
        // pressure the ring stays nearly full, and a looser threshold would
        // rescan at every write. A value larger than the space known goes
        // through the scratch buffer, and `write_raw` waits for its room.
        if self.index.free() < REFRESH_BELOW.min(self.ring.capacity() as u64 / 2) {
            self.index.refresh(self.ring.control());
        }
        let free = self.index.free().saturating_sub(FRAME_HEADER_LEN) as usize;
        let pos = self.index.written();
        let room = free.min(max).min(self.max_inline());
        // The `room` bytes after the header at `pos` lie below the writer's
        // limit, unpublished; `at` is valid for `2 * capacity - offset >=
        // capacity` bytes, and `room + header <= capacity`.
        // SAFETY: in bounds as above; no reader reads them before publishing.
        let ring = unsafe {
            std::slice::from_raw_parts_mut(self.ring.at(pos).add(FRAME_HEADER_LEN as usize), room)
        };
        let buf = FrameBuf::new(ring, &mut self.scratch);
        let buf = rkyv::api::high::to_bytes_in_with_alloc(value, buf, self.arena.acquire())
            .map_err(WriteError::Serialize)?;
        let (len, spilled) = buf.finish();
        if spilled {
            self.spills += 1;
            self.write_scratch(seq)
        } else {
            // The payload is in place: add the header and publish.
            self.seal_frame(FrameKind::Data.code(), seq, len);
            Ok(())
        }
    }

    /// Writes the value just serialised into the scratch buffer.
    fn write_scratch(&mut self, seq: u64) -> Result<(), WriteError> {
        let scratch = std::mem::take(&mut self.scratch);
        let result = self.write_raw(FrameKind::Data, seq, &scratch);
        self.scratch = scratch;
        result
    }

    /// [`write_value`](Self::write_value) after a large value: serialised in
    /// place into the arena's free space (through the scratch buffer only
    /// if it does not fit there), then referred to from the ring, or copied
    /// into the ring if it turns out small.
    #[cold]
    fn write_value_out_of_line<T>(&mut self, seq: u64, value: &T) -> Result<(), WriteError>
    where
        T: for<'a> Serialize<FrameSerializer<'a>>,
    {
        let Some(mut arena) = self.large.take() else {
            unreachable!("a large value went to the arena");
        };
        self.release_arena(&mut arena);
        let buf = FrameBuf::new(arena.free_space(), &mut self.scratch);
        let serialised = rkyv::api::high::to_bytes_in_with_alloc(value, buf, self.arena.acquire())
            .map(|buf| buf.finish());
        let result = match serialised {
            Err(e) => Err(WriteError::Serialize(e)),
            // Too large for the free space: the general way, which waits.
            Ok((_, true)) => {
                self.large = Some(arena);
                self.spills += 1;
                return self.write_scratch(seq);
            }
            Ok((len, false)) if len <= self.max_inline() => {
                // Small after all: into the ring, and small values are
                // serialised in the ring again.
                let bytes = arena.free_space()[..len].to_vec();
                self.last_large = false;
                self.large = Some(arena);
                return self.write_frame(FrameKind::Data.code(), seq, &bytes);
            }
            Ok((len, false)) if align_frame(len as u64) > self.large_bytes as u64 => {
                Err(WriteError::LargerThanArena {
                    len,
                    max: self.large_bytes,
                })
            }
            Ok((len, false)) => {
                let at = arena.take(len);
                let result = self.write_frame(LARGE_CODE, seq, &at.to_bytes());
                if result.is_ok() {
                    arena.hold(self.index.written());
                }
                result
            }
        };
        self.large = Some(arena);
        result
    }

    /// Frees the arena's values that every reader is done with.
    fn release_arena(&mut self, arena: &mut LargeArena) {
        arena.release(self.released());
    }

    /// Writes a frame that refers to `value`, a large value in another
    /// ring's arena, instead of a copy of it: readers read it there, in
    /// place (see `shm/forward.rs`). The caller keeps the value where it is
    /// (holds the frame it read it from) until every reader of this ring
    /// has [released](Self::released) the frame, and every reader of this
    /// ring is on the arena's host (a TCP link does not carry such frames).
    pub fn write_forward(&mut self, seq: u64, value: &ArenaValue) -> Result<(), WriteError> {
        self.write_frame(FORWARD_CODE, seq, &value.to_payload())
    }

    /// The position every reader has released the ring up to (the published
    /// position when there is no reader): frames that end at or below it
    /// are done with.
    pub fn released(&mut self) -> u64 {
        let capacity = self.ring.capacity() as u64;
        let free = self.index.refresh(self.ring.control());
        (self.index.written() + free).saturating_sub(capacity)
    }

    /// How long writes have waited for the readers to make room (in the
    /// ring, or in the arena): time the writer was held back by them.
    pub fn blocked(&self) -> Duration {
        self.blocked.total()
    }

    /// The same figure, readable from another thread while a write waits
    /// (a node's metrics).
    pub fn blocked_waits(&self) -> Arc<Waits> {
        self.blocked.clone()
    }

    /// The position after the last frame written.
    pub fn written(&self) -> u64 {
        self.index.written()
    }

    /// Writes the End frame and closes the stream: readers get it after every
    /// frame before it, then [`ReadError::Ended`](super::ReadError::Ended).
    pub fn finish(mut self, seq: u64) -> Result<(), WriteError> {
        // A transaction left open is published before the End.
        self.tx = None;
        self.index.defer(false);
        self.index.commit(self.ring.control());
        self.write_frame(FrameKind::End.code(), seq, &[])?;
        self.ended = true;
        self.index.close(self.ring.control(), WRITER_ENDED);
        Ok(())
    }

    /// Makes the fenced wake-up check at least every `frames` frames
    /// ([`CHECK_EVERY`](Self::CHECK_EVERY) by default). With 1, no reader
    /// ever sleeps on a written frame, whenever the writer pauses, at the
    /// price of a fence per frame (about 10 ns).
    pub fn wake_every(&mut self, frames: u32) {
        self.index.check_every(frames);
    }

    /// Wakes readers that sleep on frames already written. Cheap when none
    /// sleeps (a fence and a load); call it before pausing.
    pub fn flush(&mut self) {
        self.index.wake_readers(self.ring.control());
    }

    /// Blocks until every attached reader has released every frame written
    /// so far (or died: see [`take_dead_readers`](Self::take_dead_readers)).
    pub fn wait_drained(&mut self) {
        self.show_pending();
        self.wait_for_space(self.ring.capacity() as u64);
    }

    /// Keeps the slots of readers whose process died, with their place:
    /// the writer waits for them as for live ones (back-pressure), until a
    /// restarted process takes the slot over
    /// ([`RingReader::take_over`](super::RingReader::take_over)) and reads
    /// on from where the dead one had released. Each is still reported
    /// once by [`take_dead_readers`](Self::take_dead_readers). By default a
    /// dead reader's slot is reclaimed, and what it had not read is lost to
    /// it.
    pub fn keep_dead_readers(&mut self) {
        self.kept_dead.get_or_insert_with(Vec::new);
        // SYNC: Release pairs with the Acquire load in
        // `RingReader::take_over`.
        self.ring.control().writer.keeps_dead.store(1, Release);
    }

    /// The readers found dead since the last call.
    pub fn take_dead_readers(&mut self) -> Vec<DeadReader> {
        std::mem::take(&mut self.dead)
    }

    /// The bytes a frame may take at the next write without waiting: free
    /// ring space as of now (looks at the readers' cursors again).
    pub fn free_space(&mut self) -> usize {
        self.index.refresh(self.ring.control()) as usize
    }

    // Raw access for the TCP receiver (`crate::tcp`), which lands bytes from
    // the network in place, in the free space, and publishes them once it has
    // checked that they are whole frames.

    /// The end of the frames written (published too: the TCP landing
    /// opens no transaction): ring bytes below it are frames readers see.
    #[inline]
    pub(crate) fn published(&self) -> u64 {
        self.index.written()
    }

    /// Looks at the readers' cursors again; returns the position below which
    /// the writer may write (the slowest cursor plus the capacity).
    #[inline]
    pub(crate) fn refresh_limit(&mut self) -> u64 {
        let free = self.index.refresh(self.ring.control());
        self.index.written() + free
    }

    /// The address of ring position `pos`; valid for `capacity` bytes (the
    /// data region is mapped twice).
    #[inline]
    pub(crate) fn at(&self, pos: u64) -> *mut u8 {
        self.ring.at(pos)
    }

    /// Publishes the frames written in place between the published position
    /// and `pos`.
    ///
    /// # Safety
    ///
    /// `pos` is at most the limit returned by the last
    /// [`refresh_limit`](Self::refresh_limit), and the bytes from the
    /// published position to `pos` are whole frames (headers with a known
    /// kind, lengths that add up exactly to `pos`), so that readers' frame
    /// walk stays in step.
    #[inline]
    pub(crate) unsafe fn publish_in_place(&mut self, pos: u64) {
        self.index.publish(self.ring.control(), pos);
    }

    /// The size of the arena of large values (0: there is none).
    pub(crate) fn large_capacity(&self) -> u64 {
        self.large.as_ref().map_or(0, LargeArena::capacity)
    }

    /// How many bytes the arena has free for the next large value, after
    /// freeing what every reader is done with; `None` if there is no arena.
    pub(crate) fn large_free(&mut self) -> Option<u64> {
        let mut arena = self.large.take()?;
        self.release_arena(&mut arena);
        let free = arena.free();
        self.large = Some(arena);
        Some(free)
    }

    /// Where the next large value lands: the start of the arena's free
    /// space (which [`large_free`](Self::large_free) measures). Only this
    /// side writes there, no frame a reader holds refers to it, and it stays
    /// mapped while `self` lives; `None` if there is no arena.
    pub(crate) fn large_next(&self) -> Option<*mut u8> {
        self.large.as_ref().map(LargeArena::next_at)
    }

    /// Takes the first `len` bytes at [`large_next`](Self::large_next), landed
    /// in place, as a large value whose frame ends at ring position
    /// `frame_end`; returns where it lies, for that frame's payload.
    pub(crate) fn land_large(&mut self, len: u64, frame_end: u64) -> LargeRef {
        let arena = self
            .large
            .as_mut()
            .expect("large values land only in an arena");
        let at = arena.take(len as usize);
        arena.hold(frame_end);
        at
    }

    /// Writes a frame of `kind` holding `bytes`: in the ring, or out of
    /// line if they are large and there is an arena.
    #[inline]
    fn write_raw(&mut self, kind: FrameKind, seq: u64, bytes: &[u8]) -> Result<(), WriteError> {
        if self.large_bytes > 0 && bytes.len() > self.max_inline() && kind == FrameKind::Data {
            return self.write_large(seq, bytes);
        }
        self.write_frame(kind.code(), seq, bytes)
    }

    /// Copies `bytes` into the arena, waiting for room, and writes the
    /// frame that refers to them.
    #[cold]
    fn write_large(&mut self, seq: u64, bytes: &[u8]) -> Result<(), WriteError> {
        let need = align_frame(bytes.len() as u64);
        if need > self.large_bytes as u64 {
            return Err(WriteError::LargerThanArena {
                len: bytes.len(),
                max: self.large_bytes,
            });
        }
        let Some(mut arena) = self.large.take() else {
            unreachable!("large values are written only with an arena");
        };
        let capacity = self.ring.capacity() as u64;
        loop {
            self.release_arena(&mut arena);
            if arena.free() >= need {
                break;
            }
            let Some(frame_end) = arena.frame_end_freeing(need) else {
                unreachable!("a value no larger than the arena waits for one that frees it");
            };
            // Ring space up to that frame's end, plus a ring's worth: the
            // readers' cursors are past it.
            let ring_need = frame_end + capacity - self.index.written();
            self.wait_for_room(ring_need);
        }
        let at = arena.put(bytes);
        let result = self.write_frame(LARGE_CODE, seq, &at.to_bytes());
        if result.is_ok() {
            arena.hold(self.index.written());
            self.last_large = true;
        }
        self.large = Some(arena);
        result
    }

    /// Writes a frame of kind code `code` holding `bytes` in the ring.
    #[inline]
    fn write_frame(&mut self, code: u32, seq: u64, bytes: &[u8]) -> Result<(), WriteError> {
        let max = self.max_payload();
        if bytes.len() > max {
            return Err(WriteError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let need = frame_size(bytes.len() as u64);
        if self.index.free() < need {
            self.wait_for_room(need);
        }
        let pos = self.index.written();
        // `need` bytes at `pos` are below the writer's limit (waited
        // for above), so no reader reads them, and they are contiguous (double
        // mapping, `need <= capacity`); `bytes` is ours and cannot overlap the
        // ring's free space, which nobody else may reference.
        // SAFETY: the destination is ours alone and in bounds, as above.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ring.at(pos).add(FRAME_HEADER_LEN as usize),
                bytes.len(),
            );
        }
        self.seal_frame(code, seq, bytes.len());
        Ok(())
    }

    /// Writes the header of a frame whose `len`-byte payload is in place at
    /// the published position, and publishes it.
    #[inline]
    fn seal_frame(&mut self, code: u32, seq: u64, len: usize) {
        let pos = self.index.written();
        let size = frame_size(len as u64);
        debug_assert!(self.index.free() >= size);
        let header = FrameHeader {
            len: len as u32,
            kind: code,
            seq,
        };
        // SAFETY: the frame's bytes at `pos` are below the writer's limit and
        // unpublished, so only we touch them; ring positions are multiples of
        // FRAME_ALIGN, which suits FrameHeader's alignment.
        unsafe { self.ring.at(pos).cast::<FrameHeader>().write(header) };
        // The alignment padding after the payload is left as it was: readers
        // only ever see `len` bytes.
        self.index.publish(self.ring.control(), pos + size);
    }

    /// Waits for `need` bytes of room for a write, counting the time as
    /// [`blocked`](Self::blocked).
    #[cold]
    fn wait_for_room(&mut self, need: u64) {
        self.show_pending();
        let start = self.blocked.begin();
        self.wait_for_space(need);
        self.blocked.end(start);
    }

    /// Readers cannot release what they cannot see: before waiting for
    /// them, a transaction is published as it stands (and goes on in
    /// parts).
    fn show_pending(&mut self) {
        if self.index.visible() < self.index.written() {
            if let Some(split) = self.tx.as_mut() {
                *split = true;
            }
            self.index.commit(self.ring.control());
        }
    }

    fn wait_for_space(&mut self, need: u64) {
        let ring = &self.ring;
        let dead = &mut self.dead;
        let kept = &mut self.kept_dead;
        self.index.wait_for_space(ring.control(), need, |index| {
            reap(ring, index, need, dead, kept.as_mut())
        });
    }
}

/// The newer of the progress records whose frames are published (they end
/// at or below `published`), if any (generation 0: never written; an end
/// past `published`: its frames were not published; `u64::MAX`: being
/// written).
fn valid_record(ctl: &super::layout::Control, published: u64) -> Option<usize> {
    (0..2)
        .filter(|i| {
            let r = &ctl.progress[*i];
            // SYNC: Acquire pairs with the Release store in `commit`.
            r.out_pos.load(Acquire) <= published && r.generation.load(Relaxed) > 0
        })
        .max_by_key(|i| ctl.progress[*i].generation.load(Relaxed))
}

/// The lowest cursor of the active readers (kept dead ones included), or
/// `end` without any: the first frame someone may still read.
fn slowest_cursor(ctl: &super::layout::Control, end: u64) -> u64 {
    ctl.slots
        .iter()
        // SYNC: Acquire pairs with the Release stores of the slot's state
        // and cursor (`ReaderIndex::attach`, `release`).
        .filter(|s| s.state.load(Acquire) == SLOT_ACTIVE)
        .map(|s| s.cursor.load(Acquire))
        .fold(end, u64::min)
}

/// Walks the frames of `ring` from `from` to `to`, which the caller knows
/// intact (published, and not overwritten since), handing `visit` each
/// frame's position, header and end; a frame out of alignment or past `to`
/// is corruption.
fn walk_frames(
    ring: &ShmRing,
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, &FrameHeader, u64) -> Result<(), ReopenError>,
) -> Result<(), ReopenError> {
    let mut pos = from;
    while pos < to {
        if pos % FRAME_ALIGN != 0 {
            return Err(ReopenError::Corrupt {
                what: "a frame out of alignment",
                pos,
            });
        }
        // SAFETY: intact, as the caller knows; readable in the double
        // mapping; the header lies whole at `pos` (frames are aligned).
        let header = unsafe { ring.at(pos).cast::<FrameHeader>().read() };
        let end = pos + frame_size(u64::from(header.len));
        if end > to {
            return Err(ReopenError::Corrupt {
                what: "a frame past the end published",
                pos,
            });
        }
        visit(pos, &header, end)?;
        pos = end;
    }
    Ok(())
}

/// The large values the frames of `ring` between `from` (the slowest
/// reader's cursor) and `to` (the end published) refer to: where each frame
/// ends, and its reference; oldest first.
fn large_values_held(
    ring: &ShmRing,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, LargeRef)>, ReopenError> {
    let mut held = Vec::new();
    // `from <= pos < to`: published and unreleased, so intact.
    walk_frames(ring, from, to, |pos, header, end| {
        if header.kind == LARGE_CODE {
            // SAFETY: the payload lies within the frame, checked whole by
            // the walk.
            let payload = unsafe {
                std::slice::from_raw_parts(ring.at(pos + FRAME_HEADER_LEN), header.len as usize)
            };
            let at = LargeRef::from_bytes(payload).ok_or(ReopenError::Corrupt {
                what: "a reference to a large value",
                pos,
            })?;
            held.push((end, at));
        }
        Ok(())
    })?;
    Ok(held)
}

/// Reclaims the slots of readers that hold the writer back and whose process
/// is gone, reporting each in `dead`; with `kept` (see
/// `RingWriter::keep_dead_readers`), keeps them instead, reporting each
/// once (`kept` lists those reported).
fn reap(
    ring: &ShmRing,
    index: &mut WriterIndex,
    need: u64,
    dead: &mut Vec<DeadReader>,
    kept: Option<&mut Vec<DeadReader>>,
) {
    let ctl = ring.control();
    let blocking: Vec<usize> = index.blocking_slots(ctl, need).collect();
    let mut kept = kept;
    for slot in blocking {
        let s = &ctl.slots[slot];
        let process = ProcessStamp {
            pid: s.pid.load(Relaxed),
            start_time: s.start_time.load(Relaxed),
        };
        if process.is_alive() {
            continue;
        }
        let found = DeadReader {
            slot,
            process,
            cursor: s.cursor.load(Relaxed),
        };
        match kept.as_deref_mut() {
            Some(kept) => {
                if !kept.iter().any(|k| (k.slot, k.process) == (slot, process)) {
                    kept.push(found);
                    dead.push(found);
                }
            }
            None => {
                if index.reclaim(ctl, slot) {
                    dead.push(found);
                }
            }
        }
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        if !self.ended {
            self.index.close(self.ring.control(), WRITER_ABANDONED);
        }
        // Readers attached keep their mappings; the name goes with the
        // writer, but for one that expects restarts: its successor reopens
        // the ring by its name (ended, it learns that the stream is over),
        // and the owner removes it with the run's segments.
        // SYNC: Relaxed: this writer's own store.
        if self.ring.control().writer.restartable.load(Relaxed) == 0 {
            let _ = std::fs::remove_file(self.name.path());
        }
        if self.large.is_some() && !self.keep_arena_name {
            let _ = std::fs::remove_file(self.name.arena_path());
        }
    }
}
