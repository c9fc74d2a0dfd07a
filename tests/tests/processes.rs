//! Process mode with real processes: one per node, logs per node, faults.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use clusterduck::{Error, Launch, Topology};
use clusterduck_tests::{
    fresh_dir, node_processes, run_id_of, run_segments, send_signal, start, watchdog, Started,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Every launch removes the segments of dead runs (and says so on its
/// stderr): the test that checks that the next launch after a killed
/// master does so runs alone, the others beside each other.
static LAUNCHES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a test that launches beside others.
fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    LAUNCHES.read().unwrap_or_else(|e| e.into_inner())
}

/// For the test that must be the only one launching.
fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    LAUNCHES.write().unwrap_or_else(|e| e.into_inner())
}

fn topology(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
    cmd.args(args);
    cmd
}

/// Waits until `f` holds, polling; the watchdog bounds the wait.
fn wait_until(mut f: impl FnMut() -> bool) {
    while !f() {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `slow N DIR` and waits for its first record (every node runs).
fn start_slow(n: u64, dir: &str) -> Started {
    let mut master = start(&mut topology(&["slow", &n.to_string(), dir]));
    assert_eq!(master.line(), "W 0", "the debugger's first record");
    master
}

/// Runs the topology binary with `args` to its end.
fn run(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    start(&mut topology(args)).finish()
}

#[test]
fn each_node_runs_in_its_own_process_and_logs_to_its_own_files() {
    let _launches = beside_others();
    let dir = fresh_dir("per-node");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("one-process-per-node", LIMIT).guard(marker.clone());
    let master = start_slow(40, &marker);
    let nodes = node_processes(&marker);
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["K", "S", "W"], "{nodes:?}");
    let run = run_id_of(&dir.join("W.out")).unwrap();
    assert_eq!(
        run_segments(&run),
        [
            format!("clusterduck-{run}-S"),
            format!("clusterduck-{run}-S.large"),
            format!("clusterduck-{run}-W"),
            format!("clusterduck-{run}-W.large")
        ],
        "the rings of S and W and their spaces for large values (the sink K writes none), while the run runs"
    );
    assert!(
        nodes.iter().all(|n| n.ppid == master.pid()),
        "children of the master: {nodes:?}"
    );
    let (status, rest, err) = master.finish();
    assert!(status.success(), "{err}");
    let records: Vec<String> = std::iter::once("W 0".to_owned())
        .chain(rest.lines().map(str::to_owned))
        .collect();
    assert_eq!(
        records,
        (0..40).map(|i| format!("W {i}")).collect::<Vec<_>>()
    );

    // The worker's println! went to W.out, after the run's header line.
    let w_out = std::fs::read_to_string(dir.join("W.out")).unwrap();
    let lines: Vec<&str> = w_out.lines().collect();
    assert!(lines[0].starts_with("==== clusterduck run "), "{w_out}");
    assert!(lines[0].contains(", node W, started 20"), "{w_out}");
    assert_eq!(
        lines[1..],
        (0..40).map(|i| format!("W saw {i}")).collect::<Vec<_>>()[..]
    );
    for name in ["S", "W", "K"] {
        for ext in ["out", "err"] {
            assert!(dir.join(format!("{name}.{ext}")).exists(), "{name}.{ext}");
        }
    }
    assert_eq!(run_segments(&run), Vec::<String>::new());
    assert!(node_processes(&marker).is_empty());
    assert!(
        err.contains("W        worker") || err.contains("W                worker"),
        "{err}"
    );
}

#[test]
fn values_arrive_whole_and_in_order_whatever_the_batch() {
    let _launches = beside_others();
    let dir = fresh_dir("batched");
    let _w = watchdog("batched", LIMIT).guard(dir.to_str().unwrap());
    for batch in ["1", "7", "4096"] {
        let (status, out, err) = run(&["batched", "20000", batch, dir.to_str().unwrap()]);
        assert!(status.success(), "batch {batch}: {err}");
        assert_eq!(out.trim(), "K counted 20000", "batch {batch}: {err}");
    }
}

#[test]
fn workers_take_values_archived_in_place_and_forward_them() {
    let _launches = beside_others();
    let dir = fresh_dir("archived");
    let _w = watchdog("archived", LIMIT).guard(dir.to_str().unwrap());
    let (status, out, err) = run(&["archived", "10000", "10000", dir.to_str().unwrap()]);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "K saw 10000 words, 5000 upper-cased", "{err}");
}

#[test]
fn replicas_in_processes_keep_id_order_and_a_gap_names_the_replica() {
    let _launches = beside_others();
    let dir = fresh_dir("replicated");
    let _w = watchdog("replicated", LIMIT).guard(dir.to_str().unwrap());
    // J (3 sequenced replicas, values held in place) and K (2 replicas by
    // id) each a process per replica; D joins A, J and K in id order.
    let (status, out, err) = run(&["replicated", "20000", dir.to_str().unwrap()]);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "D 20000 in order", "{err}");
    for (replica, took) in [
        ("J[0]", 6667),
        ("J[1]", 6667),
        ("J[2]", 6666),
        ("K[0]", 10000),
        ("K[1]", 10000),
    ] {
        let row = clusterduck_tests::report_row(&err, replica);
        assert_eq!(row[2], took.to_string(), "{row:?}");
        let stem = replica.replace('[', ".").replace(']', "");
        assert!(dir.join(format!("{stem}.err")).exists(), "{stem}.err");
    }
    // K[1] (the odd ids) drops 7: D's event, through the master, names it.
    let (status, out, err) = run(&["replicated", "2000", dir.to_str().unwrap(), "gap"]);
    assert!(status.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "event node D: seq 7 never completed: nothing from K[1]",
            "D 1999 in order"
        ],
        "{err}"
    );
}

#[test]
fn a_killed_replica_is_reported_by_its_replica_name() {
    let _launches = beside_others();
    let dir = fresh_dir("kill-replica");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("kill a replica", LIMIT).guard(marker.clone());
    let mut master = start(&mut topology(&["replicated", "10000", &marker, "slow"]));
    assert_eq!(master.line(), "D reached 10");
    let running = node_processes(&marker);
    let names: Vec<&str> = running.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["A", "D", "J[0]", "J[1]", "J[2]", "K[0]", "K[1]"]);
    let victim = running.iter().find(|n| n.node == "J[1]").unwrap();
    send_signal(victim.pid, libc::SIGKILL);
    let (status, _, err) = master.finish();
    assert!(!status.success());
    let expected = format!(
        "error: node J[1] (pid {}) on host localhost killed by signal 9 (SIGKILL)",
        victim.pid
    );
    assert!(err.lines().any(|l| l == expected), "{expected}\n{err}");
    assert_eq!(node_processes(&marker), Vec::new());
}

#[test]
fn a_bundled_worker_joins_values_held_in_place_in_their_rings() {
    let _launches = beside_others();
    let dir = fresh_dir("joined");
    let _w = watchdog("joined", LIMIT).guard(dir.to_str().unwrap());
    // Rings of 4 MiB hold every value the window waits for; rings of a page
    // (about 60 words) fill while J holds A's words for B's reversed blocks
    // of 100: A then waits for J to release them, and nothing is lost.
    for ring in ["4194304", "4096"] {
        let (status, out, err) = run(&["joined", "20000", ring, dir.to_str().unwrap()]);
        assert!(status.success(), "rings of {ring} bytes: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            ["K joined 20000 in order", "J skipped 0"],
            "rings of {ring} bytes: {err}"
        );
    }
    // B sends blocks in order (J runs them in lockstep, straight from the
    // rings) and reversed (J reorders them in its table), and A sends word
    // 250 twice: the copy is dropped (late or a duplicate, as it falls).
    for ring in ["4194304", "4096"] {
        let (status, out, err) = run(&["joined", "20000", ring, dir.to_str().unwrap(), "mixed"]);
        assert!(status.success(), "rings of {ring} bytes: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "K joined 20000 in order",
                "J skipped 0",
                "J dropped 1 repeated"
            ],
            "rings of {ring} bytes: {err}"
        );
    }
    // B never sends 7: after the gap timeout J skips it, and A's word 7,
    // held in A's ring, is let go with it.
    let (status, out, err) = run(&["joined", "2000", "4096", dir.to_str().unwrap(), "gap"]);
    assert!(status.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["K joined 1999 in order", "J skipped 1"],
        "{err}"
    );
}

#[test]
fn a_failing_archived_worker_names_node_and_seq() {
    let _launches = beside_others();
    let dir = fresh_dir("archived-fail");
    let _w = watchdog("archived-fail", LIMIT).guard(dir.to_str().unwrap());
    let (status, _, err) = run(&["archived", "100", "7", dir.to_str().unwrap()]);
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W failed at seq 7: cannot take word 7",
    );
}

/// Kills `node` of a running `slow` topology with SIGKILL: the run fails
/// naming the node, its host, its pid and the signal, and leaves nothing.
fn killed_node_is_reported(node: &str) {
    let dir = fresh_dir(&format!("kill-{node}"));
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("kill a node", LIMIT).guard(marker.clone());
    let master = start_slow(10_000, &marker);
    // While it runs: its three nodes, and its segments.
    let running = node_processes(&marker);
    assert_eq!(running.len(), 3, "{running:?}");
    let run = run_id_of(&dir.join("W.out")).unwrap();
    assert!(
        !run_segments(&run).is_empty(),
        "the run's segments, while it runs"
    );
    let victim = running.into_iter().find(|n| n.node == node).unwrap();
    let killed = Instant::now();
    send_signal(victim.pid, libc::SIGKILL);
    let (status, _, err) = master.finish();
    eprintln!(
        "kill -9 of {node} reported and the run ended {:?} after the kill",
        killed.elapsed()
    );
    assert!(!status.success());
    let expected = format!(
        "error: node {node} (pid {}) on host localhost killed by signal 9 (SIGKILL)",
        victim.pid
    );
    assert!(err.lines().any(|l| l == expected), "{expected}\n{err}");
    assert_eq!(node_processes(&marker), Vec::new());
    assert_eq!(run_segments(&run), Vec::<String>::new());
}

#[test]
fn a_killed_spout_is_reported_by_name_host_pid_and_signal_and_nothing_is_left() {
    let _launches = beside_others();
    killed_node_is_reported("S");
}

#[test]
fn a_killed_worker_is_reported_by_name_host_pid_and_signal_and_nothing_is_left() {
    let _launches = beside_others();
    killed_node_is_reported("W");
}

#[test]
fn a_killed_sink_is_reported_by_name_host_pid_and_signal_and_nothing_is_left() {
    let _launches = beside_others();
    killed_node_is_reported("K");
}

#[test]
fn killing_the_master_ends_every_node_and_the_next_launch_removes_its_segments() {
    let _alone = alone();
    let dir = fresh_dir("kill-master");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("kill-master", LIMIT).guard(marker.clone());
    let mut master = start_slow(10_000, &marker);
    assert_eq!(node_processes(&marker).len(), 3);
    let dead = run_id_of(&dir.join("W.out")).unwrap();
    let segments = run_segments(&dead);
    assert!(!segments.is_empty(), "the run's segments, while it runs");
    master.kill();
    let killed = Instant::now();
    wait_until(|| node_processes(&marker).is_empty());
    eprintln!(
        "every node gone {:?} after the master was killed",
        killed.elapsed()
    );
    // Nobody removed the dead run's segments; the next launch does, and
    // says so, segment by segment.
    let left = run_segments(&dead);
    assert!(!left.is_empty(), "a killed master leaves its segments");
    let next = fresh_dir("kill-master-next");
    let (status, _, err) = run(&["batched", "10", "16", next.to_str().unwrap()]);
    assert!(status.success(), "{err}");
    for segment in &left {
        let said = format!(
            "clusterduck: stale shared-memory segment: removed /dev/shm/{segment}, left by a dead run"
        );
        assert!(err.lines().any(|l| l.starts_with(&said)), "{said}\n{err}");
    }
    assert_eq!(run_segments(&dead), Vec::<String>::new());
}

#[test]
fn a_failing_worker_stops_the_run_naming_node_and_seq() {
    let _launches = beside_others();
    let dir = fresh_dir("fail");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("fail", LIMIT).guard(marker.clone());
    let (status, out, err) = run(&["fail", &marker]);
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W failed at seq 5: cannot handle 5",
    );
    assert_eq!(out, "W 0\nW 1\nW 2\nW 3\nW 4\n");
    assert!(node_processes(&marker).is_empty());
    let run = run_id_of(&dir.join("W.out")).unwrap();
    assert_eq!(run_segments(&run), Vec::<String>::new());
}

#[test]
fn a_node_that_built_another_topology_is_refused_showing_both() {
    let _launches = beside_others();
    let dir = fresh_dir("mismatch");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("mismatch", LIMIT).guard(marker.clone());
    let (status, _, err) = run(&["mismatch", &marker]);
    assert!(!status.success());
    let line = err.lines().find(|l| l.starts_with("error:")).expect(&err);
    assert!(
        line.contains("refused to start: topology fingerprint mismatch: the master has "),
        "{line}"
    );
    let (master, node) = line.split_once(", this process has ").expect(line);
    assert!(
        master.ends_with("[spout S -> u64; worker W(S) -> u64; worker K(W) -> ()]"),
        "{line}"
    );
    assert!(
        node.ends_with("worker K(W) -> (); worker X(S) -> ()]"),
        "{line}"
    );
    assert!(node_processes(&marker).is_empty());
}

#[test]
fn an_unwritable_log_directory_is_an_error_before_anything_starts() {
    let _launches = beside_others();
    let _w = watchdog("unwritable-dir", LIMIT);
    let mut t = Topology::new();
    let s = t.spout("S", |out| out.send(0, 0u64).map_err(Into::into));
    t.sink("K", &s, |_, _| Ok(()));
    let e = t
        .launch(Launch::processes().dir("/proc/self/no-logs-here"))
        .unwrap_err();
    assert!(matches!(e, Error::Launch(_)), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "cannot launch: cannot write the logs of node S in /proc/self/no-logs-here: "
        ),
        "{e}"
    );
}

#[test]
fn a_node_that_never_reports_ready_fails_the_run_after_the_ready_timeout() {
    let _launches = beside_others();
    let dir = fresh_dir("not-ready");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("not-ready", LIMIT).guard(marker.clone());
    let (status, out, err) = run(&["notready", &marker]);
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W on host localhost did not report ready within 1s",
    );
    assert_eq!(out, "", "no spout sent anything");
    assert_eq!(node_processes(&marker), Vec::new());
}

/// A node that stops answering (SIGSTOP: alive, silent) fails the run once
/// the heartbeat timeout (2 s here) has passed without a word from it.
#[test]
fn a_silent_node_fails_the_run_after_the_heartbeat_timeout() {
    let _launches = beside_others();
    let dir = fresh_dir("silent");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("silent", LIMIT).guard(marker.clone());
    let mut master = start(&mut topology(&["silent", &marker]));
    assert_eq!(master.line(), "W 0");
    let w = node_processes(&marker)
        .into_iter()
        .find(|n| n.node == "W")
        .expect("W runs");
    send_signal(w.pid, libc::SIGSTOP);
    let (status, _, err) = master.finish();
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W: control connection lost: no word for 2s",
    );
    // The stopped node was killed with the rest.
    assert_eq!(node_processes(&marker), Vec::new());
}

/// The log directory, a tmpfs of 64 KiB, fills while W prints a KiB a
/// value: W's print fails, and the run fails naming W and the cause.
#[test]
fn a_log_directory_that_fills_mid_run_fails_the_run_naming_the_node() {
    let _launches = beside_others();
    let dir = fresh_dir("full-logs");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("full-logs", LIMIT).guard(marker.clone());
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", &marker])
        .status();
    if !mounted.as_ref().is_ok_and(|s| s.success()) {
        clusterduck_tests::skip(
            "a log directory that fills",
            &format!("cannot mount a small tmpfs here (needs root): {mounted:?}"),
        );
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(marker.clone());
    let (status, _, err) = run(&["chatty", "100000", &marker]);
    assert!(!status.success());
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.starts_with("error: node W failed at seq ")
            && line.ends_with(
                ": panicked: failed printing to stdout: No space left on device (os error 28)"
            ),
        "{line}"
    );
    let w_out = std::fs::metadata(dir.join("W.out")).unwrap().len();
    assert!(
        w_out > 32 << 10,
        "W.out filled the directory: {w_out} bytes"
    );
    assert_eq!(node_processes(&marker), Vec::new());
}

#[test]
fn logs_are_appended_to_across_runs_each_opening_with_its_header() {
    let _launches = beside_others();
    let dir = fresh_dir("appended");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("appended", LIMIT).guard(marker.clone());
    for _ in 0..2 {
        let (status, _, err) = run(&["slow", "3", &marker]);
        assert!(status.success(), "{err}");
    }
    let w_out = std::fs::read_to_string(dir.join("W.out")).unwrap();
    let lines: Vec<&str> = w_out.lines().collect();
    assert_eq!(lines.len(), 8, "{w_out}");
    let runs: Vec<&str> = [lines[0], lines[4]]
        .iter()
        .map(|l| {
            l.strip_prefix("==== clusterduck run ")
                .and_then(|r| r.split(',').next())
                .unwrap_or_else(|| panic!("a header: {l}"))
        })
        .collect();
    assert_ne!(runs[0], runs[1], "each run its own id");
    for run in [&lines[1..4], &lines[5..8]] {
        assert_eq!(run, ["W saw 0", "W saw 1", "W saw 2"]);
    }
}

/// The sum the pipe's sink makes of ids `0..n` (see `piped` in the
/// topology binary).
fn pipe_checksum(n: u64) -> u64 {
    (0..n).fold(0u64, |sum, i| {
        let v = (((i * 3 + 1) ^ 0x5555) + 7).wrapping_mul(i | 1);
        sum.wrapping_add(v.wrapping_mul(i + 1))
    })
}

/// The middle worker, then the spout (which sends its ids again from 0:
/// they go up, so what it sent is dropped by id).
#[test]
fn a_middle_worker_killed_while_its_rings_are_full_resumes_exactly() {
    let dir = fresh_dir("recovery-pipe");
    let marker = dir.to_str().unwrap().to_owned();
    let _g = beside_others();
    let _w = watchdog("recovery-pipe", LIMIT).guard(marker.clone());
    let n: u64 = 60_000;
    let mut run = start(&mut topology(&["pipe", &n.to_string(), &marker]));
    // The sink takes 100 µs a value: by its 20 000th, S (as fast as it
    // can) has long filled every 64 KiB ring before it.
    // By its 30 000th, S has sent at most the values the rings hold more
    // (four rings of about 1 600 values): it still sends.
    let mut lines = Vec::new();
    let mut killed = Vec::new();
    loop {
        let line = run.line();
        if line.is_empty() {
            break;
        }
        let node = match line.as_str() {
            "K at 20000" => Some("W2"),
            "K at 30000" => Some("S"),
            _ => None,
        };
        if let Some(node) = node {
            let pid = node_processes(&marker)
                .into_iter()
                .find(|p| p.node == node)
                .unwrap_or_else(|| panic!("{node} runs"))
                .pid;
            send_signal(pid, 9);
            killed.push(node);
        }
        lines.push(line);
    }
    let (status, _, stderr) = run.finish();
    assert_eq!(killed, ["W2", "S"], "{lines:?}");
    assert!(status.success(), "{status}\n{stderr}");
    let mut expected: Vec<String> = (1..=6).map(|k| format!("K at {}", k * 10_000)).collect();
    expected.push(format!("K got {n} checksum {}", pipe_checksum(n)));
    assert_eq!(lines, expected, "{stderr}");
    for node in ["W2", "S"] {
        assert!(
            stderr.contains(&format!(
                "node {node} on host localhost killed by signal 9 (SIGKILL); restarting it"
            )),
            "{stderr}"
        );
        // Under the node's row of the report.
        let restart = stderr
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{node} ")))
            .nth(1)
            .unwrap_or_default();
        assert!(
            restart.starts_with("    restart 1: killed by signal 9 (SIGKILL); running again after"),
            "{stderr}"
        );
    }
    // The restarted S sent its ids from 0 again: those it had sent were
    // dropped, counted.
    let s_row = stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("S "))
        .nth(2)
        .unwrap_or_default();
    assert!(
        s_row.starts_with("    after its restarts: 0 values processed again, ")
            && s_row.ends_with(" dropped as done"),
        "{stderr}"
    );
}

/// Nanoseconds since the Unix epoch, now (the clock `ticking`'s `W`
/// stamps its outputs with).
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Kills `W` of `ticking` five times; after each kill, the first output
/// its restarted process made (stamped by it) gives the time from the kill
/// to that output, printed (a figure of docs/PERFORMANCE.md, not asserted).
/// What is asserted: every id comes once, in order, through the kills.
#[test]
fn kill_to_first_output_of_the_restarted_worker() {
    let _g = beside_others();
    kill_ticking_worker("recovery-ticking", None);
}

/// The same with `S` and `W` on two test hosts: `W`'s successor reopens
/// its mirror and reconnects to `S` (the figure across hosts).
#[test]
fn kill_to_first_output_of_the_restarted_worker_across_hosts() {
    let test = "recovery-ticking-hosts";
    let Some(hosts) = clusterduck_tests::test_hosts_at_least(test, 2) else {
        return;
    };
    let _g = beside_others();
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    kill_ticking_worker(test, Some(&names.join(",")));
}

/// Runs `ticking` (on `hosts`, if any), killing `W` five times: see
/// [`kill_to_first_output_of_the_restarted_worker`].
fn kill_ticking_worker(test: &'static str, hosts: Option<&str>) {
    let dir = fresh_dir(test);
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog(test, LIMIT).guard(marker.clone());
    let n: u64 = 3000;
    let mut cmd = topology(&["ticking", &n.to_string(), &marker]);
    if let Some(hosts) = hosts {
        cmd.env("CD_TEST_HOSTS", hosts);
    }
    let mut run = start(&mut cmd);
    let mut next = 0;
    let mut killed_at: Option<u64> = None;
    let mut kills = Vec::new();
    let mut times_ms = Vec::new();
    loop {
        let line = run.line();
        if line.is_empty() {
            break;
        }
        let (seq, at) = match line.split(' ').collect::<Vec<_>>()[..] {
            ["W", seq, at] => (seq.parse::<u64>().unwrap(), at.parse::<u64>().unwrap()),
            _ => panic!("unexpected line {line:?}"),
        };
        assert_eq!(seq, next, "ids once, in order, through the kills {kills:?}");
        next += 1;
        match killed_at {
            Some(kill) if at > kill => {
                times_ms.push((at - kill) as f64 / 1e6);
                killed_at = None;
            }
            Some(_) => {}
            // Every 400 ids, while kills are left: W is killed again.
            None if seq % 400 == 399 && kills.len() < 5 => {
                let pid = node_processes(&marker)
                    .into_iter()
                    .find(|p| p.node == "W" && !kills.contains(&p.pid))
                    .expect("W runs")
                    .pid;
                killed_at = Some(now_ns());
                send_signal(pid, 9);
                kills.push(pid);
            }
            None => {}
        }
    }
    let (status, _, stderr) = run.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(next, n, "{stderr}");
    assert_eq!(times_ms.len(), 5, "{stderr}");
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "kill -9 of W to the first output of its restart{}: {times_ms:.1?} ms (median {:.1} ms)",
        if hosts.is_some() { " across hosts" } else { "" },
        sorted[2]
    );
}

/// A bundled worker in no order (its two spouts send the same ids, each
/// in its own scrambled order), killed four times while it runs: its
/// consumer gets every id once, none twice, none lost (its journal tells
/// each successor which of the values between its done and read lines had
/// run). Without the journal, a successor offers again one value of a
/// bundle whose other value was released, and the run fails on the gap.
#[test]
fn an_unordered_bundled_worker_killed_four_times_runs_every_bundle_once() {
    let dir = fresh_dir("recovery-scrambled");
    let marker = dir.to_str().unwrap().to_owned();
    let _g = beside_others();
    let _w = watchdog("recovery-scrambled", LIMIT).guard(marker.clone());
    let n: u64 = 200_000;
    let mut run = start(&mut topology(&["scrambled", &n.to_string(), &marker]));
    let mut seen = Vec::with_capacity(n as usize);
    let mut kills: Vec<u32> = Vec::new();
    loop {
        if seen.len() as u64 == n / 5 * (kills.len() as u64 + 1) && kills.len() < 4 {
            let pid = node_processes(&marker)
                .into_iter()
                .find(|p| p.node == "C" && !kills.contains(&p.pid))
                .expect("C runs")
                .pid;
            send_signal(pid, 9);
            kills.push(pid);
        }
        let line = run.line();
        if line.is_empty() {
            break;
        }
        let id: u64 = line
            .strip_prefix("K ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        seen.push(id);
    }
    let (status, _, stderr) = run.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(kills.len(), 4, "{stderr}");
    let got = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(got - seen.len(), 0, "ids run twice\n{stderr}");
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every id once\n{stderr}");
    let restarted = stderr
        .lines()
        .filter(|l| {
            l.contains("node C on host localhost killed by signal 9 (SIGKILL); restarting it")
        })
        .count();
    assert_eq!(restarted, 4, "{stderr}");
    let again = stderr
        .lines()
        .find(|l| l.contains("after its restarts"))
        .unwrap_or_default();
    eprintln!("C killed 4 times: every id once; {}", again.trim());
}

/// A function that fails once (an error): its node is restarted, goes on
/// from its rings, and the sink gets every id once, in order.
#[test]
fn a_function_that_fails_once_is_restarted_and_nothing_is_lost() {
    let dir = fresh_dir("recovery-flaky");
    let marker = dir.to_str().unwrap().to_owned();
    let _g = beside_others();
    let _w = watchdog("recovery-flaky", LIMIT).guard(marker.clone());
    let mut run = start(&mut topology(&["flaky", "20000", &marker]));
    let mut lines = Vec::new();
    loop {
        let line = run.line();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let (status, _, stderr) = run.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(dir.join("W.failed").exists(), "W failed once");
    assert_eq!(lines, ["K got 20000 in order"], "{stderr}");
    let cause = "node W failed at seq 10000: cannot handle 10000 (this once)";
    assert!(
        stderr.contains(&format!(
            "node W on host localhost {cause}; restarting it (restart 1 of 2)"
        )),
        "{stderr}"
    );
    let restart = stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("W "))
        .nth(1)
        .unwrap_or_default();
    assert!(
        restart.starts_with(&format!("    restart 1: {cause}; running again after")),
        "{stderr}"
    );
}
