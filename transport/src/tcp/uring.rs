//! The io_uring backend.

use std::net::TcpStream;

use super::error::LinkError;
use super::landing::Landing;
use super::outbox::Outbox;
use super::LinkStats;

/// Sets up a small ring and checks the operations the backend submits.
pub(crate) fn probe() -> Result<(), String> {
    let ring = io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::new(8)
        .map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE: {e}"))?;
    for (code, name) in [
        (io_uring::opcode::Send::CODE, "SEND"),
        (io_uring::opcode::RecvMsg::CODE, "RECVMSG"),
        (io_uring::opcode::RecvMulti::CODE, "RECV"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks IORING_OP_{name}"));
        }
    }
    Ok(())
}

pub(crate) fn send(out: Outbox, stream: TcpStream) -> Result<LinkStats, LinkError> {
    super::epoll::send(out, stream)
}

pub(crate) fn receive(land: Landing, stream: TcpStream) -> Result<LinkStats, LinkError> {
    super::epoll::receive(land, stream)
}
