//! The step of a node (`NodeCore`) driven directly, without I/O or
//! threads: what the runtimes of every mode drive.

use std::time::{Duration, Instant};

use clusterduck_engine::bundle::{Bundling, GapPolicy, Notice, PolicyCounts};
use clusterduck_engine::graph::NodeSpec;
use clusterduck_engine::node::{Input, NodeCore, Step};

fn worker(upstreams: &[&str]) -> NodeCore<&'static str> {
    NodeCore::new(&NodeSpec::worker("W", upstreams.to_vec(), "&str"))
}

fn bundled(bundling: Bundling) -> NodeCore<&'static str> {
    NodeCore::new(&NodeSpec::bundled("C", ["A", "B"], bundling, "&str"))
}

fn run(seq: u64, input: Input<&'static str>) -> Option<Step<&'static str>> {
    Some(Step::Run { seq, input })
}

#[test]
fn a_worker_takes_one_value_at_a_time_from_any_upstream_until_all_ended() {
    let now = Instant::now();
    let mut core = worker(&["A", "B"]);
    assert!(!core.bundles() && !core.deadline_matters());
    assert!(core.accepts(0) && core.accepts(1));
    core.offer(1, 7, "b7", now);
    // One value waits for its step: nothing more is read meanwhile.
    assert!(!core.accepts(0) && !core.accepts(1), "back-pressure");
    assert_eq!(core.buffered(), 1);
    assert_eq!(
        core.poll(now),
        run(
            7,
            Input::One {
                upstream: 1,
                value: "b7"
            }
        )
    );
    assert_eq!(core.poll(now), None);
    assert!(core.accepts(0) && core.accepts(1));
    core.end(0, now);
    assert!(!core.accepts(0) && core.accepts(1));
    assert!(!core.is_finished(), "B has not ended");
    core.offer(1, 8, "b8", now);
    core.end(1, now);
    assert!(!core.is_finished(), "a step is still to be taken");
    assert!(matches!(core.poll(now), Some(Step::Run { seq: 8, .. })));
    assert!(core.is_finished());
    assert_eq!(core.counts(), PolicyCounts::default());
    assert_eq!((core.lockstep_seq(), core.deadline()), (None, None));
    assert!(!core.leads(0));
}

#[test]
fn a_bundled_core_delivers_bundles_and_passes_on_what_its_policies_did() {
    let now = Instant::now();
    let mut core = bundled(Bundling::sequenced(0).window(8));
    assert!(core.bundles() && core.deadline_matters());
    assert_eq!(
        core.lockstep_seq(),
        Some(0),
        "idle: the next id would run at once"
    );
    core.offer(0, 1, "a1", now);
    core.offer(0, 0, "a0", now);
    assert_eq!(core.lockstep_seq(), None, "values wait in the table");
    assert!(core.leads(0) && !core.leads(1));
    core.offer(1, 0, "b0", now);
    assert_eq!(
        core.poll(now),
        run(0, Input::Bundle(vec!["a0", "b0"].into()))
    );
    core.offer(0, 1, "again", now);
    assert_eq!(
        core.poll(now),
        Some(Step::Notice(Notice::Duplicate {
            seq: 1,
            upstream: 0
        }))
    );
    core.offer(1, 1, "b1", now);
    assert_eq!(
        core.poll(now),
        run(1, Input::Bundle(vec!["a1", "b1"].into()))
    );
    assert_eq!(core.lockstep_seq(), Some(2));
    core.delivered_in_lockstep(2);
    assert_eq!(core.lockstep_seq(), Some(3));
    core.offer(1, 1, "late", now);
    assert_eq!(
        core.poll(now),
        Some(Step::Notice(Notice::Late {
            seq: 1,
            upstream: 1
        }))
    );
    let counts = core.counts();
    assert_eq!((counts.duplicates, counts.late), (1, 1));
    core.end(0, now);
    core.end(1, now);
    assert_eq!(core.poll(now), None);
    assert!(core.is_finished());
}

#[test]
fn a_gap_is_fatal_at_its_deadline_unless_the_run_drains() {
    let timeout = Duration::from_millis(50);
    let start = Instant::now();
    for draining in [false, true] {
        let mut core = bundled(Bundling::sequenced(0).gap_timeout(timeout));
        core.offer(0, 0, "a0", start);
        core.offer(0, 1, "a1", start);
        core.offer(1, 1, "b1", start);
        assert_eq!(core.deadline(), Some(start + timeout));
        assert_eq!(core.poll(start + timeout / 2), None, "before the deadline");
        if draining {
            core.drain();
        }
        let gap = Notice::Gap {
            seq: 0,
            missing: vec![1],
        };
        let at = start + timeout;
        if draining {
            assert_eq!(core.poll(at), Some(Step::Notice(gap)));
            assert_eq!(
                core.poll(at),
                run(1, Input::Bundle(vec!["a1", "b1"].into()))
            );
            assert_eq!(core.counts().gaps, 1);
        } else {
            assert_eq!(core.poll(at), Some(Step::Fatal(gap)));
            assert_eq!(core.poll(at), None, "nothing after a fatal step");
            assert!(core.is_finished(), "a failed core is done");
        }
    }
}

#[test]
fn an_unordered_core_under_gap_skip_gives_up_its_oldest_bundle() {
    let timeout = Duration::from_millis(10);
    let start = Instant::now();
    let mut core = bundled(
        Bundling::unordered()
            .gap_timeout(timeout)
            .on_gap(GapPolicy::Skip),
    );
    assert_eq!(
        core.lockstep_seq(),
        None,
        "unordered tables have no lockstep"
    );
    core.offer(0, 42, "a42", start);
    assert_eq!(core.buffered(), 1);
    assert_eq!(
        core.poll(start + timeout),
        Some(Step::Notice(Notice::Gap {
            seq: 42,
            missing: vec![1]
        }))
    );
    assert_eq!(core.buffered(), 0);
}

#[test]
#[should_panic(expected = "a spout has no input core")]
fn a_spout_has_no_core() {
    let _: NodeCore<()> = NodeCore::new(&NodeSpec::spout("S", "u64"));
}

#[test]
#[should_panic(expected = "bundle 0 delivered to a merging node")]
fn a_merging_core_refuses_a_lockstep_delivery() {
    worker(&["A"]).delivered_in_lockstep(0);
}

/// `C` bundled over `A` (one input) and `B` as two replicas (inputs 1, 2).
fn over_replicas(bundling: Bundling) -> NodeCore<&'static str> {
    let spec = NodeSpec::bundled("C", ["A", "B"], bundling, "&str");
    NodeCore::with_inputs(&spec, vec![0, 1, 1], None)
}

#[test]
fn the_replicas_of_an_upstream_make_one_stream_that_the_table_orders() {
    let now = Instant::now();
    let mut core = over_replicas(Bundling::sequenced(0));
    core.offer(0, 0, "a0", now);
    core.offer(0, 1, "a1", now);
    // B[1] has id 1: it goes to the table at once, and waits there for 0.
    core.offer(2, 1, "b1", now);
    assert_eq!(core.poll(now), None);
    assert!(core.accepts(1) && core.accepts(2));
    assert_eq!(core.silent_inputs(1, 0), vec![1], "B[0] has sent nothing");
    core.offer(1, 0, "b0", now);
    assert_eq!(
        core.poll(now),
        run(0, Input::Bundle(vec!["a0", "b0"].into()))
    );
    assert_eq!(
        core.poll(now),
        run(1, Input::Bundle(vec!["a1", "b1"].into()))
    );
    assert_eq!(
        core.silent_inputs(1, 2),
        vec![1, 2],
        "neither sent 2 or more"
    );
    // B ends when both its replicas did.
    core.end(0, now);
    core.end(1, now);
    assert!(!core.is_finished(), "B[1] may still send");
    core.end(2, now);
    assert_eq!(core.poll(now), None);
    assert!(core.is_finished());
}

#[test]
fn a_replica_value_beyond_the_window_waits_while_another_replica_may_send() {
    let now = Instant::now();
    let mut core = over_replicas(Bundling::sequenced(0).window(2));
    // Id 5 is beyond the window (0..2): it waits in B[0]'s front, so that
    // B[1] can still send the head's value.
    core.offer(1, 5, "b5", now);
    assert!(!core.accepts(1) && core.accepts(2));
    core.offer(2, 0, "b0", now);
    core.offer(0, 0, "a0", now);
    assert_eq!(
        core.poll(now),
        run(0, Input::Bundle(vec!["a0", "b0"].into()))
    );
    // Both replicas are now beyond the window: the smallest goes to the
    // table, which holds it back, as it would one upstream's.
    core.offer(2, 6, "b6", now);
    assert_eq!(core.poll(now), None);
    // The table takes nothing more of B: one more value per replica at
    // most waits in the fronts.
    assert!(core.accepts(1) && !core.accepts(2));
    core.offer(1, 7, "b7", now);
    assert!(!core.accepts(1) && !core.accepts(2));
    assert_eq!(
        core.buffered(),
        3,
        "b5 held by the table, b6 and b7 in fronts"
    );
}
