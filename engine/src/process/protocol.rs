//! What master and nodes say to each other on the control connection, and
//! the configuration a node reads on its stdin. Every message is an archived
//! value, validated before use.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::bundle::Notice;
use crate::report::{Failure, NodeReport};

/// What a node process needs to know, written by the master to its stdin.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct NodeConfig {
    /// The run, which names its shared-memory segments.
    pub(crate) run_id: String,
    /// The node this process runs, by declaration index.
    pub(crate) node: u32,
    /// The master's topology fingerprint: hash, then description.
    pub(crate) fingerprint: u64,
    pub(crate) description: String,
    /// The process the node dies with: the master, when it is the node's
    /// parent (same host); none on another host, where the control
    /// connection's end is the signal.
    pub(crate) die_with: Option<u32>,
    /// The master's control address.
    pub(crate) control: String,
    /// The run's secret.
    pub(crate) secret: [u8; 32],
    /// Bytes of the node's output ring.
    pub(crate) ring_bytes: u64,
    /// Values the node takes from one upstream at a time, at most.
    pub(crate) batch: u32,
    /// How long the node polls its inputs before it sleeps, in nanoseconds.
    pub(crate) spin_ns: u64,
    /// Whether the debugger watches the node's outputs.
    pub(crate) watched: bool,
    /// The host of every node, by declaration index: edges between nodes on
    /// different hosts go over TCP.
    pub(crate) hosts: Vec<String>,
    /// The address the node's data port binds to (its host's address).
    pub(crate) bind: String,
}

/// From a node to the master.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ToMaster {
    /// The node's output ring exists; it waits for `Start`. `data` is the
    /// address of its data port, if it has consumers on other hosts.
    Ready { pid: u32, data: String },
    /// The node will not run: its topology differs, or similar.
    Refused { reason: String },
    /// An output of a watched node, archived.
    Output { seq: u64, bytes: Vec<u8> },
    /// A policy event.
    Event { notice: Notice },
    /// Still alive.
    Heartbeat,
    /// The node finished: its report.
    Done { report: NodeReport },
    /// The node failed: why, and its report until then.
    Failed {
        failure: Failure,
        report: NodeReport,
    },
}

/// From the master to a node.
#[derive(Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ToNode {
    /// Every node is ready: spouts may send. `data` holds every node's data
    /// port address (empty for none), by declaration index.
    Start { data: Vec<String> },
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
