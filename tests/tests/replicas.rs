//! Nodes run as replicas, through the public API, in local mode (process
//! mode and hosts: the wordcount example's tests): how each grouping splits
//! an input, sequencing within a replica, spout replicas, names in reports,
//! and what is refused before anything starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterduck::{
    key_of, Bundling, Emitter, Error, GraphError, Launch, Node, RunReport, Topology,
};
use clusterduck_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const N: u64 = 3000;

fn numbers(t: &mut Topology, name: &str, n: u64) -> Node<u64> {
    t.spout(name, move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    })
}

/// Values in of each replica `name[i]` of a node of `count` replicas.
fn taken(report: &RunReport, name: &str, count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| {
            let replica = format!("{name}[{i}]");
            report
                .node(&replica)
                .unwrap_or_else(|| panic!("no {replica} in the report:\n{report}"))
                .messages_in
        })
        .collect()
}

/// Runs `S -> W` (W as three replicas, its input as `input` makes it) and
/// returns the ids W's replicas emitted (each emits the id it got) and the
/// report.
fn split_three_ways<F>(input: F) -> (Vec<u64>, RunReport)
where
    F: for<'a> FnOnce(&'a Node<u64>) -> Box<dyn FnOnce(&mut Topology) -> Node<u64> + 'a>,
{
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", N);
    let w = input(&s)(&mut t);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let report = t
        .launch(
            Launch::local()
                .replicas(&w, 3)
                .debug(&w, move |_, v: u64| sink.lock().unwrap().push(v)),
        )
        .expect("the run succeeds");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    (seen, report)
}

fn echo(seq: u64, v: u64, out: &mut Emitter<u64>) -> Result<(), clusterduck::BoxError> {
    assert_eq!(seq, v);
    out.emit(v);
    Ok(())
}

#[test]
fn shuffle_deals_every_value_to_one_replica_round_robin() {
    let _w = watchdog("shuffle", LIMIT);
    let (seen, report) = split_three_ways(|s| Box::new(move |t| t.worker("W", s, echo)));
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "each value once");
    assert_eq!(taken(&report, "W", 3), vec![N / 3; 3]);
}

#[test]
fn broadcast_gives_every_replica_every_value() {
    let _w = watchdog("broadcast", LIMIT);
    let (seen, report) =
        split_three_ways(|s| Box::new(move |t| t.worker("W", s.broadcast(), echo)));
    let thrice: Vec<u64> = (0..N).flat_map(|i| [i, i, i]).collect();
    assert_eq!(seen, thrice);
    assert_eq!(taken(&report, "W", 3), vec![N; 3]);
}

#[test]
fn one_gives_replica_zero_every_value_and_the_others_none() {
    let _w = watchdog("one", LIMIT);
    let (seen, report) = split_three_ways(|s| Box::new(move |t| t.worker("W", s.one(), echo)));
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
    assert_eq!(taken(&report, "W", 3), vec![N, 0, 0]);
}

#[test]
fn by_seq_gives_replica_i_the_ids_congruent_to_i() {
    let _w = watchdog("by-seq", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", N);
    // Each replica emits (its residue class as it sees it, the id).
    let w = t.worker("W", s.by_seq(), |seq, _v: u64, out: &mut Emitter<u64>| {
        out.emit(seq);
        Ok(())
    });
    let report = t.launch(Launch::local().replicas(&w, 3)).unwrap();
    assert_eq!(taken(&report, "W", 3), vec![N / 3; 3]);
    // The report alone cannot tell which ids; a sequenced bundled node can
    // (next test). Here: every id once.
    assert_eq!(report.node("W[0]").unwrap().messages_out, N / 3);
}

#[test]
fn by_key_sends_every_value_of_a_key_to_the_same_replica() {
    let _w = watchdog("by-key", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", N);
    // Keys 0..10; each replica counts what it sees per key, and emits
    // (key, its count so far). A key split between replicas would never
    // reach its total in one of them.
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let w = t.worker_archived(
        "W",
        s.by_key(|v| key_of(format!("k{}", v.to_native() % 10))),
        move |_, v, out: &mut Emitter<(u64, u64)>| {
            let key = v.to_native() % 10;
            let n = counts.entry(key).or_default();
            *n += 1;
            out.emit((key, *n));
            Ok(())
        },
    );
    let best = Arc::new(Mutex::new(BTreeMap::<u64, u64>::new()));
    let sink = best.clone();
    let report = t
        .launch(
            Launch::local()
                .replicas(&w, 4)
                .debug(&w, move |_, (key, n): (u64, u64)| {
                    let mut best = sink.lock().unwrap();
                    let b = best.entry(key).or_default();
                    *b = (*b).max(n);
                }),
        )
        .unwrap();
    let best = best.lock().unwrap().clone();
    assert_eq!(best, (0..10).map(|k| (k, N / 10)).collect());
    let taken = taken(&report, "W", 4);
    assert_eq!(taken.iter().sum::<u64>(), N);
    // Whole keys per replica: each share is a multiple of a key's count.
    assert!(taken.iter().all(|t| t % (N / 10) == 0), "{taken:?}");
}

#[test]
fn a_sequenced_bundled_node_as_replicas_runs_each_share_in_increasing_order() {
    let _w = watchdog("sequenced-replicas", LIMIT);
    let mut t = Topology::new();
    // B sends its ids in reverse blocks of 10: each replica's table must
    // reorder its share.
    let a = numbers(&mut t, "A", N);
    let b = t.spout("B", |out| {
        for block in (0..N).step_by(10) {
            for i in (block..block + 10).rev() {
                out.send(i, i * 2)?;
            }
        }
        Ok(())
    });
    let j = t.bundled(
        "J",
        (&a, &b),
        Bundling::sequenced(0).window(64),
        |seq, (x, y): (u64, u64), out: &mut Emitter<u64>| {
            assert_eq!((x, y), (seq, seq * 2));
            out.emit(seq);
            Ok(())
        },
    );
    let order = Arc::new(Mutex::new(Vec::new()));
    let sink = order.clone();
    let report = t
        .launch(
            Launch::local()
                .replicas(&j, 3)
                .debug(&j, move |seq, v: u64| {
                    assert_eq!(seq, v);
                    sink.lock().unwrap().push(seq)
                }),
        )
        .unwrap();
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order.iter().copied().collect::<BTreeSet<u64>>(),
        (0..N).collect(),
        "every bundle once"
    );
    assert_eq!(order.len() as u64, N);
    // Each replica's outputs reach the debugger in the order it emitted
    // them: its share, increasing.
    for r in 0..3 {
        let share: Vec<u64> = order.iter().copied().filter(|s| s % 3 == r).collect();
        let expected: Vec<u64> = (0..N).filter(|s| s % 3 == r).collect();
        assert_eq!(share, expected, "replica {r}'s share, in order");
    }
    for i in 0..3 {
        let node = report.node(&format!("J[{i}]")).unwrap();
        assert_eq!(
            node.messages_in,
            2 * N / 3,
            "J[{i}] takes its share of both"
        );
        assert_eq!(
            node.policy.gaps + node.policy.late + node.policy.duplicates,
            0
        );
    }
}

#[test]
fn a_spout_as_replicas_is_told_which_one_it_is() {
    let _w = watchdog("spout-replicas", LIMIT);
    let mut t = Topology::new();
    let s = t.spout("S", |out| {
        let (me, all) = (out.replica() as u64, out.replicas() as u64);
        assert_eq!(all, 2);
        for i in (0..N).filter(|i| i % all == me) {
            out.send(i, i)?;
        }
        Ok(())
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let k = t.sink("K", [&s], move |seq, v: u64| {
        assert_eq!(seq, v);
        sink.lock().unwrap().push(v);
        Ok(())
    });
    let _ = k;
    let report = t.launch(Launch::local().replicas(&s, 2)).unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
    assert_eq!(report.node("S[0]").unwrap().messages_out, N / 2);
    assert_eq!(report.node("S[1]").unwrap().messages_out, N / 2);
    assert_eq!(report.node("K").unwrap().messages_in, N);
}

#[test]
fn zero_replicas_and_more_replicas_than_key_groups_are_refused_naming_the_node() {
    let _w = watchdog("replicas-refused", LIMIT);
    let build = || {
        let mut t = Topology::new();
        let s = numbers(&mut t, "S", 10);
        let w = t.worker("W", s.by_key(|v| v.to_native()), echo);
        (t, w)
    };
    let (t, w) = build();
    let e = t.launch(Launch::local().replicas(&w, 0)).unwrap_err();
    assert!(
        matches!(&e, Error::Topology(GraphError::NoReplica { node }) if node == "W"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "invalid topology: node \"W\": a node runs as at least one replica, 0 were asked for"
    );
    let (t, w) = build();
    let e = t
        .launch(Launch::local().replicas(&w, 5).key_groups(4))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("node \"W\": 5 replicas read an input grouped by key, but the run has only 4 key groups (raise Launch::key_groups)"),
        "{e}"
    );
    // A positive control: the same within the key groups runs.
    let (t, w) = build();
    let report = t
        .launch(Launch::local().replicas(&w, 4).key_groups(4))
        .unwrap();
    assert_eq!(taken(&report, "W", 4).iter().sum::<u64>(), 10);
}

#[test]
fn a_sequenced_bundled_node_over_replicas_sees_one_upstream_in_id_order() {
    let _w = watchdog("order-across-replicas", LIMIT);
    let mut t = Topology::new();
    let a = numbers(&mut t, "A", N);
    // J: three sequenced replicas, each emitting its share in order.
    let j = t.bundled(
        "J",
        (&a,),
        Bundling::sequenced(0),
        |seq, (v,): (u64,), out: &mut Emitter<u64>| {
            out.emit(v * 10 + seq % 3);
            Ok(())
        },
    );
    // K: two plain replicas, each taking its ids by seq.
    let k = t.worker("K", a.by_seq(), |_, v: u64, out: &mut Emitter<u64>| {
        out.emit(v + 1);
        Ok(())
    });
    let d = t.bundled(
        "D",
        (&a, &j, &k),
        Bundling::sequenced(0).window(16),
        |seq, (x, y, z): (u64, u64, u64), out: &mut Emitter<u64>| {
            assert_eq!((x, y, z), (seq, seq * 10 + seq % 3, seq + 1));
            out.emit(seq);
            Ok(())
        },
    );
    let order = Arc::new(Mutex::new(Vec::new()));
    let sink = order.clone();
    let report = t
        .launch(
            Launch::local()
                .replicas(&j, 3)
                .replicas(&k, 2)
                .debug(&d, move |seq, _: u64| sink.lock().unwrap().push(seq)),
        )
        .unwrap();
    // Id n after n - 1, whichever replica of J and K produced it.
    assert_eq!(*order.lock().unwrap(), (0..N).collect::<Vec<_>>());
    let d = report.node("D").unwrap();
    assert_eq!(d.messages_in, 3 * N);
    assert_eq!(d.policy.gaps + d.policy.late + d.policy.duplicates, 0);
}

#[test]
fn a_gap_of_a_replicated_upstream_names_the_replica_whose_id_it_is() {
    let _w = watchdog("gap-names-replica", LIMIT);
    let mut t = Topology::new();
    let a = numbers(&mut t, "A", 100);
    // K's replica 1 takes the odd ids; it drops 7.
    let k = t.worker("K", a.by_seq(), |seq, v: u64, out: &mut Emitter<u64>| {
        if seq != 7 {
            out.emit(v);
        }
        Ok(())
    });
    assert_eq!(
        gap_over(t, &a, &k),
        "node D: seq 7 never completed: nothing from K[1] within the gap timeout (gap policy: fail)"
    );
}

/// Runs `D`, bundled over `a` and `up` (two replicas), sequenced, failing
/// at a gap after 200 ms; returns the run's error.
fn gap_over(mut t: Topology, a: &Node<u64>, up: &Node<u64>) -> String {
    t.bundled(
        "D",
        (a, up),
        Bundling::sequenced(0).gap_timeout(Duration::from_millis(200)),
        |_, (_x, _y): (u64, u64), _: &mut Emitter<u64>| Ok(()),
    );
    t.launch(Launch::local().replicas(up, 2))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_gap_of_a_silent_spout_replica_names_it() {
    let _w = watchdog("gap-names-silent-replica", LIMIT);
    let mut t = Topology::new();
    let a = numbers(&mut t, "A", 100);
    // S's replica 0 sends the even ids; replica 1, which should send the
    // odd ones, sends nothing and does not end until told to stop.
    let s = t.spout("S", |out: &mut clusterduck::Dispatcher<u64>| {
        if out.replica() == 1 {
            while !out.is_stopping() {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Ok(());
        }
        for i in (0..100).step_by(2) {
            out.send(i, i)?;
        }
        Ok(())
    });
    assert_eq!(
        gap_over(t, &a, &s),
        "node D: seq 1 never completed: nothing from S[1] within the gap timeout (gap policy: fail)"
    );
}

#[test]
fn replicas_of_a_node_of_another_topology_are_refused() {
    let _w = watchdog("replicas-foreign", LIMIT);
    let mut other = Topology::new();
    let foreign = numbers(&mut other, "F", 1);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 1);
    t.sink("K", &s, |_, _v: u64| Ok(()));
    let e = t.launch(Launch::local().replicas(&foreign, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "replicas: node \"F\" is not a node of this topology"
    );
}

/// Sequenced bundled `D` (`d` replicas) over `A` and `J` (sequenced, `j`
/// replicas), small rings: every bundle once, each share in order.
fn replicas_over_replicas(j_replicas: usize, d_replicas: usize) {
    const MANY: u64 = 100_000;
    let mut t = Topology::new();
    let a = numbers(&mut t, "A", MANY);
    let j = t.bundled(
        "J",
        (&a,),
        Bundling::sequenced(0),
        |_, (v,): (u64,), out: &mut Emitter<u64>| {
            out.emit(v * 2);
            Ok(())
        },
    );
    let d = t.bundled(
        "D",
        (&a, &j),
        Bundling::sequenced(0),
        |seq, (x, y): (u64, u64), out: &mut Emitter<u64>| {
            assert_eq!((x, y), (seq, seq * 2));
            out.emit(seq);
            Ok(())
        },
    );
    let order = Arc::new(Mutex::new(Vec::new()));
    let sink = order.clone();
    t.launch(
        Launch::local()
            .ring_bytes(64 << 10)
            .replicas(&j, j_replicas)
            .replicas(&d, d_replicas)
            .debug(&d, move |seq, _: u64| sink.lock().unwrap().push(seq)),
    )
    .unwrap();
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len() as u64, MANY);
    for r in 0..d_replicas as u64 {
        let share: Vec<u64> = order
            .iter()
            .copied()
            .filter(|s| s % d_replicas as u64 == r)
            .collect();
        let expected: Vec<u64> = (0..MANY).filter(|s| s % d_replicas as u64 == r).collect();
        assert_eq!(share, expected, "D[{r}]'s share, in order");
    }
}

#[test]
fn replicas_over_replicas_run_whatever_their_counts() {
    let _w = watchdog("replicas-over-replicas", LIMIT);
    // D[i] gets nothing from some of J's replicas when the counts share a
    // factor: it must not wait for them.
    replicas_over_replicas(2, 2);
    replicas_over_replicas(2, 4);
    replicas_over_replicas(3, 2);
}

#[test]
fn a_replica_that_gets_nothing_does_not_hold_a_sequenced_consumer_back() {
    let _w = watchdog("starved-replica", LIMIT);
    let mut t = Topology::new();
    let a = numbers(&mut t, "A", 50_000);
    // Every value has the same key: one of K's replicas gets them all, the
    // other nothing until A ends.
    let k = t.worker_archived("K", a.by_key(|_| 7), |_, v, out: &mut Emitter<u64>| {
        out.emit(v.to_native());
        Ok(())
    });
    let d = t.bundled(
        "D",
        (&a, &k),
        Bundling::sequenced(0),
        |seq, (x, y): (u64, u64), out: &mut Emitter<u64>| {
            assert_eq!((x, y), (seq, seq));
            out.emit(seq);
            Ok(())
        },
    );
    let report = t
        .launch(Launch::local().ring_bytes(64 << 10).replicas(&k, 2))
        .unwrap();
    assert_eq!(report.node("D").unwrap().messages_out, 50_000);
    let _ = d;
    let taken = taken(&report, "K", 2);
    assert!(taken.contains(&0) && taken.contains(&50_000), "{taken:?}");
}

#[test]
fn key_groups_and_log_names_that_cannot_work_are_refused() {
    let _w = watchdog("replicas-refused-more", LIMIT);
    let build = || {
        let mut t = Topology::new();
        let s = numbers(&mut t, "S", 10);
        let w = t.worker("W", &s, echo);
        t.sink("W.1", &w, |_, _v: u64| Ok(()));
        (t, w)
    };
    let (t, _) = build();
    let e = t.launch(Launch::local().key_groups(0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid topology: the run's key groups must be from 1 to 4294967295, 0 were asked for (Launch::key_groups)"
    );
    // Replica 1 of W logs to W.1.out, which is node W.1's.
    let (t, w) = build();
    let e = t.launch(Launch::local().replicas(&w, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid topology: node \"W.1\": its log files would be those of W[1] (rename the node)"
    );
    // A positive control: the same topology with W as one replica runs.
    let (t, _) = build();
    let report = t.launch(Launch::local()).unwrap();
    assert_eq!(report.node("W.1").unwrap().messages_in, 10);
}
