//! Helpers shared by the cross-process tests: child processes (the test
//! binary re-executing itself in a role), unique ring names and a watchdog.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use clusterduck_transport::RingName;

// Shared with the crate's unit tests (`src/shm/tests.rs`).
#[path = "watchdog.rs"]
mod watchdog_impl;
pub use watchdog_impl::watchdog;

/// The environment variable that forbids skipping (`.ci/run` sets it): a
/// test that cannot run fails instead of passing unseen.
pub const NO_SKIP_ENV: &str = "CLUSTERDUCK_NO_SKIP";

/// Says loudly that `test` cannot run here and why; panics instead where
/// [`NO_SKIP_ENV`] is set.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os(NO_SKIP_ENV).is_some() {
        panic!("{test} cannot run here ({why}), and {NO_SKIP_ENV} forbids skipping");
    }
    // Straight to stderr: the test harness would swallow `eprintln!`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
}

/// The environment variable that gives a re-executed test binary its role.
pub const ROLE: &str = "CLUSTERDUCK_TEST_ROLE";

/// A ring name unique to this process and call.
pub fn unique(node: &str) -> RingName {
    static N: AtomicUsize = AtomicUsize::new(0);
    let run = format!(
        "x{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    RingName::new(&run, node).unwrap()
}

/// Runs this test binary's test `entry` in a child process, with `role` and
/// `args` in its environment; its stdout is piped. Role entries are
/// `#[ignore]`d, so that a normal run counts them as ignored, not passed.
pub fn spawn_child(entry: &str, role: &str, args: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The next line the child printed with [`report`] (harness noise is
/// skipped), without the prefix; `None` at end of output.
pub fn next_report(out: &mut BufReader<ChildStdout>) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        // The harness may have printed "test name ... " on the same line.
        if let Some(at) = line.find("CD:") {
            return Some(line[at + 3..].trim_end().to_owned());
        }
    }
}

/// Prints a line for the parent to read.
pub fn report(msg: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "CD:{msg}").unwrap();
    out.flush().unwrap();
}

/// Kills a child with SIGKILL: a crash, with no chance to clean up.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
}
