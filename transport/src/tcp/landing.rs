//! The receiver's side of a link, without I/O: bytes from the network land
//! in place in the mirror ring's free space, are checked frame by frame, and
//! published; credit is granted as the ring frees space. The body of a large
//! value lands in place in the mirror's arena, and its frame is published
//! once all of it came, pointing there.
//!
//! Frame stream offset `o` lands at ring position `base + o` (`base`: where
//! the mirror's frames end as the connection starts, where the sender
//! resumes). The receiver
//! grants credit only below the ring's limit (slowest reader plus capacity),
//! and body credit only for the body it awaits and within the arena's free
//! space, so the bytes a well-behaved sender sends always have room, and
//! nothing blocks or buffers on this side beyond the ring and the arena.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::shm::RingWriter;

use super::error::{BadFrame, LinkError};
use super::protocol::{self, Grant, Grants, LARGE_FRAME_LEN};
use super::{LinkMeter, LinkStats};

/// Bytes past the credit a receive asks for: anything landing there is a
/// sender overrunning its credit.
pub(crate) const SPILL: usize = 64;

/// The shortest and longest timed wait while the mirror's readers may free
/// space (there is no descriptor to wait on for that).
const WAIT_MIN: Duration = Duration::from_micros(50);
const WAIT_MAX: Duration = Duration::from_millis(5);

/// Where the next receive lands.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room {
    /// The first byte: ring or arena free space below the credit.
    pub(crate) at: *mut u8,
    /// How many bytes the credit covers there.
    pub(crate) len: usize,
    /// Whether bytes past `len` are an overrun to catch in a spill (else
    /// they are the next frames, to leave in the socket).
    pub(crate) spill: bool,
}

/// The body of a large value, landing in the arena.
#[derive(Clone, Copy, Debug)]
struct Body {
    len: u64,
    landed: u64,
}

/// The mirror ring and what has landed in it over one connection.
#[derive(Debug)]
pub(crate) struct Landing<'w> {
    writer: &'w mut RingWriter,
    peer: SocketAddr,
    /// Ring position of stream offset 0.
    base: u64,
    /// Stream bytes that landed in the ring.
    received: u64,
    /// Stream bytes of whole checked frames, published.
    parsed: u64,
    grants: Grants,
    /// Stream bytes said landed to the sender.
    acks: Grants,
    /// The ring's limit (stream offset) at the last look.
    limit: u64,
    max_payload: u64,
    capacity: u64,
    /// The body awaited after the frame at `parsed`, if one is.
    body: Option<Body>,
    /// Body bytes landed, all bodies together.
    body_bytes: u64,
    body_grants: Grants,
    /// The arena's size (0: none).
    max_large: u64,
    frames: u64,
    /// Published since the last flush.
    unflushed: bool,
    /// Where the End frame ends in the stream, once it came.
    ended_at: Option<u64>,
    wait: Duration,
    /// Every byte received, for whoever watches the link.
    meter: Arc<LinkMeter>,
}

impl<'w> Landing<'w> {
    pub(crate) fn new(writer: &'w mut RingWriter, peer: SocketAddr, meter: Arc<LinkMeter>) -> Self {
        let base = writer.published();
        let capacity = writer.capacity() as u64;
        let max_large = writer.large_capacity();
        Landing {
            max_payload: writer.max_payload() as u64,
            writer,
            peer,
            base,
            received: 0,
            parsed: 0,
            grants: Grants::new(capacity),
            acks: Grants::new(capacity),
            limit: 0,
            capacity,
            body: None,
            body_bytes: 0,
            body_grants: Grants::new(max_large),
            max_large,
            frames: 0,
            unflushed: false,
            ended_at: None,
            wait: WAIT_MIN,
            meter,
        }
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Where the next bytes land, and how many the credit covers: the ring's
    /// free space, or, while a body is awaited, the arena's. Only this side
    /// writes that memory, readers do not see it until it is published, and
    /// it stays valid while `self` lives.
    #[inline]
    pub(crate) fn room(&self) -> Room {
        match self.body {
            None => Room {
                at: self.writer.at(self.base + self.received),
                len: (self.grants.granted() - self.received) as usize,
                spill: true,
            },
            Some(body) => {
                let arena = self.writer.large_next().expect("bodies land in an arena");
                let left = body.len - body.landed;
                let len = left.min(self.body_grants.granted() - self.body_bytes);
                Room {
                    // The body's bytes so far lie at the start of the free
                    // space; its next ones follow, within the grant, which
                    // is within the free space.
                    at: arena.wrapping_add(body.landed as usize),
                    len: len as usize,
                    spill: len < left,
                }
            }
        }
    }

    /// `n` bytes landed at a [`Room`] of `room` bytes, and past it in
    /// `spill`. Bytes in the spill within credit granted since (a receive in
    /// flight keeps its first room) move to where they belong, after the
    /// room; past the credit, they are the sender's fault. Checks and
    /// publishes the whole frames; returns the End frame's seq when it came.
    pub(crate) fn landed(
        &mut self,
        n: usize,
        room: usize,
        spill: &[u8],
    ) -> Result<Option<u64>, LinkError> {
        self.meter.received(n);
        match self.body {
            Some(body) => self.landed_body(body, n, room, spill),
            None => self.landed_frames(n, room, spill),
        }
    }

    /// [`landed`](Self::landed) while `body` is awaited: its bytes go to the
    /// arena; bytes past its end (in the spill: the room never goes past
    /// it) are the frames after it.
    fn landed_body(
        &mut self,
        body: Body,
        n: usize,
        room: usize,
        spill: &[u8],
    ) -> Result<Option<u64>, LinkError> {
        let to_body = n.min((body.len - body.landed) as usize);
        if self.body_bytes + to_body as u64 > self.body_grants.granted() {
            return Err(LinkError::CreditExceeded {
                peer: self.peer,
                of: "of large values",
                granted: self.body_grants.granted(),
                received: self.body_bytes + to_body as u64,
            });
        }
        if to_body > room {
            let extra = &spill[..to_body - room];
            let arena = self.writer.large_next().expect("bodies land in an arena");
            // Credit granted since the receive started covers them
            // (checked above), and credit never goes past the body's end
            // nor the arena's free space: arena memory no reader sees, that
            // only this side writes. The spill is ours.
            // SAFETY: free arena memory only we write, in bounds, as above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    extra.as_ptr(),
                    arena.wrapping_add((body.landed + room as u64) as usize),
                    extra.len(),
                );
            }
        }
        self.body_bytes += to_body as u64;
        let landed = body.landed + to_body as u64;
        self.body = Some(Body { landed, ..body });
        self.wait = WAIT_MIN;
        if landed < body.len {
            return Ok(None);
        }
        self.land_body();
        if n == to_body {
            return Ok(None);
        }
        let after = &spill[to_body - room..n - room];
        self.landed_frames(after.len(), 0, after)
    }

    /// [`landed`](Self::landed) while frames are awaited.
    fn landed_frames(
        &mut self,
        n: usize,
        room: usize,
        spill: &[u8],
    ) -> Result<Option<u64>, LinkError> {
        if self.received + n as u64 > self.grants.granted() {
            return Err(LinkError::CreditExceeded {
                peer: self.peer,
                of: "of frames",
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
        let walk = protocol::walk(bytes, self.max_payload, self.max_large)
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
        if let Some(len) = walk.large {
            // Never empty (`walk` refuses that): its body comes next.
            self.body = Some(Body { len, landed: 0 });
        }
        self.wait = WAIT_MIN;
        if let Some((_, size)) = walk.end {
            self.ended_at = Some(self.parsed + size);
        }
        Ok(walk.end.map(|(seq, _)| seq))
    }

    /// The body awaited came whole: points its frame (at `parsed`) at it in
    /// the arena, and publishes the frame.
    fn land_body(&mut self) {
        let body = self.body.take().expect("a body");
        let frame = self.base + self.parsed;
        let frame_end = frame + LARGE_FRAME_LEN;
        let at = self.writer.land_large(body.len, frame_end);
        let payload = at.to_bytes();
        // The frame lies whole in received, unpublished ring memory below
        // the limit (`walk` stopped after it); only this side writes it.
        // SAFETY: in bounds, unpublished, ours, as above.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.writer.at(frame + protocol::HEADER_LEN),
                payload.len(),
            );
        }
        self.parsed += LARGE_FRAME_LEN;
        self.frames += 1;
        // SAFETY: a whole frame of a known kind follows what was published,
        // below the limit, its value landed in the arena it now refers to.
        unsafe { self.writer.publish_in_place(frame_end) };
        self.unflushed = true;
    }

    /// The grants to send now: of frames, if new room is worth a message or
    /// there is any and this side is about to wait; of the body awaited,
    /// likewise, within the arena's free space; and what landed, likewise.
    pub(crate) fn grant(&mut self, about_to_wait: bool) -> [Option<Grant>; 3] {
        self.limit = self.writer.refresh_limit() - self.base;
        let ring = self.grants.next(self.limit, about_to_wait).map(Grant::Ring);
        let body = self.body.and_then(|body| {
            let free = self.writer.large_free().expect("bodies land in an arena");
            let start = self.body_bytes - body.landed;
            let limit = start + body.len.min(free);
            self.body_grants.next(limit, about_to_wait).map(Grant::Body)
        });
        let landed = self
            .acks
            .next(self.parsed, about_to_wait)
            .map(Grant::Landed);
        if ring.is_some() || body.is_some() {
            self.wait = WAIT_MIN;
        }
        [ring, body, landed]
    }

    /// Wakes readers asleep on what was published; call before waiting.
    pub(crate) fn flush(&mut self) {
        if self.unflushed {
            self.writer.flush();
            self.unflushed = false;
        }
    }

    /// How long to wait for the socket before looking at the ring again:
    /// forever if the space the sender waits for cannot grow (the ring is
    /// drained, or the body awaited has all the credit it needs), else a
    /// while, growing as nothing happens.
    pub(crate) fn wait_timeout(&mut self) -> Option<Duration> {
        let waits_for_nothing = match self.body {
            // Partial frames count: `parsed`, not `received`, is published,
            // and a drained ring's limit is `published + capacity`.
            None => self.limit == self.parsed + self.capacity,
            Some(body) => self.body_grants.granted() == self.body_bytes - body.landed + body.len,
        };
        if waits_for_nothing {
            return None;
        }
        let t = self.wait;
        self.wait = (self.wait * 2).min(WAIT_MAX);
        Some(t)
    }

    /// The error for a stream that ended before the End frame.
    pub(crate) fn closed(&self) -> LinkError {
        let inside = self.received - self.parsed + self.body.map_or(0, |b| b.landed);
        if inside > 0 {
            LinkError::BadFrame {
                peer: self.peer,
                frame: BadFrame::Truncated { bytes: inside },
            }
        } else {
            LinkError::PeerClosed { peer: self.peer }
        }
    }

    /// Where the End frame ends in the stream (0 before it came): the
    /// receiver's last word to the sender, once its mirror is finished.
    pub(crate) fn ended_at(&self) -> u64 {
        self.ended_at.unwrap_or(0)
    }

    /// What landed over this connection.
    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            frames: self.frames,
            bytes: self.received + self.body_bytes,
        }
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
        BadFrame::BadLargeRef { len, offset } => BadFrame::BadLargeRef {
            len,
            offset: offset + by,
        },
        BadFrame::LargeValue { len, max, offset } => BadFrame::LargeValue {
            len,
            max,
            offset: offset + by,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::{FrameKind, RingName, RingReader};

    fn header(len: u32, code: u32, seq: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&code.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v
    }

    /// Copies `bytes` to where a receive would have put them.
    fn put(at: *mut u8, bytes: &[u8]) {
        // SAFETY: `at` is a room at least `bytes.len()` long (each call
        // below stays within the room it was given).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
    }

    /// A receive started with less body credit than came by its end: the
    /// spill holds the body's last bytes and the first of the next frame,
    /// and each goes where it belongs.
    #[test]
    fn a_spill_holding_a_bodys_end_and_the_next_frame_is_split() {
        let name = RingName::new(&format!("t{}_landing", std::process::id()), "m").unwrap();
        let mut writer = RingWriter::create(&name, 1 << 16).unwrap();
        writer.set_large_bytes(1 << 20).unwrap();
        let mut reader = RingReader::attach(&name).unwrap();
        let mut land = Landing::new(&mut writer, "127.0.0.1:9".parse().unwrap(), Arc::default());
        assert!(matches!(
            land.grant(false),
            [Some(Grant::Ring(_)), None, None]
        ));

        // The frame of a large value of 1000 bytes; its body is awaited.
        let mut frame = header(16, crate::shm::arena::LARGE_CODE, 5);
        frame.extend(7u64.to_le_bytes());
        frame.extend(1000u64.to_le_bytes());
        let room = land.room();
        put(room.at, &frame);
        assert_eq!(land.landed(32, room.len, &[]).unwrap(), None);
        assert_eq!(land.grant(true), [None, Some(Grant::Body(1000)), None]);
        let room = land.room();
        assert_eq!((room.len, room.spill), (1000, false));

        // As if the receive had started with credit for 960 bytes: 960 in
        // the room, then a full spill of 64: 40 of the body's, 24 of a
        // frame.
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        put(room.at, &body[..960]);
        let mut next = header(4, FrameKind::Data.code(), 6);
        next.extend(*b"tail");
        next.resize(32, 0);
        let mut spill = body[960..].to_vec();
        spill.extend(&next[..24]);
        assert_eq!(spill.len(), SPILL);
        assert_eq!(land.landed(960 + SPILL, 960, &spill).unwrap(), None);
        let room = land.room();
        assert!(room.spill);
        put(room.at, &next[24..]);
        assert_eq!(land.landed(8, room.len, &[]).unwrap(), None);
        // Both frames landed whole: the sender may release them.
        assert_eq!(land.grant(true)[2], Some(Grant::Landed(64)));
        land.flush();

        let batch = reader.try_read().unwrap().expect("two frames");
        let frames: Vec<_> = batch.iter().map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].seq(), frames[0].bytes()), (5, &body[..]));
        assert_eq!((frames[1].seq(), frames[1].bytes()), (6, &b"tail"[..]));
    }
}
