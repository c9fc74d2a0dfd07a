//! The bundling tables alone: values offered and bundles completed per
//! second, for sequenced (reorder window) and unordered (sparse) tables.
//!
//! `cargo bench -p clusterduck-bench --bench bundle_table`

use std::hint::black_box;
use std::time::Instant;

use clusterduck_engine::bundle::{BundleTable, Bundling, TableEvent};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BUNDLES: u64 = 100_000;

/// How a test id becomes the id a table sees.
type Key = fn(u64) -> u64;

/// Arrival order: for each upstream in turn, blocks of `spread` ids shuffled.
fn arrivals(upstreams: usize, spread: u64) -> Vec<(usize, u64)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut per: Vec<Vec<u64>> = (0..upstreams)
        .map(|_| {
            let mut ids: Vec<u64> = (0..BUNDLES).collect();
            for block in ids.chunks_mut(spread as usize) {
                rng.shuffle(block);
            }
            ids
        })
        .collect();
    let mut out = Vec::with_capacity(upstreams * BUNDLES as usize);
    for i in 0..BUNDLES as usize {
        for (u, ids) in per.iter_mut().enumerate() {
            out.push((u, ids[i]));
        }
    }
    out
}

fn run(table: &mut BundleTable<u64>, arrivals: &[(usize, u64)], key: impl Fn(u64) -> u64) -> u64 {
    let now = Instant::now();
    let mut done = 0;
    for &(u, seq) in arrivals {
        table.offer(u, key(seq), seq, now);
        while let Some(event) = table.poll(now) {
            if let TableEvent::Bundle { values, .. } = event {
                done += values.len() as u64;
            }
        }
    }
    done
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("bundle_table");
    for upstreams in [2usize, 8] {
        let values = upstreams as u64 * BUNDLES;
        group.throughput(Throughput::Elements(values));
        for (label, spread) in [("in-order", 1u64), ("shuffled-64", 64)] {
            let arrivals = arrivals(upstreams, spread);
            group.bench_function(format!("sequenced/{upstreams}-upstreams/{label}"), |b| {
                b.iter_batched_ref(
                    || BundleTable::new(upstreams, Bundling::sequenced(0).window(1024)),
                    |table| black_box(run(table, &arrivals, |s| s)),
                    BatchSize::LargeInput,
                )
            });
            // Unordered tables keyed by ids that are hashes already, dense,
            // or dense above bit 32 (`camera << 32 | frame` style).
            let keys: [(&str, Key); 3] = [
                ("hashed", |s| s.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ("dense", |s| s),
                ("strided", |s| s << 32),
            ];
            for (ids, key) in keys {
                group.bench_function(
                    format!("unordered-{ids}/{upstreams}-upstreams/{label}"),
                    |b| {
                        b.iter_batched_ref(
                            || BundleTable::new(upstreams, Bundling::unordered().window(1024)),
                            |table| black_box(run(table, &arrivals, key)),
                            BatchSize::LargeInput,
                        )
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
