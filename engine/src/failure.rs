//! Why a run failed: the first failure of any node, or of the run itself.
//!
//! (In a module of its own, private, so that the types rkyv derives beside
//! it stay out of the public API.)

use crate::bundle::Notice;
use crate::Seq;

/// Why a run failed.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum Failure {
    /// A node's function returned an error or panicked.
    #[error("node {node} failed{}: {message}", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Node {
        /// The node.
        node: String,
        /// The id of the input being processed, if any (spouts have none).
        seq: Option<Seq>,
        /// The error's message, or `panicked: <message>`.
        message: String,
    },
    /// A bundle never completed and the gap policy is to fail.
    #[error("node {node}: seq {seq} never completed: nothing from {} within the gap timeout (gap policy: fail)", missing.join(", "))]
    Gap {
        /// The bundled node.
        node: String,
        /// The missing bundle's id.
        seq: Seq,
        /// The upstreams that did not send it.
        missing: Vec<String>,
    },
    /// An unordered node's table was full and the overflow policy is to fail.
    #[error("node {node}: bundling table full when seq {seq} arrived from {upstream} (overflow policy: fail)")]
    Overflow {
        /// The bundled node.
        node: String,
        /// The id that did not fit.
        seq: Seq,
        /// The upstream that sent it.
        upstream: String,
    },
    /// The debugger's callback panicked.
    #[error("the debugger callback panicked: {message}")]
    Debugger {
        /// The panic's message.
        message: String,
    },
    /// A node's process ended without finishing its work.
    #[error("node {node} (pid {pid}) on host {host} {cause}")]
    Died {
        /// The node.
        node: String,
        /// Its host (`localhost` for this machine).
        host: String,
        /// Its process id.
        pid: u32,
        /// How it ended: `killed by signal 9 (SIGKILL)`, `exited with status 1`.
        cause: String,
    },
    /// A node that could be restarted ended once more than its restarts
    /// allowed.
    #[error("node {node} on host {host} used its {} restarts ({}) and ended again: {cause}", restarts.len(), restarts.join("; "))]
    OutOfRestarts {
        /// The node.
        node: String,
        /// Its host.
        host: String,
        /// How its last process ended.
        cause: String,
        /// How each earlier process ended, in order.
        restarts: Vec<String>,
    },
    /// A node's process refused to run (its topology differs from the
    /// master's, or its configuration could not be read).
    #[error("node {node} refused to start: {reason}")]
    Refused {
        /// The node.
        node: String,
        /// Why, in the node's words.
        reason: String,
    },
    /// A node's process did not report ready in time.
    #[error("node {node} on host {host} did not report ready within {seconds}s")]
    NotReady {
        /// The node.
        node: String,
        /// Its host.
        host: String,
        /// How long the master waited.
        seconds: u64,
    },
    /// The control connection with a node failed.
    #[error("node {node}: control connection lost: {message}")]
    Control {
        /// The node.
        node: String,
        /// What happened.
        message: String,
    },
    /// A link between two hosts stayed down longer than the run's link
    /// grace: its consumer could not reconnect to its producer in time.
    #[error("the link from node {producer} on host {producer_host} to node {consumer} on host {consumer_host} stayed down longer than its grace of {grace_ms} ms: {cause}")]
    LinkDown {
        /// The producing node.
        producer: String,
        /// Its host.
        producer_host: String,
        /// The consuming node.
        consumer: String,
        /// Its host.
        consumer_host: String,
        /// The grace, in milliseconds.
        grace_ms: u64,
        /// The last thing that went wrong.
        cause: String,
    },
    /// A host's agent stopped answering, or its connection to the master
    /// was lost: the nodes on that host are gone with it.
    #[error("host {host}: {message}")]
    HostLost {
        /// The host.
        host: String,
        /// What happened.
        message: String,
    },
    /// A node's process could not be started on its host.
    #[error("cannot start node {node} on host {host}: {message}")]
    NotStarted {
        /// The node.
        node: String,
        /// Its host.
        host: String,
        /// What failed.
        message: String,
    },
    /// A second Ctrl-C (or an abort request) stopped the run without draining.
    #[error("the run was aborted before it drained")]
    Aborted,
}

impl Failure {
    /// The failure a fatal policy notice of `node` stands for: a gap or an
    /// overflow (no other notice is fatal).
    pub fn from_notice(node: &str, notice: &Notice, upstreams: &[String]) -> Self {
        match notice {
            Notice::Overflow { seq, upstream } => Failure::Overflow {
                node: node.to_owned(),
                seq: *seq,
                upstream: upstreams[*upstream].clone(),
            },
            Notice::Gap { seq, missing } => Failure::Gap {
                node: node.to_owned(),
                seq: *seq,
                missing: missing.iter().map(|i| upstreams[*i].clone()).collect(),
            },
            other => Failure::Node {
                node: node.to_owned(),
                seq: other.seq(),
                message: format!("unexpected fatal policy event {other:?}"),
            },
        }
    }
}
