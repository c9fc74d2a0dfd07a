//! Topologies across real test hosts: network namespaces with their own
//! sshd, made by `tools/testnet.sh` (`.ci/run` brings up three).
//!
//! Without `CLUSTERDUCK_SSH_CONFIG` (the test hosts are not up) each test
//! prints `SKIPPED: ...` on stderr and returns, or fails where
//! `CLUSTERDUCK_NO_SKIP` is set (CI).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use clusterduck_tests::{fresh_dir, node_processes, watchdog};

const LIMIT: Duration = Duration::from_secs(180);
const HOSTS: &str = "cd-h1,cd-h2,cd-h3";

fn hosts_up(test: &str) -> bool {
    clusterduck_tests::test_hosts(test).is_some()
}

/// An example binary, built by `cargo test` beside the tests.
fn example(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("examples").join(name)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn network_namespace(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn wordcount_replicas_across_three_hosts_count_what_local_mode_counts() {
    if !hosts_up("wordcount across hosts") {
        return;
    }
    let _w = watchdog("wordcount-hosts", LIMIT).guard("/cd-wordcount-hosts-");
    let wordcount = example("wordcount");
    assert!(
        wordcount.exists(),
        "build the examples: cargo test --workspace"
    );
    // The test hosts share this machine's file system: the spout's host
    // finds the file at the same path.
    let dir = fresh_dir("wordcount-hosts");
    let file = dir.join("words.txt");
    let text: String = (0..3000u64)
        .map(|i| format!("w{} w{} duck w{}\n", i % 7, i % 13, i % 101))
        .collect();
    std::fs::write(&file, text).unwrap();
    let local = run(Command::new(&wordcount)
        .args(["--replicas", "4", "--local"])
        .arg(&file));
    let logs = dir.join("logs");
    let out = run(Command::new(&wordcount)
        .args(["--replicas", "4", "--hosts", HOSTS, "--dir"])
        .arg(&logs)
        .arg(&file));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    assert!(
        String::from_utf8_lossy(&local.stdout).contains("duck 3000\n"),
        "{}",
        String::from_utf8_lossy(&local.stdout)
    );
    let report = String::from_utf8_lossy(&out.stderr);
    for i in 0..4 {
        assert!(report.contains(&format!("  count[{i}] ")), "{report}");
        assert!(
            logs.join(format!("count.{i}.err")).exists(),
            "count.{i}.err"
        );
    }
}

#[test]
fn readme_and_collage_across_three_hosts_print_what_local_mode_prints() {
    if !hosts_up("readme across hosts") {
        return;
    }
    let _w = watchdog("readme-hosts", LIMIT)
        .guard("/cd-readme-")
        .guard("/cd-collage-hosts-");
    let readme = example("readme");
    assert!(
        readme.exists(),
        "build the examples: cargo test --workspace"
    );
    let local = run(Command::new(&readme).args(["-n", "1000", "--local"]));
    for io in ["uring", "epoll"] {
        let dir = fresh_dir(&format!("readme-hosts-{io}"));
        let out = run(Command::new(&readme)
            .args([
                "-n",
                "1000",
                "--hosts",
                HOSTS,
                "--dir",
                dir.to_str().unwrap(),
            ])
            .env("CLUSTERDUCK_IO", io));
        assert_eq!(out.stdout, local.stdout, "CLUSTERDUCK_IO={io}");
        // The backend asked for is the one the links used.
        clusterduck_tests::assert_links_used(&dir, io);
    }
    // Each node ran in its host's network namespace, none in ours.
    let dir = fresh_dir("readme-namespaces");
    run(Command::new(&readme)
        .args([
            "-n",
            "1000",
            "--hosts",
            HOSTS,
            "--dir",
            dir.to_str().unwrap(),
        ])
        .env("CLUSTERDUCK_VERBOSE", "1"));
    let namespaces: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|node| {
            let log = std::fs::read_to_string(dir.join(format!("{node}.err"))).unwrap();
            log.lines()
                .find_map(|l| {
                    l.split_once("(network namespace ")
                        .map(|(_, r)| r.to_owned())
                })
                .and_then(|r| r.split_once(')').map(|(ns, _)| ns.to_owned()))
                .unwrap_or_else(|| panic!("{node} logs its namespace: {log}"))
        })
        .collect();
    let ours = network_namespace(std::process::id());
    assert!(
        namespaces.iter().all(|ns| *ns != ours),
        "{namespaces:?} vs {ours}"
    );
    let mut distinct = namespaces.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{namespaces:?}");

    let collage = example("collage");
    // Photos that fit a quarter of the ring: values out of line do not
    // cross hosts yet (tests/tests/large.rs).
    let small = ["--image-bytes", "128"];
    let local = run(Command::new(&collage).args(small).arg("--local"));
    let dir = fresh_dir("collage-hosts");
    let out = run(Command::new(&collage).args(small).args([
        "--hosts",
        HOSTS,
        "--dir",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(out.stdout, local.stdout);
}

/// Starts `split N DIR cd-h1 cd-h2` and waits for its first record: every
/// node runs.
fn split(n: u64, dir: &str) -> clusterduck_tests::Started {
    let mut master = clusterduck_tests::start(Command::new(env!("CARGO_BIN_EXE_topology")).args([
        "split",
        &n.to_string(),
        dir,
        "cd-h1",
        "cd-h2",
    ]));
    assert_eq!(master.line(), "K 0", "the debugger's first record");
    master
}

#[test]
fn nodes_run_in_three_network_namespaces() {
    if !hosts_up("namespaces") {
        return;
    }
    let dir = fresh_dir("namespaces");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("namespaces", LIMIT).guard(marker.clone());
    let mut master = split(100, &marker);
    let nodes = node_processes(&marker);
    let ours = network_namespace(std::process::id());
    let ns: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.node.clone(), network_namespace(n.pid)))
        .collect();
    master.kill();
    assert_eq!(ns.len(), 4, "{ns:?}");
    let of = |name: &str| ns.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(of("S"), of("W"), "S and W share cd-h1");
    assert_eq!(of("K"), of("E"), "K and E share cd-h2");
    assert_ne!(of("S"), of("K"));
    assert!(ns.iter().all(|(_, n)| *n != ours), "{ns:?} vs {ours}");
}

/// `kill -9` of a node on a test host: the run fails naming the node, its
/// host, its pid and the signal, and nothing of the run is left on any
/// host (the hosts share this machine's processes and `/dev/shm`).
#[test]
fn a_killed_remote_node_is_reported_by_name_host_pid_and_signal() {
    if !hosts_up("kill a remote node") {
        return;
    }
    for (victim, host) in [("W", "cd-h1"), ("E", "cd-h2")] {
        let dir = fresh_dir(&format!("kill-remote-{victim}"));
        let marker = dir.to_str().unwrap().to_owned();
        let _w = watchdog("kill a remote node", LIMIT).guard(marker.clone());
        let master = split(10_000, &marker);
        let nodes = node_processes(&marker);
        assert_eq!(nodes.len(), 4, "{nodes:?}");
        let run_id = clusterduck_tests::run_id_of(&dir.join("W.out")).unwrap();
        assert!(
            !clusterduck_tests::run_segments(&run_id).is_empty(),
            "the run's segments, while it runs"
        );
        let pid = nodes.iter().find(|n| n.node == victim).unwrap().pid;
        clusterduck_tests::send_signal(pid, libc::SIGKILL);
        let (status, _, err) = master.finish();
        assert!(!status.success());
        let expected =
            format!("error: node {victim} (pid {pid}) on host {host} killed by signal 9 (SIGKILL)");
        assert!(err.lines().any(|l| l == expected), "{expected}\n{err}");
        clusterduck_tests::assert_nothing_left(&marker);
        assert_eq!(
            clusterduck_tests::run_segments(&run_id),
            Vec::<String>::new()
        );
    }
}

/// The data port a node logged in its `.err` on its host.
fn data_port(dir: &Path, node: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(format!("{node}.err"))).ok()?;
    text.lines().find_map(|l| {
        l.split_once(": data port ")
            .map(|(_, a)| a.trim().to_owned())
    })
}

#[test]
fn an_edge_across_hosts_and_one_within_survive_bad_input_on_every_port() {
    if !hosts_up("bad input") {
        return;
    }
    let dir = fresh_dir("bad-input");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("bad-input", LIMIT).guard(marker.clone());
    let mut child = Command::new(env!("CARGO_BIN_EXE_topology"))
        .args(["split", "150", &marker, "cd-h1", "cd-h2"])
        .env("CLUSTERDUCK_VERBOSE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    // Wait for the first value: every port is open then.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4];
    stdout.read_exact(&mut first).unwrap();
    let w_port = data_port(&dir, "W").expect("W logs its data port");
    let control = std::fs::read_to_string(dir.join("W.err"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once("control at ")
                .map(|(_, a)| a.trim().to_owned())
        })
        .expect("nodes log the master's control address");
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "wrong secret",
            [vec![0x11; 32], 1u32.to_le_bytes().to_vec(), vec![0x22; 32]].concat(),
        ),
        ("oversize length", u32::MAX.to_le_bytes().repeat(32)),
        ("truncated", vec![0x33; 10]),
    ];
    for port in [&w_port, &control] {
        for (what, bytes) in &attacks {
            let mut s = TcpStream::connect(port.as_str()).unwrap();
            let mut hello = [0u8; 40];
            let _ = s.read_exact(&mut hello);
            let _ = s.write_all(bytes);
            drop(s);
            eprintln!("sent {what} to {port}");
        }
        // An unauthenticated client that says nothing and leaves.
        drop(TcpStream::connect(port.as_str()).unwrap());
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    assert!(status.success(), "{err}");
    let got = format!("{}{rest}", String::from_utf8_lossy(&first));
    let expected: String = (0..150).map(|i| format!("K {i}\n")).collect();
    assert_eq!(got, expected);
    let refused = |text: &str| text.lines().filter(|l| l.contains("refused")).count();
    let w_err = std::fs::read_to_string(dir.join("W.err")).unwrap();
    assert!(
        refused(&w_err) >= 4,
        "W logs each refused connection: {w_err}"
    );
    assert!(
        refused(&err) >= 4,
        "the master logs each refused connection: {err}"
    );
    assert!(node_processes(&marker).is_empty());
}

/// An ssh config like the test hosts' with `edit` applied.
fn edited_config(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let original = std::env::var("CLUSTERDUCK_SSH_CONFIG").unwrap();
    let text = std::fs::read_to_string(original).unwrap();
    let path = dir.join("ssh_config");
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

/// The launch error of the readme example on `hosts` with ssh config
/// `config`: its stderr from the `error:` line on. Nothing ran, and nothing
/// of the run is left (the agents started on the good hosts ended).
fn launch_error(config: &Path, hosts: &str, dir: &Path) -> String {
    let out = Command::new(example("readme"))
        .args(["-n", "10", "--hosts", hosts, "--dir", dir.to_str().unwrap()])
        .env("CLUSTERDUCK_SSH_CONFIG", config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing ran");
    clusterduck_tests::assert_nothing_left(dir.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    let at = err
        .find("error: ")
        .unwrap_or_else(|| panic!("no error line: {err}"));
    err[at..].trim_end().to_owned()
}

/// Every host of a launch is tried, and every one that cannot be used is
/// named, in the order of the hosts, before anything runs.
#[test]
fn host_problems_are_errors_naming_every_host_before_anything_runs() {
    if !hosts_up("host errors") {
        return;
    }
    let dir = fresh_dir("host-errors");
    let _w = watchdog("host-errors", LIMIT).guard(dir.to_str().unwrap());
    // Our key is not the one the hosts accept.
    let bad_key = dir.join("not-our-key");
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            bad_key.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let config = edited_config(&dir, |text| {
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with("IdentityFile ") {
                    format!("  IdentityFile {}", bad_key.display())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let e = launch_error(&config, "cd-h1,cd-h2", &dir);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines[0], "error: cannot launch: 2 hosts cannot be used:",
        "{e}"
    );
    assert!(
        lines[1].starts_with("  host cd-h1: authentication refused: ")
            && lines[2].starts_with("  host cd-h2: authentication refused: ")
            && lines.len() == 3,
        "{e}"
    );

    // A host whose address refuses connections (loopback, a closed port),
    // one no one knows, and a good one between them: both bad ones are
    // told; the good one's agent, started meanwhile, is gone.
    let config = edited_config(&dir, |text| {
        format!("Host cd-closed\n  HostName 127.0.0.1\n  Port 1\n\n{text}")
    });
    let e = launch_error(&config, "cd-closed,cd-h1,cd-nowhere", &dir);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines[0], "error: cannot launch: 2 hosts cannot be used:",
        "{e}"
    );
    assert!(
        lines[1].starts_with("  host cd-closed: unreachable: ")
            && lines[1].contains("Connection refused"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("  host cd-nowhere: cannot resolve its address: "),
        "{e}"
    );
    assert!(
        std::fs::read_to_string(dir.join(".agent-cd-h1.err"))
            .unwrap()
            .contains("agent of host cd-h1"),
        "the good host's agent was started (and is gone: see launch_error)"
    );

    // Where the copies go is taken by a file: the copy fails, saying why.
    let config = edited_config(&dir, |text| text.to_owned());
    let blocked = fresh_dir("host-errors-copy");
    std::fs::write(blocked.join(".bin"), "not a directory").unwrap();
    let e = launch_error(&config, "cd-h1", &blocked);
    assert!(
        e.starts_with(
            "error: cannot launch: host cd-h1: binary copy failed: exit status: 1: mkdir: "
        ) && e.contains(".bin"),
        "{e}"
    );

    // One host alone: its error, on the error line itself.
    let config = edited_config(&dir, |text| text.to_owned());
    let e = launch_error(&config, "cd-h1,cd-nowhere", &dir);
    assert!(
        e.starts_with("error: cannot launch: host cd-nowhere: cannot resolve its address: "),
        "{e}"
    );
}

const THREE: &str = "cd-h1,cd-h2,cd-h3";

/// Starts the topology binary with `args` across the three test hosts
/// (S, W, K on cd-h1, cd-h2, cd-h3).
fn across(args: &[&str]) -> clusterduck_tests::Started {
    clusterduck_tests::start(
        Command::new(env!("CARGO_BIN_EXE_topology"))
            .args(args)
            .env("CD_TEST_HOSTS", THREE),
    )
}

#[test]
fn replicas_across_hosts_keep_id_order() {
    if !hosts_up("replicas across hosts") {
        return;
    }
    let dir = fresh_dir("replicated-hosts");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("replicated-hosts", LIMIT).guard(marker.clone());
    // A, J[0..3], K[0..2] and D round-robin over three hosts: every edge
    // into D crosses hosts for some replicas and not for others.
    let (status, out, err) = across(&["replicated", "20000", &marker]).finish();
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "D 20000 in order", "{err}");
    clusterduck_tests::assert_nothing_left(&marker);
}

#[test]
fn a_remote_node_that_never_reports_ready_fails_the_run_naming_its_host() {
    if !hosts_up("not ready across hosts") {
        return;
    }
    let dir = fresh_dir("not-ready-hosts");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("not-ready-hosts", LIMIT).guard(marker.clone());
    let (status, out, err) = across(&["notready", &marker]).finish();
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W on host cd-h2 did not report ready within 10s",
    );
    assert_eq!(out, "", "no spout sent anything");
    clusterduck_tests::assert_nothing_left(&marker);
}

#[test]
fn a_silent_remote_node_fails_the_run_after_the_heartbeat_timeout() {
    if !hosts_up("silent across hosts") {
        return;
    }
    let dir = fresh_dir("silent-hosts");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("silent-hosts", LIMIT).guard(marker.clone());
    let mut master = across(&["silent", &marker]);
    assert_eq!(master.line(), "W 0");
    let w = node_processes(&marker)
        .into_iter()
        .find(|n| n.node == "W")
        .expect("W runs");
    assert_ne!(
        network_namespace(w.pid),
        network_namespace(std::process::id()),
        "W runs on a test host"
    );
    clusterduck_tests::send_signal(w.pid, libc::SIGSTOP);
    let (status, _, err) = master.finish();
    clusterduck_tests::assert_failed_saying(
        status,
        &err,
        "error: node W: control connection lost: no word for 2s",
    );
    clusterduck_tests::assert_nothing_left(&marker);
}

#[test]
fn killing_the_master_ends_its_nodes_on_every_host() {
    if !hosts_up("master killed across hosts") {
        return;
    }
    let dir = fresh_dir("kill-master-hosts");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("kill-master-hosts", LIMIT).guard(marker.clone());
    let mut master = across(&["slow", "10000", &marker]);
    assert_eq!(master.line(), "W 0");
    let nodes = node_processes(&marker);
    let hosts: std::collections::BTreeSet<String> =
        nodes.iter().map(|n| network_namespace(n.pid)).collect();
    assert_eq!((nodes.len(), hosts.len()), (3, 3), "{nodes:?} on {hosts:?}");
    let run_id = clusterduck_tests::run_id_of(&dir.join("W.out")).unwrap();
    assert!(
        !clusterduck_tests::run_segments(&run_id).is_empty(),
        "the run's segments, while it runs"
    );
    let agents = clusterduck_tests::agent_processes(&marker);
    assert_eq!(agents.len(), 3, "one agent per host: {agents:?}");
    master.kill();
    // Nodes, agents, their ssh sessions: all end (the watchdog fails the
    // test if they do not).
    while !clusterduck_tests::processes_with(&marker).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Each agent removed the run's segments on its host as it ended: no
    // later launch is needed to clean up.
    assert_eq!(
        clusterduck_tests::run_segments(&run_id),
        Vec::<String>::new()
    );
}
