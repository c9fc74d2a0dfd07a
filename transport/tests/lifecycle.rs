//! Cross-process lifecycle tests: a writer or a reader process is killed
//! (SIGKILL, no clean-up) and the other side neither hangs nor loses what
//! was published; the crashed run's segment is found and removed as stale.

// Real processes and shared memory: nothing for loom to model.
#![cfg(not(loom))]

mod common;

use std::io::BufReader;
use std::time::Duration;

use clusterduck_transport::{
    remove_stale_segments, AttachError, FrameKind, ProcessStamp, ReadError, ReopenError, RingName,
    RingReader, RingWriter, StaleStatus,
};
use common::{kill9, next_report, report, spawn_child, unique, watchdog, ROLE};

fn child_name() -> RingName {
    let var = |k: &str| std::env::var(k).unwrap();
    RingName::new(&var("CD_RUN"), &var("CD_NODE")).unwrap()
}

fn name_args(name: &RingName) -> [(&'static str, String); 2] {
    [
        ("CD_RUN", name.run_id().to_owned()),
        ("CD_NODE", name.node().to_owned()),
    ]
}

/// Attaches, retrying while the writer process is still creating the ring.
fn attach_retrying(name: &RingName) -> RingReader {
    for _ in 0..10_000 {
        match RingReader::attach(name) {
            Ok(r) => return r,
            Err(AttachError::NotReady) => {}
            Err(AttachError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the ring never appeared");
}

#[test]
fn a_reader_whose_writer_is_killed_gets_every_frame_then_an_error() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(60, "the writer-death test");
    let name = unique("doomed_writer");
    let mut child = spawn_child("doomed_writer", "doomed-writer", &name_args(&name));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut reader = attach_retrying(&name);
    assert_eq!(next_report(&mut out).as_deref(), Some("written"));
    kill9(&mut child);
    // Not reaped yet: a zombie counts as dead too.
    let mut seqs = Vec::new();
    let err = loop {
        match reader.read() {
            Ok(batch) => seqs.extend(batch.iter().map(|f| f.unwrap().seq())),
            Err(e) => break e,
        }
    };
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    assert_eq!(err, ReadError::WriterDied { pid: child.id() });
    // The error stays.
    assert_eq!(
        reader.read().err(),
        Some(ReadError::WriterDied { pid: child.id() })
    );
    child.wait().unwrap();

    // The crashed writer left its segment: the next run's start finds it.
    assert!(name.path().exists());
    let stale = remove_stale_segments().unwrap();
    let ours = stale
        .iter()
        .find(|s| s.path == name.path())
        .expect("not reported");
    assert!(matches!(ours.status, StaleStatus::Removed { creator } if creator.pid == child.id()));
    assert!(!name.path().exists());
}

/// The writer process of the writer-death test.
#[test]
#[ignore = "a role the parent test runs in a child process, not a test of its own"]
fn doomed_writer() {
    if std::env::var(ROLE).as_deref() != Ok("doomed-writer") {
        return;
    }
    let _w = watchdog(60, "a doomed writer");
    let mut writer = RingWriter::create(&child_name(), 64 * 1024).unwrap();
    writer.wait_for_readers(1, Duration::from_secs(30)).unwrap();
    for seq in 0..100 {
        writer.write_bytes(seq, &[seq as u8; 100]).unwrap();
    }
    writer.flush();
    report("written");
    // Wait to be killed, never ending the stream.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_writer_blocked_on_a_killed_reader_reclaims_its_slot_and_goes_on() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(60, "the reader-death test");
    let name = unique("doomed_reader");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut child = spawn_child("doomed_reader", "doomed-reader", &name_args(&name));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writer.wait_for_readers(1, Duration::from_secs(30)).unwrap();
    // A live reader in this process, which must get everything.
    let mut live = RingReader::attach(&name).unwrap();
    let live = std::thread::spawn(move || {
        let mut n = 0u64;
        loop {
            match live.read() {
                Ok(batch) => {
                    for f in &batch {
                        let f = f.unwrap();
                        if f.kind() == FrameKind::Data {
                            assert_eq!(f.seq(), n);
                            n += 1;
                        }
                    }
                }
                Err(ReadError::Ended) => return n,
                Err(e) => panic!("{e}"),
            }
        }
    });
    writer.write_bytes(0, &[0; 1000]).unwrap();
    writer.flush();
    assert_eq!(next_report(&mut out).as_deref(), Some("read one"));
    kill9(&mut child);
    child.wait().unwrap();
    // Far more than the ring holds: only possible once the dead reader's
    // slot is reclaimed.
    for seq in 1..200 {
        writer.write_bytes(seq, &[0; 1000]).unwrap();
    }
    let dead = writer.take_dead_readers();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].process.pid, child.id());
    writer.finish(200).unwrap();
    assert_eq!(live.join().unwrap(), 200);
}

#[test]
fn a_restarted_reader_takes_over_a_killed_readers_slot_and_reads_on_from_its_release() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(60, "the reader take-over test");
    let name = unique("taken_over");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    writer.keep_dead_readers();
    let mut child = spawn_child("doomed_reader", "doomed-reader", &name_args(&name));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writer.wait_for_readers(1, Duration::from_secs(30)).unwrap();
    writer.write_bytes(0, &[0; 1000]).unwrap();
    writer.flush();
    assert_eq!(next_report(&mut out).as_deref(), Some("read one"));
    // Written, never read by the child: they must come to its successor.
    for seq in 1..3 {
        writer.write_bytes(seq, &[seq as u8; 1000]).unwrap();
    }
    let dead = ProcessStamp::of(child.id()).expect("the child's stamp");
    kill9(&mut child);
    child.wait().unwrap();
    // Far more than the ring holds: the writer waits for the dead reader's
    // kept slot...
    let blocked = writer.blocked_waits();
    let writing = std::thread::spawn(move || {
        for seq in 3..200 {
            writer.write_bytes(seq, &[seq as u8; 1000]).unwrap();
        }
        let dead = writer.take_dead_readers();
        writer.finish(200).unwrap();
        dead
    });
    // Blocked past a few sleep slices (20 ms): it has looked at its readers
    // and found the dead one.
    while blocked.total() < Duration::from_millis(100) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(blocked.waiting());
    let me = std::process::id();
    assert!(matches!(
        RingReader::take_over(&name, ProcessStamp::current()),
        Err(AttachError::ReaderAlive { pid }) if pid == me
    ));
    // ... until its successor takes it over, and gets every frame the dead
    // one had not released, once, in order.
    let mut successor = RingReader::take_over(&name, dead).unwrap();
    let again = RingReader::take_over(&name, dead);
    assert!(
        matches!(&again, Err(AttachError::NoSuchReader { pid }) if *pid == dead.pid),
        "a slot is taken over once: {:?}",
        again.map(|_| ())
    );
    let mut seqs = Vec::new();
    loop {
        match successor.read() {
            Ok(batch) => {
                for f in &batch {
                    let f = f.unwrap();
                    if f.kind() == FrameKind::Data {
                        assert_eq!(f.bytes(), &[f.seq() as u8; 1000][..]);
                        seqs.push(f.seq());
                    }
                }
            }
            Err(ReadError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seqs, (1..200).collect::<Vec<_>>());
    let reported = writing.join().unwrap();
    assert_eq!(reported.len(), 1, "reported once: {reported:?}");
    assert_eq!((reported[0].process, reported[0].cursor), (dead, 1024));
}

/// The value of id `seq` in the restart test: every tenth too large for
/// the ring (it goes to the arena), each byte the id's.
fn restart_value(seq: u64) -> Vec<u8> {
    let len = if seq % 10 == 5 { 20_000 } else { 100 };
    vec![seq as u8; len]
}

/// Reads what `reader` has now into `seqs` (checking every byte), until
/// the end or `timeout` without a frame; whether it ended.
fn read_on(reader: &mut RingReader, seqs: &mut Vec<u64>, timeout: Duration) -> bool {
    loop {
        match reader.read_timeout(timeout) {
            Ok(Some(batch)) => {
                for f in &batch {
                    let f = f.unwrap();
                    if f.kind() == FrameKind::Data {
                        let want = restart_value(f.seq());
                        assert!(f.bytes() == &want[..], "value {} corrupted", f.seq());
                        seqs.push(f.seq());
                    }
                }
            }
            Ok(None) => return false,
            Err(ReadError::Ended) => return true,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_successor_reopens_a_killed_writers_ring_and_its_readers_read_on() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(60, "the writer restart test");
    let name = unique("restarted_writer");
    let mut child = spawn_child(
        "restartable_writer",
        "restartable-writer",
        &name_args(&name),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // One reader reads as values come; the other only at the end, so that
    // the dead writer's large values are still held when its successor
    // writes.
    let mut eager = attach_retrying(&name);
    let mut late = RingReader::attach(&name).unwrap();
    assert_eq!(next_report(&mut out).as_deref(), Some("written"));
    assert!(matches!(
        RingWriter::reopen(&name),
        Err(ReopenError::WriterAlive { pid }) if pid == child.id()
    ));
    kill9(&mut child);
    child.wait().unwrap();
    let mut eager_seqs = Vec::new();
    // Everything the dead writer published, then a wait, not an error: a
    // successor may come.
    assert!(!read_on(
        &mut eager,
        &mut eager_seqs,
        Duration::from_millis(100)
    ));
    assert_eq!(eager_seqs, (0..50).collect::<Vec<_>>());

    // The eager reader waits on a thread, through the successor's coming
    // and its pauses: it follows the new writer (had it kept the dead one's
    // stamp, it would fail once the successor, which does not expect
    // restarts, pauses).
    let waits = eager.waits();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(50));
    let following = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut seqs = eager_seqs;
            while !read_on(&mut eager, &mut seqs, Duration::from_millis(10)) {
                got.store(seqs.len(), std::sync::atomic::Ordering::Release);
            }
            seqs
        })
    };
    // It waited (several 20 ms slices, each with a look at the writer).
    let waited_more = |from: Duration| {
        while waits.total() < from + Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    waited_more(waits.total());
    let mut successor = RingWriter::reopen(&name).unwrap();
    for seq in 50..60 {
        successor.write_bytes(seq, &restart_value(seq)).unwrap();
    }
    successor.flush();
    while got.load(std::sync::atomic::Ordering::Acquire) < 60 {
        std::thread::sleep(Duration::from_millis(1));
    }
    waited_more(waits.total());
    for seq in 60..100 {
        successor.write_bytes(seq, &restart_value(seq)).unwrap();
    }
    successor.finish(100).unwrap();
    let eager_seqs = following.join().unwrap();
    assert_eq!(eager_seqs, (0..100).collect::<Vec<_>>());
    let mut late_seqs = Vec::new();
    assert!(read_on(&mut late, &mut late_seqs, Duration::from_secs(10)));
    assert_eq!(
        late_seqs,
        (0..100).collect::<Vec<_>>(),
        "nothing overwritten"
    );
}

/// The writer process of the writer restart test.
#[test]
#[ignore = "a role the parent test runs in a child process, not a test of its own"]
fn restartable_writer() {
    if std::env::var(ROLE).as_deref() != Ok("restartable-writer") {
        return;
    }
    let _w = watchdog(60, "a restartable writer");
    let mut writer = RingWriter::create(&child_name(), 64 * 1024).unwrap();
    writer.expect_restarts();
    writer.set_large_bytes(1 << 20).unwrap();
    writer.wait_for_readers(2, Duration::from_secs(30)).unwrap();
    for seq in 0..50 {
        writer.write_bytes(seq, &restart_value(seq)).unwrap();
    }
    writer.flush();
    report("written");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_successor_resumes_from_the_last_committed_transaction_and_writes_nothing_twice() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let _w = watchdog(60, "the transaction restart test");
    let name = unique("transactions");
    let mut child = spawn_child(
        "transacting_writer",
        "transacting-writer",
        &name_args(&name),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut reader = attach_retrying(&name);
    assert_eq!(next_report(&mut out).as_deref(), Some("written"));
    kill9(&mut child);
    child.wait().unwrap();
    // Two committed transactions seen, the third (begun, written, not
    // committed) never.
    let mut seqs = Vec::new();
    assert!(!read_on(&mut reader, &mut seqs, Duration::from_millis(100)));
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());

    let mut successor = RingWriter::reopen(&name).unwrap();
    // How far the dead writer's committed frames went, in its own terms.
    assert_eq!(successor.progress(), Some(vec![20, 200]));
    // It redoes the third from there.
    successor.begin();
    for seq in 20..30 {
        successor.write_bytes(seq, &restart_value(seq)).unwrap();
    }
    assert!(successor.commit(&[30, 300]));
    assert_eq!(successor.progress(), Some(vec![30, 300]));
    successor.finish(30).unwrap();
    assert!(read_on(&mut reader, &mut seqs, Duration::from_secs(10)));
    assert_eq!(seqs, (0..30).collect::<Vec<_>>(), "each once, in order");
}

/// The writer process of the transaction restart test.
#[test]
#[ignore = "a role the parent test runs in a child process, not a test of its own"]
fn transacting_writer() {
    if std::env::var(ROLE).as_deref() != Ok("transacting-writer") {
        return;
    }
    let _w = watchdog(60, "a transacting writer");
    let mut writer = RingWriter::create(&child_name(), 64 * 1024).unwrap();
    writer.expect_restarts();
    writer.wait_for_readers(1, Duration::from_secs(30)).unwrap();
    assert_eq!(writer.progress(), None, "nothing committed yet");
    for (range, progress) in [(0..10, [10, 100]), (10..20, [20, 200])] {
        writer.begin();
        for seq in range {
            writer.write_bytes(seq, &restart_value(seq)).unwrap();
        }
        assert!(writer.commit(&progress));
    }
    writer.begin();
    for seq in 20..25 {
        writer.write_bytes(seq, &restart_value(seq)).unwrap();
    }
    writer.flush();
    report("written");
    std::thread::sleep(Duration::from_secs(60));
}

/// The reader process of the reader-death test.
#[test]
#[ignore = "a role the parent test runs in a child process, not a test of its own"]
fn doomed_reader() {
    if std::env::var(ROLE).as_deref() != Ok("doomed-reader") {
        return;
    }
    let _w = watchdog(60, "a doomed reader");
    let mut reader = RingReader::attach(&child_name()).unwrap();
    let batch = reader.read().unwrap();
    assert_eq!(batch.iter().count(), 1);
    drop(batch);
    report("read one");
    // Stop reading, and wait to be killed.
    std::thread::sleep(Duration::from_secs(60));
}
