//! Process mode: every node of a topology runs in its own process, started
//! by re-executing the launching binary, its values flowing through
//! shared-memory rings.
//!
//! The master (the launching process) validates the topology, opens each
//! node's log files, starts one process per node with the same arguments
//! and `CLUSTERDUCK_NODE=<name>` in its environment, and writes its
//! configuration (run id, control address, secret, fingerprint) to its
//! stdin. The node process runs the same topology-building code, checks that
//! it built the same topology, and reaches [`node_main`] instead of
//! launching; it connects back to the master (mutual HMAC on the run's
//! secret), creates its output ring, reports ready, and waits: spouts send
//! only once every node is ready.
//!
//! The master supervises the run: it relays watched outputs and policy
//! events to the debugger, collects each node's report, and stops every
//! node as soon as one fails, is killed, or stops answering. A node whose
//! master goes away exits at once.

mod agent;
mod child;
mod control;
mod control_tx;
mod exit;
mod hosts;
mod link;
mod logs;
mod master;
mod node;
mod placement;
mod protocol;
mod remote;
mod supervisor;

pub use agent::{agent_main, agent_role, AGENT_ENV};
pub use logs::{LogError, DEFAULT_DIR};
pub use master::{LaunchError, Master, ProcessRun, DEFAULT_FANOUT, DEFAULT_SILENCE, VERBOSE_ENV};
pub use node::{node_main, node_role, NODE_ENV};
pub use placement::{Placement, PlacementError, LOCAL_HOST};
pub use remote::{HostError, SSH_CONFIG_ENV};
pub use supervisor::Backoff;
