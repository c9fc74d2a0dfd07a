//! Criterion benches of the shared-memory ring, across processes, beside two
//! baselines measured in the same run: crossbeam-channel between threads,
//! and a bare busy-spinning fixed-slot SPSC ring across processes.
//!
//! `cargo bench -p clusterduck-transport --bench shm_ring`; the figures that
//! the README quotes come from the `ring_report` bench, which prints
//! messages/s and the writer's CPU time per message.

mod support;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};
use support::{BareRig, ChannelRig, RingRig};

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_process");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for &len in &[64usize, 1024, 64 * 1024] {
        g.throughput(Throughput::Bytes(len as u64));
        for &readers in &[1usize, 4] {
            let mut rig = RingRig::new(readers, len);
            g.bench_function(BenchmarkId::new(format!("shm_ring_{readers}r"), len), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    rig.run(iters);
                    t.elapsed()
                })
            });
            rig.finish();
            let mut rig = ChannelRig::new(readers, len);
            g.bench_function(
                BenchmarkId::new(format!("crossbeam_threads_{readers}r"), len),
                |b| {
                    b.iter_custom(|iters| {
                        let t = Instant::now();
                        rig.run(iters);
                        t.elapsed()
                    })
                },
            );
            rig.finish();
        }
    }
    g.throughput(Throughput::Bytes(64));
    let mut rig = BareRig::new();
    g.bench_function(BenchmarkId::new("bare_spsc_spin_1r", 64), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            rig.run(iters);
            t.elapsed()
        })
    });
    rig.finish();
    g.finish();
}

criterion_group!(benches, throughput);

fn main() {
    if support::run_child_role() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
