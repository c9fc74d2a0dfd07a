//! Recovery, as a user sees it: nodes killed with `kill -9` while a run
//! goes come back, and what the run prints is exactly what it prints
//! without a fault (docs/RECOVERY.md).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterduck_tests::{example_path, fresh_dir, node_processes, send_signal, start, watchdog};

const LIMIT: Duration = Duration::from_secs(180);

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
    let dir = fresh_dir("recovery-readme");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("recovery-readme", LIMIT).guard(marker.clone());
    let json = dir.join("report.json");
    let n: u64 = 2_000_000;
    let mut run = start(Command::new(example_path("readme")).args([
        "-n",
        &n.to_string(),
        "--restarts",
        "3",
        "--no-live",
        "--dir",
        &marker,
        "--report-json",
        json.to_str().unwrap(),
    ]));
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
/// `CD_SOAK_IDS` and `CD_SOAK_KILLS` make it longer by hand (3 000 000 ids,
/// 8 kills by default); `CD_SOAK_SEED` repeats a run.
#[test]
fn a_soak_of_random_kills_leaves_the_output_exact() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, kills) = (env("CD_SOAK_IDS", 3_000_000), env("CD_SOAK_KILLS", 8));
    let seed = env("CD_SOAK_SEED", fastrand::u64(..));
    eprintln!("soak: {n} ids, up to {kills} kills, seed {seed} (CD_SOAK_SEED)");
    let dir = fresh_dir("recovery-soak");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("recovery-soak", Duration::from_secs(600)).guard(marker.clone());
    let mut run = start(Command::new(example_path("readme")).args([
        "-n",
        &n.to_string(),
        "--restarts",
        &(kills + 2).to_string(),
        "--no-live",
        "--dir",
        &marker,
    ]));
    // The first line says the run started: kills before it would fail the
    // launch, which restarts do not cover.
    let first = run.line();
    assert_eq!(first, "seq=0 a=0 b=0");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos = {
        let (done, marker) = (done.clone(), marker.clone());
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut injected = Vec::new();
            while injected.len() < kills as usize
                && !done.load(std::sync::atomic::Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(rng.u64(100..600)));
                let node = ["A", "B", "C"][rng.usize(..3)];
                // A spout that finished has no process left: nothing to kill.
                if let Some(pid) = pid_of(&marker, node, None) {
                    send_signal(pid, 9);
                    injected.push(format!("{node} (pid {pid})"));
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
    eprintln!("soak: killed {injected:?}");
    assert!(status.success(), "seed {seed}: {status}\n{stderr}");
    assert_eq!(seen, n, "seed {seed}: every id once, in order\n{stderr}");
    // A kill that lands after its node reported (a spout that just
    // finished) needs no restart.
    let restarted = stderr
        .lines()
        .filter(|l| l.contains(": restarted (restart "))
        .count();
    eprintln!("soak: {restarted} restarts recovered, output exact");
    assert!(restarted <= injected.len(), "seed {seed}\n{stderr}");
}
