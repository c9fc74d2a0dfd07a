//! The sender's side of a link, without I/O: which ring bytes go next, how
//! much credit there is for them, and when the stream is done.

use std::net::SocketAddr;

use crate::shm::RingReader;

use super::error::LinkError;
use super::protocol::{self, Window};
use super::LinkStats;

/// The producer ring's frames on their way to the socket. Positions are ring
/// positions: `cursor <= sent <= queued <= known`.
#[derive(Debug)]
pub(crate) struct Outbox {
    reader: RingReader,
    peer: SocketAddr,
    /// Ring position of the first byte of the stream.
    base: u64,
    /// Below this the socket has taken the bytes (released to the writer).
    sent: u64,
    /// Below this the bytes were handed to the kernel (a send in flight).
    queued: u64,
    /// Below this the frames are published and counted.
    known: u64,
    /// Where the End frame ends, once it is known.
    end_at: Option<u64>,
    window: Window,
    frames: u64,
}

impl Outbox {
    pub(crate) fn new(reader: RingReader, peer: SocketAddr) -> Self {
        let base = reader.cursor();
        Outbox {
            reader,
            peer,
            base,
            sent: base,
            queued: base,
            known: base,
            end_at: None,
            window: Window::default(),
            frames: 0,
        }
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Looks for newly published frames, waiting for some if `block`.
    pub(crate) fn refill(&mut self, block: bool) -> Result<(), LinkError> {
        if self.end_at.is_some() {
            return Ok(());
        }
        let Some(end) = self.reader.published_end(block)? else {
            return Ok(());
        };
        if end > self.known {
            let count = protocol::count(self.reader.bytes(self.known, end));
            if let Some((seq, len)) = count.large {
                return Err(LinkError::OutOfLine {
                    peer: self.peer,
                    seq,
                    len,
                });
            }
            self.frames += count.frames;
            self.end_at = count.end_at.map(|e| self.known + e);
            self.known = end;
        }
        Ok(())
    }

    /// Bytes published and not yet handed to the kernel.
    #[inline]
    pub(crate) fn unqueued(&self) -> u64 {
        self.known - self.queued
    }

    /// The next bytes to send: as many published bytes as the credit covers
    /// (possibly none). Valid until [`complete`](Self::complete) releases
    /// them, whatever borrows of `self` end.
    #[inline]
    pub(crate) fn next(&self) -> (*const u8, usize) {
        let n = self.unqueued().min(self.window.available());
        (self.reader.at(self.queued), n as usize)
    }

    /// Counts `n` bytes from [`next`](Self::next) as handed to the kernel.
    #[inline]
    pub(crate) fn queue(&mut self, n: usize) {
        self.queued += n as u64;
        self.window.sent(n as u64);
    }

    /// `n` bytes of what was queued are in the socket: release them.
    #[inline]
    pub(crate) fn complete(&mut self, n: usize) {
        self.sent += n as u64;
        debug_assert!(self.sent <= self.queued);
        self.reader.release_to(self.sent);
    }

    /// A queued send that took only part of its bytes: the rest go again.
    #[inline]
    pub(crate) fn requeue_from_sent(&mut self) {
        let back = self.queued - self.sent;
        self.queued = self.sent;
        self.window.unsend(back);
    }

    /// Whether the End frame is in the socket.
    #[inline]
    pub(crate) fn done(&self) -> bool {
        self.end_at == Some(self.sent)
    }

    /// Takes credit messages.
    pub(crate) fn credit(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.window
            .receive(bytes)
            .map_err(|credit| LinkError::BadCredit {
                peer: self.peer,
                credit,
            })
    }

    /// Whether all published bytes are queued and the credit is used up.
    #[inline]
    pub(crate) fn starved(&self) -> bool {
        self.unqueued() > 0 && self.window.available() == 0
    }

    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            frames: self.frames,
            bytes: self.sent - self.base,
        }
    }
}
