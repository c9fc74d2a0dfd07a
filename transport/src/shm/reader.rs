//! The reading end of a ring.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arena::{ArenaView, LargeRef, LARGE_CODE};
use super::error::{AttachError, FrameError, ReadError};
use super::forward::{self, ArenaSpan, ForeignArenas, FORWARD_CODE};
use super::frame::{Frame, FrameKind};
use super::index::{DataWait, ReaderIndex, SLEEP_SLICE};
use super::layout::{
    frame_size, FrameHeader, FRAME_ALIGN, FRAME_HEADER_LEN, MAX_READERS, WRITER_ENDED,
};
use super::name::RingName;
use super::segment::ShmRing;
use crate::process::ProcessStamp;
use crate::sync::Ordering::Acquire;
use crate::waits::Waits;

/// How one wait ended.
enum Waited {
    /// Frames up to this end, or none before the deadline.
    Done(Option<u64>),
    /// The writer died, and a successor came or may come: wait again.
    Again,
}

/// The process writing the ring now (the creator, or a successor).
fn current_writer(ctl: &super::layout::Control) -> ProcessStamp {
    // SYNC: Acquire pairs with the Release store of the start time in
    // `RingWriter::reopen` (the pid was swapped before it).
    let start_time = ctl.writer.start_time.load(Acquire);
    ProcessStamp {
        pid: ctl.writer.pid.load(Acquire),
        start_time,
    }
}

/// One reader of a ring, with its own cursor. Reading copies nothing: a
/// [`Batch`] is a view of every frame published since the last one, and the
/// ring space is released when the batch is dropped, but for frames the
/// reader [holds](Self::hold_at). Dropping the reader detaches it.
#[derive(Debug)]
pub struct RingReader {
    ring: ShmRing,
    /// The ring's arena of large values, mapped at the first one.
    arena: ArenaView,
    /// Other rings' arenas that forwarded values lie in.
    foreign: ForeignArenas,
    /// The end of the frames batches handed out: the next batch starts
    /// there (at the cursor unless frames are held).
    read_to: u64,
    /// The furthest release asked for (by batches, or `release_to`).
    wanted: u64,
    /// Positions from which frames stay unreleased, and how many holds
    /// each (see [`hold_at`](Self::hold_at)).
    holds: BTreeMap<u64, u32>,
    name: RingName,
    index: Option<ReaderIndex>,
    writer: ProcessStamp,
    /// Terminal: every read returns it.
    failed: Option<ReadError>,
    /// How long a blocking read polls before it sleeps.
    spin: Duration,
    /// The furthest position known published.
    seen_end: u64,
    /// Time blocking reads waited for frames.
    waited: Arc<Waits>,
}

impl RingReader {
    /// Maps the ring and takes a reader slot. The reader starts at the frames
    /// written after this call.
    pub fn attach(name: &RingName) -> Result<RingReader, AttachError> {
        let ring = ShmRing::open(name.path())?;
        let me = ProcessStamp::current();
        let index = ReaderIndex::attach(ring.control(), me.pid, me.start_time)
            .ok_or(AttachError::Full { max: MAX_READERS })?;
        Ok(Self::with_index(ring, name, index))
    }

    /// The reader of `ring` at `index`'s slot and cursor.
    fn with_index(ring: ShmRing, name: &RingName, index: ReaderIndex) -> RingReader {
        let writer = current_writer(ring.control());
        let cursor = index.cursor();
        RingReader {
            ring,
            arena: ArenaView::attach(&name.arena_path()),
            foreign: ForeignArenas::default(),
            read_to: cursor,
            wanted: cursor,
            holds: BTreeMap::new(),
            waited: Arc::default(),
            name: name.clone(),
            index: Some(index),
            writer,
            failed: None,
            spin: Duration::ZERO,
            seen_end: 0,
        }
    }

    /// Takes over the slot of the reader process `dead`, which died
    /// attached (a node that crashed and is being restarted): the new
    /// reader starts at the dead one's released position, so the frames it
    /// had read and not released (not finished with) come again, and none
    /// is skipped. The writer must keep dead readers' slots
    /// ([`RingWriter::keep_dead_readers`](super::RingWriter::keep_dead_readers)),
    /// else it may have reclaimed the slot, and its frames are gone.
    pub fn take_over(name: &RingName, dead: ProcessStamp) -> Result<RingReader, AttachError> {
        if dead.is_alive() {
            return Err(AttachError::ReaderAlive { pid: dead.pid });
        }
        let ring = ShmRing::open(name.path())?;
        // SYNC: Acquire pairs with the Release store in
        // `RingWriter::keep_dead_readers`.
        if ring.control().writer.keeps_dead.load(Acquire) == 0 {
            return Err(AttachError::NotKept);
        }
        let me = ProcessStamp::current();
        let index = ReaderIndex::take_over(
            ring.control(),
            (dead.pid, dead.start_time),
            me.pid,
            me.start_time,
        )
        .ok_or(AttachError::NoSuchReader { pid: dead.pid })?;
        Ok(Self::with_index(ring, name, index))
    }

    /// The ring's name.
    pub fn name(&self) -> &RingName {
        &self.name
    }

    /// Makes blocking reads poll for `spin` before they sleep (by default
    /// they poll a few microseconds). A sleeping reader costs nothing but
    /// takes a wake-up (about 10 µs here) to see the next frame; a polling
    /// one sees it within a microsecond, and burns its core meanwhile.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// The reader slot this reader holds in the ring.
    pub(crate) fn slot(&self) -> usize {
        self.index.as_ref().expect("attached").slot()
    }

    /// The writer's process.
    pub fn writer(&self) -> ProcessStamp {
        self.writer
    }

    /// Blocks until at least one frame is there, and returns every frame
    /// there is. Spins briefly, then sleeps; checks every few milliseconds of
    /// sleep that the writer's process is alive.
    pub fn read(&mut self) -> Result<Batch<'_>, ReadError> {
        match self.wait(None)? {
            Some(end) => Ok(self.batch(end)),
            None => unreachable!("a read without deadline never times out"),
        }
    }

    /// Like [`read`](Self::read), but gives up after `timeout` with `None`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Option<Batch<'_>>, ReadError> {
        let end = self.wait(Some(Instant::now() + timeout))?;
        Ok(end.map(|end| self.batch(end)))
    }

    /// Returns the frames there are now, `None` if there are none.
    pub fn try_read(&mut self) -> Result<Option<Batch<'_>>, ReadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let start = self.read_start();
        let index = self.index.as_ref().expect("attached");
        match index.poll_past(self.ring.control(), start) {
            Some(DataWait::Ready(end)) => Ok(Some(self.batch(end))),
            Some(_) => Err(self.closed()),
            None if !self.writer.is_alive() => self.writer_died(start).map(|_| None),
            None => Ok(None),
        }
    }

    /// Where the next batch starts: past what batches handed out, which is
    /// the cursor unless frames are held.
    #[inline]
    fn read_start(&self) -> u64 {
        self.read_to.max(self.cursor())
    }

    /// Keeps the frames from `pos` on (at or past the cursor) unreleased
    /// until [`unhold`](Self::unhold): reads go on past them, and releases
    /// stop short of them. A node that forwards a large value by reference
    /// holds the frame it read it from until its own readers are done with
    /// it. Holds may come in any order; frames are released up to the
    /// oldest held.
    pub fn hold_at(&mut self, pos: u64) -> Hold {
        assert!(pos >= self.cursor(), "holding below the cursor");
        *self.holds.entry(pos).or_insert(0) += 1;
        Hold { pos }
    }

    /// Ends `hold`, and releases what it was keeping, as far as asked.
    pub fn unhold(&mut self, hold: Hold) {
        if let Some(count) = self.holds.get_mut(&hold.pos) {
            *count -= 1;
            if *count == 0 {
                self.holds.remove(&hold.pos);
            }
        }
        self.release_to(self.wanted);
    }

    /// Where this reader's ring keeps its large values, in this process's
    /// memory (mapped now if it was not yet); `None` if the ring has no
    /// arena.
    pub fn arena_span(&self) -> Option<ArenaSpan> {
        self.arena
            .span(&self.name.arena_path(), self.ring.capacity())
    }

    // Raw access for the TCP sender (`crate::tcp`), which sends published
    // frames straight from the ring and releases them as the socket takes
    // them.

    /// The end of what is published: blocks until there is more than the
    /// cursor if `block`, else `None` when there is nothing new.
    pub(crate) fn published_end(&mut self, block: bool) -> Result<Option<u64>, ReadError> {
        if block {
            return self.wait(None);
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let index = self.index.as_ref().expect("attached");
        match index.poll(self.ring.control()) {
            Some(DataWait::Ready(end)) => Ok(Some(end)),
            Some(_) => Err(self.closed()),
            None => Ok(None),
        }
    }

    /// Everything below this position is released: reading in place starts
    /// here.
    #[inline]
    pub fn cursor(&self) -> u64 {
        self.index.as_ref().expect("attached").cursor()
    }

    /// The data region's size in bytes.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The published, unreleased bytes `[from, to)`, in place.
    ///
    /// Panics unless `cursor <= from <= to <= end`, with `end` a position
    /// returned by [`published_end`](Self::published_end).
    #[inline]
    pub(crate) fn bytes(&self, from: u64, to: u64) -> &[u8] {
        assert!(
            self.cursor() <= from && from <= to && to - self.cursor() <= self.capacity() as u64
        );
        // `[from, to)` lies between the cursor and a published position (the
        // caller's contract; the assert bounds it by the capacity), so it was
        // completely written and published (Acquire in `poll`/`wait`).
        // SAFETY: the writer leaves it alone until we release it (`&mut
        // self`); contiguous (double mapping), at most `capacity` long.
        unsafe { std::slice::from_raw_parts(self.ring.at(from), (to - from) as usize) }
    }

    /// The bytes of the large value `at` refers to, in place in the
    /// writer's arena (mapped now if it was not yet): valid while the frame
    /// that refers to them is unreleased.
    pub(crate) fn large(&self, at: LargeRef) -> Result<&[u8], String> {
        self.arena.bytes(&self.name.arena_path(), at)
    }

    /// The address of ring position `pos`, for a send that outlives a
    /// borrow of `self`: see [`bytes`](Self::bytes) for what may be read.
    #[inline]
    pub(crate) fn at(&self, pos: u64) -> *const u8 {
        self.ring.at(pos)
    }

    /// Lets the writer overwrite everything below `pos` (at most the end of
    /// what is published, a frame boundary); positions below the cursor are
    /// released already.
    /// A [held](Self::hold_at) frame and those after it stay until the hold
    /// ends; the release goes through then.
    #[inline]
    pub fn release_to(&mut self, pos: u64) {
        self.wanted = self.wanted.max(pos);
        let to = match self.holds.first_key_value() {
            None => self.wanted,
            Some((&held, _)) => self.wanted.min(held),
        };
        let ring = &self.ring;
        let index = self.index.as_mut().expect("attached");
        if to > index.cursor() {
            index.release(ring.control(), to);
        }
    }

    // Reading in place past a read: for a reader that holds frames until it
    // is done with them (a bundling node holds values until their bundles
    // are complete), reads on past them, and releases them later, in order,
    // with `release_to`.

    /// The end of what is published past position `pos` (at or past the
    /// cursor), waiting up to `timeout` for it (not at all if zero); `None`
    /// if nothing is there past `pos`.
    pub fn published_past(
        &mut self,
        pos: u64,
        timeout: Duration,
    ) -> Result<Option<u64>, ReadError> {
        assert!(pos >= self.cursor(), "reading below the cursor");
        let end = if timeout.is_zero() {
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            let index = self.index.as_ref().expect("attached");
            match index.poll_past(self.ring.control(), pos) {
                Some(DataWait::Ready(end)) => Some(end),
                Some(_) => return Err(self.closed()),
                None if !self.writer.is_alive() => self.writer_died(pos)?,
                None => None,
            }
        } else {
            self.wait_past(pos, Some(Instant::now() + timeout))?
        };
        if let Some(end) = end {
            self.seen_end = self.seen_end.max(end);
        }
        Ok(end)
    }

    /// The frame at position `pos` and the position after it. `pos` must be
    /// at or past the cursor and below an end
    /// [`published_past`](Self::published_past) returned; reading frame
    /// after frame from the cursor gives every frame in order.
    ///
    /// # Panics
    /// If `pos` is below the cursor, not below what is known published, or
    /// not aligned to a frame.
    pub fn frame_at(&self, pos: u64) -> Result<(Frame<'_>, u64), FrameError> {
        assert!(
            pos >= self.cursor() && pos < self.seen_end && pos % FRAME_ALIGN == 0,
            "no frame can start at {pos}"
        );
        parse_frame(self.source(), pos, self.seen_end)
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<Option<u64>, ReadError> {
        let start = self.read_start();
        self.wait_past(start, deadline)
    }

    /// How long blocking reads (`read`, `read_timeout`, `published_past`
    /// with a timeout) waited for frames: time the reader was idle.
    pub fn waited(&self) -> Duration {
        self.waited.total()
    }

    /// The same figure, readable from another thread while a read waits
    /// (a node's metrics).
    pub fn waits(&self) -> Arc<Waits> {
        self.waited.clone()
    }

    /// Waits for frames published past `past` (at or past the cursor).
    fn wait_past(
        &mut self,
        past: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<u64>, ReadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // Nothing to wait for: no clock read (a read per batch asks).
        let index = self.index.as_ref().expect("attached");
        if let Some(DataWait::Ready(end)) = index.poll_past(self.ring.control(), past) {
            return Ok(Some(end));
        }
        let start = self.waited.begin();
        let found = self.wait_past_for_long(past, deadline);
        self.waited.end(start);
        found
    }

    /// [`wait_past`](Self::wait_past) when nothing is there yet.
    fn wait_past_for_long(
        &mut self,
        past: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<u64>, ReadError> {
        loop {
            match self.wait_slice(past, deadline)? {
                // The writer died and a successor came or may come: wait
                // on, unless the deadline passed.
                Waited::Again if deadline.is_none_or(|d| Instant::now() < d) => {}
                Waited::Again => return Ok(None),
                Waited::Done(found) => return Ok(found),
            }
        }
    }

    /// One wait of [`wait_past_for_long`](Self::wait_past_for_long).
    fn wait_slice(&mut self, past: u64, deadline: Option<Instant>) -> Result<Waited, ReadError> {
        let index = self.index.as_ref().expect("attached");
        if !self.spin.is_zero() {
            let ctl = self.ring.control();
            if let Some(found) = spin_for_data(index, ctl, past, self.spin, deadline) {
                return match found {
                    DataWait::Ready(end) => Ok(Waited::Done(Some(end))),
                    _ => Err(self.closed()),
                };
            }
        }
        let index = self.index.as_ref().expect("attached");
        let writer = self.writer;
        let mut writer_dead = false;
        let slice = deadline.map_or(SLEEP_SLICE, |d| d.saturating_duration_since(Instant::now()));
        let outcome = index.wait_for_data(self.ring.control(), past, slice, || {
            if !writer.is_alive() {
                writer_dead = true;
                return None;
            }
            match deadline {
                None => Some(SLEEP_SLICE),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    (!left.is_zero()).then_some(left)
                }
            }
        });
        match outcome {
            DataWait::Ready(end) => Ok(Waited::Done(Some(end))),
            DataWait::Closed => Err(self.closed()),
            DataWait::Stopped if writer_dead => Ok(match self.writer_died(past)? {
                None => Waited::Again,
                found => Waited::Done(found),
            }),
            DataWait::Stopped => Ok(Waited::Done(None)),
        }
    }

    /// The writer's process is gone: deliver what it published past `past`,
    /// then fail; unless a successor reopened the ring (the reader follows
    /// it) or may (a restartable ring: the reader waits for it), then
    /// `None`.
    fn writer_died(&mut self, past: u64) -> Result<Option<u64>, ReadError> {
        let ctl = self.ring.control();
        let end = ReaderIndex::write_pos(ctl);
        if end > past {
            return Ok(Some(end));
        }
        let now = current_writer(ctl);
        if now != self.writer && now.is_alive() {
            self.writer = now;
            return Ok(None);
        }
        // It may have closed cleanly just before exiting (a successor too:
        // look again at what it published before it closed).
        if ReaderIndex::state(ctl) != super::layout::WRITER_OPEN {
            let end = ReaderIndex::write_pos(ctl);
            if end > past {
                return Ok(Some(end));
            }
            return Err(self.closed());
        }
        // SYNC: Acquire pairs with the Release store in
        // `RingWriter::expect_restarts`.
        if ctl.writer.restartable.load(Acquire) != 0 {
            return Ok(None);
        }
        let e = ReadError::WriterDied {
            pid: self.writer.pid,
        };
        self.failed = Some(e.clone());
        Err(e)
    }

    fn closed(&mut self) -> ReadError {
        let e = if ReaderIndex::state(self.ring.control()) == WRITER_ENDED {
            ReadError::Ended
        } else {
            ReadError::WriterDropped
        };
        self.failed = Some(e.clone());
        e
    }

    fn batch(&mut self, end: u64) -> Batch<'_> {
        let start = self.read_start();
        Batch {
            reader: self,
            start,
            end,
            limit: None,
            reached: Cell::new(start),
            bad: Cell::new(None),
            _not_sync: PhantomData,
        }
    }
}

/// Polls for data past `past` for up to `spin` (and not past `deadline`).
fn spin_for_data(
    index: &ReaderIndex,
    ctl: &super::layout::Control,
    past: u64,
    spin: Duration,
    deadline: Option<Instant>,
) -> Option<DataWait> {
    let start = Instant::now();
    let until = deadline.map_or(start + spin, |d| d.min(start + spin));
    loop {
        for _ in 0..64 {
            if let Some(found) = index.poll_past(ctl, past) {
                return Some(found);
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        if let Some(index) = self.index.take() {
            index.detach(self.ring.control());
        }
    }
}

/// The frames a read found, viewed in place in the ring. Iterate it (by
/// reference) for the [`Frame`]s; dropping it releases their space to the
/// writer.
#[derive(Debug)]
pub struct Batch<'r> {
    reader: &'r mut RingReader,
    start: u64,
    end: u64,
    /// At most so many frames are yielded, and only those released.
    limit: Option<usize>,
    /// The end of the frames iterated so far.
    reached: Cell<u64>,
    /// A malformed frame met while iterating: poisons the reader on drop.
    bad: Cell<Option<FrameError>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl Batch<'_> {
    /// The bytes the batch spans in the ring (headers included).
    pub fn span(&self) -> u64 {
        self.end - self.start
    }

    /// Keeps at most the first `frames` frames: iterating yields no more,
    /// and dropping the batch releases only the frames iterated; the others
    /// stay in the ring for the next read. A reader that cannot hold more
    /// than so many values at a time reads this way. Costs nothing up front:
    /// the frames are walked once, by the iteration.
    pub fn limit(&mut self, frames: usize) {
        self.limit = Some(frames);
    }

    /// The frames.
    pub fn iter(&self) -> Frames<'_> {
        Frames {
            source: self.reader.source(),
            pos: self.start,
            end: self.end,
            left: self.limit.unwrap_or(usize::MAX),
            reached: &self.reached,
            bad: &self.bad,
        }
    }

    /// Keeps this batch's frames unreleased after it is dropped, until the
    /// hold ends ([`RingReader::unhold`]); the next read starts after them.
    pub fn hold(&mut self) -> Hold {
        let start = self.start;
        self.reader.hold_at(start)
    }

    /// Where the released space ends when the batch is dropped.
    fn release_end(&self) -> u64 {
        match self.limit {
            Some(_) => self.reached.get(),
            None => self.end,
        }
    }
}

impl<'b> IntoIterator for &'b Batch<'_> {
    type Item = Result<Frame<'b>, FrameError>;
    type IntoIter = Frames<'b>;
    fn into_iter(self) -> Frames<'b> {
        self.iter()
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.bad.take() {
            // Frame boundaries are lost: the stream cannot go on.
            self.reader.failed = Some(ReadError::Frame(e));
        }
        let end = self.release_end();
        let reader = &mut *self.reader;
        reader.read_to = reader.read_to.max(end);
        if reader.index.is_some() {
            reader.release_to(end);
        }
    }
}

/// Frames a reader keeps unreleased (see [`RingReader::hold_at`]); give it
/// back with [`RingReader::unhold`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "frames stay held until the hold is given back"]
pub struct Hold {
    pos: u64,
}

/// How far ahead of the frame being read [`Frames`] prefetches.
const PREFETCH_AHEAD: u64 = 512;

/// A hint to load the line at `p` into the cache; never faults.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing into the program and
    // does not fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Iterator over the frames of a [`Batch`].
#[derive(Debug)]
pub struct Frames<'b> {
    source: Source<'b>,
    pos: u64,
    end: u64,
    /// Frames it may still yield.
    left: usize,
    reached: &'b Cell<u64>,
    bad: &'b Cell<Option<FrameError>>,
}

impl Frames<'_> {
    /// Where the frames not yet yielded begin: the end of the last one
    /// yielded (a position a reader may release to, or record).
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

impl<'b> Iterator for Frames<'b> {
    type Item = Result<Frame<'b>, FrameError>;

    // Always inlined: the loop over a batch is the reader's hot path, and
    // its callers are few.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end || self.left == 0 {
            return None;
        }
        let pos = self.pos;
        // Frames are found by chasing their lengths, a chain of dependent
        // loads of lines the writer's core just wrote: ask for the lines
        // ahead, already published, so that their transfers overlap.
        if pos + PREFETCH_AHEAD < self.end {
            prefetch(self.source.ring.at(pos + PREFETCH_AHEAD));
        }
        match parse_frame(self.source, pos, self.end) {
            Ok((frame, next)) => {
                self.pos = next;
                self.left -= 1;
                if next > self.reached.get() {
                    self.reached.set(next);
                }
                Some(Ok(frame))
            }
            Err(e) => {
                self.pos = self.end;
                self.bad.set(Some(e));
                Some(Err(e))
            }
        }
    }
}

/// What frames are read from: a ring, its arena of large values, and the
/// arenas of the values forwarded into it.
#[derive(Clone, Copy, Debug)]
struct Source<'a> {
    ring: &'a ShmRing,
    arena: &'a ArenaView,
    foreign: &'a ForeignArenas,
    name: &'a RingName,
}

impl RingReader {
    fn source(&self) -> Source<'_> {
        Source {
            ring: &self.ring,
            arena: &self.arena,
            foreign: &self.foreign,
            name: &self.name,
        }
    }
}

/// Reads the frame at `pos`, which lies below `end`, and the position after
/// it. `pos` must be a multiple of the frame alignment with `[pos, end)`
/// published and unreleased. A large value's frame is read as a Data frame
/// whose bytes lie in the arena.
#[inline]
fn parse_frame(source: Source<'_>, pos: u64, end: u64) -> Result<(Frame<'_>, u64), FrameError> {
    let at = source.ring.at(pos);
    // `pos < end <= write_pos` (loaded with Acquire): a whole frame header
    // was written there and published, and stays until the reader releases it.
    // SAFETY: readable as above; `pos` is a multiple of FRAME_ALIGN.
    let header = unsafe { at.cast::<FrameHeader>().read() };
    let size = frame_size(u64::from(header.len));
    if size > end - pos {
        return Err(FrameError::Length {
            len: header.len,
            pos,
        });
    }
    // The payload lies within the published frame checked above (`size <=
    // end - pos`); releasing it needs the reader the returned frame borrows.
    // SAFETY: published and unreleased as above; contiguous (double mapping).
    let bytes = unsafe {
        std::slice::from_raw_parts(at.add(FRAME_HEADER_LEN as usize), header.len as usize)
    };
    let (kind, bytes) = match FrameKind::from_code(header.kind) {
        Some(kind) => (kind, bytes),
        None => (
            FrameKind::Data,
            out_of_line(source, header.kind, bytes, pos)?,
        ),
    };
    Ok((
        Frame {
            kind,
            seq: header.seq,
            bytes,
        },
        pos + size,
    ))
}

/// The bytes a frame of kind `code` at `pos`, with payload `payload`, that
/// is no Data or End frame refers to: a large value's, or a forwarded one's
/// (kept off the hot path of every frame).
#[cold]
fn out_of_line<'a>(
    source: Source<'a>,
    code: u32,
    payload: &[u8],
    pos: u64,
) -> Result<&'a [u8], FrameError> {
    match code {
        LARGE_CODE => large(source, payload, pos),
        FORWARD_CODE => forwarded(source, payload, pos),
        code => Err(FrameError::UnknownKind { code, pos }),
    }
}

/// The bytes in the arena that the large value's frame at `pos`, with
/// payload `payload`, refers to.
#[cold]
fn large<'a>(source: Source<'a>, payload: &[u8], pos: u64) -> Result<&'a [u8], FrameError> {
    let bad = |len| FrameError::LargeValue { len, pos };
    let at = LargeRef::from_bytes(payload).ok_or(bad(0))?;
    source
        .arena
        .bytes(&source.name.arena_path(), at)
        .map_err(|e| {
            tracing::warn!("ring {}: {e}", source.name);
            bad(at.len)
        })
}

/// The bytes in another ring's arena that the forwarding frame at `pos`,
/// with payload `payload`, refers to.
#[cold]
fn forwarded<'a>(source: Source<'a>, payload: &[u8], pos: u64) -> Result<&'a [u8], FrameError> {
    let Some((at, path)) = forward::from_payload(payload) else {
        tracing::warn!(
            "ring {}: a forwarded value's frame names no arena of ours",
            source.name
        );
        return Err(FrameError::LargeValue { len: 0, pos });
    };
    source.foreign.bytes(path, at).map_err(|e| {
        tracing::warn!("ring {}: {e}", source.name);
        FrameError::LargeValue { len: at.len, pos }
    })
}
