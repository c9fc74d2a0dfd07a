//! Where a node's loop takes an upstream's values from: the upstream's ring
//! itself (its own, on the same host, whether the upstream is a thread of
//! this process or another process; or the mirror a link fills), read and
//! decoded on the node's own thread (no hand-over thread, and each value is
//! allocated and freed by the same thread).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use clusterduck_transport::{Batch, FrameError, FrameKind, Hold, ReadError, RingReader};

use crate::body::{Codec, Payload};
use crate::replica::Route;
use crate::Seq;

/// Values taken from one upstream at one read, at most, by default.
pub const DEFAULT_BATCH: usize = 256;

/// How long a node waiting on several rings sleeps on one of them before it
/// looks at the others.
pub(crate) const RING_POLL: Duration = Duration::from_millis(1);

/// One upstream's values, as the node's loop reads them, at most `batch` at
/// a time, from a ring (the upstream's own, or a mirror of it).
pub(crate) struct Inlet {
    reader: RingReader,
    codec: Arc<dyn Codec>,
    /// The upstream's process died or its writer went away: nothing more
    /// will come, and this is not an end of stream. Whoever runs the
    /// upstream reports it and stops the run.
    broken: bool,
    batch: usize,
    /// Which values are this replica's, when the node has several and
    /// this input is split among them.
    route: Option<Route>,
}

/// A value that could not be read; the node fails with it.
#[derive(Debug)]
pub(crate) struct BadInput {
    pub(crate) seq: Option<Seq>,
    pub(crate) message: String,
}

impl BadInput {
    /// A frame whose header does not hold.
    pub(crate) fn frame(e: FrameError) -> Self {
        Self {
            seq: None,
            message: format!("bad frame: {e}"),
        }
    }

    /// A frame of a kind that has no place in a node's input.
    pub(crate) fn unexpected(kind: FrameKind, seq: Seq) -> Self {
        Self {
            seq: Some(seq),
            message: format!("unexpected {kind:?} frame"),
        }
    }
}

/// What a failed ring read means for a node: the stream ended (`ended`;
/// counts as something read), the upstream is gone (`broken`: the master
/// reports why), or a frame the node fails with.
pub(crate) fn read_failed(
    e: ReadError,
    ended: &mut bool,
    broken: &mut bool,
) -> Result<bool, BadInput> {
    match e {
        ReadError::Ended => {
            *ended = true;
            Ok(true)
        }
        ReadError::Frame(e) => Err(BadInput::frame(e)),
        e => {
            tracing::warn!("reading an upstream: {e}");
            *broken = true;
            Ok(false)
        }
    }
}

impl Inlet {
    /// The inlet of a ring, whose values `codec` reads back.
    pub(crate) fn ring(reader: RingReader, codec: Arc<dyn Codec>, batch: usize) -> Self {
        Self {
            reader,
            codec,
            broken: false,
            batch: batch.max(1),
            route: None,
        }
    }

    /// The same inlet, taking only the values `route` gives this replica.
    pub(crate) fn routed(mut self, route: Option<Route>) -> Self {
        self.route = route;
        self
    }

    /// Whether reading this inlet can ever give something again.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Reads the ring in place: hands the archived bytes of each value
    /// there is (at most a batch), and where its frame ends, waiting up to
    /// `wait` if given, to `visit`, without decoding or copying them, then
    /// tells it the read is done (before its frames are released);
    /// `visit` says whether the
    /// value must stay in the ring after the read (it was forwarded by
    /// reference): then the read's frames are held, and the hold returned.
    /// Sets `ended` at the stream's end. Returns whether anything came.
    pub(crate) fn visit<E: From<BadInput>>(
        &mut self,
        wait: Option<Duration>,
        ended: &mut bool,
        visit: impl FnMut(Visit<'_>) -> Result<Keep, E>,
    ) -> Result<(bool, Option<Hold>), E> {
        if self.broken {
            if let Some(t) = wait {
                std::thread::sleep(t);
            }
            return Ok((false, None));
        }
        let read = match wait {
            None => self.reader.try_read(),
            Some(t) => self.reader.read_timeout(t),
        };
        let route = self.route.as_mut();
        visit_frames(read, &mut self.broken, ended, self.batch, route, visit)
    }

    /// The ring, and its broken flag, for a reader that holds frames (see
    /// `run::held`).
    pub(crate) fn reader_mut(&mut self) -> (&mut RingReader, &mut bool) {
        (&mut self.reader, &mut self.broken)
    }

    /// The ring, its broken flag and its route, for a reader that holds
    /// frames (see `run::held`).
    pub(crate) fn parts(&mut self) -> (&mut RingReader, &mut bool, Option<&mut Route>) {
        (&mut self.reader, &mut self.broken, self.route.as_mut())
    }

    /// Which values are this replica's, if not all.
    pub(crate) fn route(&self) -> Option<&Route> {
        self.route.as_ref()
    }

    /// The ring.
    pub(crate) fn reader(&self) -> &RingReader {
        &self.reader
    }

    /// The most values taken at one read.
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Releases the ring up to `done`, where a dead predecessor was done
    /// with it (past its own release: what it had released it was done
    /// with); returns how many of this replica's values lay in between.
    pub(crate) fn skip_to(&mut self, done: u64) -> Result<u64, BadInput> {
        let (ring, _, mut route) = self.parts();
        let mut at = ring.cursor();
        let mut values = 0;
        while at < done {
            let end = match ring.published_past(at, Duration::from_secs(1)) {
                Ok(Some(end)) => end,
                Ok(None) | Err(ReadError::Ended) => break,
                Err(e) => {
                    return Err(BadInput {
                        seq: None,
                        message: format!("resuming at ring position {done}: {e}"),
                    })
                }
            };
            while at < end.min(done) {
                let (frame, after) = ring.frame_at(at).map_err(BadInput::frame)?;
                if frame.kind() == FrameKind::Data {
                    values += u64::from(owns(&mut route, frame.seq(), frame.bytes())?);
                }
                at = after;
            }
        }
        if at > ring.cursor() {
            ring.release_to(at);
        }
        Ok(values)
    }

    /// The value with id `seq` archived in `bytes`, decoded.
    pub(crate) fn decode(&self, seq: Seq, bytes: &[u8]) -> Result<Payload, BadInput> {
        decode(&*self.codec, seq, bytes)
    }

    /// Takes what comes, decoded, into `queue`, waiting up to `wait` if
    /// given (else not at all). Sets `ended` at the stream's end. Returns
    /// whether anything came.
    pub(crate) fn fill(
        &mut self,
        queue: &mut VecDeque<(Seq, Payload)>,
        ended: &mut bool,
        wait: Option<Duration>,
    ) -> Result<bool, BadInput> {
        let codec = self.codec.clone();
        self.visit(wait, ended, |visit| {
            if let Visit::Value(seq, bytes, _) = visit {
                queue.push_back((seq, decode(&*codec, seq, bytes)?));
            }
            Ok(Keep::No)
        })
        .map(|(got, _)| got)
    }
}

/// The value with id `seq` archived in `bytes`, decoded by `codec`.
fn decode(codec: &dyn Codec, seq: Seq, bytes: &[u8]) -> Result<Payload, BadInput> {
    codec.decode(bytes).map_err(|e| BadInput {
        seq: Some(seq),
        message: format!("bad value: {e}"),
    })
}

/// Whether the value with id `seq` and archived `bytes` is this replica's
/// by `route` (all are without one: a branch per value, inline).
#[inline(always)]
pub(crate) fn owns(
    route: &mut Option<&mut Route>,
    seq: Seq,
    bytes: &[u8],
) -> Result<bool, BadInput> {
    match route {
        None => Ok(true),
        Some(route) => routed(route, seq, bytes),
    }
}

/// [`owns`] for an input split among replicas.
fn routed(route: &mut Route, seq: Seq, bytes: &[u8]) -> Result<bool, BadInput> {
    route.owns(seq, bytes).map_err(|e| BadInput {
        seq: Some(seq),
        message: format!("its key function failed: {e}"),
    })
}

/// What a read in place hands its visitor, in turn.
pub(crate) enum Visit<'a> {
    /// A value: its id, its archived bytes, and where its frame ends.
    Value(Seq, &'a [u8], u64),
    /// Every value of the read was visited: its frames are released next.
    Done,
}

/// Whether a value handed over in place must stay in its ring after the
/// read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    No,
    /// It was forwarded by reference (see `run::forward`).
    Yes,
}

/// Hands each value of what a ring read found to `visit`, in place, while
/// the read holds the frames: at most `limit` of them; the rest stay in the
/// ring, where they hold the writer back. Sets `ended` at the End frame.
/// Returns whether anything came, and the hold of the read's frames if a
/// value must stay.
fn visit_frames<E: From<BadInput>>(
    read: Result<Option<Batch<'_>>, ReadError>,
    broken: &mut bool,
    ended: &mut bool,
    limit: usize,
    mut route: Option<&mut Route>,
    mut visit: impl FnMut(Visit<'_>) -> Result<Keep, E>,
) -> Result<(bool, Option<Hold>), E> {
    let mut batch = match read {
        Ok(Some(batch)) => batch,
        Ok(None) => return Ok((false, None)),
        Err(e) => {
            return read_failed(e, ended, broken)
                .map(|got| (got, None))
                .map_err(E::from)
        }
    };
    batch.limit(limit);
    let mut keep = Keep::No;
    let mut each = || {
        let mut frames = batch.iter();
        while let Some(frame) = frames.next() {
            let frame = frame.map_err(BadInput::frame)?;
            match frame.kind() {
                FrameKind::Data => {
                    let (seq, bytes) = (frame.seq(), frame.bytes());
                    if owns(&mut route, seq, bytes)?
                        && visit(Visit::Value(seq, bytes, frames.pos()))? == Keep::Yes
                    {
                        keep = Keep::Yes;
                    }
                }
                FrameKind::End => *ended = true,
                other => return Err(BadInput::unexpected(other, frame.seq()).into()),
            }
        }
        visit(Visit::Done).map(drop)
    };
    let result = each();
    // Held from the read's start: the frames before the value too (a
    // little more than needed, and nothing to track per frame). If a later
    // value failed the node, the hold is dropped with the error: the node
    // ends, and its holds with it (see `run::forward`).
    let hold = (keep == Keep::Yes).then(|| batch.hold());
    // On an error the node fails: nothing gives the hold back, and the
    // frames stay held until the reader detaches.
    result.map(|()| (true, hold))
}
