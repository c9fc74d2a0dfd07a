//! What a node's threads publish for its metrics, and what its sampler
//! reads once a second. The node's loop pays next to nothing: a store per
//! value emitted, per call and per turn of its loop (to lines no other
//! thread writes), a load per turn to see whether the sampler wants what
//! costs the loop to compute (the table's fill), and the timing of one call
//! in `every` (about a thousand a second, whatever the rate). Waits are the rings' own
//! (`clusterduck_transport::waits`): timed where they happen, readable
//! while they last.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterduck_transport::waits::Waits;
use clusterduck_transport::{RingGauge, RingReader};
use hdrhistogram::Histogram;

use super::link::Link;
use super::sample::{InputSample, NodeSample};
use crate::bundle::PolicyCounts;
use crate::Seq;

/// Timed calls a second the sampling aims at.
const SAMPLES_PER_SECOND: u64 = 1000;
/// Timed calls are one in this many, at most.
const MAX_EVERY: u32 = 1 << 20;
/// Timed calls are one in this many until the first sample says how many
/// calls a second there are.
const FIRST_EVERY: u32 = 64;

/// The figures one node instance publishes.
#[derive(Debug)]
pub struct Probe {
    started: Instant,
    values_in: AtomicU64,
    values_out: AtomicU64,
    /// The last id emitted and taken, plus one (0: none yet).
    seq_out: AtomicU64,
    seq_in: AtomicU64,
    /// Values the bundling table holds, and how many it may.
    table: AtomicU64,
    table_capacity: AtomicU64,
    /// Naps of a worker with nothing to read (a table waiting for its gap
    /// deadline), in nanoseconds.
    slept_ns: AtomicU64,
    /// Set by the sampler, cleared by the loop once it published what only
    /// it can compute.
    wanted: AtomicBool,
    /// One call in this many is timed.
    every: AtomicU32,
    /// `values_in` at the last sample (the sampler's).
    sampled_in: AtomicU64,
    calls: Mutex<Histogram<u64>>,
    policy: Mutex<PolicyCounts>,
    inputs: Mutex<Vec<InputProbe>>,
    output: Mutex<Option<Arc<Waits>>>,
}

/// One input of a node: its ring, and the link it comes over from another
/// host.
#[derive(Debug)]
struct InputProbe {
    upstream: String,
    waits: Arc<Waits>,
    gauge: Option<RingGauge>,
    link: Option<Arc<Link>>,
}

impl Probe {
    fn with_every(every: u32) -> Self {
        Self {
            started: Instant::now(),
            values_in: AtomicU64::new(0),
            values_out: AtomicU64::new(0),
            seq_out: AtomicU64::new(0),
            seq_in: AtomicU64::new(0),
            table: AtomicU64::new(0),
            table_capacity: AtomicU64::new(0),
            slept_ns: AtomicU64::new(0),
            wanted: AtomicBool::new(false),
            every: AtomicU32::new(every),
            sampled_in: AtomicU64::new(0),
            calls: Mutex::new(new_histogram()),
            policy: Mutex::new(PolicyCounts::default()),
            inputs: Mutex::new(Vec::new()),
            output: Mutex::new(None),
        }
    }

    /// A probe for a node that starts now. If a sampler reads it
    /// (`sampled`), its function's calls are timed from the start; if not,
    /// it keeps counters only, and no call is timed.
    pub fn new(sampled: bool) -> Arc<Self> {
        Arc::new(Self::with_every(if sampled { FIRST_EVERY } else { 0 }))
    }
}

/// Nanoseconds from 1 ns to 100 s, 2 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Probe {
    /// The node reads `reader` (from `upstream`), over `link` if it crosses
    /// hosts.
    pub(crate) fn input(&self, upstream: &str, reader: &RingReader, link: Option<Arc<Link>>) {
        let gauge = RingGauge::of(reader)
            .inspect_err(|e| tracing::warn!("no ring fill for the input from {upstream}: {e}"))
            .ok();
        lock(&self.inputs).push(InputProbe {
            upstream: upstream.to_owned(),
            waits: reader.waits(),
            gauge,
            link,
        });
    }

    /// The node's output ring waits on these.
    pub(crate) fn output(&self, blocked: Arc<Waits>) {
        *lock(&self.output) = Some(blocked);
    }

    /// The node's bundling table holds `capacity` values at most.
    pub(crate) fn table_capacity(&self, capacity: usize) {
        self.table_capacity.store(capacity as u64, Relaxed);
    }

    /// A value went out, with id `seq`; `count` so far.
    #[inline]
    pub(crate) fn emitted(&self, seq: Seq, count: u64) {
        self.values_out.store(count, Relaxed);
        self.seq_out.store(seq.wrapping_add(1), Relaxed);
    }

    /// Whether the sampler waits for [`publish`](Self::publish): one load.
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Relaxed)
    }

    /// The node took `count` values so far.
    #[inline]
    pub(crate) fn taken(&self, count: u64) {
        self.values_in.store(count, Relaxed);
    }

    /// What only the node's loop knows, and costs to find: the table's
    /// fill and what its policies did.
    #[cold]
    pub(crate) fn publish(&self, table: usize, policy: PolicyCounts) {
        self.table.store(table as u64, Relaxed);
        *lock(&self.policy) = policy;
        self.wanted.store(false, Relaxed);
    }

    /// The loop napped for `nap` with nothing to read.
    pub(crate) fn slept(&self, nap: Duration) {
        self.slept_ns
            .store(self.slept_ns.load(Relaxed) + nap.as_nanos() as u64, Relaxed);
    }

    /// The figures now (and the function's times since the last sample).
    /// Asks the loop for its own figures, which the next sample carries.
    pub fn sample(&self) -> NodeSample {
        let (p50, p99) = {
            let mut calls = lock(&self.calls);
            let timed = calls.len();
            let q = |q: f64| (timed > 0).then(|| calls.value_at_quantile(q));
            let got = (q(0.5), q(0.99));
            calls.reset();
            got
        };
        let values_in = self.values_in.load(Relaxed);
        let before = self.sampled_in.swap(values_in, Relaxed);
        self.adjust_sampling(values_in.saturating_sub(before));
        self.wanted.store(true, Relaxed);
        // One instant for every figure: time waited never exceeds time run,
        // and busy time (the rest) never goes down from one sample to the
        // next.
        let now = Instant::now();
        let inputs: Vec<InputSample> = lock(&self.inputs)
            .iter()
            .map(|i| {
                let fill = i.gauge.as_ref().map(RingGauge::fill).unwrap_or_default();
                InputSample {
                    upstream: i.upstream.clone(),
                    fill_bytes: fill.bytes,
                    capacity: fill.capacity,
                    idle_ns: i.waits.total_at(now).as_nanos() as u64,
                    link: i.link.as_ref().map(|l| l.sample()),
                }
            })
            .collect();
        let idle_ns = inputs.iter().map(|i| i.idle_ns).sum::<u64>() + self.slept_ns.load(Relaxed);
        let blocked_ns = lock(&self.output)
            .as_ref()
            .map_or(0, |w| w.total_at(now).as_nanos() as u64);
        let seq = |s: &AtomicU64| s.load(Relaxed).checked_sub(1);
        NodeSample {
            ran_ns: now.duration_since(self.started).as_nanos() as u64,
            values_in,
            values_out: self.values_out.load(Relaxed),
            idle_ns,
            blocked_ns,
            p50_ns: p50,
            p99_ns: p99,
            table: self.table.load(Relaxed),
            table_capacity: self.table_capacity.load(Relaxed),
            policy: *lock(&self.policy),
            rss_kib: None,
            peak_rss_kib: None,
            last_seq_in: seq(&self.seq_in),
            last_seq_out: seq(&self.seq_out),
            inputs,
        }
    }

    /// About [`SAMPLES_PER_SECOND`] timed calls a second: the node took
    /// `taken` values since the last sample (about one a call, or one per
    /// upstream a bundle). A node that took none keeps its share: idle
    /// now, it may be as fast as before when values come again.
    fn adjust_sampling(&self, taken: u64) {
        let every = u64::from(self.every.load(Relaxed));
        if every == 0 || taken == 0 {
            return;
        }
        let next = taken / SAMPLES_PER_SECOND;
        self.every
            .store(next.clamp(1, u64::from(MAX_EVERY)) as u32, Relaxed);
    }
}

/// Times one call of a node's function in `every` (set by its probe), and
/// notes the id of each: the worker's side of the probe.
#[derive(Debug)]
pub(crate) struct CallMeter {
    probe: Arc<Probe>,
    left: u32,
    /// Calls timed since the last resync.
    timed: u64,
}

impl CallMeter {
    pub(crate) fn new(probe: Arc<Probe>) -> Self {
        Self {
            probe,
            left: 1,
            timed: 0,
        }
    }

    /// The probe.
    pub(crate) fn probe(&self) -> &Arc<Probe> {
        &self.probe
    }

    /// Takes a smaller `every` the sampler set since the last timed call
    /// (the node slowed down): called when the loop publishes, once a
    /// second.
    pub(crate) fn resync(&mut self) {
        self.timed = 0;
        let every = self.probe.every.load(Relaxed);
        if every > 0 {
            self.left = self.left.min(every);
        }
    }

    /// Runs `call`, the function on the input or bundle with id `seq`.
    #[inline]
    pub(crate) fn call<R>(&mut self, seq: Seq, call: impl FnOnce() -> R) -> R {
        self.probe.seq_in.store(seq.wrapping_add(1), Relaxed);
        self.left -= 1;
        if self.left == 0 {
            self.timed(call)
        } else {
            call()
        }
    }

    #[cold]
    #[inline(never)]
    fn timed<R>(&mut self, call: impl FnOnce() -> R) -> R {
        let every = self.probe.every.load(Relaxed);
        if every == 0 {
            // Nobody samples: look again in four billion calls.
            self.left = u32::MAX;
            return call();
        }
        // A node that sped up since the last sample times no more than
        // twice the calls a second aims at: it takes a smaller share itself
        // until the sampler sets one.
        self.timed += 1;
        let every = if self.timed > 2 * SAMPLES_PER_SECOND {
            self.timed = 0;
            let doubled = every.saturating_mul(2).min(MAX_EVERY);
            self.probe.every.store(doubled, Relaxed);
            doubled
        } else {
            every
        };
        self.left = every;
        let start = Instant::now();
        let result = call();
        let took = start.elapsed().as_nanos() as u64;
        lock(&self.probe.calls).saturating_record(took.max(1));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_times_about_a_thousand_calls_a_second_whatever_the_rate() {
        let probe = Probe::new(true);
        let mut meter = CallMeter::new(probe.clone());
        // A sample before any value: nothing to go by, the share stays.
        probe.sample();
        assert_eq!(probe.every.load(Relaxed), FIRST_EVERY);
        // A million values and calls "a second": one call in 64 timed at
        // first (fewer past two thousand), then about a thousand.
        let mut timed = Vec::new();
        let mut taken = 0;
        for _ in 0..3 {
            for seq in 0..1_000_000 {
                meter.call(seq, || ());
            }
            taken += 1_000_000;
            probe.taken(taken);
            timed.push(lock(&probe.calls).len());
            let s = probe.sample();
            meter.resync();
            assert!(s.p50_ns.is_some() && s.p99_ns >= s.p50_ns, "{s:?}");
            assert_eq!(s.last_seq_in, Some(999_999));
        }
        // One in 64, then fewer past two thousand.
        assert!((2_000..1_000_000 / 64).contains(&timed[0]), "{timed:?}");
        assert!(
            timed[1..].iter().all(|t| (999..=1_001).contains(t)),
            "{timed:?}"
        );
        // Idle for a second: the share stays.
        probe.sample();
        assert_eq!(probe.every.load(Relaxed), 1000);
        // A hundred a second: every call timed from the next second on.
        for _ in 0..2 {
            for seq in 0..100 {
                meter.call(seq, || ());
            }
            taken += 100;
            probe.taken(taken);
            probe.sample();
            meter.resync();
        }
        assert_eq!(probe.every.load(Relaxed), 1);
        for seq in 0..100 {
            meter.call(seq, || ());
        }
        assert_eq!(lock(&probe.calls).len(), 100);
        probe.sample();
        assert_eq!(probe.sample().p50_ns, None, "no call since the last sample");
        // It speeds up to a million a second: within the second, it times
        // a few thousand calls, not a million.
        for seq in 0..1_000_000 {
            meter.call(seq, || ());
        }
        let timed = lock(&probe.calls).len();
        assert!(timed < 30_000, "{timed}");
    }

    #[test]
    fn an_unsampled_probe_times_no_call() {
        let probe = Probe::new(false);
        let mut meter = CallMeter::new(probe.clone());
        for seq in 0..1000 {
            meter.call(seq, || ());
        }
        assert_eq!(lock(&probe.calls).len(), 0);
        assert_eq!(
            probe.sample().last_seq_in,
            Some(999),
            "ids are noted all the same"
        );
    }

    #[test]
    fn the_loop_publishes_its_figures_when_asked() {
        let probe = Probe::new(true);
        assert!(!probe.wanted());
        probe.emitted(41, 7);
        let first = probe.sample();
        assert_eq!((first.values_out, first.last_seq_out), (7, Some(41)));
        assert_eq!(first.values_in, 0);
        assert!(probe.wanted(), "a sample asks the loop for its figures");
        probe.taken(12);
        let policy = PolicyCounts {
            late: 2,
            ..PolicyCounts::default()
        };
        probe.publish(3, policy);
        assert!(!probe.wanted());
        let second = probe.sample();
        assert_eq!((second.values_in, second.table), (12, 3));
        assert_eq!(second.policy, policy);
        assert!(second.ran_ns >= first.ran_ns);
    }
}
