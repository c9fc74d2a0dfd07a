//! The sender's side of a link, without I/O: which ring bytes go next, how
//! much credit there is for them, and when the stream is done.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::shm::arena::LargeRef;
use crate::shm::RingReader;

use super::error::LinkError;
use super::protocol::{self, Window, LARGE_FRAME_LEN};
use super::LinkStats;

/// A large value to send after its frame: its body, from the producer's
/// arena.
#[derive(Debug)]
struct Body {
    /// Ring position of its frame.
    frame: u64,
    /// Where it lies in the arena.
    src: LargeRef,
    /// Bytes of it handed to the kernel, and taken by the socket.
    queued: u64,
    sent: u64,
}

impl Body {
    /// Ring position where its frame ends: the body goes once the ring's
    /// bytes up to there are in the socket.
    fn after(&self) -> u64 {
        self.frame + LARGE_FRAME_LEN
    }
}

/// The producer ring's frames on their way to the socket over one
/// connection, and the bodies of the large values among them. Positions are
/// ring positions: `cursor <= sent <= queued <= known`; the ring is
/// released only below what the receiver said landed (`base +
/// window.landed`): what is in the socket but not landed goes again over
/// the next connection if this one breaks.
#[derive(Debug)]
pub(crate) struct Outbox<'r> {
    reader: &'r mut RingReader,
    peer: SocketAddr,
    /// Ring position of the first byte of the stream.
    base: u64,
    /// Below this the socket has taken the bytes.
    sent: u64,
    /// Below this the bytes were handed to the kernel (a send in flight).
    queued: u64,
    /// Below this the frames are published and counted.
    known: u64,
    /// Where the End frame ends, once it is known.
    end_at: Option<u64>,
    /// The large values among the known frames not yet sent, in ring order.
    bodies: VecDeque<Body>,
    window: Window,
    frames: u64,
    /// Bytes of bodies the socket took.
    body_bytes: u64,
    /// How long to wait for the receiver's word of what landed before
    /// looking at the ring again.
    wait: Duration,
}

/// The shortest and longest timed wait for what landed while new frames
/// may come (a reader cannot wait on the ring and the socket at once).
const WAIT_MIN: Duration = Duration::from_micros(50);
const WAIT_MAX: Duration = Duration::from_millis(5);

impl<'r> Outbox<'r> {
    /// The frames of `reader` from its cursor on.
    pub(crate) fn new(reader: &'r mut RingReader, peer: SocketAddr) -> Self {
        let base = reader.cursor();
        Outbox {
            reader,
            peer,
            base,
            sent: base,
            queued: base,
            known: base,
            end_at: None,
            bodies: VecDeque::new(),
            window: Window::default(),
            frames: 0,
            body_bytes: 0,
            wait: WAIT_MIN,
        }
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Looks for newly published frames, waiting for some if nothing waits
    /// to go and everything sent landed (else the socket is what to wait
    /// on: the receiver's word that frames landed frees the ring the
    /// producer may be waiting for).
    pub(crate) fn refill(&mut self) -> Result<(), LinkError> {
        if self.end_at.is_some() {
            return Ok(());
        }
        let block = !self.pending() && !self.unlanded();
        let Some(end) = self.reader.published_end(block)? else {
            return Ok(());
        };
        if end > self.known {
            self.wait = WAIT_MIN;
            let known = self.known;
            let bodies = &mut self.bodies;
            let count = protocol::count(self.reader.bytes(known, end), |at, src| {
                // An empty body has nothing to send (the receiver expects
                // none); large values are never empty anyway.
                if src.len == 0 {
                    return;
                }
                bodies.push_back(Body {
                    frame: known + at,
                    src,
                    queued: 0,
                    sent: 0,
                })
            });
            // Map each new body now, so that sending it cannot fail.
            for body in self.bodies.iter().filter(|b| b.frame >= known) {
                self.reader
                    .large(body.src)
                    .map_err(|message| LinkError::Arena {
                        peer: self.peer,
                        message,
                    })?;
            }
            if let Some(seq) = count.forwarded {
                return Err(LinkError::Forwarded {
                    peer: self.peer,
                    seq,
                });
            }
            self.frames += count.frames;
            self.end_at = count.end_at.map(|e| known + e);
            self.known = end;
        }
        Ok(())
    }

    /// The body to send now, if the ring's bytes up to it are in the socket.
    #[inline]
    fn body(&self) -> Option<&Body> {
        self.bodies.front().filter(|b| b.after() == self.sent)
    }

    /// Ring bytes that may go before the next body.
    #[inline]
    fn ring_unqueued(&self) -> u64 {
        self.bodies.front().map_or(self.known, Body::after) - self.queued
    }

    /// Whether bytes wait to go (whatever the credit).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.known > self.queued || !self.bodies.is_empty()
    }

    /// Whether bytes sent have not been said landed.
    #[inline]
    fn unlanded(&self) -> bool {
        self.reader.cursor() < self.sent
    }

    /// How long to wait for the socket, with nothing to send: forever if
    /// everything sent landed (then [`refill`](Self::refill) waited for the
    /// ring), else a while, growing as nothing happens, before looking at
    /// the ring again.
    pub(crate) fn idle_timeout(&mut self) -> Option<Duration> {
        if !self.unlanded() || self.end_at.is_some() {
            return None;
        }
        let t = self.wait;
        self.wait = (self.wait * 2).min(WAIT_MAX);
        Some(t)
    }

    /// The next bytes to send: ring bytes up to the next body, or the
    /// body's, as many as the credit of their kind covers (possibly none).
    /// Valid until [`complete`](Self::complete) releases them, whatever
    /// borrows of `self` end.
    #[inline]
    pub(crate) fn next(&self) -> (*const u8, usize) {
        if let Some(b) = self.body() {
            let n = (b.src.len - b.queued).min(self.window.body.available());
            // `refill` mapped it; a body stays in the arena until its frame
            // is released, after the last of its bytes is in the socket.
            let bytes = self.reader.large(b.src).expect("mapped at refill");
            return (bytes[b.queued as usize..].as_ptr(), n as usize);
        }
        let n = self.ring_unqueued().min(self.window.ring.available());
        (self.reader.at(self.queued), n as usize)
    }

    /// Counts `n` bytes from [`next`](Self::next) as handed to the kernel.
    #[inline]
    pub(crate) fn queue(&mut self, n: usize) {
        if self.body().is_some() {
            let b = self.bodies.front_mut().expect("a body");
            b.queued += n as u64;
            self.window.body.sent(n as u64);
        } else {
            self.queued += n as u64;
            self.window.ring.sent(n as u64);
        }
    }

    /// `n` bytes of what was queued are in the socket.
    #[inline]
    pub(crate) fn complete(&mut self, n: usize) {
        if self.body().is_some() {
            let b = self.bodies.front_mut().expect("a body");
            b.sent += n as u64;
            self.body_bytes += n as u64;
            debug_assert!(b.sent <= b.queued);
            if b.sent == b.src.len {
                self.bodies.pop_front();
            }
        } else {
            self.sent += n as u64;
            debug_assert!(self.sent <= self.queued);
        }
    }

    /// A queued send that took only part of its bytes: the rest go again.
    #[inline]
    pub(crate) fn requeue_from_sent(&mut self) {
        if self.body().is_some() {
            let b = self.bodies.front_mut().expect("a body");
            let back = b.queued - b.sent;
            b.queued = b.sent;
            self.window.body.unsend(back);
        } else {
            let back = self.queued - self.sent;
            self.queued = self.sent;
            self.window.ring.unsend(back);
        }
    }

    /// Whether the End frame is in the socket.
    #[inline]
    pub(crate) fn done(&self) -> bool {
        self.end_at == Some(self.sent) && self.bodies.is_empty()
    }

    /// Whether the receiver said the End frame landed: the stream is
    /// whole at the other end.
    pub(crate) fn end_landed(&self) -> bool {
        self.end_at
            .is_some_and(|end| self.base + self.window.landed >= end)
    }

    /// The error for a connection that ended after the End frame went out
    /// and before the receiver said it landed.
    pub(crate) fn unconfirmed(&self) -> LinkError {
        LinkError::EndUnconfirmed { peer: self.peer }
    }

    /// Takes credit messages, and releases the frames that landed.
    pub(crate) fn credit(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.window
            .receive(bytes)
            .map_err(|credit| LinkError::BadCredit {
                peer: self.peer,
                credit,
            })?;
        let landed = self.base + self.window.landed;
        // Whole frames land only once they were sent, a large value's frame
        // with its body: past what was handed to the kernel, the receiver
        // lies. (A send may have landed before its completion is reaped;
        // the kernel copied its bytes into the socket by then.)
        if landed > self.queued {
            return Err(LinkError::BadCredit {
                peer: self.peer,
                credit: super::error::BadCredit::Landed {
                    landed: self.window.landed,
                    sent: self.queued - self.base,
                },
            });
        }
        if landed > self.reader.cursor() {
            self.reader.release_to(landed);
            self.wait = WAIT_MIN;
        }
        Ok(())
    }

    /// Whether bytes wait to go and the credit of their kind is used up.
    #[inline]
    pub(crate) fn starved(&self) -> bool {
        match self.body() {
            Some(b) => b.queued < b.src.len && self.window.body.available() == 0,
            None => self.ring_unqueued() > 0 && self.window.ring.available() == 0,
        }
    }

    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            frames: self.frames,
            bytes: self.sent - self.base + self.body_bytes,
        }
    }
}
