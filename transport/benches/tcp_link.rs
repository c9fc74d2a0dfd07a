//! 4 KiB frames through the whole TCP link over loopback: producer ring →
//! `send_ring` → TCP → `receive_into_ring` → mirror ring → consumer, for both
//! backends (messages/s and Gbit/s of payload, median of `CD_BENCH_RUNS`
//! runs, 5 by default), next to `iperf3` on the same loopback when it is
//! installed. `cargo bench -p clusterduck-transport --bench tcp_link`.
//!
//! When the test hosts are up (`tools/testnet.sh`, network namespaces
//! `cd-h1`, `cd-h2`), the same link also runs between two of them — the
//! sender in `cd-h2`, the receiver and consumer in `cd-h1`, each a process of
//! this bench started with `ip netns exec` — beside `iperf3` between the same
//! two namespaces.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{self, IoBackend};
use clusterduck_transport::{ReadError, RingName, RingReader, RingWriter};

mod common;

use common::{accept_into_mirror, backend};

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
    parse_iperf3(&String::from_utf8_lossy(&out.stdout))
}

/// The receiver's rate in an `iperf3 -J` report, in Gbit/s.
fn parse_iperf3(json: &str) -> Result<f64, String> {
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

/// The receiving end between namespaces: listens on `listen`, prints its
/// address, lands `n` frames in a mirror and prints the seconds from the
/// connection to the End frame.
fn role_receive(listen: &str, backend: IoBackend) {
    let secret = Secret::from_bytes([3; 32]);
    let mname = name("mirror-ns", 0);
    let (mirror, mut consumer, stream) = accept_into_mirror(listen, &mname, RING, &secret);
    let start = Instant::now();
    let receiver = thread::spawn(move || tcp::receive_into_ring(stream, mirror, backend).unwrap());
    let mut got = 0u64;
    loop {
        match consumer.read() {
            Ok(batch) => {
                for f in &batch {
                    let f = f.unwrap();
                    std::hint::black_box(f.bytes().get(FRAME / 2));
                    got += 1;
                }
            }
            Err(ReadError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    receiver.join().unwrap();
    println!("{got} {secs}");
}

/// The sending end between namespaces: `n` frames to `peer`.
fn role_send(peer: &str, n: u64, backend: IoBackend) {
    let secret = Secret::from_bytes([3; 32]);
    let pname = name("producer-ns", 0);
    let mut producer = RingWriter::create(&pname, RING).unwrap();
    let reader = RingReader::attach(&pname).unwrap();
    let mut stream = TcpStream::connect(peer).unwrap();
    auth::connect(&mut stream, &secret, 1).unwrap();
    let sender = thread::spawn(move || tcp::send_ring(reader, stream, backend).unwrap());
    let payload = vec![0x5A; FRAME];
    for seq in 0..n {
        producer.write_bytes(seq, &payload).unwrap();
    }
    producer.finish(n).unwrap();
    sender.join().unwrap();
}

/// One run between the namespaces: Gbit/s of payload.
fn between_namespaces(backend: IoBackend, n: u64) -> Result<f64, String> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", "cd-h1"])
        .arg(&me)
        .args(["--role", "receive", "10.203.0.11:0", &backend.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip netns exec: {e}"))?;
    let mut out = BufReader::new(receiver.stdout.take().unwrap());
    let mut addr = String::new();
    out.read_line(&mut addr).map_err(|e| e.to_string())?;
    let sent = Command::new("ip")
        .args(["netns", "exec", "cd-h2"])
        .arg(&me)
        .args([
            "--role",
            "send",
            addr.trim(),
            &n.to_string(),
            &backend.to_string(),
        ])
        .status()
        .map_err(|e| e.to_string())?;
    let mut result = String::new();
    out.read_line(&mut result).map_err(|e| e.to_string())?;
    let _ = receiver.wait();
    if !sent.success() {
        return Err(format!("sender: {sent}"));
    }
    let mut parts = result.split_whitespace();
    let got: u64 = parts
        .next()
        .and_then(|g| g.parse().ok())
        .ok_or("no count")?;
    let secs: f64 = parts.next().and_then(|s| s.parse().ok()).ok_or("no time")?;
    if got != n + 1 {
        return Err(format!("{got} frames arrived of {}", n + 1));
    }
    Ok(n as f64 * FRAME as f64 * 8.0 / secs / 1e9)
}

/// iperf3 from cd-h2 to cd-h1, in Gbit/s.
fn iperf3_between_namespaces() -> Result<f64, String> {
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            "cd-h1",
            "iperf3",
            "-s",
            "-1",
            "-D",
            "-B",
            "10.203.0.11",
        ])
        .status()
        .map_err(|e| format!("iperf3 not runnable ({e})"))?;
    if !server.success() {
        return Err("iperf3 -s failed".into());
    }
    thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "cd-h2",
            "iperf3",
            "-c",
            "10.203.0.11",
            "-t",
            "3",
            "-J",
        ])
        .output()
        .map_err(|e| format!("iperf3 -c: {e}"))?;
    parse_iperf3(&String::from_utf8_lossy(&out.stdout))
}

fn test_hosts_up() -> bool {
    Command::new("ip")
        .args(["netns", "exec", "cd-h2", "true"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("ip")
            .args(["netns", "exec", "cd-h1", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--role") {
        match args[at + 1].as_str() {
            "receive" => role_receive(&args[at + 2], backend(&args[at + 3])),
            "send" => role_send(
                &args[at + 2],
                args[at + 3].parse().expect("frames"),
                backend(&args[at + 4]),
            ),
            other => panic!("unknown role {other}"),
        }
        return;
    }
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
    if !test_hosts_up() {
        println!("between test hosts: SKIPPED: cd-h1/cd-h2 are not up (tools/testnet.sh up 2)");
        return;
    }
    println!(
        "tcp link between test hosts cd-h2 -> cd-h1: {n} frames of {FRAME} B, median of {runs}"
    );
    let mut best = 0f64;
    for backend in [IoBackend::Epoll, IoBackend::Uring] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            match between_namespaces(backend, n) {
                Ok(g) => rates.push(g),
                Err(e) => {
                    println!("  {backend:5}: FAILED: {e}");
                    break;
                }
            }
        }
        if rates.len() == runs {
            let g = median(rates);
            best = best.max(g);
            println!("  {backend:5}: {g:6.2} Gbit/s payload");
        }
    }
    let iperf: Vec<f64> = (0..runs)
        .filter_map(|_| iperf3_between_namespaces().ok())
        .collect();
    if iperf.is_empty() {
        println!("  iperf3 : SKIPPED: iperf3 failed between the namespaces");
    } else {
        let g = median(iperf);
        println!(
            "  iperf3 : {g:6.2} Gbit/s (cd-h2 -> cd-h1, 3 s, median); best link = {:.0} % of it",
            100.0 * best / g
        );
    }
}
