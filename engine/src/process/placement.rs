//! Which host runs which node: explicit placements first, then round-robin
//! over the hosts in declaration order (deterministic, never hash order).

use std::collections::HashMap;

use crate::graph::{Graph, NodeId};

/// The host name that means "this machine, without SSH".
pub const LOCAL_HOST: &str = "localhost";

/// Why a placement was refused. Each variant names the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// A placement names a node the topology does not have.
    #[error("placement of node {node:?}: no such node in the topology")]
    UnknownNode {
        /// The node named.
        node: String,
    },
    /// A node is placed on a host that is not among the launch's hosts.
    #[error("node {node:?} is placed on host {host:?}, which is not among the hosts ({})", hosts.join(", "))]
    UnknownHost {
        /// The node.
        node: String,
        /// The host it was placed on.
        host: String,
        /// The hosts of the launch.
        hosts: Vec<String>,
    },
    /// A node is placed twice.
    #[error("node {node:?} is placed twice")]
    PlacedTwice {
        /// The node.
        node: String,
    },
    /// A replica is placed that the node does not run.
    #[error("placement of replica {index} of node {node:?}: the node runs as {replicas} replica(s), numbered from 0")]
    NoSuchReplica {
        /// The node.
        node: String,
        /// The replica named.
        index: usize,
        /// The node's replicas.
        replicas: usize,
    },
}

/// The host of every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    hosts: Vec<String>,
    node_host: Vec<usize>,
}

/// The instance `J[i]` names: `J` itself for a node of one replica and
/// index 0.
fn replica_id(graph: &Graph, instance: &str) -> Result<NodeId, PlacementError> {
    let unknown = || PlacementError::UnknownNode {
        node: instance.to_owned(),
    };
    let (node, index) = instance
        .strip_suffix(']')
        .and_then(|s| s.rsplit_once('['))
        .and_then(|(node, index)| Some((node, index.parse::<usize>().ok()?)))
        .ok_or_else(unknown)?;
    if let Some(id) = graph.id_of(instance) {
        return Ok(id);
    }
    let prefix = format!("{node}[");
    let replicas = graph
        .nodes()
        .iter()
        .filter(|n| n.name.starts_with(&prefix))
        .count();
    match (graph.id_of(node), replicas) {
        (Some(id), 0) if index == 0 => Ok(id),
        (Some(_), 0) => Err(PlacementError::NoSuchReplica {
            node: node.to_owned(),
            index,
            replicas: 1,
        }),
        (None, 0) => Err(unknown()),
        (_, replicas) => Err(PlacementError::NoSuchReplica {
            node: node.to_owned(),
            index,
            replicas,
        }),
    }
}

impl Placement {
    /// Places the nodes of `graph` on `hosts` (this machine if empty):
    /// `explicit` pairs of (node, host) first, every other node round-robin
    /// in declaration order.
    pub fn new(
        graph: &Graph,
        hosts: &[String],
        explicit: &[(String, String)],
    ) -> Result<Self, PlacementError> {
        let hosts: Vec<String> = if hosts.is_empty() {
            vec![LOCAL_HOST.to_owned()]
        } else {
            hosts.to_vec()
        };
        let mut chosen: HashMap<NodeId, usize> = HashMap::new();
        // Whole nodes first (a node's name places all its replicas), then
        // single replicas (`J[1]`), which may move one of them.
        let (whole, single): (Vec<_>, Vec<_>) =
            explicit.iter().partition(|(node, _)| !node.ends_with(']'));
        let host_index = |node: &str, host: &str| {
            hosts
                .iter()
                .position(|h| h == host)
                .ok_or_else(|| PlacementError::UnknownHost {
                    node: node.to_owned(),
                    host: host.to_owned(),
                    hosts: hosts.clone(),
                })
        };
        for (node, host) in whole {
            let replicas = format!("{node}[");
            let ids: Vec<NodeId> = graph
                .nodes()
                .iter()
                .enumerate()
                .filter(|(_, n)| n.name == *node || n.name.starts_with(&replicas))
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                return Err(PlacementError::UnknownNode { node: node.clone() });
            }
            let h = host_index(node, host)?;
            for id in ids {
                if chosen.insert(id, h).is_some() {
                    return Err(PlacementError::PlacedTwice { node: node.clone() });
                }
            }
        }
        let mut moved: Vec<NodeId> = Vec::new();
        for (instance, host) in single {
            let id = replica_id(graph, instance)?;
            if moved.contains(&id) {
                return Err(PlacementError::PlacedTwice {
                    node: instance.clone(),
                });
            }
            moved.push(id);
            chosen.insert(id, host_index(instance, host)?);
        }
        let mut next = 0;
        let node_host = (0..graph.nodes().len())
            .map(|id| {
                chosen.get(&id).copied().unwrap_or_else(|| {
                    let h = next % hosts.len();
                    next += 1;
                    h
                })
            })
            .collect();
        Ok(Self { hosts, node_host })
    }

    /// The host of node `id`.
    pub fn host_of(&self, id: NodeId) -> &str {
        &self.hosts[self.node_host[id]]
    }

    /// Whether nodes `a` and `b` run on the same host.
    pub fn same_host(&self, a: NodeId, b: NodeId) -> bool {
        self.node_host[a] == self.node_host[b]
    }

    /// The distinct hosts that run a node, in launch order.
    pub fn used_hosts(&self) -> Vec<&str> {
        let mut used: Vec<usize> = self.node_host.clone();
        used.sort_unstable();
        used.dedup();
        used.into_iter().map(|h| self.hosts[h].as_str()).collect()
    }

    /// Whether `host` means this machine, reached without SSH.
    pub fn is_local(host: &str) -> bool {
        matches!(host, LOCAL_HOST | "127.0.0.1" | "::1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::NodeSpec;

    fn graph() -> Graph {
        Graph::new(vec![
            NodeSpec::spout("A", "u64"),
            NodeSpec::spout("B", "u64"),
            NodeSpec::worker("C", ["A", "B"], "u64"),
            NodeSpec::worker("D", ["C"], "u64"),
        ])
        .unwrap()
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn round_robin_in_declaration_order() {
        let p = Placement::new(&graph(), &hosts(&["h1", "h2", "h3"]), &[]).unwrap();
        let got: Vec<&str> = (0..4).map(|i| p.host_of(i)).collect();
        assert_eq!(got, ["h1", "h2", "h3", "h1"]);
        assert!(p.same_host(0, 3) && !p.same_host(0, 1));
        assert_eq!(p.used_hosts(), ["h1", "h2", "h3"]);
    }

    #[test]
    fn explicit_placements_come_first_and_the_rest_go_round() {
        let explicit = vec![("C".to_owned(), "h2".to_owned())];
        let p = Placement::new(&graph(), &hosts(&["h1", "h2"]), &explicit).unwrap();
        let got: Vec<&str> = (0..4).map(|i| p.host_of(i)).collect();
        assert_eq!(got, ["h1", "h2", "h2", "h1"]);
    }

    #[test]
    fn no_hosts_means_this_machine() {
        let p = Placement::new(&graph(), &[], &[]).unwrap();
        assert!((0..4).all(|i| p.host_of(i) == LOCAL_HOST));
    }

    #[test]
    fn mistakes_name_the_node() {
        let e =
            Placement::new(&graph(), &hosts(&["h1"]), &[("C".into(), "h9".into())]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node \"C\" is placed on host \"h9\", which is not among the hosts (h1)"
        );
        let e =
            Placement::new(&graph(), &hosts(&["h1"]), &[("Z".into(), "h1".into())]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "placement of node \"Z\": no such node in the topology"
        );
        let twice = vec![("C".into(), "h1".into()), ("C".into(), "h1".into())];
        let e = Placement::new(&graph(), &hosts(&["h1"]), &twice).unwrap_err();
        assert_eq!(e.to_string(), "node \"C\" is placed twice");
    }

    #[test]
    fn a_replica_placed_alone_moves_from_where_its_node_is_placed() {
        use crate::replica::{Replicated, Scale};
        let scale = Scale {
            replicas: vec![1, 1, 3, 1],
            key_groups: 128,
        };
        let run = Replicated::new(graph(), &scale).unwrap();
        let instances = run.instances();
        let place = |explicit: &[(&str, &str)]| {
            let explicit: Vec<(String, String)> = explicit
                .iter()
                .map(|(n, h)| ((*n).to_owned(), (*h).to_owned()))
                .collect();
            Placement::new(instances, &hosts(&["h1", "h2", "h3"]), &explicit)
        };
        // A, B, C[0], C[1], C[2], D.
        let p = place(&[("C", "h3"), ("C[1]", "h1")]).unwrap();
        let got: Vec<&str> = (0..6).map(|i| p.host_of(i)).collect();
        assert_eq!(got, ["h1", "h2", "h3", "h1", "h3", "h3"]);
        // Index 0 of a node of one replica is the node.
        let p = place(&[("D[0]", "h2")]).unwrap();
        assert_eq!(p.host_of(5), "h2");
        let e = place(&[("C[3]", "h1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "placement of replica 3 of node \"C\": the node runs as 3 replica(s), numbered from 0"
        );
        let e = place(&[("D[1]", "h1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "placement of replica 1 of node \"D\": the node runs as 1 replica(s), numbered from 0"
        );
        let e = place(&[("C[1]", "h1"), ("C[1]", "h2")]).unwrap_err();
        assert_eq!(e.to_string(), "node \"C[1]\" is placed twice");
    }
}
