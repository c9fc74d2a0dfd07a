//! How values reach the replicas of a consumer on shared memory, the two
//! ways measured side by side (issue 14):
//!
//! - "shared ring": the producer writes each value once, into its one ring;
//!   each of the `R` replicas reads every frame and keeps those whose id is
//!   its own (`seq mod R`), skipping the others by their header (what
//!   Clusterduck does);
//! - "ring per replica": the producer writes each value into the ring of
//!   the replica it is for; each replica reads its ring whole.
//!
//! One producer thread and `R` reader threads (on this machine's cores, as
//! the node processes of a run would share them), `n` values of 64 bytes;
//! the clock runs from the first write until every reader saw its End
//! frame. Each reader checks that it got exactly its share. Each figure is
//! the median of several runs, run alternately.
//!
//! `cargo bench -p clusterduck-transport --bench replica_routing`, with
//! `CD_BENCH_MESSAGES` (default 10 000 000), `CD_BENCH_RUNS` (default 5)
//! and `CD_BENCH_WORK` (default 0: steps of busy work per value kept, as a
//! hot worker's function; 1000 steps take about 0.3 µs here).

use std::thread;
use std::time::{Duration, Instant};

use clusterduck_transport::{FrameKind, RingName, RingReader, RingWriter};

const RING_BYTES: usize = 4 << 20;
const PAYLOAD: [u8; 64] = [7; 64];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Shared,
    PerReplica,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `ring` to its end, keeping the ids `seq mod replicas == index`
/// when `filter`; returns how many it kept.
fn read(mut ring: RingReader, index: u64, replicas: u64, filter: bool, work: u64) -> u64 {
    let mut kept = 0u64;
    let mut check = 0u64;
    loop {
        let batch = match ring.read_timeout(Duration::from_millis(20)) {
            Ok(Some(batch)) => batch,
            Ok(None) => continue,
            Err(clusterduck_transport::ReadError::Ended) => return kept,
            Err(e) => panic!("reading: {e}"),
        };
        for frame in batch.iter() {
            let frame = frame.expect("a frame");
            match frame.kind() {
                FrameKind::Data if !filter || frame.seq() % replicas == index => {
                    kept += 1;
                    check = check.wrapping_add(u64::from(frame.bytes()[0]));
                    let mut x = frame.seq();
                    for _ in 0..work {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    std::hint::black_box(x);
                }
                FrameKind::Data => {}
                FrameKind::End => {
                    assert_eq!(check, kept * 7);
                    return kept;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// One run: the seconds from the first write to the last End read.
fn run(way: Way, replicas: u64, n: u64, round: u64, work: u64) -> f64 {
    let run_id = format!(
        "routing{}x{round}x{replicas}{}",
        std::process::id(),
        way as u8
    );
    let rings = match way {
        Way::Shared => 1,
        Way::PerReplica => replicas,
    };
    let names: Vec<RingName> = (0..rings)
        .map(|r| RingName::new(&run_id, &format!("R{r}")).expect("a ring name"))
        .collect();
    let mut writers: Vec<RingWriter> = names
        .iter()
        .map(|name| RingWriter::create(name, RING_BYTES).expect("create a ring"))
        .collect();
    let readers: Vec<thread::JoinHandle<u64>> = (0..replicas)
        .map(|r| {
            let name = names[(r % rings) as usize].clone();
            let filter = way == Way::Shared;
            thread::spawn(move || {
                let ring = RingReader::attach(&name).expect("attach");
                read(ring, r, replicas, filter, work)
            })
        })
        .collect();
    let per_ring = (replicas / rings) as usize;
    for w in &writers {
        w.wait_for_readers(per_ring, Duration::from_secs(10))
            .expect("readers attach");
    }
    let start = Instant::now();
    for seq in 0..n {
        let ring = (seq % rings) as usize;
        writers[ring].write_bytes(seq, &PAYLOAD).expect("write");
    }
    for w in writers.drain(..) {
        w.finish(n).expect("finish");
    }
    let kept: Vec<u64> = readers
        .into_iter()
        .map(|h| h.join().expect("a reader"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let share = |r: u64| (n + replicas - 1 - r) / replicas;
    assert_eq!(
        kept,
        (0..replicas).map(share).collect::<Vec<_>>(),
        "each its share"
    );
    let _ = clusterduck_transport::remove_run_segments(&run_id);
    elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_or("CD_BENCH_MESSAGES", 10_000_000);
    let runs = env_or("CD_BENCH_RUNS", 5);
    let work = env_or("CD_BENCH_WORK", 0);
    println!("{n} values of 64 B, {work} steps of work per value, median of {runs} runs, M values/s (range)");
    println!("| replicas | shared ring | ring per replica | shared / per replica |");
    println!("|---|---|---|---|");
    for replicas in [1u64, 2, 4, 8] {
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..runs {
            for (i, way) in [Way::Shared, Way::PerReplica].into_iter().enumerate() {
                times[i].push(run(way, replicas, n, round, work));
            }
        }
        let rate = |t: &Vec<f64>| {
            let lo = n as f64 / t.iter().copied().fold(0.0, f64::max) / 1e6;
            let hi = n as f64 / t.iter().copied().fold(f64::MAX, f64::min) / 1e6;
            (n as f64 / median(t.clone()) / 1e6, lo, hi)
        };
        let (shared, s_lo, s_hi) = rate(&times[0]);
        let (per, p_lo, p_hi) = rate(&times[1]);
        println!(
            "| {replicas} | {shared:.1} ({s_lo:.1}–{s_hi:.1}) | {per:.1} ({p_lo:.1}–{p_hi:.1}) | {:.2} |",
            shared / per
        );
    }
}
