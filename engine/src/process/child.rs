//! A node process started on this machine (by the master for its local
//! nodes, by a host agent for its host's): this program again, in its own
//! process group, its role in its environment, its stdout and stderr
//! appended to its log files, its configuration on its stdin, and a thread
//! that waits for its end and says how it ended.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::agent::AGENT_ENV;
use super::exit::ExitCause;
use super::logs::{self, LogError};
use super::node::NODE_ENV;
use super::protocol::{encode, NodeConfig};

/// Why a node process could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// Its log files could not be opened.
    #[error(transparent)]
    Logs(#[from] LogError),
    /// The process could not be started or given its configuration.
    #[error("{0}")]
    Spawn(#[source] io::Error),
}

/// Starts node `name` with `config`, logging in `dir`, and returns its pid;
/// `on_exit` is called from another thread with how it ended. The calling
/// thread must live as long as the node: the node dies with it
/// (`config.die_with`, Linux's parent-death signal).
pub(crate) fn start_node(
    dir: &Path,
    name: &str,
    config: &NodeConfig,
    on_exit: impl FnOnce(ExitCause) + Send + 'static,
) -> Result<u32, StartError> {
    let (out, err) = logs::open(dir, name, &config.run_id)?;
    let program = std::env::current_exe().map_err(StartError::Spawn)?;
    let mut child = Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(NODE_ENV, name)
        .env_remove(AGENT_ENV)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        // Its own process group: Ctrl-C at the terminal reaches the master
        // only, which drains the run in order; and a kill ends the group,
        // whatever the node started in it (`kill_group`).
        .process_group(0)
        .spawn()
        .map_err(StartError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    if let Err(e) = stdin.write_all(&encode(config)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(StartError::Spawn(e));
    }
    drop(stdin);
    let pid = child.id();
    let waiter = thread::Builder::new()
        .name(format!("clusterduck-wait-{name}"))
        .spawn(move || match child.wait() {
            Ok(status) => on_exit(ExitCause::of(status)),
            // Not our child any more (cannot happen: we own it); say what
            // little is known rather than wait forever.
            Err(_) => on_exit(ExitCause::Status(-1)),
        });
    if let Err(e) = waiter {
        let _ = clusterduck_transport::process::kill(pid);
        return Err(StartError::Spawn(e));
    }
    Ok(pid)
}
