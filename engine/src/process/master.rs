//! The master side of process mode: the driver around the [`Supervisor`].
//! It launches (host agents over SSH, then the nodes: local ones as its
//! children, remote ones through their host's agent), feeds the supervisor
//! every fact from the control connections, its children and the clock,
//! carries out its commands, relays the debugger's records, and assembles
//! the report.

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::child::{start_node, StartError};
use super::control::{ControlPort, Incoming};
use super::hosts::{launch_agents, Agents, Answered};
use super::placement::{Placement, PlacementError};
use super::protocol::{
    encode, AgentConfig, FromAgent, NodeConfig, NodeLaunch, Predecessor, RemoteHost, ToAgent,
    ToMaster,
};
use super::remote::{AgentLauncher, HostError, Ssh};
use super::supervisor::{Backoff, Command, Event, Peer, Placed, Supervisor, Timeouts};
use crate::body::{Codec, DebugSink};
use crate::fingerprint::Fingerprint;
use crate::graph::{Graph, NodeId, NodeKind};
use crate::metrics::{Live, NodeState as LiveState, Observer, Watchers};
use crate::replica::Replicated;
use crate::report::{Failure, NodeReport, PolicyEvent, RunFailure, RunReport};
use crate::run::{new_run_id, panic_message, remove_stale_segments};
use crate::stop::{StopSignal, ABORT_GRACE};
use clusterduck_transport::auth::Secret;
use clusterduck_transport::wire::write_message;
use clusterduck_transport::ProcessStamp;

/// The environment variable that makes the master say where everything is
/// (run id, control port, placement) and when each host and node answered,
/// on its stderr.
pub const VERBOSE_ENV: &str = "CLUSTERDUCK_VERBOSE";

/// How often the master looks at the clock when nothing arrives.
const TICK: Duration = Duration::from_millis(20);
/// Facts the master takes in a row, at most, before it looks at the clock.
const BATCH: usize = 4096;
/// Silence after which a node is taken for hung, by default.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(10);
/// How many agents the master (or an agent) starts itself, by default.
pub const DEFAULT_FANOUT: usize = 32;

/// How a process-mode run is set up.
#[derive(Debug)]
pub struct ProcessRun {
    /// Where each node's `<name>.out` and `<name>.err` go.
    pub dir: PathBuf,
    /// Bytes of each node's output ring.
    pub ring_bytes: usize,
    /// Bytes of each node's space for values too large for its ring.
    pub large_bytes: usize,
    /// Values a node takes from one upstream at a time, at most.
    pub batch: usize,
    /// How long a node polls its inputs before it sleeps.
    pub spin: Duration,
    /// The nodes whose outputs go to the debugger.
    pub watched: Vec<NodeId>,
    /// Stops the run from outside.
    pub stop: StopSignal,
    /// How long hosts' agents, then nodes, may take to answer.
    pub ready_timeout: Duration,
    /// How long a node or agent may say nothing (each sends a heartbeat
    /// every 500 ms from the moment it connects) before it is taken for
    /// hung and the run fails.
    pub silence: Duration,
    /// How long a link between hosts may stay down (reconnecting) before
    /// the run fails.
    pub link_grace: Duration,
    /// The hosts (SSH destinations) to run nodes on; this machine alone if
    /// empty.
    pub hosts: Vec<String>,
    /// Explicit placements: (node, host).
    pub placements: Vec<(String, String)>,
    /// How many host agents the master starts itself; each starts its share
    /// of the rest, as a tree of this width.
    pub fanout: usize,
    /// Who watches the run while it goes (none: nodes send no figures).
    pub watchers: Watchers,
    /// Per node as declared (missing: 0): how many times its process may
    /// be restarted after it died or its function failed.
    pub restarts: Vec<u32>,
    /// The waits before restarts.
    pub backoff: Backoff,
}

/// How instances of nodes are told in the master: per instance, its node.
fn nodes_of(run: &Replicated) -> Vec<NodeId> {
    (0..run.instances().nodes().len())
        .map(|id| run.replica(id).node)
        .collect()
}

/// Why a process-mode run could not start. Nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A node's log files could not be opened.
    #[error(transparent)]
    Logs(#[from] super::logs::LogError),
    /// A node is placed on no valid host.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// Hosts cannot be used: every one of them, in the order of the hosts.
    #[error("{}", hosts_failed(.0))]
    Hosts(Vec<HostError>),
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

fn hosts_failed(errors: &[HostError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(|e| format!("  {e}")).collect();
            format!("{} hosts cannot be used:\n{}", many.len(), lines.join("\n"))
        }
    }
}

/// A running process-mode run, seen from the master.
pub struct Master {
    /// The run's instances: a node per replica.
    graph: Graph,
    /// Per instance: its node, as declared (the debugger's index).
    node_of: Vec<NodeId>,
    codecs: Vec<Arc<dyn Codec>>,
    debugger: Option<Box<dyn DebugSink>>,
    run_id: String,
    stop: StopSignal,
    supervisor: Supervisor,
    incoming: Receiver<Incoming>,
    control: Option<ControlPort>,
    node_conns: Vec<Option<TcpStream>>,
    /// The agent of each node, if it runs on another host.
    node_agent: Vec<Option<usize>>,
    agents: Agents,
    upstreams: Vec<Arc<[String]>>,
    launched: Instant,
    verbose: bool,
    /// The run as its watchers see it (taken at the end).
    observer: Option<Observer>,
    /// What a local node is started with again: its configuration (by
    /// instance), the log directory, where its exit is told.
    configs: Vec<NodeConfig>,
    dir: PathBuf,
    exits: Sender<Incoming>,
    /// Per instance: the number of the next debugger output it takes (a
    /// restarted node sends again what its predecessor sent after its
    /// last step).
    next_output: Vec<u64>,
    /// Per instance: whether a restarted process of it makes its outputs
    /// again in the same order (all but bundled workers in no order, which
    /// complete bundles as values come): only then are its repeats known
    /// by their numbers.
    replays_in_order: Vec<bool>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("run_id", &self.run_id)
            .field("nodes", &self.node_conns.len())
            .field("hosts", &self.agents.hosts.len())
            .finish_non_exhaustive()
    }
}

impl ProcessRun {
    /// Starts the hosts' agents and then every instance of every node (a
    /// process per replica), and returns the master that supervises them.
    /// `codecs` are the nodes' output codecs, in declaration order (the
    /// debugger's records are decoded with them).
    /// Every host is tried before anything starts; if any cannot be used,
    /// the error lists them all and nothing is left running.
    pub fn start(
        mut self,
        run: &Replicated,
        codecs: Vec<Arc<dyn Codec>>,
        debugger: Option<Box<dyn DebugSink>>,
    ) -> Result<Master, LaunchError> {
        crate::log::init();
        let graph = run.instances().clone();
        let node_of = nodes_of(run);
        let codecs: Vec<Arc<dyn Codec>> = node_of.iter().map(|n| codecs[*n].clone()).collect();
        let launched = Instant::now();
        let verbose = std::env::var_os(VERBOSE_ENV).is_some();
        let run_id = new_run_id().map_err(LaunchError::Control)?;
        let secret = Secret::generate().map_err(LaunchError::Control)?;
        remove_stale_segments();
        let placement = Placement::new(&graph, &self.hosts, &self.placements)?;
        let remote = remote_hosts(&placement);
        let restarts: Vec<u32> = node_of
            .iter()
            .map(|n| self.restarts.get(*n).copied().unwrap_or(0))
            .collect();
        let dir = match (remote.is_empty(), self.dir.to_str()) {
            (true, _) => String::new(),
            (false, Some(d)) if self.dir.is_absolute() => d.to_owned(),
            (false, _) => return Err(LaunchError::RemoteDir(self.dir.clone())),
        };
        // With remote hosts, the control port listens on every address:
        // each agent reaches it at the address its SSH session came from
        // (which may differ from host to host); every peer authenticates.
        let any: IpAddr = if remote.is_empty() {
            [127, 0, 0, 1].into()
        } else {
            [0, 0, 0, 0].into()
        };
        let listener = TcpListener::bind((any, 0)).map_err(LaunchError::Control)?;
        let (tx, incoming) = crossbeam_channel::unbounded();
        let n = graph.nodes().len();
        let control = ControlPort::open(listener, secret.clone(), n, remote.len(), tx.clone())
            .map_err(LaunchError::Control)?;
        if verbose {
            tracing::info!("run {run_id}: control port {}", control.address());
            for (id, spec) in graph.nodes().iter().enumerate() {
                let host = placement.host_of(id);
                tracing::info!("run {run_id}: node {} on {host}", spec.name);
            }
        }

        let template = AgentConfig {
            run_id: run_id.clone(),
            control_port: control.address().port(),
            control_host: String::new(),
            secret: *secret.as_bytes(),
            host: RemoteHost {
                index: 0,
                name: String::new(),
            },
            below: Vec::new(),
            fanout: self.fanout.max(1) as u32,
            dir,
        };
        let started = (launched, verbose);
        let (agents, answered) = self.start_agents(&remote, template, &incoming, &tx, started)?;

        let node_agent: Vec<Option<usize>> = (0..n)
            .map(|id| {
                let host = placement.host_of(id);
                remote.iter().position(|h| h.name == host)
            })
            .collect();
        let layout = Layout {
            placement,
            node_agent,
        };
        let port = control.address().port();
        let mut configs = self.node_configs(run, &layout, &answered, &run_id, &secret, port);
        for (id, config) in configs.iter_mut().enumerate() {
            config.restartable = restarts[id] > 0;
            // A restartable node's own ring keeps dead readers anyway (its
            // links' slots are its successor's).
            config.keep_readers = graph.downstreams(id).iter().any(|(c, _)| restarts[*c] > 0);
        }
        let Layout {
            placement,
            node_agent,
        } = layout;
        let supervisor = self.supervisor(&graph, &placement, &node_agent, &remote, &restarts);
        let hosts: Vec<String> = (0..n).map(|id| placement.host_of(id).to_owned()).collect();
        let live = Live::new(run, &hosts, launched);
        let observer = Observer::new(live, std::mem::take(&mut self.watchers));
        // A restarted node in no order may make its outputs again in
        // another order: its repeats are not known by their numbers.
        let replays_in_order = graph
            .nodes()
            .iter()
            .map(|s| !s.kind.bundles_in_no_order())
            .collect();
        let mut master = Master {
            // Policy events name a node's upstreams as declared.
            upstreams: node_of
                .iter()
                .map(|n| run.graph().node(*n).upstreams.clone().into())
                .collect(),
            graph,
            node_of,
            codecs,
            debugger,
            run_id,
            stop: self.stop,
            supervisor,
            incoming,
            control: Some(control),
            node_conns: (0..n).map(|_| None).collect(),
            node_agent,
            agents,
            launched,
            verbose,
            observer: Some(observer),
            configs: configs.clone(),
            dir: self.dir.clone(),
            exits: tx.clone(),
            next_output: vec![0; n],
            replays_in_order,
        };
        // If a node cannot start, dropping the master ends what started.
        master.start_nodes(configs)?;
        Ok(master)
    }

    /// Starts the agents of the `remote` hosts (none: nothing to do) and
    /// waits for their answers; a failure of any host is the launch's
    /// error, every agent started meanwhile ended.
    fn start_agents(
        &self,
        remote: &[RemoteHost],
        template: AgentConfig,
        incoming: &Receiver<Incoming>,
        tx: &Sender<Incoming>,
        (launched, verbose): (Instant, bool),
    ) -> Result<(Agents, Answered), LaunchError> {
        let mut agents = Agents {
            hosts: remote.to_vec(),
            conns: remote.iter().map(|_| None).collect(),
            sessions: Vec::new(),
        };
        if remote.is_empty() {
            return Ok((agents, Answered::none()));
        }
        let program = std::env::current_exe().map_err(LaunchError::Program)?;
        let args = std::env::args_os().skip(1).collect();
        let launcher = AgentLauncher::new(Ssh::from_env(), program, args, template);
        let limit = self.ready_timeout;
        match launch_agents(
            &launcher,
            &mut agents,
            incoming,
            tx,
            limit,
            launched,
            verbose,
        ) {
            Ok(answered) => Ok((agents, answered)),
            Err(errors) => {
                agents.close();
                Err(LaunchError::Hosts(errors))
            }
        }
    }

    /// The supervisor of the run's nodes, as placed, and of the agents of
    /// its remote hosts.
    fn supervisor(
        &self,
        graph: &Graph,
        placement: &Placement,
        node_agent: &[Option<usize>],
        remote: &[RemoteHost],
        restarts: &[u32],
    ) -> Supervisor {
        let placed = graph.nodes().iter().enumerate().map(|(id, spec)| Placed {
            name: spec.name.clone(),
            host: placement.host_of(id).to_owned(),
            agent: node_agent[id],
            spout: matches!(spec.kind, NodeKind::Spout),
            restarts: restarts[id],
        });
        let timeouts = Timeouts {
            ready: self.ready_timeout,
            silence: self.silence,
            grace: ABORT_GRACE,
            backoff: self.backoff,
        };
        let agents = remote.iter().map(|h| h.name.clone()).collect();
        Supervisor::new(placed.collect(), agents, timeouts, Instant::now())
    }

    /// Every node's configuration, by declaration index.
    fn node_configs(
        &self,
        run: &Replicated,
        Layout {
            placement,
            node_agent,
        }: &Layout,
        answered: &Answered,
        run_id: &str,
        secret: &Secret,
        control_port: u16,
    ) -> Vec<NodeConfig> {
        let graph = run.instances();
        let n = graph.nodes().len();
        // Of the topology as declared: replicas come with the configuration.
        let fingerprint = Fingerprint::of(run.graph());
        let scale = run.scale();
        (0..n)
            .map(|id| NodeConfig {
                run_id: run_id.to_owned(),
                node: id as u32,
                fingerprint: fingerprint.hash(),
                description: fingerprint.description().to_owned(),
                die_with: Some(std::process::id()),
                // A remote node's agent puts the address it reaches the
                // master at.
                control: SocketAddr::from(([127, 0, 0, 1], control_port)).to_string(),
                secret: *secret.as_bytes(),
                ring_bytes: self.ring_bytes as u64,
                large_bytes: self.large_bytes as u64,
                batch: self.batch.min(u32::MAX as usize) as u32,
                spin_ns: self.spin.as_nanos().min(u128::from(u64::MAX)) as u64,
                watched: self.watched.contains(&run.replica(id).node),
                replicas: scale.replicas.iter().map(|r| *r as u32).collect(),
                key_groups: scale.key_groups as u32,
                metrics: !self.watchers.0.is_empty(),
                restartable: false,
                predecessors: Vec::new(),
                keep_readers: false,
                link_grace_ms: self.link_grace.as_millis().min(u128::from(u64::MAX)) as u64,
                hosts: (0..n).map(|n| placement.host_of(n).to_owned()).collect(),
                bind: match node_agent[id] {
                    Some(host) => answered.address[host].clone(),
                    None => answered.here.to_string(),
                },
            })
            .collect()
    }
}

/// Where a run's nodes are.
struct Layout {
    placement: Placement,
    /// The agent (remote host index) of each node, if it runs on another
    /// host.
    node_agent: Vec<Option<usize>>,
}

/// The hosts of `placement` other than this machine, indexed in launch
/// order.
fn remote_hosts(placement: &Placement) -> Vec<RemoteHost> {
    placement
        .used_hosts()
        .into_iter()
        .filter(|h| !Placement::is_local(h))
        .enumerate()
        .map(|(index, name)| RemoteHost {
            index: index as u32,
            name: name.to_owned(),
        })
        .collect()
}

impl Master {
    /// Starts the nodes: remote ones through their agents, local ones as
    /// children of this thread (they die with it).
    fn start_nodes(&mut self, configs: Vec<NodeConfig>) -> Result<(), LaunchError> {
        let mut per_host: Vec<Vec<NodeLaunch>> =
            self.agents.hosts.iter().map(|_| Vec::new()).collect();
        let mut local = Vec::new();
        for (id, config) in configs.into_iter().enumerate() {
            let name = self.graph.node(id).name.clone();
            match self.node_agent[id] {
                Some(host) => per_host[host].push(NodeLaunch { name, config }),
                None => local.push((id, name, config)),
            }
        }
        for (host, nodes) in per_host.into_iter().enumerate() {
            if !nodes.is_empty() {
                self.agents.send(host, &ToAgent::Spawn { nodes });
            }
        }
        for (id, name, config) in local {
            self.start_local(id, &config).map_err(|e| match e {
                StartError::Logs(e) => e.into(),
                StartError::Spawn(source) => LaunchError::Spawn { node: name, source },
            })?;
        }
        Ok(())
    }

    /// Starts local node `id` with `config`, and tells the supervisor.
    fn start_local(&mut self, id: NodeId, config: &NodeConfig) -> Result<(), StartError> {
        let exits = self.exits.clone();
        let on_exit = move |cause| {
            let _ = exits.send(Incoming::Exited(id, cause));
        };
        let name = &self.graph.node(id).name;
        let pid = start_node(&self.dir, name, config, on_exit)?;
        // Read while the process cannot be reaped yet: it is a child whose
        // exit this thread has not waited for.
        let start_time = ProcessStamp::of(pid).map_or(0, |s| s.start_time);
        let spawned = Event::Spawned {
            node: id,
            pid,
            start_time,
        };
        self.supervisor.handle(Instant::now(), spawned);
        Ok(())
    }

    /// Starts node `id` again, as the successor of `predecessors` (the
    /// newest first), on its host (by its agent, for another host); a
    /// failure to start it fails the run.
    fn restart(&mut self, id: NodeId, predecessors: Vec<Predecessor>) {
        let mut config = self.configs[id].clone();
        config.predecessors = predecessors;
        if let Some(host) = self.node_agent[id] {
            let name = self.graph.node(id).name.clone();
            let nodes = vec![NodeLaunch { name, config }];
            return self.agents.send(host, &ToAgent::Spawn { nodes });
        }
        if let Err(e) = self.start_local(id, &config) {
            let failure = Failure::NotStarted {
                node: self.graph.node(id).name.clone(),
                host: "localhost".to_owned(),
                message: format!("restarting it: {e}"),
            };
            self.supervisor.handle(Instant::now(), Event::Fail(failure));
        }
    }

    /// The run's id, which names its shared-memory segments.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Supervises the run to its end and returns its report. Whatever
    /// happens, every node process has exited and every shared-memory
    /// segment of the run is removed when this returns, on every host.
    pub fn wait(mut self) -> Result<RunReport, Box<RunFailure>> {
        let mut drained = false;
        let mut aborted = false;
        loop {
            if let Ok(incoming) = self.incoming.recv_timeout(TICK) {
                self.take(incoming);
                // At most a batch before the clock and the stop signal are
                // looked at again: a flood of debugger records must not
                // hold back the run's time limits or a Ctrl-C.
                for _ in 0..BATCH {
                    let Ok(incoming) = self.incoming.try_recv() else {
                        break;
                    };
                    self.take(incoming);
                }
            }
            let now = Instant::now();
            if self.stop.is_aborted() && !aborted {
                aborted = true;
                self.supervisor.handle(now, Event::Abort);
            } else if self.stop.is_draining() && !drained {
                drained = true;
                self.supervisor.handle(now, Event::Drain);
            }
            let was_started = self.supervisor.started_at().is_some();
            self.supervisor.tick(now);
            if self.verbose && !was_started {
                if let Some(at) = self.supervisor.started_at() {
                    tracing::info!(
                        "run {}: every node ready after {:.3}s; started",
                        self.run_id,
                        at.duration_since(self.launched).as_secs_f64()
                    );
                }
            }
            self.obey();
            self.observe(|o| o.tick(now));
            if self.supervisor.is_over() {
                break;
            }
        }
        let observer = self.observer.take();
        let result = self.finish();
        if let Some(observer) = observer {
            observer.end(&result);
        }
        result
    }

    /// Hands one fact to the supervisor (or the debugger).
    fn take(&mut self, incoming: Incoming) {
        let now = Instant::now();
        let event = match incoming {
            Incoming::Connected(peer, stream) => {
                match peer {
                    Peer::Node(id) => self.node_conns[id] = Some(stream),
                    Peer::Agent(h) => self.agents.conns[h] = Some(stream),
                }
                Event::Connected(peer)
            }
            Incoming::Node(id, message) => match *message {
                ToMaster::Output { number, seq, bytes } => {
                    // A node in no order's repeats are let through: its
                    // outputs around a restart may come again (at least
                    // once), none is dropped for another's number.
                    if !self.replays_in_order[id]
                        || is_new_output(&mut self.next_output[id], number)
                    {
                        self.debug_output(now, id, seq, &bytes);
                    }
                    Event::Heard(Peer::Node(id))
                }
                ToMaster::Event { notice, upstreams } => {
                    self.debug_event(now, id, notice, upstreams);
                    Event::Heard(Peer::Node(id))
                }
                ToMaster::Metrics { sample } => {
                    self.observe(|o| o.record(id, *sample));
                    Event::Heard(Peer::Node(id))
                }
                message => Event::Message { node: id, message },
            },
            Incoming::Agent(h, message) => match self.agent_event(h, message) {
                Some(event) => event,
                None => return,
            },
            Incoming::Closed(peer, reason) => {
                match peer {
                    Peer::Node(id) => self.node_conns[id] = None,
                    Peer::Agent(h) => self.agents.conns[h] = None,
                }
                Event::Closed { peer, reason }
            }
            Incoming::Exited(node, cause) => Event::Exited { node, cause },
            Incoming::HostFailed(_) => return,
        };
        self.note_state(&event);
        self.supervisor.handle(now, event);
    }

    fn observe(&mut self, f: impl FnOnce(&mut Observer)) {
        if let Some(observer) = &mut self.observer {
            f(observer);
        }
    }

    /// What `event` says of a node's state, for the watchers.
    fn note_state(&mut self, event: &Event) {
        let (node, state, error) = match event {
            Event::Message { node, message } => match message {
                ToMaster::Done { .. } => (*node, LiveState::Done, None),
                ToMaster::Failed { failure, .. } => {
                    (*node, LiveState::Failed, Some(failure.to_string()))
                }
                _ => return,
            },
            Event::Exited { node, cause } => (*node, LiveState::Dead, Some(cause.to_string())),
            Event::NotStarted { node, message } => (*node, LiveState::Dead, Some(message.clone())),
            _ => return,
        };
        self.observe(|o| o.set_state(node, state, error));
    }

    /// What an agent's message means for the supervisor; a message about a
    /// node that is not on its host is refused.
    fn agent_event(&mut self, h: usize, message: FromAgent) -> Option<Event> {
        let host = &self.agents.hosts[h].name;
        let mine = |node: u32| -> Option<NodeId> {
            let id = node as NodeId;
            if self.node_agent.get(id).copied().flatten() == Some(h) {
                Some(id)
            } else {
                tracing::warn!(
                    "the agent of host {host} spoke of node #{node}, not on its host; ignored"
                );
                None
            }
        };
        Some(match message {
            FromAgent::Hello { .. } | FromAgent::Heartbeat => Event::Heard(Peer::Agent(h)),
            FromAgent::Spawned {
                node,
                pid,
                start_time,
            } => Event::Spawned {
                node: mine(node)?,
                pid,
                start_time,
            },
            FromAgent::Exited { node, cause } => Event::Exited {
                node: mine(node)?,
                cause,
            },
            FromAgent::NotSpawned { node, message } => Event::NotStarted {
                node: mine(node)?,
                message,
            },
            FromAgent::HostFailed { error } => Event::Fail(Failure::HostLost {
                host: error.host().to_owned(),
                message: format!("after the launch: {error}"),
            }),
        })
    }

    fn debug_output(&mut self, now: Instant, id: NodeId, seq: crate::Seq, bytes: &[u8]) {
        let node = self.node_of[id];
        let value = match self.codecs[id].decode(bytes) {
            Ok(value) => value,
            Err(e) => {
                let failure = Failure::Control {
                    node: self.graph.node(id).name.clone(),
                    message: format!("bad debugger record for seq {seq}: {e}"),
                };
                return self.supervisor.handle(now, Event::Fail(failure));
            }
        };
        if let Some(debugger) = &mut self.debugger {
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                debugger.output(node, seq, value)
            }));
            if let Err(panic) = called {
                let failure = Failure::Debugger {
                    message: panic_message(&*panic),
                };
                self.supervisor.handle(now, Event::Fail(failure));
            }
        }
    }

    fn debug_event(
        &mut self,
        now: Instant,
        id: NodeId,
        notice: crate::bundle::Notice,
        named: Vec<String>,
    ) {
        let name = self.graph.node(id).name.clone();
        // The node names a replicated upstream by the replica a bundle
        // waits for; one name per upstream, or the declared ones.
        let upstreams: Arc<[String]> = if named.len() == self.upstreams[id].len() {
            named.into()
        } else {
            self.upstreams[id].clone()
        };
        if !notice_fits(&notice, upstreams.len()) {
            let failure = Failure::Control {
                node: name,
                message: format!("bad policy event {notice:?}"),
            };
            return self.supervisor.handle(now, Event::Fail(failure));
        }
        let event = PolicyEvent {
            node: name,
            notice,
            upstreams,
        };
        self.tell_event(now, &event);
    }

    /// Hands `event` to the user's `on_event`, if any; a panic there fails
    /// the run.
    fn tell_event(&mut self, now: Instant, event: &PolicyEvent) {
        if let Some(debugger) = &mut self.debugger {
            let called =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| debugger.event(event)));
            if let Err(panic) = called {
                let failure = Failure::Debugger {
                    message: panic_message(&*panic),
                };
                self.supervisor.handle(now, Event::Fail(failure));
            }
        }
    }

    /// Carries out the supervisor's commands.
    fn obey(&mut self) {
        while let Some(command) = self.supervisor.poll_command() {
            match command {
                Command::Send { node, message } => {
                    if let Some(conn) = &mut self.node_conns[node] {
                        // A node that cannot be told is gone; its
                        // connection's end or its exit says so.
                        let _ = write_message(conn, &encode(&message));
                    }
                }
                Command::Kill { node } => match self.node_agent[node] {
                    Some(host) => self.agents.send(host, &ToAgent::Kill { node: node as u32 }),
                    None => {
                        if let Some(pid) = self.supervisor.pid(node) {
                            if let Err(e) = clusterduck_transport::process::kill_group(pid) {
                                tracing::warn!(
                                    "cannot kill node {} (pid {pid}): {e}",
                                    self.graph.node(node).name
                                );
                            }
                        }
                    }
                },
                Command::Restart {
                    node,
                    predecessors,
                    restart,
                    restarts,
                    cause,
                } => {
                    let event = PolicyEvent {
                        node: self.graph.node(node).name.clone(),
                        notice: crate::bundle::Notice::Restarted {
                            restart,
                            restarts,
                            cause: cause.clone(),
                        },
                        upstreams: self.upstreams[node].clone(),
                    };
                    self.tell_event(Instant::now(), &event);
                    self.observe(|o| o.restarting(node, cause));
                    self.restart(node, predecessors);
                }
                Command::Warn(warning) => tracing::warn!("{warning}"),
            }
        }
    }

    fn finish(mut self) -> Result<RunReport, Box<RunFailure>> {
        drop(self.control.take());
        for conn in self.node_conns.iter_mut().filter_map(Option::take) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.agents.close();
        if let Err(e) = clusterduck_transport::remove_run_segments(&self.run_id) {
            tracing::warn!("removing the run's segments: {e}");
        }
        let launch = self
            .supervisor
            .started_at()
            .map(|at| at.duration_since(self.launched));
        let outcome = self.supervisor.outcome();
        let nodes = outcome
            .nodes
            .into_iter()
            .zip(self.graph.nodes())
            .map(|((report, cause), spec)| {
                report.unwrap_or_else(|| NodeReport {
                    name: spec.name.clone(),
                    kind: spec.kind.label().to_owned(),
                    error: Some(format!(
                        "no report: {}",
                        cause.map_or_else(|| "its end was not seen".to_owned(), |c| c.to_string())
                    )),
                    ..NodeReport::default()
                })
            })
            .collect();
        let report = RunReport {
            nodes,
            elapsed: self.launched.elapsed(),
            launch,
            drained_on_request: self.stop.drain_requested(),
        };
        match outcome.failure {
            Some(failure) => Err(Box::new(RunFailure { failure, report })),
            None if outcome.aborted => Err(Box::new(RunFailure {
                failure: Failure::Aborted,
                report,
            })),
            None => Ok(report),
        }
    }
}

/// Whether output `number` of a watched node is one the debugger has not
/// had (`next`: the number after the last it had, moved on): a restarted
/// node sends again what its predecessor sent after its last step, and
/// those repeats are dropped.
fn is_new_output(next: &mut u64, number: u64) -> bool {
    let new = number >= *next;
    if new {
        *next = number + 1;
    }
    new
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
        // The master's own, never a node's.
        Restarted { .. } => false,
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // A master dropped without `wait` (a panic) leaves no node behind:
        // its children are killed, and its agents end theirs when their
        // connections close.
        for node in 0..self.node_agent.len() {
            if let (None, Some(pid), true) = (
                self.node_agent[node],
                self.supervisor.pid(node),
                self.supervisor.may_run(node),
            ) {
                let _ = clusterduck_transport::process::kill_group(pid);
            }
        }
        self.agents.close();
        // A launch that failed half-way, or a panic: the segments its local
        // nodes made go too (the agents remove their hosts').
        if let Err(e) = clusterduck_transport::remove_run_segments(&self.run_id) {
            tracing::warn!("removing the run's segments: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_new_output;

    #[test]
    fn a_restarted_nodes_repeats_are_not_new_outputs() {
        let mut next = 0;
        let first: Vec<bool> = (0..5).map(|n| is_new_output(&mut next, n)).collect();
        assert_eq!(first, [true; 5]);
        // The successor goes on from its predecessor's last step, 3: its
        // outputs 3 and 4 were had, 5 and 6 are new.
        let again: Vec<bool> = (3..7).map(|n| is_new_output(&mut next, n)).collect();
        assert_eq!(again, [false, false, true, true]);
        assert_eq!(next, 7);
    }
}
