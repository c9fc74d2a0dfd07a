//! Graph validation: one test per mistake, each checking the message.

use clusterduck_engine::bundle::Bundling;
use clusterduck_engine::fingerprint::Fingerprint;
use clusterduck_engine::graph::{Graph, GraphError, NodeSpec};

fn err(nodes: Vec<NodeSpec>) -> GraphError {
    Graph::new(nodes).expect_err("the graph should be refused")
}

#[test]
fn empty_topology() {
    let e = err(vec![]);
    assert_eq!(e, GraphError::Empty);
    assert_eq!(
        e.to_string(),
        "the topology is empty: define at least one spout"
    );
}

#[test]
fn duplicate_name() {
    let e = err(vec![
        NodeSpec::spout("A", "u64"),
        NodeSpec::worker("B", ["A"], "u64"),
        NodeSpec::spout("A", "u64"),
    ]);
    assert_eq!(
        e.to_string(),
        "node \"A\" is defined twice (nodes #0 and #2)"
    );
    assert_eq!(e.node(), Some("A"));
}

#[test]
fn unknown_upstream() {
    let e = err(vec![
        NodeSpec::spout("A", "u64"),
        NodeSpec::worker("C", ["A", "B"], "u64"),
    ]);
    assert_eq!(
        e.to_string(),
        "node \"C\": upstream \"B\" is not a node of this topology"
    );
}

#[test]
fn repeated_upstream() {
    let e = err(vec![
        NodeSpec::spout("A", "u64"),
        NodeSpec::bundled("C", ["A", "A"], Bundling::unordered(), "u64"),
    ]);
    assert_eq!(e.to_string(), "node \"C\": upstream \"A\" is listed twice");
}

#[test]
fn cycle() {
    let e = err(vec![
        NodeSpec::spout("S", "u64"),
        NodeSpec::worker("X", ["S", "Z"], "u64"),
        NodeSpec::worker("Y", ["X"], "u64"),
        NodeSpec::worker("Z", ["Y"], "u64"),
    ]);
    assert_eq!(
        e.to_string(),
        "node \"X\" is on a dependency cycle: X -> Y -> Z -> X"
    );
}

#[test]
fn self_loop() {
    let e = err(vec![
        NodeSpec::spout("S", "u64"),
        NodeSpec::worker("W", ["W"], "u64"),
    ]);
    assert_eq!(e.to_string(), "node \"W\" is on a dependency cycle: W -> W");
}

#[test]
fn spout_with_inputs() {
    let mut spout = NodeSpec::spout("B", "u64");
    spout.upstreams.push("A".into());
    let e = err(vec![NodeSpec::spout("A", "u64"), spout]);
    assert_eq!(
        e.to_string(),
        "node \"B\": a spout has no inputs, but 1 upstream(s) are given"
    );
}

#[test]
fn worker_without_inputs() {
    let e = err(vec![NodeSpec::worker("W", Vec::<String>::new(), "u64")]);
    assert_eq!(
        e.to_string(),
        "node \"W\": a worker needs at least one upstream"
    );
}

#[test]
fn empty_window() {
    let e = err(vec![
        NodeSpec::spout("A", "u64"),
        NodeSpec::bundled("C", ["A"], Bundling::sequenced(0).window(0), "u64"),
    ]);
    assert_eq!(
        e.to_string(),
        "node \"C\": the bundling window must hold at least one bundle"
    );
}

#[test]
fn invalid_names() {
    for (name, reason) in [
        ("", "the name is empty"),
        (
            "a/b",
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        ),
        (
            "café",
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        ),
        (".hidden", "the name starts with '.'"),
    ] {
        let e = err(vec![NodeSpec::spout(name, "u64")]);
        assert_eq!(
            e.to_string(),
            format!("node {name:?}: invalid name: {reason}")
        );
    }
    let long = "x".repeat(65);
    assert!(err(vec![NodeSpec::spout(long, "u64")])
        .to_string()
        .ends_with("invalid name: the name is longer than 64 bytes"));
}

#[test]
fn valid_graph_has_edges_in_declaration_order() {
    let g = Graph::new(vec![
        NodeSpec::spout("A", "u64"),
        NodeSpec::spout("B", "String"),
        NodeSpec::bundled("C", ["B", "A"], Bundling::sequenced(0), "String"),
        NodeSpec::worker("D", ["C", "A"], "String"),
    ])
    .unwrap();
    assert_eq!(g.upstreams(2), &[1, 0]);
    assert_eq!(g.downstreams(0), &[(2, 1), (3, 1)]);
    assert_eq!(g.downstreams(2), &[(3, 0)]);
    assert_eq!(g.id_of("D"), Some(3));
}

#[test]
fn fingerprint_changes_with_names_edges_types_and_flags() {
    let base = || {
        vec![
            NodeSpec::spout("A", "u64"),
            NodeSpec::spout("B", "String"),
            NodeSpec::bundled("C", ["A", "B"], Bundling::sequenced(0), "String"),
        ]
    };
    let fp = |nodes| Fingerprint::of(&Graph::new(nodes).unwrap());
    let reference = fp(base());
    assert_eq!(reference, fp(base()), "deterministic");
    let mut renamed = base();
    renamed[1].name = "B2".into();
    renamed[2].upstreams[1] = "B2".into();
    let mut retyped = base();
    retyped[0].output_type = "i64".into();
    let mut rewired = base();
    rewired[2].upstreams.reverse();
    let mut reflagged = base();
    reflagged[2] = NodeSpec::bundled("C", ["A", "B"], Bundling::sequenced(1), "String");
    for other in [renamed, retyped, rewired, reflagged] {
        let other = fp(other);
        assert_ne!(reference.hash(), other.hash(), "{other}");
    }
    assert!(reference
        .description()
        .contains("bundled C(A, B) sequenced from 0"));
}

#[test]
fn a_bundled_worker_takes_its_inputs_by_sequence_id_only() {
    use clusterduck_engine::graph::Grouping;
    let nodes = |grouping| {
        vec![
            NodeSpec::spout("A", "u64"),
            NodeSpec::spout("B", "u64"),
            NodeSpec::bundled("J", ["A", "B"], Bundling::sequenced(0), "u64").grouped(1, grouping),
        ]
    };
    for grouping in [
        Grouping::ByKey,
        Grouping::Shuffle,
        Grouping::Broadcast,
        Grouping::One,
    ] {
        let e = Graph::new(nodes(grouping)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "node \"J\": its input from \"B\" cannot be grouped {}: a bundled worker's values for one id must reach the same replica, so its inputs are grouped by sequence id",
                grouping.label()
            )
        );
        assert_eq!(e.node(), Some("J"));
    }
    // A positive control: by sequence id, as by default.
    assert!(Graph::new(nodes(Grouping::BySeq)).is_ok());
}
