//! Loom model tests of the index protocol: every interleaving (up to a
//! preemption bound) of a writer and readers running the real `WriterIndex`
//! and `ReaderIndex` code over a ring of word cells. Loom's `UnsafeCell`
//! reports any data access not ordered by the protocol (a frame overwritten
//! while read, or read before it was written), and a lost wake-up shows as a
//! deadlock, since the model futex has no timeout.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p clusterduck-transport
//! --release --lib -- loom`.

use std::time::Duration;

use loom::sync::Arc;

use super::{DataWait, ReaderIndex, WriterIndex};
use crate::shm::layout::{Control, WRITER_ENDED};
use crate::sync::UnsafeCell;

/// The ring's data: one cell per position (a "word" stands for a frame's
/// bytes at that position).
struct Data {
    cells: Vec<UnsafeCell<u64>>,
}

impl Data {
    fn new(capacity: usize) -> Self {
        Data {
            cells: (0..capacity).map(|_| UnsafeCell::new(u64::MAX)).collect(),
        }
    }

    fn cell(&self, pos: u64) -> &UnsafeCell<u64> {
        &self.cells[pos as usize % self.cells.len()]
    }
}

/// The value of word `j` of frame `seq`; word 0 is the header (its length).
fn word(seq: u64, j: u64) -> u64 {
    seq * 100 + j
}

/// Frame `seq` takes `size(seq)` positions: 1 or 2, so frames wrap.
fn size(seq: u64) -> u64 {
    1 + seq % 2
}

fn write_frames(ctl: &Control, data: &Data, capacity: u64, frames: u64) -> WriterIndex {
    let mut w = WriterIndex::new(capacity);
    for seq in 0..frames {
        let need = size(seq);
        w.wait_for_space(ctl, need, |_| panic!("the model futex never times out"));
        let pos = w.written();
        for j in 0..need {
            data.cell(pos + j).with_mut(|p| {
                // SAFETY: positions below the writer's limit are written by
                // the writer alone; loom checks exactly that.
                unsafe {
                    *p = if j == 0 {
                        seq * 100 + need
                    } else {
                        word(seq, j)
                    }
                }
            });
        }
        w.publish(ctl, pos + need);
    }
    w
}

/// Reads until the writer closes; returns the sequence ids seen.
fn read_frames(ctl: &Control, data: &Data, mut r: ReaderIndex) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match r.wait_for_data(ctl, r.cursor(), Duration::from_secs(1), || {
            panic!("the model futex never times out")
        }) {
            DataWait::Ready(end) => {
                let mut pos = r.cursor();
                while pos < end {
                    // SAFETY: below write_pos, not yet released: the writer
                    // does not write there; loom checks exactly that.
                    let head = data.cell(pos).with(|p| unsafe { *p });
                    let (seq, len) = (head / 100, head % 100);
                    assert_eq!(len, size(seq), "torn header at {pos}");
                    for j in 1..len {
                        // SAFETY: as above.
                        let v = data.cell(pos + j).with(|p| unsafe { *p });
                        assert_eq!(v, word(seq, j));
                    }
                    seen.push(seq);
                    pos += len;
                }
                r.release(ctl, end);
            }
            DataWait::Closed => return seen,
            DataWait::Stopped => unreachable!(),
        }
    }
}

fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(f);
}

#[test]
fn loom_one_reader_gets_every_frame_once_through_back_pressure_and_wrap() {
    model(3, || {
        const CAP: u64 = 2;
        let ctl: Arc<Control> = Arc::new(Control::new_for_model());
        let data = Arc::new(Data::new(CAP as usize));
        let reader = ReaderIndex::attach(&ctl, 1, 0).unwrap();
        let (c, d) = (ctl.clone(), data.clone());
        let writer = loom::thread::spawn(move || {
            let mut w = write_frames(&c, &d, CAP, 3);
            w.close(&c, WRITER_ENDED);
        });
        assert_eq!(read_frames(&ctl, &data, reader), vec![0, 1, 2]);
        writer.join().unwrap();
    });
}

#[test]
fn loom_a_flush_wakes_a_reader_and_the_writer_waits_until_drained() {
    model(3, || {
        const CAP: u64 = 4;
        let ctl: Arc<Control> = Arc::new(Control::new_for_model());
        let data = Arc::new(Data::new(CAP as usize));
        let mut reader = ReaderIndex::attach(&ctl, 1, 0).unwrap();
        let (c, d) = (ctl.clone(), data.clone());
        let writer = loom::thread::spawn(move || {
            let mut w = write_frames(&c, &d, CAP, 1);
            // No close: only the flush may wake the reader.
            w.wake_readers(&c);
            w.wait_for_space(&c, CAP, |_| panic!("no timeout in the model"));
        });
        let end = match reader.wait_for_data(&ctl, reader.cursor(), Duration::from_secs(1), || None)
        {
            DataWait::Ready(end) => end,
            other => panic!("{other:?}"),
        };
        assert_eq!(end, 1);
        reader.release(&ctl, end);
        writer.join().unwrap();
    });
}

#[test]
fn loom_a_reader_attaching_while_the_writer_runs_reads_only_intact_frames() {
    model(2, || {
        const CAP: u64 = 2;
        let ctl: Arc<Control> = Arc::new(Control::new_for_model());
        let data = Arc::new(Data::new(CAP as usize));
        let (c, d) = (ctl.clone(), data.clone());
        let late = loom::thread::spawn(move || {
            let r = ReaderIndex::attach(&c, 2, 0).unwrap();
            read_frames(&c, &d, r)
        });
        let mut w = write_frames(&ctl, &data, CAP, 3);
        w.close(&ctl, WRITER_ENDED);
        // Whatever it saw is a suffix of the stream, in order.
        let seen = late.join().unwrap();
        let first = seen.first().copied().unwrap_or(3);
        assert_eq!(seen, (first..3).collect::<Vec<_>>());
    });
}

#[test]
fn loom_two_readers_each_get_every_frame() {
    model(2, || {
        const CAP: u64 = 2;
        let ctl: Arc<Control> = Arc::new(Control::new_for_model());
        let data = Arc::new(Data::new(CAP as usize));
        let r1 = ReaderIndex::attach(&ctl, 1, 0).unwrap();
        let r2 = ReaderIndex::attach(&ctl, 2, 0).unwrap();
        let (c, d) = (ctl.clone(), data.clone());
        let second = loom::thread::spawn(move || read_frames(&c, &d, r2));
        let (c, d) = (ctl.clone(), data.clone());
        let writer = loom::thread::spawn(move || {
            let mut w = write_frames(&c, &d, CAP, 2);
            w.close(&c, WRITER_ENDED);
        });
        assert_eq!(read_frames(&ctl, &data, r1), vec![0, 1]);
        assert_eq!(second.join().unwrap(), vec![0, 1]);
        writer.join().unwrap();
    });
}

#[test]
fn loom_a_detaching_reader_releases_a_blocked_writer() {
    model(3, || {
        const CAP: u64 = 2;
        let ctl: Arc<Control> = Arc::new(Control::new_for_model());
        let data = Arc::new(Data::new(CAP as usize));
        let reader = ReaderIndex::attach(&ctl, 1, 0).unwrap();
        let (c, d) = (ctl.clone(), data.clone());
        // Three positions into a ring of two: blocks until the reader goes.
        let writer = loom::thread::spawn(move || {
            write_frames(&c, &d, CAP, 2);
        });
        reader.detach(&ctl);
        writer.join().unwrap();
    });
}
