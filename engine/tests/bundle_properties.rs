//! Property tests of the bundling tables: random arrival orders, duplicates,
//! missing and late ids, driven with a virtual clock.
//!
//! Whatever arrives, every id is accounted for exactly once (delivered,
//! given up as a gap, or reported incomplete), a delivered bundle holds the
//! first value each upstream sent for it, sequenced bundles come out in
//! order, and the memory held never exceeds the window (plus one value held
//! back per upstream).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clusterduck_engine::bundle::{BundleTable, Bundling, GapPolicy, Notice, TableEvent};
use proptest::prelude::*;

const TIMEOUT: Duration = Duration::from_secs(1);

/// One upstream's script: the ids it sends, in order (duplicates included).
type Script = Vec<u64>;

/// A value as the tests send it: (upstream, seq, which copy of it).
type Tagged = (usize, u64, usize);

/// What the table did, gathered from its events.
#[derive(Default, Debug)]
struct Outcome {
    delivered: Vec<(u64, Vec<Tagged>)>,
    gaps: Vec<u64>,
    incomplete: Vec<u64>,
    duplicates: usize,
    late: usize,
    late_seqs: BTreeSet<u64>,
    /// Bundles the driver ran itself, in lockstep.
    in_lockstep: usize,
}

/// Feeds the scripts to the table in the interleaving `picks` chooses; when
/// no upstream can be read, the virtual clock jumps by the gap timeout.
///
/// With `lockstep`, the driver does what the runtime's held loop does: when
/// the table names a lockstep id and every upstream's next value has it, the
/// driver runs that bundle itself; and upstreams that lead are read only
/// when no other can be.
fn drive(
    upstreams: usize,
    config: Bundling,
    scripts: &[Script],
    picks: &[usize],
    lockstep: bool,
) -> Result<Outcome, TestCaseError> {
    let window = config.window_len();
    let mut table = BundleTable::new(upstreams, config);
    let mut now = Instant::now();
    let mut cursor = vec![0usize; upstreams];
    let mut ended = vec![false; upstreams];
    let mut out = Outcome::default();
    let mut pick = picks.iter().cycle();
    let mut idle = 0;
    loop {
        while let Some(event) = table.poll(now) {
            match event {
                TableEvent::Bundle { seq, values } => out.delivered.push((seq, values.into_vec())),
                TableEvent::Notice(Notice::Gap { seq, .. }) => out.gaps.push(seq),
                TableEvent::Notice(Notice::Incomplete { seq, .. }) => out.incomplete.push(seq),
                TableEvent::Notice(Notice::Duplicate { .. }) => out.duplicates += 1,
                TableEvent::Notice(Notice::Late { seq, .. }) => {
                    out.late += 1;
                    out.late_seqs.insert(seq);
                }
                other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            }
        }
        prop_assert!(
            table.buffered() <= window * upstreams + upstreams,
            "{} values buffered, window {window}",
            table.buffered()
        );
        if table.is_finished() {
            return Ok(out);
        }
        // The value an upstream sends next says who sent it, for which id,
        // and which copy.
        let tag = |u: usize, cursor: usize| {
            let seq = scripts[u][cursor];
            let copy = scripts[u][..cursor].iter().filter(|s| **s == seq).count();
            (u, seq, copy)
        };
        if let Some(seq) = table.lockstep_seq().filter(|_| lockstep) {
            if (0..upstreams).all(|u| !ended[u] && scripts[u].get(cursor[u]) == Some(&seq)) {
                let values = (0..upstreams).map(|u| tag(u, cursor[u])).collect();
                for c in &mut cursor {
                    *c += 1;
                }
                table.delivered_in_lockstep(seq);
                out.delivered.push((seq, values));
                out.in_lockstep += 1;
                continue;
            }
        }
        let mut ready: Vec<usize> = (0..upstreams)
            .filter(|u| !ended[*u] && table.accepts(*u))
            .collect();
        let behind: Vec<usize> = ready.iter().copied().filter(|u| !table.leads(*u)).collect();
        if lockstep && !behind.is_empty() {
            ready = behind;
        }
        if ready.is_empty() {
            idle += 1;
            prop_assert!(idle < 100_000, "no progress");
            now += TIMEOUT;
            continue;
        }
        let u = ready[pick.next().copied().unwrap_or(0) % ready.len()];
        match scripts[u].get(cursor[u]) {
            Some(&seq) => {
                table.offer(u, seq, tag(u, cursor[u]), now);
                cursor[u] += 1;
            }
            None => {
                table.end(u, now);
                ended[u] = true;
            }
        }
    }
}

/// Checks what holds for every run, sequenced or not.
fn check_accounting(scripts: &[Script], out: &Outcome) -> Result<(), TestCaseError> {
    let sent: BTreeSet<u64> = scripts.iter().flatten().copied().collect();
    let mut seen = BTreeMap::new();
    for (seq, values) in &out.delivered {
        prop_assert_eq!(values.len(), scripts.len());
        for (u, (from, id, copy)) in values.iter().enumerate() {
            prop_assert_eq!(
                (*from, *id, *copy),
                (u, *seq, 0),
                "first copy, in upstream order"
            );
        }
        prop_assert!(
            seen.insert(*seq, "delivered").is_none(),
            "seq {} twice",
            seq
        );
    }
    for seq in &out.gaps {
        prop_assert!(
            seen.insert(*seq, "gap").is_none(),
            "seq {} accounted twice",
            seq
        );
    }
    for seq in &out.incomplete {
        prop_assert!(
            seen.insert(*seq, "incomplete").is_none(),
            "seq {} accounted twice",
            seq
        );
    }
    // An id is accounted for by a bundle, a gap or an incomplete bundle; or,
    // when the table passed over it because nobody had sent it while an
    // upstream had already ended, by the late values that came after.
    for seq in &sent {
        prop_assert!(
            seen.contains_key(seq) || out.late_seqs.contains(seq),
            "seq {} lost",
            seq
        );
    }
    for (seq, what) in &seen {
        if *what == "delivered" {
            prop_assert!(scripts.iter().all(|s| s.contains(seq)));
        }
    }
    Ok(())
}

/// `n` ids, each upstream sending each id with probability 9/10, in blocks
/// shuffled by the given keys, with some duplicates.
fn scripts(upstreams: usize, n: u64) -> impl Strategy<Value = Vec<Script>> {
    let one = prop::collection::vec((any::<bool>(), 0u8..10, any::<u16>()), n as usize);
    prop::collection::vec(one, upstreams).prop_map(|per| {
        per.into_iter()
            .map(|marks| {
                let mut keyed: Vec<(u64, u64)> = marks
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, keep, _))| *keep != 0)
                    .map(|(i, (_, _, key))| (i as u64, i as u64 + u64::from(*key % 8)))
                    .collect();
                keyed.sort_by_key(|(_, k)| *k);
                let mut script = Vec::new();
                for (seq, _) in keyed {
                    script.push(seq);
                    if marks[seq as usize].0 && marks[seq as usize].2 % 5 == 0 {
                        script.push(seq);
                    }
                }
                script
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 256 }))]

    #[test]
    fn sequenced_every_id_accounted_once_and_in_order(
        (upstreams, scripts, window) in (1usize..5).prop_flat_map(|u| (Just(u), scripts(u, 120), 1usize..40)),
        picks in prop::collection::vec(any::<usize>(), 1..64),
        lockstep in any::<bool>(),
    ) {
        let config = Bundling::sequenced(0).window(window).gap_timeout(TIMEOUT).on_gap(GapPolicy::Skip);
        let out = drive(upstreams, config, &scripts, &picks, lockstep)?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", order);
    }

    #[test]
    fn sequenced_complete_streams_within_the_window_lose_nothing(
        (upstreams, scripts) in (1usize..5).prop_flat_map(|u| (Just(u), scripts(u, 150))),
        picks in prop::collection::vec(any::<usize>(), 1..64),
        lockstep in any::<bool>(),
    ) {
        // Every upstream sends every id; reordering spans at most 8 ids.
        let scripts: Vec<Script> = scripts
            .into_iter()
            .map(|s| {
                let mut full: Vec<u64> = s.clone();
                let missing: Vec<u64> = (0..150).filter(|i| !s.contains(i)).collect();
                for m in missing {
                    let at = full.iter().position(|x| *x > m).unwrap_or(full.len());
                    full.insert(at, m);
                }
                full
            })
            .collect();
        let config = Bundling::sequenced(0).window(16).gap_timeout(TIMEOUT);
        let out = drive(upstreams, config, &scripts, &picks, lockstep)?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(order, (0..150).collect::<Vec<_>>());
        let dups: usize = scripts.iter().map(|s| s.len() - 150).sum();
        // A second copy is a duplicate while its bundle is pending, late after.
        prop_assert_eq!(out.duplicates + out.late, dups);
        prop_assert!(out.gaps.is_empty() && out.incomplete.is_empty());
    }

    #[test]
    fn unordered_every_id_accounted_once(
        (upstreams, scripts, window) in (1usize..5).prop_flat_map(|u| (Just(u), scripts(u, 120), 1usize..40)),
        picks in prop::collection::vec(any::<usize>(), 1..64),
        salt in any::<u64>(),
    ) {
        // Hashed ids: the same relation between upstreams, no density.
        let hash = |s: u64| (s ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let scripts: Vec<Script> = scripts.iter().map(|s| s.iter().map(|x| hash(*x)).collect()).collect();
        let config = Bundling::unordered().window(window).gap_timeout(TIMEOUT).on_gap(GapPolicy::Skip);
        let out = drive(upstreams, config, &scripts, &picks, true)?;
        check_accounting(&scripts, &out)?;
        prop_assert_eq!(out.in_lockstep, 0, "an unordered table has no lockstep");
    }

    #[test]
    fn sequenced_streams_in_order_run_in_lockstep_once_the_window_drains(
        upstreams in 2usize..5,
        n in 40u64..200,
        reversed in 2u64..16,
        picks in prop::collection::vec(any::<usize>(), 1..64),
    ) {
        // Every upstream sends 0..n in order, but upstream 0 sends its
        // first ids reversed: those go through the table, and whatever the
        // interleaving, the window drains and the rest runs in lockstep.
        let mut scripts: Vec<Script> = (0..upstreams).map(|_| (0..n).collect()).collect();
        scripts[0][..reversed as usize].reverse();
        let window = 16;
        let config = Bundling::sequenced(0).window(window).gap_timeout(TIMEOUT);
        let out = drive(upstreams, config, &scripts, &picks, true)?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(order, (0..n).collect::<Vec<_>>());
        prop_assert!(
            out.in_lockstep as u64 >= n - reversed - window as u64,
            "{} of {} bundles in lockstep", out.in_lockstep, n
        );
        prop_assert_eq!(out.duplicates + out.late + out.gaps.len() + out.incomplete.len(), 0);
    }
}
