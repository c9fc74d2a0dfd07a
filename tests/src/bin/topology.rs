//! Topologies for the process-mode tests, chosen by the first argument. The
//! same arguments reach every node process, which builds the same topology
//! (or, for `mismatch`, deliberately not).
//!
//! - `slow N DIR`: spout `S` sends `0..N`, 20 ms apart; worker `W` prints
//!   each id on its stdout and passes it on; sink `K`. A debugger on `W`
//!   prints `W <seq>` on the master's stdout. With `CD_TEST_HOSTS=H1,H2,H3`
//!   in the master's environment (here and in the variants below), the
//!   nodes run round-robin on those hosts.
//! - `fail DIR`: like `slow 100`, but `W` fails at id 5.
//! - `silent DIR`: like `slow 10000`, with a heartbeat timeout of 2 s (a
//!   test stops a node with SIGSTOP).
//! - `notready DIR`: like `slow 100`, with a ready timeout of 1 s (10 s
//!   across hosts, time for the other nodes to start over ssh), and the
//!   process of `W` never gets to `launch` (it waits before building the
//!   topology).
//! - `chatty N DIR`: like `slow N`, without the pause, `W` printing a line
//!   of 1 KiB for each value (a test fills the log directory).
//! - `mismatch DIR`: node processes build one node more than the master.
//! - `split N DIR H1 H2`: like `slow N`, with `S` and `W` placed on host
//!   `H1` (an edge within a host) and `K` on `H2` (an edge across hosts);
//!   `K` passes values on to `E` (on `H2` too), watched by the debugger,
//!   which prints `K <seq>`.
//! - `batched N BATCH DIR`: spout `S` sends `0..N` as fast as it can,
//!   worker `W` passes them on, and `K`, with nodes taking at most `BATCH`
//!   values per read, checks that they come in order and, at the last one,
//!   emits the count, which the debugger prints as `K counted <count>`.
//! - `joined N RING_BYTES DIR [gap]`: spout `A` sends words `0..N` in
//!   order, spout `B` numbers `0..N` in reversed blocks of 100 (without 7
//!   with `gap`); bundled worker `J` takes each pair archived, in place
//!   (sequenced, rings of `RING_BYTES`; with `gap`, gaps skipped after
//!   100 ms), and forwards the word; sink `K` checks that the words come in
//!   order (7 skipped with `gap`) and at the last prints `K joined <count>
//!   in order` through the debugger; the master prints J's skipped gaps as
//!   `J skipped <gaps>`.
//! - `lateready DIR`: like `slow 20`, with a heartbeat timeout of 1 s, and
//!   the process of `K` 3 s late to build its topology: the first nodes
//!   are ready 3 s before the last, three times the silence allowed.
//! - `wide N SPOUTS DIR`: spouts `S0..S<SPOUTS-1>` each send `0..N` (value
//!   `id * SPOUTS + k`), bundled worker `J` joins them all (a `Vec` of
//!   handles, sequenced) and checks each bundle, sink `K` checks that
//!   bundles come in order and at the last emits their count, which the
//!   debugger prints as `K joined <count> bundles of <SPOUTS>`. With
//!   `CD_TEST_FANOUT=W`, the launch fans out with width `W`.
//! - `replicated N DIR [gap|slow]`: spout `A` sends `0..N` (with `slow`,
//!   20 ms apart, the debugger printing `D reached 10` at id 10); `J` (three
//!   replicas, bundled over `A`, archived, sequenced) emits `10 * id`; `K`
//!   (two replicas, a worker taking its input by id) emits `id + 1` (but
//!   not for 7 with `gap`); `D`, bundled over `(A, J, K)` and sequenced
//!   (with `gap`, gaps skipped after 200 ms), checks each bundle; the
//!   debugger checks that D's outputs come in id order and prints `D <count>
//!   in order` at the end, and prints each policy event. `CD_TEST_HOSTS`
//!   as above.
//! - `large N BYTES LARGE_BYTES DIR`: spout `S` sends `N` values of
//!   `BYTES` bytes (every byte `id * 7 + 1`, truncated), with each node's
//!   space for large values `LARGE_BYTES`; three workers `W0..W2` take
//!   them in place, check every byte and pass them on as they are; `J`
//!   joins `S` and `W0` (sequenced, in place) and checks both; sinks `E1`
//!   and `E2` take `W1`'s and `W2`'s decoded and check them; sink `K`
//!   counts, and at the last prints `K got <count> values of <BYTES>
//!   bytes` through the debugger. In local mode with `CD_TEST_LOCAL=1`;
//!   `CD_TEST_HOSTS` as above.
//! - `slowlarge DIR`: spout `S` sends 10 values of 8 MiB, its space for
//!   large values 32 MiB (three such values); sink `K`, holding value 0,
//!   waits until `S` has sent three, then a while, and prints `K held 0
//!   while S had sent <n>` (the producer waits for space: `n` stays 3), then
//!   takes the rest. `CD_TEST_LOCAL=1` for local mode.
//! - `lanes DIR` (with `CD_TEST_HOSTS=A,B`): on `A`, spout `L` sends 10
//!   values of 8 MiB (each node's space for large values 32 MiB: three
//!   such values) and spout `S`, once `L` has sent 6, sends 1000 small
//!   values; on `B`, sink `KS` counts them, and sink `KL`, holding `L`'s
//!   value 0, waits until `KS` got all 1000, then a while, prints `KL held
//!   0 while KS got <n> and L had sent <m>` (the edge `S -> KS` did not
//!   wait behind the stalled `L -> KL`: `n` is 1000; `L` is held back by
//!   the full spaces: `m` stays 6), then takes the rest, checking each.
//! - `bottleneck N DIR`: spout `S` sends `0..N` as fast as it can through
//!   rings of 4 KiB (so that it waits for room), worker `W` passes them on,
//!   sink `K` takes 500 µs over each: the report names `K` the bottleneck.
//!   `CD_TEST_LOCAL=1` for local mode.
//! - `archived N FAIL_AT DIR`: spout `S` sends words `0..N` (an id and a
//!   text), one value refilled and sent by reference; worker `W` takes them archived, in place, forwards the even ones
//!   as they are and emits the odd ones with their text upper-cased (and
//!   fails at id `FAIL_AT` if it is below `N`); sink `K` takes them archived
//!   too, checks each, and at the last emits what it saw, which the debugger
//!   prints as `K saw <count> words, <upper> upper-cased`.
//! - `flaky N DIR`: spout `S` sends `0..N`; worker `W` doubles each value,
//!   but its function fails (an error) at id `N / 2` in its first process
//!   (it leaves `DIR/W.failed` behind); sink `K` checks every id and value
//!   in order and prints `K got <count> in order` through the debugger.
//!   Every node may be restarted twice.
//! - `ticking N DIR`: spout `S` sends `0..N`, 1 ms apart (a restarted `S`
//!   goes on after what it sent); worker `W` emits the time it took each
//!   (nanoseconds since the Unix epoch), which the debugger prints as `W
//!   <seq> <ns>`. Every node may be restarted 10 times, at once every time:
//!   a bench kills `W` and times its restarted process's first output.
//! - `pipe N DIR`: spout `S` sends `0..N` as fast as it can through rings
//!   of 64 KiB; workers `W1` (owned values), `W2` (archived, in place) and
//!   `W3` each compute on the value (see `piped`); `K` takes 100 µs over
//!   each (so every ring before it fills), checks that ids come in order
//!   with the right values, and through the debugger prints `K at <count>`
//!   every 10 000 and `K got <count> checksum <sum>` at the last. Every node
//!   may be restarted 3 times.

use std::process::ExitCode;
use std::time::Duration;

use clusterduck::{Bundling, Emitter, GapPolicy, Launch, Node, Topology};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, rest) = args
        .split_first()
        .expect("usage: topology slow|fail|mismatch ...");
    let (n, dir, fail_at) = match what.as_str() {
        "slow" | "split" | "chatty" => (rest[0].parse::<u64>().expect("N"), rest[1].clone(), None),
        "fail" => (100, rest[0].clone(), Some(5)),
        "silent" => (10_000, rest[0].clone(), None),
        "notready" => {
            if std::env::var("CLUSTERDUCK_NODE").as_deref() == Ok("W") {
                // Never ready: the master gives up and kills this process.
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            (100, rest[0].clone(), None)
        }
        "mismatch" => (3, rest[0].clone(), None),
        "lateready" => {
            if std::env::var("CLUSTERDUCK_NODE").as_deref() == Ok("K") {
                std::thread::sleep(Duration::from_secs(3));
            }
            (20, rest[0].clone(), None)
        }
        "wide" => return wide(rest),
        "batched" => return batched(rest),
        "archived" => return archived(rest),
        "joined" => return joined(rest),
        "replicated" => return replicated(rest),
        "large" => return large(rest),
        "slowlarge" => return slow_large(rest),
        "lanes" => return lanes(rest),
        "bottleneck" => return bottleneck(rest),
        "pipe" => return pipe(rest),
        "ticking" => return ticking(rest),
        "flaky" => return flaky(rest),
        "scrambled" => return scrambled(rest),
        other => panic!("unknown topology {other}"),
    };
    let mut t = Topology::new();
    let chatty = what == "chatty";
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
            if !chatty {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    });
    let w = t.worker("W", &s, move |seq, v: u64, out: &mut Emitter<u64>| {
        if Some(seq) == fail_at {
            return Err(format!("cannot handle {v}").into());
        }
        if chatty {
            println!("W saw {seq} {}", "-".repeat(1024));
        } else {
            println!("W saw {seq}");
        }
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
    // Across the test hosts where CD_TEST_HOSTS names them (round-robin:
    // S, W and K on the first, second and third).
    let hosts = std::env::var("CD_TEST_HOSTS").ok();
    let launch = match &hosts {
        Some(hosts) => Launch::hosts(hosts.split(',')),
        None => Launch::processes(),
    };
    let hosts = hosts.is_some();
    let launch = launch
        .dir(dir)
        .heartbeat_timeout(Duration::from_secs(match what.as_str() {
            "silent" => 2,
            "lateready" => 1,
            _ => 10,
        }))
        .ready_timeout(Duration::from_secs(match (what.as_str(), hosts) {
            // Long enough for the other nodes to start over ssh.
            ("notready", true) => 10,
            ("notready", false) => 1,
            _ => 30,
        }))
        .debug(&w, |seq, _| println!("W {seq}"));
    finish(t.launch(launch))
}

fn replicated(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let gap = rest.get(2).map(String::as_str) == Some("gap");
    let slow = rest.get(2).map(String::as_str) == Some("slow");
    let mut t = Topology::new();
    let a = t.spout("A", move |out| {
        for i in 0..n {
            out.send(i, i)?;
            if slow {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    });
    let j = t.bundled_archived(
        "J",
        (&a,),
        Bundling::sequenced(0),
        |_, (v,), out: &mut Emitter<u64>| {
            out.emit(v.to_native() * 10);
            Ok(())
        },
    );
    let k = t.worker(
        "K",
        a.by_seq(),
        move |seq, v: u64, out: &mut Emitter<u64>| {
            if !(gap && seq == 7) {
                out.emit(v + 1);
            }
            Ok(())
        },
    );
    let mut bundling = Bundling::sequenced(0);
    if gap {
        bundling = bundling
            .gap_timeout(Duration::from_millis(200))
            .on_gap(GapPolicy::Skip);
    }
    let d = t.bundled(
        "D",
        (&a, &j, &k),
        bundling,
        |seq, (x, y, z): (u64, u64, u64), out: &mut Emitter<u64>| {
            if (x, y, z) != (seq, seq * 10, seq + 1) {
                return Err(format!("bundle {seq} is ({x}, {y}, {z})").into());
            }
            out.emit(seq);
            Ok(())
        },
    );
    let launch = test_launch();
    let mut next = 0;
    let mut in_order = 0;
    let last = n - 1;
    let launch = launch
        .dir(&rest[1])
        .replicas(&j, 3)
        .replicas(&k, 2)
        .on_event(|event| println!("event {event}"))
        .debug(&d, move |seq, _| {
            if seq >= next {
                in_order += u64::from(seq == next || gap);
                next = seq + 1;
            }
            if slow && seq == 10 {
                println!("D reached 10");
            }
            if seq == last {
                println!("D {in_order} in order");
            }
        });
    finish(t.launch(launch))
}

/// Whether `bytes` is the value with id `seq` of the `large` topology.
fn large_value_is(bytes: &[u8], seq: u64, len: usize) -> bool {
    bytes.len() == len && bytes == &vec![(seq * 7 + 1) as u8; len][..]
}

fn large(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let bytes: usize = rest[1].parse().expect("BYTES");
    let large_bytes: usize = rest[2].parse().expect("LARGE_BYTES");
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, vec![(i * 7 + 1) as u8; bytes])?;
        }
        Ok(())
    });
    let check = move |seq: u64, v: &rkyv::Archived<Vec<u8>>| -> Result<(), clusterduck::BoxError> {
        if large_value_is(v.as_slice(), seq, bytes) {
            Ok(())
        } else {
            Err(format!("value {seq} is not what was sent").into())
        }
    };
    let workers: Vec<_> = (0..3)
        .map(|k| {
            t.worker_archived(
                &format!("W{k}"),
                &s,
                move |seq, v, out: &mut Emitter<Vec<u8>>| {
                    check(seq, v)?;
                    out.forward(v);
                    Ok(())
                },
            )
        })
        .collect();
    let j = t.bundled_archived(
        "J",
        (&s, &workers[0]),
        Bundling::sequenced(0),
        move |seq, (a, b), out: &mut Emitter<u64>| {
            check(seq, a)?;
            check(seq, b)?;
            out.emit(seq);
            Ok(())
        },
    );
    let mut count = 0;
    let k = t.worker("K", [&j], move |_, _: u64, out: &mut Emitter<u64>| {
        count += 1;
        if count == n {
            out.emit(count);
        }
        Ok(())
    });
    for (k, w) in workers.iter().enumerate().skip(1) {
        t.sink(&format!("E{k}"), w, move |seq, v: Vec<u8>| {
            if large_value_is(&v, seq, bytes) {
                Ok(())
            } else {
                Err(format!("value {seq} is not what was sent").into())
            }
        });
    }
    let launch = test_launch();
    let launch = launch
        .dir(&rest[3])
        .large_bytes(large_bytes)
        .debug(&k, move |_, count| {
            println!("K got {count} values of {bytes} bytes")
        });
    finish(t.launch(launch))
}

fn slow_large(rest: &[String]) -> ExitCode {
    const VALUE: usize = 8 << 20;
    let dir = std::path::PathBuf::from(&rest[0]);
    let signals = clusterduck_tests::Signals::new(&dir);
    let sent = signals.counter("S-sent");
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..10u64 {
            out.send(i, vec![i as u8; VALUE])?;
            sent.set(i + 1);
        }
        Ok(())
    });
    let seen = signals.counter("S-sent");
    t.sink_archived("K", &s, move |seq, v: &rkyv::Archived<Vec<u8>>| {
        if v.len() != VALUE || v.iter().any(|b| u64::from(*b) != seq) {
            return Err(format!("value {seq} is not what was sent").into());
        }
        if seq == 0 {
            // A fact first: three values fill the space.
            while seen.get() < 3 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Then a while, for a fourth that must not come.
            std::thread::sleep(Duration::from_millis(300));
            println!("K held 0 while S had sent {}", seen.get());
        }
        Ok(())
    });
    finish(t.launch(test_launch().dir(&dir).large_bytes(32 << 20)))
}

fn lanes(rest: &[String]) -> ExitCode {
    const VALUE: usize = 8 << 20;
    const SMALL: u64 = 1000;
    let dir = std::path::PathBuf::from(&rest[0]);
    let signals = clusterduck_tests::Signals::new(&dir);
    // Only the master reads it; a node process builds the same topology,
    // and its launch is not used.
    let hosts: Vec<String> = std::env::var("CD_TEST_HOSTS")
        .map(|h| h.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut t = Topology::new();
    let l_sent = signals.counter("L-sent");
    let l = t.spout("L", move |out| {
        for i in 0..10u64 {
            out.send(i, vec![i as u8; VALUE])?;
            l_sent.set(i + 1);
        }
        Ok(())
    });
    let l_seen = signals.counter("L-sent");
    let s = t.spout("S", move |out| {
        while l_seen.get() < 6 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..SMALL {
            out.send(i, i)?;
        }
        Ok(())
    });
    let ks_got = signals.counter("KS-got");
    let ks = t.sink("KS", &s, move |seq, v: u64| {
        if seq != v {
            return Err(format!("small value {seq} is {v}").into());
        }
        ks_got.set(seq + 1);
        Ok(())
    });
    let (ks_seen, l_seen) = (signals.counter("KS-got"), signals.counter("L-sent"));
    let kl = t.sink_archived("KL", &l, move |seq, v: &rkyv::Archived<Vec<u8>>| {
        if v.len() != VALUE || v.iter().any(|b| u64::from(*b) != seq) {
            return Err(format!("value {seq} is not what was sent").into());
        }
        if seq == 0 {
            while ks_seen.get() < SMALL {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Then a while, for a seventh value of L's that must not come.
            std::thread::sleep(Duration::from_millis(300));
            println!(
                "KL held 0 while KS got {} and L had sent {}",
                ks_seen.get(),
                l_seen.get()
            );
        }
        Ok(())
    });
    let launch = match &hosts[..] {
        [a, b] => Launch::hosts([a, b])
            .place(&l, a)
            .place(&s, a)
            .place(&kl, b)
            .place(&ks, b),
        _ => Launch::processes(),
    };
    finish(t.launch(launch.dir(&dir).large_bytes(32 << 20)))
}

/// A spout S of the ids `0..n` (each its own value) and W, which passes
/// them on: what `bottleneck` and `batched` put their sinks behind.
fn counted_through(t: &mut Topology, n: u64) -> Node<u64> {
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    });
    t.worker("W", &s, |_, v: u64, out: &mut Emitter<u64>| {
        out.emit(v);
        Ok(())
    })
}

fn bottleneck(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let mut t = Topology::new();
    let w = counted_through(&mut t, n);
    t.sink("K", &w, |_, _: u64| {
        std::thread::sleep(Duration::from_micros(500));
        Ok(())
    });
    finish(t.launch(test_launch().dir(&rest[1]).ring_bytes(4096)))
}

fn flaky(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let dir = std::path::PathBuf::from(&rest[1]);
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    });
    // Fails once, in its first process, at the middle id.
    let marker = dir.join("W.failed");
    let w = t.worker("W", &s, move |seq, v: u64, out: &mut Emitter<u64>| {
        if seq == n / 2 && std::fs::File::create_new(&marker).is_ok() {
            return Err(format!("cannot handle {v} (this once)").into());
        }
        out.emit(v * 2);
        Ok(())
    });
    let mut next = 0;
    let k = t.worker("K", &w, move |seq, v: u64, out: &mut Emitter<String>| {
        if seq != next || v != 2 * seq {
            return Err(format!("got id {seq} (value {v}) where {next} was due").into());
        }
        next += 1;
        if next == n {
            out.emit(format!("K got {next} in order"));
        }
        Ok(())
    });
    let launch = test_launch()
        .dir(&rest[1])
        .ring_bytes(64 * 1024)
        .restarts_all(2)
        .debug(&k, |_, line| println!("{line}"));
    finish(t.launch(launch))
}

/// Nanoseconds since the Unix epoch, now.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn ticking(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        let sent = out.resume().map_or(0, |r| r.sent);
        for i in sent..n {
            out.send(i, i)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    });
    let w = t.worker("W", &s, |_, _: u64, out: &mut Emitter<u64>| {
        out.emit(now_ns());
        Ok(())
    });
    let launch = test_launch()
        .dir(&rest[1])
        .restarts_all(10)
        .restart_backoff(Duration::ZERO, Duration::ZERO)
        .debug(&w, |seq, at| println!("W {seq} {at}"));
    finish(t.launch(launch))
}

/// What the pipe's three workers make of id `i`, in turn.
fn piped(i: u64) -> u64 {
    (((i * 3 + 1) ^ 0x5555) + 7).wrapping_mul(i | 1)
}

fn pipe(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let mut t = Topology::new();
    let s = t.spout("S", move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    });
    let w1 = t.worker("W1", &s, |_, v: u64, out: &mut Emitter<u64>| {
        out.emit(v * 3 + 1);
        Ok(())
    });
    // The middle one takes its values in place.
    let w2 = t.worker_archived("W2", &w1, |_, v, out: &mut Emitter<u64>| {
        out.emit(v.to_native() ^ 0x5555);
        Ok(())
    });
    let w3 = t.worker("W3", &w2, |seq, v: u64, out: &mut Emitter<u64>| {
        out.emit((v + 7).wrapping_mul(seq | 1));
        Ok(())
    });
    let (mut next, mut sum) = (0, 0u64);
    let k = t.worker("K", &w3, move |seq, v: u64, out: &mut Emitter<String>| {
        // Slow: every ring before it fills.
        std::thread::sleep(Duration::from_micros(100));
        if seq != next {
            return Err(format!("got id {seq} where {next} was due").into());
        }
        if v != piped(seq) {
            return Err(format!("id {seq}: got {v}, not {}", piped(seq)).into());
        }
        next += 1;
        sum = sum.wrapping_add(v.wrapping_mul(seq + 1));
        if next % 10_000 == 0 {
            out.emit(format!("K at {next}"));
        }
        if next == n {
            out.emit(format!("K got {next} checksum {sum}"));
        }
        Ok(())
    });
    let launch = test_launch()
        .dir(&rest[1])
        .ring_bytes(64 * 1024)
        .restarts_all(3)
        .debug(&k, |_, line| println!("{line}"));
    finish(t.launch(launch))
}

fn batched(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let batch: usize = rest[1].parse().expect("BATCH");
    let mut t = Topology::new();
    let w = counted_through(&mut t, n);
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

/// A value with out-of-line data, to be read in place.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Word {
    id: u64,
    text: String,
}

fn archived(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let fail_at: u64 = rest[1].parse().expect("FAIL_AT");
    let mut t = Topology::new();
    // One word, filled again and again, sent by reference.
    let s = t.spout("S", move |out| {
        let mut word = Word {
            id: 0,
            text: String::new(),
        };
        for i in 0..n {
            word.id = i;
            word.text.clear();
            word.text.push_str(&format!("word {i}"));
            out.send_ref(i, &word)?;
        }
        Ok(())
    });
    let w = t.worker_archived("W", &s, move |seq, word, out: &mut Emitter<Word>| {
        if seq == fail_at {
            return Err(format!("cannot take {}", word.text.as_str()).into());
        }
        if word.id.to_native() % 2 == 0 {
            out.forward(word);
        } else {
            out.emit(Word {
                id: word.id.to_native(),
                text: word.text.as_str().to_uppercase(),
            });
        }
        Ok(())
    });
    let (mut count, mut upper) = (0, 0);
    let k = t.worker_archived("K", &w, move |seq, word, out: &mut Emitter<u64>| {
        let expected = format!("word {seq}");
        let text = word.text.as_str();
        if word.id.to_native() != seq || !text.eq_ignore_ascii_case(&expected) {
            return Err(format!("id {seq} came as {} {text:?}", word.id.to_native()).into());
        }
        count += 1;
        upper += u64::from(text != expected);
        if count == n {
            out.emit(upper);
        }
        Ok(())
    });
    let launch = Launch::processes()
        .dir(&rest[2])
        .debug(&k, move |_, upper| {
            println!("K saw {n} words, {upper} upper-cased")
        });
    finish(t.launch(launch))
}

fn joined(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let ring_bytes: usize = rest[1].parse().expect("RING_BYTES");
    let mode = rest.get(3).map(String::as_str);
    let gap = mode == Some("gap");
    let missing = if gap { Some(7) } else { None };
    // "mixed": B sends every third block of 100 reversed and the others in
    // order, and A sends word 250 twice, so that J alternates between
    // upstreams in lockstep and values reordered in its table.
    let mixed = mode == Some("mixed");
    let mut t = Topology::new();
    let a = t.spout("A", move |out| {
        for i in 0..n {
            let text = format!("word {i}");
            out.send(i, Word { id: i, text })?;
            if mixed && i == 250 {
                out.send(
                    i,
                    Word {
                        id: i,
                        text: "again".into(),
                    },
                )?;
            }
        }
        Ok(())
    });
    let b = t.spout("B", move |out| {
        for block in (0..n).step_by(100) {
            let ids = block..(block + 100).min(n);
            let ids: Vec<u64> = if mixed && block % 300 != 100 {
                ids.collect()
            } else {
                ids.rev().collect()
            };
            for i in ids {
                if Some(i) != missing {
                    out.send(i, i)?;
                }
            }
        }
        Ok(())
    });
    let mut bundling = Bundling::sequenced(0);
    if gap {
        bundling = bundling
            .gap_timeout(Duration::from_millis(100))
            .on_gap(GapPolicy::Skip);
    }
    let j = t.bundled_archived(
        "J",
        (&a, &b),
        bundling,
        |seq, (word, number), out: &mut Emitter<Word>| {
            if word.id.to_native() != seq || number.to_native() != seq {
                return Err(format!("bundle {seq}: word {}, number {number}", word.id).into());
            }
            out.forward(word);
            Ok(())
        },
    );
    let (mut next, mut count) = (0, 0);
    let k = t.worker_archived("K", &j, move |seq, word, out: &mut Emitter<u64>| {
        if Some(next) == missing {
            next += 1;
        }
        if seq != next || word.text.as_str() != format!("word {next}") {
            return Err(format!("got {seq} {:?} where {next} was due", word.text.as_str()).into());
        }
        next += 1;
        count += 1;
        if next == n {
            out.emit(count);
        }
        Ok(())
    });
    let launch = Launch::processes()
        .dir(&rest[2])
        .ring_bytes(ring_bytes)
        .debug(&k, |_, count| println!("K joined {count} in order"));
    let result = t.launch(launch);
    if let Ok(report) = &result {
        let policy = report.node("J").map(|j| j.policy).unwrap_or_default();
        println!("J skipped {}", policy.gaps);
        if mixed {
            // Late if bundle 250 ran before the copy came, else a duplicate.
            println!("J dropped {} repeated", policy.late + policy.duplicates);
        }
    }
    finish(result)
}

fn wide(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let spouts: u64 = rest[1].parse().expect("SPOUTS");
    let mut t = Topology::new();
    let handles: Vec<_> = (0..spouts)
        .map(|k| {
            t.spout(&format!("S{k}"), move |out| {
                for i in 0..n {
                    out.send(i, i * spouts + k)?;
                }
                Ok(())
            })
        })
        .collect();
    let j = t.bundled(
        "J",
        handles.iter().collect::<Vec<_>>(),
        Bundling::sequenced(0),
        move |seq, values: Vec<u64>, out: &mut Emitter<u64>| {
            for (k, v) in values.iter().enumerate() {
                if *v != seq * spouts + k as u64 {
                    return Err(format!("bundle {seq}: {v} from S{k}").into());
                }
            }
            out.emit(values.len() as u64);
            Ok(())
        },
    );
    let (mut next, mut count) = (0, 0);
    let k = t.worker("K", &j, move |seq, width: u64, out: &mut Emitter<u64>| {
        if seq != next || width != spouts {
            return Err(format!("got bundle {seq} of {width} where {next} was due").into());
        }
        next += 1;
        count += 1;
        if next == n {
            out.emit(count);
        }
        Ok(())
    });
    // Set in the master's environment only: on the hosts (agents and
    // nodes) the launch options do not matter.
    let hosts = std::env::var("CD_TEST_HOSTS").unwrap_or_default();
    let mut launch = Launch::hosts(hosts.split(','))
        .dir(&rest[2])
        .debug(&k, move |_, count| {
            println!("K joined {count} bundles of {spouts}")
        });
    if let Ok(width) = std::env::var("CD_TEST_FANOUT") {
        launch = launch.fanout(width.parse().expect("CD_TEST_FANOUT"));
    }
    let result = t.launch(launch);
    if let Ok(report) = &result {
        let launch = report.launch.expect("the run started");
        eprintln!(
            "launch {:.3}s, run {:.3}s",
            launch.as_secs_f64(),
            report.elapsed.as_secs_f64()
        );
    }
    finish(result)
}

/// The launch the master's environment asks for: local mode with
/// `CD_TEST_LOCAL`, else across the hosts `CD_TEST_HOSTS` names
/// (round-robin), else one process per node here.
fn test_launch() -> Launch {
    if std::env::var_os("CD_TEST_LOCAL").is_some() {
        return Launch::local();
    }
    match std::env::var("CD_TEST_HOSTS") {
        Ok(hosts) => Launch::hosts(hosts.split(',')),
        Err(_) => Launch::processes(),
    }
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

/// Ids `0..n` in blocks of 256, each block shuffled by `seed` (xorshift):
/// two spouts with two seeds send the same ids in different orders.
fn scrambled_ids(n: u64, seed: u64) -> Vec<u64> {
    let mut state = seed | 1;
    let mut ids: Vec<u64> = (0..n).collect();
    for block in ids.chunks_mut(256) {
        for i in (1..block.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            block.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    ids
}

/// `S1` and `S2` send ids `0..N` (their values: the id, twice the id),
/// each in its own scrambled order; `C`, bundled in no order, checks each
/// pair and emits the id; `K` passes it on, and the debugger prints it
/// (`K <id>`). Every node may be restarted 10 times, at once.
fn scrambled(rest: &[String]) -> ExitCode {
    let n: u64 = rest[0].parse().expect("N");
    let mut t = Topology::new();
    let s1 = t.spout("S1", move |out| {
        for i in scrambled_ids(n, 7) {
            out.send(i, i)?;
        }
        Ok(())
    });
    let s2 = t.spout("S2", move |out| {
        for i in scrambled_ids(n, 11) {
            out.send(i, 2 * i)?;
        }
        Ok(())
    });
    let c = t.bundled(
        "C",
        (&s1, &s2),
        Bundling::unordered(),
        |seq, (a, b): (u64, u64), out: &mut Emitter<u64>| {
            if (a, b) != (seq, 2 * seq) {
                return Err(format!("bundle {seq} is ({a}, {b})").into());
            }
            out.emit(seq);
            Ok(())
        },
    );
    // Downstream of C through its ring: what a consumer node gets.
    let k = t.worker("K", &c, |_, id: u64, out: &mut Emitter<u64>| {
        out.emit(id);
        Ok(())
    });
    let launch = test_launch()
        .dir(&rest[1])
        .restarts_all(10)
        .restart_backoff(Duration::ZERO, Duration::ZERO)
        // Small rings: C runs close behind what K prints, so kills land
        // while it runs.
        .ring_bytes(64 * 1024)
        .debug(&k, |_, id| println!("K {id}"));
    finish(t.launch(launch))
}
