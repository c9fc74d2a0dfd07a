//! 4 KiB frames through the whole TCP link over loopback: producer ring →
//! `send_ring` → TCP → `receive_into_ring` → mirror ring → consumer, for both
//! backends (messages/s and Gbit/s of payload, median of `CD_BENCH_RUNS`
//! runs, 5 by default), next to `iperf3` on the same loopback when it is
//! installed. `cargo bench -p clusterduck-transport --bench tcp_link`.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{self, IoBackend};
use clusterduck_transport::{ReadError, RingName, RingReader, RingWriter};

const FRAME: usize = 4096;
const RING: usize = 4 << 20;

fn runs() -> usize {
    std::env::var("CD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn name(node: &str, i: usize) -> RingName {
    RingName::new(&format!("bench{}_{i}", std::process::id()), node).unwrap()
}

/// One run: seconds to move `n` frames end to end.
fn run(backend: IoBackend, n: u64, i: usize) -> f64 {
    let secret = Secret::from_bytes([3; 32]);
    let (pname, mname) = (name("producer", i), name("mirror", i));
    let mut producer = RingWriter::create(&pname, RING).unwrap();
    let reader = RingReader::attach(&pname).unwrap();
    let mirror = RingWriter::create(&mname, RING).unwrap();
    let mut consumer = RingReader::attach(&mname).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let s2 = secret.clone();
    let receiver = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        auth::accept(&mut stream, &s2).unwrap();
        tcp::receive_into_ring(stream, mirror, backend).unwrap()
    });
    let sender = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        auth::connect(&mut stream, &secret, 1).unwrap();
        tcp::send_ring(reader, stream, backend).unwrap()
    });
    let check = thread::spawn(move || {
        let mut got = 0u64;
        let mut sum = 0u64;
        loop {
            match consumer.read() {
                Ok(batch) => {
                    for f in &batch {
                        let f = f.unwrap();
                        // Touch the payload, as a consumer would.
                        sum =
                            sum.wrapping_add(f.bytes().get(FRAME / 2).map_or(0, |&b| u64::from(b)));
                        got += 1;
                    }
                }
                Err(ReadError::Ended) => return (got, sum),
                Err(e) => panic!("{e}"),
            }
        }
    });
    let payload = vec![0x5A; FRAME];
    let start = Instant::now();
    for seq in 0..n {
        producer.write_bytes(seq, &payload).unwrap();
    }
    producer.finish(n).unwrap();
    let (got, _) = check.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, n + 1);
    sender.join().unwrap();
    receiver.join().unwrap();
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// iperf3 over loopback, in Gbit/s (receiver side), or why not.
fn iperf3() -> Result<f64, String> {
    let server = Command::new("iperf3")
        .args(["-s", "-1", "-D", "-B", "127.0.0.1"])
        .status()
        .map_err(|e| format!("iperf3 not runnable ({e})"))?;
    if !server.success() {
        return Err("iperf3 -s failed".into());
    }
    thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-t", "3", "-J"])
        .output()
        .map_err(|e| format!("iperf3 -c: {e}"))?;
    let json = String::from_utf8_lossy(&out.stdout);
    // "sum_received": { ... "bits_per_second": X
    let at = json
        .find("\"sum_received\"")
        .ok_or_else(|| format!("no sum_received in iperf3 output: {json}"))?;
    let rest = &json[at..];
    let b = rest
        .find("\"bits_per_second\":")
        .ok_or("no bits_per_second")?;
    let num: String = rest[b + 18..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    num.parse::<f64>()
        .map(|bps| bps / 1e9)
        .map_err(|e| format!("bits_per_second {num:?}: {e}"))
}

fn main() {
    // `cargo test --benches` runs benches once with `--bench` absent: keep
    // that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u64 = if quick { 10_000 } else { 500_000 };
    let runs = if quick { 1 } else { runs() };
    let mut best = 0f64;
    println!("tcp link over loopback: {n} frames of {FRAME} B, ring {RING} B each side, median of {runs}");
    for backend in [IoBackend::Epoll, IoBackend::Uring] {
        if backend == IoBackend::Uring {
            if let Err(why) = tcp::probe_uring() {
                println!("  {backend}: SKIPPED: {why}");
                continue;
            }
        }
        let secs = median((0..runs).map(|i| run(backend, n, i)).collect());
        let msgs = n as f64 / secs;
        let gbit = msgs * FRAME as f64 * 8.0 / 1e9;
        best = best.max(gbit);
        println!(
            "  {backend:5}: {:6.2} M msg/s, {gbit:6.2} Gbit/s payload",
            msgs / 1e6
        );
    }
    if quick {
        return;
    }
    match iperf3() {
        Ok(g) => println!(
            "  iperf3 : {g:6.2} Gbit/s (127.0.0.1, 3 s); best link = {:.0} % of it",
            100.0 * best / g
        ),
        Err(why) => println!("  iperf3 : SKIPPED: {why}"),
    }
}
