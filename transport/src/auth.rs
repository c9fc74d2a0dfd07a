//! The mutual challenge-response that opens every connection of a run: each
//! side proves it holds the run's secret (HMAC-SHA256 over both sides'
//! fresh nonces), so a stranger, a replayed handshake or a wrong secret is
//! refused before any message is read.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Opens every handshake; anything else is not a Clusterduck peer.
const MAGIC: [u8; 8] = *b"CDUCKv1\0";
const NONCE: usize = 32;
const TAG: usize = 32;

/// A run's secret: 32 random bytes, made by the master and handed to each
/// node on its stdin, never on a command line or in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the kernel's random source.
    pub fn generate() -> io::Result<Self> {
        let mut bytes = [0u8; 32];
        random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, to hand to a node.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn tag(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(&MAGIC);
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

/// Fills `bytes` from the kernel's random source.
pub fn random(bytes: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(bytes)
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The connection failed or timed out.
    #[error("handshake i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer does not speak this protocol.
    #[error("not a Clusterduck peer (bad handshake magic)")]
    BadMagic,
    /// The peer's proof does not match: a wrong secret, a replay or
    /// tampering.
    #[error("authentication failed: the peer does not hold the run's secret")]
    BadProof,
}

/// The accepting side: challenges the peer, checks its proof, proves itself
/// in turn. Returns the id the peer announced (authenticated with it).
pub fn accept(stream: &mut (impl Read + Write), secret: &Secret) -> Result<u32, AuthError> {
    let mut ours = [0u8; NONCE];
    random(&mut ours)?;
    let mut hello = [0u8; 8 + NONCE];
    hello[..8].copy_from_slice(&MAGIC);
    hello[8..].copy_from_slice(&ours);
    stream.write_all(&hello)?;
    stream.flush()?;

    let mut reply = [0u8; NONCE + 4 + TAG];
    stream.read_exact(&mut reply)?;
    let (theirs, rest) = reply.split_at(NONCE);
    let (id, proof) = rest.split_at(4);
    secret
        .tag(b"connect", &[&ours, theirs, id])
        .verify_slice(proof)
        .map_err(|_| AuthError::BadProof)?;

    let answer = secret
        .tag(b"accept", &[theirs, &ours, id])
        .finalize()
        .into_bytes();
    stream.write_all(&answer)?;
    stream.flush()?;
    Ok(u32::from_le_bytes(id.try_into().expect("4 bytes")))
}

/// The connecting side, announcing itself as `id`: answers the challenge,
/// then checks the acceptor's proof.
pub fn connect(
    stream: &mut (impl Read + Write),
    secret: &Secret,
    id: u32,
) -> Result<(), AuthError> {
    let mut hello = [0u8; 8 + NONCE];
    stream.read_exact(&mut hello)?;
    if hello[..8] != MAGIC {
        return Err(AuthError::BadMagic);
    }
    let theirs = &hello[8..];
    let mut ours = [0u8; NONCE];
    random(&mut ours)?;
    let id = id.to_le_bytes();
    let proof = secret
        .tag(b"connect", &[theirs, &ours, &id])
        .finalize()
        .into_bytes();
    let mut reply = Vec::with_capacity(NONCE + 4 + TAG);
    reply.extend_from_slice(&ours);
    reply.extend_from_slice(&id);
    reply.extend_from_slice(&proof);
    stream.write_all(&reply)?;
    stream.flush()?;

    let mut answer = [0u8; TAG];
    stream.read_exact(&mut answer)?;
    secret
        .tag(b"accept", &[&ours, theirs, &id])
        .verify_slice(&answer)
        .map_err(|_| AuthError::BadProof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    fn pair(
        server: Secret,
        client: Secret,
        id: u32,
    ) -> (Result<u32, AuthError>, Result<(), AuthError>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            accept(&mut s, &server)
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let connected = connect(&mut c, &client, id);
        drop(c);
        (accepting.join().unwrap(), connected)
    }

    #[test]
    fn same_secret_authenticates_both_ways_and_carries_the_id() {
        let _w = crate::test_watchdog::watchdog(30, "an auth test");
        let s = Secret::generate().unwrap();
        let (a, c) = pair(s.clone(), s, 7);
        assert_eq!(a.unwrap(), 7);
        c.unwrap();
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let _w = crate::test_watchdog::watchdog(30, "an auth test");
        let (a, c) = pair(Secret::generate().unwrap(), Secret::generate().unwrap(), 1);
        assert!(matches!(a, Err(AuthError::BadProof)), "{a:?}");
        assert!(c.is_err());
    }

    #[test]
    fn garbage_and_replays_are_refused() {
        let _w = crate::test_watchdog::watchdog(30, "an auth test");
        let s = Secret::generate().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let secret = s.clone();
        let accepting = thread::spawn(move || {
            (0..2)
                .map(|_| {
                    let (mut s, _) = listener.accept().unwrap();
                    accept(&mut s, &secret).map_err(|e| e.to_string())
                })
                .collect::<Vec<_>>()
        });
        // Garbage of the right length.
        let mut c = TcpStream::connect(addr).unwrap();
        let mut hello = [0u8; 40];
        c.read_exact(&mut hello).unwrap();
        c.write_all(&[0x55; NONCE + 4 + TAG]).unwrap();
        let mut first = vec![0u8; NONCE + 4 + TAG];
        // A replay: a valid reply to the first challenge, sent to the second.
        let mut ours = [0u8; NONCE];
        random(&mut ours).unwrap();
        first[..NONCE].copy_from_slice(&ours);
        first[NONCE..NONCE + 4].copy_from_slice(&3u32.to_le_bytes());
        let proof = s
            .tag(b"connect", &[&hello[8..], &ours, &3u32.to_le_bytes()])
            .finalize()
            .into_bytes();
        first[NONCE + 4..].copy_from_slice(&proof);
        let mut c2 = TcpStream::connect(addr).unwrap();
        let mut hello2 = [0u8; 40];
        c2.read_exact(&mut hello2).unwrap();
        c2.write_all(&first).unwrap();
        let results = accepting.join().unwrap();
        let refused = "authentication failed: the peer does not hold the run's secret";
        assert_eq!(
            results,
            vec![Err(refused.to_owned()), Err(refused.to_owned())]
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::from_bytes([42; 32]);
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
