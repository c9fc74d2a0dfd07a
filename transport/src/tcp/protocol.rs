//! The link's protocol, without I/O: what the bytes on the wire are, how the
//! receiver checks them, and how credit is counted on both sides. Both
//! backends drive these same types, so they behave the same by construction.
//!
//! After the handshake ([`crate::auth`]) a data connection carries:
//! - sender → receiver: the producer ring's frames, byte for byte as they lie
//!   in the ring (16-byte header `len: u32, kind: u32, seq: u64`, little
//!   endian, then the payload padded to 16 bytes), ending with the End frame;
//! - receiver → sender: [credit messages](CREDIT_LEN), each the cumulative
//!   number of stream bytes the sender may have sent.

use crate::shm::arena::{LargeRef, LARGE_CODE};
use crate::shm::FrameKind;

use super::error::BadFrame;

/// Size of a frame header on the wire (and in a ring).
pub(crate) const HEADER_LEN: u64 = 16;

/// Size of a credit message: magic `CDcr` (4 bytes), 4 zero bytes, then the
/// cumulative grant (`u64`, little endian).
pub(crate) const CREDIT_LEN: usize = 16;

/// Opens every credit message.
const CREDIT_MAGIC: [u8; 4] = *b"CDcr";

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
}

/// Walks the frames at the start of `bytes`, checking each header: a known
/// kind, a payload of at most `max_payload` bytes, an empty End. Stops at the
/// first incomplete frame or after the End frame (bytes after End are an
/// error: End is the last thing a sender sends).
pub(crate) fn walk(bytes: &[u8], max_payload: u64) -> Result<Walk, BadFrame> {
    let mut w = Walk::default();
    let mut pos = 0u64;
    let total = bytes.len() as u64;
    while total - pos >= HEADER_LEN {
        let h = Header::parse(&bytes[pos as usize..(pos + HEADER_LEN) as usize]);
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
    /// Data frames.
    pub(crate) frames: u64,
    /// Where the End frame ends, if one is there.
    pub(crate) end_at: Option<u64>,
    /// The id and length of the first value stored out of line, if any
    /// (counting stops there: it cannot be sent).
    pub(crate) large: Option<(u64, u64)>,
}

/// Counts the Data frames among whole frames from a trusted ring, and says
/// where the End frame ends if one is there.
pub(crate) fn count(bytes: &[u8]) -> Count {
    let mut c = Count::default();
    let mut pos = 0u64;
    let total = bytes.len() as u64;
    while total - pos >= HEADER_LEN {
        let h = Header::parse(&bytes[pos as usize..(pos + HEADER_LEN) as usize]);
        if h.code == LARGE_CODE {
            let payload = &bytes[(pos + HEADER_LEN) as usize..];
            let len = LargeRef::from_bytes(&payload[..16.min(payload.len())]).map_or(0, |r| r.len);
            c.large = Some((h.seq, len));
            return c;
        }
        let size = frame_size(u64::from(h.len));
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

/// A credit message granting `granted` cumulative bytes.
#[inline]
pub(crate) fn credit(granted: u64) -> [u8; CREDIT_LEN] {
    let mut m = [0u8; CREDIT_LEN];
    m[..4].copy_from_slice(&CREDIT_MAGIC);
    m[8..].copy_from_slice(&granted.to_le_bytes());
    m
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
}

/// The sender's view of its credit: parses credit messages (which a TCP
/// stream may split anywhere) and says how much may be sent.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Cumulative bytes the receiver granted.
    granted: u64,
    /// Cumulative bytes sent (or handed to the kernel).
    sent: u64,
    carry: [u8; CREDIT_LEN],
    carried: usize,
}

impl Window {
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
                if m[..4] != CREDIT_MAGIC || m[4..8] != [0; 4] {
                    return Err(BadCredit::Garbage(m[..8].try_into().expect("8 bytes")));
                }
                let granted = u64::from_le_bytes(m[8..].try_into().expect("8 bytes"));
                if granted < self.granted {
                    return Err(BadCredit::Shrank {
                        granted,
                        before: self.granted,
                    });
                }
                self.granted = granted;
            }
        }
        Ok(())
    }
}

/// When the receiver grants credit: it may grant up to the mirror ring's
/// limit (stream offset below which the ring has room); it does once the new
/// room is worth a message (an eighth of the ring), or whenever there is any
/// and it is about to wait, so that a sender short of credit is never left
/// waiting for room the ring already has.
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
            walk(&b, 100),
            Ok(Walk {
                whole: full,
                frames: 2,
                end: Some((3, 16))
            })
        );
        for cut in 0..b.len() - 16 {
            let w = walk(&b[..cut], 100).unwrap();
            assert!(w.whole <= cut as u64 && w.end.is_none());
        }
        assert_eq!(
            count(&b),
            Count {
                frames: 2,
                end_at: Some(b.len() as u64),
                large: None
            }
        );
    }

    #[test]
    fn walk_rejects_bad_headers() {
        assert!(matches!(
            walk(&frame(9, 0, 0), 100),
            Err(BadFrame::UnknownKind { code: 9, offset: 0 })
        ));
        assert!(matches!(
            walk(&frame(1, 101, 0)[..16], 100),
            Err(BadFrame::TooLarge { len: 101, .. })
        ));
        assert!(matches!(
            walk(&frame(2, 4, 0), 100),
            Err(BadFrame::EndWithPayload { len: 4, .. })
        ));
        let mut b = frame(2, 0, 0);
        b.push(0);
        assert!(matches!(
            walk(&b, 100),
            Err(BadFrame::AfterEnd { bytes: 1 })
        ));
    }

    #[test]
    fn window_parses_split_credits_and_rejects_garbage() {
        let mut w = Window::default();
        let mut bytes = credit(100).to_vec();
        bytes.extend(credit(250));
        for chunk in bytes.chunks(5) {
            w.receive(chunk).unwrap();
        }
        assert_eq!(w.available(), 250);
        w.sent(200);
        assert_eq!(w.available(), 50);
        assert!(matches!(
            w.receive(&credit(10)),
            Err(BadCredit::Shrank { .. })
        ));
        let mut w = Window::default();
        assert!(matches!(w.receive(&[1; 16]), Err(BadCredit::Garbage(_))));
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
