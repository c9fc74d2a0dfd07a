//! TCP links: the cross-host data plane.
//!
//! For each edge whose ends are on different hosts, a thread in the
//! producer's process runs [`send_ring`]: it streams the frames of the
//! producer's own ring (through a [`RingReader`] it attached) to the remote
//! host, where a thread runs [`receive_into_ring`], landing them in a local
//! *mirror* ring that the consumer reads like any other.
//!
//! - **On the wire**, after the [handshake](crate::auth), the frames go byte
//!   for byte as they lie in the ring (16-byte header, payload padded to 16),
//!   so the sender sends straight from the ring's mapped memory and the
//!   receiver receives straight into the mirror's free space; the receiver
//!   sends back 16-byte credit messages. See `transport/README.md`.
//! - **Flow control** is by credit: the receiver grants (cumulative bytes)
//!   only the space its mirror ring has free, the sender never sends past the
//!   grant, so neither side buffers without bound and a slow consumer holds
//!   back, through the mirror, the link and the producer's ring, the spout.
//! - **Bad input** (a header with an unknown kind or a length past the
//!   mirror's largest payload, a truncated frame, bytes past the credit,
//!   garbage for credit) closes the connection with a typed [`LinkError`],
//!   printed once on stderr with the peer's address; the process goes on.
//!   Payloads are checked again (rkyv's checked access) when consumed.
//! - **Backends**: io_uring, or non-blocking sockets and `ppoll` where
//!   io_uring is refused; see [`io_backend`].
//!
//! ```no_run
//! # use clusterduck_transport::{auth, tcp, RingReader, RingWriter, RingName};
//! # use std::net::{TcpListener, TcpStream};
//! # use std::time::Duration;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let secret = auth::Secret::generate()?;
//! # let (name, mirror_name) = (RingName::new("doc", "a")?, RingName::new("doc", "b")?);
//! // Consumer's host: a mirror ring, its reader attached before anything lands.
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mirror = RingWriter::create(&mirror_name, 1 << 20)?;
//! let _consumer = RingReader::attach(&mirror_name)?; // the consumer's process, really
//! mirror.wait_for_readers(1, Duration::from_secs(10))?;
//! let (mut stream, _) = listener.accept()?;
//! auth::accept(&mut stream, &secret)?;
//! std::thread::spawn(move || tcp::receive_into_ring(stream, mirror, tcp::io_backend()));
//!
//! // Producer's host: a reader on the producer's ring, streamed to the peer.
//! let reader = RingReader::attach(&name)?;
//! let mut stream = TcpStream::connect(listener.local_addr()?)?;
//! auth::connect(&mut stream, &secret, 7)?;
//! let stats = tcp::send_ring(reader, stream, tcp::io_backend())?;
//! # let _ = stats; Ok(()) }
//! ```

mod backend;
mod epoll;
mod error;
mod landing;
mod outbox;
mod protocol;
mod sys;
mod uring;

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::shm::{RingReader, RingWriter};

pub use backend::{io_backend, probe_uring, IoBackend, IO_ENV};
pub use error::{BadCredit, BadFrame, LinkError};

/// What a link carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Data frames (the End frame not counted).
    pub frames: u64,
    /// Bytes of the stream: frame headers and padding included, as in the
    /// ring.
    pub bytes: u64,
}

/// The bytes a link's receiver took in so far (frames and bodies of large
/// values, as on the wire after the handshake), readable from any thread
/// while the link runs: a node's metrics show a cross-host edge's rate.
#[derive(Debug, Default)]
pub struct LinkMeter {
    bytes: AtomicU64,
}

impl LinkMeter {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// One receive took `n` bytes (a store by the link's one thread).
    #[inline]
    fn received(&self, n: usize) {
        self.bytes.store(self.bytes() + n as u64, Relaxed);
    }
}

/// The producer's side of a link: streams every frame `reader` reads (a
/// reader attached to the producer's own ring, before the frames to send
/// were written) to the peer, within the credit the peer grants, until the
/// End frame is in the socket; then waits (a while) for the peer to close.
///
/// Blocks: run it on its own thread. `stream` is connected and already
/// authenticated ([`auth::connect`](crate::auth::connect)). Frames are
/// released from the producer's ring as the socket takes them, so a slow
/// link or consumer holds the producer back. If the producer's writer goes
/// away without `finish`, this returns [`LinkError::Read`] and closes the
/// connection without End: the remote mirror then looks dropped too.
pub fn send_ring(
    reader: RingReader,
    stream: TcpStream,
    backend: IoBackend,
) -> Result<LinkStats, LinkError> {
    let peer = stream.peer_addr().map_err(LinkError::NotConnected)?;
    no_delay(&stream);
    let out = outbox::Outbox::new(reader, peer);
    let result = match backend {
        IoBackend::Uring => uring::send(out, stream),
        IoBackend::Epoll => epoll::send(out, stream),
    };
    result.inspect_err(|e| tracing::warn!("tcp send: {e}"))
}

/// The consumer's side of a link: lands the frames the peer streams in
/// `writer`, a local mirror ring, granting credit as the mirror frees
/// space, until the End frame, which it writes with
/// [`finish`](RingWriter::finish).
///
/// The consumer's reader must be attached to the mirror before this starts
/// (`writer.wait_for_readers(1, ..)`): readers only see frames written after
/// they attach, and a mirror with no reader counts as empty, so credit would
/// not wait for the consumer.
///
/// Blocks: run it on its own thread. `stream` is connected and already
/// authenticated ([`auth::accept`](crate::auth::accept)). On any error the
/// connection is closed and `writer` dropped without End (its readers get
/// `ReadError::WriterDropped`).
pub fn receive_into_ring(
    stream: TcpStream,
    writer: RingWriter,
    backend: IoBackend,
) -> Result<LinkStats, LinkError> {
    receive_into_ring_metered(stream, writer, backend, Arc::default())
}

/// [`receive_into_ring`], counting the bytes received in `meter` as they
/// come.
pub fn receive_into_ring_metered(
    stream: TcpStream,
    writer: RingWriter,
    backend: IoBackend,
    meter: Arc<LinkMeter>,
) -> Result<LinkStats, LinkError> {
    let peer = stream.peer_addr().map_err(LinkError::NotConnected)?;
    no_delay(&stream);
    let land = landing::Landing::new(writer, peer, meter);
    let result = match backend {
        IoBackend::Uring => uring::receive(land, stream),
        IoBackend::Epoll => epoll::receive(land, stream),
    };
    result.inspect_err(|e| tracing::warn!("tcp receive: {e}"))
}

/// Frames go out as soon as they are published, credit as soon as it is
/// granted: no holding back small sends until the last are acknowledged
/// (Nagle's algorithm, which with the peer's delayed acknowledgements
/// stalls a trickle of frames for 40 ms at a time). Best effort: a socket
/// that refuses still carries the stream.
fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!("tcp link: TCP_NODELAY refused ({e}): small frames may wait");
    }
}
