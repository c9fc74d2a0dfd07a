//! The supervision of a process-mode run, without I/O: facts go in (a node
//! started, connected, said something, exited; an agent spoke or went
//! silent; the time), commands come out (send this to that node, kill that
//! one, warn). The drivers around it (`master.rs` for the control
//! connections and local children, `agent.rs` on other hosts) own every
//! socket, process and clock; this file owns every decision, and its tests
//! drive it directly, with made-up times.
//!
//! A node's life is one [`NodeState`]. Its process and its control
//! connection end separately and in either order, so the states say which of
//! the two is over: a node is judged only once both are (or once it sent
//! its report), so that a report still in flight is never taken for a
//! death.
//!
//! Silence is counted from the last message of a node or an agent, from the
//! moment its connection opens, whatever the run is doing: a slow launch
//! cannot make a node that is waiting for `Start` look hung.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::exit::ExitCause;
use super::protocol::{Predecessor, ToMaster, ToNode};
use crate::graph::NodeId;
use crate::report::{Failure, NodeReport, Restart};

/// How long a process that exited without ever connecting may still have a
/// connection in the accept queue: its report, or its refusal, may be
/// behind it.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// The waits before a node's restarts: the first restart is at once (a
/// node killed once, by a stray `kill` or the OOM killer, comes back
/// without delay); the second waits `first`, each later one twice as long
/// as the one before, up to `max` (one that keeps dying is not restarted
/// in a tight loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the second restart.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before restart number `restart` (0 for the first).
    pub fn wait(&self, restart: usize) -> Duration {
        match restart {
            0 => Duration::ZERO,
            n => self
                .first
                .saturating_mul(1 << (n - 1).min(16))
                .min(self.max),
        }
    }
}

/// Who is at the other end of a control connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    /// A node, by declaration index.
    Node(NodeId),
    /// The agent of a remote host, by index among the run's remote hosts.
    Agent(usize),
}

/// The time limits of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// How long every node may take to report ready.
    pub(crate) ready: Duration,
    /// How long a node or agent may say nothing.
    pub(crate) silence: Duration,
    /// How long nodes may take to stop after an abort before they are
    /// killed, and then to be seen gone before they are given up.
    pub(crate) grace: Duration,
    /// The waits before restarts.
    pub(crate) backoff: Backoff,
}

/// What the supervisor is told.
#[derive(Debug)]
pub(crate) enum Event {
    /// A node's process runs, with this pid and start time (0 if not
    /// known; see `ProcessStamp`).
    Spawned {
        node: NodeId,
        pid: u32,
        start_time: u64,
    },
    /// A control connection authenticated.
    Connected(Peer),
    /// A node said something about its life (ready, refused, heartbeat,
    /// report). Debugger traffic goes to [`Event::Heard`].
    Message { node: NodeId, message: ToMaster },
    /// A peer said something that does not concern supervision.
    Heard(Peer),
    /// A control connection closed: cleanly (`None`), or why not.
    Closed { peer: Peer, reason: Option<String> },
    /// A node's process could not be started (by its agent).
    NotStarted { node: NodeId, message: String },
    /// A node's process ended (seen by `waitpid`, here or by its agent).
    Exited { node: NodeId, cause: ExitCause },
    /// The user asked the run to drain.
    Drain,
    /// The user asked the run to stop now.
    Abort,
    /// Something outside the nodes failed the run (the debugger, an agent's
    /// report).
    Fail(Failure),
}

/// What the supervisor asks its driver to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Send a message on a node's control connection.
    Send { node: NodeId, message: ToNode },
    /// Kill a node's process (where it runs: a child, or through its
    /// host's agent).
    Kill { node: NodeId },
    /// Start a node's process again (where it ran), as the successor of
    /// `predecessors` (every process that ran it, the newest first; the
    /// newest ended so: `cause`).
    Restart {
        node: NodeId,
        predecessors: Vec<Predecessor>,
        /// Which restart this is (1 for the first), of how many allowed.
        restart: u32,
        restarts: u32,
        cause: String,
    },
    /// Say this on the master's stderr.
    Warn(String),
}

/// Where a node is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Its process was started; it has not connected yet.
    Starting,
    /// Connected, not ready yet.
    Connected,
    /// Its output ring exists; it waits for `Start`. `data` is its data
    /// port's address (empty if it has no consumer on another host).
    Ready { data: String },
    /// It was told to start.
    Running,
    /// It sent its report; its process has not been seen to exit yet.
    Reported,
    /// Its connection closed without a report; its process has not been
    /// seen to exit yet.
    Cut,
    /// Its process exited while its connection was open: its report may
    /// still be on the way.
    Exiting { cause: ExitCause },
    /// Its process exited before its connection was seen (which may still
    /// be in the accept queue, until `since + LINGER`).
    ExitedUnseen { cause: ExitCause, since: Instant },
    /// Its process ended and it will be started again at `at` (its
    /// restarts allow it).
    Restarting { at: Instant },
    /// Over: its process ended (`cause`, if known) and nothing more will
    /// come from it.
    Ended { cause: Option<ExitCause> },
}

impl NodeState {
    /// Whether its control connection is open.
    fn is_connected(&self) -> bool {
        matches!(
            self,
            Self::Connected | Self::Ready { .. } | Self::Running | Self::Exiting { .. }
        )
    }

    /// Whether its process may still run.
    fn may_run(&self) -> bool {
        matches!(
            self,
            Self::Starting
                | Self::Connected
                | Self::Ready { .. }
                | Self::Running
                | Self::Reported
                | Self::Cut
        )
    }
}

/// A node as the supervisor knows it.
#[derive(Debug)]
struct Node {
    name: String,
    host: String,
    /// The agent that runs it, if it runs on another host.
    agent: Option<usize>,
    spout: bool,
    pid: Option<u32>,
    /// Every process that ran it, in order (pid and start time, 0 if not
    /// known).
    processes: Vec<Predecessor>,
    heard: Instant,
    report: Option<NodeReport>,
    state: NodeState,
    /// Its data port's address, once it was ready.
    data: String,
    /// Restarts it may still use.
    restarts_left: u32,
    /// Why each of its restarts so far was made (the cause of its
    /// predecessor's end), whether or not the successor got to run.
    causes: Vec<String>,
    /// Its restarts whose successor runs, and how long each took.
    restarts: Vec<Restart>,
    /// How its process failed, told by the process (its function's error
    /// or panic) before it ended: the cause of its restart.
    failed: Option<String>,
    /// When its last process was seen to end, and why, until its successor
    /// runs; and by when that successor must be ready.
    down: Option<(Instant, String)>,
    ready_by: Option<Instant>,
}

impl Node {
    /// Whether it is between two processes: its restart is due, or its
    /// successor is starting.
    fn is_restarting(&self) -> bool {
        !self.causes.is_empty()
            && matches!(
                self.state,
                NodeState::Restarting { .. }
                    | NodeState::Starting
                    | NodeState::Connected
                    | NodeState::Ready { .. }
            )
    }

    /// The failure of a node that used its restarts and ended again
    /// (`cause`); `None` if it had none.
    fn out_of_restarts(&self, cause: String) -> Option<Failure> {
        (!self.causes.is_empty()).then(|| Failure::OutOfRestarts {
            node: self.name.clone(),
            host: self.host.clone(),
            cause,
            restarts: self.causes.clone(),
        })
    }
}

/// A remote host's agent.
#[derive(Debug)]
struct Agent {
    host: String,
    heard: Instant,
    connected: bool,
}

/// Where a drain is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Drain {
    /// No drain was asked for.
    NotAsked,
    /// Asked for before the start: it begins with it.
    Asked,
    /// Workers were told; `heard[id]` once node `id` said it heard (true
    /// for those not told: spouts, nodes gone).
    Workers { heard: Vec<bool> },
    /// Spouts were told too.
    Spouts,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    /// Waiting for every node to be ready.
    Launching,
    /// `Start` was sent.
    Started,
    /// Stopping now: nodes still running at `kill_at` are killed.
    Aborting { kill_at: Instant },
    /// Killed what remained; nodes not seen gone by `give_up_at` are left.
    Killed { give_up_at: Instant },
}

/// A node the supervisor is given, as placed.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    /// The node's name.
    pub(crate) name: String,
    /// Its host.
    pub(crate) host: String,
    /// The index of the agent that runs it, if it runs on another host.
    pub(crate) agent: Option<usize>,
    /// Whether it is a spout (told to drain last).
    pub(crate) spout: bool,
    /// How many times it may be restarted.
    pub(crate) restarts: u32,
}

/// How the run ended, as the supervisor saw it.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The first failure, if any.
    pub(crate) failure: Option<Failure>,
    /// Whether the run was aborted (by the user or a failure).
    pub(crate) aborted: bool,
    /// Each node's report, if it sent one, and how its process ended.
    pub(crate) nodes: Vec<(Option<NodeReport>, Option<ExitCause>)>,
}

/// The supervision of one run.
#[derive(Debug)]
pub(crate) struct Supervisor {
    nodes: Vec<Node>,
    agents: Vec<Agent>,
    timeouts: Timeouts,
    run: RunState,
    drain: Drain,
    failure: Option<Failure>,
    aborted: bool,
    created: Instant,
    started: Option<Instant>,
    commands: VecDeque<Command>,
}

impl Supervisor {
    /// Supervises `nodes` (in declaration order), run by this machine or by
    /// the agents of `agents` (host names, connected already), from `now`.
    pub(crate) fn new(
        nodes: Vec<Placed>,
        agents: Vec<String>,
        timeouts: Timeouts,
        now: Instant,
    ) -> Self {
        Self {
            nodes: nodes
                .into_iter()
                .map(|p| Node {
                    name: p.name,
                    host: p.host,
                    agent: p.agent,
                    spout: p.spout,
                    pid: None,
                    processes: Vec::new(),
                    heard: now,
                    report: None,
                    state: NodeState::Starting,
                    data: String::new(),
                    restarts_left: p.restarts,
                    causes: Vec::new(),
                    restarts: Vec::new(),
                    failed: None,
                    down: None,
                    ready_by: None,
                })
                .collect(),
            agents: agents
                .into_iter()
                .map(|host| Agent {
                    host,
                    heard: now,
                    connected: true,
                })
                .collect(),
            timeouts,
            run: RunState::Launching,
            drain: Drain::NotAsked,
            failure: None,
            aborted: false,
            created: now,
            started: None,
            commands: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub(crate) fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Whether every node is over: the driver may finish.
    pub(crate) fn is_over(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n.state, NodeState::Ended { .. }))
    }

    /// When `Start` was sent, if it was.
    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.started
    }

    /// The state of node `id`.
    #[cfg(test)]
    pub(crate) fn state(&self, id: NodeId) -> &NodeState {
        &self.nodes[id].state
    }

    /// The pid of node `id`, once known.
    pub(crate) fn pid(&self, id: NodeId) -> Option<u32> {
        self.nodes[id].pid
    }

    /// Whether node `id`'s process may still run.
    pub(crate) fn may_run(&self, id: NodeId) -> bool {
        self.nodes[id].state.may_run()
    }

    /// Whether the run is stopping now.
    fn is_aborting(&self) -> bool {
        matches!(
            self.run,
            RunState::Aborting { .. } | RunState::Killed { .. }
        )
    }

    /// Takes in one fact.
    pub(crate) fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Spawned {
                node,
                pid,
                start_time,
            } => {
                self.nodes[node].pid = Some(pid);
                self.nodes[node]
                    .processes
                    .push(Predecessor { pid, start_time });
            }
            Event::Connected(Peer::Node(id)) => self.connected(now, id),
            Event::Connected(Peer::Agent(a)) => {
                self.agents[a].connected = true;
                self.agents[a].heard = now;
            }
            Event::Message { node, message } => {
                self.nodes[node].heard = now;
                self.message(now, node, message);
            }
            Event::Heard(Peer::Node(id)) => self.nodes[id].heard = now,
            Event::Heard(Peer::Agent(a)) => self.agents[a].heard = now,
            Event::Closed {
                peer: Peer::Node(id),
                reason,
            } => self.node_closed(now, id, reason),
            Event::Closed {
                peer: Peer::Agent(a),
                reason,
            } => self.agent_closed(now, a, reason),
            Event::Exited { node, cause } => self.exited(now, node, cause),
            Event::NotStarted { node, message } => {
                let failure = Failure::NotStarted {
                    node: self.nodes[node].name.clone(),
                    host: self.nodes[node].host.clone(),
                    message,
                };
                if self.nodes[node].state == NodeState::Starting {
                    self.nodes[node].state = NodeState::Ended { cause: None };
                }
                self.fail(now, failure);
            }
            Event::Drain => self.drain(),
            Event::Abort => {
                self.aborted = true;
                self.abort(now);
            }
            Event::Fail(failure) => self.fail(now, failure),
        }
    }

    /// Lets time pass: starts the run when every node is ready, and applies
    /// every time limit.
    pub(crate) fn tick(&mut self, now: Instant) {
        for id in 0..self.nodes.len() {
            if let NodeState::ExitedUnseen { cause, since } = self.nodes[id].state {
                if now.duration_since(since) >= LINGER {
                    self.end(now, id, Some(cause));
                }
            }
        }
        match self.run {
            RunState::Launching => {
                if self
                    .nodes
                    .iter()
                    .all(|n| matches!(n.state, NodeState::Ready { .. }))
                {
                    self.start(now);
                } else if now.duration_since(self.created) > self.timeouts.ready {
                    let late = self
                        .nodes
                        .iter()
                        .find(|n| !matches!(n.state, NodeState::Ready { .. }))
                        .expect("a node is not ready");
                    let failure = Failure::NotReady {
                        node: late.name.clone(),
                        host: late.host.clone(),
                        seconds: self.timeouts.ready.as_secs(),
                    };
                    self.fail(now, failure);
                }
            }
            RunState::Started => self.restart_due(now),
            RunState::Aborting { kill_at } => {
                if now >= kill_at {
                    for id in 0..self.nodes.len() {
                        if self.nodes[id].state.may_run() {
                            self.commands.push_back(Command::Kill { node: id });
                        }
                    }
                    self.run = RunState::Killed {
                        give_up_at: now + self.timeouts.grace,
                    };
                }
            }
            RunState::Killed { give_up_at } => {
                if now >= give_up_at {
                    for id in 0..self.nodes.len() {
                        if !matches!(self.nodes[id].state, NodeState::Ended { .. }) {
                            let node = &self.nodes[id];
                            self.commands.push_back(Command::Warn(format!(
                                "node {} on host {} was not seen to end; given up",
                                node.name, node.host
                            )));
                            self.nodes[id].state = NodeState::Ended { cause: None };
                        }
                    }
                }
            }
        }
        if !self.is_aborting() {
            self.drain_spouts_once_heard();
            self.check_silence(now);
        }
    }

    fn check_silence(&mut self, now: Instant) {
        let silence = self.timeouts.silence;
        let silent_node = self
            .nodes
            .iter()
            .find(|n| n.state.is_connected() && now.duration_since(n.heard) > silence);
        if let Some(node) = silent_node {
            let failure = Failure::Control {
                node: node.name.clone(),
                message: format!("no word for {}s", silence.as_secs()),
            };
            return self.fail(now, failure);
        }
        let silent_agent = self
            .agents
            .iter()
            .find(|a| a.connected && now.duration_since(a.heard) > silence);
        if let Some(agent) = silent_agent {
            let failure = Failure::HostLost {
                host: agent.host.clone(),
                message: format!("its agent said nothing for {}s", silence.as_secs()),
            };
            self.fail(now, failure);
        }
    }

    /// Starts the nodes whose restart is due, and fails the run if a
    /// restarted node is not ready in time.
    fn restart_due(&mut self, now: Instant) {
        for id in 0..self.nodes.len() {
            let node = &mut self.nodes[id];
            match node.state {
                NodeState::Restarting { at } if now >= at => {
                    let predecessors = node.processes.iter().rev().copied().collect();
                    node.state = NodeState::Starting;
                    node.heard = now;
                    node.ready_by = Some(now + self.timeouts.ready);
                    let cause = node.down.as_ref().map(|d| d.1.clone()).unwrap_or_default();
                    let restart = node.causes.len() as u32;
                    self.commands.push_back(Command::Restart {
                        node: id,
                        predecessors,
                        restart,
                        restarts: restart + node.restarts_left,
                        cause,
                    });
                }
                NodeState::Starting | NodeState::Connected
                    if node.ready_by.is_some_and(|by| now > by) =>
                {
                    let failure = Failure::NotReady {
                        node: node.name.clone(),
                        host: node.host.clone(),
                        seconds: self.timeouts.ready.as_secs(),
                    };
                    return self.fail(now, failure);
                }
                _ => {}
            }
        }
    }

    /// Starts a restarted node that is ready: at once, as the run runs;
    /// it hears of a drain begun meanwhile.
    fn restarted(&mut self, now: Instant, id: NodeId) {
        let data = self.nodes.iter().map(|n| n.data.clone()).collect();
        let node = &mut self.nodes[id];
        node.state = NodeState::Running;
        node.ready_by = None;
        if let Some((down, cause)) = node.down.take() {
            node.restarts.push(Restart {
                cause,
                recovered_in: now.duration_since(down),
            });
        }
        let spout = node.spout;
        let moved = node.data.clone();
        self.send(id, ToNode::Start { data });
        // Its consumers on other hosts reconnect to its new data port.
        if !moved.is_empty() {
            for other in 0..self.nodes.len() {
                if other != id && self.nodes[other].state == NodeState::Running {
                    let data = moved.clone();
                    self.send(
                        other,
                        ToNode::Moved {
                            node: id as u32,
                            data,
                        },
                    );
                }
            }
        }
        match &mut self.drain {
            Drain::Workers { heard } if !spout => {
                heard[id] = false;
                self.send(id, ToNode::Drain);
            }
            Drain::Spouts => self.send(id, ToNode::Drain),
            _ => {}
        }
    }

    fn start(&mut self, now: Instant) {
        let data: Vec<String> = self.nodes.iter().map(|n| n.data.clone()).collect();
        for id in 0..self.nodes.len() {
            self.nodes[id].state = NodeState::Running;
            self.send(id, ToNode::Start { data: data.clone() });
        }
        self.run = RunState::Started;
        self.started = Some(now);
        if self.drain == Drain::Asked {
            // Asked for during the launch: nodes heed it once started.
            self.begin_drain();
        }
    }

    fn connected(&mut self, now: Instant, id: NodeId) {
        let node = &mut self.nodes[id];
        node.heard = now;
        node.state = match node.state {
            NodeState::Starting => NodeState::Connected,
            NodeState::ExitedUnseen { cause, .. } => NodeState::Exiting { cause },
            ref other => {
                let warning = format!(
                    "node {}: a control connection in state {other:?}, ignored",
                    node.name
                );
                self.commands.push_back(Command::Warn(warning));
                return;
            }
        };
        if self.is_aborting() {
            self.send(id, ToNode::Abort);
        }
    }

    fn message(&mut self, now: Instant, id: NodeId, message: ToMaster) {
        match message {
            ToMaster::Heartbeat | ToMaster::Metrics { .. } => {}
            ToMaster::Draining => {
                if let Drain::Workers { heard } = &mut self.drain {
                    heard[id] = true;
                }
                self.drain_spouts_once_heard();
            }
            ToMaster::Ready { pid, data } => {
                let node = &mut self.nodes[id];
                node.pid = Some(pid);
                if node.state == NodeState::Connected {
                    node.data = data.clone();
                    node.state = NodeState::Ready { data };
                    if self.run == RunState::Started {
                        self.restarted(now, id);
                    }
                } else if matches!(node.state, NodeState::Exiting { .. }) {
                    // Its exit was seen first (another thread): the end of
                    // its connection will tell.
                } else {
                    let failure = Failure::Control {
                        node: node.name.clone(),
                        message: format!("said ready in state {:?}", node.state),
                    };
                    self.fail(now, failure);
                }
            }
            ToMaster::Refused { reason } => {
                let node = self.nodes[id].name.clone();
                self.fail(now, Failure::Refused { node, reason });
            }
            ToMaster::Done { report } => self.reported(now, id, *report),
            // A node function's failure (an error or a panic) is a fault
            // its restarts are for: its process ends, and is restarted.
            ToMaster::Failed {
                failure: failure @ Failure::Node { .. },
                passing: true,
                ..
            } if self.nodes[id].restarts_left > 0 && self.run == RunState::Started => {
                self.nodes[id].failed = Some(failure.to_string());
            }
            ToMaster::Failed {
                failure, report, ..
            } => {
                self.reported(now, id, *report);
                let failure = match failure {
                    Failure::Node { .. } => self.nodes[id]
                        .out_of_restarts(failure.to_string())
                        .unwrap_or(failure),
                    other => other,
                };
                self.fail(now, failure);
            }
            ToMaster::Output { .. } | ToMaster::Event { .. } => {}
        }
    }

    fn reported(&mut self, now: Instant, id: NodeId, report: NodeReport) {
        let node = &mut self.nodes[id];
        node.report = Some(report);
        match node.state {
            NodeState::Exiting { cause } => self.end(now, id, Some(cause)),
            NodeState::Ended { .. } => {}
            _ => node.state = NodeState::Reported,
        }
    }

    fn node_closed(&mut self, now: Instant, id: NodeId, reason: Option<String>) {
        let aborting = self.is_aborting();
        let node = &mut self.nodes[id];
        if let Some(reason) = reason {
            if node.report.is_none() && !aborting {
                let warning = format!("control connection of node {}: {reason}", node.name);
                self.commands.push_back(Command::Warn(warning));
            }
        }
        match node.state {
            NodeState::Connected | NodeState::Ready { .. } | NodeState::Running => {
                node.state = NodeState::Cut;
            }
            NodeState::Exiting { cause } => self.end(now, id, Some(cause)),
            _ => {}
        }
    }

    fn exited(&mut self, now: Instant, id: NodeId, cause: ExitCause) {
        let node = &mut self.nodes[id];
        match node.state {
            NodeState::Starting => node.state = NodeState::ExitedUnseen { cause, since: now },
            NodeState::Connected | NodeState::Ready { .. } | NodeState::Running => {
                node.state = NodeState::Exiting { cause };
            }
            NodeState::Reported | NodeState::Cut => self.end(now, id, Some(cause)),
            NodeState::Exiting { .. }
            | NodeState::ExitedUnseen { .. }
            | NodeState::Restarting { .. }
            | NodeState::Ended { .. } => {}
        }
    }

    /// The agent of host `a` is gone: so are its nodes, which it ends when
    /// it loses the master, or which die with it.
    fn agent_closed(&mut self, now: Instant, a: usize, reason: Option<String>) {
        self.agents[a].connected = false;
        let lost: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&id| {
                self.nodes[id].agent == Some(a)
                    && !matches!(self.nodes[id].state, NodeState::Ended { .. })
            })
            .collect();
        if lost.is_empty() {
            return;
        }
        for &id in &lost {
            self.nodes[id].state = NodeState::Ended { cause: None };
        }
        if !self.is_aborting() {
            let names: Vec<&str> = lost
                .iter()
                .map(|&id| self.nodes[id].name.as_str())
                .collect();
            let failure = Failure::HostLost {
                host: self.agents[a].host.clone(),
                message: format!(
                    "the connection to its agent was lost ({}) with nodes {} on it",
                    reason.as_deref().unwrap_or("closed"),
                    names.join(", ")
                ),
            };
            self.fail(now, failure);
        }
    }

    /// Node `id` is over; one that ended without its report died.
    fn end(&mut self, now: Instant, id: NodeId, cause: Option<ExitCause>) {
        let aborting = self.is_aborting();
        let node = &mut self.nodes[id];
        node.state = NodeState::Ended { cause };
        if node.report.is_some() || aborting {
            return;
        }
        let exit = cause.map_or_else(|| "vanished".to_owned(), |c| c.to_string());
        let why = node.failed.take().unwrap_or_else(|| exit.clone());
        if node.restarts_left > 0 && self.run == RunState::Started {
            node.restarts_left -= 1;
            // Counted by attempt: a successor that died before it ran
            // counts, and the next waits longer.
            let restart = node.causes.len();
            node.causes.push(why.clone());
            let wait = self.timeouts.backoff.wait(restart);
            self.commands.push_back(Command::Warn(format!(
                "node {} on host {} {why}; restarting it{} (restart {} of {})",
                node.name,
                node.host,
                if wait.is_zero() {
                    String::new()
                } else {
                    format!(" in {} ms", wait.as_millis())
                },
                restart + 1,
                restart + 1 + node.restarts_left as usize
            )));
            node.down = Some((now, why));
            node.state = NodeState::Restarting { at: now + wait };
            return;
        }
        if let Some(failure) = node.out_of_restarts(why) {
            return self.fail(now, failure);
        }
        let failure = Failure::Died {
            node: node.name.clone(),
            host: node.host.clone(),
            pid: node.pid.unwrap_or(0),
            cause: cause.map_or_else(|| "vanished".to_owned(), |c| c.to_string()),
        };
        self.fail(now, failure);
    }

    fn drain(&mut self) {
        if self.drain != Drain::NotAsked || self.is_aborting() {
            return;
        }
        self.drain = Drain::Asked;
        if self.run == RunState::Started {
            self.begin_drain();
        }
    }

    /// Tells the workers first: a worker must know the run drains before
    /// it sees its upstream spouts end, or it takes the gaps they leave for
    /// a fault.
    fn begin_drain(&mut self) {
        let mut heard = Vec::with_capacity(self.nodes.len());
        for id in 0..self.nodes.len() {
            let told = !self.nodes[id].spout && self.nodes[id].state.is_connected();
            if told {
                self.send(id, ToNode::Drain);
            }
            // A worker between two processes is told once its successor
            // starts (`restarted`), and waited for meanwhile.
            let later = !self.nodes[id].spout && self.nodes[id].is_restarting();
            heard.push(!told && !later);
        }
        self.drain = Drain::Workers { heard };
        self.drain_spouts_once_heard();
    }

    /// Tells the spouts once every worker told said it heard (or is gone).
    fn drain_spouts_once_heard(&mut self) {
        let Drain::Workers { heard } = &self.drain else {
            return;
        };
        let waiting = heard
            .iter()
            .zip(&self.nodes)
            .any(|(heard, node)| !heard && (node.state.is_connected() || node.is_restarting()));
        if waiting || self.is_aborting() {
            return;
        }
        self.drain = Drain::Spouts;
        for id in 0..self.nodes.len() {
            if self.nodes[id].spout {
                self.send(id, ToNode::Drain);
            }
        }
    }

    /// Records the run's first failure and stops the run.
    fn fail(&mut self, now: Instant, failure: Failure) {
        if self.failure.is_none() && !self.aborted {
            self.failure = Some(failure);
        }
        self.abort(now);
    }

    fn abort(&mut self, now: Instant) {
        if self.is_aborting() {
            return;
        }
        self.run = RunState::Aborting {
            kill_at: now + self.timeouts.grace,
        };
        // A node waiting for its restart has no process left.
        for node in &mut self.nodes {
            if matches!(node.state, NodeState::Restarting { .. }) {
                node.state = NodeState::Ended { cause: None };
            }
        }
        for id in 0..self.nodes.len() {
            self.send(id, ToNode::Abort);
        }
    }

    /// Sends to a node whose connection is open.
    fn send(&mut self, node: NodeId, message: ToNode) {
        if self.nodes[node].state.is_connected() {
            self.commands.push_back(Command::Send { node, message });
        }
    }

    /// How the run ended (the reports are taken out).
    pub(crate) fn outcome(&mut self) -> Outcome {
        Outcome {
            failure: self.failure.take(),
            aborted: self.aborted || self.is_aborting(),
            nodes: self
                .nodes
                .iter_mut()
                .map(|n| {
                    let cause = match n.state {
                        NodeState::Ended { cause } => cause,
                        _ => None,
                    };
                    let report = n.report.take().map(|mut r| {
                        r.restarts = std::mem::take(&mut n.restarts);
                        r
                    });
                    (report, cause)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
