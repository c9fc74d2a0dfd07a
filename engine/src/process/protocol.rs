//! What master, host agents and nodes say to each other on their control
//! connections, and the configurations an agent and a node read on their
//! stdin. Every message is an archived value, validated before use.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::exit::ExitCause;
use super::remote::HostError;
use super::supervisor::Peer;
use crate::bundle::Notice;
use crate::graph::NodeId;
use crate::metrics::NodeSample;
use crate::report::{Failure, NodeReport};

/// The bit that marks an agent's id in the control handshake (a node's id
/// is its declaration index, an agent's this bit and its host's index).
const AGENT_PEER: u32 = 1 << 31;

impl Peer {
    /// The id this peer authenticates with.
    pub(crate) fn id(self) -> u32 {
        match self {
            Self::Node(node) => node as u32,
            Self::Agent(host) => AGENT_PEER | host as u32,
        }
    }

    /// The peer an authenticated id stands for, in a run of `nodes` nodes
    /// and `agents` remote hosts.
    pub(crate) fn from_id(id: u32, nodes: usize, agents: usize) -> Option<Self> {
        if id & AGENT_PEER != 0 {
            let host = (id & !AGENT_PEER) as usize;
            (host < agents).then_some(Self::Agent(host))
        } else {
            ((id as usize) < nodes).then_some(Self::Node(id as NodeId))
        }
    }
}

/// A remote host of a run: its index among the run's remote hosts (which
/// names its agent) and its SSH destination.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct RemoteHost {
    pub(crate) index: u32,
    pub(crate) name: String,
}

/// What a host agent needs to know, written by whoever started it (the
/// master, or the agent of the host above it in the launch tree) on its
/// stdin.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct AgentConfig {
    /// The run, which names its shared-memory segments.
    pub(crate) run_id: String,
    /// The master's control port.
    pub(crate) control_port: u16,
    /// The master's address, as the agent above this one reaches it; empty
    /// for an agent the master started itself, which takes the address its
    /// SSH session came from (the master's, on the route to this host).
    pub(crate) control_host: String,
    /// The run's secret.
    pub(crate) secret: [u8; 32],
    /// This agent's host.
    pub(crate) host: RemoteHost,
    /// The hosts below this one in the launch tree: this agent starts
    /// their agents (fanning out in turn past `fanout`).
    pub(crate) below: Vec<RemoteHost>,
    /// How many agents one agent (or the master) starts itself, at most.
    pub(crate) fanout: u32,
    /// The log directory on every host.
    pub(crate) dir: String,
}

/// A node for an agent to start.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct NodeLaunch {
    /// The node's name (its log files, its role).
    pub(crate) name: String,
    /// What the node reads on its stdin.
    pub(crate) config: NodeConfig,
}

/// From the master to an agent.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ToAgent {
    /// Start these nodes.
    Spawn { nodes: Vec<NodeLaunch> },
    /// Kill this node's process.
    Kill { node: u32 },
}

/// From an agent to the master.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum FromAgent {
    /// The agent runs. `address` is its host's address as its SSH
    /// connection reached it (where its nodes open their data ports);
    /// `via`, the address that connection came from (the master's, or the
    /// host's above it in the launch tree).
    Hello {
        pid: u32,
        address: String,
        via: String,
    },
    /// A host below this one in the launch tree cannot be used.
    HostFailed { error: HostError },
    /// A node's process runs (`start_time`: see `ProcessStamp`).
    Spawned {
        node: u32,
        pid: u32,
        start_time: u64,
    },
    /// A node's process could not be started.
    NotSpawned { node: u32, message: String },
    /// A node's process ended.
    Exited { node: u32, cause: ExitCause },
    /// Still alive.
    Heartbeat,
}

/// What a node process needs to know, written by the master to its stdin.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct NodeConfig {
    /// The run, which names its shared-memory segments.
    pub(crate) run_id: String,
    /// The node this process runs, by declaration index.
    pub(crate) node: u32,
    /// The master's topology fingerprint: hash, then description.
    pub(crate) fingerprint: u64,
    pub(crate) description: String,
    /// The process the node dies with: its parent, which started it (the
    /// master, or its host's agent, which fills this in).
    pub(crate) die_with: Option<u32>,
    /// The master's control address (for a remote node, filled in by its
    /// agent).
    pub(crate) control: String,
    /// The run's secret.
    pub(crate) secret: [u8; 32],
    /// Bytes of the node's output ring.
    pub(crate) ring_bytes: u64,
    /// Bytes of the node's space for values too large for its ring.
    pub(crate) large_bytes: u64,
    /// Values the node takes from one upstream at a time, at most.
    pub(crate) batch: u32,
    /// How long the node polls its inputs before it sleeps, in nanoseconds.
    pub(crate) spin_ns: u64,
    /// Whether the debugger watches the node's outputs.
    pub(crate) watched: bool,
    /// The host of every node, by declaration index: edges between nodes on
    /// different hosts go over TCP.
    pub(crate) hosts: Vec<String>,
    /// The address the node's data port binds to (its host's address; for
    /// a remote node, filled in by the master once its agent said it).
    pub(crate) bind: String,
    /// Per node, in declaration order: its replicas.
    pub(crate) replicas: Vec<u32>,
    /// The run's key groups.
    pub(crate) key_groups: u32,
    /// Whether the node sends its figures every second (someone watches).
    pub(crate) metrics: bool,
    /// The node may be restarted: its ring is written in steps, its
    /// readers wait for a successor if it dies, and its own readers' slots
    /// are kept for theirs (see `run::recovery`).
    pub(crate) restartable: bool,
    /// A restarted node's: the processes that ran it before, the newest
    /// first (the newest may have died before it took its predecessor's
    /// slots in its upstreams' rings: they are then an older one's).
    pub(crate) predecessors: Vec<Predecessor>,
    /// A consumer of the node may be restarted: its ring keeps a dead
    /// reader's slot for its successor.
    pub(crate) keep_readers: bool,
    /// How long a link to or from another host may stay down (reconnecting)
    /// before the run fails, in milliseconds.
    pub(crate) link_grace_ms: u64,
}

/// A dead process a restarted node takes over from: its slots in its
/// upstreams' rings, and its own ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Predecessor {
    pub(crate) pid: u32,
    /// Its start time (see `ProcessStamp`).
    pub(crate) start_time: u64,
}

/// From a node to the master.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ToMaster {
    /// The node's output ring exists; it waits for `Start`. `data` is the
    /// address of its data port, if it has consumers on other hosts.
    Ready { pid: u32, data: String },
    /// The node will not run: its topology differs, or similar.
    Refused { reason: String },
    /// Output number `number` of a watched node (counted over its
    /// processes: a restarted node's repeats are dropped), archived.
    Output {
        number: u64,
        seq: u64,
        bytes: Vec<u8>,
    },
    /// A policy event, and the names its upstream indices stand for (a
    /// replicated upstream's is the replica it waits for).
    Event {
        notice: Notice,
        upstreams: Vec<String>,
    },
    /// Still alive.
    Heartbeat,
    /// The node's figures (every second, if asked for; boxed: the other
    /// messages are small).
    Metrics { sample: Box<NodeSample> },
    /// The node heard it must drain.
    Draining,
    /// The node finished: its report (boxed: the other messages are small).
    Done { report: Box<NodeReport> },
    /// The node failed: why, and its report until then; `passing` if the
    /// fault may not come again (its function failed: the process ends
    /// where it stands, and a restart may go on), not if it would (bad
    /// input is still in the ring, a policy failed the run).
    Failed {
        failure: Failure,
        report: Box<NodeReport>,
        passing: bool,
    },
}

/// From the master to a node.
#[derive(Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ToNode {
    /// Every node is ready: spouts may send. `data` holds every node's data
    /// port address (empty for none), by declaration index.
    Start { data: Vec<String> },
    /// Node `node` (restarted) serves its ring at `data` now: its remote
    /// consumers reconnect there.
    Moved { node: u32, data: String },
    /// The run drains: spouts should return.
    Drain,
    /// The run stops now.
    Abort,
}

/// Archives a message.
pub(crate) fn encode<T>(message: &T) -> AlignedVec
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rancor::Error>(message).expect("control messages always archive")
}

/// Reads a message back, validating it.
pub(crate) fn decode<T>(bytes: &[u8]) -> Result<T, rancor::Error>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    rkyv::from_bytes::<T, rancor::Error>(bytes)
}
