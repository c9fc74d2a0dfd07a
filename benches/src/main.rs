//! `clusterduck-bench`: runs the standard workloads through the public API
//! and prints seconds, messages/s, MB/s, end-to-end latency percentiles and
//! peak memory, as a table or as JSON lines.
//!
//! ```text
//! cargo run --release -p clusterduck-bench -- --workload join --transport shm --messages 1000000 --runs 5
//! ```
//!
//! Each run is a fresh process (this binary with `--single`), so that the
//! node processes it starts rebuild exactly its topology.

use std::process::{Command, ExitCode};

mod clock;
mod figures;
mod workload;

use figures::Figures;
use workload::{run_once, Config, Input, Transport, Workload};

/// Runs the standard workloads through the public API and prints seconds,
/// messages/s, MB/s, end-to-end latency percentiles and peak memory, as a
/// table or as JSON lines (the median of the runs of each configuration).
#[derive(Debug, clap::Parser)]
#[command(name = "clusterduck-bench")]
struct Flags {
    /// The workload (default: pipe, join and fanout; wide: many spouts
    /// joined by one bundled worker, its launch time reported apart).
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Where the nodes run (default: local and shm; tcp crosses the test
    /// hosts when CLUSTERDUCK_SSH_CONFIG is set, else loopback).
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// How workers take values: zero-copy where they lie (worker_archived;
    /// pass-through workers forward the bytes) or decoded (worker); join's
    /// bundled worker always decodes.
    #[arg(long, value_enum, default_value = "archived")]
    input: Input,
    /// How spouts send: one value refilled and sent by reference
    /// (send_ref), or a new value each time (send).
    #[arg(long, value_enum, default_value = "ref")]
    send: Send,
    /// Values per spout.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    messages: u64,
    /// Payload bytes per value.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    payload: usize,
    /// Values a node takes from an upstream per read.
    #[arg(long, value_name = "N", default_value_t = clusterduck_engine::DEFAULT_BATCH, value_parser = at_least_one)]
    batch: usize,
    /// shm, tcp: how long a node polls before it sleeps, in microseconds (0:
    /// a few microseconds).
    #[arg(long, value_name = "MICROS", default_value_t = 0)]
    spin: u64,
    /// Bytes of each node's ring, every mode.
    #[arg(long, value_name = "N", default_value_t = 4 << 20)]
    ring_bytes: usize,
    /// Values/s each spout offers, open loop (0: flat out).
    #[arg(long, value_name = "R", default_value_t = 0)]
    rate: u64,
    /// Stamp one value in N for the latency figures (the others cost no
    /// clock read in the spout nor histogram record in the sink).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    stamp_every: usize,
    /// join: spout B offers rate / S values/s (needs --rate).
    #[arg(long, value_name = "S", default_value_t = 1, value_parser = at_least_one)]
    slow: usize,
    /// join: the reorder window, in ids.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = at_least_one)]
    window: usize,
    /// wide: how many spouts.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    spouts: usize,
    /// tcp across the test hosts: cd-h1..cd-hN.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = at_least_one)]
    hosts: usize,
    /// The launch tree's width.
    #[arg(long, value_name = "W", default_value_t = clusterduck::DEFAULT_FANOUT, value_parser = at_least_one)]
    fanout: usize,
    /// pipe across test hosts: S on the first, W and K on the second (each
    /// value crosses once, as iperf3's stream); else round-robin.
    #[arg(long)]
    one_hop: bool,
    /// Runs per configuration; the median is printed.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = at_least_one)]
    runs: usize,
    /// Measure a range of values of one knob.
    #[arg(long, value_enum)]
    sweep: Option<Sweep>,
    /// Where the node logs go.
    #[arg(long, value_name = "DIR", default_value = "/tmp/clusterduck-bench")]
    dir: String,
    /// Serve each run's metrics and status page at this address (port 0:
    /// any): every node then samples its figures every second, the cost
    /// this flag measures beside a run without it.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// shm: give every node this many restarts (its ring is then written
    /// in steps, each committed with a checkpoint: the cost this flag
    /// measures beside a run without it).
    #[arg(long, value_name = "N", default_value_t = 0)]
    restarts: u32,
    /// One JSON object per configuration instead of a table.
    #[arg(long)]
    json: bool,
    /// One run of one configuration (--workload and --transport given), in
    /// this process, printed as a JSON line: how the bench runs each run.
    #[arg(long, hide = true, requires_all = ["workload", "transport"])]
    single: bool,
}

/// How spouts send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Send {
    Ref,
    Value,
}

/// The knob a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Sweep {
    Batch,
    Spin,
    RingBytes,
}

/// A count of at least one.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let flags = <Flags as clap::Parser>::parse();
    if flags.one_hop
        && (flags.workload != Some(Workload::Pipe) || flags.transport != Some(Transport::Tcp))
    {
        eprintln!("error: --one-hop places a pipe across test hosts: it needs --workload pipe --transport tcp");
        return ExitCode::from(2);
    }
    if flags.single {
        return single(&config(&flags));
    }
    if !flags.json {
        println!("{}", Figures::HEADER);
    }
    for config in &configs(&flags) {
        let mut runs = Vec::new();
        for _ in 0..flags.runs {
            match spawn_single(config) {
                Ok(f) => runs.push(f),
                Err(e) => {
                    eprintln!(
                        "{} over {}: {e}",
                        config.workload.name(),
                        config.transport.name()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        let median = Figures::median(&runs);
        if flags.json {
            println!("{}", median.json());
        } else {
            println!("{}", median.row());
        }
    }
    ExitCode::SUCCESS
}

/// The configuration the flags give (the first workload and transport if
/// they name none).
fn config(flags: &Flags) -> Config {
    Config {
        workload: flags.workload.unwrap_or(Workload::Pipe),
        transport: flags.transport.unwrap_or(Transport::Local),
        input: flags.input,
        send_ref: flags.send == Send::Ref,
        messages: flags.messages,
        payload: flags.payload,
        batch: flags.batch,
        spin_us: flags.spin,
        ring_bytes: flags.ring_bytes,
        rate: flags.rate,
        stamp_every: flags.stamp_every as u64,
        slow: flags.slow as u64,
        window: flags.window,
        dir: flags.dir.clone(),
        spouts: flags.spouts as u64,
        hosts: flags.hosts,
        fanout: flags.fanout,
        one_hop: flags.one_hop,
        metrics: flags.metrics.clone(),
        restarts: flags.restarts,
    }
}

/// Every configuration the flags ask for: each workload over each
/// transport, for each value of the sweep.
fn configs(flags: &Flags) -> Vec<Config> {
    let base = config(flags);
    let workloads = match flags.workload {
        Some(w) => vec![w],
        None => vec![Workload::Pipe, Workload::Join, Workload::Fanout],
    };
    let transports = match flags.transport {
        Some(t) => vec![t],
        None => vec![Transport::Local, Transport::Shm],
    };
    let variants: Vec<Config> = match flags.sweep {
        None => vec![base],
        Some(Sweep::Batch) => [1, 4, 16, 64, 256, 1024, 4096]
            .iter()
            .map(|b| Config {
                batch: *b,
                ..base.clone()
            })
            .collect(),
        Some(Sweep::Spin) => [0, 10, 50, 200, 1000]
            .iter()
            .map(|us| Config {
                spin_us: *us,
                ..base.clone()
            })
            .collect(),
        Some(Sweep::RingBytes) => [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]
            .iter()
            .map(|r| Config {
                ring_bytes: *r,
                ..base.clone()
            })
            .collect(),
    };
    let mut configs = Vec::new();
    for workload in &workloads {
        for transport in &transports {
            for v in &variants {
                configs.push(Config {
                    workload: *workload,
                    transport: *transport,
                    ..v.clone()
                });
            }
        }
    }
    configs
}

/// The flags that make a `--single` run of `config`.
fn single_args(config: &Config) -> Vec<String> {
    let mut args: Vec<String> = [
        ("--workload", config.workload.name().to_owned()),
        ("--transport", config.transport.name().to_owned()),
        ("--input", config.input.name().to_owned()),
        (
            "--send",
            if config.send_ref { "ref" } else { "value" }.to_owned(),
        ),
        ("--messages", config.messages.to_string()),
        ("--payload", config.payload.to_string()),
        ("--batch", config.batch.to_string()),
        ("--spin", config.spin_us.to_string()),
        ("--ring-bytes", config.ring_bytes.to_string()),
        ("--rate", config.rate.to_string()),
        ("--slow", config.slow.to_string()),
        ("--window", config.window.to_string()),
        ("--dir", config.dir.clone()),
        ("--stamp-every", config.stamp_every.to_string()),
        ("--spouts", config.spouts.to_string()),
        ("--hosts", config.hosts.to_string()),
        ("--fanout", config.fanout.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect();
    args.push("--single".into());
    if config.one_hop {
        args.push("--one-hop".into());
    }
    if let Some(address) = &config.metrics {
        args.extend(["--metrics".to_owned(), address.clone()]);
    }
    if config.restarts > 0 {
        args.extend(["--restarts".to_owned(), config.restarts.to_string()]);
    }
    args
}

fn spawn_single(config: &Config) -> Result<Figures, String> {
    // Just before the launch, in the same run: what the launch's SSH
    // connections cost at the least.
    let ssh_floor_s = if config.transport == Transport::Tcp
        && std::env::var_os("CLUSTERDUCK_SSH_CONFIG").is_some()
    {
        workload::ssh_floor(&workload::hosts(config))?
    } else {
        0.0
    };
    let memcpy_mb_s = if config.payload >= 1 << 20 {
        memcpy_rate(config.payload)
    } else {
        0.0
    };
    let hosts = workload::hosts(config);
    let iperf3_mb_s = if config.transport == Transport::Tcp
        && config.payload >= 1 << 20
        && hosts.len() >= 2
        && std::env::var_os("CLUSTERDUCK_SSH_CONFIG").is_some()
    {
        // A baseline, not the run: without it the column says "-".
        workload::iperf3_rate(&hosts[0], &hosts[1]).unwrap_or_else(|e| {
            eprintln!("clusterduck-bench: no iperf3 figure: {e}");
            0.0
        })
    } else {
        0.0
    };
    let program = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(program)
        .args(&single_args(config)[..])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "the run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().ok_or("the run printed nothing")?;
    Ok(Figures {
        ssh_floor_s,
        memcpy_mb_s,
        iperf3_mb_s,
        ..Figures::parse(line)?
    })
}

/// One `memcpy` of `bytes` bytes from one buffer to another, in MB/s: the
/// median of 9 copies, after one that faults the pages in.
fn memcpy_rate(bytes: usize) -> f64 {
    let src = vec![7u8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src);
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            let t = std::time::Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            bytes as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// One run, in this process: prints its figures as one JSON line.
fn single(config: &Config) -> ExitCode {
    match run_once(config) {
        Ok(figures) => {
            println!("{}", figures.json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A configuration survives its trip through the flags of a `--single`
    /// run, knob for knob.
    #[test]
    fn a_single_run_gets_the_configuration_it_was_given() {
        let flags = Flags::try_parse_from([
            "clusterduck-bench",
            "--workload",
            "join",
            "--transport",
            "tcp",
            "--input",
            "owned",
            "--send",
            "value",
            "--messages",
            "7",
            "--payload",
            "9",
            "--batch",
            "3",
            "--spin",
            "11",
            "--ring-bytes",
            "65536",
            "--rate",
            "100",
            "--stamp-every",
            "4",
            "--slow",
            "2",
            "--window",
            "64",
            "--spouts",
            "5",
            "--hosts",
            "3",
            "--fanout",
            "6",
            "--one-hop",
            "--dir",
            "/tmp/x",
            "--metrics",
            "127.0.0.1:0",
            "--restarts",
            "2",
        ])
        .unwrap();
        let given = config(&flags);
        let mut args = vec!["clusterduck-bench".to_owned()];
        args.extend(single_args(&given));
        let back = Flags::try_parse_from(args).unwrap();
        assert!(back.single);
        assert_eq!(format!("{:?}", config(&back)), format!("{given:?}"));
        assert_eq!(configs(&flags).len(), 1);
    }

    #[test]
    fn help_lists_every_flag_and_bad_values_are_named() {
        let help = <Flags as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for flag in [
            "--workload",
            "--transport",
            "--input",
            "--send",
            "--messages",
            "--payload",
            "--batch",
            "--spin",
            "--ring-bytes",
            "--rate",
            "--stamp-every",
            "--slow",
            "--window",
            "--spouts",
            "--hosts",
            "--fanout",
            "--one-hop",
            "--runs",
            "--sweep",
            "--dir",
            "--json",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
        assert!(!help.contains("--single"), "the internal flag is hidden");
        let err = Flags::try_parse_from(["b", "--window", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid value '0' for '--window <N>': must be at least 1"),
            "{err}"
        );
        let err = Flags::try_parse_from(["b", "--workload", "zip"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid value 'zip' for '--workload <WORKLOAD>'"),
            "{err}"
        );
        // Without a workload or transport: the three workloads over two
        // transports; a sweep multiplies them.
        let all = Flags::try_parse_from(["b", "--sweep", "spin"]).unwrap();
        assert_eq!(configs(&all).len(), 3 * 2 * 5);
    }
}
