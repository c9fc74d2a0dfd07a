//! The receiver's side of a link, without I/O: bytes from the network land
//! in place in the mirror ring's free space, are checked frame by frame, and
//! published; credit is granted as the ring frees space.
//!
//! Stream offset `o` lands at ring position `base + o`. The receiver grants
//! credit only below the ring's limit (slowest reader plus capacity), so the
//! bytes a well-behaved sender sends always have room, and nothing blocks or
//! buffers on this side beyond the ring.

use std::net::SocketAddr;
use std::time::Duration;

use crate::shm::RingWriter;

use super::error::{BadFrame, LinkError};
use super::protocol::{self, Grants};
use super::LinkStats;

/// Bytes past the credit a receive asks for: anything landing there is a
/// sender overrunning its credit.
pub(crate) const SPILL: usize = 64;

/// The shortest and longest timed wait while the mirror's readers may free
/// space (there is no descriptor to wait on for that).
const WAIT_MIN: Duration = Duration::from_micros(50);
const WAIT_MAX: Duration = Duration::from_millis(5);

/// The mirror ring and what has landed in it.
#[derive(Debug)]
pub(crate) struct Landing {
    writer: RingWriter,
    peer: SocketAddr,
    /// Ring position of stream offset 0.
    base: u64,
    /// Stream bytes that landed in the ring.
    received: u64,
    /// Stream bytes of whole checked frames, published.
    parsed: u64,
    grants: Grants,
    /// The ring's limit (stream offset) at the last look.
    limit: u64,
    max_payload: u64,
    capacity: u64,
    frames: u64,
    /// Published since the last flush.
    unflushed: bool,
    wait: Duration,
}

impl Landing {
    pub(crate) fn new(writer: RingWriter, peer: SocketAddr) -> Self {
        let base = writer.published();
        let capacity = writer.capacity() as u64;
        Landing {
            max_payload: writer.max_payload() as u64,
            writer,
            peer,
            base,
            received: 0,
            parsed: 0,
            grants: Grants::new(capacity),
            limit: 0,
            capacity,
            frames: 0,
            unflushed: false,
            wait: WAIT_MIN,
        }
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Where the next bytes land, and how many the credit covers. The memory
    /// is the ring's free space: only this side writes it, and readers do
    /// not see it until it is published; it stays valid while `self` lives.
    #[inline]
    pub(crate) fn room(&self) -> (*mut u8, usize) {
        let n = self.grants.granted() - self.received;
        (self.writer.at(self.base + self.received), n as usize)
    }

    /// `n` bytes landed at [`room`](Self::room), which had `room` bytes when
    /// the receive started, and past it in `spill`. Bytes in the spill within
    /// credit granted since (a receive in flight keeps its first room) move
    /// into the ring; past the credit, they are the sender's fault. Checks
    /// and publishes the whole frames; returns the End frame's seq when it
    /// came.
    pub(crate) fn landed(
        &mut self,
        n: usize,
        room: usize,
        spill: &[u8],
    ) -> Result<Option<u64>, LinkError> {
        if self.received + n as u64 > self.grants.granted() {
            return Err(LinkError::CreditExceeded {
                peer: self.peer,
                granted: self.grants.granted(),
                received: self.received + n as u64,
            });
        }
        if n > room {
            let extra = &spill[..n - room];
            // The `extra.len()` bytes after the room are below the
            // credit granted (checked above), so ring memory below the limit,
            // unpublished, that only this side writes; `at` is valid for
            // `capacity` bytes and `n <= capacity`. The spill is our own
            // buffer: no overlap.
            // SAFETY: unpublished ring memory only we write, in bounds, as above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    extra.as_ptr(),
                    self.writer.at(self.base + self.received + room as u64),
                    extra.len(),
                );
            }
        }
        self.received += n as u64;
        let start = self.base + self.parsed;
        let len = (self.received - self.parsed) as usize;
        // `[start, start + len)` is ring memory below the limit the
        // credit was granted against, not yet published: no reader reads it
        // and only this side writes it (the receive into it has completed).
        // It is at most `capacity` long, contiguous thanks to the double
        // mapping, and `at` is valid for `capacity` bytes.
        // SAFETY: unpublished, completely received ring memory, as above.
        let bytes = unsafe { std::slice::from_raw_parts(self.writer.at(start), len) };
        let walk = protocol::walk(bytes, self.max_payload)
            .map_err(|e| LinkError::frame(self.peer, offset_by(e, self.parsed)))?;
        if walk.whole > 0 {
            self.parsed += walk.whole;
            self.frames += walk.frames;
            // SAFETY: the bytes up to here are whole frames whose headers
            // `walk` checked (known kind, lengths adding up), and they lie
            // below the limit credit was granted against.
            unsafe { self.writer.publish_in_place(self.base + self.parsed) };
            self.unflushed = true;
        }
        self.wait = WAIT_MIN;
        Ok(walk.end.map(|(seq, _)| seq))
    }

    /// The grant to send now, if any: new room is worth a message, or there
    /// is any and this side is about to wait.
    pub(crate) fn grant(&mut self, about_to_wait: bool) -> Option<u64> {
        self.limit = self.writer.refresh_limit() - self.base;
        let g = self.grants.next(self.limit, about_to_wait);
        if g.is_some() {
            self.wait = WAIT_MIN;
        }
        g
    }

    /// Wakes readers asleep on what was published; call before waiting.
    pub(crate) fn flush(&mut self) {
        if self.unflushed {
            self.writer.flush();
            self.unflushed = false;
        }
    }

    /// How long to wait for the socket before looking at the ring again:
    /// forever if the ring is drained (its readers cannot free more space),
    /// else a while, growing as nothing happens.
    pub(crate) fn wait_timeout(&mut self) -> Option<Duration> {
        if self.limit == self.parsed + self.capacity {
            // Partial frames count: `parsed`, not `received`, is published,
            // and a drained ring's limit is `published + capacity`.
            return None;
        }
        let t = self.wait;
        self.wait = (self.wait * 2).min(WAIT_MAX);
        Some(t)
    }

    /// The error for a stream that ended before the End frame.
    pub(crate) fn closed(&self) -> LinkError {
        if self.received > self.parsed {
            LinkError::BadFrame {
                peer: self.peer,
                frame: BadFrame::Truncated {
                    bytes: self.received - self.parsed,
                },
            }
        } else {
            LinkError::PeerClosed { peer: self.peer }
        }
    }

    /// Writes the End frame (the one that came) and closes the mirror.
    pub(crate) fn finish(self, seq: u64) -> Result<LinkStats, LinkError> {
        let stats = LinkStats {
            frames: self.frames,
            bytes: self.received,
        };
        self.writer.finish(seq)?;
        Ok(stats)
    }
}

/// Makes a walk's offsets count from the start of the stream.
fn offset_by(e: BadFrame, by: u64) -> BadFrame {
    match e {
        BadFrame::UnknownKind { code, offset } => BadFrame::UnknownKind {
            code,
            offset: offset + by,
        },
        BadFrame::TooLarge { len, max, offset } => BadFrame::TooLarge {
            len,
            max,
            offset: offset + by,
        },
        BadFrame::EndWithPayload { len, offset } => BadFrame::EndWithPayload {
            len,
            offset: offset + by,
        },
        e => e,
    }
}
