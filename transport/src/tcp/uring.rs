//! The io_uring backend: the same protocol as the readiness backend, driven
//! by completions.
//!
//! - The sender submits one `SEND` at a time covering every published frame
//!   the credit allows (often hundreds of frames, up to the whole ring),
//!   straight from the producer ring's mapped memory (contiguous thanks to
//!   the double mapping: no side buffer, no copy in user space), with
//!   `MSG_WAITALL` so that the kernel finishes it; a `RECV` for credit stays
//!   armed beside it, and both go to the kernel in one `io_uring_enter`.
//! - The receiver keeps one `RECVMSG` armed whose first vector is the mirror
//!   ring's free space (bytes land in place, as with the readiness backend)
//!   and whose second is a small spill that catches a sender overrunning its
//!   credit; a credit `SEND` rides along in the same submission.
//!
//! Not used, on purpose: a provided-buffer ring with multishot receive would
//! add a copy out of the kernel's chosen buffer into the mirror ring, where
//! receiving into the ring's free space needs none (and credit messages are
//! a few per ring lap, too rare for multishot to save anything). Zero-copy
//! send (`SEND_ZC`) over loopback falls back to a copy plus a notification
//! per send: see `transport/README.md` for what it measured.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::epoll::{ended, io, LINGER};
use super::error::LinkError;
use super::landing::{Landing, SPILL};
use super::outbox::Outbox;
use super::protocol::{Outgoing, OUTGOING_LEN};
use super::LinkStats;

/// Submission queue size: at most two operations are ever in flight.
const ENTRIES: u32 = 8;
/// `user_data` of the sends (frames, or credit on the receiver).
const SEND: u64 = 1;
/// `user_data` of the receives (credit on the sender, frames on the
/// receiver).
const RECV: u64 = 2;

/// Sets up a small ring and checks the operations the backend submits.
pub(crate) fn probe() -> Result<(), String> {
    let ring: IoUring = IoUring::new(ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("the kernel lacks IORING_FEAT_EXT_ARG (timed waits)".into());
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    for (code, name) in [
        (opcode::Send::CODE, "SEND"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks IORING_OP_{name}"));
        }
    }
    Ok(())
}

/// A ring with a count of the operations in flight, so that it is never
/// dropped while the kernel may still write into our memory.
struct Driver {
    ring: IoUring,
    in_flight: u32,
}

impl Driver {
    fn new() -> io::Result<Self> {
        Ok(Driver {
            ring: IoUring::new(ENTRIES)?,
            in_flight: 0,
        })
    }

    /// Queues `entry`.
    ///
    /// # Safety
    ///
    /// Every buffer `entry` points at stays valid (and, for a receive,
    /// unaliased) until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the caller keeps the buffers valid until completion; the
        // queue has room, as at most two operations are ever in flight.
        unsafe { self.ring.submission().push(&entry) }.expect("submission queue has room");
        self.in_flight += 1;
    }

    /// Submits what is queued and waits for `want` completions, at most
    /// `timeout`; returns the completions `(user_data, result)`.
    fn turn(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<Vec<(u64, i32)>> {
        let r = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c: cqueue::Entry| (c.user_data(), c.result()))
            .collect();
        self.in_flight -= done.len() as u32;
        Ok(done)
    }

    /// Shuts the socket down, which completes whatever is in flight, and
    /// reaps it all (nothing to do if nothing is in flight).
    fn quiesce(&mut self, stream: &TcpStream) {
        if self.in_flight == 0 {
            return;
        }
        let _ = stream.shutdown(Shutdown::Both);
        while self.in_flight > 0 {
            if self.turn(1, None).is_err() {
                // The ring itself failed; leaking it (and so the memory it
                // may write) is the only safe thing left.
                let ring = std::mem::replace(
                    &mut self.ring,
                    IoUring::new(1).expect("a second ring for the leaked one's place"),
                );
                std::mem::forget(ring);
                return;
            }
        }
    }
}

/// The result of an operation as a byte count or an error.
fn done(result: i32) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result as usize)
    }
}

/// The sender: see [`super::send_ring`].
pub(crate) fn send(mut out: Outbox<'_>, stream: TcpStream) -> Result<LinkStats, LinkError> {
    let peer = out.peer();
    // Declared before the driver, dropped after it.
    let mut credit_buf = Box::new([0u8; 512]);
    let mut driver = Driver::new().map_err(io(peer))?;
    let fd = types::Fd(stream.as_raw_fd());
    let mut recv_armed = false;
    let mut sending: Option<usize> = None;
    let mut eof = false;
    let mut run = |driver: &mut Driver, credit_buf: &mut [u8; 512]| -> Result<(), LinkError> {
        loop {
            if out.done() {
                return Ok(());
            }
            if sending.is_none() {
                out.refill()?;
            }
            if !recv_armed && !eof {
                let recv = opcode::Recv::new(fd, credit_buf.as_mut_ptr(), credit_buf.len() as u32)
                    .build()
                    .user_data(RECV);
                // SAFETY: `credit_buf` outlives the driver, which reaps every
                // operation before it is dropped (`quiesce`).
                unsafe { driver.push(recv) };
                recv_armed = true;
            }
            if sending.is_none() {
                let (ptr, n) = out.next();
                if n > 0 {
                    let send = opcode::Send::new(fd, ptr, n as u32)
                        .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                        .build()
                        .user_data(SEND);
                    // `next` hands out published, unreleased ring
                    // bytes: they stay mapped and unchanged until `complete`
                    // releases them, after this send's completion; the
                    // reader (in `out`) outlives the driver's operations.
                    // SAFETY: the bytes stay mapped and unchanged until completion, as above.
                    unsafe { driver.push(send) };
                    out.queue(n);
                    sending = Some(n);
                }
            }
            let mut timeout = None;
            if sending.is_none() && !out.starved() {
                match out.idle_timeout() {
                    // Sent bytes not landed: wait for the word that they
                    // did (the producer may wait for the room), a while,
                    // then look at the ring again.
                    Some(t) => timeout = Some(t),
                    // Nothing to wait for in the kernel: look at the ring
                    // again.
                    None => {
                        driver.turn(0, None).map_err(io(peer))?;
                        continue;
                    }
                }
            }
            for (what, result) in driver.turn(1, timeout).map_err(io(peer))? {
                match what {
                    SEND => {
                        let n = sending.take().expect("a send in flight");
                        let k = done(result).map_err(io(peer))?;
                        out.complete(k);
                        if k < n {
                            out.requeue_from_sent();
                        }
                    }
                    _ => {
                        recv_armed = false;
                        match done(result).map_err(io(peer))? {
                            // The peer may have closed after our last send
                            // went through, its completion not reaped yet.
                            0 => eof = true,
                            k => out.credit(&credit_buf[..k])?,
                        }
                    }
                }
            }
            if eof && sending.is_none() {
                return if out.done() {
                    Ok(())
                } else {
                    Err(ended(&stream, LinkError::PeerClosed { peer }))
                };
            }
        }
    };
    let result = run(&mut driver, &mut credit_buf);
    if result.is_ok() && !eof {
        // After End: half-close, and wait for the receiver to close, so that
        // credit left unread does not turn our close into a reset.
        let _ = stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        'linger: loop {
            if !recv_armed {
                let recv = opcode::Recv::new(fd, credit_buf.as_mut_ptr(), credit_buf.len() as u32)
                    .build()
                    .user_data(RECV);
                // SAFETY: as above.
                unsafe { driver.push(recv) };
                recv_armed = true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Ok(done_) = driver.turn(1, Some(left)) else {
                break;
            };
            for (_, result) in done_ {
                recv_armed = false;
                if result <= 0 {
                    break 'linger;
                }
                // The receiver's last word (or credit left over).
                if out.credit(&credit_buf[..result as usize]).is_err() {
                    break 'linger;
                }
            }
        }
    }
    driver.quiesce(&stream);
    drop(driver);
    drop(credit_buf);
    result.and_then(|()| super::epoll::confirmed(&out))
}

/// What a receive in flight points at: stable in memory (boxed) until its
/// completion.
struct RecvBufs {
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
    spill: [u8; SPILL],
    credit: [u8; OUTGOING_LEN],
}

/// Sends the newest grants, unless a credit send is in flight (`sending`
/// then holds the length of the send it started).
fn send_credit(
    driver: &mut Driver,
    bufs: &mut RecvBufs,
    fd: types::Fd,
    sending: &mut Option<usize>,
    grants: &mut Outgoing,
) {
    if sending.is_some() {
        return;
    }
    let n = grants.take(&mut bufs.credit);
    if n > 0 {
        let send = opcode::Send::new(fd, bufs.credit.as_ptr(), n as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(SEND);
        // SAFETY: `bufs` is boxed and outlives the driver's operations
        // (`quiesce` reaps them before it is dropped); `credit` is not
        // written again until this send completes (`sending`).
        unsafe { driver.push(send) };
        *sending = Some(n);
    }
}

/// The receiver: see [`super::receive_into_ring`].
pub(crate) fn receive(
    mut land: Landing<'_>,
    stream: &TcpStream,
) -> Result<(u64, LinkStats, u64), LinkError> {
    let peer = land.peer();
    // SAFETY: all-zero iovecs and msghdr are valid (null, empty); they are
    // filled in before each receive.
    let mut bufs: Box<RecvBufs> = Box::new(unsafe { std::mem::zeroed() });
    let mut driver = Driver::new().map_err(io(peer))?;
    let fd = types::Fd(stream.as_raw_fd());
    let mut receiving: Option<usize> = None;
    let mut sending: Option<usize> = None;
    let mut grants = Outgoing::default();
    // The End frame's id, once it came.
    let mut end_seq = None;
    let mut run = |driver: &mut Driver, bufs: &mut RecvBufs, land: &mut Landing<'_>| {
        loop {
            if let Some(seq) = end_seq {
                // Nothing is received after End; a credit send in flight
                // finishes first (the last word follows it).
                if sending.is_none() {
                    return Ok(seq);
                }
                for (what, result) in driver.turn(1, None).map_err(io(peer))? {
                    if what == SEND {
                        sending = None;
                        done(result).map_err(io(peer))?;
                    }
                }
                continue;
            }
            grants.push_all(land.grant(false));
            send_credit(driver, bufs, fd, &mut sending, &mut grants);
            if receiving.is_none() {
                let room = land.room();
                bufs.iov = [
                    libc::iovec {
                        iov_base: room.at.cast(),
                        iov_len: room.len,
                    },
                    libc::iovec {
                        iov_base: bufs.spill.as_mut_ptr().cast(),
                        iov_len: SPILL,
                    },
                ];
                bufs.msg.msg_iov = bufs.iov.as_mut_ptr();
                bufs.msg.msg_iovlen = if room.spill { 2 } else { 1 };
                let recv = opcode::RecvMsg::new(fd, &mut bufs.msg)
                    .build()
                    .user_data(RECV);
                // The first vector is the mirror's free space (of its
                // ring, or of its arena for a body) below the credit
                // granted, which only this side writes and which
                // stays mapped while `land` lives (it outlives the driver's
                // operations); the message, vectors and spill are boxed and
                // outlive them too (`quiesce`).
                // SAFETY: every buffer outlives the operation, as above.
                unsafe { driver.push(recv) };
                receiving = Some(room.len);
            }
            let mut got = driver.turn(0, None).map_err(io(peer))?;
            if got.is_empty() {
                grants.push_all(land.grant(true));
                send_credit(driver, bufs, fd, &mut sending, &mut grants);
                land.flush();
                let timeout = land.wait_timeout();
                got = driver.turn(1, timeout).map_err(io(peer))?;
            }
            for (what, result) in got {
                if what == SEND {
                    let n = sending.take().expect("a credit send in flight");
                    if done(result).map_err(io(peer))? < n {
                        let short = io::Error::new(io::ErrorKind::WriteZero, "short credit send");
                        return Err(io(peer)(short));
                    }
                    continue;
                }
                let room = receiving.take().expect("a receive in flight");
                match done(result).map_err(io(peer))? {
                    0 => return Err(ended(stream, land.closed())),
                    n => {
                        if let Some(seq) = land.landed(n, room, &bufs.spill)? {
                            end_seq = Some(seq);
                        }
                    }
                }
            }
        }
    };
    let result = run(&mut driver, &mut bufs, &mut land);
    driver.quiesce(stream);
    drop(driver);
    drop(bufs);
    let seq = result?;
    Ok((seq, land.stats(), land.ended_at()))
}
