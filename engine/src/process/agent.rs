//! A host agent: what this binary does on a remote host, started over SSH
//! (one connection per host) by the master or by the agent above it in the
//! launch tree. It connects to the master, starts the agents of the hosts
//! below it, starts its host's nodes when told (each a child, with its
//! logs), supervises them with `waitpid` and reports each one's end exactly
//! (`killed by signal 9 (SIGKILL)`), kills one when told, and starts one
//! again when told (a restart: the master decides, with the stamps of the
//! processes that ran the node before).
//!
//! The master decides; an agent executes and reports facts. When the
//! master goes (its control connection closes, or the SSH session that
//! started the agent ends), the agent kills its nodes, waits for them,
//! removes the run's shared-memory segments on its host, ends the agents
//! below it and exits: nothing of the run is left on the host.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rkyv::util::AlignedVec;

use super::child::start_node;
use super::control_tx::ControlTx;
use super::exit::ExitCause;
use super::node::HEARTBEAT;
use super::protocol::{decode, AgentConfig, FromAgent, NodeLaunch, ToAgent};
use super::remote::{AgentLauncher, AgentSession, Ssh};
use super::supervisor::Peer;
use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::wire::{read_message, WireError};

/// The environment variable that makes a process a host agent: it holds
/// the file descriptors on which the agent tells its starter it is up and
/// reads what its starter says (`3,4`). Set by the launch, never by hand.
pub const AGENT_ENV: &str = "CLUSTERDUCK_AGENT";

/// How long an ending agent waits for its nodes, once killed, and for the
/// agents below it.
const END_WAIT: Duration = Duration::from_secs(5);

/// Whether this process is a host agent.
pub fn agent_role() -> bool {
    std::env::var_os(AGENT_ENV).is_some()
}

/// Why an agent could not run. Its exit code tells the kind.
#[derive(Debug, thiserror::Error)]
enum AgentError {
    /// The launch's hand-over is missing or broken.
    #[error("{AGENT_ENV} must name the descriptor to answer on, not {0:?}")]
    Descriptor(String),
    /// The configuration on stdin could not be read.
    #[error("reading the configuration on stdin: {0}")]
    Config(String),
    /// The master could not be reached or refused us.
    #[error("reaching the master at {address}: {detail}")]
    Master {
        /// Its control address.
        address: String,
        /// What failed.
        detail: String,
    },
    /// The starter could not be told.
    #[error("answering the launch: {0}")]
    Answer(#[source] io::Error),
}

impl AgentError {
    /// The agent's exit code for this error.
    fn exit_code(&self) -> i32 {
        match self {
            Self::Descriptor(_) | Self::Config(_) => 2,
            Self::Master { .. } | Self::Answer(_) => 3,
        }
    }
}

/// Runs this process as a host agent, then exits it: 0 when its master
/// let it go, non-zero when it could not serve (the reason on stderr, its
/// log). Never returns.
pub fn agent_main() -> ! {
    crate::log::init();
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("this host agent cannot run: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code)
}

/// What the agent's loop hears.
enum Heard {
    Master(ToAgent),
    /// The control connection ended (why, if not cleanly).
    MasterGone(Option<String>),
    /// The SSH session that started this agent ended.
    StarterGone,
    Exited(u32, ExitCause),
    /// The agents below this host were started (or reported).
    Below(Vec<AgentSession>),
}

fn run() -> Result<(), AgentError> {
    let fds = std::env::var(AGENT_ENV).unwrap_or_default();
    let inherited = |fd: Option<&str>| {
        fd.and_then(|fd| fd.parse().ok())
            .and_then(|fd| clusterduck_transport::process::inherited_file(fd).ok())
            .ok_or_else(|| AgentError::Descriptor(fds.clone()))
    };
    let mut words = fds.split(',');
    let mut starter = inherited(words.next())?;
    let mut from_starter = inherited(words.next())?;
    let mut buf = AlignedVec::new();
    read_message(&mut from_starter, &mut buf).map_err(|e| AgentError::Config(e.to_string()))?;
    let config: AgentConfig = decode(&buf).map_err(|e| AgentError::Config(e.to_string()))?;
    crate::log::set_process(&format!("agent@{}", config.host.name));

    // sshd says where the session came from and arrived at.
    let session = std::env::var("SSH_CONNECTION").unwrap_or_default();
    let words: Vec<&str> = session.split_whitespace().collect();
    let via = words.first().copied().unwrap_or_default().to_owned();
    let address = words.get(2).copied().unwrap_or_default().to_owned();
    let mut config = config;
    if config.control_host.is_empty() {
        config.control_host.clone_from(&via);
    }
    let control = match config.control_host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::from((ip, config.control_port)).to_string(),
        Err(_) => format!("{}:{}", config.control_host, config.control_port),
    };
    let master = |detail: String| AgentError::Master {
        address: control.clone(),
        detail,
    };
    let mut stream = TcpStream::connect(&control).map_err(|e| master(e.to_string()))?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let me = Peer::Agent(config.host.index as usize);
    auth::connect(&mut stream, &Secret::from_bytes(config.secret), me.id())
        .map_err(|e| master(format!("authenticating: {e}")))?;
    stream.set_read_timeout(None).ok();
    let tx = ControlTx::new(stream.try_clone().map_err(|e| master(e.to_string()))?)
        .map_err(|e| master(e.to_string()))?;
    tx.heartbeat(HEARTBEAT, FromAgent::Heartbeat)
        .map_err(|e| master(e.to_string()))?;
    let hello = FromAgent::Hello {
        pid: std::process::id(),
        address,
        via,
    };
    tx.send(&hello).map_err(|e| master(e.to_string()))?;
    starter.write_all(b"up\n").map_err(AgentError::Answer)?;
    drop(starter);

    let (heard_tx, heard) = crossbeam_channel::unbounded();
    listen(
        stream.try_clone().map_err(|e| master(e.to_string()))?,
        heard_tx.clone(),
    );
    watch_starter(from_starter, heard_tx.clone());
    launch_below(&config, tx.clone(), heard_tx.clone());
    serve(&config, &control, &tx, heard_tx, &heard);
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads the master's orders until its connection ends.
fn listen(mut stream: TcpStream, heard: Sender<Heard>) {
    let spawned = thread::Builder::new()
        .name("clusterduck-agent-control".into())
        .spawn(move || {
            let mut buf = AlignedVec::new();
            let gone = loop {
                match read_message(&mut stream, &mut buf) {
                    Ok(()) => match decode::<ToAgent>(&buf) {
                        Ok(order) => {
                            let _ = heard.send(Heard::Master(order));
                        }
                        Err(e) => break Some(format!("bad message from the master: {e}")),
                    },
                    Err(WireError::Closed) => break None,
                    Err(e) => break Some(e.to_string()),
                }
            };
            let _ = heard.send(Heard::MasterGone(gone));
        });
    if let Err(e) = spawned {
        tracing::error!("cannot listen to the master: {e}; ending");
        std::process::exit(1);
    }
}

/// Notices the end of the SSH session that started this agent: what its
/// starter writes to it reaches its end.
fn watch_starter(mut from_starter: std::fs::File, heard: Sender<Heard>) {
    let _ = thread::Builder::new()
        .name("clusterduck-agent-starter".into())
        .spawn(move || {
            let mut sink = [0u8; 256];
            while let Ok(1..) = from_starter.read(&mut sink) {}
            let _ = heard.send(Heard::StarterGone);
        });
}

/// Starts the agents of the hosts below this one, reporting those that
/// cannot be used to the master.
fn launch_below(config: &AgentConfig, tx: ControlTx, heard: Sender<Heard>) {
    if config.below.is_empty() {
        return;
    }
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            for host in &config.below {
                let _ = tx.send(&FromAgent::HostFailed {
                    error: super::remote::HostError::Copy {
                        host: host.name.clone(),
                        detail: format!(
                            "the agent of {} cannot find its program: {e}",
                            config.host.name
                        ),
                    },
                });
            }
            return;
        }
    };
    let launcher = AgentLauncher::new(
        Ssh::from_env(),
        program,
        std::env::args_os().skip(1).collect(),
        config.clone(),
    );
    let below = config.below.clone();
    let _ = thread::Builder::new()
        .name("clusterduck-agent-launch".into())
        .spawn(move || {
            let sessions = launcher.launch(below, &|error| {
                let _ = tx.send(&FromAgent::HostFailed { error });
            });
            let _ = heard.send(Heard::Below(sessions));
        });
}

/// The agent's loop: starts and kills nodes as told, reports their ends,
/// and ends everything when the master goes.
fn serve(
    config: &AgentConfig,
    control: &str,
    tx: &ControlTx,
    heard_tx: Sender<Heard>,
    heard: &Receiver<Heard>,
) {
    let dir = PathBuf::from(&config.dir);
    // Pids of the nodes still running.
    let mut running: HashMap<u32, u32> = HashMap::new();
    let mut below = Vec::new();
    loop {
        let Ok(event) = heard.recv() else { break };
        match event {
            Heard::Master(ToAgent::Spawn { nodes }) => {
                for NodeLaunch { name, mut config } in nodes {
                    let node = config.node;
                    config.die_with = Some(std::process::id());
                    control.clone_into(&mut config.control);
                    let exits = heard_tx.clone();
                    let on_exit = move |cause| {
                        let _ = exits.send(Heard::Exited(node, cause));
                    };
                    match start_node(&dir, &name, &config, on_exit) {
                        Ok(pid) => {
                            running.insert(node, pid);
                            // Read while the process cannot be reaped yet:
                            // a child whose exit this agent has not waited
                            // for. A restart names it to its successor.
                            let start_time = clusterduck_transport::ProcessStamp::of(pid)
                                .map_or(0, |s| s.start_time);
                            let _ = tx.send(&FromAgent::Spawned {
                                node,
                                pid,
                                start_time,
                            });
                        }
                        Err(e) => {
                            let _ = tx.send(&FromAgent::NotSpawned {
                                node,
                                message: e.to_string(),
                            });
                        }
                    }
                }
            }
            Heard::Master(ToAgent::Kill { node }) => {
                if let Some(pid) = running.get(&node) {
                    if let Err(e) = clusterduck_transport::process::kill_group(*pid) {
                        tracing::warn!("cannot kill node #{node} (pid {pid}): {e}");
                    }
                }
            }
            Heard::Exited(node, cause) => {
                running.remove(&node);
                let _ = tx.send(&FromAgent::Exited { node, cause });
            }
            Heard::Below(sessions) => below = sessions,
            Heard::MasterGone(reason) => {
                if let Some(reason) = reason {
                    tracing::warn!("the master's connection failed: {reason}");
                }
                break;
            }
            Heard::StarterGone => break,
        }
    }
    end(config, running, below, heard);
}

/// Kills the nodes still running, waits for them, removes the run's
/// segments and ends the agents below.
fn end(
    config: &AgentConfig,
    mut running: HashMap<u32, u32>,
    mut below: Vec<AgentSession>,
    heard: &Receiver<Heard>,
) {
    for (node, pid) in &running {
        if let Err(e) = clusterduck_transport::process::kill_group(*pid) {
            tracing::warn!("cannot kill node #{node} (pid {pid}): {e}");
        }
    }
    let deadline = Instant::now() + END_WAIT;
    while !running.is_empty() {
        match heard.recv_deadline(deadline) {
            Ok(Heard::Exited(node, _)) => {
                running.remove(&node);
            }
            Ok(Heard::Below(sessions)) => below = sessions,
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    "nodes {:?} did not end within {END_WAIT:?}",
                    running.keys().collect::<Vec<_>>()
                );
                break;
            }
        }
    }
    if let Err(e) = clusterduck_transport::remove_run_segments(&config.run_id) {
        tracing::warn!("removing the run's segments: {e}");
    }
    thread::scope(|scope| {
        for session in below {
            scope.spawn(move || session.close(END_WAIT));
        }
    });
}
