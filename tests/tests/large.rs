//! Values larger than a ring frame, stored out of line (`Launch::
//! large_bytes`): 64 MiB values through a pipe, a fan-out and a sequenced
//! join, every byte checked, in local and process mode and across test
//! hosts; the bound; the segments after a run; a stalled edge of large
//! values beside one that flows, between the same hosts.

use std::process::Command;
use std::thread;
use std::time::Duration;

use clusterduck_tests::{
    assert_failed_saying, assert_links_used, fresh_dir, node_processes, report_row, run_id_of,
    run_segments, send_signal, start, test_hosts, watchdog,
};

const LIMIT: Duration = Duration::from_secs(300);
const MIB_64: &str = "67108864";
const MIB_128: &str = "134217728";

fn large(args: &[&str], local: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
    cmd.arg("large").args(args);
    if local {
        cmd.env("CD_TEST_LOCAL", "1");
    }
    cmd
}

/// The run's segments still in `/dev/shm`, arenas of large values
/// included (`<ring>.large`).
fn segments_of(dir: &std::path::Path) -> Vec<String> {
    let run = run_id_of(&dir.join("S.out")).expect("the run's id in S's log");
    run_segments(&run)
}

#[test]
fn values_of_64_mib_reach_every_consumer_whole_in_local_and_process_mode() {
    let dir = fresh_dir("large");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large values", LIMIT).guard(marker.clone());
    for local in [true, false] {
        let (status, out, err) =
            start(&mut large(&["2", MIB_64, MIB_128, &marker], local)).finish();
        assert!(status.success(), "local {local}: {err}");
        assert_eq!(
            out.trim(),
            "K got 2 values of 67108864 bytes",
            "local {local}: {err}"
        );
        // Each node's report: its values in and out.
        for (node, took) in [("W0", 2), ("W1", 2), ("W2", 2), ("J", 4), ("K", 2)] {
            let row = report_row(&err, node);
            assert_eq!(row[2], took.to_string(), "{row:?}");
        }
        if !local {
            // Printed for the record: each node's peak RSS, beside its
            // space of 128 MiB (shared pages count in both).
            eprintln!("{err}");
            assert_eq!(
                segments_of(&dir),
                Vec::<String>::new(),
                "segments after the run"
            );
        }
    }
}

#[test]
fn a_value_larger_than_the_space_for_large_values_fails_naming_node_size_and_setting() {
    let dir = fresh_dir("large-bound");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large bound", LIMIT).guard(marker.clone());
    for local in [true, false] {
        let (status, _, err) =
            start(&mut large(&["1", MIB_64, "33554432", &marker], local)).finish();
        assert_failed_saying(
            status,
            &err,
            "error: node S failed: could not send the value: a value of 67108872 bytes is larger than the node's space for large values, 33554432 bytes (raise the launch's large_bytes)",
        );
    }
}

/// Workers that pass large values on with `forward` write a frame that
/// refers to the value where it lies, in the spout's space, and no copy:
/// watched while a run goes, the spaces of `W0..W2` never get a page
/// written past their header, while the spout's fills (the positive
/// control).
#[test]
fn a_forwarded_large_value_is_not_copied_into_the_forwarding_workers_space() {
    use std::os::unix::fs::MetadataExt;
    let dir = fresh_dir("large-forward");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large forward", LIMIT).guard(marker.clone());
    // Spaces of 8 MiB: three values each; twenty go through, so the
    // spout's space is reused over and over while forwarded values are
    // read through references to it (every consumer checks every byte: a
    // value released too early would be overwritten under them).
    let master = start(&mut large(&["20", "2097152", "8388608", &marker], false));
    let run = loop {
        if let Some(run) = run_id_of(&dir.join("S.out")) {
            break run;
        }
        thread::sleep(Duration::from_millis(5));
    };
    // Bytes allocated to each arena, at their greatest; how many looks saw
    // the spout's in use.
    let arena = |node: &str| format!("/dev/shm/clusterduck-{run}-{node}.large");
    let mut most = std::collections::BTreeMap::<&str, u64>::new();
    let mut spout_seen = 0;
    loop {
        for node in ["S", "W0", "W1", "W2"] {
            if let Ok(meta) = std::fs::metadata(arena(node)) {
                let bytes = meta.blocks() * 512;
                let top = most.entry(node).or_insert(0);
                *top = (*top).max(bytes);
                if node == "S" && bytes > 0 {
                    spout_seen += 1;
                }
            }
        }
        if run_segments(&run).is_empty() && spout_seen > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let (status, out, err) = master.finish();
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "K got 20 values of 2097152 bytes", "{err}");
    assert!(
        spout_seen >= 10,
        "the spout's space seen in use {spout_seen} times"
    );
    assert!(most["S"] >= 2 << 20, "{most:?}");
    // A space's header page is written when it is made; a value copied in
    // would add its 2 MiB.
    for w in ["W0", "W1", "W2"] {
        let written = most.get(w).copied().expect("its space");
        assert!(written <= 4096, "{w}'s space was written: {most:?}");
    }
}

#[test]
fn the_segments_of_large_values_go_when_a_node_was_killed() {
    let dir = fresh_dir("large-killed");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large killed", LIMIT).guard(marker.clone());
    // Values of 2 MiB, many: the run lasts while the test looks (each is
    // checked byte by byte, slowly in a debug build).
    let master = start(&mut large(&["100000", "2097152", MIB_128, &marker], false));
    let arena = loop {
        let arenas: Vec<String> = run_id_of(&dir.join("S.out"))
            .map(|run| run_segments(&run))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.ends_with(".large"))
            .collect();
        // A positive control: the arenas are there while the run goes.
        if arenas.len() >= 4 {
            break arenas;
        }
        thread::sleep(Duration::from_millis(5));
    };
    assert!(arena.iter().any(|a| a.ends_with("-S.large")), "{arena:?}");
    let victim = node_processes(&marker)
        .into_iter()
        .find(|n| n.node == "W1")
        .expect("W1 runs");
    send_signal(victim.pid, libc::SIGKILL);
    let (status, _, err) = master.finish();
    assert!(!status.success(), "{err}");
    assert!(err.contains("node W1"), "{err}");
    assert_eq!(
        segments_of(&dir),
        Vec::<String>::new(),
        "segments after the run"
    );
}

#[test]
fn values_of_64_mib_cross_hosts_whole_and_the_bound_holds_there_too() {
    let Some(_config) = test_hosts("large values across hosts") else {
        return;
    };
    let dir = fresh_dir("large-hosts");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large across hosts", LIMIT).guard(marker.clone());
    let across = |bytes: &str, space: &str, io: &str| {
        let _ = std::fs::remove_dir_all(&dir);
        start(
            large(&["2", bytes, space, &marker], false)
                .env("CD_TEST_HOSTS", "cd-h1,cd-h2,cd-h3")
                .env("CLUSTERDUCK_IO", io),
        )
        .finish()
    };
    // Nodes go round-robin: S on cd-h1, W0 on cd-h2, W1 on cd-h3, ...: every
    // edge out of S, and J's inputs, cross hosts; with either backend.
    for io in ["uring", "epoll"] {
        let (status, out, err) = across(MIB_64, MIB_128, io);
        assert!(status.success(), "{io}: {err}");
        assert_eq!(
            out.trim(),
            "K got 2 values of 67108864 bytes",
            "{io}: {err}"
        );
        assert_links_used(&dir, io);
    }
    let (status, _, err) = across(MIB_64, "33554432", "uring");
    assert_failed_saying(
        status,
        &err,
        "error: node S failed: could not send the value: a value of 67108872 bytes is larger than the node's space for large values, 33554432 bytes (raise the launch's large_bytes)",
    );
}

/// A large value holds back the values behind it on its edge, and no other
/// edge: `L -> KL` is stalled (KL holds value 0, both spaces are full)
/// while `S -> KS`, between the same two hosts, carries all its values.
#[test]
fn a_stalled_edge_of_large_values_does_not_hold_back_another_between_the_same_hosts() {
    let Some(_config) = test_hosts("lanes across hosts") else {
        return;
    };
    let dir = fresh_dir("large-lanes");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large lanes", LIMIT).guard(marker.clone());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
    cmd.args(["lanes", &marker])
        .env("CD_TEST_HOSTS", "cd-h1,cd-h2");
    let (status, _, err) = start(&mut cmd).finish();
    assert!(status.success(), "{err}");
    let said = std::fs::read_to_string(dir.join("KL.out")).unwrap();
    // Values of 8 MiB and 16 bytes of archive: three fill each space of
    // 32 MiB; KL holds 0, the mirror's space holds 0..2, L's own holds 3..5
    // (3 until all of it crossed), and the seventh waits.
    assert!(
        said.lines()
            .any(|l| l == "KL held 0 while KS got 1000 and L had sent 6"),
        "{said}\n{err}"
    );
    for (node, took) in [("KL", 10), ("KS", 1000)] {
        let row = report_row(&err, node);
        assert_eq!(row[2], took.to_string(), "{row:?}");
    }
}

#[test]
fn a_slow_consumer_of_large_values_holds_the_producer_back_within_its_space() {
    let dir = fresh_dir("large-slow");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("large slow", LIMIT).guard(marker.clone());
    for local in [true, false] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
        cmd.args(["slowlarge", &marker]);
        if local {
            cmd.env("CD_TEST_LOCAL", "1");
        }
        let (status, out, err) = start(&mut cmd).finish();
        assert!(status.success(), "local {local}: {err}");
        // Values of 8 MiB and 16 bytes of archive: three fill 32 MiB. K
        // prints on its stdout: the master's in local mode, K.out else.
        let said = if local {
            out
        } else {
            std::fs::read_to_string(dir.join("K.out")).unwrap()
        };
        assert!(
            said.lines().any(|l| l == "K held 0 while S had sent 3"),
            "local {local}: {said}\n{err}"
        );
        if !local {
            // The spout's peak RSS: its value being sent, the pages of its
            // space it wrote, and the process: within its space plus two
            // values and 16 MiB.
            let row = report_row(&err, "S");
            let rss: f64 = row.last().unwrap().parse().unwrap();
            eprintln!("peak RSS of S: {rss} MiB (space 32 MiB, values 8 MiB)");
            assert!(rss <= 32.0 + 16.0 + 16.0, "{row:?}");
        }
        let _ = std::fs::remove_dir_all(dir.join("signals"));
    }
}
