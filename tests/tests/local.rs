//! Whole topologies in local mode, through the public API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterduck::{Bundling, Emitter, Error, Failure, GraphError, Launch, Node, Topology};
use clusterduck_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

/// A shared list the debugger fills.
fn collector<T: Send + 'static>() -> (Arc<Mutex<Vec<T>>>, impl FnMut(u64, T) + Send + 'static)
where
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |_seq, v| sink.lock().unwrap().push(v))
}

fn numbers(t: &mut Topology, name: &str, n: u64) -> Node<u64> {
    t.spout(name, move |out| {
        for i in 0..n {
            out.send(i, i)?;
        }
        Ok(())
    })
}

#[test]
fn a_pipeline_processes_every_value_and_counts_them() {
    let _w = watchdog("pipeline", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 10_000);
    let w = t.worker("W", &s, |_, v, out: &mut Emitter<u64>| {
        out.emit(v * 2);
        Ok(())
    });
    let total = Arc::new(Mutex::new(0u64));
    let sum = total.clone();
    t.sink("K", &w, move |seq, v| {
        assert_eq!(v, seq * 2, "outputs keep the input's id");
        *sum.lock().unwrap() += v;
        Ok(())
    });
    let report = t.launch(Launch::local().ring_bytes(4096)).unwrap();
    assert_eq!(*total.lock().unwrap(), 2 * (0..10_000u64).sum::<u64>());
    let (s, w, k) = (
        report.node("S").unwrap(),
        report.node("W").unwrap(),
        report.node("K").unwrap(),
    );
    assert_eq!((s.messages_in, s.messages_out), (0, 10_000));
    assert_eq!((w.messages_in, w.messages_out), (10_000, 10_000));
    assert_eq!((k.messages_in, k.messages_out), (10_000, 0));
    assert!(!report.drained_on_request);
}

#[test]
fn merged_upstreams_each_keep_their_order() {
    let _w = watchdog("merge", LIMIT);
    let mut t = Topology::new();
    let a = t.spout("A", |out| {
        for i in 0..5_000u64 {
            out.send(i, (0u8, i))?;
        }
        Ok(())
    });
    let b = t.spout("B", |out| {
        for i in 0..5_000u64 {
            out.send(i, (1u8, i))?;
        }
        Ok(())
    });
    let m = t.worker("M", [&a, &b], |_, v, out: &mut Emitter<(u8, u64)>| {
        out.emit(v);
        Ok(())
    });
    let (seen, debug) = collector();
    t.launch(Launch::local().ring_bytes(4096).debug(&m, debug))
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10_000);
    for source in [0u8, 1] {
        let order: Vec<u64> = seen
            .iter()
            .filter(|(s, _)| *s == source)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(order, (0..5_000).collect::<Vec<_>>(), "upstream {source}");
    }
}

#[test]
fn fan_out_gives_every_consumer_every_value() {
    let _w = watchdog("fan-out", LIMIT);
    let mut t = Topology::new();
    let s = t.spout("S", |out| {
        for i in 0..1_000u64 {
            out.send(i, format!("value {i}"))?;
        }
        Ok(())
    });
    let mut outs = Vec::new();
    let mut launch = Launch::local();
    let mut seen = Vec::new();
    for name in ["X", "Y", "Z"] {
        let w = t.worker(name, &s, |_, v: String, out: &mut Emitter<String>| {
            out.emit(v);
            Ok(())
        });
        let (list, debug) = collector();
        launch = launch.debug(&w, debug);
        seen.push(list);
        outs.push(w);
    }
    // The spout is watched too: four consumers of its output.
    let (spout_seen, debug) = collector();
    launch = launch.debug(&s, debug);
    t.launch(launch).unwrap();
    let expected: Vec<String> = (0..1_000).map(|i| format!("value {i}")).collect();
    for list in seen.iter().chain([&spout_seen]) {
        assert_eq!(*list.lock().unwrap(), expected);
    }
}

#[test]
fn a_worker_emits_zero_one_or_many_values_with_ids_of_its_choice() {
    let _w = watchdog("emit-many", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 10);
    let w = t.worker("W", &s, |seq, v, out: &mut Emitter<u64>| {
        // v copies of v, the k-th with id 100 * seq + k; nothing for 0.
        for k in 0..v {
            out.emit_at(100 * seq + k, v);
        }
        Ok(())
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let report = t
        .launch(Launch::local().debug(&w, move |seq, v| sink.lock().unwrap().push((seq, v))))
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 45);
    assert_eq!(seen[0], (100, 1));
    assert_eq!(seen[44], (908, 9));
    assert_eq!(report.node("W").unwrap().messages_out, 45);
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Reading {
    sensor: String,
    celsius: f64,
}

#[test]
fn a_bundle_joins_ten_upstreams_of_different_types_in_sequence() {
    let _w = watchdog("ten-types", LIMIT);
    const N: u64 = 500;
    let mut t = Topology::new();
    macro_rules! spout {
        ($name:expr, $f:expr) => {
            t.spout($name, move |out| {
                // Each spout sends its ids in its own order.
                let ids: Vec<u64> = if $name.len() % 2 == 0 {
                    (0..N).rev().collect()
                } else {
                    (0..N).collect()
                };
                for i in ids {
                    out.send(i, $f(i))?;
                }
                Ok(())
            })
        };
    }
    let a = spout!("a", |i: u64| i as u8);
    let b = spout!("bb", |i: u64| i as u16);
    let c = spout!("c", |i: u64| i as u32);
    let d = spout!("dd", |i: u64| i);
    let e = spout!("e", |i: u64| -(i as i64));
    let f = spout!("ff", |i: u64| i as f32);
    let g = spout!("g", |i: u64| format!("{i}"));
    let h = spout!("hh", |i: u64| vec![i; 3]);
    let i_ = spout!("i", |i: u64| Some(i));
    let j = spout!("jj", |i: u64| Reading {
        sensor: format!("s{i}"),
        celsius: i as f64 / 2.0
    });
    let joined = t.bundled(
        "J",
        (&a, &b, &c, &d, &e, &f, &g, &h, &i_, &j),
        Bundling::sequenced(0).window(1024),
        |seq, (a, b, c, d, e, f, g, h, i, j), out: &mut Emitter<String>| {
            assert_eq!(u64::from(a), seq % 256);
            assert_eq!(
                (u64::from(b), u64::from(c), d, e),
                (seq, seq, seq, -(seq as i64))
            );
            assert_eq!(
                (f, g, h, i),
                (seq as f32, seq.to_string(), vec![seq; 3], Some(seq))
            );
            out.emit(format!("{seq}:{}:{}", j.sensor, j.celsius));
            Ok(())
        },
    );
    let (seen, debug) = collector();
    t.launch(Launch::local().debug(&joined, debug)).unwrap();
    let expected: Vec<String> = (0..N)
        .map(|i| format!("{i}:s{i}:{}", i as f64 / 2.0))
        .collect();
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn a_vec_of_upstreams_of_one_type_bundles_into_a_vec() {
    let _w = watchdog("vec-bundle", LIMIT);
    let mut t = Topology::new();
    let cams: Vec<Node<u64>> = (0..12)
        .map(|k| numbers(&mut t, &format!("cam{k}"), 100))
        .collect();
    let sums = t.bundled(
        "sum",
        cams.iter().collect::<Vec<_>>(),
        Bundling::unordered(),
        |_, values: Vec<u64>, out: &mut Emitter<u64>| {
            out.emit(values.iter().sum());
            Ok(())
        },
    );
    let (seen, debug) = collector();
    t.launch(Launch::local().debug(&sums, debug)).unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, (0..100).map(|i| 12 * i).collect::<Vec<_>>());
}

#[test]
fn a_spout_error_fails_the_run_naming_the_spout() {
    let _w = watchdog("spout-error", LIMIT);
    let mut t = Topology::new();
    let s = t.spout("sensor", |out| {
        out.send(0, 1u64)?;
        Err("sensor unplugged".into())
    });
    t.sink("K", &s, |_, _| Ok(()));
    let e = t.launch(Launch::local()).unwrap_err();
    assert_eq!(e.to_string(), "node sensor failed: sensor unplugged");
    assert_eq!(
        e.failure(),
        Some(&Failure::Node {
            node: "sensor".into(),
            seq: None,
            message: "sensor unplugged".into()
        })
    );
    let report = e.report().unwrap();
    assert_eq!(
        report.node("sensor").unwrap().error.as_deref(),
        Some("sensor unplugged")
    );
}

#[test]
fn a_worker_error_names_the_node_the_seq_and_the_message() {
    let _w = watchdog("worker-error", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 1_000_000);
    t.sink("parser", &s, |seq, _| {
        if seq == 17 {
            return Err(format!("cannot parse record {seq}").into());
        }
        Ok(())
    });
    let e = t.launch(Launch::local()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node parser failed at seq 17: cannot parse record 17"
    );
    let report = e.report().unwrap();
    assert!(
        report.node("S").unwrap().messages_out < 1_000_000,
        "the run stopped early"
    );
}

#[test]
fn a_worker_panic_names_the_node_the_seq_and_the_message() {
    let _w = watchdog("worker-panic", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 100);
    let w = t.worker("W", &s, |seq, v, out: &mut Emitter<u64>| {
        if seq == 42 {
            panic!("boom at {v}");
        }
        out.emit(v);
        Ok(())
    });
    t.sink("K", &w, |_, _| Ok(()));
    let e = t.launch(Launch::local()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node W failed at seq 42: panicked: boom at 42"
    );
}

// The semantics table's policies (duplicates, late ids, gaps, incomplete
// bundles, overflow) are checked in every mode, local mode included, by
// the conformance suite (`tests/conformance.rs`), ordered by facts.

#[test]
fn draining_stops_the_spouts_and_processes_all_they_sent() {
    let _w = watchdog("drain", LIMIT);
    let mut t = Topology::new();
    let sent = Arc::new(Mutex::new(0u64));
    let count = sent.clone();
    let s = t.spout("endless", move |out| {
        for i in 0.. {
            out.send(i, i)?;
            *count.lock().unwrap() = i + 1;
        }
        Ok(())
    });
    let received = Arc::new(Mutex::new(0u64));
    let got = received.clone();
    t.sink("K", &s, move |_, _| {
        *got.lock().unwrap() += 1;
        Ok(())
    });
    let launch = Launch::local().ctrl_c(false);
    let stop = launch.stop_signal();
    let running = t.start(launch).unwrap();
    while *sent.lock().unwrap() < 10_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.drain();
    let report = running.wait().unwrap();
    assert!(report.drained_on_request);
    let sent = *sent.lock().unwrap();
    assert_eq!(
        *received.lock().unwrap(),
        sent,
        "everything sent was processed"
    );
    assert_eq!(report.node("K").unwrap().messages_in, sent);
}

#[test]
fn a_slow_consumer_holds_the_spout_back_without_loss() {
    let _w = watchdog("back-pressure", LIMIT);
    for batch in [1, 4] {
        let max = values_ahead_of_a_slow_consumer(batch);
        // In flight at most: the ring, the values the consumer took (one
        // batch, the one being processed among them), the one being sent,
        // and one the sink finished but has not counted yet.
        assert!(
            max <= CAPACITY + batch + 2,
            "batch {batch}: the spout ran {max} values ahead"
        );
    }
}

/// Bytes of the rings of the back-pressure test, and the values they hold
/// (a `u64` frame takes 32 bytes: a 16-byte header, 8 bytes padded to 16).
const RING_BYTES: usize = 4096;
const CAPACITY: u64 = (RING_BYTES / 32) as u64;

/// How far a spout ran ahead of a slow sink, at most.
fn values_ahead_of_a_slow_consumer(batch: u64) -> u64 {
    let mut t = Topology::new();
    let sent = Arc::new(Mutex::new(0u64));
    let processed = Arc::new(Mutex::new(0u64));
    let max_ahead = Arc::new(Mutex::new(0u64));
    let (s_sent, s_processed, s_max) = (sent.clone(), processed.clone(), max_ahead.clone());
    let s = t.spout("S", move |out| {
        for i in 0..400u64 {
            out.send(i, i)?;
            let sent = i + 1;
            *s_sent.lock().unwrap() = sent;
            let ahead = sent - *s_processed.lock().unwrap();
            let mut max = s_max.lock().unwrap();
            *max = (*max).max(ahead);
        }
        Ok(())
    });
    let p = processed.clone();
    t.sink("slow", &s, move |seq, v| {
        assert_eq!(seq, v);
        std::thread::sleep(Duration::from_micros(200));
        *p.lock().unwrap() += 1;
        Ok(())
    });
    t.launch(Launch::local().ring_bytes(RING_BYTES).batch(batch as usize))
        .unwrap();
    assert_eq!(*processed.lock().unwrap(), 400);
    let max = *max_ahead.lock().unwrap();
    max
}

#[test]
fn topology_mistakes_are_refused_before_anything_starts() {
    let started = Arc::new(Mutex::new(false));
    let flag = started.clone();
    let mut t = Topology::new();
    t.spout("A", move |out| {
        *flag.lock().unwrap() = true;
        out.send(0, 0u64).map_err(Into::into)
    });
    t.spout("A", |out| out.send(0, 0u64).map_err(Into::into));
    let e = t.launch(Launch::local()).unwrap_err();
    assert!(matches!(
        e,
        Error::Topology(GraphError::DuplicateName { .. })
    ));
    assert_eq!(
        e.to_string(),
        "invalid topology: node \"A\" is defined twice (nodes #0 and #1)"
    );
    assert!(!*started.lock().unwrap(), "no spout ran");

    let e = Topology::new().launch(Launch::local()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid topology: the topology is empty: define at least one spout"
    );

    let mut t = Topology::new();
    t.spout("bad name", |out| out.send(0, 0u64).map_err(Into::into));
    assert_eq!(
        t.launch(Launch::local()).unwrap_err().to_string(),
        "invalid topology: node \"bad name\": invalid name: only ASCII letters, digits, '-', '_' and '.' are allowed"
    );
}

#[test]
fn handles_of_another_topology_are_refused() {
    let mut other = Topology::new();
    let foreign = numbers(&mut other, "X", 1);
    let mut t = Topology::new();
    numbers(&mut t, "A", 1);
    t.sink("K", &foreign, |_, _| Ok(()));
    assert_eq!(
        t.launch(Launch::local()).unwrap_err().to_string(),
        "invalid topology: node \"K\": upstream \"X (a node of another topology)\" is not a node of this topology"
    );

    let mut t = Topology::new();
    let a = numbers(&mut t, "A", 1);
    let e = t
        .launch(Launch::local().debug(&foreign, |_, _| {}))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "debugger: node \"X\" is not a node of this topology"
    );
    let _ = a;
}

/// A value with out-of-line data, to be read in place.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Word {
    id: u64,
    text: String,
}

#[test]
fn archived_workers_read_in_place_forward_and_merge() {
    let _w = watchdog("archived", LIMIT);
    let mut t = Topology::new();
    let words = |t: &mut Topology, name: &str, ids: std::ops::Range<u64>| {
        t.spout(name, move |out| {
            for i in ids {
                let text = format!("word {i}");
                out.send(i, Word { id: i, text })?;
            }
            Ok(())
        })
    };
    let a = words(&mut t, "A", 0..50);
    let b = words(&mut t, "B", 50..100);
    // Evens go on as they are; odds go on as another value, archived here:
    // forward then copies it through an owned value.
    let w = t.worker_archived("W", [&a, &b], |seq, word, out: &mut Emitter<Word>| {
        assert_eq!(word.id.to_native(), seq);
        if seq % 2 == 0 {
            out.forward(word);
        } else {
            let other = Word {
                id: seq,
                text: word.text.as_str().to_uppercase(),
            };
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&other).unwrap();
            out.forward(rkyv::access::<ArchivedWord, rkyv::rancor::Error>(&bytes).unwrap());
        }
        Ok(())
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let got = seen.clone();
    t.sink_archived("K", &w, move |seq, word: &ArchivedWord| {
        got.lock()
            .unwrap()
            .push((seq, word.text.as_str().to_owned()));
        Ok(())
    });
    let (watched, watch) = collector::<Word>();
    let report = t.launch(Launch::local().debug(&w, watch)).unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let expected: Vec<(u64, String)> = (0..100)
        .map(|i| {
            let text = format!("word {i}");
            (
                i,
                if i % 2 == 0 {
                    text
                } else {
                    text.to_uppercase()
                },
            )
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(watched.lock().unwrap().len(), 100);
    assert_eq!(report.node("W").unwrap().messages_in, 100);
    assert_eq!(report.node("W").unwrap().messages_out, 100);
}

#[test]
fn a_failing_archived_worker_names_node_and_seq() {
    let _w = watchdog("archived-fail", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 10);
    t.sink_archived("K", &s, |seq, _| {
        if seq == 3 {
            return Err("no threes".into());
        }
        Ok(())
    });
    let err = t.launch(Launch::local()).unwrap_err();
    assert_eq!(err.to_string(), "node K failed at seq 3: no threes");
}

#[test]
fn spouts_and_workers_send_copies_of_values_they_keep() {
    let _w = watchdog("by-ref", LIMIT);
    let mut t = Topology::new();
    let s = t.spout("S", |out| {
        let mut line = String::new();
        for i in 0..5u64 {
            line.push_str(&i.to_string());
            out.send_ref(i, &line)?;
        }
        Ok(())
    });
    // Two consumers: each gets its own copy.
    let mut total = 0u64;
    let w = t.worker("W", &s, move |_, line: String, out: &mut Emitter<u64>| {
        total += line.len() as u64;
        out.emit_ref(&total);
        Ok(())
    });
    let (lines, watch_lines) = collector::<String>();
    let (totals, watch_totals) = collector::<u64>();
    t.sink("K", &s, |_, _: String| Ok(()));
    t.launch(
        Launch::local()
            .debug(&s, watch_lines)
            .debug(&w, watch_totals),
    )
    .unwrap();
    assert_eq!(*lines.lock().unwrap(), ["0", "01", "012", "0123", "01234"]);
    assert_eq!(*totals.lock().unwrap(), [1, 3, 6, 10, 15]);
}

#[test]
fn archived_bundles_see_the_values_of_every_upstream_in_order() {
    let _w = watchdog("archived-bundles", LIMIT);
    let mut t = Topology::new();
    let ups: Vec<Node<u64>> = (0..3)
        .map(|k| {
            t.spout(&format!("S{k}"), move |out| {
                // Each upstream sends the ids in its own order.
                let mut ids: Vec<u64> = (0..30).collect();
                ids.rotate_left(k * 7);
                for i in ids {
                    out.send(i, i * 10 + k as u64)?;
                }
                Ok(())
            })
        })
        .collect();
    let j = t.bundled_archived(
        "J",
        ups.iter().collect::<Vec<_>>(),
        Bundling::sequenced(0),
        |seq, values, out: &mut Emitter<u64>| {
            let numbers: Vec<u64> = values.iter().map(|v| v.to_native()).collect();
            assert_eq!(numbers, [seq * 10, seq * 10 + 1, seq * 10 + 2]);
            // The middle one goes on as it is.
            out.forward(values[1]);
            Ok(())
        },
    );
    let (seen, watch) = collector::<u64>();
    t.launch(Launch::local().debug(&j, watch)).unwrap();
    let expected: Vec<u64> = (0..30).map(|i| i * 10 + 1).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn restarts_are_refused_in_local_mode_and_for_another_topologys_node() {
    let _w = watchdog("restarts-refused", LIMIT);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 3);
    t.sink("K", &s, |_, _: u64| Ok(()));
    let e = t.launch(Launch::local().restarts_all(1)).unwrap_err();
    assert!(matches!(e, Error::RestartsLocal), "{e:?}");
    assert_eq!(
        e.to_string(),
        "restarts are for process mode: in local mode a node is a thread, and a fault ends the process"
    );
    // None asked: the run goes.
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 3);
    t.sink("K", &s, |_, _: u64| Ok(()));
    assert!(t.launch(Launch::local().restarts_all(0)).is_ok());
    let mut other = Topology::new();
    let foreign = numbers(&mut other, "X", 1);
    let mut t = Topology::new();
    let s = numbers(&mut t, "S", 3);
    t.sink("K", &s, |_, _: u64| Ok(()));
    let e = t
        .launch(Launch::processes().restarts(&foreign, 2))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "restarts: node \"X\" is not a node of this topology"
    );
}
