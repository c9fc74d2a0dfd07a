//! Helpers shared by Clusterduck's end-to-end tests.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Aborts the whole test process if it is still alive `limit` after it was
/// armed: a test that hangs fails loudly instead of stalling CI. Dropping
/// the guard disarms it.
#[derive(Debug)]
pub struct Watchdog {
    disarm: mpsc::Sender<()>,
}

/// Arms a [`Watchdog`] for the test `name`.
pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (disarm, armed) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
            eprintln!("watchdog: test {name} still running after {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog { disarm }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.disarm.send(());
    }
}

/// A process found in `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProcess {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// The node it runs (its `CLUSTERDUCK_NODE`).
    pub node: String,
}

/// The live node processes (not zombies) whose command line contains
/// `marker`: a test passes a unique directory to its topology and finds its
/// nodes, and their orphans, by it.
pub fn node_processes(marker: &str) -> Vec<NodeProcess> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = entry.path();
        let (Ok(cmdline), Ok(environ), Ok(stat)) = (
            std::fs::read(dir.join("cmdline")),
            std::fs::read(dir.join("environ")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let node = environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("CLUSTERDUCK_NODE="));
        // stat: "pid (comm) state ppid ...", comm may hold spaces.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or("?");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if let Some(node) = node {
            if state != "Z" {
                found.push(NodeProcess {
                    pid,
                    ppid,
                    node: node.to_owned(),
                });
            }
        }
    }
    found.sort_by(|a, b| a.node.cmp(&b.node));
    found
}

/// The shared-memory segments of run `run_id` still in `/dev/shm`.
pub fn run_segments(run_id: &str) -> Vec<String> {
    let prefix = format!("clusterduck-{run_id}-");
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The run id in the header line of a node's log file.
pub fn run_id_of(log: &std::path::Path) -> Option<String> {
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
pub fn fresh_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cd-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the test's directory");
    dir
}
