//! The conformance suite's topologies: one scenario for each promise of the
//! README's semantics table, written once and run in every mode.
//!
//! `conformance SCENARIO FLAVOUR MODE DIR`
//!
//! - `SCENARIO`: one of [`SCENARIOS`].
//! - `FLAVOUR`: `owned` (bundled workers decode their values) or `archived`
//!   (they read them in place, zero-copy); the two are different loops.
//! - `MODE`: `local`, `processes`, or `hosts=H1,H2,H3` (nodes round-robin
//!   over the hosts, so that edges cross hosts).
//! - `DIR`: an absolute directory of the test's own: the nodes' logs and
//!   the run's [signals](clusterduck_tests::Signals).
//!
//! The master prints a transcript on stdout: the outputs of the watched
//! nodes, every policy event `Launch::on_event` saw (per node, in order),
//! the report's counts of the nodes the scenario names, and the result.
//! A scenario's transcript is the same in every mode: that is the test.
//! Spouts follow scripts (send these ids, wait for that fact, raise that
//! flag); facts are raised by nodes and by the master's debugger and event
//! callbacks ("C dropped the duplicate of 1"), so that the order a scenario
//! needs is waited for, never slept into.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterduck::{
    BoxError, Bundling, Dispatcher, Emitter, GapPolicy, Launch, Node, Notice, OverflowPolicy,
    PolicyEvent, SendError, Topology,
};
use clusterduck_tests::Signals;

/// Every scenario, by name.
pub const SCENARIOS: &[&str] = &[
    "backpressure",
    "duplicate",
    "late",
    "window",
    "overflow-wait",
    "overflow-evict",
    "overflow-fail",
    "gap-fail",
    "gap-skip",
    "gap-default",
    "incomplete",
    "worker-error",
    "worker-panic",
    "spout-error",
    "too-large",
    "spout-panic",
    "bundled-error",
    "drain",
    "ctrl-c",
    "ctrl-c-twice",
];

/// Values each consumer may take from an upstream per read.
const BATCH: usize = 16;
/// Bytes of each node's ring in process mode: a u64 frame takes 32.
const RING_BYTES: usize = 4096;

/// Each node's space for values too large for its ring.
const LARGE_BYTES: usize = 64 << 10;
/// Bytes a u64 value takes in a ring: a 16-byte header, 8 bytes padded to 16.
const FRAME_BYTES: usize = 32;
/// How many values a held-back producer sends before its consumer goes on:
/// no more than every mode buffers for sure (the consumer, stopped in its
/// first value, may have taken that one value alone: a batch is at most
/// `BATCH`, not at least), and more than a batch.
const HOLD: u64 = 24;
/// The reorder window of the `window` scenario.
const WINDOW: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    Owned,
    Archived,
}

#[derive(Clone, Debug)]
enum Mode {
    Local,
    Processes,
    Hosts(Vec<String>),
}

impl Mode {
    /// How many values a producer can have sent that its consumer has not
    /// processed yet, at most: what the edge buffers, what the consumer
    /// took in its last read, the one it is processing and the one being
    /// counted.
    fn buffered(&self) -> u64 {
        let ring = (RING_BYTES / FRAME_BYTES) as u64;
        let edge = match self {
            Mode::Local | Mode::Processes => ring,
            // The producer's ring, and its mirror on the consumer's host.
            Mode::Hosts(_) => 2 * ring,
        };
        edge + BATCH as u64 + 2
    }
}

/// What a scenario's spouts and nodes share.
struct Ctx {
    flavour: Flavour,
    mode: Mode,
    signals: Signals,
}

/// What the master does besides running the topology.
#[derive(Default)]
struct Plan {
    /// Nodes whose outputs the transcript lists.
    watched: Vec<Node<u64>>,
    /// Nodes whose report the transcript gives.
    report: Vec<String>,
    /// Whether each output raises the flag `out-<node>-<seq>`.
    flag_outputs: bool,
    /// Drain the run once this flag is raised.
    drain_on: Option<String>,
    /// Whether the transcript lists the policy events (else the epilogue
    /// says what it needs of them).
    hide_events: bool,
    /// Lines the master adds to the transcript after the run.
    epilogue: Option<Epilogue>,
}

impl Plan {
    /// The transcript gives `node`'s outputs and report.
    fn watch(node: Node<u64>) -> Self {
        Self {
            report: vec![node.name().to_owned()],
            watched: vec![node],
            ..Self::default()
        }
    }
}

/// What the master saw of a run, for a scenario's epilogue.
struct Finished<'a> {
    signals: &'a Signals,
    report: Option<&'a clusterduck::RunReport>,
    events: &'a BTreeMap<String, Vec<String>>,
}

type Epilogue = Box<dyn FnOnce(Finished<'_>) -> Vec<String>>;

/// One step of a spout's script.
#[derive(Clone, Debug)]
enum Step {
    /// Send these ids (value: `10 * id + the spout's index`).
    Send(Vec<u64>),
    /// Wait until every one of these flags is raised; return if the run
    /// stops meanwhile.
    Wait(Vec<String>),
    /// Raise this flag.
    Raise(String),
    /// Return this error.
    Fail(String),
    /// Panic with this message.
    Panic(String),
}

fn ids(r: std::ops::Range<u64>) -> Step {
    Step::Send(r.collect())
}

fn wait(flags: &[&str]) -> Step {
    Step::Wait(flags.iter().map(|f| f.to_string()).collect())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, flavour, mode, dir] = &args[..] else {
        eprintln!("usage: conformance SCENARIO owned|archived local|processes|hosts=H1,H2 DIR");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let ctx = Ctx {
        flavour: match flavour.as_str() {
            "owned" => Flavour::Owned,
            "archived" => Flavour::Archived,
            other => panic!("unknown flavour {other}"),
        },
        mode: match mode.as_str() {
            "local" => Mode::Local,
            "processes" => Mode::Processes,
            hosts => Mode::Hosts(
                hosts
                    .strip_prefix("hosts=")
                    .unwrap_or_else(|| panic!("unknown mode {hosts}"))
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
            ),
        },
        signals: Signals::new(&dir),
    };
    let mut t = Topology::new();
    let plan = build(scenario, &ctx, &mut t);
    let launch = match &ctx.mode {
        Mode::Local => Launch::local(),
        Mode::Processes => Launch::processes(),
        Mode::Hosts(hosts) => Launch::hosts(hosts.clone()),
    }
    .dir(&dir)
    .ring_bytes(RING_BYTES)
    .large_bytes(LARGE_BYTES)
    .batch(BATCH);
    let record = Record::default();
    let launch = record.attach(launch, &plan, &ctx.signals);
    let result = t.launch(launch);
    match &result {
        Ok(report) => eprint!("{report}"),
        Err(e) => {
            if let Some(report) = e.report() {
                eprint!("{report}");
            }
        }
    }
    for line in record.transcript(plan, &ctx.signals, &result) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// Per node, the (seq, value) of each output the debugger saw.
type Outputs = BTreeMap<String, Vec<(u64, u64)>>;

/// What the master's debugger and event callbacks saw, per node.
#[derive(Default)]
struct Record {
    outputs: Arc<Mutex<Outputs>>,
    events: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

impl Record {
    /// Watches the plan's nodes and every event; raises the flags the
    /// scenarios wait for; drains the run when the plan says.
    fn attach(&self, mut launch: Launch, plan: &Plan, signals: &Signals) -> Launch {
        for node in &plan.watched {
            let (name, outputs, signals, flag) = (
                node.name().to_owned(),
                self.outputs.clone(),
                signals.clone(),
                plan.flag_outputs,
            );
            outputs.lock().unwrap().insert(name.clone(), Vec::new());
            launch = launch.debug(node, move |seq, v: u64| {
                outputs
                    .lock()
                    .unwrap()
                    .get_mut(&name)
                    .unwrap()
                    .push((seq, v));
                if flag {
                    signals.raise(&format!("out-{name}-{seq}"));
                }
            });
        }
        let (log, flags) = (self.events.clone(), signals.clone());
        launch = launch.on_event(move |e: &PolicyEvent| {
            log.lock()
                .unwrap()
                .entry(e.node.clone())
                .or_default()
                .push(e.to_string());
            flags.raise(&event_flag(e));
        });
        if let Some(flag) = plan.drain_on.clone() {
            let (stop, signals) = (launch.stop_signal(), signals.clone());
            std::thread::spawn(move || {
                signals.wait(&flag, || false);
                stop.drain();
            });
        }
        launch
    }

    /// The transcript of a run: outputs, events, the report's counts of
    /// the plan's nodes, the epilogue, the result.
    fn transcript(
        self,
        plan: Plan,
        signals: &Signals,
        result: &Result<clusterduck::RunReport, clusterduck::Error>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for (node, list) in self.outputs.lock().unwrap().iter() {
            let seqs: Vec<String> = list.iter().map(|(s, _)| s.to_string()).collect();
            lines.push(format!("outputs {node}: {}", seqs.join(" ")));
            for (seq, value) in list {
                if value != seq {
                    lines.push(format!("output {node} seq {seq} has value {value}"));
                }
            }
        }
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        if !plan.hide_events {
            for list in events.values() {
                lines.extend(list.iter().map(|e| format!("event: {e}")));
            }
        }
        let report = match result {
            Ok(report) => Some(report),
            Err(e) => e.report(),
        };
        if let Some(report) = report {
            for name in &plan.report {
                let Some(n) = report.node(name) else {
                    lines.push(format!("report {name}: missing"));
                    continue;
                };
                let p = &n.policy;
                lines.push(format!(
                    "report {name}: in {}, out {}, duplicates {}, late {}, gaps {}, evicted {}, incomplete {}",
                    n.messages_in, n.messages_out, p.duplicates, p.late, p.gaps, p.evicted, p.incomplete
                ));
                for b in &n.incomplete {
                    lines.push(format!(
                        "  incomplete seq {}: nothing from {}",
                        b.seq,
                        b.missing.join(", ")
                    ));
                }
            }
            if report.drained_on_request {
                lines.push("drained on request".to_owned());
            }
        }
        if let Some(epilogue) = plan.epilogue {
            lines.extend(epilogue(Finished {
                signals,
                report,
                events: &events,
            }));
        }
        lines.push(match result {
            Ok(_) => "result: ok".to_owned(),
            Err(e) => format!("result: error: {e}"),
        });
        lines
    }
}

/// The flag an event raises: `<node>-<kind>-<seq>`.
fn event_flag(e: &PolicyEvent) -> String {
    let kind = match &e.notice {
        Notice::Duplicate { .. } => "duplicate",
        Notice::Late { .. } => "late",
        Notice::Gap { .. } => "gap",
        Notice::Evicted { .. } => "evicted",
        Notice::Overflow { .. } => "overflow",
        Notice::Incomplete { .. } => "incomplete",
        Notice::Restarted { .. } => "restarted",
    };
    format!("{}-{kind}-{}", e.node, e.notice.seq().unwrap_or_default())
}

/// A spout that follows `script`; its `k`-th values are `10 * id + k`.
fn scripted(t: &mut Topology, ctx: &Ctx, name: &str, k: u64, script: Vec<Step>) -> Node<u64> {
    let (signals, name) = (ctx.signals.clone(), name.to_owned());
    t.spout(&name.clone(), move |out: &mut Dispatcher<u64>| {
        for step in &script {
            match step {
                Step::Send(ids) => {
                    for id in ids {
                        out.send(*id, 10 * id + k)?;
                    }
                }
                Step::Wait(flags) => {
                    if !signals.wait_all(flags, || out.is_stopping()) {
                        signals.raise(&format!("{name}-told-to-stop"));
                        return Ok(());
                    }
                }
                Step::Raise(flag) => signals.raise(flag),
                Step::Fail(message) => return Err(message.clone().into()),
                Step::Panic(message) => panic!("{message}"),
            }
        }
        Ok(())
    })
}

/// A bundled worker over `ups` of the ctx's flavour: it checks that each
/// bundle holds `10 * seq + k` from its `k`-th upstream, emits `seq`,
/// counts the bundles it processed in the counter `<name>-processed`, and
/// fails at `fail_at`.
fn bundled(
    t: &mut Topology,
    ctx: &Ctx,
    name: &str,
    ups: &[&Node<u64>],
    bundling: Bundling,
    fail_at: Option<u64>,
) -> Node<u64> {
    let processed = ctx.signals.counter(&format!("{name}-processed"));
    let mut count = 0;
    let mut check = move |seq: u64, values: &[u64]| -> Result<(), BoxError> {
        if Some(seq) == fail_at {
            return Err(format!("cannot bundle {seq}").into());
        }
        for (k, v) in values.iter().enumerate() {
            if *v != 10 * seq + k as u64 {
                return Err(format!("bundle {seq}: upstream {k} gave {v}").into());
            }
        }
        count += 1;
        processed.set(count);
        Ok(())
    };
    match ctx.flavour {
        Flavour::Owned => t.bundled(
            name,
            ups.to_vec(),
            bundling,
            move |seq, values: Vec<u64>, out: &mut Emitter<u64>| {
                check(seq, &values)?;
                out.emit(seq);
                Ok(())
            },
        ),
        Flavour::Archived => t.bundled_archived(
            name,
            ups.to_vec(),
            bundling,
            move |seq, values, out: &mut Emitter<u64>| {
                let values: Vec<u64> = values.iter().map(|v| v.to_native()).collect();
                check(seq, &values)?;
                out.emit(seq);
                Ok(())
            },
        ),
    }
}

/// A spout that sends `0..n` and records, in the counter `<name>-ahead`,
/// how far it got ahead of `consumer`'s counter `<consumer>-processed` at
/// most; it raises `<name>-sent-<HOLD>` once it has sent `HOLD` values.
fn measured(t: &mut Topology, ctx: &Ctx, name: &str, k: u64, n: u64, consumer: &str) -> Node<u64> {
    let processed = ctx.signals.counter(&format!("{consumer}-processed"));
    let ahead = ctx.signals.counter(&format!("{name}-ahead"));
    let (signals, held) = (ctx.signals.clone(), format!("{name}-sent-{HOLD}"));
    t.spout(name, move |out: &mut Dispatcher<u64>| {
        let mut most = 0;
        for id in 0..n {
            out.send(id, 10 * id + k)?;
            most = most.max(id + 1 - processed.get().min(id + 1));
            if id + 1 == HOLD {
                signals.raise(&held);
            }
        }
        ahead.set(most);
        Ok(())
    })
}

/// The transcript's line on how far `spout` ran ahead: at least `HOLD`
/// (its consumer waited for that), at most `bound`.
fn held_back(spout: &'static str, bound: u64) -> Epilogue {
    Box::new(move |run: Finished<'_>| {
        let ahead = run.signals.counter(&format!("{spout}-ahead")).get();
        eprintln!("{spout} ran at most {ahead} values ahead (bound {bound})");
        vec![if (HOLD..=bound).contains(&ahead) {
            format!(
                "{spout} was held back: ahead by at least {HOLD} and at most what the edges hold"
            )
        } else {
            format!("{spout} ran {ahead} ahead, outside {HOLD}..={bound}")
        }]
    })
}

fn build(scenario: &str, ctx: &Ctx, t: &mut Topology) -> Plan {
    match scenario {
        // A consumer is full: the producer waits, nothing is dropped.
        "backpressure" => {
            let n = 2000;
            let s = measured(t, ctx, "S", 0, n, "K");
            let (signals, processed) = (ctx.signals.clone(), ctx.signals.counter("K-processed"));
            let mut next = 0;
            let k = t.worker("K", &s, move |seq, v: u64, out: &mut Emitter<u64>| {
                if seq == 0 {
                    signals.wait(&format!("S-sent-{HOLD}"), || false);
                }
                if seq != next || v != 10 * seq {
                    return Err(format!("got {seq} = {v} where {next} was due").into());
                }
                next += 1;
                processed.set(next);
                if next == n {
                    out.emit(seq);
                }
                Ok(())
            });
            Plan {
                watched: vec![k],
                report: vec!["S".into(), "K".into()],
                epilogue: Some(held_back("S", ctx.mode.buffered())),
                ..Plan::default()
            }
        }
        // A value for a pending (id, upstream) again: dropped, a duplicate.
        "duplicate" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..2), ids(1..3)]);
            let b = scripted(
                t,
                ctx,
                "B",
                1,
                vec![ids(0..1), wait(&["C-duplicate-1"]), ids(1..3)],
            );
            let c = bundled(t, ctx, "C", &[&a, &b], Bundling::sequenced(0), None);
            Plan::watch(c)
        }
        // A value for an id already processed: dropped, late.
        "late" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..4)]);
            let b = scripted(
                t,
                ctx,
                "B",
                1,
                vec![ids(0..3), wait(&["out-C-2"]), ids(2..4)],
            );
            let c = bundled(t, ctx, "C", &[&a, &b], Bundling::sequenced(0), None);
            Plan {
                flag_outputs: true,
                ..Plan::watch(c)
            }
        }
        // A sequenced upstream more than `window` ids ahead is not read
        // until the window moves: A is held back by what its edge buffers
        // beyond the window while B holds.
        "window" => {
            let n = 1000;
            let a = measured(t, ctx, "A", 0, n, "C");
            let b = scripted(
                t,
                ctx,
                "B",
                1,
                vec![wait(&[&format!("A-sent-{HOLD}")]), ids(0..n)],
            );
            let c = bundled(
                t,
                ctx,
                "C",
                &[&a, &b],
                Bundling::sequenced(0).window(WINDOW),
                None,
            );
            let c_seen = t.sink("K", &c, |_, _| Ok(()));
            let _ = c_seen;
            Plan {
                report: vec!["C".into()],
                epilogue: Some(held_back("A", ctx.mode.buffered() + WINDOW as u64)),
                ..Plan::default()
            }
        }
        // An unordered table full: the sending upstream waits (default).
        "overflow-wait" => {
            let a = scripted(
                t,
                ctx,
                "A",
                0,
                vec![ids(10..13), Step::Raise("A-sent".into())],
            );
            let b = scripted(t, ctx, "B", 1, vec![wait(&["A-sent"]), ids(10..13)]);
            let c = bundled(
                t,
                ctx,
                "C",
                &[&a, &b],
                Bundling::unordered().window(2),
                None,
            );
            Plan::watch(c)
        }
        // ... or the oldest pending bundle is evicted, or the run fails.
        "overflow-evict" | "overflow-fail" => {
            let evict = scenario == "overflow-evict";
            let a = scripted(t, ctx, "A", 0, vec![ids(10..13)]);
            let b = if evict {
                let late = ids(10..11);
                scripted(
                    t,
                    ctx,
                    "B",
                    1,
                    vec![wait(&["C-evicted-10"]), ids(11..13), late],
                )
            } else {
                scripted(t, ctx, "B", 1, vec![wait(&["never"])])
            };
            let policy = if evict {
                OverflowPolicy::EvictOldest
            } else {
                OverflowPolicy::Fail
            };
            let bundling = Bundling::unordered().window(2).on_overflow(policy);
            Plan::watch(bundled(t, ctx, "C", &[&a, &b], bundling, None))
        }
        // A bundle that blocks progress for the gap timeout fails the run
        // (default), naming the id and the silent upstreams...
        "gap-fail" | "gap-default" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..10)]);
            let b = scripted(
                t,
                ctx,
                "B",
                1,
                vec![ids(0..3), ids(4..10), wait(&["never"])],
            );
            let mut bundling = Bundling::sequenced(0);
            if scenario == "gap-fail" {
                bundling = bundling.gap_timeout(Duration::from_millis(50));
            }
            let c = bundled(t, ctx, "C", &[&a, &b], bundling, None);
            Plan::watch(c)
        }
        // ... or it is skipped and counted.
        "gap-skip" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..10)]);
            let b = scripted(
                t,
                ctx,
                "B",
                1,
                vec![ids(0..3), ids(4..10), wait(&["C-gap-3"])],
            );
            let c = bundled(
                t,
                ctx,
                "C",
                &[&a, &b],
                Bundling::sequenced(0)
                    .gap_timeout(Duration::from_millis(50))
                    .on_gap(GapPolicy::Skip),
                None,
            );
            Plan::watch(c)
        }
        // A bundle missing a value from an upstream that has ended is
        // incomplete, or a gap if a later bundle is complete; the first 16
        // incomplete bundles are listed.
        "incomplete" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..30)]);
            let b = scripted(t, ctx, "B", 1, vec![ids(0..2), ids(5..6)]);
            let c = bundled(
                t,
                ctx,
                "C",
                &[&a, &b],
                Bundling::sequenced(0).on_gap(GapPolicy::Skip),
                None,
            );
            Plan::watch(c)
        }
        // A node function returns an error or panics: the run stops, naming
        // the node, the id and the message.
        "worker-error" | "worker-panic" => {
            let s = scripted(t, ctx, "S", 0, vec![ids(0..1000)]);
            let panics = scenario == "worker-panic";
            let w = t.worker("W", &s, move |seq, v: u64, out: &mut Emitter<u64>| {
                if seq == 5 {
                    if panics {
                        panic!("cannot take {v}");
                    }
                    return Err(format!("cannot take {v}").into());
                }
                out.emit(seq);
                Ok(())
            });
            Plan {
                watched: vec![w],
                ..Plan::default()
            }
        }
        "spout-error" | "spout-panic" => {
            let last = if scenario == "spout-error" {
                Step::Fail("sensor unplugged".into())
            } else {
                Step::Panic("sensor on fire".into())
            };
            // How much of what S sent before it failed W processes is not
            // promised (the run stops): the transcript is the failure. S
            // fails once W has its first value, so that across hosts the
            // link between them was made (and says which io backend it
            // uses) before the run stops.
            let s = scripted(t, ctx, "S", 0, vec![ids(0..3), wait(&["W-got-0"]), last]);
            let signals = ctx.signals.clone();
            t.sink("W", &s, move |seq, _| {
                if seq == 0 {
                    signals.raise("W-got-0");
                }
                Ok(())
            });
            Plan::default()
        }
        // A value larger than a node's space for large values is refused,
        // with the same error in every mode (a thread's ring is a process's
        // ring, with the same space beside it).
        "too-large" => {
            let s = t.spout("S", |out: &mut Dispatcher<Vec<u8>>| {
                out.send(0, vec![1; 8])?;
                out.send(1, vec![2; LARGE_BYTES])?;
                Ok(())
            });
            t.sink("K", &s, |_, _| Ok(()));
            Plan::default()
        }
        "bundled-error" => {
            let a = scripted(t, ctx, "A", 0, vec![ids(0..10)]);
            let b = scripted(t, ctx, "B", 1, vec![ids(0..10)]);
            let c = bundled(t, ctx, "C", &[&a, &b], Bundling::sequenced(0), Some(4));
            Plan {
                watched: vec![c],
                ..Plan::default()
            }
        }
        // A stop request: spouts are told to stop (`send` returns
        // `SendError::Stopping`), the rest drains, the report says so, and
        // gaps the stopped spouts leave are skipped and counted.
        "drain" | "ctrl-c" => drain(t, ctx, scenario),
        // A second Ctrl-C aborts a drain that cannot finish.
        "ctrl-c-twice" => {
            let s = scripted(t, ctx, "S", 0, vec![ids(0..1), wait(&["never"])]);
            let signals = ctx.signals.clone();
            t.sink("K", &s, move |_, _| {
                // Stuck: the drain cannot end.
                signals.raise("K-stuck");
                signals.wait("never", || false);
                Ok(())
            });
            Plan::default()
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Two endless spouts, B without id 500, bundled in sequence; the run is
/// drained (by a stop request, or by the test's Ctrl-C) once both sent
/// past 600, so that C is stuck at 500 when it drains.
fn drain(t: &mut Topology, ctx: &Ctx, scenario: &str) -> Plan {
    let endless = |t: &mut Topology, name: &'static str, k: u64, skip: Option<u64>| {
        let signals = ctx.signals.clone();
        let last = ctx.signals.counter(&format!("{name}-last"));
        t.spout(name, move |out: &mut Dispatcher<u64>| {
            for id in 0.. {
                if Some(id) == skip {
                    continue;
                }
                match out.send(id, 10 * id + k) {
                    Ok(()) => last.set(id + 1),
                    Err(SendError::Stopping(_)) => {
                        signals.raise(&format!("{name}-told-to-stop"));
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                if id == 600 {
                    signals.raise(&format!("{name}-past-600"));
                }
            }
            Ok(())
        })
    };
    let a = endless(t, "A", 0, None);
    let b = endless(t, "B", 1, Some(500));
    let c = bundled(t, ctx, "C", &[&a, &b], Bundling::sequenced(0), None);
    let signals = ctx.signals.clone();
    t.spout("G", move |out: &mut Dispatcher<u64>| {
        // The gate: raises the drain flag once both spouts are past 600.
        if signals.wait_all(&["A-past-600".into(), "B-past-600".into()], || {
            out.is_stopping()
        }) {
            signals.raise("drain-now");
        }
        Ok(())
    });
    let _ = c;
    let ctrl_c = scenario == "ctrl-c";
    Plan {
        drain_on: (!ctrl_c).then(|| "drain-now".to_owned()),
        hide_events: true,
        epilogue: Some(Box::new(|run: Finished<'_>| {
            let signals = run.signals;
            let (a, b) = (
                signals.counter("A-last").get(),
                signals.counter("B-last").get(),
            );
            let processed = signals.counter("C-processed").get();
            eprintln!("A sent 0..{a}, B 0..{b} but 500, C processed {processed}");
            let mut lines = vec![
                format!(
                    "A told to stop: {}, B told to stop: {}",
                    signals.is_raised("A-told-to-stop"),
                    signals.is_raised("B-told-to-stop")
                ),
                format!(
                    "C processed every bundle both sent but 500: {}",
                    processed == a.min(b) - 1
                ),
            ];
            let c_events = run.events.get("C").cloned().unwrap_or_default();
            lines.extend(
                c_events
                    .iter()
                    .filter(|e| !e.contains("incomplete"))
                    .cloned(),
            );
            let incomplete = c_events.iter().filter(|e| e.contains("incomplete")).count() as u64;
            lines.push(format!(
                "C reported as incomplete each id only one spout sent: {}",
                incomplete == a.abs_diff(b)
            ));
            if let Some(c) = run.report.and_then(|r| r.node("C")) {
                lines.push(format!(
                    "C: in {} (all sent), out {}, gaps {}, incomplete counted {}",
                    if c.messages_in == a + b - 1 {
                        "ok"
                    } else {
                        "wrong"
                    },
                    if c.messages_out == processed {
                        "ok"
                    } else {
                        "wrong"
                    },
                    c.policy.gaps,
                    c.policy.incomplete == incomplete,
                ));
            }
            lines
        })),
        ..Plan::default()
    }
}
