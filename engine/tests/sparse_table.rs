//! The unordered bundling table driven directly, policy by policy.

use std::time::{Duration, Instant};

use clusterduck_engine::bundle::{
    BundleTable, Bundling, GapPolicy, Notice, OverflowPolicy, SparseTable, TableEvent,
};

fn drain<V>(table: &mut BundleTable<V>, now: Instant) -> Vec<TableEvent<V>> {
    std::iter::from_fn(|| table.poll(now)).collect()
}

fn bundle<V>(seq: u64, values: Vec<V>) -> TableEvent<V> {
    TableEvent::Bundle {
        seq,
        values: values.into(),
    }
}

#[test]
fn sparse_ids_complete_as_they_arrive() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered().window(4));
    let id = 0xdead_beef_0000_0001;
    t.offer(1, id, "b", now);
    t.offer(0, 7, "a7", now);
    t.offer(0, id, "a", now);
    assert_eq!(drain(&mut t, now), vec![bundle(id, vec!["a", "b"])]);
    t.offer(1, 7, "b7", now);
    assert_eq!(drain(&mut t, now), vec![bundle(7, vec!["a7", "b7"])]);
    assert_eq!(t.buffered(), 0);
}

#[test]
fn duplicates_and_late_ids_are_dropped_and_counted() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered());
    t.offer(0, 3, 1, now);
    t.offer(0, 3, 2, now);
    t.offer(1, 3, 3, now);
    t.offer(1, 3, 4, now);
    assert_eq!(
        drain(&mut t, now),
        vec![
            TableEvent::Notice(Notice::Duplicate {
                seq: 3,
                upstream: 0
            }),
            bundle(3, vec![1, 3]),
            TableEvent::Notice(Notice::Late {
                seq: 3,
                upstream: 1
            }),
        ]
    );
    let c = t.counts();
    assert_eq!((c.duplicates, c.late), (1, 1));
}

#[test]
fn a_full_table_holds_the_upstream_back_by_default() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered().window(2));
    t.offer(0, 10, (), now);
    t.offer(0, 11, (), now);
    t.offer(0, 12, (), now); // full: held back
    assert!(!t.accepts(0));
    assert_eq!(t.buffered(), 3);
    t.offer(1, 10, (), now); // 10 completes: 12 gets in
    assert!(t.accepts(0));
    assert_eq!(drain(&mut t, now).len(), 1);
    t.offer(1, 12, (), now);
    t.offer(1, 11, (), now);
    let done: Vec<u64> = drain(&mut t, now)
        .iter()
        .map(|e| match e {
            TableEvent::Bundle { seq, .. } => *seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(done, vec![12, 11]);
}

#[test]
fn a_full_table_evicts_the_oldest_when_asked() {
    let now = Instant::now();
    let config = Bundling::unordered()
        .window(2)
        .on_overflow(OverflowPolicy::EvictOldest);
    let mut t = BundleTable::new(2, config);
    t.offer(0, 10, (), now);
    t.offer(1, 11, (), now);
    t.offer(0, 12, (), now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Evicted {
            seq: 10,
            missing: vec![1]
        })]
    );
    t.offer(1, 10, (), now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Late {
            seq: 10,
            upstream: 1
        })]
    );
    assert_eq!(t.counts().evicted, 1);
}

#[test]
fn a_full_table_fails_when_asked() {
    let now = Instant::now();
    let config = Bundling::unordered()
        .window(1)
        .on_overflow(OverflowPolicy::Fail);
    let mut t = BundleTable::new(2, config);
    t.offer(0, 1, (), now);
    t.offer(1, 2, (), now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Fatal(Notice::Overflow {
            seq: 2,
            upstream: 1
        })]
    );
    assert!(t.is_finished());
}

#[test]
fn a_bundle_pending_past_the_gap_timeout_is_a_gap() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(1);
    let mut t = BundleTable::new(
        2,
        Bundling::unordered()
            .gap_timeout(timeout)
            .on_gap(GapPolicy::Skip),
    );
    t.offer(0, 5, (), t0);
    t.offer(0, 6, (), t0 + Duration::from_millis(500));
    assert_eq!(t.deadline(), Some(t0 + timeout));
    assert!(drain(&mut t, t0 + Duration::from_millis(999)).is_empty());
    assert_eq!(
        drain(&mut t, t0 + timeout),
        vec![TableEvent::Notice(Notice::Gap {
            seq: 5,
            missing: vec![1]
        })]
    );
    assert_eq!(t.deadline(), Some(t0 + Duration::from_millis(1500)));

    let mut failing = BundleTable::new(2, Bundling::unordered().gap_timeout(timeout));
    failing.offer(1, 9, (), t0);
    assert_eq!(
        drain(&mut failing, t0 + timeout),
        vec![TableEvent::Fatal(Notice::Gap {
            seq: 9,
            missing: vec![0]
        })]
    );
}

#[test]
fn bundles_missing_an_ended_upstream_are_incomplete() {
    let now = Instant::now();
    let mut t = BundleTable::new(3, Bundling::unordered());
    t.offer(0, 1, (), now);
    t.offer(1, 1, (), now);
    t.offer(2, 2, (), now);
    t.end(2, now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Incomplete {
            seq: 1,
            missing: vec![2]
        })]
    );
    t.offer(0, 2, (), now);
    t.offer(0, 3, (), now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Incomplete {
            seq: 3,
            missing: vec![1, 2]
        })]
    );
    t.end(0, now);
    t.end(1, now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Incomplete {
            seq: 2,
            missing: vec![1]
        })]
    );
    assert!(t.is_finished());
}

/// A value held back while the table was full, from an upstream that then
/// ended, still opens its bundle when room comes: the upstream that ended
/// is the one that sent it.
#[test]
fn a_held_value_of_an_upstream_that_ended_still_completes_its_bundle() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered().window(2));
    for seq in [10, 11, 12] {
        t.offer(0, seq, ("a", seq), now);
    }
    assert!(!t.accepts(0), "12 is held back: the table is full");
    t.end(0, now);
    for seq in [10, 11, 12] {
        t.offer(1, seq, ("b", seq), now);
    }
    t.end(1, now);
    let events = drain(&mut t, now);
    assert_eq!(
        events,
        [10, 11, 12]
            .map(|seq| bundle(seq, vec![("a", seq), ("b", seq)]))
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(t.counts().incomplete, 0);
    assert!(t.is_finished());
}

/// A full table admits held values only as far as there is room: one
/// bundle given up makes room for one.
#[test]
fn room_for_one_admits_one_held_value() {
    let timeout = Duration::from_millis(10);
    let start = Instant::now();
    let mut t = BundleTable::new(
        2,
        Bundling::unordered()
            .window(1)
            .gap_timeout(timeout)
            .on_gap(GapPolicy::Skip),
    );
    t.offer(0, 1, "a1", start);
    t.offer(0, 2, "a2", start);
    t.offer(1, 3, "b3", start);
    assert!(!t.accepts(0) && !t.accepts(1), "both hold a value back");
    assert_eq!(
        drain(&mut t, start + timeout),
        vec![TableEvent::Notice(Notice::Gap {
            seq: 1,
            missing: vec![1]
        })]
    );
    assert!(t.accepts(0), "A's 2 took the room");
    assert!(!t.accepts(1), "B's 3 still waits: the table is full again");
}

/// While the run drains, a gap is skipped and counted even under the fail
/// policy.
#[test]
fn a_drain_turns_a_fatal_gap_into_a_skipped_one() {
    let timeout = Duration::from_millis(10);
    let start = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered().gap_timeout(timeout));
    t.offer(0, 5, "a5", start);
    t.drain();
    assert_eq!(
        drain(&mut t, start + timeout),
        vec![TableEvent::Notice(Notice::Gap {
            seq: 5,
            missing: vec![1]
        })]
    );
    assert_eq!(t.counts().gaps, 1);
}

/// A finished id is remembered (a straggler for it is late) for exactly as
/// many finished ids as `remembered` says, then forgotten (a straggler
/// opens a new bundle).
#[test]
fn finished_ids_are_remembered_for_exactly_the_documented_count() {
    let now = Instant::now();
    let mut t = BundleTable::new(2, Bundling::unordered().window(4));
    let remembered = SparseTable::<()>::new(2, Bundling::unordered().window(4)).remembered();
    assert_eq!(remembered, 4096, "4 × the window, at least 4096");
    assert_eq!(
        SparseTable::<()>::new(2, Bundling::unordered().window(2000)).remembered(),
        8000
    );
    let remembered = remembered as u64;
    let finish = |t: &mut BundleTable<u64>, seq: u64| {
        t.offer(0, seq, seq, now);
        t.offer(1, seq, seq, now);
        assert_eq!(drain(t, now), vec![bundle(seq, vec![seq, seq])]);
    };
    for seq in 0..remembered {
        finish(&mut t, seq);
    }
    t.offer(1, 0, 0, now);
    assert_eq!(
        drain(&mut t, now),
        vec![TableEvent::Notice(Notice::Late {
            seq: 0,
            upstream: 1
        })],
        "id 0 is among the last {remembered}"
    );
    finish(&mut t, remembered);
    t.offer(1, 0, 0, now);
    assert_eq!(drain(&mut t, now), vec![], "id 0 forgotten: a new bundle");
    assert_eq!(t.buffered(), 1);
}
