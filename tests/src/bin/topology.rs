//! Topologies for the process-mode tests, chosen by the first argument. The
//! same arguments reach every node process, which builds the same topology
//! (or, for `mismatch`, deliberately not).
//!
//! - `slow N DIR`: spout `S` sends `0..N`, 20 ms apart; worker `W` prints
//!   each id on its stdout and passes it on; sink `K`. A debugger on `W`
//!   prints `W <seq>` on the master's stdout.
//! - `fail DIR`: like `slow 100`, but `W` fails at id 5.
//! - `mismatch DIR`: node processes build one node more than the master.
//! - `split N DIR H1 H2`: like `slow N`, with `S` and `W` placed on host
//!   `H1` (an edge within a host) and `K` on `H2` (an edge across hosts);
//!   `K` passes values on to `E` (on `H2` too), watched by the debugger,
//!   which prints `K <seq>`.
//! - `batched N BATCH DIR`: spout `S` sends `0..N` as fast as it can,
//!   worker `W` passes them on, and `K`, with nodes taking at most `BATCH`
//!   values per read, checks that they come in order and, at the last one,
//!   emits the count, which the debugger prints as `K counted <count>`.

use std::process::ExitCode;
use std::time::Duration;

use clusterduck::{Emitter, Launch, Topology};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, rest) = args
        .split_first()
        .expect("usage: topology slow|fail|mismatch ...");
    let (n, dir, fail_at) = match what.as_str() {
        "slow" | "split" => (rest[0].parse::<u64>().expect("N"), rest[1].clone(), None),
        "fail" => (100, rest[0].clone(), Some(5)),
        "mismatch" => (3, rest[0].clone(), None),
        "batched" => return batched(rest),
        other => panic!("unknown topology {other}"),
    };
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    });
    let w = t.worker("W", &s, move |seq, v: u64, out: &mut Emitter<u64>| {
        if Some(seq) == fail_at {
            return Err(format!("cannot handle {v}").into());
        }
        println!("W saw {seq}");
        out.emit(v);
        Ok(())
    });
    if what == "split" {
        let (h1, h2) = (rest[2].clone(), rest[3].clone());
        let k = t.worker("K", &w, |_, v: u64, out: &mut Emitter<u64>| {
            out.emit(v);
            Ok(())
        });
        let e = t.sink("E", &k, |_, _| Ok(()));
        let launch = Launch::hosts([h1.clone(), h2.clone()])
            .dir(dir)
            .place(&s, &h1)
            .place(&w, &h1)
            .place(&k, &h2)
            .place(&e, &h2)
            .debug(&k, |seq, _| println!("K {seq}"));
        return finish(t.launch(launch));
    }
    t.sink("K", &w, |_, _| Ok(()));
    if what == "mismatch" && std::env::var_os("CLUSTERDUCK_NODE").is_some() {
        t.sink("X", &s, |_, _| Ok(()));
    }
    let launch = Launch::processes()
        .dir(dir)
        .debug(&w, |seq, _| println!("W {seq}"));
    finish(t.launch(launch))
}

fn batched(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let batch: usize = rest[1].parse().expect("BATCH");
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    });
    let w = t.worker("W", &s, |_, v: u64, out: &mut Emitter<u64>| {
        out.emit(v);
        Ok(())
    });
    let mut next = 0;
    let k = t.worker("K", &w, move |seq, v: u64, out: &mut Emitter<u64>| {
        if seq != next || v != next {
            return Err(format!("got id {seq} (value {v}) where {next} was due").into());
        }
        next += 1;
        if next == n {
            out.emit(next);
        }
        Ok(())
    });
    let launch = Launch::processes()
        .dir(&rest[2])
        .batch(batch)
        .debug(&k, |_, count| println!("K counted {count}"));
    finish(t.launch(launch))
}

fn finish(result: Result<clusterduck::RunReport, clusterduck::Error>) -> ExitCode {
    match result {
        Ok(report) => {
            eprint!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
