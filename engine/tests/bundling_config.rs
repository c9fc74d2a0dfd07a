//! What a `Bundling` says when asked: the defaults the README documents, and
//! what the builder set; and the id every notice is about.

use std::time::Duration;

use clusterduck_engine::bundle::{Bundling, GapPolicy, Notice, Order, OverflowPolicy};

#[test]
fn the_defaults_are_the_documented_ones() {
    let b = Bundling::sequenced(3);
    assert_eq!(b.order(), Order::Sequenced { first: 3 });
    assert_eq!(b.window_len(), 4096);
    assert_eq!(b.gap_timeout_len(), Duration::from_secs(10));
    assert_eq!(b.gap_policy(), GapPolicy::Fail);
    assert_eq!(b.overflow_policy(), OverflowPolicy::Backpressure);
    assert_eq!(Bundling::unordered().order(), Order::Unordered);
}

#[test]
fn the_builder_sets_what_it_says() {
    let b = Bundling::unordered()
        .window(7)
        .gap_timeout(Duration::from_millis(250))
        .on_gap(GapPolicy::Skip)
        .on_overflow(OverflowPolicy::EvictOldest);
    assert_eq!(
        (
            b.window_len(),
            b.gap_timeout_len(),
            b.gap_policy(),
            b.overflow_policy()
        ),
        (
            7,
            Duration::from_millis(250),
            GapPolicy::Skip,
            OverflowPolicy::EvictOldest
        )
    );
    assert_eq!(
        Bundling::unordered()
            .on_overflow(OverflowPolicy::Fail)
            .overflow_policy(),
        OverflowPolicy::Fail
    );
}

#[test]
fn every_notice_says_its_id() {
    let notices = [
        Notice::Duplicate {
            seq: 1,
            upstream: 0,
        },
        Notice::Late {
            seq: 2,
            upstream: 0,
        },
        Notice::Gap {
            seq: 3,
            missing: vec![0],
        },
        Notice::Evicted {
            seq: 4,
            missing: vec![0],
        },
        Notice::Overflow {
            seq: 5,
            upstream: 0,
        },
        Notice::Incomplete {
            seq: 6,
            missing: vec![0],
        },
    ];
    let seqs: Vec<u64> = notices.iter().filter_map(Notice::seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}
