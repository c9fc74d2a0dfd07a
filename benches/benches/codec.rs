//! The frame codec: what every value costs on its way through a ring in
//! process mode — archived (rkyv) on emit, validated and read back on the
//! other side — for the bench runner's 64-byte payload and a 4 KiB one.
//!
//! `cargo bench -p clusterduck-bench --bench codec`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rkyv::rancor;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Sample {
    sent_ns: u64,
    payload: Vec<u8>,
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    for size in [64usize, 4096] {
        let value = Sample {
            sent_ns: 42,
            payload: vec![0xAB; size],
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&value).unwrap();
        group.bench_function(format!("archive/{size}"), |b| {
            let mut buffer = rkyv::util::AlignedVec::<16>::new();
            b.iter(|| {
                buffer.clear();
                buffer = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
                    black_box(&value),
                    std::mem::take(&mut buffer),
                )
                .unwrap();
                black_box(buffer.len())
            })
        });
        group.bench_function(format!("access-checked/{size}"), |b| {
            b.iter(|| {
                let archived =
                    rkyv::access::<ArchivedSample, rancor::Error>(black_box(&bytes)).unwrap();
                black_box(archived.payload.len())
            })
        });
        group.bench_function(format!("decode-owned/{size}"), |b| {
            b.iter(|| {
                let v = rkyv::from_bytes::<Sample, rancor::Error>(black_box(&bytes)).unwrap();
                black_box(v.payload.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
