//! Property tests of the bundling tables: random arrival orders, duplicates
//! (adjacent or not), ids missing, late, reordered beyond the window or
//! below the first id, upstreams that end early or never, the overflow
//! policies, and drains; driven with a virtual clock.
//!
//! Whatever arrives, every id is accounted for exactly once (delivered,
//! given up as a gap, evicted, or reported incomplete), an id every
//! upstream sent is delivered unless one of its values came too late, a
//! delivered bundle holds the first value each upstream sent for it, every
//! notice names exactly the upstreams whose value was missing then, the
//! table's counters agree with its notices, sequenced bundles come out in
//! order, and the memory held never exceeds the window (plus one value
//! held back per upstream).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clusterduck_engine::bundle::{
    BundleTable, Bundling, GapPolicy, Notice, OverflowPolicy, PolicyCounts, TableEvent,
};
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
    gaps: Vec<(u64, Vec<usize>)>,
    evicted: Vec<(u64, Vec<usize>)>,
    incomplete: Vec<(u64, Vec<usize>)>,
    duplicates: usize,
    /// (seq, upstream) of each late value.
    late: Vec<(u64, usize)>,
    /// The notice that failed the table, if one did, and whether that was
    /// after the drain.
    fatal: Option<(Notice, bool)>,
    /// Bundles the driver ran itself, in lockstep.
    in_lockstep: usize,
    /// The table's own counters at the end.
    counts: PolicyCounts,
    /// Whether the table said it was finished (else the driver stopped at
    /// quiescence: an upstream never ended).
    finished: bool,
    /// (seq, upstream) of every value offered, first copies only, with the
    /// order of offering: what a notice's missing list is checked against.
    offered: BTreeMap<(u64, usize), usize>,
    /// For each notice about a seq, how many values had been offered then.
    noticed_at: BTreeMap<u64, usize>,
    /// Values offered (and run in lockstep), copies included.
    offers: usize,
    /// Values the table still held at the end.
    buffered: usize,
}

/// How a run is driven besides the scripts.
#[derive(Clone, Debug)]
struct Drive {
    /// Which upstream is read next, cycled.
    picks: Vec<usize>,
    /// Run bundles in lockstep as the runtime's held loop does.
    lockstep: bool,
    /// Per upstream: whether it ends when its script is done.
    ends: Vec<bool>,
    /// Drain the table after this many values were offered.
    drain_at: Option<usize>,
}

impl Drive {
    fn plain(upstreams: usize, picks: Vec<usize>, lockstep: bool) -> Self {
        Self {
            picks,
            lockstep,
            ends: vec![true; upstreams],
            drain_at: None,
        }
    }
}

/// Feeds the scripts to the table in the interleaving `drive.picks`
/// chooses; when no upstream can be read, the virtual clock jumps by the
/// gap timeout.
///
/// With `lockstep`, the driver does what the runtime's held loop does: when
/// the table names a lockstep id and every upstream's next value has it, the
/// driver runs that bundle itself; and upstreams that lead are read only
/// when no other can be.
fn drive(
    upstreams: usize,
    config: Bundling,
    scripts: &[Script],
    drive: &Drive,
) -> Result<Outcome, TestCaseError> {
    let window = config.window_len();
    let mut table = BundleTable::new(upstreams, config);
    let mut now = Instant::now();
    let mut cursor = vec![0usize; upstreams];
    let mut ended = vec![false; upstreams];
    let mut out = Outcome::default();
    let mut pick = drive.picks.iter().cycle();
    let mut offers = 0;
    let mut drained = false;
    let mut idle = 0;
    loop {
        let mut evented = false;
        while let Some(event) = table.poll(now) {
            evented = true;
            prop_assert!(out.fatal.is_none(), "{:?} after a fatal notice", event);
            let mut noticed = |seq: u64| out.noticed_at.insert(seq, offers);
            match event {
                TableEvent::Bundle { seq, values } => out.delivered.push((seq, values.into_vec())),
                TableEvent::Notice(Notice::Gap { seq, missing }) => {
                    noticed(seq);
                    out.gaps.push((seq, missing));
                }
                TableEvent::Notice(Notice::Evicted { seq, missing }) => {
                    noticed(seq);
                    out.evicted.push((seq, missing));
                }
                TableEvent::Notice(Notice::Incomplete { seq, missing }) => {
                    noticed(seq);
                    out.incomplete.push((seq, missing));
                }
                TableEvent::Notice(Notice::Duplicate { .. }) => out.duplicates += 1,
                TableEvent::Notice(Notice::Late { seq, upstream }) => {
                    out.late.push((seq, upstream))
                }
                TableEvent::Fatal(notice) => out.fatal = Some((notice, drained)),
                other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            }
        }
        prop_assert!(
            table.buffered() <= window * upstreams + upstreams,
            "{} values buffered, window {window}",
            table.buffered()
        );
        if table.is_finished() {
            out.finished = true;
            out.counts = table.counts();
            out.offers = offers;
            out.buffered = table.buffered();
            return Ok(out);
        }
        if !drained && drive.drain_at.is_some_and(|at| offers >= at) {
            table.drain();
            drained = true;
        }
        // The value an upstream sends next says who sent it, for which id,
        // and which copy.
        let tag = |u: usize, cursor: usize| {
            let seq = scripts[u][cursor];
            let copy = scripts[u][..cursor].iter().filter(|s| **s == seq).count();
            (u, seq, copy)
        };
        if let Some(seq) = table.lockstep_seq().filter(|_| drive.lockstep) {
            if (0..upstreams).all(|u| !ended[u] && scripts[u].get(cursor[u]) == Some(&seq)) {
                let values: Vec<Tagged> = (0..upstreams).map(|u| tag(u, cursor[u])).collect();
                for (u, c) in cursor.iter_mut().enumerate() {
                    if values[u].2 == 0 {
                        out.offered.insert((seq, u), offers);
                    }
                    *c += 1;
                    offers += 1;
                }
                table.delivered_in_lockstep(seq);
                out.delivered.push((seq, values));
                out.in_lockstep += 1;
                continue;
            }
        }
        // An upstream that never ends has nothing more to give once its
        // script is done.
        let has_more = |u: usize| cursor[u] < scripts[u].len() || drive.ends[u];
        let mut ready: Vec<usize> = (0..upstreams)
            .filter(|u| !ended[*u] && has_more(*u) && table.accepts(*u))
            .collect();
        let behind: Vec<usize> = ready.iter().copied().filter(|u| !table.leads(*u)).collect();
        if drive.lockstep && !behind.is_empty() {
            ready = behind;
        }
        if ready.is_empty() {
            let exhausted = (0..upstreams).all(|u| ended[u] || !has_more(u));
            idle = if evented { 0 } else { idle + 1 };
            if exhausted && idle > 3 {
                // Quiescent: an upstream never ends, and the clock moving
                // on changes nothing more.
                out.counts = table.counts();
                out.offers = offers;
                out.buffered = table.buffered();
                return Ok(out);
            }
            prop_assert!(idle < 100_000, "no progress");
            now += TIMEOUT;
            continue;
        }
        idle = 0;
        let u = ready[pick.next().copied().unwrap_or(0) % ready.len()];
        match scripts[u].get(cursor[u]) {
            Some(&seq) => {
                let tagged = tag(u, cursor[u]);
                if tagged.2 == 0 {
                    out.offered.insert((seq, u), offers);
                }
                table.offer(u, seq, tagged, now);
                cursor[u] += 1;
                offers += 1;
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
    let upstreams = scripts.len();
    let sent: BTreeSet<u64> = scripts.iter().flatten().copied().collect();
    let late_seqs: BTreeSet<u64> = out.late.iter().map(|(s, _)| *s).collect();
    let mut seen = BTreeMap::new();
    for (seq, values) in &out.delivered {
        prop_assert_eq!(values.len(), upstreams);
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
    for (what, list) in [
        ("gap", &out.gaps),
        ("evicted", &out.evicted),
        ("incomplete", &out.incomplete),
    ] {
        for (seq, missing) in list {
            prop_assert!(
                seen.insert(*seq, what).is_none(),
                "seq {} accounted twice",
                seq
            );
            // The missing upstreams are exactly those whose first value for
            // the id had not been offered when the notice came.
            let at = out.noticed_at[seq];
            let had: Vec<usize> = (0..upstreams)
                .filter(|u| out.offered.get(&(*seq, *u)).is_some_and(|when| *when < at))
                .collect();
            let expected: Vec<usize> = (0..upstreams).filter(|u| !had.contains(u)).collect();
            prop_assert_eq!(missing, &expected, "{} seq {}: missing", what, seq);
            prop_assert!(!missing.is_empty(), "{} seq {} missed nothing", what, seq);
        }
    }
    if out.finished && out.fatal.is_none() {
        for seq in &sent {
            // An id is accounted for by a bundle, a gap, an eviction or an
            // incomplete bundle; or, when the table passed over it because
            // nobody had sent it while an upstream had already ended (or it
            // lies before the first id), by the late values that came after.
            prop_assert!(
                seen.contains_key(seq) || late_seqs.contains(seq),
                "seq {} lost",
                seq
            );
        }
    }
    // An id every upstream sent is delivered, unless one of its values came
    // after the table had given it up (a late value for it).
    for seq in &sent {
        let everyone = scripts.iter().all(|s| s.contains(seq));
        if everyone && out.fatal.is_none() && seen.get(seq) != Some(&"delivered") {
            prop_assert!(
                late_seqs.contains(seq),
                "seq {} came from every upstream, on time, and was {:?}",
                seq,
                seen.get(seq)
            );
        }
    }
    for (seq, what) in &seen {
        if *what == "delivered" {
            prop_assert!(scripts.iter().all(|s| s.contains(seq)));
        }
    }
    // The table's counters say what its notices said.
    let c = out.counts;
    if out.finished || out.fatal.is_none() {
        prop_assert_eq!(c.duplicates as usize, out.duplicates, "duplicates");
        prop_assert_eq!(c.late as usize, out.late.len(), "late");
        prop_assert_eq!(c.evicted as usize, out.evicted.len(), "evicted");
        prop_assert_eq!(c.incomplete as usize, out.incomplete.len(), "incomplete");
        let fatal_gap = usize::from(matches!(out.fatal, Some((Notice::Gap { .. }, _))));
        prop_assert_eq!(c.gaps as usize, out.gaps.len() + fatal_gap, "gaps");
    }
    // Nothing is lost silently: every value offered is in a delivered
    // bundle, among the values of a bundle given up (gap, evicted,
    // incomplete), dropped and counted (duplicate, late), or still held by
    // the table (an upstream never ended).
    if out.fatal.is_none() {
        let in_bundles = out.delivered.len() * upstreams;
        let given_up: usize = [&out.gaps, &out.evicted, &out.incomplete]
            .iter()
            .flat_map(|list| list.iter())
            .map(|(_, missing)| upstreams - missing.len())
            .sum();
        prop_assert_eq!(
            out.offers,
            in_bundles + given_up + out.duplicates + out.late.len() + out.buffered,
            "values offered vs delivered {} + given up {} + duplicates {} + late {} + held {}",
            in_bundles,
            given_up,
            out.duplicates,
            out.late.len(),
            out.buffered
        );
    }
    Ok(())
}

/// `n` ids from `first_sent`, each upstream sending each id with
/// probability 9/10, reordered by up to `reorder` ids, with some copies:
/// most right after the first, some further on (non-adjacent).
fn scripts_from(
    upstreams: usize,
    n: u64,
    first_sent: u64,
    reorder: u16,
) -> impl Strategy<Value = Vec<Script>> {
    let one = prop::collection::vec((0u8..20, 0u8..10, any::<u16>()), n as usize);
    prop::collection::vec(one, upstreams).prop_map(move |per| {
        per.into_iter()
            .map(|marks| {
                let mut keyed: Vec<(u64, u64)> = marks
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, keep, _))| *keep != 0)
                    .map(|(i, (_, _, key))| (i as u64, i as u64 + u64::from(*key % reorder)))
                    .collect();
                keyed.sort_by_key(|(_, k)| *k);
                let mut script: Script = Vec::new();
                let mut later: Vec<(usize, u64)> = Vec::new();
                for (i, _) in keyed {
                    let seq = first_sent + i;
                    script.push(seq);
                    match marks[i as usize].0 {
                        0 => script.push(seq),
                        1 => later.push((
                            script.len() + usize::from(marks[i as usize].2 as u8 % 32),
                            seq,
                        )),
                        _ => {}
                    }
                }
                for (at, seq) in later.into_iter().rev() {
                    script.insert(at.min(script.len()), seq);
                }
                script
            })
            .collect()
    })
}

/// `n` ids from 0, reordered by up to 8.
fn scripts(upstreams: usize, n: u64) -> impl Strategy<Value = Vec<Script>> {
    scripts_from(upstreams, n, 0, 8)
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
        let out = drive(upstreams, config, &scripts, &Drive::plain(upstreams, picks, lockstep))?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", order);
    }

    /// The corners: reordering far beyond the window, ids sent below the
    /// first id, upstreams that end early (their scripts are short) or
    /// never, the default gap policy (fail) with a drain at a random point.
    #[test]
    fn sequenced_corners(
        (upstreams, scripts, window, first) in (1usize..5).prop_flat_map(|u| (
            Just(u),
            (0u64..6, 1u16..80).prop_flat_map(move |(from, reorder)| scripts_from(u, 100, from, reorder)),
            1usize..24,
            0u64..8,
        )),
        cut in prop::collection::vec(0usize..140, 4),
        ends in prop::collection::vec(prop::bool::weighted(0.8), 4),
        drain_at in prop::option::of(0usize..300),
        picks in prop::collection::vec(any::<usize>(), 1..64),
        lockstep in any::<bool>(),
        skip in any::<bool>(),
    ) {
        // Some upstreams end early: their scripts are cut short.
        let scripts: Vec<Script> = scripts
            .into_iter()
            .zip(&cut)
            .map(|(s, cut)| s[..(*cut).min(s.len())].to_vec())
            .collect();
        let on_gap = if skip { GapPolicy::Skip } else { GapPolicy::Fail };
        let config = Bundling::sequenced(first).window(window).gap_timeout(TIMEOUT).on_gap(on_gap);
        let run = Drive { picks, lockstep, ends: ends[..upstreams].to_vec(), drain_at };
        let out = drive(upstreams, config, &scripts, &run)?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", order);
        prop_assert!(order.iter().all(|s| *s >= first), "below the first id: {:?}", order);
        for (seq, u) in &out.late {
            prop_assert!(scripts[*u].contains(seq));
        }
        match &out.fatal {
            None => {}
            Some((Notice::Gap { .. }, drained)) => {
                prop_assert!(!skip && !drained, "a fatal gap under skip or after the drain")
            }
            Some((other, _)) => prop_assert!(false, "fatal {:?}", other),
        }
    }

    /// Upstreams that each send ascending ids (some missing, some ending
    /// early) within the window: what becomes of every id (delivered, a
    /// gap, incomplete, late; and who was missing) does not depend on how
    /// their values interleave.
    #[test]
    fn sequenced_in_order_streams_fare_the_same_whatever_the_interleaving(
        upstreams in 2usize..5,
        keep in prop::collection::vec(prop::collection::vec(0u8..4, 60), 4),
        cut in prop::collection::vec(0usize..64, 4),
        picks_a in prop::collection::vec(any::<usize>(), 1..64),
        picks_b in prop::collection::vec(any::<usize>(), 1..64),
        lockstep in any::<bool>(),
    ) {
        let scripts: Vec<Script> = (0..upstreams)
            .map(|u| {
                let ids: Vec<u64> = (0..60u64).filter(|i| keep[u][*i as usize] != 0).collect();
                ids[..cut[u].min(ids.len())].to_vec()
            })
            .collect();
        let config = Bundling::sequenced(0).window(64).gap_timeout(TIMEOUT).on_gap(GapPolicy::Skip);
        let a = drive(upstreams, config, &scripts, &Drive::plain(upstreams, picks_a, lockstep))?;
        let b = drive(upstreams, config, &scripts, &Drive::plain(upstreams, picks_b, !lockstep))?;
        check_accounting(&scripts, &a)?;
        let fate = |o: &Outcome| {
            let delivered: Vec<u64> = o.delivered.iter().map(|(s, _)| *s).collect();
            let mut late = o.late.clone();
            late.sort_unstable();
            (delivered, o.gaps.clone(), o.incomplete.clone(), late, o.duplicates)
        };
        prop_assert_eq!(fate(&a), fate(&b));
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
        let out = drive(upstreams, config, &scripts, &Drive::plain(upstreams, picks, lockstep))?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(order, (0..150).collect::<Vec<_>>());
        let dups: usize = scripts.iter().map(|s| s.len() - 150).sum();
        // A second copy is a duplicate while its bundle is pending, late after.
        prop_assert_eq!(out.duplicates + out.late.len(), dups);
        prop_assert!(out.gaps.is_empty() && out.incomplete.is_empty());
    }

    #[test]
    fn unordered_every_id_accounted_once(
        (upstreams, scripts, window) in (1usize..5).prop_flat_map(|u| (Just(u), scripts(u, 120), 1usize..40)),
        picks in prop::collection::vec(any::<usize>(), 1..64),
        salt in any::<u64>(),
        overflow in 0u8..3,
        ends in prop::collection::vec(prop::bool::weighted(0.8), 4),
        drain_at in prop::option::of(0usize..300),
        skip in any::<bool>(),
    ) {
        // Hashed ids: the same relation between upstreams, no density.
        let hash = |s: u64| (s ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let scripts: Vec<Script> = scripts.iter().map(|s| s.iter().map(|x| hash(*x)).collect()).collect();
        let on_overflow = [OverflowPolicy::Backpressure, OverflowPolicy::EvictOldest, OverflowPolicy::Fail][overflow as usize];
        let config = Bundling::unordered()
            .window(window)
            .gap_timeout(TIMEOUT)
            .on_gap(if skip { GapPolicy::Skip } else { GapPolicy::Fail })
            .on_overflow(on_overflow);
        let run = Drive { picks, lockstep: true, ends: ends[..upstreams].to_vec(), drain_at };
        let out = drive(upstreams, config, &scripts, &run)?;
        check_accounting(&scripts, &out)?;
        prop_assert_eq!(out.in_lockstep, 0, "an unordered table has no lockstep");
        match (&out.fatal, on_overflow) {
            (None, _) => {}
            (Some((Notice::Overflow { upstream, seq }, _)), OverflowPolicy::Fail) => {
                prop_assert!(scripts[*upstream].contains(seq));
            }
            (Some((Notice::Gap { .. }, drained)), _) => {
                prop_assert!(!skip && !drained, "a fatal gap under skip or after the drain")
            }
            (Some((other, _)), policy) => prop_assert!(false, "fatal {:?} under {:?}", other, policy),
        }
        if on_overflow != OverflowPolicy::EvictOldest {
            prop_assert!(out.evicted.is_empty());
        }
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
        let out = drive(upstreams, config, &scripts, &Drive::plain(upstreams, picks, true))?;
        check_accounting(&scripts, &out)?;
        let order: Vec<u64> = out.delivered.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(order, (0..n).collect::<Vec<_>>());
        prop_assert!(
            out.in_lockstep as u64 >= n - reversed - window as u64,
            "{} of {} bundles in lockstep", out.in_lockstep, n
        );
        prop_assert_eq!(out.duplicates + out.late.len() + out.gaps.len() + out.incomplete.len(), 0);
    }
}
