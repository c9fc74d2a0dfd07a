//! The sequenced bundling table driven directly, policy by policy.

use std::time::{Duration, Instant};

use clusterduck_engine::bundle::{BundleTable, Bundling, GapPolicy, Notice, TableEvent};

fn drain<V>(table: &mut BundleTable<V>, now: Instant) -> Vec<TableEvent<V>> {
    std::iter::from_fn(|| table.poll(now)).collect()
}

fn seqs<V>(events: &[TableEvent<V>]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TableEvent::Bundle { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn delivers_in_order_whatever_the_arrival_order() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(10).window(8));
    for seq in [13, 11, 10, 12] {
        t.offer(0, seq, ("a", seq), now);
    }
    assert!(
        drain(&mut t, now).is_empty(),
        "nothing completes with one upstream"
    );
    for seq in [12, 10, 13, 11] {
        t.offer(1, seq, ("b", seq), now);
    }
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![10, 11, 12, 13]);
    assert_eq!(
        events[0],
        TableEvent::Bundle {
            seq: 10,
            values: vec![("a", 10), ("b", 10)].into()
        }
    );
}

#[test]
fn duplicate_is_dropped_and_counted() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(8));
    t.offer(0, 1, "first", now);
    t.offer(0, 1, "again", now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Duplicate {
            seq: 1,
            upstream: 0
        })]
    );
    t.offer(0, 0, "a0", now);
    t.offer(1, 0, "b0", now);
    t.offer(1, 1, "b1", now);
    let events = drain(&mut t, now);
    assert_eq!(
        events[1],
        TableEvent::Bundle {
            seq: 1,
            values: vec!["first", "b1"].into()
        },
        "the first value is kept"
    );
    assert_eq!(t.counts().duplicates, 1);
}

#[test]
fn late_id_is_dropped_and_counted() {
    let now = Instant::now();
    let mut t = BundleTable::new(1, Bundling::sequenced(5).window(4));
    t.offer(0, 5, (), now);
    t.offer(0, 3, (), now);
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![5]);
    assert_eq!(
        events[1],
        TableEvent::Notice(Notice::Late {
            seq: 3,
            upstream: 0
        })
    );
    assert_eq!(t.counts().late, 1);
}

#[test]
fn an_upstream_ahead_of_the_window_is_held_until_the_window_moves() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(4));
    t.offer(0, 0, "a0", now);
    t.offer(0, 1, "a1", now);
    t.offer(0, 4, "a4", now); // beyond [0, 4): held back
    assert!(!t.accepts(0), "the upstream ahead is not read");
    assert!(t.accepts(1));
    assert_eq!(t.buffered(), 3);
    t.offer(1, 0, "b0", now); // the window moves to [1, 5): a4 fits
    assert!(t.accepts(0));
    t.offer(1, 1, "b1", now);
    t.offer(1, 2, "b2", now);
    t.offer(1, 3, "b3", now);
    t.offer(1, 4, "b4", now);
    assert_eq!(seqs(&drain(&mut t, now)), vec![0, 1]);
    t.offer(0, 2, "a2", now);
    t.offer(0, 3, "a3", now);
    assert_eq!(seqs(&drain(&mut t, now)), vec![2, 3, 4]);
    assert_eq!(t.buffered(), 0);
}

#[test]
fn gap_fails_after_the_timeout_by_default_naming_seq_and_upstreams() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(2);
    let mut t = BundleTable::new(3, Bundling::sequenced(0).window(8).gap_timeout(timeout));
    t.offer(0, 0, (), t0);
    // Seq 0 waits for upstreams 1 and 2: no later id, so nothing blocks yet.
    assert_eq!(t.deadline(), None);
    t.offer(0, 1, (), t0 + Duration::from_secs(1));
    assert_eq!(t.deadline(), Some(t0 + Duration::from_secs(3)));
    assert!(drain(&mut t, t0 + Duration::from_millis(2999)).is_empty());
    assert_eq!(
        drain(&mut t, t0 + Duration::from_secs(3)),
        vec![TableEvent::Fatal(Notice::Gap {
            seq: 0,
            missing: vec![1, 2]
        })]
    );
    assert!(!t.accepts(0), "a failed table takes nothing");
    assert!(t.is_finished());
}

#[test]
fn gap_is_skipped_and_counted_under_the_skip_policy() {
    let t0 = Instant::now();
    let timeout = Duration::from_millis(100);
    let config = Bundling::sequenced(0)
        .window(8)
        .gap_timeout(timeout)
        .on_gap(GapPolicy::Skip);
    let mut t = BundleTable::new(2, config);
    for seq in [0, 2, 3] {
        t.offer(0, seq, seq, t0);
        t.offer(1, seq, seq, t0);
    }
    t.offer(0, 1, 1, t0); // upstream 1 never sends 1
    assert_eq!(seqs(&drain(&mut t, t0)), vec![0]);
    let events = drain(&mut t, t0 + timeout);
    assert_eq!(
        events[0],
        TableEvent::Notice(Notice::Gap {
            seq: 1,
            missing: vec![1]
        })
    );
    assert_eq!(seqs(&events), vec![2, 3]);
    assert_eq!(t.counts().gaps, 1);
    t.offer(1, 1, 1, t0 + timeout);
    assert_eq!(
        drain(&mut t, t0 + timeout),
        vec![TableEvent::Notice(Notice::Late {
            seq: 1,
            upstream: 1
        })],
        "the straggler of a skipped id is late"
    );
}

#[test]
fn at_end_of_stream_a_missing_id_before_complete_ones_is_a_gap() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(8));
    for seq in [0, 2] {
        t.offer(0, seq, (), now);
        t.offer(1, seq, (), now);
    }
    t.end(0, now);
    t.end(1, now);
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![0]);
    assert_eq!(
        events[1],
        TableEvent::Fatal(Notice::Gap {
            seq: 1,
            missing: vec![0, 1]
        }),
        "nobody sent 1 and 2 is complete: no need to wait for the timeout"
    );
}

#[test]
fn bundles_missing_an_ended_upstream_are_incomplete() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(8));
    for seq in 0..4 {
        t.offer(0, seq, seq, now);
    }
    t.offer(1, 0, 0, now);
    t.offer(1, 1, 1, now);
    t.end(1, now); // upstream 1 stops after 1
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![0, 1]);
    assert_eq!(
        events[2..],
        [
            TableEvent::Notice(Notice::Incomplete {
                seq: 2,
                missing: vec![1]
            }),
            TableEvent::Notice(Notice::Incomplete {
                seq: 3,
                missing: vec![1]
            })
        ]
    );
    t.offer(0, 4, 4, now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Incomplete {
            seq: 4,
            missing: vec![1]
        })]
    );
    t.end(0, now);
    assert!(t.is_finished());
    assert_eq!(t.counts().incomplete, 3);
    assert_eq!(t.buffered(), 0);
}

#[test]
fn an_id_skipped_by_an_upstream_that_then_ended_is_a_gap_when_later_ones_completed() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(8).on_gap(GapPolicy::Skip));
    for seq in 0..6 {
        t.offer(0, seq, seq, now);
        if seq != 3 {
            t.offer(1, seq, seq, now);
        }
    }
    t.end(1, now);
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![0, 1, 2, 4, 5]);
    assert_eq!(
        events[3],
        TableEvent::Notice(Notice::Gap {
            seq: 3,
            missing: vec![1]
        })
    );
}

#[test]
fn ids_nobody_sent_after_the_last_complete_bundle_are_passed_over() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(4));
    t.offer(0, 0, 0, now);
    t.offer(1, 0, 0, now);
    t.offer(0, 2, 2, now);
    t.offer(1, 1_000_000, 9, now); // far ahead: held back
    t.end(0, now);
    t.end(1, now);
    let events = drain(&mut t, now);
    assert_eq!(
        events,
        vec![
            TableEvent::Bundle {
                seq: 0,
                values: vec![0, 0].into()
            },
            TableEvent::Notice(Notice::Incomplete {
                seq: 2,
                missing: vec![1]
            }),
            TableEvent::Notice(Notice::Incomplete {
                seq: 1_000_000,
                missing: vec![0]
            }),
        ]
    );
    assert!(t.is_finished());
}

#[test]
fn while_draining_gaps_left_by_stopped_spouts_are_skipped_not_fatal() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(8));
    t.drain();
    for seq in [0, 2, 1] {
        t.offer(0, seq, seq, now);
    }
    for seq in [0, 2] {
        t.offer(1, seq, seq, now); // stopped before sending 1
    }
    t.end(1, now);
    t.end(0, now);
    let events = drain(&mut t, now);
    assert_eq!(seqs(&events), vec![0, 2]);
    assert_eq!(
        events[1],
        TableEvent::Notice(Notice::Gap {
            seq: 1,
            missing: vec![1]
        })
    );
    assert!(t.is_finished());
}

#[test]
fn an_idle_window_names_the_id_that_upstreams_in_lockstep_complete_at_once() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(5).window(8));
    assert_eq!(t.lockstep_seq(), Some(5));
    // The driver runs bundles 5 and 6 itself: the head moves on.
    t.delivered_in_lockstep(5);
    t.delivered_in_lockstep(6);
    assert_eq!(t.lockstep_seq(), Some(7));
    assert!(
        drain(&mut t, now).is_empty(),
        "the driver's bundles are not events"
    );
    // A value stored, or a bundle waiting to be polled: not idle.
    t.offer(0, 7, "a7", now);
    assert_eq!(t.lockstep_seq(), None);
    t.offer(1, 7, "b7", now);
    assert_eq!(t.lockstep_seq(), None, "bundle 7 waits to be polled");
    assert_eq!(seqs(&drain(&mut t, now)), vec![7]);
    assert_eq!(t.lockstep_seq(), Some(8));
    // An id the driver ran is late when it comes again.
    t.offer(0, 6, "a6", now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Late {
            seq: 6,
            upstream: 0
        })]
    );
    assert_eq!(t.counts().late, 1);
    // Once an upstream has ended, the table must see every id.
    t.end(1, now);
    assert_eq!(t.lockstep_seq(), None);
}

#[test]
fn a_held_back_value_or_an_unordered_table_is_never_in_lockstep() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::sequenced(0).window(4));
    t.offer(0, 9, "ahead", now);
    assert_eq!(t.buffered(), 1);
    assert_eq!(t.lockstep_seq(), None);
    let unordered: BundleTable<()> = BundleTable::new(2, Bundling::unordered());
    assert_eq!(unordered.lockstep_seq(), None);
    assert!(!unordered.leads(0));
}

#[test]
#[should_panic(expected = "bundle 3 delivered out of lockstep")]
fn delivering_another_id_than_the_lockstep_one_panics() {
    let mut t: BundleTable<()> = BundleTable::new(2, Bundling::sequenced(0).window(4));
    t.delivered_in_lockstep(3);
}

#[test]
fn an_upstream_leads_while_its_values_wait_for_an_upstream_with_none_stored() {
    let now = Instant::now();
    let mut t = BundleTable::new(3, Bundling::sequenced(0).window(8));
    assert!(!(0..3).any(|u| t.leads(u)), "nothing stored, nobody leads");
    t.offer(0, 0, 'a', now);
    t.offer(0, 1, 'a', now);
    t.offer(1, 1, 'b', now);
    assert!(t.leads(0) && t.leads(1), "C has sent nothing");
    assert!(!t.leads(2));
    t.offer(2, 0, 'c', now);
    assert!(
        !(0..3).any(|u| t.leads(u)),
        "every upstream has a value stored"
    );
    t.offer(1, 0, 'b', now);
    t.offer(2, 1, 'c', now);
    assert_eq!(seqs(&drain(&mut t, now)), vec![0, 1]);
    assert!(!(0..3).any(|u| t.leads(u)), "the window drained");
    assert_eq!(t.lockstep_seq(), Some(2));
}

/// Upstream A sends 0..8, B sends 0, 1 and 5, then ends. Whether B's end
/// is read before or after A's values, ids 2..4 are gaps (bundle 5
/// completes after them) and 6, 7 incomplete: what a bundle is called does
/// not depend on how the upstreams' values interleave.
#[test]
fn what_a_doomed_id_is_called_does_not_depend_on_the_interleaving() {
    let now = Instant::now();
    let outcome = |b_first: bool| {
        let mut t = BundleTable::new(2, Bundling::sequenced(0).window(16).on_gap(GapPolicy::Skip));
        let a = |t: &mut BundleTable<u64>| (0..8).for_each(|seq| t.offer(0, seq, seq, now));
        let b = |t: &mut BundleTable<u64>| {
            [0, 1, 5]
                .into_iter()
                .for_each(|seq| t.offer(1, seq, seq, now));
            t.end(1, now);
        };
        if b_first {
            b(&mut t);
            a(&mut t);
        } else {
            a(&mut t);
            b(&mut t);
        }
        t.end(0, now);
        let events = drain(&mut t, now);
        assert!(t.is_finished());
        (events, t.counts())
    };
    let (events, counts) = outcome(true);
    let (other, other_counts) = outcome(false);
    assert!(
        other == events && other_counts == counts,
        "A first vs B first: {other:?} vs {events:?}"
    );
    assert_eq!(seqs(&events), vec![0, 1, 5]);
    let notices: Vec<Notice> = events
        .into_iter()
        .filter_map(|e| match e {
            TableEvent::Notice(n) => Some(n),
            _ => None,
        })
        .collect();
    let gap = |seq| Notice::Gap {
        seq,
        missing: vec![1],
    };
    let incomplete = |seq| Notice::Incomplete {
        seq,
        missing: vec![1],
    };
    assert_eq!(
        notices,
        vec![gap(2), gap(3), gap(4), incomplete(6), incomplete(7)]
    );
    assert_eq!((counts.gaps, counts.incomplete, counts.late), (3, 2, 0));
}

#[test]
fn the_next_id_moves_with_the_head() {
    let now = Instant::now();
    let mut w = clusterduck_engine::bundle::ReorderWindow::new(2, 10, Bundling::sequenced(10));
    assert_eq!(w.next_seq(), 10);
    w.offer(0, 10, "a", now);
    assert_eq!(w.next_seq(), 10, "incomplete: the head stays");
    w.offer(1, 10, "b", now);
    assert_eq!(w.next_seq(), 11);
    assert!(matches!(
        w.poll(now),
        Some(TableEvent::Bundle { seq: 10, .. })
    ));
    w.delivered_in_lockstep(11);
    assert_eq!(w.next_seq(), 12);
}

/// B and C have ended, each with a value stored past the head, but for
/// different ids: no later bundle can complete, so the doomed head (A's 0,
/// nothing from B and C) is incomplete at once rather than waiting for the
/// gap timeout.
#[test]
fn a_doomed_head_waits_only_for_a_later_bundle_that_can_complete() {
    let now = Instant::now();
    let mut t = BundleTable::new(
        3,
        Bundling::sequenced(0)
            .window(16)
            .gap_timeout(Duration::from_secs(3600)),
    );
    t.offer(0, 0, "a0", now);
    t.offer(1, 1, "b1", now);
    t.end(1, now);
    t.offer(2, 2, "c2", now);
    t.end(2, now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Incomplete {
            seq: 0,
            missing: vec![1, 2]
        })],
        "decided at once, not at the gap timeout"
    );
    // Id 1 waits: A may still send it.
    assert_eq!(t.deadline(), Some(now + Duration::from_secs(3600)));
}
