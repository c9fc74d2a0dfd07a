//! The master side of process mode: start one process per node, supervise
//! them, relay the debugger's records, and assemble the report.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rkyv::util::AlignedVec;

use super::logs;
use super::node::NODE_ENV;
use super::placement::{Placement, PlacementError};
use super::protocol::{decode, encode, NodeConfig, ToMaster, ToNode};
use super::remote::{local_address_towards, HostError, RemoteNode, Ssh};
use crate::body::{Codec, DebugSink};
use crate::fingerprint::Fingerprint;
use crate::graph::{Graph, NodeId};
use crate::report::{Failure, NodeReport, PolicyEvent, RunFailure, RunReport};
use crate::run::{panic_message, RunControl};
use crate::stop::{StopSignal, ABORT_GRACE};
use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::wire::{read_message, write_message, WireError};

/// The environment variable that makes the master say where everything is
/// (run id, control port, placement) on its stderr.
pub const VERBOSE_ENV: &str = "CLUSTERDUCK_VERBOSE";

/// How often the master looks at its children when nothing arrives.
const POLL: Duration = Duration::from_millis(20);
/// Silence after which a node is taken for hung, by default.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(10);

/// How a process-mode run is set up.
#[derive(Debug)]
pub struct ProcessRun {
    /// Where each node's `<name>.out` and `<name>.err` go.
    pub dir: PathBuf,
    /// Bytes of each node's output ring.
    pub ring_bytes: usize,
    /// Values a node takes from one upstream at a time, at most.
    pub batch: usize,
    /// How long a node polls its inputs before it sleeps.
    pub spin: Duration,
    /// The nodes whose outputs go to the debugger.
    pub watched: Vec<NodeId>,
    /// Stops the run from outside.
    pub stop: StopSignal,
    /// How long nodes may take to report ready.
    pub ready_timeout: Duration,
    /// How long a node may say nothing (it sends a heartbeat every 500 ms)
    /// before it is taken for hung and the run fails.
    pub silence: Duration,
    /// The hosts (SSH destinations) to run nodes on; this machine alone if
    /// empty.
    pub hosts: Vec<String>,
    /// Explicit placements: (node, host).
    pub placements: Vec<(String, String)>,
}

/// Why a process-mode run could not start. Nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A node's log files could not be opened.
    #[error(transparent)]
    Logs(#[from] logs::LogError),
    /// A node is placed on no valid host.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A host cannot be used.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The log directory is not an absolute path that a remote shell can
    /// use.
    #[error("the log directory {0} must be an absolute UTF-8 path to run nodes on other hosts")]
    RemoteDir(PathBuf),
    /// The control port could not be opened.
    #[error("cannot open the control port: {0}")]
    Control(#[source] io::Error),
    /// This program's path could not be found, to start the nodes.
    #[error("cannot find this program to start its nodes: {0}")]
    Program(#[source] io::Error),
    /// A node's process could not be started.
    #[error("cannot start node {node}: {source}")]
    Spawn {
        /// The node.
        node: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// A message from a node's connection thread.
enum Incoming {
    /// The pid of a node on another host, as its remote shell started it
    /// (before the node itself says it).
    Started(u32),
    Connected(TcpStream),
    Message(Box<ToMaster>),
    Closed(String),
}

/// A running process-mode run, seen from the master.
pub struct Master {
    graph: Graph,
    codecs: Vec<Arc<dyn Codec>>,
    debugger: Option<Box<dyn DebugSink>>,
    run_id: String,
    control: Arc<RunControl>,
    ready_timeout: Duration,
    silence: Duration,
    ssh: Ssh,
    started_at: Instant,
    nodes: Vec<NodeState>,
    incoming: Receiver<(NodeId, Incoming)>,
    accepting: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("run_id", &self.run_id)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

struct NodeState {
    name: String,
    host: String,
    /// The address of the node's data port, once ready (empty: none).
    data: String,
    /// The node's own pid, once it said (its host may be another machine,
    /// where the local child is `ssh`).
    pid: Option<u32>,
    child: Child,
    exit: Option<ExitStatus>,
    /// The connection's sending half, once authenticated.
    conn: Option<TcpStream>,
    connected: bool,
    closed: bool,
    ready: bool,
    report: Option<NodeReport>,
    heard: Instant,
    upstreams: Arc<[String]>,
}

impl ProcessRun {
    /// Opens the logs, starts one process per node and returns the master
    /// that supervises them. `codecs` are the nodes' output codecs, in
    /// declaration order (the debugger's records are decoded with them).
    pub fn start(
        self,
        graph: Graph,
        codecs: Vec<Arc<dyn Codec>>,
        debugger: Option<Box<dyn DebugSink>>,
    ) -> Result<Master, LaunchError> {
        let run_id = new_run_id().map_err(LaunchError::Control)?;
        let secret = Secret::generate().map_err(LaunchError::Control)?;
        match clusterduck_transport::remove_stale_segments() {
            Ok(stale) => {
                for segment in stale {
                    eprintln!("clusterduck: stale shared-memory segment: {segment}");
                }
            }
            Err(e) => eprintln!("clusterduck: cannot look for stale segments: {e}"),
        }
        let placement = Placement::new(&graph, &self.hosts, &self.placements)?;
        let program = std::env::current_exe().map_err(LaunchError::Program)?;
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let ssh = Ssh::from_env();
        let remote_hosts: Vec<String> = placement
            .used_hosts()
            .into_iter()
            .filter(|h| !Placement::is_local(h))
            .map(str::to_owned)
            .collect();
        let remote_dir = match (remote_hosts.is_empty(), self.dir.to_str()) {
            (true, _) => String::new(),
            (false, Some(d)) if self.dir.is_absolute() => d.to_owned(),
            (false, _) => return Err(LaunchError::RemoteDir(self.dir.clone())),
        };
        // Every remote host answers, accepts us, and has this binary: all
        // checked before any node starts.
        let mut shipped = std::collections::HashMap::new();
        let mut addresses = std::collections::HashMap::new();
        let mut control_ip: std::net::IpAddr = [127, 0, 0, 1].into();
        for (i, host) in remote_hosts.iter().enumerate() {
            let address = ssh.address_of(host)?;
            if i == 0 {
                control_ip = local_address_towards(address).map_err(LaunchError::Control)?;
            }
            shipped.insert(host.clone(), ssh.ship(host, &program, &remote_dir)?);
            addresses.insert(host.clone(), address);
        }
        let mut logs = Vec::with_capacity(graph.nodes().len());
        for (id, spec) in graph.nodes().iter().enumerate() {
            logs.push(if Placement::is_local(placement.host_of(id)) {
                Some(logs::open(&self.dir, &spec.name, &run_id)?)
            } else {
                None
            });
        }
        let listener = TcpListener::bind((control_ip, 0)).map_err(LaunchError::Control)?;
        let address = listener.local_addr().map_err(LaunchError::Control)?;
        let fingerprint = Fingerprint::of(&graph);
        if std::env::var_os(VERBOSE_ENV).is_some() {
            eprintln!("clusterduck: run {run_id}: control port {address}");
            for (id, spec) in graph.nodes().iter().enumerate() {
                eprintln!(
                    "clusterduck: run {run_id}: node {} on {}",
                    spec.name,
                    placement.host_of(id)
                );
            }
        }

        let (tx, incoming) = crossbeam_channel::unbounded();
        let mut nodes: Vec<NodeState> = Vec::with_capacity(graph.nodes().len());
        for (id, (spec, files)) in graph.nodes().iter().zip(logs).enumerate() {
            let host = placement.host_of(id).to_owned();
            let config = NodeConfig {
                run_id: run_id.clone(),
                node: id as u32,
                fingerprint: fingerprint.hash(),
                description: fingerprint.description().to_owned(),
                die_with: files.is_some().then(std::process::id),
                control: address.to_string(),
                secret: *secret.as_bytes(),
                ring_bytes: self.ring_bytes as u64,
                batch: self.batch.min(u32::MAX as usize) as u32,
                spin_ns: self.spin.as_nanos().min(u128::from(u64::MAX)) as u64,
                watched: self.watched.contains(&id),
                hosts: (0..graph.nodes().len())
                    .map(|n| placement.host_of(n).to_owned())
                    .collect(),
                bind: if Placement::is_local(&host) {
                    control_ip.to_string()
                } else {
                    addresses[&host].to_string()
                },
            };
            let spawned = match files {
                Some((out, err)) => Command::new(&program)
                    .args(&args)
                    .env(NODE_ENV, &spec.name)
                    .stdin(Stdio::piped())
                    .stdout(out)
                    .stderr(err)
                    // Its own process group: Ctrl-C at the terminal reaches
                    // the master only, which drains the run in order.
                    .process_group(0)
                    .spawn(),
                None => ssh.spawn_node(&RemoteNode {
                    host: &host,
                    program: &shipped[&host],
                    args: &args,
                    dir: &remote_dir,
                    name: &spec.name,
                    header: &logs::header(&run_id, &spec.name),
                }),
            }
            .and_then(|mut child| {
                let mut stdin = child.stdin.take().expect("piped stdin");
                match stdin.write_all(&encode(&config)) {
                    Ok(()) => Ok(child),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        Err(e)
                    }
                }
            });
            let child = match spawned {
                Ok(mut child) => {
                    if let Some(out) = child.stdout.take() {
                        watch_remote_start(id, out, tx.clone());
                    }
                    child
                }
                Err(source) => {
                    for node in &mut nodes {
                        let _ = node.child.kill();
                        let _ = node.child.wait();
                    }
                    return Err(LaunchError::Spawn {
                        node: spec.name.clone(),
                        source,
                    });
                }
            };
            nodes.push(NodeState {
                name: spec.name.clone(),
                host,
                data: String::new(),
                pid: None,
                child,
                exit: None,
                conn: None,
                connected: false,
                closed: false,
                ready: false,
                report: None,
                heard: Instant::now(),
                upstreams: spec.upstreams.clone().into(),
            });
        }

        let accepting = Arc::new(AtomicBool::new(true));
        let acceptor = accept_loop(listener, secret, nodes.len(), tx, accepting.clone())
            .map_err(LaunchError::Control)?;
        Ok(Master {
            graph,
            codecs,
            debugger,
            run_id,
            control: RunControl::new(self.stop),
            ready_timeout: self.ready_timeout,
            silence: self.silence,
            ssh,
            started_at: Instant::now(),
            nodes,
            incoming,
            accepting,
            acceptor: Some(acceptor),
        })
    }
}

/// Reads the pid a remote node's shell prints when it has started it, and
/// passes it on: the master can then kill a node that never connects.
fn watch_remote_start(id: NodeId, out: std::process::ChildStdout, tx: Sender<(NodeId, Incoming)>) {
    let _ = thread::Builder::new()
        .name("clusterduck-remote-pid".into())
        .spawn(move || {
            let mut line = String::new();
            let _ = io::BufRead::read_line(&mut io::BufReader::new(out), &mut line);
            if let Ok(pid) = line.trim().parse() {
                let _ = tx.send((id, Incoming::Started(pid)));
            }
        });
}

/// A random run id: 16 hex digits.
fn new_run_id() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    auth::random(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Accepts control connections until told to stop; each authenticated one
/// gets a thread that forwards its messages.
fn accept_loop(
    listener: TcpListener,
    secret: Secret,
    nodes: usize,
    tx: Sender<(NodeId, Incoming)>,
    accepting: Arc<AtomicBool>,
) -> io::Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    thread::Builder::new()
        .name("clusterduck-accept".into())
        .spawn(move || {
            // Relaxed: a flag polled; nothing else is published with it.
            while accepting.load(Ordering::Relaxed) {
                let (stream, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(POLL);
                        continue;
                    }
                    Err(e) => {
                        eprintln!("clusterduck: control port: {e}");
                        thread::sleep(POLL);
                        continue;
                    }
                };
                let secret = secret.clone();
                let tx = tx.clone();
                let _ = thread::Builder::new()
                    .name("clusterduck-conn".into())
                    .spawn(move || serve(stream, peer, secret, nodes, tx));
            }
        })
}

/// Authenticates one control connection, then forwards its messages.
fn serve(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    secret: Secret,
    nodes: usize,
    tx: Sender<(NodeId, Incoming)>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let id = match auth::accept(&mut stream, &secret) {
        Ok(id) if (id as usize) < nodes => id as NodeId,
        Ok(id) => {
            eprintln!("clusterduck: control connection from {peer} refused: no node #{id}");
            return;
        }
        Err(e) => {
            eprintln!("clusterduck: control connection from {peer} refused: {e}");
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    match stream.try_clone() {
        Ok(writer) => {
            if tx.send((id, Incoming::Connected(writer))).is_err() {
                return;
            }
        }
        Err(e) => {
            let _ = tx.send((id, Incoming::Closed(e.to_string())));
            return;
        }
    }
    let mut buf = AlignedVec::new();
    let mut stream = io::BufReader::with_capacity(1 << 16, stream);
    let closed = loop {
        match read_message(&mut stream, &mut buf) {
            Ok(()) => match decode::<ToMaster>(&buf) {
                Ok(message) => {
                    if tx.send((id, Incoming::Message(Box::new(message)))).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("bad message: {e}"),
            },
            Err(WireError::Closed) => break "closed".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    let _ = tx.send((id, Incoming::Closed(closed)));
}

impl Master {
    /// The run's id, which names its shared-memory segments.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The process ids of the nodes, in declaration order.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// Supervises the run to its end and returns its report. Whatever
    /// happens, every node process has exited and every shared-memory
    /// segment of the run is removed when this returns.
    pub fn wait(mut self) -> Result<RunReport, Box<RunFailure>> {
        let mut started = false;
        let mut drained = false;
        let mut abort_deadline: Option<Instant> = None;
        let mut killed = false;
        loop {
            match self.incoming.recv_timeout(POLL) {
                Ok((id, incoming)) => self.receive(id, incoming),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
            }
            while let Ok((id, incoming)) = self.incoming.try_recv() {
                self.receive(id, incoming);
            }
            self.reap();
            let stop = self.control.stop.clone();
            if stop.is_aborted() {
                if abort_deadline.is_none() {
                    self.broadcast(&ToNode::Abort);
                    abort_deadline = Some(Instant::now() + ABORT_GRACE);
                }
            } else if stop.is_draining() && !drained {
                self.broadcast(&ToNode::Drain);
                drained = true;
            }
            if !started && !stop.is_aborted() {
                if self.nodes.iter().all(|n| n.ready) {
                    let data = self.nodes.iter().map(|n| n.data.clone()).collect();
                    self.broadcast(&ToNode::Start { data });
                    started = true;
                } else if self.started_at.elapsed() > self.ready_timeout {
                    let late = self
                        .nodes
                        .iter()
                        .find(|n| !n.ready)
                        .expect("a node not ready");
                    self.control.fail(Failure::NotReady {
                        node: late.name.clone(),
                        host: late.host.clone(),
                        seconds: self.ready_timeout.as_secs(),
                    });
                }
            }
            if started && !stop.is_aborted() {
                if let Some(silent) = self
                    .nodes
                    .iter()
                    .find(|n| n.connected && !n.closed && n.heard.elapsed() > self.silence)
                {
                    self.control.fail(Failure::Control {
                        node: silent.name.clone(),
                        message: format!("no word for {}s", self.silence.as_secs()),
                    });
                }
            }
            if self.nodes.iter().all(|n| n.exit.is_some()) {
                break;
            }
            if !killed && abort_deadline.is_some_and(|d| Instant::now() > d) {
                killed = true;
                self.kill_remaining();
            }
        }
        self.finish()
    }

    fn receive(&mut self, id: NodeId, incoming: Incoming) {
        let node = &mut self.nodes[id];
        node.heard = Instant::now();
        match incoming {
            Incoming::Started(pid) => {
                node.pid.get_or_insert(pid);
            }
            Incoming::Connected(stream) => {
                if node.connected {
                    eprintln!(
                        "clusterduck: a second control connection for node {} refused",
                        node.name
                    );
                    return;
                }
                node.connected = true;
                node.conn = Some(stream);
                let stop = &self.control.stop;
                if stop.is_aborted() {
                    self.send(id, &ToNode::Abort);
                } else if stop.is_draining() {
                    self.send(id, &ToNode::Drain);
                }
            }
            Incoming::Closed(reason) => {
                node.closed = true;
                node.conn = None;
                if reason != "closed" && !self.control.stop.is_aborted() && node.report.is_none() {
                    eprintln!(
                        "clusterduck: control connection of node {}: {reason}",
                        node.name
                    );
                }
            }
            Incoming::Message(message) => self.handle(id, *message),
        }
    }

    fn handle(&mut self, id: NodeId, message: ToMaster) {
        let name = self.nodes[id].name.clone();
        match message {
            ToMaster::Ready { pid, data } => {
                self.nodes[id].ready = true;
                self.nodes[id].pid = Some(pid);
                self.nodes[id].data = data;
            }
            ToMaster::Heartbeat => {}
            ToMaster::Refused { reason } => {
                self.control.fail(Failure::Refused { node: name, reason })
            }
            ToMaster::Output { seq, bytes } => {
                let value = match self.codecs[id].decode(&bytes) {
                    Ok(value) => value,
                    Err(e) => {
                        return self.control.fail(Failure::Control {
                            node: name,
                            message: format!("bad debugger record for seq {seq}: {e}"),
                        })
                    }
                };
                if let Some(debugger) = &mut self.debugger {
                    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        debugger.output(id, seq, value)
                    }));
                    if let Err(panic) = called {
                        self.control.fail(Failure::Debugger {
                            message: panic_message(&*panic),
                        });
                    }
                }
            }
            ToMaster::Event { notice } => {
                let upstreams = self.nodes[id].upstreams.clone();
                if !notice_fits(&notice, upstreams.len()) {
                    return self.control.fail(Failure::Control {
                        node: name,
                        message: format!("bad policy event {notice:?}"),
                    });
                }
                if let Some(debugger) = &mut self.debugger {
                    let event = PolicyEvent {
                        node: name,
                        notice,
                        upstreams,
                    };
                    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        debugger.event(&event)
                    }));
                    if let Err(panic) = called {
                        self.control.fail(Failure::Debugger {
                            message: panic_message(&*panic),
                        });
                    }
                }
            }
            ToMaster::Done { report } => self.nodes[id].report = Some(report),
            ToMaster::Failed { failure, report } => {
                self.nodes[id].report = Some(report);
                self.control.fail(failure);
            }
        }
    }

    /// Notes the nodes whose process ended; one that ended without its
    /// report (and whose connection is closed, so no report is in flight)
    /// died.
    fn reap(&mut self) {
        for node in &mut self.nodes {
            if node.exit.is_none() {
                if let Ok(Some(status)) = node.child.try_wait() {
                    node.exit = Some(status);
                }
            }
        }
        if self.control.stop.is_aborted() {
            return;
        }
        let died = self
            .nodes
            .iter()
            .find(|n| n.exit.is_some() && (n.closed || !n.connected) && n.report.is_none());
        if let Some(node) = died {
            let status = node.exit.expect("exited");
            let local = Placement::is_local(&node.host);
            self.control.fail(Failure::Died {
                node: node.name.clone(),
                host: node.host.clone(),
                pid: node.pid.unwrap_or_else(|| node.child.id()),
                cause: if local {
                    describe_exit(status)
                } else {
                    describe_remote_exit(status)
                },
            });
        }
    }

    /// Kills the nodes still running after the abort grace: a local node's
    /// process, and for a node on another host its ssh and, by its pid, the
    /// node itself (a stopped node outlives its ssh session).
    fn kill_remaining(&mut self) {
        let mut remote_kills = Vec::new();
        for node in self.nodes.iter_mut().filter(|n| n.exit.is_none()) {
            let _ = node.child.kill();
            if let (false, Some(pid)) = (Placement::is_local(&node.host), node.pid) {
                match self.ssh.kill_node(&node.host, pid) {
                    Ok(kill) => remote_kills.push(kill),
                    Err(e) => eprintln!(
                        "clusterduck: cannot kill node {} (pid {pid}) on host {}: {e}",
                        node.name, node.host
                    ),
                }
            }
        }
        for mut kill in remote_kills {
            let _ = kill.wait();
        }
    }

    fn send(&mut self, id: NodeId, message: &ToNode) {
        if let Some(conn) = &mut self.nodes[id].conn {
            // A node that cannot be told is gone; `reap` sees to it.
            let _ = write_message(conn, &encode(message));
        }
    }

    fn broadcast(&mut self, message: &ToNode) {
        for id in 0..self.nodes.len() {
            self.send(id, message);
        }
    }

    fn finish(mut self) -> Result<RunReport, Box<RunFailure>> {
        // Relaxed: as in `accept_loop`.
        self.accepting.store(false, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Late messages (a report sent just before exiting).
        while let Ok((id, incoming)) = self.incoming.try_recv() {
            self.receive(id, incoming);
        }
        if let Err(e) = clusterduck_transport::remove_run_segments(&self.run_id) {
            eprintln!("clusterduck: removing the run's segments: {e}");
        }
        let nodes = self
            .nodes
            .iter()
            .zip(self.graph.nodes())
            .map(|(node, spec)| {
                node.report.clone().unwrap_or_else(|| NodeReport {
                    name: node.name.clone(),
                    kind: spec.kind.label().to_owned(),
                    error: Some(format!(
                        "no report: {}",
                        node.exit
                            .map(describe_exit)
                            .unwrap_or_else(|| "still running".into())
                    )),
                    ..NodeReport::default()
                })
            })
            .collect();
        let report = RunReport {
            nodes,
            elapsed: self.started_at.elapsed(),
            drained_on_request: self.control.stop.drain_requested(),
        };
        match self.control.take_failure() {
            Some(failure) => Err(Box::new(RunFailure { failure, report })),
            None if self.control.stop.is_aborted() => Err(Box::new(RunFailure {
                failure: Failure::Aborted,
                report,
            })),
            None => Ok(report),
        }
    }
}

/// Whether the upstream indexes of `notice` name upstreams of the node.
fn notice_fits(notice: &crate::bundle::Notice, upstreams: usize) -> bool {
    use crate::bundle::Notice::*;
    match notice {
        Duplicate { upstream, .. } | Late { upstream, .. } | Overflow { upstream, .. } => {
            *upstream < upstreams
        }
        Gap { missing, .. } | Evicted { missing, .. } | Incomplete { missing, .. } => {
            missing.iter().all(|u| *u < upstreams)
        }
    }
}

/// `killed by signal 9 (SIGKILL)` or `exited with status 1`.
fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
        (None, None) => format!("ended: {status}"),
    }
}

/// How a node on another host ended, from the exit status of its `ssh`:
/// the remote shell reports a signal as 128 + its number; ssh's own
/// failures are 255.
fn describe_remote_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(255) => "its ssh connection failed (status 255)".to_owned(),
        Some(code) if code > 128 => {
            let signal = code - 128;
            format!("killed by signal {signal}{}", signal_name(signal))
        }
        _ => describe_exit(status),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        3 => " (SIGQUIT)",
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // A master dropped without `wait` (a panic) leaves no node behind.
        for node in self.nodes.iter_mut().filter(|n| n.exit.is_none()) {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        // Relaxed: as in `accept_loop`.
        self.accepting.store(false, Ordering::Relaxed);
    }
}
