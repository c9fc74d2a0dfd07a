//! One hop's latency through a ring between two processes, under a paced
//! load: the floor under the end-to-end latency of a topology, where every
//! edge is such a hop.
//!
//! The writer (this process) writes a frame every `1/rate` seconds, sleeping
//! in between as a spout waiting for its source does, each frame holding
//! the monotonic clock at its write; the reader (a child process) records
//! the clock at its read minus that. Two readers: one that blocks (spins
//! briefly, yields, then sleeps on the ring's futex: what a node does) and
//! one that never sleeps (busy polling: a core per reader).
//!
//! ```text
//! cargo bench -p clusterduck-transport --bench ring_latency
//! ```

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use clusterduck_transport::{FrameKind, RingName, RingReader, RingWriter};

mod common;

use common::{monotonic_ns, paced, parse_quantiles, quantiles};

const ROLE: &str = "RING_LATENCY_READER";
const FRAMES: u64 = 200_000;

/// The child: reads every frame of run `name`'s ring, prints p50 p99 p99.9 in nanoseconds.
fn reader(name: &str, spin: bool) {
    let name = RingName::new(name, "w").expect("a ring name");
    let mut ring = RingReader::attach(&name).expect("attach");
    println!("attached");
    let mut latencies = Vec::with_capacity(FRAMES as usize);
    'read: loop {
        let batch = if spin {
            match ring.try_read() {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(_) => break,
            }
        } else {
            match ring.read() {
                Ok(batch) => batch,
                Err(_) => break,
            }
        };
        let now = monotonic_ns();
        for frame in &batch {
            let Ok(frame) = frame else { break 'read };
            if frame.kind() != FrameKind::Data {
                continue;
            }
            let mut stamp = [0u8; 8];
            stamp.copy_from_slice(&frame.bytes()[..8]);
            latencies.push(now.saturating_sub(u64::from_le_bytes(stamp)));
        }
    }
    println!("{}", quantiles(latencies));
}

fn measure(rate: u64, spin: bool) -> [f64; 3] {
    let run = format!("lat{}", std::process::id());
    let name = RingName::new(&run, "w").expect("name");
    let mut writer = RingWriter::create(&name, 4 << 20).expect("create");
    writer.wake_every(1);
    let mut child = Command::new(std::env::current_exe().expect("this bench"))
        .env(ROLE, format!("{run} {spin}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the reader");
    writer
        .wait_for_readers(1, Duration::from_secs(10))
        .expect("the reader attaches");
    paced(FRAMES, rate, |i| {
        writer
            .write_bytes(i, &monotonic_ns().to_le_bytes())
            .expect("write")
    });
    writer.finish(FRAMES).expect("finish");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("the reader's figures");
    child.wait().expect("the reader ends");
    parse_quantiles(out.lines().last().expect("figures"))
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let (run, spin) = role.split_once(' ').expect("run and mode");
        reader(run, spin == "true");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("one hop, 8-byte frames, {FRAMES} frames, writer paced by sleeping");
    for spin in [false, true] {
        for rate in [10_000, 100_000, 1_000_000] {
            let runs: Vec<[f64; 3]> = (0..3).map(|_| measure(rate, spin)).collect();
            let median = |i: usize| {
                let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
                v.sort_by(f64::total_cmp);
                v[1]
            };
            println!(
                "reader {:8} {:>9} frames/s: p50 {:7.1} µs  p99 {:7.1} µs  p99.9 {:7.1} µs (median of 3)",
                if spin { "spinning" } else { "blocking" },
                rate,
                median(0),
                median(1),
                median(2)
            );
        }
    }
}
