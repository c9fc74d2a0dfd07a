//! What can go wrong with a launch.

use clusterduck_engine::graph::GraphError;
use clusterduck_engine::process::LaunchError;
use clusterduck_engine::report::{Failure, RunFailure, RunReport};

/// Why [`Topology::launch`](crate::Topology::launch) did not return a
/// report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology was refused before anything started.
    #[error("invalid topology: {0}")]
    Topology(#[from] GraphError),
    /// The debugger watches a node of another topology.
    #[error("debugger: node {node:?} is not a node of this topology")]
    DebugForeignNode {
        /// The node's name.
        node: String,
    },
    /// The debugger watches a node twice.
    #[error("debugger: node {node:?} is watched twice; give it one callback")]
    DebugTwice {
        /// The node's name.
        node: String,
    },
    /// Restarts are asked for a node of another topology.
    #[error("restarts: node {node:?} is not a node of this topology")]
    RestartsForeignNode {
        /// The node's name.
        node: String,
    },
    /// Restarts are asked for in local mode, where nodes are threads of one
    /// process.
    #[error("restarts are for process mode: in local mode a node is a thread, and a fault ends the process")]
    RestartsLocal,
    /// Replicas are asked for a node of another topology.
    #[error("replicas: node {node:?} is not a node of this topology")]
    ReplicasForeignNode {
        /// The node's name.
        node: String,
    },
    /// A placement names a node of another topology.
    #[error("placement: node {node:?} is not a node of this topology")]
    PlaceForeignNode {
        /// The node's name.
        node: String,
    },
    /// The metrics server could not start (its address taken, say).
    #[error("{0}")]
    Metrics(#[from] clusterduck_monitor::ServeError),
    /// The node processes could not be started (log directory, control
    /// port, program); nothing was left running.
    #[error("cannot launch: {0}")]
    Launch(#[from] LaunchError),
    /// The run started and failed: the first failure and what the run did
    /// until then.
    #[error("{}", .0.failure)]
    Run(Box<RunFailure>),
}

impl Error {
    /// What the run did before it failed, if it started.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            Error::Run(run) => Some(&run.report),
            _ => None,
        }
    }

    /// Why the run failed, if it started.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::Run(run) => Some(&run.failure),
            _ => None,
        }
    }
}

impl From<RunFailure> for Error {
    fn from(failure: RunFailure) -> Self {
        Error::Run(Box::new(failure))
    }
}

impl From<Box<RunFailure>> for Error {
    fn from(failure: Box<RunFailure>) -> Self {
        Error::Run(failure)
    }
}
