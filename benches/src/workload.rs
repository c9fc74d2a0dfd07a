//! The standard workloads, each a real topology launched through the public
//! API, and what one run of one measures.
//!
//! - `pipe`: spout → worker (pass-through) → sink;
//! - `join`: two spouts sending the same ids → a bundled, sequenced worker →
//!   sink (the README's topology); the pair goes on as its older half;
//! - `fanout`: one spout → four workers → one sink each;
//! - `wide`: `--spouts N` spouts → one bundled, sequenced worker over all of
//!   them (a `Vec` of handles) → sink: a launch of many nodes (on the test
//!   hosts with `--transport tcp`), whose launch time is reported apart
//!   from its run time.
//!
//! Every value carries the wall-clock time of its `send`; each sink records
//! the end-to-end latency of every value it gets in a histogram and, at the
//! last one, emits a summary that the debugger brings to the launching
//! process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterduck::{Bundling, Emitter, Launch, Node, Topology};
use hdrhistogram::Histogram;

use crate::clock::{stamp, Calibration};
use crate::figures::Figures;

/// A value of the benches: when it was sent (a [`stamp`]), and its payload.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Sample {
    sent: u64,
    payload: Vec<u8>,
}

/// What a sink saw.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
pub(crate) struct Summary {
    count: u64,
    /// Stamps.
    first_sent: u64,
    last_received: u64,
    /// Stamps per nanosecond, as the sink measured it.
    per_ns: f64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
}

/// Which topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    Pipe,
    Join,
    Fanout,
    Wide,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pipe => "pipe",
            Self::Join => "join",
            Self::Fanout => "fanout",
            Self::Wide => "wide",
        }
    }
}

/// Where the nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// Threads of one process.
    Local,
    /// One process per node, shared-memory rings.
    Shm,
    /// One process per node, every edge a TCP link: across the test hosts
    /// (`cd-h1` .. `cd-h<hosts>`, round-robin) when `CLUSTERDUCK_SSH_CONFIG`
    /// is set, else over loopback (nodes alternate between `localhost` and
    /// `127.0.0.1`, two names of this machine, so every edge crosses
    /// "hosts").
    Tcp,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shm => "shm",
            Self::Tcp => "tcp",
        }
    }
}

/// How workers take their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Input {
    /// Decoded into owned values (`Topology::worker`).
    Owned,
    /// Zero-copy, archived where they lie (`Topology::worker_archived`);
    /// pass-through workers forward their input's bytes.
    Archived,
}

impl Input {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Owned => "owned",
            Self::Archived => "archived",
        }
    }
}

/// One configuration to measure.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workload: Workload,
    pub(crate) transport: Transport,
    /// How the workers other than the join's take their values.
    pub(crate) input: Input,
    /// Whether spouts send one value again and again by reference
    /// (`send_ref`) rather than a new value each time (`send`).
    pub(crate) send_ref: bool,
    pub(crate) messages: u64,
    pub(crate) payload: usize,
    /// Values a node takes from an upstream per read.
    pub(crate) batch: usize,
    /// How long a node polls its inputs before it sleeps, in microseconds.
    pub(crate) spin_us: u64,
    pub(crate) ring_bytes: usize,
    /// Values per second each spout offers; 0: as fast as it can.
    pub(crate) rate: u64,
    /// One value in this many carries a stamp (the others carry 0): the
    /// latency figures are over those, and the others cost neither a clock
    /// read in the spout nor a histogram record in the sink.
    pub(crate) stamp_every: u64,
    /// For `join`: spout B offers `rate / slow` values per second.
    pub(crate) slow: u64,
    /// For `join`: the reorder window, in ids.
    pub(crate) window: usize,
    pub(crate) dir: String,
    /// For `wide`: how many spouts.
    pub(crate) spouts: u64,
    /// For `tcp` across the test hosts: how many (`cd-h1..`).
    pub(crate) hosts: usize,
    /// The launch tree's width.
    pub(crate) fanout: usize,
    /// For `pipe` across test hosts: the spout on the first host, the
    /// worker and the sink on the second, so that each value crosses hosts
    /// once (as `iperf3`'s stream does); else nodes go round-robin.
    pub(crate) one_hop: bool,
    /// Where to serve the run's metrics (none: nodes sample nothing).
    pub(crate) metrics: Option<String>,
    /// Restarts every node may use (process mode).
    pub(crate) restarts: u32,
}

/// A spout of `messages` values of `payload` bytes, `rate` a second (0:
/// flat out): one value refilled and sent by reference (`send_ref`: in
/// process mode archived straight from it into the ring; in local mode a
/// copy per consumer), or a new value for each send (`send`).
fn spout(
    t: &mut Topology,
    name: &str,
    messages: u64,
    payload: usize,
    rate: u64,
    by_ref: bool,
    stamp_every: u64,
) -> Node<Sample> {
    t.spout(name, move |out| {
        let mut sample = Sample {
            sent: 0,
            payload: vec![0xAB; payload],
        };
        let start = Instant::now();
        for i in 0..messages {
            // Open loop: value i is due at i / rate, whatever came before.
            if let Some(at) = (i * 1_000_000_000).checked_div(rate) {
                let due = start + Duration::from_nanos(at);
                // Sleep while early, never spin: on two cores, a spout that
                // spins or yields in a loop takes a core from the nodes it
                // measures. A sleep lasts at least the timer slack (50 µs),
                // so values leave in bursts of that many microseconds' worth,
                // each stamped when it is actually sent.
                let now = Instant::now();
                if now < due {
                    std::thread::sleep(due - now);
                }
            }
            // Both spouts of a join stamp the same ids, and the first and
            // the last value always: the run's duration is between them.
            let sent = if i % stamp_every == 0 || i + 1 == messages {
                stamp()
            } else {
                UNSTAMPED
            };
            if by_ref {
                sample.sent = sent;
                out.send_ref(i, &sample)?;
            } else {
                let value = Sample {
                    sent,
                    payload: sample.payload.clone(),
                };
                out.send(i, value)?;
            }
        }
        Ok(())
    })
}

fn pass(t: &mut Topology, name: &str, up: &Node<Sample>, input: Input) -> Node<Sample> {
    match input {
        Input::Owned => t.worker(name, up, |_, v: Sample, out: &mut Emitter<Sample>| {
            out.emit(v);
            Ok(())
        }),
        Input::Archived => t.worker_archived(name, up, |_, v, out: &mut Emitter<Sample>| {
            out.forward(v);
            Ok(())
        }),
    }
}

fn sink(
    t: &mut Topology,
    name: &str,
    up: &Node<Sample>,
    expected: u64,
    input: Input,
) -> Node<Summary> {
    let mut seen = Seen::new(expected);
    match input {
        Input::Owned => t.worker(name, up, move |_, v: Sample, out: &mut Emitter<Summary>| {
            seen.record(v.sent, out);
            Ok(())
        }),
        Input::Archived => t.worker_archived(name, up, move |_, v, out: &mut Emitter<Summary>| {
            seen.record(v.sent.to_native(), out);
            Ok(())
        }),
    }
}

/// The stamp of a value that carries none (see [`Config::stamp_every`]).
const UNSTAMPED: u64 = 0;

/// What a sink records of the values it gets.
#[derive(Clone)]
struct Seen {
    expected: u64,
    /// Values seen, stamped or not.
    count: u64,
    histogram: Histogram<u64>,
    first_sent: u64,
    calibration: Option<Calibration>,
}

impl Seen {
    fn new(expected: u64) -> Self {
        Self {
            expected,
            count: 0,
            // Latencies in stamps, from 1 to an hour at 10 stamps a
            // nanosecond, 3 significant digits.
            histogram: Histogram::<u64>::new_with_bounds(1, 36_000_000_000_000, 3)
                .expect("valid histogram bounds"),
            first_sent: u64::MAX,
            calibration: None,
        }
    }

    /// Records a value sent at stamp `sent` (or [`UNSTAMPED`]); at the last
    /// one, emits the summary.
    fn record(&mut self, sent: u64, out: &mut Emitter<Summary>) {
        self.count += 1;
        let last = self.count == self.expected;
        if sent == UNSTAMPED && !last {
            return;
        }
        let now = stamp();
        let calibration = *self.calibration.get_or_insert_with(Calibration::start);
        let histogram = &mut self.histogram;
        if sent != UNSTAMPED {
            self.first_sent = self.first_sent.min(sent);
            histogram.saturating_record(now.saturating_sub(sent).max(1));
        }
        if last {
            let per_ns = calibration.per_ns();
            let ns = |q: f64| (histogram.value_at_quantile(q) as f64 / per_ns) as u64;
            out.emit(Summary {
                count: self.count,
                first_sent: self.first_sent,
                last_received: now,
                per_ns,
                p50_ns: ns(0.5),
                p99_ns: ns(0.99),
                p999_ns: ns(0.999),
            });
        }
    }
}

/// Runs `config` once and returns what it measured.
pub(crate) fn run_once(config: &Config) -> Result<Figures, String> {
    let n = config.messages;
    let by_ref = config.send_ref;
    let every = config.stamp_every;
    let mut t = Topology::new();
    let mut sinks = Vec::new();
    let mut pipe = None;
    match config.workload {
        Workload::Pipe => {
            let s = spout(&mut t, "S", n, config.payload, config.rate, by_ref, every);
            let w = pass(&mut t, "W", &s, config.input);
            sinks.push(sink(&mut t, "K", &w, n, config.input));
            pipe = Some((s, w));
        }
        Workload::Join => {
            if config.slow > 1 && config.rate == 0 {
                return Err("--slow needs --rate: B offers rate / slow values per second".into());
            }
            let a = spout(&mut t, "A", n, config.payload, config.rate, by_ref, every);
            let b = spout(
                &mut t,
                "B",
                n,
                config.payload,
                config.rate / config.slow.max(1),
                by_ref,
                every,
            );
            let bundling = Bundling::sequenced(0).window(config.window);
            // A pair is as old as its older half (and the halves' payloads
            // are alike): the older goes on.
            let j = match config.input {
                Input::Owned => t.bundled(
                    "J",
                    (&a, &b),
                    bundling,
                    |_, (a, b): (Sample, Sample), out: &mut Emitter<Sample>| {
                        out.emit(if a.sent <= b.sent { a } else { b });
                        Ok(())
                    },
                ),
                Input::Archived => t.bundled_archived(
                    "J",
                    (&a, &b),
                    bundling,
                    |_, (a, b), out: &mut Emitter<Sample>| {
                        out.forward(if a.sent <= b.sent { a } else { b });
                        Ok(())
                    },
                ),
            };
            sinks.push(sink(&mut t, "K", &j, n, config.input));
        }
        Workload::Fanout => {
            let s = spout(&mut t, "S", n, config.payload, config.rate, by_ref, every);
            for k in 1..=4 {
                let w = pass(&mut t, &format!("W{k}"), &s, config.input);
                sinks.push(sink(&mut t, &format!("K{k}"), &w, n, config.input));
            }
        }
        Workload::Wide => {
            let spouts: Vec<Node<Sample>> = (0..config.spouts.max(1))
                .map(|k| {
                    let name = format!("S{k}");
                    spout(&mut t, &name, n, config.payload, config.rate, by_ref, every)
                })
                .collect();
            let bundling = Bundling::sequenced(0).window(config.window);
            // A bundle is as old as its oldest value: that one goes on.
            let j = t.bundled(
                "J",
                spouts.iter().collect::<Vec<_>>(),
                bundling,
                |_, values: Vec<Sample>, out: &mut Emitter<Sample>| {
                    let oldest = values.into_iter().min_by_key(|s| s.sent);
                    out.emit(oldest.expect("a bundle of at least one"));
                    Ok(())
                },
            );
            sinks.push(sink(&mut t, "K", &j, n, config.input));
        }
    }
    let hosts = hosts(config);
    let summaries = Arc::new(Mutex::new(Vec::new()));
    let mut launch = match config.transport {
        Transport::Local => Launch::local(),
        Transport::Shm => Launch::processes()
            .ring_bytes(config.ring_bytes)
            .dir(&config.dir),
        Transport::Tcp => Launch::hosts(hosts.clone())
            .ring_bytes(config.ring_bytes)
            .dir(&config.dir)
            .fanout(config.fanout),
    }
    .batch(config.batch)
    .spin(Duration::from_micros(config.spin_us))
    .live(false)
    .ctrl_c(false);
    if let Some(address) = &config.metrics {
        launch = launch.serve_metrics(address);
    }
    if config.restarts > 0 {
        launch = launch.restarts_all(config.restarts);
    }
    if let (Transport::Tcp, true, Some((s, w)), [first, second, ..]) =
        (config.transport, config.one_hop, &pipe, &hosts[..])
    {
        launch = launch
            .place(s, first)
            .place(w, second)
            .place(&sinks[0], second);
    }
    for k in &sinks {
        let got = summaries.clone();
        launch = launch.debug(k, move |_, s: Summary| got.lock().unwrap().push(s));
    }
    let report = t.launch(launch).map_err(|e| e.to_string())?;
    let summaries = summaries.lock().unwrap().clone();
    if summaries.len() != sinks.len() {
        return Err(format!(
            "{} of {} sinks reported",
            summaries.len(),
            sinks.len()
        ));
    }
    if let Some(s) = summaries.iter().find(|s| s.count != n) {
        return Err(format!("a sink saw {} of {n} values", s.count));
    }
    let first = summaries.iter().map(|s| s.first_sent).min().unwrap_or(0);
    let last = summaries.iter().map(|s| s.last_received).max().unwrap_or(0);
    let per_ns = summaries.first().map_or(1.0, |s| s.per_ns);
    let seconds = last.saturating_sub(first) as f64 / per_ns / 1e9;
    let worst =
        |get: fn(&Summary) -> u64| summaries.iter().map(get).max().unwrap_or(0) as f64 / 1e3;
    let msgs_per_s = n as f64 / seconds;
    Ok(Figures {
        workload: config.workload.name().into(),
        transport: config.transport.name().into(),
        input: config.input.name().into(),
        send: if config.send_ref { "ref" } else { "value" }.into(),
        messages: n,
        payload_bytes: config.payload as u64,
        batch: config.batch as u64,
        spin_us: config.spin_us,
        ring_bytes: config.ring_bytes as u64,
        rate: config.rate,
        stamp_every: config.stamp_every,
        seconds,
        msgs_per_s,
        mb_per_s: msgs_per_s * config.payload as f64 / 1e6,
        p50_us: worst(|s| s.p50_ns),
        p99_us: worst(|s| s.p99_ns),
        p999_us: worst(|s| s.p999_ns),
        max_rss_mb: report
            .nodes
            .iter()
            .filter_map(|n| n.peak_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0,
        bundler_rss_mb: report.node("J").and_then(|n| n.peak_rss_kib).unwrap_or(0) as f64 / 1024.0,
        window: if config.workload == Workload::Join {
            config.window as u64
        } else {
            0
        },
        nodes: report.nodes.len() as u64,
        hosts: match config.transport {
            Transport::Tcp => hosts.len() as u64,
            _ => 1,
        },
        launch_s: report.launch.map_or(0.0, |d| d.as_secs_f64()),
        total_s: report.elapsed.as_secs_f64(),
        // Measured by the bench's own process (`ssh_floor`), not here: this
        // program runs on the hosts too, as their agents.
        ssh_floor_s: 0.0,
        memcpy_mb_s: 0.0,
        iperf3_mb_s: 0.0,
    })
}

/// The hosts a run of `config` uses, for `tcp`.
pub(crate) fn hosts(config: &Config) -> Vec<String> {
    if std::env::var_os("CLUSTERDUCK_SSH_CONFIG").is_some() {
        (1..=config.hosts.max(1))
            .map(|h| format!("cd-h{h}"))
            .collect()
    } else {
        vec!["localhost".into(), "127.0.0.1".into()]
    }
}

/// The floor of a launch: `ssh host true` to every host at once (what one
/// connection per host costs, with the machine's CPU shared by both ends).
pub(crate) fn ssh_floor(hosts: &[String]) -> Result<f64, String> {
    let config = std::env::var("CLUSTERDUCK_SSH_CONFIG").map_err(|e| e.to_string())?;
    let start = Instant::now();
    let children: Vec<_> = hosts
        .iter()
        .map(|h| {
            std::process::Command::new("ssh")
                .args(["-F", &config, "-n", "-o", "BatchMode=yes", "-T", h, "true"])
                .spawn()
                .map_err(|e| format!("ssh {h}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for mut child in children {
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("ssh true to a test host: {status}"));
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One TCP stream from test host `from` to test host `to` for 3 s, with
/// `iperf3` (the machine's, which the test hosts share), in MB/s: what the
/// network between them carries at best, measured just before a run.
pub(crate) fn iperf3_rate(from: &str, to: &str) -> Result<f64, String> {
    const PORT: &str = "5399";
    let config = std::env::var("CLUSTERDUCK_SSH_CONFIG").map_err(|e| e.to_string())?;
    let ssh = |host: &str, command: &[&str]| {
        let mut cmd = std::process::Command::new("ssh");
        cmd.args(["-F", &config, "-n", "-o", "BatchMode=yes", "-T", host])
            .args(command);
        cmd
    };
    // The address `to` listens on, as ssh resolves the host's name.
    let resolved = std::process::Command::new("ssh")
        .args(["-F", &config, "-G", to])
        .output()
        .map_err(|e| format!("ssh -G {to}: {e}"))?;
    let address = String::from_utf8_lossy(&resolved.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hostname ").map(str::to_owned))
        .ok_or_else(|| format!("ssh -G {to}: no hostname"))?;
    // Ends by itself, even if no client ever came.
    let mut server = ssh(
        to,
        &[
            "timeout",
            "20",
            "iperf3",
            "--server",
            "--one-off",
            "--port",
            PORT,
        ],
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .map_err(|e| format!("iperf3 server on {to}: {e}"))?;
    // The server listens within a moment of its start: try until it does.
    let mut last = String::new();
    for _ in 0..50 {
        let out = ssh(
            from,
            &[
                "iperf3", "--client", &address, "--port", PORT, "--time", "3", "--json",
            ],
        )
        .output()
        .map_err(|e| format!("iperf3 client on {from}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(bits) = parsed["end"]["sum_received"]["bits_per_second"].as_f64() {
            let _ = server.wait();
            return Ok(bits / 8.0 / 1e6);
        }
        last = format!(
            "{}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if last.contains("command not found") || last.contains("No such file") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    Err(format!(
        "iperf3 from {from} to {to} ({address}) gave no figure (install iperf3?): {last}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(workload: Workload, stamp_every: u64) -> Config {
        Config {
            workload,
            transport: Transport::Local,
            input: Input::Archived,
            send_ref: false,
            messages: 5_000,
            payload: 64,
            batch: 256,
            spin_us: 0,
            ring_bytes: 1 << 20,
            rate: 0,
            stamp_every,
            slow: 1,
            window: 4096,
            spouts: 3,
            hosts: 2,
            fanout: 32,
            one_hop: false,
            metrics: None,
            restarts: 0,
            dir: std::env::temp_dir()
                .join("clusterduck-bench-tests")
                .display()
                .to_string(),
        }
    }

    #[test]
    fn every_sink_counts_every_value_whether_stamped_or_not() {
        for workload in [Workload::Pipe, Workload::Join, Workload::Fanout] {
            for every in [1, 16, 7_000] {
                let f = run_once(&config(workload, every))
                    .unwrap_or_else(|e| panic!("{} stamping 1/{every}: {e}", workload.name()));
                assert_eq!((f.messages, f.stamp_every), (5_000, every));
                // The first and last values are always stamped: the run
                // has a duration and a latency even when no other is.
                assert!(f.seconds > 0.0 && f.msgs_per_s > 0.0, "{f:?}");
                assert!(f.p50_us > 0.0 && f.p99_us >= f.p50_us, "{f:?}");
            }
        }
    }
}
