//! Recovery, as a user sees it: nodes killed with `kill -9` while a run
//! goes come back, and what the run prints is exactly what it prints
//! without a fault (docs/RECOVERY.md).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterduck_tests::{example_path, fresh_dir, node_processes, send_signal, start, watchdog};

const LIMIT: Duration = Duration::from_secs(180);

/// Held by the tests that use the test hosts: one cuts a host's network,
/// which must not hit another's run.
static HOSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The names of three test hosts, and the hosts' turn; `None` (said) if
/// they are not up.
fn three_hosts(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Vec<String>)> {
    let alone = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = clusterduck_tests::test_hosts_at_least(test, 3)?;
    Some((alone, hosts.into_iter().map(|(h, _)| h).collect()))
}

/// The pid of the live process of node `node` of the run marked by
/// `marker`, other than `not` (a process killed, and maybe not reaped
/// yet).
fn pid_of(marker: &str, node: &str, not: Option<u32>) -> Option<u32> {
    node_processes(marker)
        .into_iter()
        .find(|p| p.node == node && Some(p.pid) != not)
        .map(|p| p.pid)
}

/// The restarts of `node` in the run's JSON report: their causes.
fn restarts(json: &serde_json::Value, node: &str) -> Vec<String> {
    let nodes = json["report"]["nodes"].as_array().expect("the nodes");
    let found = nodes
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("no node {node} in {json}"));
    found["restarts"]
        .as_array()
        .expect("its restarts")
        .iter()
        .map(|r| {
            assert!(
                r["recovered_in_s"].as_f64().is_some_and(|s| s < 10.0),
                "{r}"
            );
            r["cause"].as_str().expect("a cause").to_owned()
        })
        .collect()
}

fn report_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the JSON report");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn the_readme_prints_every_id_once_in_order_through_three_kills_of_c_and_one_of_a() {
    readme_through_kills("recovery-readme", &[]);
}

/// The same, C on a test host of its own (A, B and C round-robin on three
/// hosts): C's successors reopen their mirrors and reconnect, A's
/// successor serves its ring at a new address and C reconnects there.
#[test]
fn across_hosts_the_readme_prints_every_id_once_in_order_through_the_same_kills() {
    let test = "recovery-readme-hosts";
    let Some((_alone, names)) = three_hosts(test) else {
        return;
    };
    readme_through_kills(test, &["--hosts", &names.join(",")]);
}

/// The readme with `extra` flags, C killed three times and A once while
/// it prints: every line checked, the restarts in its report and events.
fn readme_through_kills(test: &'static str, extra: &[&str]) {
    let dir = fresh_dir(test);
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog(test, LIMIT).guard(marker.clone());
    let json = dir.join("report.json");
    let n: u64 = 2_000_000;
    let mut run = start(
        Command::new(example_path("readme"))
            .args([
                "-n",
                &n.to_string(),
                "--restarts",
                "3",
                "--no-live",
                "--dir",
                &marker,
                "--report-json",
                json.to_str().unwrap(),
            ])
            .args(extra),
    );
    // Each fault lands once the output passed its line: C's second and
    // third kills hit its restarted processes (the output grew after the
    // kill before, so a successor runs); A is killed while it still sends
    // (its ring holds far fewer ids than are left).
    let plan = [("C", n / 8), ("C", n / 4), ("C", 3 * n / 8), ("A", n / 2)];
    let mut killed: Vec<(&str, u32)> = Vec::new();
    let mut seen = 0;
    loop {
        if let Some(&(node, at)) = plan.get(killed.len()) {
            if seen == at {
                let before = killed.iter().rev().find(|k| k.0 == node).map(|k| k.1);
                let pid = pid_of(&marker, node, before)
                    .unwrap_or_else(|| panic!("no process of {node} at line {seen}"));
                send_signal(pid, 9);
                eprintln!("killed {node} (pid {pid}) after {seen} lines");
                killed.push((node, pid));
            }
        }
        let line = run.line();
        if line.is_empty() {
            break;
        }
        assert_eq!(
            line,
            format!("seq={seen} a={seen} b={seen}"),
            "line {seen}, after the kills {killed:?}"
        );
        seen += 1;
    }
    let (status, _, stderr) = run.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(seen, n, "every id, once, in order\n{stderr}");
    assert_eq!(killed.len(), plan.len());
    let json = report_json(&json);
    let signal = "killed by signal 9 (SIGKILL)";
    assert_eq!(restarts(&json, "C"), [signal; 3], "{json}");
    assert_eq!(restarts(&json, "A"), [signal], "{json}");
    assert_eq!(restarts(&json, "B"), Vec::<String>::new());
    assert!(
        stderr.contains("restart 3: killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    // Told to `on_event` as they happen (the readme prints its events).
    for (node, restart) in [("C", 1), ("C", 2), ("C", 3), ("A", 1)] {
        let said = format!("node {node}: restarted (restart {restart} of 3): {signal}");
        assert!(stderr.lines().any(|l| l == said), "{said}\n{stderr}");
    }
}

/// A soak: the readme while a chaos thread kills its nodes at random (a
/// random node, every 100 to 600 ms, once the output started, until the
/// run ends or the kills are used), then its output checked id by id.
/// `CD_SOAK_IDS` and `CD_SOAK_FAULTS` make it longer by hand (3 000 000
/// ids, 8 kills by default); `CD_SOAK_SEED` repeats a run.
#[test]
fn a_soak_of_random_kills_leaves_the_output_exact() {
    soak("recovery-soak", &[], 3_000_000, 8);
}

/// The soak across three test hosts (A, B and C each on its own), the
/// chaos thread also cutting a random host off for 0.3 to 2 s (a link cut:
/// the host's `eth0` down): the links reconnect and resume, the killed
/// nodes restart on their hosts, and the output is exact.
#[test]
fn across_hosts_a_soak_of_kills_and_link_cuts_leaves_the_output_exact() {
    let test = "recovery-soak-hosts";
    let Some((_alone, names)) = three_hosts(test) else {
        return;
    };
    soak(test, &names, 2_000_000, 6);
}

/// The readme on `hosts` (this machine if none) while a chaos thread
/// injects faults at random: kills, and cuts of a host's network if there
/// are hosts; the output checked id by id; what was injected and what
/// recovered printed.
fn soak(test: &'static str, hosts: &[String], ids: u64, faults: u64) {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, faults) = (env("CD_SOAK_IDS", ids), env("CD_SOAK_FAULTS", faults));
    let seed = env("CD_SOAK_SEED", fastrand::u64(..));
    eprintln!("soak: {n} ids, up to {faults} faults, seed {seed} (CD_SOAK_SEED)");
    let dir = fresh_dir(test);
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog(test, Duration::from_secs(600)).guard(marker.clone());
    let mut cmd = Command::new(example_path("readme"));
    cmd.args([
        "-n",
        &n.to_string(),
        "--restarts",
        &(faults + 2).to_string(),
        "--no-live",
        "--dir",
        &marker,
    ]);
    if !hosts.is_empty() {
        cmd.args(["--hosts", &hosts.join(",")]);
    }
    let mut run = start(&mut cmd);
    // The first line says the run started: kills before it would fail the
    // launch, which restarts do not cover.
    let first = run.line();
    assert_eq!(first, "seq=0 a=0 b=0");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos = {
        let (done, marker, hosts) = (done.clone(), marker.clone(), hosts.to_vec());
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut injected = Vec::new();
            while injected.len() < faults as usize
                && !done.load(std::sync::atomic::Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(rng.u64(100..600)));
                if !hosts.is_empty() && rng.u32(0..3) == 0 {
                    let host = &hosts[rng.usize(..hosts.len())];
                    let down = Duration::from_millis(rng.u64(300..2000));
                    let cut = Cut::new(host);
                    std::thread::sleep(down);
                    drop(cut);
                    injected.push(format!("cut {host} for {} ms", down.as_millis()));
                    continue;
                }
                let node = ["A", "B", "C"][rng.usize(..3)];
                // A spout that finished has no process left: nothing to kill.
                if let Some(pid) = pid_of(&marker, node, None) {
                    send_signal(pid, 9);
                    injected.push(format!("kill {node} (pid {pid})"));
                }
            }
            injected
        })
    };
    let mut seen = 1;
    loop {
        let line = run.line();
        if line.is_empty() {
            break;
        }
        assert_eq!(line, format!("seq={seen} a={seen} b={seen}"), "seed {seed}");
        seen += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let injected = chaos.join().expect("the chaos thread");
    let (status, _, stderr) = run.finish();
    eprintln!("soak: injected {injected:?}");
    assert!(status.success(), "seed {seed}: {status}\n{stderr}");
    assert_eq!(seen, n, "seed {seed}: every id once, in order\n{stderr}");
    // A kill that lands after its node reported (a spout that just
    // finished) needs no restart.
    let restarted = stderr
        .lines()
        .filter(|l| l.contains(": restarted (restart "))
        .count();
    let reconnected: usize = ["A.err", "B.err", "C.err"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .map(|log| log.lines().filter(|l| l.contains("reconnected")).count())
        .sum();
    eprintln!("soak: {restarted} restarts and {reconnected} reconnections recovered, output exact");
    let kills = injected.iter().filter(|i| i.starts_with("kill")).count();
    assert!(restarted <= kills, "seed {seed}\n{stderr}");
}

/// Test host `host`'s network cut (its `eth0` down, inside its namespace)
/// until dropped.
struct Cut {
    host: String,
}

impl Cut {
    fn new(host: &str) -> Cut {
        set_link(host, "down").unwrap_or_else(|e| panic!("{e}"));
        Cut {
            host: host.to_owned(),
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(e) = set_link(&self.host, "up") {
            eprintln!("{e}");
        }
    }
}

fn set_link(host: &str, state: &str) -> Result<(), String> {
    let status = Command::new("ip")
        .args(["netns", "exec", host, "ip", "link", "set", "eth0", state])
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ip link set eth0 {state} in {host}: {status}"))
}

/// The readme printing `n` ids across test hosts `names`, its logs in
/// `marker`, with `extra` flags.
fn readme_on(names: &[String], marker: &str, n: u64, extra: &[&str]) -> clusterduck_tests::Started {
    start(
        Command::new(example_path("readme"))
            .args(["-n", &n.to_string(), "--no-live", "--dir", marker])
            .args(["--hosts", &names.join(",")])
            .args(extra),
    )
}

/// Reads the readme's lines, checking each; calls `at(line)` before each.
fn check_lines(run: &mut clusterduck_tests::Started, mut at: impl FnMut(u64)) -> u64 {
    let mut seen = 0;
    loop {
        at(seen);
        let line = run.line();
        if line.is_empty() {
            return seen;
        }
        assert_eq!(line, format!("seq={seen} a={seen} b={seen}"), "line {seen}");
        seen += 1;
    }
}

/// A, B and C on three test hosts; C's host cut off for 2 s while the run
/// goes: the links from A and B break (each end notices within about a
/// second), reconnect once the cable is back, and resume where C's mirrors
/// end: the output is exact, and C's log says its links reconnected.
#[test]
fn across_hosts_a_link_cut_for_two_seconds_heals_and_the_output_is_exact() {
    let test = "recovery-link-cut";
    let Some((_alone, names)) = three_hosts(test) else {
        return;
    };
    let dir = fresh_dir(test);
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog(test, LIMIT).guard(marker.clone());
    let n: u64 = 1_000_000;
    let mut run = readme_on(&names, &marker, n, &[]);
    let mut cutter = None;
    let seen = check_lines(&mut run, |seen| {
        if seen == n / 4 {
            let host = names[2].clone();
            cutter = Some(std::thread::spawn(move || {
                let cut = Cut::new(&host);
                eprintln!("cut {host} off after {seen} lines, for 2 s");
                std::thread::sleep(Duration::from_secs(2));
                drop(cut);
                eprintln!("{host} back");
            }));
        }
    });
    cutter.expect("the cut").join().expect("the cutter");
    let (status, _, stderr) = run.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(seen, n, "every id once, in order\n{stderr}");
    let log = std::fs::read_to_string(dir.join("C.err")).expect("C's log");
    let healed: Vec<&str> = log.lines().filter(|l| l.contains("reconnected")).collect();
    eprintln!("recovered: {healed:?}");
    assert!(!healed.is_empty(), "C's links reconnected\n{log}");
}

/// C's host cut off for good while the run goes, with a grace of 2 s: the
/// run fails, naming the link's nodes and both hosts (said by A or B, whose
/// host still reaches the master). The host comes back once a node said
/// it, so that the run can end its nodes there.
#[test]
fn across_hosts_a_link_cut_longer_than_its_grace_fails_the_run_naming_both_hosts() {
    let test = "recovery-link-down";
    let Some((_alone, names)) = three_hosts(test) else {
        return;
    };
    let dir = fresh_dir(test);
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog(test, LIMIT).guard(marker.clone());
    let mut run = readme_on(&names, &marker, 100_000_000, &["--link-grace", "2"]);
    let said = "stayed down longer than its grace of 2000 ms";
    let mut cutter = None;
    let seen = check_lines(&mut run, |seen| {
        if seen == 1000 {
            let (host, dir) = (names[2].clone(), dir.clone());
            cutter = Some(std::thread::spawn(move || {
                let cut = Cut::new(&host);
                eprintln!("cut {host} off after {seen} lines");
                let logs = || {
                    ["A.err", "B.err"]
                        .iter()
                        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                        .collect::<String>()
                };
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !logs().contains(said) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                drop(cut);
                eprintln!("{host} back");
            }));
        }
    });
    cutter.expect("the cut").join().expect("the cutter");
    let (status, _, stderr) = run.finish();
    assert!(!status.success(), "the run failed\n{stderr}");
    assert!(seen >= 1000, "{stderr}");
    let failure = stderr
        .lines()
        .find(|l| l.contains(said))
        .unwrap_or_else(|| panic!("no failure naming the link\n{stderr}"));
    eprintln!("failure: {failure}");
    let (h1, h2, h3) = (&names[0], &names[1], &names[2]);
    let from_a = format!("the link from node A on host {h1} to node C on host {h3}");
    let from_b = format!("the link from node B on host {h2} to node C on host {h3}");
    assert!(
        failure.contains(&from_a) || failure.contains(&from_b),
        "{failure}"
    );
}
