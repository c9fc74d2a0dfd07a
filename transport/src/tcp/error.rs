//! The errors of a link, one enum for each side's operation.

use std::io;
use std::net::SocketAddr;

use crate::shm::{ReadError, WriteError};

pub use super::protocol::BadCredit;

/// Why a frame from the network was refused. Offsets count from the start of
/// the bytes being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// A header with a kind code no frame has.
    #[error("unknown frame kind {code} at offset {offset}")]
    UnknownKind {
        /// The code found.
        code: u32,
        /// Where its header starts.
        offset: u64,
    },
    /// A payload longer than the local ring can hold.
    #[error("frame of {len} bytes at offset {offset}; the ring takes at most {max}")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The largest payload of the local ring.
        max: u64,
        /// Where its header starts.
        offset: u64,
    },
    /// An End frame with a payload.
    #[error("End frame with a {len}-byte payload at offset {offset}")]
    EndWithPayload {
        /// The announced length.
        len: u32,
        /// Where its header starts.
        offset: u64,
    },
    /// Bytes after the End frame.
    #[error("{bytes} bytes after the End frame")]
    AfterEnd {
        /// How many came.
        bytes: u64,
    },
    /// A frame of a large value whose payload is not a 16-byte reference to
    /// a value of one byte or more.
    #[error("frame of a large value at offset {offset}: its {len}-byte payload is no reference to a value (16 bytes, a length above 0)")]
    BadLargeRef {
        /// The announced payload length.
        len: u32,
        /// Where its header starts.
        offset: u64,
    },
    /// A large value longer than the local arena (0: there is none).
    #[error("large value of {len} bytes at offset {offset}; the local space for large values takes at most {max}")]
    LargeValue {
        /// The value's length.
        len: u64,
        /// The local arena's size.
        max: u64,
        /// Where its frame starts.
        offset: u64,
    },
    /// Bytes after the frame of a large value, before its body was granted.
    #[error("{bytes} bytes after the frame of a large value, before credit for its body")]
    AfterLarge {
        /// How many came.
        bytes: u64,
    },
    /// The peer closed the connection inside a frame.
    #[error("connection closed inside a frame ({bytes} bytes of it came)")]
    Truncated {
        /// The bytes of the incomplete frame that came.
        bytes: u64,
    },
}

/// Why [`RingSender::send`](super::RingSender::send) or
/// [`RingReceiver::receive`](super::RingReceiver::receive) stopped before
/// the End frame went through.
///
/// Every error from the network side is also printed once on stderr, naming
/// the peer; the connection is closed, the process goes on.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed (reset, unreachable, ...).
    #[error("link with {peer}: i/o: {source}")]
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection before the End frame (sender side:
    /// before it had all been sent; receiver side: between two frames).
    #[error("link with {peer}: peer closed the connection mid-stream")]
    PeerClosed {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// The receiver got a malformed frame (garbage, a kind it does not know,
    /// a truncated frame, ...).
    #[error("link with {peer}: bad frame: {frame}")]
    BadFrame {
        /// The peer's address.
        peer: SocketAddr,
        /// What was wrong.
        frame: BadFrame,
    },
    /// The receiver got a frame larger than its ring can ever hold.
    #[error("link with {peer}: frame of {len} bytes; the local ring takes at most {max}")]
    TooLarge {
        /// The peer's address.
        peer: SocketAddr,
        /// The announced payload length.
        len: u32,
        /// The local ring's largest payload.
        max: u64,
    },
    /// The sender sent more bytes than the receiver had granted (of frames,
    /// or of a large value's body).
    #[error("link with {peer}: {received} bytes {of} received, only {granted} granted")]
    CreditExceeded {
        /// `"of frames"` or `"of large values"`.
        of: &'static str,
        /// The peer's address.
        peer: SocketAddr,
        /// Cumulative bytes granted.
        granted: u64,
        /// Cumulative bytes received (at least).
        received: u64,
    },
    /// The producer's arena of large values could not be read.
    #[error("link with {peer}: {message}")]
    Arena {
        /// The peer's address.
        peer: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The producer's ring holds a value forwarded by reference (it lies in
    /// another ring's arena, on the producer's host): a link does not carry
    /// it. The engine forwards by reference only to consumers on its host.
    #[error("link with {peer}: the value with id {seq} was forwarded by reference, which a link cannot carry")]
    Forwarded {
        /// The peer's address.
        peer: SocketAddr,
        /// The value's id.
        seq: u64,
    },
    /// The sender got something other than credit messages from the receiver.
    #[error("link with {peer}: bad credit message: {credit}")]
    BadCredit {
        /// The peer's address.
        peer: SocketAddr,
        /// What was wrong.
        credit: BadCredit,
    },
    /// Reading the producer's ring failed (its writer was dropped without
    /// `finish`, or died): the link closes without an End frame, so the
    /// remote consumer sees its mirror ring dropped.
    #[error("link: reading the local ring: {0}")]
    Read(#[from] ReadError),
    /// Writing the End frame into the mirror ring failed.
    #[error("link: writing the local ring: {0}")]
    Write(#[from] WriteError),
    /// The socket has no peer address (it is not connected).
    #[error("link: socket not connected: {0}")]
    NotConnected(#[source] io::Error),
    /// The receiver asked to resume where the producer's ring cannot: below
    /// what it released, or past what it published (its mirror is not this
    /// ring's).
    #[error("link with {peer}: cannot resume at ring position {at}: the ring holds {released}..{published}")]
    Resume {
        /// The peer's address.
        peer: SocketAddr,
        /// Where it asked to resume.
        at: u64,
        /// Where the ring's unreleased frames start.
        released: u64,
        /// Where its published frames end.
        published: u64,
    },
    /// The End frame went out, and the connection ended before the
    /// receiver said it landed: a new connection from the receiver, if it
    /// comes, resumes (with the End frame again if it is missing).
    #[error(
        "link with {peer}: the connection ended before the receiver said the stream's end landed"
    )]
    EndUnconfirmed {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// The mirror already holds the End frame: nothing more comes.
    #[error("link with {peer}: the stream already ended")]
    Ended {
        /// The peer's address.
        peer: SocketAddr,
    },
}

impl LinkError {
    /// Turns a [`BadFrame`] into the error that names it.
    pub(crate) fn frame(peer: SocketAddr, frame: BadFrame) -> LinkError {
        match frame {
            BadFrame::TooLarge { len, max, .. } => LinkError::TooLarge { peer, len, max },
            frame => LinkError::BadFrame { peer, frame },
        }
    }

    /// Whether the connection was lost (reset, timed out, closed early, even
    /// inside a frame) rather than the peer breaking the protocol: when a
    /// peer's process dies or a cable is cut, its links end this way, and a
    /// new connection resumes the stream.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            LinkError::Io { .. }
                | LinkError::PeerClosed { .. }
                | LinkError::EndUnconfirmed { .. }
                | LinkError::BadFrame {
                    frame: BadFrame::Truncated { .. },
                    ..
                }
        )
    }

    /// The peer this error is about, if it is about one.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            LinkError::Io { peer, .. }
            | LinkError::PeerClosed { peer }
            | LinkError::BadFrame { peer, .. }
            | LinkError::TooLarge { peer, .. }
            | LinkError::CreditExceeded { peer, .. }
            | LinkError::Arena { peer, .. }
            | LinkError::Forwarded { peer, .. }
            | LinkError::BadCredit { peer, .. }
            | LinkError::Resume { peer, .. }
            | LinkError::EndUnconfirmed { peer }
            | LinkError::Ended { peer } => Some(*peer),
            _ => None,
        }
    }
}
