//! Single-process tests of the rings: threads stand in for processes (the
//! cross-process ones are in `transport/tests/`).

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::layout::prefix;
use super::segment::header_len;
use super::*;

/// A ring name unique to this test process and call.
fn unique(node: &str) -> RingName {
    static N: AtomicUsize = AtomicUsize::new(0);
    let run = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    RingName::new(&run, node).unwrap()
}

/// Aborts the process if a test hangs.
fn watchdog(secs: u64) -> impl Drop {
    crate::test_watchdog::watchdog(secs, "a shm unit test")
}

fn collect(reader: &mut RingReader) -> Result<Vec<(FrameKind, u64, Vec<u8>)>, ReadError> {
    let batch = reader.read()?;
    Ok(batch
        .iter()
        .map(|f| {
            let f = f.unwrap();
            (f.kind(), f.seq(), f.bytes().to_vec())
        })
        .collect())
}

#[test]
fn frames_round_trip_in_order_then_end() {
    let _w = watchdog(30);
    let name = unique("a");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    writer.write_bytes(1, b"one").unwrap();
    writer.write_bytes(2, b"").unwrap();
    writer.write_bytes(3, &[7; 100]).unwrap();
    writer.finish(4).unwrap();
    let frames = collect(&mut reader).unwrap();
    assert_eq!(
        frames,
        vec![
            (FrameKind::Data, 1, b"one".to_vec()),
            (FrameKind::Data, 2, vec![]),
            (FrameKind::Data, 3, vec![7; 100]),
            (FrameKind::End, 4, vec![]),
        ]
    );
    assert_eq!(reader.read().err(), Some(ReadError::Ended));
    assert_eq!(reader.try_read().err(), Some(ReadError::Ended));
    // The writer removed the segment when it finished.
    assert!(!name.path().exists());
}

#[test]
fn segment_is_private_and_removed_with_the_writer() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("mode");
    let writer = RingWriter::create(&name, 4096).unwrap();
    let mode = std::fs::metadata(name.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        RingWriter::create(&name, 4096),
        Err(CreateError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists
    ));
    drop(writer);
    assert!(!name.path().exists());
}

#[test]
fn frames_that_cross_the_end_of_the_ring_stay_contiguous() {
    let _w = watchdog(60);
    let name = unique("wrap");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    // Sizes that do not divide the capacity: frames straddle the end.
    for seq in 0..200u64 {
        let len = 1000 + (seq as usize * 37) % 900;
        let payload: Vec<u8> = (0..len).map(|i| (i as u64 ^ seq) as u8).collect();
        writer.write_bytes(seq, &payload).unwrap();
        let frames = collect(&mut reader).unwrap();
        assert_eq!(frames, vec![(FrameKind::Data, seq, payload)]);
    }
    assert_eq!(writer.max_payload(), 4096 - 16);
    assert!(matches!(
        writer.write_bytes(0, &[0; 4096]),
        Err(WriteError::TooLarge {
            len: 4096,
            max: 4080
        })
    ));
    writer.write_bytes(0, &[1; 4080]).unwrap();
    assert_eq!(collect(&mut reader).unwrap()[0].2, vec![1; 4080]);
}

#[test]
fn a_full_ring_blocks_the_writer_until_the_slowest_reader_releases() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    let _w = watchdog(60);
    let name = unique("bp");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let n = 2000u64;
    let payload = |seq: u64| seq.to_le_bytes().repeat(1 + seq as usize % 40);
    // The first frame that cannot fit while reader 0 holds, and how many
    // writes completed: set by the writer, checked by reader 0.
    let must_block = Arc::new(AtomicU64::new(u64::MAX));
    let written = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let mut reader = RingReader::attach(&name).unwrap();
            let (must_block, written) = (must_block.clone(), written.clone());
            std::thread::spawn(move || {
                if r == 0 {
                    // Reader 0 holds (it reads nothing, so it is the slowest)
                    // until the writer is at a frame that does not fit: that
                    // write must wait for it.
                    let blocked_at = loop {
                        match must_block.load(Ordering::SeqCst) {
                            u64::MAX => std::thread::sleep(Duration::from_millis(1)),
                            seq => break seq,
                        }
                    };
                    assert_eq!(
                        written.load(Ordering::SeqCst),
                        blocked_at,
                        "the write of frame {blocked_at} completed with the ring full"
                    );
                }
                let mut expect = 0u64;
                loop {
                    let batch = match reader.read() {
                        Ok(b) => b,
                        Err(ReadError::Ended) => break,
                        Err(e) => panic!("{e}"),
                    };
                    for f in &batch {
                        let f = f.unwrap();
                        if f.kind() == FrameKind::End {
                            continue;
                        }
                        assert_eq!(f.seq(), expect);
                        assert_eq!(f.bytes(), &payload(expect)[..]);
                        expect += 1;
                    }
                    drop(batch);
                }
                expect
            })
        })
        .collect();
    for seq in 0..n {
        let bytes = payload(seq);
        // SYNC: SeqCst for a test's handshake; the ring itself orders frames.
        if must_block.load(Ordering::SeqCst) == u64::MAX
            && writer.free_space() < 16 + bytes.len().div_ceil(16) * 16
        {
            must_block.store(seq, Ordering::SeqCst);
        }
        writer.write_bytes(seq, &bytes).unwrap();
        written.store(seq + 1, Ordering::SeqCst);
    }
    writer.finish(n).unwrap();
    assert!(
        must_block.load(Ordering::SeqCst) < n,
        "the ring never filled"
    );
    for r in readers {
        assert_eq!(r.join().unwrap(), n);
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
struct Photo {
    id: u64,
    caption: String,
    pixels: Vec<u32>,
}

#[test]
fn values_are_serialised_in_place_or_spilled_and_read_checked() {
    let _w = watchdog(60);
    let name = unique("rkyv");
    let mut writer = RingWriter::create(&name, 8192).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let n = 400u64;
    let t = std::thread::spawn(move || {
        let mut expect = 0;
        let mut saw_last = false;
        // The last frame (seq n) may come in the same batch as the last
        // Photo: check it where it comes.
        while !saw_last {
            let batch = reader.read().unwrap();
            for f in &batch {
                let f = f.unwrap();
                assert_eq!(f.seq(), expect);
                if expect == n {
                    // A frame that is not a Photo fails the check instead of
                    // misbehaving.
                    assert_eq!(f.bytes(), &[0xFF; 3]);
                    assert!(f.access::<Photo>().is_err());
                    saw_last = true;
                    continue;
                }
                let p = f.access::<Photo>().unwrap();
                assert_eq!(p.id, f.seq());
                assert_eq!(p.caption.as_str(), format!("photo {}", f.seq()));
                assert_eq!(p.pixels.len() as u64, f.seq() * 7 % 1500);
                assert!(p
                    .pixels
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v.to_native() == i as u32));
                // SAFETY: written by write_value with a Photo, checked above.
                let q = unsafe { f.access_unchecked::<Photo>() };
                assert_eq!(q.id, p.id);
                expect += 1;
            }
        }
    });
    // Values up to 6 KB in an 8 KB ring: some fit the free space, some spill.
    for i in 0..n {
        let photo = Photo {
            id: i,
            caption: format!("photo {i}"),
            pixels: (0..(i * 7 % 1500) as u32).collect(),
        };
        writer.write_value(i, &photo).unwrap();
    }
    assert!(writer.spills > 0, "no value spilled");
    assert!(writer.spills < n as usize, "every value spilled");
    let big = Photo {
        id: 0,
        caption: String::new(),
        pixels: vec![0; 4096],
    };
    assert!(matches!(
        writer.write_value(0, &big),
        Err(WriteError::TooLarge { .. })
    ));
    writer.write_bytes(n, &[0xFF; 3]).unwrap();
    writer.flush();
    t.join().unwrap();
}

#[test]
fn a_reader_that_attaches_late_starts_at_the_next_frame() {
    let name = unique("late");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    // Nobody reads: the writer overwrites freely.
    for seq in 0..100 {
        writer.write_bytes(seq, &[1; 200]).unwrap();
    }
    let mut reader = RingReader::attach(&name).unwrap();
    assert!(reader.try_read().unwrap().is_none());
    writer.write_bytes(100, b"x").unwrap();
    assert_eq!(
        collect(&mut reader).unwrap(),
        vec![(FrameKind::Data, 100, b"x".to_vec())]
    );
    writer.wait_for_readers(1, Duration::ZERO).unwrap();
    assert_eq!(
        writer.wait_for_readers(2, Duration::from_millis(5)),
        Err(WaitReadersError {
            attached: 1,
            wanted: 2
        })
    );
}

#[test]
fn read_timeout_returns_none_and_a_dropped_writer_is_an_error() {
    let _w = watchdog(30);
    let name = unique("drop");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    assert!(reader
        .read_timeout(Duration::from_millis(30))
        .unwrap()
        .is_none());
    writer.write_bytes(5, b"last").unwrap();
    drop(writer);
    assert_eq!(
        collect(&mut reader).unwrap(),
        vec![(FrameKind::Data, 5, b"last".to_vec())]
    );
    assert_eq!(reader.read().err(), Some(ReadError::WriterDropped));
}

#[test]
fn a_sleeping_reader_is_woken_by_the_writer() {
    let _w = watchdog(30);
    let name = unique("wake");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let t = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 50 {
            let batch = reader.read().unwrap();
            got.extend(batch.iter().map(|f| f.unwrap().seq()));
        }
        got
    });
    for seq in 0..50 {
        // Long enough for the reader to fall asleep between frames.
        std::thread::sleep(Duration::from_millis(2));
        writer.write_bytes(seq, b"tick").unwrap();
        writer.flush();
    }
    assert_eq!(t.join().unwrap(), (0..50).collect::<Vec<_>>());
}

#[test]
fn readers_detach_and_slots_are_reused() {
    let name = unique("slots");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let readers: Vec<_> = (0..layout::MAX_READERS)
        .map(|_| RingReader::attach(&name).unwrap())
        .collect();
    assert!(matches!(
        RingReader::attach(&name),
        Err(AttachError::Full { .. })
    ));
    assert_eq!(writer.readers(), layout::MAX_READERS);
    drop(readers);
    assert_eq!(writer.readers(), 0);
    // Detached readers do not hold the writer back.
    for seq in 0..10 {
        writer.write_bytes(seq, &[0; 1000]).unwrap();
    }
    let mut again = RingReader::attach(&name).unwrap();
    writer.write_bytes(10, b"again").unwrap();
    assert_eq!(
        collect(&mut again).unwrap(),
        vec![(FrameKind::Data, 10, b"again".to_vec())]
    );
}

#[test]
fn a_foreign_file_or_another_layout_version_is_a_typed_error() {
    let name = unique("bad");
    std::fs::write(name.path(), [0x42u8; 8192]).unwrap();
    assert!(matches!(
        RingReader::attach(&name),
        Err(AttachError::BadMagic {
            found: 0x4242_4242_4242_4242
        })
    ));
    std::fs::remove_file(name.path()).unwrap();

    let name = unique("version");
    let _writer = RingWriter::create(&name, 4096).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    file.write_all_at(&99u32.to_ne_bytes(), prefix::VERSION as u64)
        .unwrap();
    assert!(matches!(
        RingReader::attach(&name),
        Err(AttachError::Version {
            found: 99,
            expected: layout::LAYOUT_VERSION
        })
    ));

    let missing = unique("missing");
    assert!(matches!(
        RingReader::attach(&missing),
        Err(AttachError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound
    ));
}

#[test]
fn an_unknown_frame_kind_is_a_typed_error_and_poisons_the_reader() {
    let name = unique("kind");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    writer.write_bytes(1, b"fine").unwrap();
    writer.write_bytes(2, b"later").unwrap();
    // Overwrite the second frame's kind code, as a newer writer would.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    let second = header_len() as u64 + layout::frame_size(4);
    file.write_all_at(&77u32.to_ne_bytes(), second + 4).unwrap();
    {
        let batch = reader.read().unwrap();
        let frames: Vec<_> = batch.iter().collect();
        assert_eq!(frames[0].unwrap().bytes(), b"fine");
        assert_eq!(
            frames[1].unwrap_err(),
            FrameError::UnknownKind {
                code: 77,
                pos: layout::frame_size(4)
            }
        );
    }
    assert!(matches!(
        reader.read().err(),
        Some(ReadError::Frame(FrameError::UnknownKind { code: 77, .. }))
    ));
}

#[test]
fn stale_segments_of_dead_processes_are_removed_and_live_ones_kept() {
    let dir = std::env::temp_dir().join(format!("cd-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let segment = |pid: u32, start: u64| {
        let mut b = vec![0u8; 8192];
        b[..8].copy_from_slice(&layout::MAGIC.to_ne_bytes());
        b[prefix::CREATOR_PID..prefix::CREATOR_PID + 4].copy_from_slice(&pid.to_ne_bytes());
        b[prefix::CREATOR_START..prefix::CREATOR_START + 8].copy_from_slice(&start.to_ne_bytes());
        b
    };
    let me = crate::ProcessStamp::current();
    std::fs::write(dir.join("clusterduck-old-x"), segment(dead_pid, 1)).unwrap();
    std::fs::write(
        dir.join("clusterduck-reused-x"),
        segment(me.pid, me.start_time + 1),
    )
    .unwrap();
    std::fs::write(
        dir.join("clusterduck-live-x"),
        segment(me.pid, me.start_time),
    )
    .unwrap();
    std::fs::write(dir.join("clusterduck-junk"), b"junk").unwrap();
    std::fs::write(dir.join("other"), b"not ours").unwrap();
    let mut found = name::remove_stale_segments_in(&dir).unwrap();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let names: Vec<_> = found
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_str().unwrap(),
                matches!(s.status, StaleStatus::Removed { .. }),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("clusterduck-junk", false),
            ("clusterduck-old-x", true),
            ("clusterduck-reused-x", true)
        ]
    );
    assert!(dir.join("clusterduck-live-x").exists());
    assert!(!dir.join("clusterduck-old-x").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_limited_batch_leaves_the_rest_for_the_next_read() {
    let name = unique("limit");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    for seq in 0..10u64 {
        writer.write_bytes(seq, &[seq as u8; 5]).unwrap();
    }
    writer.flush();
    let mut batch = reader.try_read().unwrap().unwrap();
    batch.limit(3);
    let first: Vec<u64> = batch.iter().map(|f| f.unwrap().seq()).collect();
    assert_eq!(first, [0, 1, 2]);
    drop(batch);
    // With a limit, what was not iterated is not released either.
    let mut batch = reader.try_read().unwrap().unwrap();
    batch.limit(5);
    let second: Vec<u64> = batch.iter().take(2).map(|f| f.unwrap().seq()).collect();
    assert_eq!(second, [3, 4]);
    drop(batch);
    let batch = reader.try_read().unwrap().unwrap();
    let rest: Vec<u64> = batch.iter().map(|f| f.unwrap().seq()).collect();
    assert_eq!(rest, (5..10).collect::<Vec<_>>());
}

#[test]
fn a_spinning_reader_gets_frames_and_the_end_like_a_sleeping_one() {
    let _w = watchdog(60);
    let name = unique("spin");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    reader.set_spin(Duration::from_millis(50));
    let late = std::thread::spawn(move || {
        // One frame while the reader polls, one after it went to sleep.
        std::thread::sleep(Duration::from_millis(5));
        writer.write_bytes(1, b"polled").unwrap();
        writer.flush();
        std::thread::sleep(Duration::from_millis(100));
        writer.write_bytes(2, b"slept").unwrap();
        writer.finish(2).unwrap();
    });
    let mut got = Vec::new();
    loop {
        match reader.read() {
            Ok(batch) => {
                for frame in &batch {
                    let frame = frame.unwrap();
                    if frame.kind() == FrameKind::Data {
                        got.push((frame.seq(), frame.bytes().to_vec()));
                    }
                }
            }
            Err(ReadError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    late.join().unwrap();
    assert_eq!(got, [(1, b"polled".to_vec()), (2, b"slept".to_vec())]);
}

#[test]
fn a_reader_can_hold_frames_read_on_past_them_and_release_them_later() {
    let name = unique("hold");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    for seq in 0..3u64 {
        writer.write_bytes(seq, &[seq as u8; 20]).unwrap();
    }
    writer.flush();
    // Walk the three frames without releasing them.
    let start = reader.cursor();
    let end = reader
        .published_past(start, Duration::ZERO)
        .unwrap()
        .unwrap();
    let mut held = Vec::new();
    let mut pos = start;
    while pos < end {
        let (frame, next) = reader.frame_at(pos).unwrap();
        assert_eq!(frame.bytes(), &[frame.seq() as u8; 20]);
        held.push((pos, frame.seq()));
        pos = next;
    }
    assert_eq!(held.iter().map(|h| h.1).collect::<Vec<_>>(), [0, 1, 2]);
    // Nothing past them yet; the held frames are still there to read.
    assert_eq!(
        reader
            .published_past(end, Duration::from_millis(5))
            .unwrap(),
        None
    );
    assert_eq!(reader.frame_at(held[1].0).unwrap().0.seq(), 1);
    // Release the first only: the others stay readable.
    reader.release_to(held[1].0);
    assert_eq!(reader.cursor(), held[1].0);
    assert_eq!(reader.frame_at(held[2].0).unwrap().0.seq(), 2);
    // A frame written later is found past the held ones, then the end.
    writer.write_bytes(3, b"late").unwrap();
    writer.finish(4).unwrap();
    let end2 = reader
        .published_past(end, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let (late, next) = reader.frame_at(end).unwrap();
    assert_eq!((late.seq(), late.bytes()), (3, &b"late"[..]));
    let (last, after) = reader.frame_at(next).unwrap();
    assert_eq!(last.kind(), FrameKind::End);
    assert_eq!(after, end2);
    reader.release_to(end2);
    assert!(matches!(
        reader.published_past(end2, Duration::from_millis(5)),
        Err(ReadError::Ended)
    ));
}

/// A value of `len` bytes whose every byte says where it is and which
/// value it belongs to.
fn patterned(len: usize, k: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ k).collect()
}

#[test]
fn large_values_go_out_of_line_and_read_in_place_like_any_frame() {
    let _w = watchdog(30);
    let name = unique("large");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    writer.set_large_bytes(1 << 20).unwrap();
    assert_eq!(writer.max_inline(), 4096 / 4 - 16);
    let mut reader = RingReader::attach(&name).unwrap();
    let big = patterned(300_000, 1);
    writer.write_bytes(1, b"small").unwrap();
    writer.write_bytes(2, &big).unwrap();
    // Serialised values too: an rkyv archive larger than the ring.
    writer.write_value(3, &vec![5u8; 100_000]).unwrap();
    assert!(
        name.arena_path().exists(),
        "the arena, made with the setting"
    );
    writer.finish(4).unwrap();
    let batch = reader.read().unwrap();
    let frames: Vec<Frame<'_>> = batch.iter().map(Result::unwrap).collect();
    assert_eq!(frames.len(), 4);
    assert_eq!(
        (frames[0].kind(), frames[0].bytes()),
        (FrameKind::Data, &b"small"[..])
    );
    assert_eq!((frames[1].kind(), frames[1].seq()), (FrameKind::Data, 2));
    assert!(
        frames[1].bytes() == &big[..],
        "every byte of the large value"
    );
    assert_eq!(
        frames[1].bytes().as_ptr() as usize % 16,
        0,
        "aligned for rkyv"
    );
    let v = frames[2].access::<Vec<u8>>().unwrap();
    assert_eq!(v.len(), 100_000);
    assert!(v.iter().all(|b| *b == 5));
    assert_eq!(frames[3].kind(), FrameKind::End);
}

#[test]
fn a_full_arena_makes_the_writer_wait_for_the_readers() {
    let _w = watchdog(30);
    let name = unique("large-wait");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    // Room for three values of 300 000 bytes, not four.
    writer.set_large_bytes(1 << 20).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|k| patterned(300_000, k)).collect();
    let sent = values.clone();
    let writing = std::thread::spawn(move || {
        for (k, v) in sent.iter().enumerate() {
            writer.write_bytes(k as u64, v).unwrap();
        }
        writer.finish(10).unwrap();
    });
    let mut got = Vec::new();
    loop {
        match reader.read() {
            Ok(batch) => {
                for f in batch.iter() {
                    let f = f.unwrap();
                    if f.kind() == FrameKind::Data {
                        assert!(
                            f.bytes() == &values[f.seq() as usize][..],
                            "value {}",
                            f.seq()
                        );
                        got.push(f.seq());
                    }
                }
            }
            Err(ReadError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    writing.join().unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_value_larger_than_the_arena_is_refused_saying_what_to_raise() {
    let _w = watchdog(30);
    let name = unique("large-refused");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    // Without an arena: the ring's limit, as before.
    let e = writer.write_bytes(1, &[0; 5000]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "frame of 5000 bytes exceeds the ring's maximum payload of 4080"
    );
    writer.set_large_bytes(64 << 10).unwrap();
    let e = writer.write_bytes(1, &[0; 70_000]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a value of 70000 bytes is larger than the node's space for large values, 65536 bytes (raise the launch's large_bytes)"
    );
    // A positive control: one that fits goes.
    writer.write_bytes(1, &[0; 60_000]).unwrap();
    let arena = name.arena_path();
    assert!(arena.exists());
    drop(writer);
    assert!(!arena.exists(), "the arena goes with its writer");
}

#[test]
fn serialised_values_large_and_small_alternate_through_the_arena_and_the_ring() {
    let _w = watchdog(30);
    let name = unique("large-values");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    writer.set_large_bytes(1 << 20).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    // Large ones after a large one are serialised in the arena directly.
    let sizes = [200_000usize, 300_000, 10, 250_000, 20, 30, 100_000];
    for (seq, len) in sizes.iter().enumerate() {
        writer
            .write_value(seq as u64, &vec![seq as u8; *len])
            .unwrap();
    }
    writer.finish(sizes.len() as u64).unwrap();
    let batch = reader.read().unwrap();
    let got: Vec<(u64, usize, bool)> = batch
        .iter()
        .map(Result::unwrap)
        .filter(|f| f.kind() == FrameKind::Data)
        .map(|f| {
            let v = f.access::<Vec<u8>>().unwrap();
            (f.seq(), v.len(), v.iter().all(|b| u64::from(*b) == f.seq()))
        })
        .collect();
    let expected: Vec<(u64, usize, bool)> = sizes
        .iter()
        .enumerate()
        .map(|(seq, len)| (seq as u64, *len, true))
        .collect();
    assert_eq!(got, expected);
}

/// A node that forwards a large value by reference: its frame refers to the
/// value in its upstream's arena, where its own readers read it; the frame
/// it read the value from stays held (its upstream cannot reuse the space)
/// until the hold ends, while its reads go on past it.
#[test]
fn a_forwarded_value_is_read_in_the_upstreams_arena_while_its_frame_is_held() {
    let _w = watchdog(30);
    let (up, down) = (unique("up"), unique("down"));
    let mut upstream = RingWriter::create(&up, 4096).unwrap();
    upstream.set_large_bytes(1 << 20).unwrap();
    let mut forwarder = RingReader::attach(&up).unwrap();
    let mut downstream = RingWriter::create(&down, 4096).unwrap();
    let mut reader = RingReader::attach(&down).unwrap();
    let big = patterned(300_000, 3);
    upstream.write_bytes(1, &big).unwrap();
    let after_big = upstream.written();

    let span = forwarder.arena_span().expect("the upstream's arena");
    let hold = {
        let mut batch = forwarder.read().unwrap();
        let value = {
            let frame = batch.iter().next().unwrap().unwrap();
            assert!(
                span.locate(b"not in the arena").is_none(),
                "bytes elsewhere are no arena value"
            );
            span.locate(frame.bytes()).expect("a value of the arena")
        };
        assert_eq!(value.len(), 300_000);
        downstream.write_forward(1, &value).unwrap();
        batch.hold()
    };
    // Held: the upstream sees nothing released; reads go on past it.
    assert_eq!(upstream.released(), 0);
    upstream.write_bytes(2, b"next").unwrap();
    let got: Vec<u64> = forwarder
        .read()
        .unwrap()
        .iter()
        .map(|f| f.unwrap().seq())
        .collect();
    assert_eq!(got, [2], "the held frame is not read again");
    assert_eq!(upstream.released(), 0, "nothing past a hold is released");

    // Downstream reads the value in the upstream's arena, in place.
    {
        let batch = reader.read().unwrap();
        let frame = batch.iter().next().unwrap().unwrap();
        assert_eq!((frame.kind(), frame.seq()), (FrameKind::Data, 1));
        assert!(
            frame.bytes() == &big[..],
            "every byte, through the reference"
        );
    }
    assert_eq!(downstream.released(), downstream.written());

    // The hold ends: everything read is released.
    forwarder.unhold(hold);
    assert!(upstream.released() > after_big);
    assert_eq!(upstream.released(), upstream.written());
}

/// Holds cap what `release_to` releases, in any order of holds; each
/// released hold lets the release go as far as asked, up to the next one.
#[test]
fn holds_keep_frames_from_the_oldest_held_on() {
    let _w = watchdog(30);
    let name = unique("holds");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    for k in 0..4 {
        writer.write_bytes(k, &[k as u8; 100]).unwrap();
    }
    let end = reader.published_past(0, Duration::ZERO).unwrap().unwrap();
    let mut starts = vec![0];
    let mut at = 0;
    while at < end {
        at = reader.frame_at(at).unwrap().1;
        starts.push(at);
    }
    let late = reader.hold_at(starts[2]);
    let early = reader.hold_at(starts[1]);
    reader.release_to(end);
    assert_eq!(writer.released(), starts[1]);
    reader.unhold(early);
    assert_eq!(writer.released(), starts[2]);
    reader.unhold(late);
    assert_eq!(writer.released(), end);
}

/// A forwarding frame whose payload names a file that is not one of our
/// arenas is a bad frame, not a mapping of that file.
#[test]
fn a_forwarding_frame_naming_another_file_is_refused() {
    let value = super::forward::ArenaValue {
        at: super::arena::LargeRef { pos: 0, len: 4 },
        path: std::path::Path::new("/etc/passwd").into(),
    };
    assert!(super::forward::from_payload(&value.to_payload()).is_none());
    let ours = super::forward::ArenaValue {
        path: std::path::Path::new("/dev/shm/clusterduck-r-x.large").into(),
        ..value
    };
    let payload = ours.to_payload();
    let (at, path) = super::forward::from_payload(&payload).unwrap();
    assert_eq!(
        (at.len, path),
        (4, std::path::Path::new("/dev/shm/clusterduck-r-x.large"))
    );
    let name = unique("refused");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let bad = super::forward::ArenaValue {
        path: std::path::Path::new("/etc/passwd").into(),
        ..ours
    };
    writer.write_forward(1, &bad).unwrap();
    let batch = reader.read().unwrap();
    assert!(matches!(
        batch.iter().next().unwrap(),
        Err(FrameError::LargeValue { len: 0, pos: 0 })
    ));
}

/// A kept arena outlives its writer, stamped as its owner's: not stale while
/// the owner lives (another run's clean-up leaves it), stale once it is gone,
/// and removed with the run's segments.
#[test]
fn a_kept_arena_is_its_owners_until_the_run_removes_it() {
    let _w = watchdog(30);
    let kept = |owner: crate::ProcessStamp| {
        let name = unique("kept");
        let mut writer = RingWriter::create(&name, 4096).unwrap();
        writer.keep_arena_name(owner);
        writer.set_large_bytes(1 << 16).unwrap();
        drop(writer);
        assert!(
            !name.path().exists(),
            "the ring's name goes with its writer"
        );
        assert!(name.arena_path().exists(), "the arena's stays");
        name
    };
    let alive = kept(crate::ProcessStamp::current());
    let gone = kept(crate::ProcessStamp {
        start_time: crate::ProcessStamp::current().start_time + 1,
        ..crate::ProcessStamp::current()
    });
    let removed = remove_stale_segments().unwrap();
    let paths: Vec<_> = removed.iter().map(|s| s.path.clone()).collect();
    assert!(paths.contains(&gone.arena_path()), "{paths:?}");
    assert!(!paths.contains(&alive.arena_path()), "{paths:?}");
    assert!(alive.arena_path().exists());
    assert_eq!(remove_run_segments(alive.run_id()).unwrap(), 1);
    assert!(!alive.arena_path().exists());
}

#[test]
fn a_gauge_sees_what_its_reader_holds_and_a_blocked_writer_while_it_waits() {
    let _w = watchdog(30);
    let name = unique("gauge");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut slow = RingReader::attach(&name).unwrap();
    let mut fast = RingReader::attach(&name).unwrap();
    let (slow_gauge, fast_gauge) = (RingGauge::of(&slow).unwrap(), RingGauge::of(&fast).unwrap());
    assert_eq!(
        slow_gauge.fill(),
        RingFill {
            bytes: 0,
            capacity: 4096
        }
    );
    for seq in 0..10 {
        writer.write_bytes(seq, &[7; 100]).unwrap(); // 128 bytes a frame
    }
    assert_eq!(slow_gauge.fill().bytes, 1280);
    drop(collect(&mut fast).unwrap());
    assert_eq!(
        fast_gauge.fill().bytes,
        0,
        "a reader's release empties its gauge"
    );
    assert_eq!(slow_gauge.fill().bytes, 1280, "and not another's");
    assert!((slow_gauge.fill().share() - 1280.0 / 4096.0).abs() < 1e-9);

    // Fill the ring: the writer blocks on the slow reader, and its waits
    // say so while it waits.
    let blocked = writer.blocked_waits();
    let done = std::thread::spawn(move || {
        for seq in 10..40 {
            writer.write_bytes(seq, &[7; 100]).unwrap();
        }
        writer
    });
    while !blocked.waiting() {
        drop(collect(&mut fast).unwrap());
        std::thread::yield_now();
    }
    assert_eq!(
        slow_gauge.fill().bytes,
        4096,
        "the slow reader holds the whole ring"
    );
    let before = blocked.total();
    std::thread::sleep(Duration::from_millis(20));
    assert!(blocked.total() >= before + Duration::from_millis(20));
    while !done.is_finished() {
        drop(collect(&mut slow).unwrap());
        drop(fast.try_read().unwrap());
    }
    let writer = done.join().unwrap();
    assert!(!blocked.waiting());
    assert_eq!(writer.blocked(), blocked.total());
    drop(slow);
    assert_eq!(
        slow_gauge.fill().bytes,
        0,
        "a detached reader holds nothing"
    );
}

#[test]
fn a_transaction_is_seen_whole_at_its_commit_or_in_parts_when_it_outgrows_the_ring() {
    let _w = watchdog(30);
    let name = unique("tx");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    writer.begin();
    for seq in 0..3 {
        writer.write_bytes(seq, &[seq as u8; 100]).unwrap();
    }
    writer.flush();
    assert!(
        reader.try_read().unwrap().is_none(),
        "nothing before the commit"
    );
    assert!(writer.commit(&[3, 7]));
    let got: Vec<u64> = collect(&mut reader).unwrap().iter().map(|f| f.1).collect();
    assert_eq!(got, [0, 1, 2]);

    // 60 frames of 128 bytes: more than the ring; published as it goes.
    let reading = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        loop {
            match collect(&mut reader) {
                Ok(frames) => seqs.extend(
                    frames
                        .iter()
                        .filter(|f| f.0 == FrameKind::Data)
                        .map(|f| f.1),
                ),
                Err(ReadError::Ended) => return seqs,
                Err(e) => panic!("{e}"),
            }
        }
    });
    writer.begin();
    for seq in 3..63 {
        writer.write_bytes(seq, &[seq as u8; 100]).unwrap();
    }
    assert!(!writer.commit(&[63]), "published in parts");
    writer.finish(63).unwrap();
    assert_eq!(reading.join().unwrap(), (3..63).collect::<Vec<_>>());
}

#[test]
fn a_transaction_without_readers_stays_within_a_ring_of_what_was_shown() {
    let _w = watchdog(30);
    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Value {
        bytes: Vec<u8>,
    }
    let name = unique("tx_alone");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let value = |seq: u64| Value {
        bytes: vec![seq as u8; 100],
    };
    writer.begin();
    // Twice the ring, serialised in place, nobody reading: never over its
    // own unpublished frames.
    for seq in 0..64 {
        writer.write_value(seq, &value(seq)).unwrap();
    }
    // A reader that comes now starts at what was shown, and must find
    // whole frames there, each the value it was.
    let mut reader = RingReader::attach(&name).unwrap();
    let checking = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        loop {
            let batch = match reader.read() {
                Ok(batch) => batch,
                Err(ReadError::Ended) => return seqs,
                Err(e) => panic!("{e}"),
            };
            for f in &batch {
                let f = f.unwrap();
                if f.kind() == FrameKind::Data {
                    let v = f.access::<Value>().expect("a whole value");
                    assert!(
                        v.bytes.iter().all(|b| *b == f.seq() as u8),
                        "value {}",
                        f.seq()
                    );
                    seqs.push(f.seq());
                }
            }
        }
    });
    for seq in 64..128 {
        writer.write_value(seq, &value(seq)).unwrap();
    }
    assert!(!writer.commit(&[128]), "published in parts");
    writer.finish(128).unwrap();
    let seqs = checking.join().unwrap();
    assert!(!seqs.is_empty() && seqs.last() == Some(&127), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn finishing_or_draining_in_a_transaction_that_filled_the_ring_does_not_wait_for_ever() {
    let _w = watchdog(30);
    let name = unique("tx_full");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let reading = std::thread::spawn(move || {
        let mut n = 0;
        loop {
            match collect(&mut reader) {
                Ok(frames) => n += frames.iter().filter(|f| f.0 == FrameKind::Data).count(),
                Err(ReadError::Ended) => return n,
                Err(e) => panic!("{e}"),
            }
        }
    });
    writer.begin();
    // 32 frames of 128 bytes: the whole ring, unpublished.
    for seq in 0..32 {
        writer.write_bytes(seq, &[1; 112]).unwrap();
    }
    writer.wait_drained();
    writer.begin();
    for seq in 32..64 {
        writer.write_bytes(seq, &[1; 112]).unwrap();
    }
    writer.finish(64).unwrap();
    assert_eq!(reading.join().unwrap(), 64);
}

#[test]
fn a_slot_is_taken_over_only_from_a_writer_that_keeps_dead_readers() {
    let name = unique("not_kept");
    let _writer = RingWriter::create(&name, 4096).unwrap();
    let dead = crate::process::ProcessStamp {
        pid: u32::MAX - 1,
        start_time: 1,
    };
    assert!(matches!(
        RingReader::take_over(&name, dead),
        Err(AttachError::NotKept)
    ));
}

#[test]
fn a_record_made_now_and_then_and_the_values_after_it_say_where_the_writer_stood() {
    let _w = watchdog(30);
    let name = unique("light");
    let mut writer = RingWriter::create(&name, 4096).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    // No record yet: every value from the ring's start.
    for seq in [10, 20] {
        writer.write_bytes(seq, &[1; 40]).unwrap();
    }
    assert_eq!(writer.progress_and_after().unwrap(), (None, vec![10, 20]));
    // A record outside a transaction: at the end published; the values
    // after it are published as they are written, and listed.
    assert!(writer.commit(&[2, 20]));
    for seq in [5, 40] {
        writer.write_bytes(seq, &[2; 40]).unwrap();
    }
    assert_eq!(
        writer.progress_and_after().unwrap(),
        (Some(vec![2, 20]), vec![5, 40])
    );
    let got: Vec<u64> = collect(&mut reader).unwrap().iter().map(|f| f.1).collect();
    assert_eq!(got, [10, 20, 5, 40], "published as written, not held");
    // More than half a ring after the record: its values may be
    // overwritten, which is said.
    for seq in 0..20 {
        writer.write_bytes(100 + seq, &[3; 100]).unwrap();
        let _ = collect(&mut reader).unwrap();
    }
    assert!(matches!(
        writer.progress_and_after(),
        Err(ReopenError::RecordTooOld { .. })
    ));
}
