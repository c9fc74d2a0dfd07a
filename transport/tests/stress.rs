//! The cross-process stress test: a writer (this process) and three reader
//! processes at different speeds pass a million frames of random sizes from
//! 1 byte to 64 KiB (mostly small, some large, many wrapping the ring); each
//! reader checks every byte, and that no frame is lost or seen twice.
//!
//! `CLUSTERDUCK_STRESS_FRAMES` overrides the frame count.

// Real processes and shared memory: nothing for loom to model.
#![cfg(not(loom))]

mod common;

use std::io::BufReader;

use clusterduck_transport::{FrameKind, ReadError, RingName, RingReader, RingWriter};
use common::{next_report, report, spawn_child, unique, watchdog, ROLE};

const RING_BYTES: usize = 256 * 1024;
const READERS: usize = 3;
const MAX_LEN: usize = 64 * 1024;
/// Payloads are windows of one pseudo-random pattern, found from the seq.
const PATTERN_LEN: usize = 2 * MAX_LEN;

fn frames() -> u64 {
    std::env::var("CLUSTERDUCK_STRESS_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Frame `seq`'s payload: 90 % up to 256 B, 9 % up to 4 KiB, 1 % up to 64 KiB.
fn payload(pattern: &[u8], seq: u64) -> &[u8] {
    let h = mix(seq);
    let r = (h >> 56) % 100;
    let x = (h >> 8) as usize;
    let len = match r {
        0..90 => 1 + x % 256,
        90..99 => 257 + x % (4096 - 256),
        _ => 4097 + x % (MAX_LEN - 4096),
    };
    let start = (h as usize >> 20) % (PATTERN_LEN - MAX_LEN);
    &pattern[start..start + len]
}

fn pattern() -> Vec<u8> {
    (0..PATTERN_LEN as u64 / 8)
        .flat_map(|i| mix(i ^ 0x00C1_D0C4).to_le_bytes())
        .collect()
}

#[test]
fn a_million_frames_reach_three_readers_in_other_processes_intact() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(300, "the stress test");
    let n = frames();
    let name = unique("stress");
    let mut writer = RingWriter::create(&name, RING_BYTES).unwrap();
    let mut children: Vec<_> = (0..READERS)
        .map(|speed| {
            spawn_child(
                "stress_reader",
                "stress-reader",
                &[
                    ("CD_RUN", name.run_id().to_owned()),
                    ("CD_NODE", name.node().to_owned()),
                    ("CD_SPEED", speed.to_string()),
                    ("CD_FRAMES", n.to_string()),
                ],
            )
        })
        .collect();
    writer
        .wait_for_readers(READERS, std::time::Duration::from_secs(60))
        .unwrap();
    let pattern = pattern();
    let mut bytes = 0u64;
    let mut wrapped = 0u64;
    for seq in 0..n {
        let p = payload(&pattern, seq);
        bytes += p.len() as u64;
        writer.write_bytes(seq, p).unwrap();
        wrapped += u64::from((bytes % RING_BYTES as u64) < p.len() as u64);
    }
    writer.finish(n).unwrap();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = next_report(&mut out).expect("a reader reported nothing");
        assert_eq!(line, format!("ok frames={n} bytes={bytes}"));
        assert!(child.wait().unwrap().success());
    }
    eprintln!(
        "stress: {n} frames, {bytes} bytes, ~{wrapped} crossing the ring's end, {READERS} readers"
    );
}

/// A reader process of the stress test (runs only when re-executed).
#[test]
#[ignore = "a role the parent test runs in a child process, not a test of its own"]
fn stress_reader() {
    if std::env::var(ROLE).as_deref() != Ok("stress-reader") {
        return;
    }
    let _w = watchdog(300, "a stress reader");
    let var = |k: &str| std::env::var(k).unwrap();
    let name = RingName::new(&var("CD_RUN"), &var("CD_NODE")).unwrap();
    let speed: u64 = var("CD_SPEED").parse().unwrap();
    let n: u64 = var("CD_FRAMES").parse().unwrap();
    let pattern = pattern();
    let mut reader = RingReader::attach(&name).unwrap();
    let (mut expect, mut bytes, mut ended) = (0u64, 0u64, false);
    loop {
        let batch = match reader.read() {
            Ok(batch) => batch,
            Err(ReadError::Ended) => break,
            Err(e) => panic!("reader {speed}: {e}"),
        };
        for frame in &batch {
            let frame = frame.unwrap();
            assert!(!ended, "a frame after End");
            assert_eq!(
                frame.seq(),
                expect,
                "reader {speed}: lost or repeated frame"
            );
            if frame.kind() == FrameKind::End {
                ended = true;
                continue;
            }
            let want = payload(&pattern, expect);
            assert!(
                frame.bytes() == want,
                "reader {speed}: frame {expect} corrupt"
            );
            bytes += want.len() as u64;
            expect += 1;
            // Speeds: 0 as fast as it goes, 1 yields now and then, 2 sleeps.
            match speed {
                1 if expect % 1024 == 0 => std::thread::yield_now(),
                2 if expect % 20_000 == 0 => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                _ => {}
            }
        }
    }
    assert!(ended && expect == n);
    report(format!("ok frames={n} bytes={bytes}"));
}
