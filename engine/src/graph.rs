//! The topology as data: nodes, their kinds and their upstreams, and the
//! checks that must hold before anything starts.

use std::collections::HashMap;
use std::fmt;

use crate::bundle::{Bundling, Order};

/// The longest node name: names become file names (`<name>.out`) and
/// shared-memory segment names.
pub const MAX_NAME_LEN: usize = 64;

/// What a node does with its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A data source: no inputs; its function dispatches values.
    Spout,
    /// Each input value is processed on its own; several upstreams are
    /// merged, each keeping its order.
    Worker,
    /// For each id, one value from every upstream is processed together.
    Bundled(Bundling),
}

impl NodeKind {
    /// What reports call it: `spout`, `worker` or `bundled`.
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Spout => "spout",
            NodeKind::Worker => "worker",
            NodeKind::Bundled(_) => "bundled",
        }
    }

    /// Whether it bundles in no order (completing bundles as values come,
    /// so that a restarted process may run them in another order).
    pub(crate) fn bundles_in_no_order(&self) -> bool {
        matches!(self, NodeKind::Bundled(b) if b.order == crate::bundle::Order::Unordered)
    }
}

/// How a consumer's input is split among the consumer's replicas: chosen
/// per edge, by the consumer. With one replica every grouping is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// Each id to one replica (`seq mod replicas`): every upstream's value
    /// for an id goes to the same replica, so bundles stay exact. The only
    /// grouping of a bundled worker's inputs.
    BySeq,
    /// Each value to the replica that owns its key's group: a user function
    /// of the value gives the key, the key a group among the run's key
    /// groups, the group a replica (whole groups move on a rescale).
    ByKey,
    /// Values dealt round-robin, in the upstream's order (for stateless
    /// workers). The default of a worker's inputs.
    Shuffle,
    /// Every value to every replica.
    Broadcast,
    /// Every value to replica 0.
    One,
}

impl Grouping {
    /// What messages call it.
    pub fn label(&self) -> &'static str {
        match self {
            Grouping::BySeq => "by sequence id",
            Grouping::ByKey => "by key",
            Grouping::Shuffle => "shuffle",
            Grouping::Broadcast => "broadcast",
            Grouping::One => "one",
        }
    }
}

/// One node of a topology, as the engine sees it: no user code, only the
/// shape that validation, placement and the fingerprint need.
///
/// Sequencing is an option of [`Bundling`], so a sequenced node that is not
/// bundled cannot be described at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeSpec {
    /// The node's unique name.
    pub name: String,
    /// What it does with its inputs.
    pub kind: NodeKind,
    /// The names of its upstreams, in order (the order of a bundle's values).
    pub upstreams: Vec<String>,
    /// The type of the values it emits (for the fingerprint and messages).
    pub output_type: String,
    /// Per upstream, how its values are split among this node's replicas.
    pub groupings: Vec<Grouping>,
}

impl NodeSpec {
    /// A spout emitting values of `output_type`.
    pub fn spout(name: impl Into<String>, output_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: NodeKind::Spout,
            upstreams: Vec::new(),
            output_type: output_type.into(),
            groupings: Vec::new(),
        }
    }

    /// A worker over `upstreams`, merged.
    pub fn worker(
        name: impl Into<String>,
        upstreams: impl IntoIterator<Item = impl Into<String>>,
        output_type: impl Into<String>,
    ) -> Self {
        let upstreams: Vec<String> = upstreams.into_iter().map(Into::into).collect();
        Self {
            name: name.into(),
            kind: NodeKind::Worker,
            groupings: vec![Grouping::Shuffle; upstreams.len()],
            upstreams,
            output_type: output_type.into(),
        }
    }

    /// A bundled worker over `upstreams`.
    pub fn bundled(
        name: impl Into<String>,
        upstreams: impl IntoIterator<Item = impl Into<String>>,
        bundling: Bundling,
        output_type: impl Into<String>,
    ) -> Self {
        let worker = Self::worker(name, upstreams, output_type);
        Self {
            kind: NodeKind::Bundled(bundling),
            groupings: vec![Grouping::BySeq; worker.upstreams.len()],
            ..worker
        }
    }

    /// The same node with upstream `input` grouped by `grouping`.
    ///
    /// # Panics
    /// If the node has no upstream `input`.
    pub fn grouped(mut self, input: usize, grouping: Grouping) -> Self {
        self.groupings[input] = grouping;
        self
    }
}

/// Identifies a node within a validated [`Graph`]: its declaration index.
pub type NodeId = usize;

/// A topology that passed validation: unique, well-formed names, known
/// upstreams, no cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    nodes: Vec<NodeSpec>,
    upstreams: Vec<Vec<NodeId>>,
    downstreams: Vec<Vec<(NodeId, usize)>>,
}

/// Why a topology was refused. Each variant names the node at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The topology has no node.
    #[error("the topology is empty: define at least one spout")]
    Empty,
    /// A name is empty, too long, or has characters other than ASCII
    /// letters, digits, `-`, `_` and `.` (names become file names).
    #[error("node {node:?}: invalid name: {reason}")]
    InvalidName {
        /// The name as given.
        node: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two nodes have the same name.
    #[error("node {node:?} is defined twice (nodes #{first} and #{second})")]
    DuplicateName {
        /// The repeated name.
        node: String,
        /// Declaration index of the first.
        first: usize,
        /// Declaration index of the second.
        second: usize,
    },
    /// An upstream names no node of this topology.
    #[error("node {node:?}: upstream {upstream:?} is not a node of this topology")]
    UnknownUpstream {
        /// The node that names it.
        node: String,
        /// The unknown upstream.
        upstream: String,
    },
    /// The same upstream is listed twice.
    #[error("node {node:?}: upstream {upstream:?} is listed twice")]
    RepeatedUpstream {
        /// The node that lists it.
        node: String,
        /// The repeated upstream.
        upstream: String,
    },
    /// The dependencies form a cycle.
    #[error("node {node:?} is on a dependency cycle: {} -> {node}", cycle.join(" -> "))]
    Cycle {
        /// A node on the cycle.
        node: String,
        /// The nodes of the cycle in data-flow order, starting at `node`.
        cycle: Vec<String>,
    },
    /// A spout has inputs.
    #[error("node {node:?}: a spout has no inputs, but {count} upstream(s) are given")]
    SpoutWithInputs {
        /// The spout.
        node: String,
        /// How many upstreams it was given.
        count: usize,
    },
    /// A worker has no input.
    #[error("node {node:?}: a worker needs at least one upstream")]
    WorkerWithoutInputs {
        /// The worker.
        node: String,
    },
    /// An input's grouping does not fit the node: a bundled worker's
    /// values for one id must all reach the same replica.
    #[error("node {node:?}: its input from {upstream:?} cannot be grouped {grouping}: {reason}")]
    Grouping {
        /// The consumer.
        node: String,
        /// The upstream of the input.
        upstream: String,
        /// The grouping asked for.
        grouping: &'static str,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// The run's key groups are not a count a run can use.
    #[error("the run's key groups must be from 1 to {}, {key_groups} were asked for (Launch::key_groups)", u32::MAX)]
    KeyGroups {
        /// The key groups asked for.
        key_groups: usize,
    },
    /// A node's name is what a replica's log files are named (`J.1` and
    /// replica 1 of `J`, whose logs are `J.1.out` and `J.1.err`).
    #[error("node {node:?}: its log files would be those of {replica} (rename the node)")]
    LogsTaken {
        /// The node.
        node: String,
        /// The replica whose logs have the node's name.
        replica: String,
    },
    /// A node is to run as zero replicas.
    #[error("node {node:?}: a node runs as at least one replica, 0 were asked for")]
    NoReplica {
        /// The node.
        node: String,
    },
    /// More replicas than key groups: some replicas would get no key.
    #[error("node {node:?}: {replicas} replicas read an input grouped by key, but the run has only {key_groups} key groups (raise Launch::key_groups)")]
    FewerKeyGroups {
        /// The node.
        node: String,
        /// Its replicas.
        replicas: usize,
        /// The run's key groups.
        key_groups: usize,
    },
    /// A bundled node's window is zero.
    #[error("node {node:?}: the bundling window must hold at least one bundle")]
    EmptyWindow {
        /// The node.
        node: String,
    },
}

impl GraphError {
    /// The node the error is about, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            GraphError::Empty | GraphError::KeyGroups { .. } => None,
            GraphError::InvalidName { node, .. }
            | GraphError::DuplicateName { node, .. }
            | GraphError::UnknownUpstream { node, .. }
            | GraphError::RepeatedUpstream { node, .. }
            | GraphError::Cycle { node, .. }
            | GraphError::SpoutWithInputs { node, .. }
            | GraphError::WorkerWithoutInputs { node }
            | GraphError::Grouping { node, .. }
            | GraphError::NoReplica { node }
            | GraphError::LogsTaken { node, .. }
            | GraphError::FewerKeyGroups { node, .. }
            | GraphError::EmptyWindow { node } => Some(node),
        }
    }
}

/// Checks a node name: it becomes a file name and part of a shared-memory
/// segment name.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the name is longer than 64 bytes");
    }
    if name.starts_with('.') {
        return Err("the name starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

impl Graph {
    /// Validates `nodes`, in declaration order.
    pub fn new(nodes: Vec<NodeSpec>) -> Result<Self, GraphError> {
        if nodes.is_empty() {
            return Err(GraphError::Empty);
        }
        let mut index: HashMap<&str, NodeId> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            check_name(&node.name).map_err(|reason| GraphError::InvalidName {
                node: node.name.clone(),
                reason,
            })?;
            if let Some(first) = index.insert(&node.name, i) {
                return Err(GraphError::DuplicateName {
                    node: node.name.clone(),
                    first,
                    second: i,
                });
            }
        }
        let mut upstreams = Vec::with_capacity(nodes.len());
        for node in &nodes {
            check_shape(node)?;
            let mut ids = Vec::with_capacity(node.upstreams.len());
            for name in &node.upstreams {
                let id = *index
                    .get(name.as_str())
                    .ok_or_else(|| GraphError::UnknownUpstream {
                        node: node.name.clone(),
                        upstream: name.clone(),
                    })?;
                if ids.contains(&id) {
                    return Err(GraphError::RepeatedUpstream {
                        node: node.name.clone(),
                        upstream: name.clone(),
                    });
                }
                ids.push(id);
            }
            upstreams.push(ids);
        }
        if let Some(cycle) = find_cycle(&upstreams) {
            let names: Vec<String> = cycle.iter().map(|i| nodes[*i].name.clone()).collect();
            return Err(GraphError::Cycle {
                node: names[0].clone(),
                cycle: names,
            });
        }
        Ok(Self::from_parts(nodes, upstreams))
    }

    /// A graph of `nodes` whose upstreams are `upstreams` (by id), built
    /// from a validated one (a run's instances): not checked again.
    pub(crate) fn from_parts(nodes: Vec<NodeSpec>, upstreams: Vec<Vec<NodeId>>) -> Self {
        let mut downstreams = vec![Vec::new(); nodes.len()];
        for (consumer, ups) in upstreams.iter().enumerate() {
            for (input, producer) in ups.iter().enumerate() {
                downstreams[*producer].push((consumer, input));
            }
        }
        Self {
            nodes,
            upstreams,
            downstreams,
        }
    }

    /// The nodes, in declaration order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &NodeSpec {
        &self.nodes[id]
    }

    /// The id of the node with this name.
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The upstreams of `id`, in input order.
    pub fn upstreams(&self, id: NodeId) -> &[NodeId] {
        &self.upstreams[id]
    }

    /// The consumers of `id`'s output: `(consumer, input index at the
    /// consumer)`, in declaration order of the consumers.
    pub fn downstreams(&self, id: NodeId) -> &[(NodeId, usize)] {
        &self.downstreams[id]
    }
}

fn check_shape(node: &NodeSpec) -> Result<(), GraphError> {
    let name = || node.name.clone();
    match node.kind {
        NodeKind::Spout if !node.upstreams.is_empty() => {
            return Err(GraphError::SpoutWithInputs {
                node: name(),
                count: node.upstreams.len(),
            })
        }
        NodeKind::Worker | NodeKind::Bundled(_) if node.upstreams.is_empty() => {
            return Err(GraphError::WorkerWithoutInputs { node: name() })
        }
        NodeKind::Bundled(b) if b.window_len() == 0 => {
            return Err(GraphError::EmptyWindow { node: name() })
        }
        _ => {}
    }
    assert_eq!(
        node.groupings.len(),
        node.upstreams.len(),
        "node {:?}: one grouping per upstream",
        node.name
    );
    if let NodeKind::Bundled(_) = node.kind {
        let odd = node.groupings.iter().position(|g| *g != Grouping::BySeq);
        if let Some(input) = odd {
            return Err(GraphError::Grouping {
                node: name(),
                upstream: node.upstreams[input].clone(),
                grouping: node.groupings[input].label(),
                reason: "a bundled worker's values for one id must reach the same replica, so its inputs are grouped by sequence id",
            });
        }
    }
    Ok(())
}

/// A cycle among the dependencies, as node ids from a node back to itself
/// (excluded), the first one found in declaration order.
fn find_cycle(upstreams: &[Vec<NodeId>]) -> Option<Vec<NodeId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; upstreams.len()];
    let mut path: Vec<NodeId> = Vec::new();
    for root in 0..upstreams.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (node, next upstream to visit).
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        path.push(root);
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&up) = upstreams[*node].get(*next) {
                *next += 1;
                match mark[up] {
                    Mark::New => {
                        mark[up] = Mark::Open;
                        path.push(up);
                        stack.push((up, 0));
                    }
                    Mark::Open => {
                        let start = path.iter().position(|n| *n == up).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        // Upstream edges point backwards: say it downstream.
                        cycle.reverse();
                        cycle.rotate_right(1);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[*node] = Mark::Done;
                path.pop();
                stack.pop();
            }
        }
    }
    None
}

impl fmt::Display for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            NodeKind::Spout => write!(f, "spout {} -> {}", self.name, self.output_type),
            NodeKind::Worker => {
                write!(f, "worker {}(", self.name)?;
                for (i, (up, grouping)) in self.upstreams.iter().zip(&self.groupings).enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    match grouping {
                        Grouping::Shuffle => write!(f, "{sep}{up}")?,
                        other => write!(f, "{sep}{up} {}", other.label())?,
                    }
                }
                write!(f, ") -> {}", self.output_type)
            }
            NodeKind::Bundled(b) => {
                write!(f, "bundled {}({})", self.name, self.upstreams.join(", "))?;
                match b.order() {
                    Order::Sequenced { first } => write!(f, " sequenced from {first}")?,
                    Order::Unordered => write!(f, " unordered")?,
                }
                write!(
                    f,
                    " window {} gap {:?}/{:?} overflow {:?} -> {}",
                    b.window_len(),
                    b.gap_timeout_len(),
                    b.gap_policy(),
                    b.overflow_policy(),
                    self.output_type
                )
            }
        }
    }
}
