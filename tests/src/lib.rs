//! Helpers shared by Clusterduck's end-to-end tests: a watchdog that ends
//! what a hung test started, the processes and segments of a run (found, or
//! a loud failure when they cannot be looked for), skips that CI refuses,
//! and signals between the nodes of a test topology.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub mod signal;

pub use signal::Signals;

/// Aborts the whole test process if it is still alive `limit` after it was
/// armed: a test that hangs fails loudly instead of stalling CI. Before it
/// aborts it kills (SIGKILL) every process whose command line holds one of
/// the markers it [guards](Self::guard), so that a hung test leaves no
/// master or node behind. Dropping the guard disarms it.
#[derive(Debug)]
pub struct Watchdog {
    disarm: mpsc::Sender<Guarded>,
}

/// What a watchdog is told while armed.
enum Guarded {
    Marker(String),
    Disarm,
}

/// Arms a [`Watchdog`] for the test `name`.
pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (disarm, armed) = mpsc::channel::<Guarded>();
    thread::spawn(move || {
        let deadline = std::time::Instant::now() + limit;
        let mut markers = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match armed.recv_timeout(left) {
                Ok(Guarded::Marker(m)) => markers.push(m),
                Ok(Guarded::Disarm) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        eprintln!("watchdog: test {name} still running after {limit:?}; aborting");
        for marker in &markers {
            for p in processes_with(marker) {
                eprintln!(
                    "watchdog: killing pid {} ({})",
                    p.pid,
                    p.node.as_deref().unwrap_or("master")
                );
                // SAFETY: kill(2) takes no pointers; a pid that has gone
                // meanwhile makes it fail with ESRCH, which is ignored.
                unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
            }
        }
        std::process::abort();
    });
    Watchdog { disarm }
}

impl Watchdog {
    /// Makes the watchdog, if it fires, kill every process whose command
    /// line holds `marker` (a test passes a unique directory to the
    /// topologies it starts: their masters and nodes all carry it).
    pub fn guard(self, marker: impl Into<String>) -> Self {
        let _ = self.disarm.send(Guarded::Marker(marker.into()));
        self
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.disarm.send(Guarded::Disarm);
    }
}

/// A process found in `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// The node it runs (its `CLUSTERDUCK_NODE`), if it is a node.
    pub node: Option<String>,
}

/// A node process found in `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProcess {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// The node it runs (its `CLUSTERDUCK_NODE`).
    pub node: String,
}

/// The live processes (not zombies) other than this one whose command line
/// contains `marker`. Panics if `/proc` cannot be listed or a process's
/// files cannot be read for another reason than its having just exited: a
/// look that cannot be made must not pass for "nothing there".
pub fn processes_with(marker: &str) -> Vec<MarkedProcess> {
    let entries = std::fs::read_dir("/proc")
        .unwrap_or_else(|e| panic!("cannot list /proc to look for processes: {e}"));
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list /proc: {e}"));
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let read = |file: &str| match std::fs::read(dir.join(file)) {
            Ok(bytes) => Some(bytes),
            // Gone between the listing and the read (ESRCH reads as NotFound
            // or, for a zombie's environ, as an empty file).
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => None,
            Err(e) => panic!("cannot read {}: {e}", dir.join(file).display()),
        };
        let Some(cmdline) = read("cmdline") else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let (Some(environ), Some(stat)) = (read("environ"), read("stat")) else {
            continue;
        };
        let stat = String::from_utf8_lossy(&stat);
        // stat: "pid (comm) state ppid ...", comm may hold spaces.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or("?");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" {
            continue;
        }
        let node = environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("CLUSTERDUCK_NODE="))
            .map(str::to_owned);
        found.push(MarkedProcess { pid, ppid, node });
    }
    found
}

/// The host agents among `processes`: processes with `CLUSTERDUCK_AGENT`
/// in their environment.
pub fn agent_processes(marker: &str) -> Vec<u32> {
    processes_with(marker)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|v| v.starts_with(b"CLUSTERDUCK_AGENT="))
                })
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

/// Panics unless no process of the run marked by `marker` is left: no
/// node, no host agent, no `ssh` (their command lines all hold the marker,
/// the run's directory).
pub fn assert_nothing_left(marker: &str) {
    let left = processes_with(marker);
    assert!(left.is_empty(), "processes of the run left: {left:?}");
}

/// The live node processes whose command line contains `marker`, sorted by
/// node: a test passes a unique directory to its topology and finds its
/// nodes, and their orphans, by it. Panics where [`processes_with`] does.
pub fn node_processes(marker: &str) -> Vec<NodeProcess> {
    let mut found: Vec<NodeProcess> = processes_with(marker)
        .into_iter()
        .filter_map(|p| {
            Some(NodeProcess {
                pid: p.pid,
                ppid: p.ppid,
                node: p.node?,
            })
        })
        .collect();
    found.sort_by(|a, b| a.node.cmp(&b.node));
    found
}

/// The shared-memory segments of run `run_id` in `/dev/shm`. Panics if
/// `/dev/shm` cannot be listed.
pub fn run_segments(run_id: &str) -> Vec<String> {
    let prefix = format!("clusterduck-{run_id}-");
    let entries = std::fs::read_dir("/dev/shm")
        .unwrap_or_else(|e| panic!("cannot list /dev/shm to look for segments: {e}"));
    let mut found: Vec<String> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list /dev/shm: {e}")))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    found.sort();
    found
}

/// The words of node `node`'s row in a printed run report (`node kind in
/// out ... busy% blocked% rss`); panics, showing the report, if it has none.
pub fn report_row<'a>(report: &'a str, node: &str) -> Vec<&'a str> {
    report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&node))
        .unwrap_or_else(|| panic!("no row for {node}: {report}"))
}

/// The run id in the last header line of a node's log file.
pub fn run_id_of(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("==== clusterduck run "))?;
    Some(
        line["==== clusterduck run ".len()..]
            .split(',')
            .next()?
            .to_owned(),
    )
}

/// A fresh, empty directory for one test's logs.
pub fn fresh_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cd-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the test's directory");
    dir
}

/// The path of example binary `name`, built by `cargo test` beside the
/// calling test binary (`target/<profile>/examples/<name>`). Panics, saying
/// how to build it, if it is not there.
pub fn example_path(name: &str) -> PathBuf {
    let mut path: PathBuf = std::env::current_exe().expect("test binary path");
    path.pop(); // the test binary
    if path.ends_with("deps") {
        path.pop();
    }
    path.push("examples");
    path.push(name);
    assert!(
        path.exists(),
        "example {name} not built at {}: run `cargo test --workspace`",
        path.display()
    );
    path
}

/// The environment variable that forbids skipping: `.ci/run` sets it, so a
/// test that cannot run there fails instead of passing unseen.
pub const NO_SKIP_ENV: &str = "CLUSTERDUCK_NO_SKIP";

/// Says, loudly, that the test `test` cannot run here and why, and returns
/// (the caller then returns without checking anything). Where
/// [`NO_SKIP_ENV`] is set, panics instead: a skip is a failure there.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os(NO_SKIP_ENV).is_some() {
        panic!("{test} cannot run here ({why}), and {NO_SKIP_ENV} forbids skipping");
    }
    // Straight to stderr: the test harness would swallow `eprintln!`.
    use std::io::Write;
    let _ = writeln!(io::stderr(), "SKIPPED: {test}: {why}");
}

/// The ssh config of the test hosts, if they are up; otherwise [skips](skip)
/// the test `test` and returns `None`.
pub fn test_hosts(test: &str) -> Option<PathBuf> {
    match std::env::var_os("CLUSTERDUCK_SSH_CONFIG") {
        Some(config) => Some(config.into()),
        None => {
            skip(
                test,
                "test hosts are not up (run: eval \"$(tools/testnet.sh up 3)\")",
            );
            None
        }
    }
}

/// The first `n` test hosts (`cd-h1..cd-hN`) with their addresses, if that
/// many are up; otherwise [skips](skip) the test `test` and returns `None`.
pub fn test_hosts_at_least(test: &str, n: usize) -> Option<Vec<(String, String)>> {
    let config = test_hosts(test)?;
    let text = std::fs::read_to_string(&config)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", config.display()));
    let mut hosts = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(host) = line.strip_prefix("Host ") {
            current = Some(host.trim().to_owned());
        } else if let (Some(address), Some(host)) = (line.strip_prefix("HostName "), &current) {
            hosts.push((host.clone(), address.trim().to_owned()));
        }
    }
    let wanted: Vec<(String, String)> = (1..=n)
        .filter_map(|k| {
            let name = format!("cd-h{k}");
            hosts.iter().find(|(h, _)| *h == name).cloned()
        })
        .collect();
    if wanted.len() < n {
        skip(
            test,
            &format!(
                "{n} test hosts are needed, {} are up (run: eval \"$(tools/testnet.sh up {n})\")",
                wanted.len()
            ),
        );
        return None;
    }
    Some(wanted)
}

/// A program a test started (a topology's master), its stdout read line by
/// line, its stderr gathered on a thread so that it never blocks on a full
/// pipe.
#[derive(Debug)]
pub struct Started {
    child: std::process::Child,
    stdout: io::BufReader<std::process::ChildStdout>,
    stderr: thread::JoinHandle<String>,
}

/// Starts `cmd` with its stdout and stderr piped.
pub fn start(cmd: &mut std::process::Command) -> Started {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut err = child.stderr.take().expect("piped stderr");
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let stdout = io::BufReader::new(child.stdout.take().expect("piped stdout"));
    Started {
        child,
        stdout,
        stderr,
    }
}

impl Started {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints (without the newline); empty at the end.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        io::BufRead::read_line(&mut self.stdout, &mut line).expect("read its stdout");
        line.trim_end_matches('\n').to_owned()
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill it");
        let _ = self.child.wait();
    }

    /// Waits for its end: its status, the rest of its stdout, its stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut rest = String::new();
        io::Read::read_to_string(&mut self.stdout, &mut rest).expect("read its stdout");
        let status = self.child.wait().expect("wait for it");
        (status, rest, self.stderr.join().expect("its stderr"))
    }
}

/// Sends `signal` to process `pid`, which must exist.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) takes no pointers.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(
        sent,
        0,
        "signal {signal} to pid {pid}: {}",
        io::Error::last_os_error()
    );
}

/// Checks that the nodes of a run whose logs are in `dir` used the io
/// backend `io` for their TCP links, as `CLUSTERDUCK_IO={io}` asked (were
/// io_uring refused, the nodes would fall back to epoll and say so), and
/// that at least one node had a link.
pub fn assert_links_used(dir: &Path, io: &str) {
    let said: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a log").path())
        .filter(|p| p.extension().is_some_and(|e| e == "err"))
        .flat_map(|p| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
                .lines()
                .filter(|l| l.contains("tcp links use"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    // Each line names its node: `clusterduck[W]: tcp links use ...`.
    let expected = format!("]: tcp links use the {io} backend (CLUSTERDUCK_IO={io})");
    assert!(
        !said.is_empty()
            && said
                .iter()
                .all(|l| l.starts_with("clusterduck[") && l.ends_with(&expected)),
        "CLUSTERDUCK_IO={io}: the nodes with links said {said:?}"
    );
}

/// Checks that a master failed and said `line` (an `error: ...` line) on
/// its stderr.
pub fn assert_failed_saying(status: std::process::ExitStatus, stderr: &str, line: &str) {
    assert!(!status.success(), "the run succeeded: {stderr}");
    assert!(stderr.lines().any(|l| l == line), "{line}\n{stderr}");
}
