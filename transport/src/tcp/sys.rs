//! The few socket calls the readiness backend makes, as safe functions over
//! a raw descriptor: non-blocking send and receive, and a wait for
//! readiness on one socket.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Sends from `buf` without blocking; `WouldBlock` when the socket buffer is
/// full. Never raises SIGPIPE.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads for the
        // duration of the call; the kernel reads nothing after it returns.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives into `buf` without blocking; `Ok(0)` is the end of the stream,
/// `WouldBlock` means nothing is there.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    recv_two(fd, buf.as_mut_ptr(), buf.len(), &mut [])
}

/// Receives without blocking into `len` bytes at `dst`, then into `spill`
/// (which catches what a peer sends past its credit). Returns the bytes
/// received in all; `Ok(0)` is the end of the stream.
pub(crate) fn recv_two(fd: RawFd, dst: *mut u8, len: usize, spill: &mut [u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: dst.cast(),
            iov_len: len,
        },
        libc::iovec {
            iov_base: spill.as_mut_ptr().cast(),
            iov_len: spill.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is a valid one with no name and no control
    // data; we fill in the vector below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if spill.is_empty() { 1 } else { 2 };
    loop {
        // Both vectors point at memory valid for writes of their
        // length for the call: `dst` by the caller's contract (see
        // `Landing::room`), `spill` as a borrowed slice; the kernel writes
        // nothing after the call returns.
        // SAFETY: both vectors are valid for writes during the call, as above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Readiness a wait can ask for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// Waits until the socket is ready as asked (or has an error or a hang-up,
/// which the next call reports), or `timeout` passes.
pub(crate) fn wait(fd: RawFd, interest: Interest, timeout: Option<Duration>) -> io::Result<()> {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfd` is one valid pollfd, `tsp` null or a valid timespec, both
    // live across the call; no signal mask is passed.
    let r = unsafe { libc::ppoll(&mut pfd, 1, tsp, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Turns on keep-alive probes (first after `timeout / 2` idle, then every
/// `timeout / 4`, two unanswered end the connection) and bounds how long
/// sent bytes may go unacknowledged (`TCP_USER_TIMEOUT`) on socket `fd`.
pub(crate) fn watch_liveness(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    let secs = |d: Duration| d.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(timeout / 2)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(timeout / 4)),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 2),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms),
    ] {
        // SAFETY: `value` is a live c_int for the duration of the call,
        // its size given; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
