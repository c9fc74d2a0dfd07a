//! The readiness backend: non-blocking socket calls and `ppoll(2)` on the
//! link's one socket (with a single descriptor per thread, epoll's interest
//! list buys nothing over poll; the behaviour is the same). It runs where
//! io_uring is refused.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::error::LinkError;
use super::landing::{Landing, SPILL};
use super::outbox::Outbox;
use super::protocol::{Grant, Outgoing, OUTGOING_LEN};
use super::sys::{self, Interest};
use super::LinkStats;

/// How long a sender that sent End waits for the receiver to close.
pub(crate) const LINGER: Duration = Duration::from_secs(10);

pub(crate) fn io(peer: std::net::SocketAddr) -> impl Fn(io::Error) -> LinkError {
    move |source| LinkError::Io { peer, source }
}

/// The error for a connection that ended before its stream did: the
/// socket's own error if it has one (a reset, a time-out: a peer gone
/// silent ends the connection with `ETIMEDOUT`), else `closed`, what the
/// end of the bytes means.
pub(crate) fn ended(stream: &TcpStream, closed: LinkError) -> LinkError {
    match stream.take_error() {
        Ok(Some(source)) => LinkError::Io {
            peer: closed.peer().unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            source,
        },
        _ => closed,
    }
}

/// The sender: see [`super::send_ring`].
pub(crate) fn send(mut out: Outbox<'_>, stream: TcpStream) -> Result<LinkStats, LinkError> {
    let fd = stream.as_raw_fd();
    let peer = out.peer();
    let mut buf = [0u8; 4096];
    loop {
        if out.done() {
            break;
        }
        // Nothing to send, everything sent landed: wait for the producer
        // (credit that comes meanwhile waits in the socket).
        out.refill()?;
        // Credit, without waiting.
        loop {
            match sys::recv(fd, &mut buf) {
                Ok(0) => return Err(ended(&stream, LinkError::PeerClosed { peer })),
                Ok(n) => out.credit(&buf[..n])?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(io(peer)(e)),
            }
        }
        let (ptr, n) = out.next();
        if n == 0 {
            // Short of credit: wait for it; else, sent bytes not landed:
            // wait for the word that they did (the producer may wait for
            // the room), a while, then look at the ring again.
            let timeout = out.idle_timeout();
            if out.starved() || timeout.is_some() {
                let read = Interest {
                    read: true,
                    write: false,
                };
                let timeout = timeout.filter(|_| !out.starved());
                sys::wait(fd, read, timeout).map_err(io(peer))?;
            }
            continue;
        }
        // SAFETY: `next` hands out published, unreleased ring bytes that
        // stay valid until `complete` releases them, below.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, n) };
        match sys::send(fd, bytes) {
            Ok(k) => {
                out.queue(k);
                out.complete(k);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sys::wait(
                    fd,
                    Interest {
                        read: true,
                        write: true,
                    },
                    None,
                )
                .map_err(io(peer))?;
            }
            Err(e) => return Err(io(peer)(e)),
        }
    }
    linger(&stream, &mut out, &mut buf);
    confirmed(&out)
}

/// The end of a sender whose End frame went out: done if the receiver
/// said it landed, else a connection ended too early (a new one resumes).
pub(crate) fn confirmed(out: &Outbox<'_>) -> Result<LinkStats, LinkError> {
    if out.end_landed() {
        Ok(out.stats())
    } else {
        Err(out.unconfirmed())
    }
}

/// After End: half-closes and reads until the receiver closes, taking its
/// last word (the End frame landed), so that no unread credit turns our
/// close into a reset that could destroy data the receiver has not read
/// yet.
fn linger(stream: &TcpStream, out: &mut Outbox<'_>, buf: &mut [u8]) {
    let _ = stream.shutdown(Shutdown::Write);
    let fd = stream.as_raw_fd();
    let deadline = Instant::now() + LINGER;
    loop {
        match sys::recv(fd, buf) {
            Ok(0) => return,
            Ok(n) => {
                if out.credit(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                let read = Interest {
                    read: true,
                    write: false,
                };
                if sys::wait(fd, read, Some(left)).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Credit messages waiting for the socket: only the newest grant of each
/// kind matters, but messages started must be finished.
#[derive(Debug)]
pub(crate) struct CreditOut {
    grants: Outgoing,
    msg: [u8; OUTGOING_LEN],
    /// Bytes of `msg` to send, and already sent.
    len: usize,
    off: usize,
}

impl Default for CreditOut {
    fn default() -> Self {
        CreditOut {
            grants: Outgoing::default(),
            msg: [0; OUTGOING_LEN],
            len: 0,
            off: 0,
        }
    }
}

impl CreditOut {
    pub(crate) fn push(&mut self, grants: [Option<Grant>; 3]) {
        self.grants.push_all(grants);
    }

    pub(crate) fn pending(&self) -> bool {
        self.off < self.len || self.grants.pending()
    }

    /// Sends what it can without blocking.
    fn flush(&mut self, fd: i32) -> io::Result<()> {
        loop {
            if self.off == self.len {
                self.len = self.grants.take(&mut self.msg);
                self.off = 0;
                if self.len == 0 {
                    return Ok(());
                }
            }
            match sys::send(fd, &self.msg[self.off..self.len]) {
                Ok(n) => self.off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The receiver: see [`super::receive_into_ring`].
pub(crate) fn receive(
    mut land: Landing<'_>,
    stream: &TcpStream,
) -> Result<(u64, LinkStats, u64), LinkError> {
    let fd = stream.as_raw_fd();
    let peer = land.peer();
    let mut credits = CreditOut::default();
    let mut spill = [0u8; SPILL];
    let seq = loop {
        credits.push(land.grant(false));
        credits.flush(fd).map_err(io(peer))?;
        let room = land.room();
        let spill_len = if room.spill { SPILL } else { 0 };
        match sys::recv_two(fd, room.at, room.len, &mut spill[..spill_len]) {
            Ok(0) => return Err(ended(stream, land.closed())),
            Ok(n) => {
                if let Some(seq) = land.landed(n, room.len, &spill)? {
                    break seq;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                credits.push(land.grant(true));
                if credits.pending() {
                    credits.flush(fd).map_err(io(peer))?;
                }
                land.flush();
                let timeout = land.wait_timeout();
                let want = Interest {
                    read: true,
                    write: credits.pending(),
                };
                sys::wait(fd, want, timeout).map_err(io(peer))?;
            }
            Err(e) => return Err(io(peer)(e)),
        }
    };
    // A credit message begun is finished: the last word follows it.
    while credits.pending() {
        credits.flush(fd).map_err(io(peer))?;
        if credits.pending() {
            let write = Interest {
                read: false,
                write: true,
            };
            sys::wait(fd, write, None).map_err(io(peer))?;
        }
    }
    Ok((seq, land.stats(), land.ended_at()))
}
