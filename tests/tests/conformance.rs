//! The conformance suite: every row of the README's semantics table, run
//! in every mode (local, processes, and the test hosts with each io
//! backend) and, for bundled workers, with both loops (values decoded, and
//! read in place). A scenario's transcript (outputs, policy events, the
//! report's counts, the result) must be the same in every mode; the
//! scenarios are in `src/bin/conformance.rs`.
//!
//! After each run that started processes, no process of it is left and no
//! shared-memory segment of it; on the test hosts, the io backend asked for
//! is the one the links used.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use clusterduck_tests::{
    assert_links_used, fresh_dir, node_processes, run_id_of, run_segments, test_hosts, watchdog,
    Signals,
};

const LIMIT: Duration = Duration::from_secs(600);
const HOSTS: &str = "hosts=cd-h1,cd-h2,cd-h3";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Local,
    Processes,
    Hosts(&'static str),
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Processes => "processes",
            Mode::Hosts(_) => HOSTS,
        }
    }
}

/// Every mode; the test hosts' only where they are up (else the test is
/// skipped, which `.ci/run` makes a failure).
fn modes(test: &str) -> Vec<Mode> {
    let mut modes = vec![Mode::Local, Mode::Processes];
    if test_hosts(test).is_some() {
        modes.extend([Mode::Hosts("uring"), Mode::Hosts("epoll")]);
    }
    modes
}

/// What the test does to the master while it runs: SIGINT to its process
/// group (the terminal's Ctrl-C) when each of these flags is raised.
type Interrupts<'a> = &'a [&'a str];

struct Run {
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `scenario` in `mode` with bundled workers of `flavour`, and checks
/// that nothing of the run is left.
fn run(scenario: &str, flavour: &str, mode: Mode, interrupts: Interrupts<'_>) -> Run {
    let name = format!(
        "conf-{scenario}-{flavour}-{}",
        mode.arg().split('=').next().unwrap()
    );
    let dir = fresh_dir(&match mode {
        Mode::Hosts(io) => format!("{name}-{io}"),
        _ => name,
    });
    let marker = dir.to_str().unwrap().to_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conformance"));
    cmd.args([scenario, flavour, mode.arg(), &marker])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, as a program run from a shell: the
        // test's Ctrl-C goes to that group.
        .process_group(0);
    if let Mode::Hosts(io) = mode {
        cmd.env("CLUSTERDUCK_IO", io);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        err_pipe.read_to_string(&mut s).unwrap();
        s
    });
    let signals = Signals::new(&dir);
    for flag in interrupts {
        assert!(
            signals.wait(flag, || matches!(child.try_wait(), Ok(Some(_)))),
            "{scenario} in {mode:?}: the run ended before {flag}"
        );
        // SAFETY: kill(2) takes no pointers; the group is the child's own.
        let sent = unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        assert_eq!(sent, 0, "SIGINT to the master's group");
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    let stderr = stderr.join().unwrap();
    assert!(
        status.success(),
        "{scenario} in {mode:?}: {status}\n{stderr}"
    );
    if !matches!(mode, Mode::Local) {
        nothing_left(&dir, &marker, mode);
    }
    Run {
        stdout,
        stderr,
        elapsed,
    }
}

/// No process of the run is left, nor any of its segments; on the test
/// hosts the links used the backend asked for.
fn nothing_left(dir: &Path, marker: &str, mode: Mode) {
    assert_eq!(node_processes(marker), Vec::new(), "{mode:?}: nodes left");
    let logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "err"))
        .collect();
    assert!(
        !logs.is_empty(),
        "{mode:?}: no node logs in {}",
        dir.display()
    );
    let run = run_id_of(&logs[0]).expect("a run header in the log");
    assert_eq!(
        run_segments(&run),
        Vec::<String>::new(),
        "{mode:?}: segments left"
    );
    if let Mode::Hosts(io) = mode {
        assert_links_used(dir, io);
    }
}

/// Runs `scenario` in every mode and flavour and checks its transcript.
fn conforms(scenario: &str, flavours: &[&str], interrupts: Interrupts<'_>, expected: &str) {
    let test: &'static str = Box::leak(format!("conformance {scenario}").into_boxed_str());
    let _w = watchdog(test, LIMIT).guard(format!("cd-conf-{scenario}-"));
    for mode in modes(test) {
        for flavour in flavours {
            let got = run(scenario, flavour, mode, interrupts);
            assert_eq!(
                got.stdout, expected,
                "{scenario}, {flavour} bundles, in {mode:?}; its stderr:\n{}",
                got.stderr
            );
        }
    }
}

const BOTH: &[&str] = &["owned", "archived"];
const ONE: &[&str] = &["owned"];

#[test]
fn a_full_consumer_holds_its_producer_back_and_nothing_is_dropped() {
    conforms(
        "backpressure",
        ONE,
        &[],
        "outputs K: 1999
report S: in 0, out 2000, duplicates 0, late 0, gaps 0, evicted 0, incomplete 0
report K: in 2000, out 1, duplicates 0, late 0, gaps 0, evicted 0, incomplete 0
S was held back: ahead by at least 24 and at most what the edges hold
result: ok
",
    );
}

#[test]
fn a_value_for_a_pending_id_and_upstream_again_is_a_duplicate() {
    conforms(
        "duplicate",
        BOTH,
        &[],
        "outputs C: 0 1 2
event: node C: dropped a duplicate of seq 1 from A
report C: in 7, out 3, duplicates 1, late 0, gaps 0, evicted 0, incomplete 0
result: ok
",
    );
}

#[test]
fn a_value_for_an_id_already_processed_is_late() {
    conforms(
        "late",
        BOTH,
        &[],
        "outputs C: 0 1 2 3
event: node C: dropped late seq 2 from B (already processed)
report C: in 9, out 4, duplicates 0, late 1, gaps 0, evicted 0, incomplete 0
result: ok
",
    );
}

#[test]
fn a_sequenced_upstream_ahead_of_the_window_is_not_read() {
    conforms(
        "window",
        BOTH,
        &[],
        "report C: in 2000, out 1000, duplicates 0, late 0, gaps 0, evicted 0, incomplete 0
A was held back: ahead by at least 24 and at most what the edges hold
result: ok
",
    );
}

#[test]
fn a_full_unordered_table_makes_the_sender_wait_by_default() {
    conforms(
        "overflow-wait",
        BOTH,
        &[],
        "outputs C: 10 11 12
report C: in 6, out 3, duplicates 0, late 0, gaps 0, evicted 0, incomplete 0
result: ok
",
    );
}

#[test]
fn a_full_unordered_table_evicts_its_oldest_bundle_when_asked() {
    conforms(
        "overflow-evict",
        BOTH,
        &[],
        "outputs C: 11 12
event: node C: evicted pending seq 10 from a full table: nothing from B
event: node C: dropped late seq 10 from B (already processed)
report C: in 6, out 2, duplicates 0, late 1, gaps 0, evicted 1, incomplete 0
result: ok
",
    );
}

#[test]
fn a_full_unordered_table_fails_the_run_when_asked() {
    conforms(
        "overflow-fail",
        BOTH,
        &[],
        "outputs C: 
event: node C: table full when seq 12 arrived from A
report C: in 3, out 0, duplicates 0, late 0, gaps 0, evicted 0, incomplete 0
result: error: node C: bundling table full when seq 12 arrived from A (overflow policy: fail)
",
    );
}

const GAP_FAILS: &str = "outputs C: 0 1 2
event: node C: seq 3 never completed: nothing from B
report C: in 19, out 3, duplicates 0, late 0, gaps 1, evicted 0, incomplete 0
result: error: node C: seq 3 never completed: nothing from B within the gap timeout (gap policy: fail)
";

#[test]
fn a_gap_fails_the_run_naming_the_id_and_the_silent_upstream() {
    conforms("gap-fail", BOTH, &[], GAP_FAILS);
}

/// The default gap timeout (10 s), in process mode: the run waits that
/// long for the missing value before it fails.
#[test]
fn the_default_gap_timeout_is_ten_seconds() {
    let _w = watchdog("default gap timeout", LIMIT).guard("cd-conf-gap-default-");
    let got = run("gap-default", "owned", Mode::Processes, &[]);
    assert_eq!(got.stdout, GAP_FAILS, "{}", got.stderr);
    assert!(
        got.elapsed >= Duration::from_secs(10),
        "failed after {:?}, before the default timeout",
        got.elapsed
    );
}

#[test]
fn a_skipped_gap_is_counted_and_the_rest_goes_on() {
    conforms(
        "gap-skip",
        BOTH,
        &[],
        "outputs C: 0 1 2 4 5 6 7 8 9
event: node C: seq 3 never completed: nothing from B
report C: in 19, out 9, duplicates 0, late 0, gaps 1, evicted 0, incomplete 0
result: ok
",
    );
}

#[test]
fn bundles_an_ended_upstream_misses_are_gaps_before_a_complete_one_and_incomplete_after() {
    let mut expected = String::from(
        "outputs C: 0 1 5
event: node C: seq 2 never completed: nothing from B
event: node C: seq 3 never completed: nothing from B
event: node C: seq 4 never completed: nothing from B
",
    );
    for seq in 6..30 {
        expected +=
            &format!("event: node C: seq {seq} incomplete at end of stream: nothing from B\n");
    }
    expected += "report C: in 33, out 3, duplicates 0, late 0, gaps 3, evicted 0, incomplete 24\n";
    // The first 16 are listed.
    for seq in 6..22 {
        expected += &format!("  incomplete seq {seq}: nothing from B\n");
    }
    expected += "result: ok\n";
    conforms("incomplete", BOTH, &[], &expected);
}

#[test]
fn a_worker_error_stops_the_run_naming_node_id_and_message() {
    conforms(
        "worker-error",
        ONE,
        &[],
        "outputs W: 0 1 2 3 4
result: error: node W failed at seq 5: cannot take 50
",
    );
}

#[test]
fn a_worker_panic_stops_the_run_naming_node_id_and_message() {
    conforms(
        "worker-panic",
        ONE,
        &[],
        "outputs W: 0 1 2 3 4
result: error: node W failed at seq 5: panicked: cannot take 50
",
    );
}

#[test]
fn a_spout_error_stops_the_run_naming_the_spout() {
    conforms(
        "spout-error",
        ONE,
        &[],
        "result: error: node S failed: sensor unplugged\n",
    );
}

/// A thread's ring is a process's ring, with the same space for large
/// values beside it: a value too large for that is refused the same way in
/// every mode.
#[test]
fn a_value_too_large_for_the_space_for_large_values_is_refused_the_same_way_in_every_mode() {
    conforms(
        "too-large",
        ONE,
        &[],
        "result: error: node S failed: could not send the value: a value of 65544 bytes is larger than the node's space for large values, 65536 bytes (raise the launch's large_bytes)\n",
    );
}

#[test]
fn a_spout_panic_stops_the_run_naming_the_spout() {
    conforms(
        "spout-panic",
        ONE,
        &[],
        "result: error: node S failed: panicked: sensor on fire\n",
    );
}

#[test]
fn a_bundled_worker_error_stops_the_run_naming_node_id_and_message() {
    conforms(
        "bundled-error",
        BOTH,
        &[],
        "outputs C: 0 1 2 3
result: error: node C failed at seq 4: cannot bundle 4
",
    );
}

const DRAINED: &str = "drained on request
A told to stop: true, B told to stop: true
C processed every bundle both sent but 500: true
node C: seq 500 never completed: nothing from B
C reported as incomplete each id only one spout sent: true
C: in ok (all sent), out ok, gaps 1, incomplete counted true
result: ok
";

#[test]
fn a_drain_stops_the_spouts_processes_what_they_sent_and_skips_their_gaps() {
    conforms("drain", BOTH, &[], DRAINED);
}

#[test]
fn ctrl_c_at_the_terminal_drains_the_run() {
    conforms("ctrl-c", BOTH, &["drain-now"], DRAINED);
}

#[test]
fn a_second_ctrl_c_aborts_a_drain() {
    conforms(
        "ctrl-c-twice",
        ONE,
        &["K-stuck", "S-told-to-stop"],
        "drained on request
result: error: the run was aborted before it drained
",
    );
}
