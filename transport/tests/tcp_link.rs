//! The TCP link's conformance suite, run against both backends over real
//! sockets on 127.0.0.1: round trips (credit binding, a slow consumer), bad
//! input against a receiver, bad credit against a sender, a listener that
//! survives bad handshakes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{self, BadCredit, BadFrame, IoBackend, LinkError, LinkStats};
use clusterduck_transport::{FrameKind, ReadError, RingReader, RingWriter};
use common::{unique, watchdog};

const WATCHDOG: u64 = 300;

/// Whether the backend can run here; prints why not.
fn available(backend: IoBackend) -> bool {
    match backend {
        IoBackend::Epoll => true,
        IoBackend::Uring => match tcp::probe_uring() {
            Ok(()) => true,
            Err(why) => {
                common::skip("an io_uring link test", &format!("io_uring refused: {why}"));
                false
            }
        },
    }
}

fn secret() -> Secret {
    Secret::from_bytes([7; 32])
}

/// The bytes a frame with a `len`-byte payload takes in a ring.
fn frame_size(len: usize) -> u64 {
    16 + len.div_ceil(16) as u64 * 16
}

/// Frame `seq`'s payload length: mostly small, some up to 64 KiB.
fn size_of(seq: u64, max: usize) -> usize {
    let mut rng = fastrand::Rng::with_seed(seq);
    let len = match rng.u32(0..100) {
        0..90 => rng.usize(1..=256),
        90..99 => rng.usize(257..=4096),
        _ => rng.usize(4097..=65536),
    };
    len.min(max)
}

fn fill(seq: u64, buf: &mut Vec<u8>, len: usize) {
    buf.clear();
    buf.extend((0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
}

/// A link between a producer ring and a mirror ring, over loopback.
struct Link {
    producer: RingWriter,
    consumer: RingReader,
    sender: JoinHandle<Result<LinkStats, LinkError>>,
    receiver: JoinHandle<Result<LinkStats, LinkError>>,
    /// What the receiver counts as it goes.
    meter: Arc<tcp::LinkMeter>,
}

fn link(backend: IoBackend, producer_cap: usize, mirror_cap: usize) -> Link {
    link_with_arenas(backend, producer_cap, mirror_cap, 0)
}

/// A link whose producer and mirror each have an arena of `large_bytes`
/// for large values (none if 0).
fn link_with_arenas(
    backend: IoBackend,
    producer_cap: usize,
    mirror_cap: usize,
    large_bytes: usize,
) -> Link {
    let pname = unique("producer");
    let mname = unique("mirror");
    let mut producer = RingWriter::create(&pname, producer_cap).unwrap();
    let mut mirror = RingWriter::create(&mname, mirror_cap).unwrap();
    if large_bytes > 0 {
        producer.set_large_bytes(large_bytes).unwrap();
        mirror.set_large_bytes(large_bytes).unwrap();
    }
    let reader = RingReader::attach(&pname).unwrap();
    let consumer = RingReader::attach(&mname).unwrap();
    mirror.wait_for_readers(1, Duration::from_secs(10)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let meter = Arc::new(tcp::LinkMeter::default());
    let counted = meter.clone();
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        assert_eq!(auth::accept(&mut stream, &secret()).unwrap(), 1);
        tcp::receive_into_ring_metered(stream, mirror, backend, counted)
    });
    let sender = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        auth::connect(&mut stream, &secret(), 1).unwrap();
        tcp::send_ring(reader, stream, backend)
    });
    Link {
        producer,
        consumer,
        sender,
        receiver,
        meter,
    }
}

/// Streams `n` frames through a link and checks every byte and seq on the
/// far side. A consumer that sleeps `pause` every 256 frames is slow; the
/// producer must then block: it may get ahead of the consumer by no more
/// than the two rings hold (credit keeps everything else bounded).
fn round_trip(backend: IoBackend, n: u64, producer_cap: usize, mirror_cap: usize, pause: Duration) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp round trip");
    let Link {
        mut producer,
        mut consumer,
        sender,
        receiver,
        ..
    } = link(backend, producer_cap, mirror_cap);
    let max = producer.max_payload().min(mirror_cap - 16);
    let consumed = Arc::new(AtomicU64::new(0));
    let check = {
        let consumed = consumed.clone();
        thread::spawn(move || {
            let mut next = 0u64;
            let mut want = Vec::new();
            let mut bytes = 0u64;
            loop {
                let batch = match consumer.read() {
                    Ok(b) => b,
                    Err(ReadError::Ended) => break,
                    Err(e) => panic!("consumer: {e}"),
                };
                for frame in &batch {
                    let frame = frame.unwrap();
                    match frame.kind() {
                        FrameKind::Data => {
                            assert_eq!(frame.seq(), next, "frames lost or reordered");
                            let len = size_of(next, max);
                            fill(next, &mut want, len);
                            assert!(frame.bytes() == &want[..], "frame {next} corrupted");
                            bytes += frame_size(len);
                            next += 1;
                            if !pause.is_zero() && next % 256 == 0 {
                                thread::sleep(pause);
                            }
                        }
                        FrameKind::End => assert_eq!(frame.seq(), n),
                        k => panic!("unexpected {k:?}"),
                    }
                }
                drop(batch);
                consumed.store(bytes, Ordering::Release);
            }
            next
        })
    };
    let bound = (producer_cap + mirror_cap) as u64 + frame_size(max);
    let mut lead = 0u64;
    let mut written = 0u64;
    let mut buf = Vec::new();
    for seq in 0..n {
        let len = size_of(seq, max);
        fill(seq, &mut buf, len);
        producer.write_bytes(seq, &buf).unwrap();
        written += frame_size(len);
        lead = lead.max(written - consumed.load(Ordering::Acquire));
    }
    producer.finish(n).unwrap();
    assert_eq!(check.join().unwrap(), n, "End arrived before every frame");
    let sent = sender.join().unwrap().unwrap();
    let got = receiver.join().unwrap().unwrap();
    assert_eq!(sent, got);
    assert_eq!(got.frames, n);
    assert_eq!(got.bytes, written + 16);
    eprintln!(
        "{backend}: {n} frames, {written} bytes; producer's greatest lead {lead} (bound {bound})"
    );
    assert!(
        lead <= bound,
        "the producer ran {lead} bytes ahead (bound {bound})"
    );
}

/// Value `seq`'s length in the large round trip: a third are large (out of
/// line, up to 1.5 MiB), the rest small.
fn mixed_size_of(seq: u64) -> usize {
    let mut rng = fastrand::Rng::with_seed(seq);
    if rng.u32(0..3) == 0 {
        rng.usize(64 << 10..=3 << 19)
    } else {
        rng.usize(1..=4096)
    }
}

/// Streams `n` values, a third of them large (their bodies sent from the
/// producer's arena and landed in the mirror's), and checks every byte and
/// id on the far side. A consumer that sleeps `pause` every 8 values is
/// slow: the producer may then get ahead of it by no more than the rings
/// and the arenas hold (body credit bounds the mirror's arena like frame
/// credit bounds its ring).
fn large_round_trip(backend: IoBackend, n: u64, pause: Duration) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp round trip of large values");
    let (ring, mirror_ring, arena) = (256 << 10, 128 << 10, 4 << 20);
    let Link {
        mut producer,
        mut consumer,
        sender,
        receiver,
        meter,
    } = link_with_arenas(backend, ring, mirror_ring, arena);
    assert!(mixed_size_of(0).max(mixed_size_of(2)) > producer.max_inline());
    let consumed = Arc::new(AtomicU64::new(0));
    let check = {
        let consumed = consumed.clone();
        thread::spawn(move || {
            let (mut next, mut bytes, mut large) = (0u64, 0u64, 0u64);
            let mut want = Vec::new();
            loop {
                let batch = match consumer.read() {
                    Ok(b) => b,
                    Err(ReadError::Ended) => break,
                    Err(e) => panic!("consumer: {e}"),
                };
                for frame in &batch {
                    let frame = frame.unwrap();
                    match frame.kind() {
                        FrameKind::Data => {
                            assert_eq!(frame.seq(), next, "values lost or reordered");
                            let len = mixed_size_of(next);
                            fill(next, &mut want, len);
                            assert!(frame.bytes() == &want[..], "value {next} corrupted");
                            bytes += len as u64;
                            large += u64::from(len > 64 << 10);
                            next += 1;
                            if !pause.is_zero() && next % 8 == 0 {
                                thread::sleep(pause);
                            }
                        }
                        FrameKind::End => assert_eq!(frame.seq(), n),
                        k => panic!("unexpected {k:?}"),
                    }
                }
                drop(batch);
                consumed.store(bytes, Ordering::Release);
            }
            (next, large)
        })
    };
    let bound = (ring + mirror_ring + 2 * arena + (3 << 19)) as u64;
    let (mut lead, mut written) = (0u64, 0u64);
    let mut buf = Vec::new();
    for seq in 0..n {
        let len = mixed_size_of(seq);
        fill(seq, &mut buf, len);
        producer.write_bytes(seq, &buf).unwrap();
        written += len as u64;
        lead = lead.max(written - consumed.load(Ordering::Acquire));
    }
    producer.finish(n).unwrap();
    let (got_values, large) = check.join().unwrap();
    assert_eq!(got_values, n, "End arrived before every value");
    assert!(large > n / 5, "only {large} large values of {n}");
    let sent = sender.join().unwrap().unwrap();
    let got = receiver.join().unwrap().unwrap();
    assert_eq!(sent, got);
    assert_eq!(got.frames, n);
    assert_eq!(
        meter.bytes(),
        got.bytes,
        "the meter counts every byte, bodies too"
    );
    eprintln!(
        "{backend}: {n} values ({large} large), {written} bytes; producer's greatest lead {lead} (bound {bound})"
    );
    assert!(
        lead <= bound,
        "the producer ran {lead} bytes ahead (bound {bound})"
    );
}

/// Both ends of a link turn Nagle's algorithm off, whatever the caller did
/// with the socket: a trickle of small frames must not wait for the peer's
/// delayed acknowledgements (40 ms at a time). Checked on a second handle
/// of each socket, after the link carried three frames and its End.
fn no_delay(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp no delay");
    let (pname, mname) = (unique("producer"), unique("mirror"));
    let mut producer = RingWriter::create(&pname, 1 << 20).unwrap();
    let reader = RingReader::attach(&pname).unwrap();
    let mirror = RingWriter::create(&mname, 1 << 20).unwrap();
    let mut consumer = RingReader::attach(&mname).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sending = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (receiving, _) = listener.accept().unwrap();
    let (sending_too, receiving_too) =
        (sending.try_clone().unwrap(), receiving.try_clone().unwrap());
    assert!(!sending.nodelay().unwrap() && !receiving.nodelay().unwrap());
    let receiver = thread::spawn(move || tcp::receive_into_ring(receiving, mirror, backend));
    let sender = thread::spawn(move || tcp::send_ring(reader, sending, backend));
    for seq in 0..3 {
        producer.write_bytes(seq, b"tick").unwrap();
    }
    producer.finish(3).unwrap();
    let mut seqs = Vec::new();
    loop {
        match consumer.read() {
            Ok(batch) => seqs.extend(batch.into_iter().map(|f| f.unwrap().seq())),
            Err(ReadError::Ended) => break,
            Err(e) => panic!("consumer: {e}"),
        }
    }
    assert_eq!(seqs, [0, 1, 2, 3], "three frames and the End");
    assert_eq!(receiver.join().unwrap().unwrap().frames, 3);
    assert!(
        receiving_too.nodelay().unwrap(),
        "the receiving end left Nagle on"
    );
    // The sender waits for the receiving socket to close.
    drop(receiving_too);
    assert_eq!(sender.join().unwrap().unwrap().frames, 3);
    assert!(
        sending_too.nodelay().unwrap(),
        "the sending end left Nagle on"
    );
}

/// A receiver with a mirror of `mirror_cap` whose reader never reads, and a
/// client that passed the handshake and sends `bytes` (after reading the
/// first credit, if `read_credit`), then closes.
fn bad_input(
    backend: IoBackend,
    mirror_cap: usize,
    bytes: impl FnOnce(u64) -> Vec<u8>,
) -> (LinkError, SocketAddr) {
    bad_input_with_arena(backend, mirror_cap, 0, bytes)
}

/// [`bad_input`] with an arena of `large_bytes` beside the mirror.
fn bad_input_with_arena(
    backend: IoBackend,
    mirror_cap: usize,
    large_bytes: usize,
    bytes: impl FnOnce(u64) -> Vec<u8>,
) -> (LinkError, SocketAddr) {
    let _dog = watchdog(WATCHDOG, "tcp bad input");
    let mname = unique("mirror");
    let mut mirror = RingWriter::create(&mname, mirror_cap).unwrap();
    if large_bytes > 0 {
        mirror.set_large_bytes(large_bytes).unwrap();
    }
    let consumer = RingReader::attach(&mname).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        auth::accept(&mut stream, &secret()).unwrap();
        tcp::receive_into_ring(stream, mirror, backend)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    auth::connect(&mut stream, &secret(), 9).unwrap();
    let me = stream.local_addr().unwrap();
    // First, where the stream resumes: a new mirror, at 0.
    let mut resume = [0u8; 16];
    stream.read_exact(&mut resume).unwrap();
    assert_eq!(&resume[..], &[&b"CDrs"[..], &[0; 12]].concat()[..]);
    let mut credit = [0u8; 16];
    stream.read_exact(&mut credit).unwrap();
    assert_eq!(&credit[..4], b"CDcr");
    let granted = u64::from_le_bytes(credit[8..].try_into().unwrap());
    let _ = stream.write_all(&bytes(granted));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let err = receiver.join().unwrap().unwrap_err();
    drop(stream);
    drop(consumer);
    assert_eq!(err.peer(), Some(me), "{err}");
    assert!(err.to_string().contains(&me.to_string()), "{err}");
    (err, me)
}

fn header(len: u32, kind: u32, seq: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v
}

fn data_frame(len: usize, seq: u64) -> Vec<u8> {
    let mut v = header(len as u32, 1, seq);
    v.resize(frame_size(len) as usize, 0xAB);
    v
}

/// The frame that announces a large value of `len` bytes (its position is
/// the sender's, which the receiver replaces).
fn large_frame(len: u64, seq: u64) -> Vec<u8> {
    let mut v = header(16, 3, seq);
    v.extend(123u64.to_le_bytes());
    v.extend(len.to_le_bytes());
    v
}

/// A large value's frame followed at once by bytes, before credit for its
/// body; a large value that the mirror has no arena for; one larger than
/// its arena; a frame of a large value with a payload that is no reference.
fn bad_large(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input_with_arena(backend, 1 << 16, 1 << 20, |_| {
        let mut v = data_frame(10, 0);
        v.extend(large_frame(100_000, 1));
        v.extend([0xAB; 100]);
        v
    });
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::AfterLarge { bytes: 100 },
                ..
            }
        ),
        "{err:?}"
    );
    let (err, _) = bad_input(backend, 1 << 16, |_| large_frame(100_000, 0));
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::LargeValue {
                    len: 100_000,
                    max: 0,
                    offset: 0
                },
                ..
            }
        ),
        "{err:?}"
    );
    let (err, _) = bad_input_with_arena(backend, 1 << 16, 1 << 20, |_| {
        let mut v = data_frame(10, 0);
        v.extend(large_frame(2 << 20, 1));
        v
    });
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::LargeValue {
                    len: 2097152,
                    max: 1048576,
                    offset: 32
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the local space for large values takes at most 1048576"),
        "{err}"
    );
    let (err, _) = bad_input_with_arena(backend, 1 << 16, 1 << 20, |_| {
        let mut v = header(32, 3, 0);
        v.resize(48, 0);
        v
    });
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::BadLargeRef { len: 32, offset: 0 },
                ..
            }
        ),
        "{err:?}"
    );
}

/// A sender whose body overruns the body credit: the mirror's arena holds
/// one value its reader never releases, so the second value gets credit
/// for only what is left of the arena.
fn body_past_credit(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let arena = 1 << 20;
    let first = arena - 4096;
    let _dog = watchdog(WATCHDOG, "tcp body past credit");
    let mname = unique("mirror");
    let mut mirror = RingWriter::create(&mname, 1 << 16).unwrap();
    mirror.set_large_bytes(arena).unwrap();
    let consumer = RingReader::attach(&mname).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        auth::accept(&mut stream, &secret()).unwrap();
        tcp::receive_into_ring(stream, mirror, backend)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    auth::connect(&mut stream, &secret(), 9).unwrap();
    // Reads credit messages until a body grant of at least `want`.
    let body_grant = |stream: &mut TcpStream, want: u64| loop {
        let mut m = [0u8; 16];
        stream.read_exact(&mut m).unwrap();
        let g = u64::from_le_bytes(m[8..].try_into().unwrap());
        if &m[..4] == b"CDcb" && g >= want {
            return g;
        }
    };
    stream.write_all(&large_frame(first as u64, 0)).unwrap();
    assert_eq!(body_grant(&mut stream, first as u64), first as u64);
    stream.write_all(&vec![0xCD; first]).unwrap();
    stream.write_all(&large_frame(65536, 1)).unwrap();
    let granted = body_grant(&mut stream, first as u64 + 1);
    assert_eq!(
        granted,
        first as u64 + 4096,
        "the arena's room, not the value"
    );
    let _ = stream.write_all(&vec![0xEF; 65536]);
    let err = receiver.join().unwrap().unwrap_err();
    drop(consumer);
    assert!(
        matches!(
            err,
            LinkError::CreditExceeded {
                of: "of large values",
                granted: g,
                ..
            } if g == granted
        ),
        "{err:?}"
    );
}

/// A value forwarded by reference lies in another ring's arena, on the
/// producer's host: the sender refuses it, naming its id.
fn forwarded_refused(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp forwarded");
    let other = unique("other");
    let mut writer = RingWriter::create(&other, 1 << 16).unwrap();
    writer.set_large_bytes(1 << 20).unwrap();
    let mut reader = RingReader::attach(&other).unwrap();
    writer.write_bytes(0, &vec![9u8; 100_000]).unwrap();
    let span = reader.arena_span().unwrap();
    let value = {
        let batch = reader.read().unwrap();
        let frame = batch.iter().next().unwrap().unwrap();
        span.locate(frame.bytes()).unwrap()
    };
    let Link {
        mut producer,
        consumer,
        sender,
        receiver,
        ..
    } = link_with_arenas(backend, 1 << 16, 1 << 16, 1 << 20);
    producer.write_bytes(0, b"small").unwrap();
    producer.write_forward(1, &value).unwrap();
    let err = sender.join().unwrap().unwrap_err();
    assert!(
        matches!(err, LinkError::Forwarded { seq: 1, .. }),
        "{err:?}"
    );
    drop(producer);
    let _ = receiver.join().unwrap();
    drop(consumer);
}

fn garbage(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input(backend, 1 << 16, |_| {
        b"GET / HTTP/1.1\r\nHost: clusterduck\r\n\r\n\x00\x01\x02garbage garbage".to_vec()
    });
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::UnknownKind { .. },
                ..
            } | LinkError::TooLarge { .. }
        ),
        "{err:?}"
    );
}

fn oversize(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input(backend, 1 << 16, |_| {
        let mut v = data_frame(100, 0);
        v.extend(header((1 << 16) - 15, 1, 1));
        v
    });
    assert!(
        matches!(
            err,
            LinkError::TooLarge {
                len: 65521,
                max: 65520,
                ..
            }
        ),
        "{err:?}"
    );
}

fn truncated(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input(backend, 1 << 16, |_| data_frame(100, 0)[..70].to_vec());
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::Truncated { bytes: 70 },
                ..
            }
        ),
        "{err:?}"
    );
}

fn closed_between_frames(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input(backend, 1 << 16, |_| data_frame(100, 0));
    assert!(matches!(err, LinkError::PeerClosed { .. }), "{err:?}");
}

fn unknown_kind(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let (err, _) = bad_input(backend, 1 << 16, |_| {
        let mut v = data_frame(10, 0);
        v.extend(header(0, 7, 1));
        v
    });
    assert!(
        matches!(
            err,
            LinkError::BadFrame {
                frame: BadFrame::UnknownKind {
                    code: 7,
                    offset: 32
                },
                ..
            }
        ),
        "{err:?}"
    );
}

fn past_credit(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    // The mirror's reader reads nothing, so the first grant is the last.
    let (err, _) = bad_input(backend, 1 << 16, |granted| {
        let mut v = Vec::new();
        let mut seq = 0;
        while (v.len() as u64) <= granted {
            v.extend(data_frame(1000, seq));
            seq += 1;
        }
        v
    });
    assert!(
        matches!(err, LinkError::CreditExceeded { granted: 65536, .. }),
        "{err:?}"
    );
}

/// A producer ring streamed by a sender (on a thread of its own) to the
/// returned connection, authenticated: the test plays the receiver.
fn sender_to_a_stranger(
    backend: IoBackend,
) -> (
    RingWriter,
    JoinHandle<Result<LinkStats, LinkError>>,
    TcpStream,
) {
    let pname = unique("producer");
    let producer = RingWriter::create(&pname, 1 << 16).unwrap();
    let reader = RingReader::attach(&pname).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        auth::connect(&mut stream, &secret(), 1).unwrap();
        tcp::send_ring(reader, stream, backend)
    });
    let (mut stream, _) = listener.accept().unwrap();
    auth::accept(&mut stream, &secret()).unwrap();
    (producer, sender, stream)
}

/// A receiver that takes the whole stream, End included, and closes
/// without its last word (that the End frame landed): the sender cannot
/// know the stream arrived, and says so (a new connection would resume).
fn end_not_confirmed(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp end not confirmed");
    let (mut producer, sender, mut stream) = sender_to_a_stranger(backend);
    producer.write_bytes(0, b"x").unwrap();
    producer.finish(1).unwrap();
    let mut start = b"CDrs".to_vec();
    start.extend([0; 12]);
    start.extend(b"CDcr");
    start.extend([0; 4]);
    start.extend(4096u64.to_le_bytes());
    stream.write_all(&start).unwrap();
    // The frame (16 + 16 bytes) and the End frame (16).
    let mut got = [0u8; 48];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got[32..36], &[0; 4], "an End frame is empty");
    drop(stream);
    let err = sender.join().unwrap().unwrap_err();
    assert!(matches!(err, LinkError::EndUnconfirmed { .. }), "{err:?}");
    assert!(err.is_disconnect());
}

/// A receiver that sends something other than credit: the sender stops.
fn bad_credit(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp bad credit");
    let (mut producer, sender, mut stream) = sender_to_a_stranger(backend);
    let addr = stream.local_addr().unwrap();
    producer.write_bytes(0, b"hello").unwrap();
    stream
        .write_all(&[&b"CDrs"[..], &[0; 12]].concat())
        .unwrap();
    stream.write_all(b"this is not credit").unwrap();
    let err = sender.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::BadCredit {
                credit: BadCredit::Garbage(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.peer(), Some(addr));
}

/// Records what a stream writes.
struct Recorder<'a>(&'a mut TcpStream, Vec<u8>);

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Recorder<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A data listener that refuses strangers, wrong secrets and a replayed
/// handshake, and then still serves a real sender.
fn listener_survives_bad_handshakes(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp listener");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(false).unwrap();
    let addr = listener.local_addr().unwrap();
    let mname = unique("mirror");
    let mirror = RingWriter::create(&mname, 1 << 16).unwrap();
    let mut consumer = RingReader::attach(&mname).unwrap();
    let server = thread::spawn(move || {
        let mut refused = 0;
        let mut mirror = Some(mirror);
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let peer = stream.peer_addr().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            match auth::accept(&mut stream, &secret()) {
                Ok(_) => {
                    stream.set_read_timeout(None).unwrap();
                    let stats = tcp::receive_into_ring(stream, mirror.take().unwrap(), backend);
                    return (refused, stats);
                }
                Err(e) => {
                    eprintln!("clusterduck: data listener: {peer}: {e}");
                    refused += 1;
                }
            }
        }
        unreachable!()
    });
    // A stranger.
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(&[0x55; 100]);
    drop(s);
    // A wrong secret.
    let mut s = TcpStream::connect(addr).unwrap();
    assert!(auth::connect(&mut s, &Secret::from_bytes([8; 32]), 1).is_err());
    drop(s);
    // A replay: a real client's handshake with another listener of the run,
    // recorded, sent again.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    let other = thread::spawn(move || {
        let (mut s, _) = other.accept().unwrap();
        auth::accept(&mut s, &secret()).unwrap()
    });
    let mut s = TcpStream::connect(other_addr).unwrap();
    let mut rec = Recorder(&mut s, Vec::new());
    auth::connect(&mut rec, &secret(), 1).unwrap();
    let recorded = rec.1;
    assert_eq!(other.join().unwrap(), 1);
    drop(s);
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hello = [0u8; 40];
    s.read_exact(&mut hello).unwrap();
    let _ = s.write_all(&recorded);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a replayed handshake got an answer");
    drop(s);
    // The real sender.
    let pname = unique("producer");
    let mut producer = RingWriter::create(&pname, 1 << 16).unwrap();
    let reader = RingReader::attach(&pname).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    auth::connect(&mut s, &secret(), 1).unwrap();
    let sender = thread::spawn(move || tcp::send_ring(reader, s, backend));
    producer.write_bytes(5, b"after the strangers").unwrap();
    producer.finish(6).unwrap();
    let batch = consumer.read().unwrap();
    let frame = batch.iter().next().unwrap().unwrap();
    assert_eq!(
        (frame.seq(), frame.bytes()),
        (5, &b"after the strangers"[..])
    );
    drop(batch);
    sender.join().unwrap().unwrap();
    let (refused, stats) = server.join().unwrap();
    assert_eq!(refused, 3);
    assert_eq!(stats.unwrap().frames, 1);
}

/// A link whose connection is cut three times while frames (large values
/// among them) stream: each time both ends go on over a new connection,
/// resuming where the mirror's whole frames end, and the consumer gets
/// every frame once, in order, with its payload.
fn broken_and_resumed(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp broken and resumed");
    const FRAMES: u64 = 20_000;
    let (pname, mname) = (unique("producer"), unique("mirror"));
    let mut producer = RingWriter::create(&pname, 1 << 16).unwrap();
    let mut mirror = RingWriter::create(&mname, 1 << 16).unwrap();
    producer.set_large_bytes(1 << 20).unwrap();
    mirror.set_large_bytes(1 << 20).unwrap();
    let mut sender = tcp::RingSender::new(RingReader::attach(&pname).unwrap());
    let mut consumer = RingReader::attach(&mname).unwrap();
    mirror.wait_for_readers(1, Duration::from_secs(10)).unwrap();
    let mut receiver = tcp::RingReceiver::new(mirror, Arc::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The receiving end of each connection, for the test to cut.
    let (conns_tx, conns) = crossbeam_channel::unbounded::<TcpStream>();
    let receiving = thread::spawn(move || {
        let mut connections = 0;
        loop {
            let (mut stream, _) = listener.accept().unwrap();
            auth::accept(&mut stream, &secret()).unwrap();
            connections += 1;
            conns_tx.send(stream.try_clone().unwrap()).unwrap();
            match receiver.receive(stream, backend) {
                Ok(_) => return connections,
                Err(e) if e.is_disconnect() => assert!(!receiver.ended()),
                Err(e) => panic!("receiver: {e}"),
            }
        }
    });
    let sending = thread::spawn(move || loop {
        let mut stream = TcpStream::connect(addr).unwrap();
        auth::connect(&mut stream, &secret(), 1).unwrap();
        match sender.send(stream, backend) {
            Ok(_) => return sender.landed(),
            Err(e) if e.is_disconnect() => {}
            Err(e) => panic!("sender: {e}"),
        }
    });
    let producing = thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..FRAMES {
            // One in a hundred is larger than a quarter of the ring: a
            // large value, its body in the arena.
            let len = if seq % 100 == 7 {
                40_000
            } else {
                size_of(seq, 256)
            };
            fill(seq, &mut buf, len);
            producer.write_bytes(seq, &buf).unwrap();
        }
        producer.finish(FRAMES).unwrap();
    });
    let cuts = [FRAMES / 5, FRAMES / 2, FRAMES * 4 / 5];
    let mut current = conns.recv().unwrap();
    let (mut next, mut want) = (0u64, Vec::new());
    loop {
        let batch = match consumer.read() {
            Ok(batch) => batch,
            Err(ReadError::Ended) => break,
            Err(e) => panic!("consumer: {e}"),
        };
        for frame in batch.iter() {
            let frame = frame.unwrap();
            assert_eq!(frame.seq(), next, "every frame once, in order");
            if frame.kind() == FrameKind::End {
                continue;
            }
            let len = if next % 100 == 7 {
                40_000
            } else {
                size_of(next, 256)
            };
            fill(next, &mut want, len);
            assert_eq!(frame.bytes(), &want[..], "frame {next}'s payload");
            next += 1;
            if cuts.contains(&next) {
                // Newer connections first: the one to cut is the newest.
                while let Ok(newer) = conns.try_recv() {
                    current = newer;
                }
                current.shutdown(std::net::Shutdown::Both).unwrap();
            }
        }
    }
    assert_eq!(next, FRAMES);
    producing.join().unwrap();
    let landed = sending.join().unwrap();
    assert!(landed > 0);
    let connections = receiving.join().unwrap();
    assert_eq!(connections, 4, "three cuts, four connections");
}

/// A receiver that asks to resume past what the producer's ring published
/// (its mirror is not this ring's): the sender refuses, naming both.
fn resume_past_the_ring(backend: IoBackend) {
    if !available(backend) {
        return;
    }
    let _dog = watchdog(WATCHDOG, "tcp resume past the ring");
    let (mut producer, sender, mut stream) = sender_to_a_stranger(backend);
    producer.write_bytes(0, b"only this").unwrap();
    let mut resume = b"CDrs".to_vec();
    resume.extend([0; 4]);
    resume.extend(4096u64.to_le_bytes());
    stream.write_all(&resume).unwrap();
    let err = sender.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Resume {
                at: 4096,
                released: 0,
                published: 32,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cannot resume at ring position 4096"),
        "{err}"
    );
    drop(producer);
}

macro_rules! conformance {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn round_trip_200k_frames() {
                round_trip($backend, 200_000, 1 << 20, 1 << 20, Duration::ZERO);
            }

            #[test]
            fn round_trip_small_mirror_credit_binds() {
                round_trip($backend, 100_000, 4 << 20, 128 << 10, Duration::ZERO);
            }

            #[test]
            fn round_trip_slow_consumer_holds_back_producer() {
                round_trip(
                    $backend,
                    20_000,
                    256 << 10,
                    128 << 10,
                    Duration::from_millis(1),
                );
            }

            #[test]
            fn large_values_land_in_the_mirrors_arena() {
                large_round_trip($backend, 300, Duration::ZERO);
            }

            #[test]
            fn large_values_slow_consumer_holds_back_producer() {
                large_round_trip($backend, 200, Duration::from_millis(3));
            }

            #[test]
            fn bad_frames_of_large_values() {
                bad_large($backend);
            }

            #[test]
            fn a_value_forwarded_by_reference_is_refused() {
                forwarded_refused($backend);
            }

            #[test]
            fn body_bytes_past_credit() {
                body_past_credit($backend);
            }

            #[test]
            fn both_ends_send_without_delay() {
                no_delay($backend);
            }

            #[test]
            fn garbage_after_handshake() {
                garbage($backend);
            }

            #[test]
            fn oversize_frame() {
                oversize($backend);
            }

            #[test]
            fn truncated_frame() {
                truncated($backend);
            }

            #[test]
            fn closed_mid_stream() {
                closed_between_frames($backend);
            }

            #[test]
            fn unknown_frame_kind() {
                unknown_kind($backend);
            }

            #[test]
            fn bytes_past_credit() {
                past_credit($backend);
            }

            #[test]
            fn garbage_credit() {
                bad_credit($backend);
            }

            #[test]
            fn listener_survives_strangers() {
                listener_survives_bad_handshakes($backend);
            }

            #[test]
            fn a_broken_link_resumes_where_its_frames_stopped_landing() {
                broken_and_resumed($backend);
            }

            #[test]
            fn a_resume_past_the_ring_is_refused() {
                resume_past_the_ring($backend);
            }

            #[test]
            fn an_end_not_confirmed_is_a_disconnect() {
                end_not_confirmed($backend);
            }
        }
    };
}

conformance!(epoll, IoBackend::Epoll);
conformance!(uring, IoBackend::Uring);

/// `CLUSTERDUCK_IO=epoll` forces the readiness backend, and the choice is
/// said once on stderr however often it is asked (checked in a child
/// process, whose environment and stderr are its own).
#[test]
fn the_environment_forces_epoll_and_the_choice_is_said_once() {
    if std::env::var(common::ROLE).as_deref() == Ok("io_backend") {
        // The transport says it through `tracing`, to whatever subscriber
        // the process has: here, one that prints the bare message.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_ansi(false)
            .init();
        assert_eq!(tcp::io_backend(), IoBackend::Epoll);
        assert_eq!(tcp::io_backend(), IoBackend::Epoll);
        return;
    }
    let _dog = watchdog(WATCHDOG, "io backend child");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "the_environment_forces_epoll_and_the_choice_is_said_once",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(common::ROLE, "io_backend")
        .env(tcp::IO_ENV, "epoll")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("tcp links use"))
        .collect();
    assert_eq!(
        said,
        ["tcp links use the epoll backend (CLUSTERDUCK_IO=epoll)"],
        "{stderr}"
    );
    eprintln!("probe here: {:?}", tcp::probe_uring());
}

/// Where a receiver says its mirror ends is read without taking it from
/// the socket (it may come in parts): the sender reads it again.
#[test]
fn the_resume_position_is_peeked_and_left_for_the_sender() {
    let _dog = watchdog(WATCHDOG, "tcp peek resume");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut receiver = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut sender, _) = listener.accept().unwrap();
    let mut resume = b"CDrs".to_vec();
    resume.extend([0; 4]);
    resume.extend(4096u64.to_le_bytes());
    receiver.write_all(&resume[..6]).unwrap();
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        receiver.write_all(&resume[6..]).unwrap();
        receiver
    });
    assert_eq!(tcp::peek_resume(&sender).unwrap(), 4096);
    let mut left = [0u8; 16];
    sender.read_exact(&mut left).unwrap();
    assert_eq!(&left[..4], b"CDrs");
    // A first message that is not one is refused.
    let mut receiver = late.join().unwrap();
    receiver.write_all(&[0x55; 16]).unwrap();
    assert!(matches!(
        tcp::peek_resume(&sender),
        Err(LinkError::BadCredit {
            credit: BadCredit::Garbage(_),
            ..
        })
    ));
}
