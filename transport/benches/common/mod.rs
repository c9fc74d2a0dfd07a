//! What the transport's benches share: a paced writer's loop, the clock
//! latencies are stamped with, their quantiles passed from a child process as one line, and the name of
//! an I/O backend on a command line. Each bench uses part of it.
#![allow(dead_code)]

use std::thread;
use std::time::{Duration, Instant};

use std::net::{TcpListener, TcpStream};

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::IoBackend;
use clusterduck_transport::{RingName, RingReader, RingWriter};

/// The receiving end of a link, up to its first frame: a mirror ring of
/// `bytes` named `name` with a reader attached, and the stream of the one
/// connection accepted on `listen` (whose address is printed first, for the
/// parent) once it proved it knows `secret`.
pub(crate) fn accept_into_mirror(
    listen: &str,
    name: &RingName,
    bytes: usize,
    secret: &Secret,
) -> (RingWriter, RingReader, TcpStream) {
    let mirror = RingWriter::create(name, bytes).unwrap();
    let reader = RingReader::attach(name).unwrap();
    let listener = TcpListener::bind(listen).unwrap();
    println!("{}", listener.local_addr().unwrap());
    let (mut stream, _) = listener.accept().unwrap();
    auth::accept(&mut stream, secret).unwrap();
    (mirror, reader, stream)
}

/// The monotonic clock in nanoseconds: one clock for every process of this
/// machine, whatever its network namespace.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// p50, p99 and p99.9 of `latencies` (nanoseconds), as one line for
/// [`parse_quantiles`].
pub(crate) fn quantiles(mut latencies: Vec<u64>) -> String {
    latencies.sort_unstable();
    let q = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    format!("{} {} {}", q(0.5), q(0.99), q(0.999))
}

/// A line of [`quantiles`], in microseconds.
pub(crate) fn parse_quantiles(line: &str) -> [f64; 3] {
    let mut it = line
        .split_whitespace()
        .map(|v| v.parse::<f64>().expect("a number") / 1e3);
    [(); 3].map(|_| it.next().expect("three figures"))
}

/// `uring` or `epoll`, as [`IoBackend`]'s `Display` writes it.
pub(crate) fn backend(name: &str) -> IoBackend {
    if name == "uring" {
        IoBackend::Uring
    } else {
        IoBackend::Epoll
    }
}

/// Calls `write(i)` for `i` in `0..frames`, one every `1/rate` seconds.
pub(crate) fn paced(frames: u64, rate: u64, mut write: impl FnMut(u64)) {
    let start = Instant::now();
    let period = Duration::from_nanos(1_000_000_000 / rate);
    for i in 0..frames {
        let due = start + period * i as u32;
        let now = Instant::now();
        if now < due {
            thread::sleep(due - now);
        }
        write(i);
    }
}
