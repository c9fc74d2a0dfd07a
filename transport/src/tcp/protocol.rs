//! The link's protocol, without I/O: what the bytes on the wire are, how the
//! receiver checks them, and how credit is counted on both sides. Both
//! backends drive these same types, so they behave the same by construction.
//!
//! After the handshake ([`crate::auth`]) a data connection carries:
//! - sender → receiver: the producer ring's frames, byte for byte as they lie
//!   in the ring (16-byte header `len: u32, kind: u32, seq: u64`, little
//!   endian, then the payload padded to 16 bytes), ending with the End frame.
//!   A frame that refers to a large value in the producer's arena (kind
//!   code 3, a 16-byte [`LargeRef`]) is followed by the value's *body*: its
//!   `len` bytes, unpadded, sent straight from the arena and landed straight
//!   in the mirror's arena;
//! - receiver → sender, first: where the stream resumes ([`resume`]): the
//!   position after the last whole frame its mirror holds (0 for a new
//!   mirror). Ring and mirror positions are the same numbers (both start
//!   at 0, and the mirror holds the ring's frames at their places), so a
//!   link broken off goes on, over a new connection, exactly where its
//!   frames stopped landing, whichever end was restarted;
//! - receiver → sender, then: [credit messages](CREDIT_LEN), each cumulative
//!   over the connection: a grant of stream bytes of frames
//!   (`Grant::Ring`), or of body bytes (`Grant::Body`), or the stream bytes
//!   of whole frames landed in the mirror (`Grant::Landed`), below which
//!   the sender releases its ring: until a frame landed it may have to go
//!   again.
//!
//! The receiver grants body bytes only for the body it is landing (never
//! beyond its end, never beyond its arena's free space), and only once it
//! has seen the frame that announces it; so a sender that sent such a frame
//! waits for body credit before it sends anything more, and every receive
//! lands either frames (in the ring) or one body's bytes (in the arena),
//! never both: no byte of a large value is copied in user space.

use crate::shm::arena::{LargeRef, LARGE_CODE};
use crate::shm::forward::FORWARD_CODE;
use crate::shm::FrameKind;

use super::error::BadFrame;

/// Size of a frame header on the wire (and in a ring).
pub(crate) const HEADER_LEN: u64 = 16;

/// Size of a credit message: magic `CDcr` (frames) or `CDcb` (bodies),
/// 4 zero bytes, then the cumulative grant (`u64`, little endian).
pub(crate) const CREDIT_LEN: usize = 16;

/// Opens a credit message for the frames' stream bytes.
const RING_MAGIC: [u8; 4] = *b"CDcr";
/// Opens a credit message for large values' body bytes.
const BODY_MAGIC: [u8; 4] = *b"CDcb";
/// Opens a message of the stream bytes landed.
const LANDED_MAGIC: [u8; 4] = *b"CDcl";
/// Opens the message that says where the stream resumes.
const RESUME_MAGIC: [u8; 4] = *b"CDrs";

/// The size of a frame that refers to a large value.
pub(crate) const LARGE_FRAME_LEN: u64 = frame_size(16);

/// The bytes a frame with a `len`-byte payload takes on the wire.
#[inline]
pub(crate) const fn frame_size(len: u64) -> u64 {
    HEADER_LEN + ((len + 15) & !15)
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) kind: Option<FrameKind>,
    pub(crate) code: u32,
    pub(crate) seq: u64,
}

impl Header {
    #[inline]
    pub(crate) fn parse(b: &[u8]) -> Header {
        let len = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let code = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        Header {
            len,
            kind: FrameKind::from_code(code),
            code,
            seq,
        }
    }
}

/// What a walk over received bytes found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Walk {
    /// Bytes of whole, valid frames before the End frame (or before the
    /// first incomplete frame).
    pub(crate) whole: u64,
    /// Data frames among them.
    pub(crate) frames: u64,
    /// The End frame's seq and the bytes it takes, if it came.
    pub(crate) end: Option<(u64, u64)>,
    /// The length of the large value whose frame came last (at `whole`),
    /// if one did: its body comes next.
    pub(crate) large: Option<u64>,
}

/// Walks the frames at the start of `bytes`, checking each header: a known
/// kind, a payload of at most `max_payload` bytes, an empty End, a large
/// value of at most `max_large` bytes. Stops at the first incomplete frame,
/// after the End frame (bytes after End are an error: End is the last thing
/// a sender sends) or after the frame of a large value (bytes after it are
/// an error: its body comes only once credit for it was granted).
pub(crate) fn walk(bytes: &[u8], max_payload: u64, max_large: u64) -> Result<Walk, BadFrame> {
    let mut w = Walk::default();
    let mut pos = 0u64;
    let total = bytes.len() as u64;
    while total - pos >= HEADER_LEN {
        let h = Header::parse(&bytes[pos as usize..(pos + HEADER_LEN) as usize]);
        if h.code == LARGE_CODE {
            if total - pos < LARGE_FRAME_LEN {
                break;
            }
            let payload = &bytes[(pos + HEADER_LEN) as usize..(pos + LARGE_FRAME_LEN) as usize];
            // A large value is never empty (it is larger than a quarter of
            // a ring): an empty one would have no body to grant.
            let r = match LargeRef::from_bytes(payload) {
                Some(r) if h.len == 16 && r.len > 0 => r,
                _ => {
                    return Err(BadFrame::BadLargeRef {
                        len: h.len,
                        offset: pos,
                    })
                }
            };
            if r.len > max_large {
                return Err(BadFrame::LargeValue {
                    len: r.len,
                    max: max_large,
                    offset: pos,
                });
            }
            if total - pos > LARGE_FRAME_LEN {
                return Err(BadFrame::AfterLarge {
                    bytes: total - pos - LARGE_FRAME_LEN,
                });
            }
            w.whole = pos;
            w.large = Some(r.len);
            return Ok(w);
        }
        let Some(kind) = h.kind else {
            return Err(BadFrame::UnknownKind {
                code: h.code,
                offset: pos,
            });
        };
        if u64::from(h.len) > max_payload {
            return Err(BadFrame::TooLarge {
                len: h.len,
                max: max_payload,
                offset: pos,
            });
        }
        let size = frame_size(u64::from(h.len));
        match kind {
            FrameKind::End => {
                if h.len != 0 {
                    return Err(BadFrame::EndWithPayload {
                        len: h.len,
                        offset: pos,
                    });
                }
                if total - pos > size {
                    return Err(BadFrame::AfterEnd {
                        bytes: total - pos - size,
                    });
                }
                w.whole = pos;
                w.end = Some((h.seq, size));
                return Ok(w);
            }
            _ => {
                if total - pos < size {
                    break;
                }
                w.frames += 1;
                pos += size;
            }
        }
    }
    w.whole = pos;
    Ok(w)
}

/// What [`count`] found among frames to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Count {
    /// Data frames (large values' included).
    pub(crate) frames: u64,
    /// Where the End frame ends, if one is there.
    pub(crate) end_at: Option<u64>,
    /// The id of a value forwarded by reference, if one is there (counting
    /// stops at it: a link cannot carry it).
    pub(crate) forwarded: Option<u64>,
}

/// Counts the Data frames among whole frames from a trusted ring, says
/// where the End frame ends if one is there, and calls `large` with the
/// offset and reference of each frame that refers to a large value.
pub(crate) fn count(bytes: &[u8], mut large: impl FnMut(u64, LargeRef)) -> Count {
    let mut c = Count::default();
    let mut pos = 0u64;
    let total = bytes.len() as u64;
    while total - pos >= HEADER_LEN {
        let h = Header::parse(&bytes[pos as usize..(pos + HEADER_LEN) as usize]);
        let size = frame_size(u64::from(h.len));
        if h.code == FORWARD_CODE {
            c.forwarded = Some(h.seq);
            return c;
        }
        if h.code == LARGE_CODE {
            let payload = &bytes[(pos + HEADER_LEN) as usize..(pos + size) as usize];
            if let Some(r) = LargeRef::from_bytes(payload) {
                large(pos, r);
            }
        }
        pos += size;
        match h.kind {
            Some(FrameKind::End) => {
                c.end_at = Some(pos);
                return c;
            }
            _ => c.frames += 1,
        }
    }
    c
}

/// A grant of credit: cumulative bytes the sender may have sent; or what
/// landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Of the frames' stream.
    Ring(u64),
    /// Of large values' bodies.
    Body(u64),
    /// Stream bytes of whole frames landed in the mirror (a large value's
    /// frame with its body).
    Landed(u64),
}

/// The credit message of `grant`.
#[inline]
pub(crate) fn credit(grant: Grant) -> [u8; CREDIT_LEN] {
    let (magic, granted) = match grant {
        Grant::Ring(g) => (RING_MAGIC, g),
        Grant::Body(g) => (BODY_MAGIC, g),
        Grant::Landed(g) => (LANDED_MAGIC, g),
    };
    message(magic, granted)
}

fn message(magic: [u8; 4], word: u64) -> [u8; CREDIT_LEN] {
    let mut m = [0u8; CREDIT_LEN];
    m[..4].copy_from_slice(&magic);
    m[8..].copy_from_slice(&word.to_le_bytes());
    m
}

/// The receiver's first message: the stream resumes at ring position `at`.
#[inline]
pub(crate) fn resume(at: u64) -> [u8; CREDIT_LEN] {
    message(RESUME_MAGIC, at)
}

/// The position a [`resume`] message names.
pub(crate) fn parse_resume(m: &[u8; CREDIT_LEN]) -> Result<u64, BadCredit> {
    if m[..4] != RESUME_MAGIC || m[4..8] != [0; 4] {
        return Err(BadCredit::Garbage(m[..8].try_into().expect("8 bytes")));
    }
    Ok(u64::from_le_bytes(m[8..].try_into().expect("8 bytes")))
}

/// The longest a batch of waiting messages takes: one of each kind.
pub(crate) const OUTGOING_LEN: usize = 3 * CREDIT_LEN;

/// The grants waiting to go to the sender: only the newest of each kind
/// matters.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    ring: Option<u64>,
    body: Option<u64>,
    landed: Option<u64>,
}

impl Outgoing {
    /// Queues `grant`, replacing an older one of its kind.
    pub(crate) fn push(&mut self, grant: Grant) {
        match grant {
            Grant::Ring(g) => self.ring = Some(g),
            Grant::Body(g) => self.body = Some(g),
            Grant::Landed(g) => self.landed = Some(g),
        }
    }

    /// Queues each of `grants` there is.
    pub(crate) fn push_all(&mut self, grants: [Option<Grant>; 3]) {
        for grant in grants.into_iter().flatten() {
            self.push(grant);
        }
    }

    /// Whether a grant waits.
    pub(crate) fn pending(&self) -> bool {
        self.ring.is_some() || self.body.is_some() || self.landed.is_some()
    }

    /// The messages of the grants waiting, written into `buf`; returns their
    /// length (0 if none waits).
    pub(crate) fn take(&mut self, buf: &mut [u8; OUTGOING_LEN]) -> usize {
        let mut n = 0;
        for grant in [
            self.ring.take().map(Grant::Ring),
            self.body.take().map(Grant::Body),
            self.landed.take().map(Grant::Landed),
        ]
        .into_iter()
        .flatten()
        {
            buf[n..n + CREDIT_LEN].copy_from_slice(&credit(grant));
            n += CREDIT_LEN;
        }
        n
    }
}

/// Why the sender rejected what the receiver sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadCredit {
    /// Not a credit message.
    #[error("not a credit message (bytes {0:02x?})")]
    Garbage([u8; 8]),
    /// A grant below an earlier one: credit only grows.
    #[error("grant of {granted} bytes after one of {before}")]
    Shrank {
        /// The new grant.
        granted: u64,
        /// The earlier, larger one.
        before: u64,
    },
    /// More bytes said landed than were sent.
    #[error("{landed} bytes said landed, only {sent} sent")]
    Landed {
        /// Bytes said landed.
        landed: u64,
        /// Bytes sent.
        sent: u64,
    },
}

/// One kind of credit as the sender counts it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Credit {
    /// Cumulative bytes the receiver granted.
    granted: u64,
    /// Cumulative bytes sent (or handed to the kernel).
    sent: u64,
}

impl Credit {
    /// Bytes that may be sent now.
    #[inline]
    pub(crate) fn available(&self) -> u64 {
        self.granted - self.sent
    }

    /// Counts `n` bytes as sent; they must be within [`available`](Self::available).
    #[inline]
    pub(crate) fn sent(&mut self, n: u64) {
        debug_assert!(n <= self.available());
        self.sent += n;
    }

    /// Takes back `n` bytes counted as sent that the socket did not take.
    #[inline]
    pub(crate) fn unsend(&mut self, n: u64) {
        self.sent -= n;
    }

    fn grant(&mut self, granted: u64) -> Result<(), BadCredit> {
        if granted < self.granted {
            return Err(BadCredit::Shrank {
                granted,
                before: self.granted,
            });
        }
        self.granted = granted;
        Ok(())
    }
}

/// The sender's view of its credit: parses credit messages (which a TCP
/// stream may split anywhere) and says how much may be sent.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// For the frames' stream.
    pub(crate) ring: Credit,
    /// For large values' bodies.
    pub(crate) body: Credit,
    /// Stream bytes landed (cumulative, as the receiver said).
    pub(crate) landed: u64,
    carry: [u8; CREDIT_LEN],
    carried: usize,
}

impl Window {
    /// Takes bytes received from the peer.
    pub(crate) fn receive(&mut self, mut bytes: &[u8]) -> Result<(), BadCredit> {
        while !bytes.is_empty() {
            let take = (CREDIT_LEN - self.carried).min(bytes.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            if self.carried == CREDIT_LEN {
                self.carried = 0;
                let m = self.carry;
                let granted = u64::from_le_bytes(m[8..].try_into().expect("8 bytes"));
                if m[..4] == LANDED_MAGIC && m[4..8] == [0; 4] {
                    if granted < self.landed {
                        return Err(BadCredit::Shrank {
                            granted,
                            before: self.landed,
                        });
                    }
                    self.landed = granted;
                    continue;
                }
                let credit = match m[..4].try_into().expect("4 bytes") {
                    _ if m[4..8] != [0; 4] => None,
                    RING_MAGIC => Some(&mut self.ring),
                    BODY_MAGIC => Some(&mut self.body),
                    _ => None,
                };
                let Some(credit) = credit else {
                    return Err(BadCredit::Garbage(m[..8].try_into().expect("8 bytes")));
                };
                credit.grant(granted)?;
            }
        }
        Ok(())
    }
}

/// When the receiver grants credit of one kind: it may grant up to a limit
/// (for frames, the stream offset below which the mirror ring has room; for
/// bodies, the end of the body being landed or of the arena's room for it,
/// whichever is first); it does once the new room is worth a message (an
/// eighth of the ring or arena), or whenever there is any and it is about
/// to wait, so that a sender short of credit is never left waiting for room
/// the receiver already has.
#[derive(Debug)]
pub(crate) struct Grants {
    granted: u64,
    step: u64,
}

impl Grants {
    pub(crate) fn new(capacity: u64) -> Self {
        Grants {
            granted: 0,
            step: (capacity / 8).max(1),
        }
    }

    /// Cumulative bytes granted.
    #[inline]
    pub(crate) fn granted(&self) -> u64 {
        self.granted
    }

    /// The grant to send, if any, given the ring's room up to `limit`.
    #[inline]
    pub(crate) fn next(&mut self, limit: u64, about_to_wait: bool) -> Option<u64> {
        let more = limit.saturating_sub(self.granted);
        if more >= self.step || (more > 0 && about_to_wait) {
            self.granted = limit;
            Some(limit)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u32, len: u32, seq: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.resize(frame_size(u64::from(len)) as usize, 0xEE);
        v
    }

    #[test]
    fn walk_stops_at_incomplete_frames_and_end() {
        let mut b = frame(1, 5, 1);
        b.extend(frame(1, 40, 2));
        let full = b.len() as u64;
        b.extend(frame(2, 0, 3));
        assert_eq!(
            walk(&b, 100, 0),
            Ok(Walk {
                whole: full,
                frames: 2,
                end: Some((3, 16)),
                large: None
            })
        );
        for cut in 0..b.len() - 16 {
            let w = walk(&b[..cut], 100, 0).unwrap();
            assert!(w.whole <= cut as u64 && w.end.is_none());
        }
        assert_eq!(
            count(&b, |_, _| panic!("no large value")),
            Count {
                frames: 2,
                end_at: Some(b.len() as u64),
                forwarded: None,
            }
        );
    }

    fn large_frame(seq: u64, len: u64) -> Vec<u8> {
        let mut v = frame(LARGE_CODE, 16, seq);
        v[16..].copy_from_slice(&LargeRef { pos: 4096, len }.to_bytes());
        v
    }

    #[test]
    fn walk_stops_after_the_frame_of_a_large_value() {
        let mut b = frame(1, 5, 1);
        let before = b.len() as u64;
        b.extend(large_frame(2, 1000));
        for cut in 0..b.len() {
            let w = walk(&b[..cut], 100, 1000).unwrap();
            assert_eq!(w.large, None, "cut at {cut}");
        }
        let w = walk(&b, 100, 1000).unwrap();
        assert_eq!((w.whole, w.frames, w.large), (before, 1, Some(1000)));
        // Its body comes only once credit for it was granted.
        let mut after = b.clone();
        after.extend([7; 3]);
        assert_eq!(
            walk(&after, 100, 1000),
            Err(BadFrame::AfterLarge { bytes: 3 })
        );
        // Larger than the arena, or with no arena at all.
        assert_eq!(
            walk(&b, 100, 999),
            Err(BadFrame::LargeValue {
                len: 1000,
                max: 999,
                offset: before
            })
        );
        let mut bad = large_frame(2, 10);
        bad[0] = 8;
        assert_eq!(
            walk(&bad, 100, 1000),
            Err(BadFrame::BadLargeRef { len: 8, offset: 0 })
        );
        // An empty value: no body to grant, so none.
        assert_eq!(
            walk(&large_frame(2, 0), 100, 1000),
            Err(BadFrame::BadLargeRef { len: 16, offset: 0 })
        );
        let mut seen = Vec::new();
        b.extend(frame(2, 0, 3));
        let c = count(&b, |at, r| seen.push((at, r.len)));
        assert_eq!(c.frames, 2);
        assert_eq!(seen, vec![(before, 1000)]);
    }

    #[test]
    fn walk_rejects_bad_headers() {
        assert!(matches!(
            walk(&frame(9, 0, 0), 100, 0),
            Err(BadFrame::UnknownKind { code: 9, offset: 0 })
        ));
        assert!(matches!(
            walk(&frame(1, 101, 0)[..16], 100, 0),
            Err(BadFrame::TooLarge { len: 101, .. })
        ));
        assert!(matches!(
            walk(&frame(2, 4, 0), 100, 0),
            Err(BadFrame::EndWithPayload { len: 4, .. })
        ));
        let mut b = frame(2, 0, 0);
        b.push(0);
        assert!(matches!(
            walk(&b, 100, 0),
            Err(BadFrame::AfterEnd { bytes: 1 })
        ));
    }

    #[test]
    fn window_parses_split_credits_of_both_kinds_and_rejects_garbage() {
        let mut w = Window::default();
        let mut bytes = credit(Grant::Ring(100)).to_vec();
        bytes.extend(credit(Grant::Body(70)));
        bytes.extend(credit(Grant::Ring(250)));
        for chunk in bytes.chunks(5) {
            w.receive(chunk).unwrap();
        }
        assert_eq!((w.ring.available(), w.body.available()), (250, 70));
        w.ring.sent(200);
        w.body.sent(70);
        assert_eq!((w.ring.available(), w.body.available()), (50, 0));
        assert!(matches!(
            w.receive(&credit(Grant::Ring(10))),
            Err(BadCredit::Shrank { .. })
        ));
        assert!(matches!(
            w.receive(&credit(Grant::Body(69))),
            Err(BadCredit::Shrank {
                granted: 69,
                before: 70
            })
        ));
        let mut w = Window::default();
        assert!(matches!(w.receive(&[1; 16]), Err(BadCredit::Garbage(_))));
    }

    #[test]
    fn outgoing_keeps_the_newest_grant_of_each_kind() {
        let mut out = Outgoing::default();
        let mut buf = [0u8; OUTGOING_LEN];
        assert_eq!(out.take(&mut buf), 0);
        out.push(Grant::Ring(5));
        out.push(Grant::Body(9));
        out.push(Grant::Ring(8));
        out.push(Grant::Landed(3));
        out.push(Grant::Landed(4));
        assert!(out.pending());
        assert_eq!(out.take(&mut buf), 3 * CREDIT_LEN);
        assert!(!out.pending());
        let mut w = Window::default();
        w.receive(&buf).unwrap();
        assert_eq!((w.ring.available(), w.body.available()), (8, 9));
        assert_eq!(w.landed, 4);
        // What landed never shrinks.
        assert!(matches!(
            w.receive(&credit(Grant::Landed(2))),
            Err(BadCredit::Shrank {
                granted: 2,
                before: 4
            })
        ));
    }

    #[test]
    fn a_resume_message_reads_back_and_nothing_else_does() {
        assert_eq!(parse_resume(&resume(4096)), Ok(4096));
        assert!(matches!(
            parse_resume(&credit(Grant::Ring(4096))),
            Err(BadCredit::Garbage(_))
        ));
    }

    #[test]
    fn grants_batch_unless_about_to_wait() {
        let mut g = Grants::new(800);
        assert_eq!(g.next(800, false), Some(800));
        assert_eq!(g.next(850, false), None);
        assert_eq!(g.next(900, false), Some(900));
        assert_eq!(g.next(910, true), Some(910));
        assert_eq!(g.next(910, true), None);
    }
}
