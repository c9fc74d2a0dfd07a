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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
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

/// The producer's side of a link, over as many connections as it takes:
/// it keeps its reader (a reader of the producer's own ring) between them,
/// and the ring keeps every frame the receiver has not said landed, so a
/// broken link resumes, over a new connection, exactly where its frames
/// stopped landing.
#[derive(Debug)]
pub struct RingSender {
    reader: RingReader,
}

impl RingSender {
    /// Streams the frames `reader` reads, from its cursor on (a reader
    /// attached to the producer's own ring before the frames to send were
    /// written, or one taken over from a dead process that ran it).
    pub fn new(reader: RingReader) -> Self {
        RingSender { reader }
    }

    /// The ring position below which the receiver said every frame landed.
    pub fn landed(&self) -> u64 {
        self.reader.cursor()
    }

    /// Streams over `stream` (connected and already authenticated,
    /// [`auth::connect`](crate::auth::connect)), from where the receiver
    /// says its mirror ends, within the credit it grants, until the End
    /// frame is in the socket; then waits (a while) for the receiver's word
    /// that it landed, and for the peer to close. Without that word,
    /// [`LinkError::EndUnconfirmed`].
    ///
    /// Blocks: run it on its own thread. Frames are released from the
    /// producer's ring as the receiver says they landed, so a slow link or
    /// consumer holds the producer back, and after an error that is a
    /// [disconnect](LinkError::is_disconnect) the next call, over a new
    /// connection, goes on. If the producer's writer goes away without
    /// `finish`, this returns [`LinkError::Read`] and closes the connection
    /// without End.
    pub fn send(&mut self, stream: TcpStream, backend: IoBackend) -> Result<LinkStats, LinkError> {
        let peer = stream.peer_addr().map_err(LinkError::NotConnected)?;
        no_delay(&stream);
        let result = self.resume(&stream, peer).and_then(|()| {
            let out = outbox::Outbox::new(&mut self.reader, peer);
            match backend {
                IoBackend::Uring => uring::send(out, stream),
                IoBackend::Epoll => epoll::send(out, stream),
            }
        });
        result.inspect_err(|e| tracing::warn!("tcp send: {e}"))
    }

    /// Reads where the receiver's mirror ends and moves the reader there:
    /// frames below it landed (over an earlier connection) and are
    /// released.
    fn resume(&mut self, mut stream: &TcpStream, peer: SocketAddr) -> Result<(), LinkError> {
        let at = peek_resume(stream)?;
        // Taken from the socket: it is all there.
        let mut m = [0u8; protocol::CREDIT_LEN];
        stream
            .read_exact(&mut m)
            .map_err(|source| LinkError::Io { peer, source })?;
        let published = self
            .reader
            .published_end(false)?
            .unwrap_or(0)
            .max(self.reader.cursor());
        if at < self.reader.cursor() || at > published {
            return Err(LinkError::Resume {
                peer,
                at,
                released: self.reader.cursor(),
                published,
            });
        }
        self.reader.release_to(at);
        Ok(())
    }
}

/// Where the receiver on `stream` says its mirror ends (its first
/// message), left in the socket for [`RingSender::send`] to read: a
/// producer with several places a link may resume from picks one by it.
pub fn peek_resume(stream: &TcpStream) -> Result<u64, LinkError> {
    let peer = stream.peer_addr().map_err(LinkError::NotConnected)?;
    let io = |source| LinkError::Io { peer, source };
    stream.set_read_timeout(Some(RESUME_WAIT)).map_err(io)?;
    let mut m = [0u8; protocol::CREDIT_LEN];
    let deadline = std::time::Instant::now() + RESUME_WAIT;
    loop {
        match stream.peek(&mut m).map_err(io)? {
            protocol::CREDIT_LEN => break,
            0 => return Err(LinkError::PeerClosed { peer }),
            // Part of it came: the rest follows at once.
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            _ => return Err(io(std::io::ErrorKind::TimedOut.into())),
        }
    }
    stream.set_read_timeout(None).map_err(io)?;
    protocol::parse_resume(&m).map_err(|credit| LinkError::BadCredit { peer, credit })
}

/// How long a sender waits for the receiver to say where the stream
/// resumes (its first message, sent at once).
const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The consumer's side of a link, over as many connections as it takes: it
/// keeps the mirror ring between them, and each connection resumes where
/// the mirror's whole frames end.
#[derive(Debug)]
pub struct RingReceiver {
    /// The mirror, until the End frame landed.
    writer: Option<RingWriter>,
    meter: Arc<LinkMeter>,
}

impl RingReceiver {
    /// Lands frames in `writer`, a local mirror ring (new, or
    /// [reopened](RingWriter::reopen) by a restarted consumer), counting
    /// the bytes received in `meter` as they come.
    ///
    /// The consumer's reader must be attached to the mirror before frames
    /// land (`writer.wait_for_readers(1, ..)`): readers only see frames
    /// written after they attach, and a mirror with no reader counts as
    /// empty, so credit would not wait for the consumer.
    pub fn new(writer: RingWriter, meter: Arc<LinkMeter>) -> Self {
        RingReceiver {
            writer: Some(writer),
            meter,
        }
    }

    /// Whether the End frame landed (the mirror is finished).
    pub fn ended(&self) -> bool {
        self.writer.is_none()
    }

    /// Lands the frames the peer streams over `stream` (connected and
    /// already authenticated, [`auth::accept`](crate::auth::accept)),
    /// granting credit as the mirror frees space, until the End frame,
    /// which it writes with [`finish`](RingWriter::finish). It first tells
    /// the sender where the mirror's frames end, so that the stream resumes
    /// there: over a new connection after one broke, nothing is lost and
    /// nothing lands twice.
    ///
    /// Blocks: run it on its own thread. On any error the connection is
    /// closed and the mirror kept as it is (a frame landed in part is not
    /// published): call again over a new connection, or drop the receiver
    /// (the mirror's readers then get `ReadError::WriterDropped`). After
    /// End, [`LinkError::Ended`].
    pub fn receive(
        &mut self,
        stream: TcpStream,
        backend: IoBackend,
    ) -> Result<LinkStats, LinkError> {
        let peer = stream.peer_addr().map_err(LinkError::NotConnected)?;
        let writer = self.writer.as_mut().ok_or(LinkError::Ended { peer })?;
        no_delay(&stream);
        let result = (&stream)
            .write_all(&protocol::resume(writer.published()))
            .map_err(|source| LinkError::Io { peer, source })
            .and_then(|()| {
                let land = landing::Landing::new(writer, peer, self.meter.clone());
                match backend {
                    IoBackend::Uring => uring::receive(land, &stream),
                    IoBackend::Epoll => epoll::receive(land, &stream),
                }
            });
        let result = result.and_then(|(seq, stats, end)| {
            let writer = self.writer.take().expect("the mirror, until End");
            writer.finish(seq)?;
            // The last word, once the mirror is finished: the sender may
            // go. Lost with the connection, the sender waits for one that
            // never comes, through its grace, and ends without failing.
            let landed = protocol::credit(protocol::Grant::Landed(end));
            if let Err(e) = (&stream).write_all(&landed) {
                tracing::debug!("tcp receive: the last word to {peer}: {e}");
            }
            Ok(stats)
        });
        result.inspect_err(|e| tracing::warn!("tcp receive: {e}"))
    }
}

/// The producer's side of a link over one connection: [`RingSender::send`]
/// with a sender of its own.
pub fn send_ring(
    reader: RingReader,
    stream: TcpStream,
    backend: IoBackend,
) -> Result<LinkStats, LinkError> {
    RingSender::new(reader).send(stream, backend)
}

/// The consumer's side of a link over one connection:
/// [`RingReceiver::receive`] with a receiver of its own (on an error the
/// mirror is dropped without End: its readers get
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
    RingReceiver::new(writer, meter).receive(stream, backend)
}

/// Makes a link's socket notice a peer gone silent (a cable cut, a host
/// down: nothing resets the connection) within about `timeout`: sent bytes
/// unacknowledged that long, or an idle connection whose probes go
/// unanswered, end it with an error (`ETIMEDOUT`), so that its ends can
/// reconnect. Best effort, as [`TcpStream::set_nodelay`].
pub fn watch_liveness(stream: &TcpStream, timeout: std::time::Duration) {
    if let Err(e) = sys::watch_liveness(stream.as_raw_fd(), timeout) {
        tracing::warn!("tcp link: liveness watch refused ({e}): a silent peer may go unnoticed");
    }
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
