//! Replicas: a node run as several processes (threads in local mode), each
//! taking its share of the node's inputs.
//!
//! A run expands its topology into *instances*, one per replica, as a
//! graph of its own: replica `i` of node `J` is the instance `J[i]` (just
//! `J` when the node has one replica), whose upstreams are every replica of
//! each of `J`'s upstreams. Modes place, start, wire and supervise
//! instances exactly as they did nodes; what a replica adds is known here:
//! which of the node's upstreams each input ring is ([`Replica::inputs`]),
//! and which values of a ring are its own ([`Route`]).

use std::fmt;
use std::ops::Range;

use crate::body::BoxError;
use crate::graph::{Graph, GraphError, Grouping, NodeId, NodeKind, NodeSpec};
use crate::Seq;

/// Default number of key groups of a run: keys are hashed to groups, and
/// groups dealt to replicas in contiguous ranges, so that a later rescale
/// moves whole groups.
pub const DEFAULT_KEY_GROUPS: usize = 128;

/// A key function, type-erased: the key of a value given archived.
pub type KeyFn = std::sync::Arc<dyn Fn(&[u8]) -> Result<u64, BoxError> + Send + Sync>;

/// How many replicas each node runs as, and how keys are grouped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scale {
    /// Per node, in declaration order: its replicas (at least 1).
    pub replicas: Vec<usize>,
    /// Key groups of the run (at least as many as the replicas of any node
    /// with an input grouped by key).
    pub key_groups: usize,
}

impl Scale {
    /// One replica of each of `nodes` nodes.
    pub fn single(nodes: usize) -> Self {
        Self {
            replicas: vec![1; nodes],
            key_groups: DEFAULT_KEY_GROUPS,
        }
    }
}

/// One replica of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The node.
    pub node: NodeId,
    /// Its index among the node's replicas.
    pub index: usize,
    /// The node's replicas.
    pub count: usize,
    /// Per input ring of the instance (its upstreams in the instance
    /// graph, in order): which of the node's upstreams it comes from.
    pub inputs: Vec<usize>,
}

/// A topology expanded into its instances.
#[derive(Clone, Debug)]
pub struct Replicated {
    graph: Graph,
    instances: Graph,
    replicas: Vec<Replica>,
    first: Vec<usize>,
    scale: Scale,
}

impl Replicated {
    /// Expands `graph` by `scale`, refusing what cannot run: a node of zero
    /// replicas, more replicas than key groups where keys are grouped.
    pub fn new(graph: Graph, scale: &Scale) -> Result<Self, GraphError> {
        let counts = &scale.replicas;
        assert_eq!(counts.len(), graph.nodes().len(), "replicas per node");
        if scale.key_groups == 0 || u32::try_from(scale.key_groups).is_err() {
            return Err(GraphError::KeyGroups {
                key_groups: scale.key_groups,
            });
        }
        for (spec, &count) in graph.nodes().iter().zip(counts) {
            if count == 0 {
                return Err(GraphError::NoReplica {
                    node: spec.name.clone(),
                });
            }
            if count > scale.key_groups && spec.groupings.contains(&Grouping::ByKey) {
                return Err(GraphError::FewerKeyGroups {
                    node: spec.name.clone(),
                    replicas: count,
                    key_groups: scale.key_groups,
                });
            }
        }
        let mut first = Vec::with_capacity(counts.len());
        let mut total = 0;
        for &count in counts {
            first.push(total);
            total += count;
        }
        let name =
            |node: NodeId, index: usize| instance_name(&graph.node(node).name, index, counts[node]);
        let mut specs = Vec::with_capacity(total);
        let mut edges = Vec::with_capacity(total);
        let mut replicas = Vec::with_capacity(total);
        for (node, spec) in graph.nodes().iter().enumerate() {
            for index in 0..counts[node] {
                let mut upstreams = Vec::new();
                let mut groupings = Vec::new();
                let mut ids = Vec::new();
                let mut inputs = Vec::new();
                for (input, &up) in graph.upstreams(node).iter().enumerate() {
                    for r in 0..counts[up] {
                        upstreams.push(name(up, r));
                        groupings.push(spec.groupings[input]);
                        ids.push(first[up] + r);
                        inputs.push(input);
                    }
                }
                specs.push(NodeSpec {
                    name: name(node, index),
                    kind: spec.kind,
                    upstreams,
                    output_type: spec.output_type.clone(),
                    groupings,
                });
                edges.push(ids);
                replicas.push(Replica {
                    node,
                    index,
                    count: counts[node],
                    inputs,
                });
            }
        }
        // A replica's logs are `J.1.out`: no node may be called `J.1`.
        for spec in &specs {
            let stem = file_stem(&spec.name);
            if stem != spec.name {
                if let Some(node) = graph.nodes().iter().find(|n| n.name == stem) {
                    return Err(GraphError::LogsTaken {
                        node: node.name.clone(),
                        replica: spec.name.clone(),
                    });
                }
            }
        }
        Ok(Self {
            instances: Graph::from_parts(specs, edges),
            graph,
            replicas,
            first,
            scale: scale.clone(),
        })
    }

    /// The topology as declared.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The instances, as a graph: one node per replica.
    pub fn instances(&self) -> &Graph {
        &self.instances
    }

    /// What instance `id` is a replica of.
    pub fn replica(&self, id: NodeId) -> &Replica {
        &self.replicas[id]
    }

    /// The instances of node `node`.
    pub fn of_node(&self, node: NodeId) -> Range<usize> {
        let start = self.first[node];
        start..start + self.replicas_of(node)
    }

    /// How many replicas node `node` runs as.
    pub fn replicas_of(&self, node: NodeId) -> usize {
        self.replicas[self.first[node]].count
    }

    /// How many replicas each node runs as, and the key groups.
    pub fn scale(&self) -> &Scale {
        &self.scale
    }

    /// Which values of input `input` of instance `id` are its own, or
    /// `None` when all are (one replica, or broadcast). `key` is the
    /// consumer's key function for that upstream, if it groups by key.
    pub fn route(&self, id: NodeId, input: usize, key: Option<KeyFn>) -> Option<Route> {
        let replica = &self.replicas[id];
        if replica.count == 1 {
            return None;
        }
        let spec = self.graph.node(replica.node);
        let grouping = spec.groupings[replica.inputs[input]];
        if grouping == Grouping::Broadcast {
            return None;
        }
        // Each producer replica starts dealing at its own index, so that
        // producers that send little do not all start with replica 0.
        let producer = self.instances.upstreams(id)[input];
        Some(Route {
            grouping,
            index: replica.index as u64,
            count: replica.count as u64,
            key_groups: self.scale.key_groups as u64,
            key,
            dealt: self.replicas[producer].index as u64,
        })
    }

    /// Who instance `id` names when upstream `upstream` (of its node's) did
    /// not send a value a bundle needs.
    pub fn blame(&self, id: NodeId, upstream: usize) -> Blame {
        let replica = &self.replicas[id];
        let up = self.graph.upstreams(replica.node)[upstream];
        if self.replicas_of(up) == 1 {
            return Blame::Upstream;
        }
        let inputs: Vec<usize> = (0..replica.inputs.len())
            .filter(|i| replica.inputs[*i] == upstream)
            .collect();
        let up_spec = self.graph.node(up);
        // Replicas that split their inputs by id emit (as a bundled worker
        // does) the ids of their share: id `s` is replica `s mod n`'s.
        let by_seq = matches!(up_spec.kind, NodeKind::Bundled(_))
            || (!up_spec.groupings.is_empty()
                && up_spec.groupings.iter().all(|g| *g == Grouping::BySeq));
        if by_seq {
            Blame::BySeq(inputs)
        } else {
            Blame::Silent
        }
    }

    /// For a sequenced bundled instance of several replicas: its share of
    /// the ids (`seq mod count == index`), which its table runs through in
    /// order. `None` for every other instance.
    pub fn share(&self, id: NodeId) -> Option<Share> {
        let replica = &self.replicas[id];
        let sequenced = matches!(
            self.graph.node(replica.node).kind,
            NodeKind::Bundled(b) if matches!(b.order(), crate::bundle::Order::Sequenced { .. })
        );
        (sequenced && replica.count > 1).then_some(Share {
            index: replica.index as u64,
            count: replica.count as u64,
        })
    }
}

/// Who a consumer names for a value an upstream did not send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The upstream: it runs as one replica.
    Upstream,
    /// The replica whose share the id is: the consumer's inputs from the
    /// upstream's replicas, in replica order.
    BySeq(Vec<usize>),
    /// The replicas the merged upstream waits for (nothing from them yet).
    Silent,
}

/// The name of replica `index` of node `name` of `count` replicas: `name`
/// itself for a single replica, else `name[index]`.
pub fn instance_name(name: &str, index: usize, count: usize) -> String {
    if count == 1 {
        name.to_owned()
    } else {
        format!("{name}[{index}]")
    }
}

/// An instance's name as a file name stem: `J[1]` is `J.1` (logs are
/// `<dir>/J.1.out`, `.err`).
pub fn file_stem(instance: &str) -> String {
    match instance.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((name, index)) => format!("{name}.{index}"),
        None => instance.to_owned(),
    }
}

/// A sequenced replica's share of the ids: those with `seq mod count ==
/// index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// The replica's index.
    pub index: u64,
    /// The node's replicas.
    pub count: u64,
}

impl Share {
    /// The place of `seq` (one of the share's ids) among the share's ids.
    pub fn compress(&self, seq: Seq) -> Seq {
        seq / self.count
    }

    /// The id at place `place` of the share.
    pub fn expand(&self, place: Seq) -> Seq {
        place * self.count + self.index
    }

    /// The place of the share's first id at or after `first`.
    pub fn first_place(&self, first: Seq) -> Seq {
        let ahead = (self.index + self.count - first % self.count) % self.count;
        (first + ahead) / self.count
    }
}

/// Which values of one input ring a replica takes: the others are skipped
/// where they lie (the producer writes each value once, into one ring that
/// every consumer on its host reads).
pub struct Route {
    grouping: Grouping,
    index: u64,
    count: u64,
    key_groups: u64,
    key: Option<KeyFn>,
    /// Values of the ring dealt so far (shuffle).
    dealt: u64,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("grouping", &self.grouping)
            .field("index", &self.index)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// Whether the value with id `seq` and archived `bytes` is this
    /// replica's. An error is a key function that failed on the value.
    #[inline]
    pub fn owns(&mut self, seq: Seq, bytes: &[u8]) -> Result<bool, BoxError> {
        if let Some(owned) = self.owns_id(seq) {
            return Ok(owned);
        }
        Ok(match self.grouping {
            Grouping::Shuffle => {
                let turn = self.dealt;
                self.dealt += 1;
                turn % self.count == self.index
            }
            // By key: the others were answered from the id.
            _ => {
                let key = match &self.key {
                    Some(key) => key(bytes)?,
                    None => {
                        return Err(
                            "internal error: no key function for an input grouped by key".into(),
                        )
                    }
                };
                self.replica_of_group(key_group(key, self.key_groups)) == self.index
            }
        })
    }

    /// Whether the id `seq` is this replica's, for a grouping that looks
    /// at the frame's header only; `None` for the others (shuffle, by
    /// key).
    #[inline]
    pub fn owns_id(&self, seq: Seq) -> Option<bool> {
        match self.grouping {
            Grouping::BySeq => Some(seq % self.count == self.index),
            Grouping::Broadcast => Some(true),
            Grouping::One => Some(self.index == 0),
            Grouping::Shuffle | Grouping::ByKey => None,
        }
    }

    /// The replica that owns key group `group`: groups go to replicas in
    /// contiguous ranges.
    fn replica_of_group(&self, group: u64) -> u64 {
        group * self.count / self.key_groups
    }
}

/// The key group of `key`: mixed first (keys are often small integers or
/// weak hashes), then reduced.
pub fn key_group(key: u64, key_groups: u64) -> u64 {
    // The finaliser of MurmurHash3: every bit of the key moves every bit.
    let mut h = key;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h % key_groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_replace_the_index_brackets() {
        assert_eq!(file_stem("J[1]"), "J.1");
        assert_eq!(file_stem("J"), "J");
        assert_eq!(file_stem("a.b[12]"), "a.b.12");
    }

    #[test]
    fn a_share_compresses_its_ids_to_consecutive_places() {
        let share = Share { index: 2, count: 3 };
        assert_eq!(share.first_place(0), 0);
        assert_eq!(share.expand(share.first_place(0)), 2);
        assert_eq!(share.expand(share.first_place(3)), 5);
        assert_eq!(share.expand(share.first_place(5)), 5);
        assert_eq!(share.expand(share.first_place(6)), 8);
        for seq in [2, 5, 8, 101] {
            assert_eq!(share.expand(share.compress(seq)), seq);
            assert_eq!(share.compress(seq + 3), share.compress(seq) + 1);
        }
    }

    #[test]
    fn every_key_group_has_exactly_one_replica_and_every_replica_some() {
        for count in 1..=16u64 {
            let route = |index| Route {
                grouping: Grouping::ByKey,
                index,
                count,
                key_groups: 128,
                key: None,
                dealt: 0,
            };
            let mut owners = vec![0u32; 128];
            for index in 0..count {
                let r = route(index);
                let mut any = false;
                for group in 0..128 {
                    if r.replica_of_group(group) == index {
                        owners[group as usize] += 1;
                        any = true;
                    }
                }
                assert!(any, "replica {index} of {count} owns a group");
            }
            assert!(
                owners.iter().all(|o| *o == 1),
                "{count} replicas: {owners:?}"
            );
        }
    }
}
