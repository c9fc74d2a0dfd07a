//! The run that prints the figures: messages/s, bytes/s and the writer's CPU
//! time per message for the shared-memory ring across processes, beside the
//! two baselines (crossbeam-channel between threads; a bare busy-spinning
//! fixed-slot SPSC ring across processes). Each figure is the median of
//! several runs.
//!
//! `cargo bench -p clusterduck-transport --bench ring_report`
//! (`CD_BENCH_RUNS`, default 5, sets the number of runs per figure).

mod support;

use std::time::Duration;
use support::{timed, BareRig, ChannelRig, RingRig};

struct Figure {
    msgs_per_s: f64,
    bytes_per_s: f64,
    cpu_ns_per_msg: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Whether `CD_BENCH_FILTER` (a substring of a line's label such as
/// "shm ring 64 B 1 r") selects this figure; every figure if unset.
fn selected(what: &str, len: usize, readers: usize) -> bool {
    std::env::var("CD_BENCH_FILTER")
        .map(|f| format!("{what} {len} B {readers} r").contains(&f))
        .unwrap_or(true)
}

fn measure(runs: usize, n: u64, len: usize, mut run: impl FnMut(u64)) -> Figure {
    run(n / 10); // warm-up
    let samples: Vec<(Duration, Duration)> = (0..runs).map(|_| timed(|| run(n))).collect();
    let wall = median(samples.iter().map(|s| s.0.as_secs_f64()).collect());
    let cpu = median(samples.iter().map(|s| s.1.as_secs_f64()).collect());
    Figure {
        msgs_per_s: n as f64 / wall,
        bytes_per_s: n as f64 * len as f64 / wall,
        cpu_ns_per_msg: cpu * 1e9 / n as f64,
    }
}

fn print(what: &str, len: usize, readers: usize, f: &Figure) {
    println!(
        "{what:<26} {len:>6} B {readers} r {:>9.2} M msg/s {:>8.2} GiB/s {:>8.1} ns CPU/msg (writer)",
        f.msgs_per_s / 1e6,
        f.bytes_per_s / (1u64 << 30) as f64,
        f.cpu_ns_per_msg
    );
}

fn main() {
    if support::run_child_role() {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing
    // we need to run for.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("CD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "median of {runs} runs; ring capacity {} KiB",
        support::RING_BYTES / 1024
    );
    let mut ring64 = [0.0; 2];
    let mut cpu64 = [0.0; 2];
    for &len in &[64usize, 1024, 64 * 1024] {
        let n: u64 = match len {
            64 => 20_000_000,
            1024 => 4_000_000,
            _ => 200_000,
        };
        for (i, &readers) in [1usize, 4].iter().enumerate() {
            if selected("clusterduck shm ring", len, readers) {
                let mut rig = RingRig::new(readers, len);
                let f = measure(runs, n, len, |n| rig.run(n));
                rig.finish();
                print("clusterduck shm ring", len, readers, &f);
                if len == 64 {
                    ring64[i] = f.msgs_per_s;
                    cpu64[i] = f.cpu_ns_per_msg;
                }
            }
            if selected("crossbeam-channel threads", len, readers) {
                let mut rig = ChannelRig::new(readers, len);
                let f = measure(runs, n, len, |n| rig.run(n));
                rig.finish();
                print("crossbeam-channel threads", len, readers, &f);
            }
        }
    }
    if !selected("bare spin SPSC 64B slots", 64, 1) {
        return;
    }
    let mut rig = BareRig::new();
    let bare = measure(runs, 50_000_000, 64, |n| rig.run(n));
    rig.finish();
    print("bare spin SPSC 64B slots", 64, 1, &bare);
    println!(
        "64 B, 1 reader: ring / bare = {:.0} %   writer CPU/msg 4 readers / 1 reader = {:.2}",
        100.0 * ring64[0] / bare.msgs_per_s,
        cpu64[1] / cpu64[0]
    );
}
