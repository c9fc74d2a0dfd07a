//! Messages on a stream: a little-endian `u32` length, then that many bytes.
//! Lengths are checked before anything is allocated, and bodies land in an
//! aligned buffer so that archived values can be read in place.

use std::io::{self, Read, Write};

use rkyv::util::AlignedVec;

/// The longest message accepted.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the stream between two messages.
    #[error("connection closed")]
    Closed,
    /// The peer announced more than [`MAX_MESSAGE`] bytes.
    #[error("message of {len} bytes announced; at most {MAX_MESSAGE} are accepted")]
    TooLong {
        /// The announced length.
        len: usize,
    },
    /// The stream ended inside a message.
    #[error("connection closed inside a message ({got} of {len} bytes)")]
    Truncated {
        /// The announced length.
        len: usize,
        /// The bytes that came.
        got: usize,
    },
    /// The stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Writes one message, in one write.
pub fn write_message(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + body.len());
    append_message(&mut frame, body)?;
    w.write_all(&frame)?;
    w.flush()
}

/// Appends one message to `out`, so that many can go in one write.
pub fn append_message(out: &mut Vec<u8>, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Reads one message into `buf` (replacing its contents).
pub fn read_message(r: &mut impl Read, buf: &mut AlignedVec) -> Result<(), WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(WireError::TooLong { len });
    }
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(WireError::Truncated { len, got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_lengths_are_refused() {
        let mut stream = Vec::new();
        write_message(&mut stream, b"hello").unwrap();
        write_message(&mut stream, b"").unwrap();
        let mut r = &stream[..];
        let mut buf = AlignedVec::new();
        read_message(&mut r, &mut buf).unwrap();
        assert_eq!(&buf[..], b"hello");
        read_message(&mut r, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert!(matches!(
            read_message(&mut r, &mut buf),
            Err(WireError::Closed)
        ));

        let huge = ((MAX_MESSAGE + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_message(&mut &huge[..], &mut buf),
            Err(WireError::TooLong { len }) if len == MAX_MESSAGE + 1
        ));
        let cut = [5u8, 0, 0, 0, b'h', b'e'];
        assert_eq!(
            read_message(&mut &cut[..], &mut buf)
                .unwrap_err()
                .to_string(),
            "connection closed inside a message (2 of 5 bytes)"
        );
    }
}
