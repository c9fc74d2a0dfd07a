//! Launching at scale across the test hosts: one agent per host, started
//! in a tree past the fan-out width; a hundred nodes launched and run over
//! and over; heartbeats that a slow launch cannot misfire; an agent that
//! stops answering.
//!
//! These need more test hosts than the others (`.ci/run` brings up
//! twelve); where fewer are up, each test says so and is skipped, which CI
//! forbids.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use clusterduck_tests::{
    agent_processes, assert_nothing_left, fresh_dir, run_id_of, run_segments, send_signal,
    test_hosts_at_least, watchdog,
};

const LIMIT: Duration = Duration::from_secs(300);

/// The topology binary's `wide` run: `spouts` spouts of `n` ids each,
/// joined by one bundled worker, on `hosts`.
fn wide(n: u64, spouts: u64, hosts: &[(String, String)], dir: &str) -> Command {
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
    cmd.args(["wide", &n.to_string(), &spouts.to_string(), dir])
        .env("CD_TEST_HOSTS", names.join(","));
    cmd
}

/// The target run: 100 nodes (98 spouts, a bundled worker over all,
/// a sink) on 10 hosts, 10 000 ids each, ten times in a row, each a
/// success with every bundle joined and nothing left on any host.
#[test]
fn a_hundred_nodes_on_ten_hosts_run_ten_times_in_a_row() {
    let Some(hosts) = test_hosts_at_least("a hundred nodes on ten hosts", 10) else {
        return;
    };
    for run in 1..=10 {
        let dir = fresh_dir(&format!("wide-100-{run}"));
        let marker = dir.to_str().unwrap().to_owned();
        let _w = watchdog("a hundred nodes on ten hosts", LIMIT).guard(marker.clone());
        let out = wide(10_000, 98, &hosts, &marker).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {}\n{stderr}", out.status);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "K joined 10000 bundles of 98\n",
            "run {run}"
        );
        let launch = stderr
            .lines()
            .find(|l| l.starts_with("launch "))
            .unwrap_or_else(|| panic!("run {run}: no launch line\n{stderr}"));
        eprintln!("run {run}: {launch}");
        assert_nothing_left(&marker);
        let run_id = run_id_of(&dir.join("J.err")).expect("J's log header");
        assert_eq!(run_segments(&run_id), Vec::<String>::new(), "run {run}");
    }
}

/// One agent's answer, from the master's `CLUSTERDUCK_VERBOSE` lines: the
/// host, and the address its SSH session came from (sshd's
/// `SSH_CONNECTION`).
fn answers(stderr: &str) -> BTreeMap<String, String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("clusterduck: run: agent of "))
        .map(|l| {
            let host = l.split_whitespace().next().unwrap().to_owned();
            let via = l.rsplit("started from ").next().unwrap().trim().to_owned();
            (host, via)
        })
        .collect()
}

/// Width 3 on 12 hosts: the master starts the agents of cd-h1..cd-h3
/// itself, and each of those the agents of three more hosts (a tree of
/// depth 2), as sshd on each host saw it; every agent answers the master
/// directly, and the run works.
#[test]
fn a_tree_of_width_three_starts_twelve_hosts_agents_from_agents() {
    let Some(hosts) = test_hosts_at_least("a launch tree", 12) else {
        return;
    };
    let dir = fresh_dir("tree-12");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("a launch tree", LIMIT).guard(marker.clone());
    let out = wide(1000, 12, &hosts, &marker)
        .env("CD_TEST_FANOUT", "3")
        .env("CLUSTERDUCK_VERBOSE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "K joined 1000 bundles of 12\n"
    );
    let answered = answers(&stderr);
    assert_eq!(
        answered.len(),
        12,
        "every host's agent answered: {answered:?}"
    );
    let address_of: BTreeMap<&str, &str> = hosts
        .iter()
        .map(|(h, a)| (a.as_str(), h.as_str()))
        .collect();
    // Who started whom: the master (not a test host) or another host.
    let parent = |host: &str| address_of.get(answered[host].as_str()).copied();
    for first in ["cd-h1", "cd-h2", "cd-h3"] {
        assert_eq!(
            parent(first),
            None,
            "{first} started by the master: {answered:?}"
        );
    }
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (host, _) in &hosts[3..] {
        let p = parent(host).unwrap_or_else(|| panic!("{host} started by an agent: {answered:?}"));
        children.entry(p).or_default().push(host);
    }
    assert_eq!(
        children,
        BTreeMap::from([
            ("cd-h1", vec!["cd-h4", "cd-h5", "cd-h6"]),
            ("cd-h2", vec!["cd-h7", "cd-h8", "cd-h9"]),
            ("cd-h3", vec!["cd-h10", "cd-h11", "cd-h12"]),
        ])
    );
    assert_nothing_left(&marker);
}

/// The misfire of issue 13: a node ready long after the others (3 s, with
/// 1 s of silence allowed) must not make the early ones look silent: they
/// are heard from from the moment they connect.
#[test]
fn nodes_ready_seconds_apart_are_not_taken_for_silent() {
    let hosts = test_hosts_at_least("nodes ready seconds apart", 3);
    let mut places = vec![None];
    if let Some(hosts) = &hosts {
        let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
        places.push(Some(names.join(",")));
    }
    for place in places {
        let dir = fresh_dir("late-ready");
        let marker = dir.to_str().unwrap().to_owned();
        let _w = watchdog("nodes ready seconds apart", LIMIT).guard(marker.clone());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
        cmd.args(["lateready", &marker]);
        if let Some(hosts) = &place {
            cmd.env("CD_TEST_HOSTS", hosts);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{place:?}: {}\n{stderr}", out.status);
        let seen: Vec<String> = (0..20).map(|i| format!("W {i}")).collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            seen,
            "{place:?}"
        );
        assert_nothing_left(&marker);
    }
}

/// An agent that stops answering (SIGSTOP) fails the run naming its host,
/// after the heartbeat timeout; once it runs again it finds its master gone
/// and ends, leaving nothing.
#[test]
fn a_stopped_agent_fails_the_run_naming_its_host() {
    let Some(hosts) = test_hosts_at_least("a stopped agent", 3) else {
        return;
    };
    let dir = fresh_dir("stopped-agent");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("a stopped agent", LIMIT).guard(marker.clone());
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let mut master = clusterduck_tests::start(
        Command::new(env!("CARGO_BIN_EXE_topology"))
            .args(["silent", &marker])
            .env("CD_TEST_HOSTS", names.join(",")),
    );
    assert_eq!(master.line(), "W 0");
    let agents = agent_processes(&marker);
    assert_eq!(agents.len(), 3, "{agents:?}");
    // The agent of cd-h2, which runs W.
    let of_h2 = agents
        .iter()
        .copied()
        .find(|pid| agent_host(*pid) == "cd-h2")
        .expect("the agent of cd-h2");
    send_signal(of_h2, libc::SIGSTOP);
    let (status, _, err) = master.finish();
    send_signal(of_h2, libc::SIGCONT);
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: host cd-h2: its agent said nothing for 2s",
    );
    while !clusterduck_tests::processes_with(&marker).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The host an agent process serves: the network namespace it runs in,
/// named by `ip netns identify`.
fn agent_host(pid: u32) -> String {
    let out = Command::new("ip")
        .args(["netns", "identify", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
