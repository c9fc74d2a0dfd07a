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

const USAGE: &str = "usage: clusterduck-bench [OPTIONS]
  --workload pipe|join|fanout|wide   (default: the first three; wide: many
                                spouts joined by one bundled worker, its launch
                                time reported apart)
  --transport local|shm|tcp     (default: local and shm; tcp crosses the
                                test hosts when CLUSTERDUCK_SSH_CONFIG is set,
                                else loopback)
  --input archived|owned        how workers take values: zero-copy where they lie
                                (worker_archived; pass-through workers forward
                                the bytes) or decoded (worker) (default archived;
                                join's bundled worker always decodes)
  --send ref|value              how spouts send: one value refilled and sent by
                                reference (send_ref), or a new value each time
                                (send) (default: ref)
  --messages N                  values per spout (default 1000000)
  --payload BYTES               payload bytes per value (default 64)
  --batch N                     values a node takes from an upstream per read (default 256)
  --spin MICROS                 shm, tcp: how long a node polls before it sleeps
                                (default 0: a few microseconds)
  --ring-bytes N                bytes of each node's ring, every mode (default 4 MiB)
  --rate R                      values/s each spout offers, open loop (default: flat out)
  --stamp-every N               stamp one value in N for the latency figures
                                (default 1: every value; the others cost no
                                clock read in the spout nor histogram record
                                in the sink)
  --slow S                      join: spout B offers rate / S values/s (needs --rate)
  --window N                    join: the reorder window, in ids (default 4096)
  --spouts N                    wide: how many spouts (default 8)
  --hosts N                     tcp across the test hosts: cd-h1..cd-hN (default 2)
  --fanout W                    the launch tree's width (default 32)
  --one-hop                     pipe across test hosts: S on the first, W and K
                                on the second (each value crosses once, as
                                iperf3's stream); default round-robin
  --runs R                      runs per configuration; the median is printed (default 3)
  --sweep batch|spin|ring-bytes measure a range of values
  --dir DIR                     node logs (default /tmp/clusterduck-bench)
  --json                        one JSON object per configuration instead of a table";

struct Plan {
    configs: Vec<Config>,
    runs: usize,
    json: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--single") {
        return single(&args[1..]);
    }
    let plan = match parse(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !plan.json {
        println!("{}", Figures::HEADER);
    }
    for config in &plan.configs {
        let mut runs = Vec::new();
        for _ in 0..plan.runs {
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
        if plan.json {
            println!("{}", median.json());
        } else {
            println!("{}", median.row());
        }
    }
    ExitCode::SUCCESS
}

fn parse(args: &[String]) -> Result<Plan, String> {
    let mut workloads = vec![Workload::Pipe, Workload::Join, Workload::Fanout];
    let mut transports = vec![Transport::Local, Transport::Shm];
    let mut base = Config {
        workload: Workload::Pipe,
        transport: Transport::Local,
        input: Input::Archived,
        send_ref: true,
        messages: 1_000_000,
        payload: 64,
        batch: clusterduck_engine::DEFAULT_BATCH,
        spin_us: 0,
        ring_bytes: 4 << 20,
        rate: 0,
        stamp_every: 1,
        slow: 1,
        window: 4096,
        dir: "/tmp/clusterduck-bench".into(),
        spouts: 8,
        hosts: 2,
        fanout: clusterduck::DEFAULT_FANOUT,
        one_hop: false,
    };
    let mut runs = 3;
    let mut json = false;
    let mut sweep: Option<String> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--workload" => workloads = vec![Workload::parse(&value()?)?],
            "--transport" => transports = vec![Transport::parse(&value()?)?],
            "--input" => base.input = Input::parse(&value()?)?,
            "--send" => {
                base.send_ref = match value()?.as_str() {
                    "ref" => true,
                    "value" => false,
                    other => return Err(format!("--send {other:?}: ref or value")),
                };
            }
            "--messages" => base.messages = number(value()?)?,
            "--payload" => base.payload = number(value()?)? as usize,
            "--ring-bytes" => base.ring_bytes = number(value()?)? as usize,
            "--rate" => base.rate = number(value()?)?,
            "--stamp-every" => base.stamp_every = number(value()?)?.max(1),
            "--slow" => base.slow = number(value()?)?.max(1),
            "--window" => base.window = number(value()?)?.max(1) as usize,
            "--spouts" => base.spouts = number(value()?)?.max(1),
            "--hosts" => base.hosts = number(value()?)?.max(1) as usize,
            "--fanout" => base.fanout = number(value()?)?.max(1) as usize,
            "--one-hop" => base.one_hop = true,
            "--runs" => runs = number(value()?)?.max(1) as usize,
            "--dir" => base.dir = value()?,
            "--json" => json = true,
            "--sweep" => sweep = Some(value()?),
            "--batch" => base.batch = number(value()?)?.max(1) as usize,
            "--spin" => base.spin_us = number(value()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let variants: Vec<Config> = match sweep.as_deref() {
        None => vec![base],
        Some("batch") => [1, 4, 16, 64, 256, 1024, 4096]
            .iter()
            .map(|b| Config {
                batch: *b,
                ..base.clone()
            })
            .collect(),
        Some("spin") => [0, 10, 50, 200, 1000]
            .iter()
            .map(|us| Config {
                spin_us: *us,
                ..base.clone()
            })
            .collect(),
        Some("ring-bytes") => [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]
            .iter()
            .map(|r| Config {
                ring_bytes: *r,
                ..base.clone()
            })
            .collect(),
        Some(other) => return Err(format!("--sweep {other:?}: batch, spin or ring-bytes")),
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
    Ok(Plan {
        configs,
        runs,
        json,
    })
}

/// The arguments that make a `--single` run of `config`.
fn single_args(config: &Config) -> Vec<String> {
    vec![
        "--single".into(),
        config.workload.name().into(),
        config.transport.name().into(),
        config.input.name().into(),
        config.send_ref.to_string(),
        config.messages.to_string(),
        config.payload.to_string(),
        config.batch.to_string(),
        config.spin_us.to_string(),
        config.ring_bytes.to_string(),
        config.rate.to_string(),
        config.slow.to_string(),
        config.window.to_string(),
        config.dir.clone(),
        config.stamp_every.to_string(),
        config.spouts.to_string(),
        config.hosts.to_string(),
        config.fanout.to_string(),
        config.one_hop.to_string(),
    ]
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
        workload::iperf3_rate(&hosts[0], &hosts[1])?
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
fn single(args: &[String]) -> ExitCode {
    let parsed = (|| -> Result<Config, String> {
        let get = |i: usize| args.get(i).cloned().ok_or("--single: missing arguments");
        let num = |i: usize| -> Result<u64, String> { get(i)?.parse().map_err(|e| format!("{e}")) };
        Ok(Config {
            workload: Workload::parse(&get(0)?)?,
            transport: Transport::parse(&get(1)?)?,
            input: Input::parse(&get(2)?)?,
            send_ref: get(3)? == "true",
            messages: num(4)?,
            payload: num(5)? as usize,
            batch: num(6)? as usize,
            spin_us: num(7)?,
            ring_bytes: num(8)? as usize,
            rate: num(9)?,
            slow: num(10)?,
            window: num(11)? as usize,
            dir: get(12)?,
            stamp_every: num(13)?.max(1),
            spouts: num(14)?,
            hosts: num(15)? as usize,
            fanout: num(16)? as usize,
            one_hop: get(17)? == "true",
        })
    })();
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run_once(&config) {
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
