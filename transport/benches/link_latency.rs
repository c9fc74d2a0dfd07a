//! One cross-host hop's latency under a paced load: the floor under the
//! end-to-end latency of a topology whose edges cross hosts, next to the
//! floor of the machine itself.
//!
//! - **link**: producer ring → `send_ring` (a thread) → TCP → `receive_into_ring`
//!   (a thread) → mirror ring → a blocking reader: what an edge across
//!   hosts is, three wake-ups per hop (the link's sender, its receiver, the
//!   consumer);
//! - **bare**: the same stamps written straight into a TCP socket
//!   (`TCP_NODELAY`) and read by a thread blocked in `read`: one wake-up,
//!   the least a hop across hosts costs here.
//!
//! The writer sends a frame holding the monotonic clock every `1/rate`
//! seconds, sleeping in between as a spout waiting for its source does; the
//! reader records the clock at its read minus that (both ends on one
//! kernel, so one clock). Between the test hosts (`tools/testnet.sh up 2`:
//! writer in `cd-h2`, reader in `cd-h1`), else over loopback.
//!
//! ```text
//! cargo bench -p clusterduck-transport --bench link_latency
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{self, IoBackend};
use clusterduck_transport::{FrameKind, RingName, RingReader, RingWriter};

mod common;

use common::{accept_into_mirror, backend, monotonic_ns, paced, parse_quantiles, quantiles};

const RING: usize = 4 << 20;
const STAMP: usize = 8;

/// Link reader: a mirror ring fed by `receive_into_ring`, read by this
/// thread; prints the address, then the quantiles.
fn role_link_reader(listen: &str, backend: IoBackend) {
    let secret = Secret::from_bytes([5; 32]);
    let name = RingName::new(&format!("linklat{}", std::process::id()), "mirror").unwrap();
    let (mirror, mut ring, stream) = accept_into_mirror(listen, &name, RING, &secret);
    let receiver = thread::spawn(move || tcp::receive_into_ring(stream, mirror, backend));
    let mut latencies = Vec::new();
    'read: while let Ok(batch) = ring.read() {
        let now = monotonic_ns();
        for frame in &batch {
            let Ok(frame) = frame else { break 'read };
            if frame.kind() == FrameKind::Data {
                let stamp: [u8; STAMP] = frame.bytes()[..STAMP].try_into().unwrap();
                latencies.push(now.saturating_sub(u64::from_le_bytes(stamp)));
            }
        }
    }
    receiver.join().unwrap().unwrap();
    println!("{}", quantiles(latencies));
}

/// Link writer: a producer ring streamed by `send_ring`.
fn role_link_writer(peer: &str, frames: u64, rate: u64, backend: IoBackend) {
    let secret = Secret::from_bytes([5; 32]);
    let name = RingName::new(&format!("linklat{}", std::process::id()), "producer").unwrap();
    let mut producer = RingWriter::create(&name, RING).unwrap();
    producer.wake_every(1);
    let reader = RingReader::attach(&name).unwrap();
    let mut stream = TcpStream::connect(peer).unwrap();
    auth::connect(&mut stream, &secret, 1).unwrap();
    let sender = thread::spawn(move || tcp::send_ring(reader, stream, backend));
    paced(frames, rate, |i| {
        producer
            .write_bytes(i, &monotonic_ns().to_le_bytes())
            .unwrap()
    });
    producer.finish(frames).unwrap();
    sender.join().unwrap().unwrap();
}

/// Bare reader: stamps straight from a socket, by a thread blocked in
/// `read`.
fn role_bare_reader(listen: &str) {
    let listener = TcpListener::bind(listen).unwrap();
    println!("{}", listener.local_addr().unwrap());
    let (mut stream, _) = listener.accept().unwrap();
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..]).unwrap();
        if n == 0 {
            break;
        }
        let now = monotonic_ns();
        have += n;
        let whole = have / STAMP * STAMP;
        for stamp in buf[..whole].chunks_exact(STAMP) {
            latencies.push(now.saturating_sub(u64::from_le_bytes(stamp.try_into().unwrap())));
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    println!("{}", quantiles(latencies));
}

/// Bare writer: stamps straight into a socket.
fn role_bare_writer(peer: &str, frames: u64, rate: u64) {
    let mut stream = TcpStream::connect(peer).unwrap();
    stream.set_nodelay(true).unwrap();
    paced(frames, rate, |_| {
        stream.write_all(&monotonic_ns().to_le_bytes()).unwrap()
    });
}

/// Where the two ends run: in the test hosts' namespaces, or here.
struct Hosts {
    namespaces: bool,
}

impl Hosts {
    fn command(&self, ns: &str, args: &[String]) -> Command {
        let me = std::env::current_exe().expect("this bench");
        if self.namespaces {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(me).args(args);
            c
        } else {
            let mut c = Command::new(me);
            c.args(args);
            c
        }
    }

    fn listen(&self) -> &'static str {
        if self.namespaces {
            "10.203.0.11:0"
        } else {
            "127.0.0.1:0"
        }
    }
}

/// One measurement: p50, p99, p99.9 in µs. `kind` is `link` or `bare`.
fn measure(hosts: &Hosts, kind: &str, backend: IoBackend, frames: u64, rate: u64) -> [f64; 3] {
    let reader_args = vec![
        "--role".into(),
        format!("{kind}-reader"),
        hosts.listen().into(),
        backend.to_string(),
    ];
    let mut reader: Child = hosts
        .command("cd-h1", &reader_args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the reader");
    let mut out = BufReader::new(reader.stdout.take().expect("piped"));
    let mut addr = String::new();
    out.read_line(&mut addr).expect("the reader's address");
    let writer_args = vec![
        "--role".into(),
        format!("{kind}-writer"),
        addr.trim().into(),
        frames.to_string(),
        rate.to_string(),
        backend.to_string(),
    ];
    let status = hosts
        .command("cd-h2", &writer_args)
        .status()
        .expect("run the writer");
    assert!(status.success(), "the writer failed: {status}");
    let mut line = String::new();
    out.read_line(&mut line).expect("the reader's figures");
    reader.wait().expect("the reader ends");
    parse_quantiles(&line)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--role") {
        let arg = |i: usize| args[at + i].as_str();
        match arg(1) {
            "link-reader" => role_link_reader(arg(2), backend(arg(3))),
            "bare-reader" => role_bare_reader(arg(2)),
            "link-writer" => role_link_writer(
                arg(2),
                arg(3).parse().expect("frames"),
                arg(4).parse().expect("rate"),
                backend(arg(5)),
            ),
            "bare-writer" => role_bare_writer(
                arg(2),
                arg(3).parse().expect("frames"),
                arg(4).parse().expect("rate"),
            ),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    // `cargo test --benches` runs benches once without `--bench`: keep
    // that short.
    let quick = !args.iter().any(|a| a == "--bench");
    let namespaces = ["cd-h1", "cd-h2"].iter().all(|ns| {
        Command::new("ip")
            .args(["netns", "exec", ns, "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    let hosts = Hosts { namespaces };
    let (rates, runs): (&[u64], usize) = if quick {
        (&[100_000], 1)
    } else {
        (&[10_000, 100_000, 1_000_000], 3)
    };
    println!(
        "one tcp hop, 8-byte frames, writer paced by sleeping, {} (median of {runs})",
        if namespaces {
            "cd-h2 -> cd-h1"
        } else {
            "over loopback (test hosts not up)"
        }
    );
    let mut cases = vec![("bare", IoBackend::Epoll), ("link", IoBackend::Epoll)];
    match tcp::probe_uring() {
        Ok(()) => cases.push(("link", IoBackend::Uring)),
        Err(why) => println!("  link uring: SKIPPED: {why}"),
    }
    for (kind, backend) in cases {
        for &rate in rates {
            // A second of frames at each rate, 20 000 at least.
            let frames = rate.max(20_000);
            let frames = if quick { frames / 10 } else { frames };
            let results: Vec<[f64; 3]> = (0..runs)
                .map(|_| measure(&hosts, kind, backend, frames, rate))
                .collect();
            let median = |i: usize| {
                let mut v: Vec<f64> = results.iter().map(|r| r[i]).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let label = if kind == "bare" {
                "bare socket".to_owned()
            } else {
                format!("link {backend}")
            };
            println!(
                "  {label:11} {rate:>9} frames/s: p50 {:7.1} µs  p99 {:7.1} µs  p99.9 {:7.1} µs",
                median(0),
                median(1),
                median(2)
            );
        }
    }
}
