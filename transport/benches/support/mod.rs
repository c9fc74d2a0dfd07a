//! What both benches share: reader processes (the bench binary re-executed
//! with a role), the bare busy-spinning SPSC ring baseline, and the runs
//! themselves, timed with the writer's CPU time beside the wall clock.

#![allow(dead_code, unreachable_pub)]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clusterduck_transport::{FrameKind, ReadError, RingName, RingReader, RingWriter};

const ROLE: &str = "CLUSTERDUCK_BENCH_ROLE";

/// Capacity of the rings under test.
pub const RING_BYTES: usize = 1 << 20;

/// If this process is a bench child, runs its role and returns true.
pub fn run_child_role() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    let arg = std::env::var("CD_BENCH_ARG").unwrap();
    match role.as_str() {
        "ring-reader" => ring_reader(&arg),
        "bare-reader" => bare_reader(&arg),
        other => panic!("unknown bench role {other}"),
    }
    true
}

fn spawn(role: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("CD_BENCH_ARG", arg)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the payload as a consumer would: one load per cache line.
#[inline]
fn touch(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    for line in bytes.chunks(64) {
        acc ^= u64::from(line[0]);
    }
    acc
}

fn ring_reader(arg: &str) {
    let (run, node) = arg.split_once('/').unwrap();
    let name = RingName::new(run, node).unwrap();
    let mut reader = RingReader::attach(&name).unwrap();
    let mut acc = 0u64;
    loop {
        match reader.read() {
            Ok(batch) => {
                for f in &batch {
                    let f = f.unwrap();
                    if f.kind() == FrameKind::Data {
                        acc ^= touch(f.bytes());
                    }
                }
            }
            Err(ReadError::Ended) => break,
            Err(e) => panic!("bench reader: {e}"),
        }
    }
    std::hint::black_box(acc);
}

/// A Clusterduck ring with reader processes attached.
pub struct RingRig {
    pub writer: RingWriter,
    children: Vec<Child>,
    payload: Vec<u8>,
    seq: u64,
}

impl RingRig {
    pub fn new(readers: usize, payload_len: usize) -> RingRig {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = format!(
            "bench{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let name = RingName::new(&run, "out").unwrap();
        let writer = RingWriter::create(&name, RING_BYTES).unwrap();
        let children = (0..readers)
            .map(|_| spawn("ring-reader", &format!("{run}/out")))
            .collect();
        writer
            .wait_for_readers(readers, Duration::from_secs(30))
            .unwrap();
        RingRig {
            writer,
            children,
            payload: (0..payload_len).map(|i| i as u8).collect(),
            seq: 0,
        }
    }

    /// Writes `n` frames and waits until every reader has read them.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.writer.write_bytes(self.seq, &self.payload).unwrap();
            self.seq += 1;
        }
        self.writer.wait_drained();
    }

    pub fn finish(self) {
        self.writer.finish(self.seq).unwrap();
        for mut c in self.children {
            assert!(c.wait().unwrap().success());
        }
    }
}

/// Slots of the bare ring: 64 bytes, a sequence word then 56 payload bytes.
const BARE_SLOTS: usize = 1 << 14;
const SLOT: usize = 64;

/// The baseline: a fixed-slot SPSC ring of 64-byte slots in shared memory,
/// both sides busy-spinning, no waiting strategy, no variable sizes. A slot
/// holds message `i` when its word is `i + 1`, and is free when it is 0.
pub struct BareRing {
    base: *mut u8,
    len: usize,
    path: std::path::PathBuf,
    next: u64,
}

impl BareRing {
    fn map(path: &std::path::Path, create: bool) -> BareRing {
        let len = BARE_SLOTS * SLOT;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .unwrap();
        if create {
            file.set_len(len as u64).unwrap();
        }
        // SAFETY: a fresh shared mapping of the whole file, which has `len`
        // bytes; nothing else lives at the address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        BareRing {
            base: base.cast(),
            len,
            path: path.to_owned(),
            next: 0,
        }
    }

    fn word(&self, i: u64) -> &AtomicU64 {
        let slot = (i as usize) % BARE_SLOTS;
        // SAFETY: the slot lies inside the mapping, 64-byte aligned, and is
        // only ever accessed atomically at this word.
        unsafe { &*self.base.add(slot * SLOT).cast::<AtomicU64>() }
    }

    fn payload(&self, i: u64) -> *mut u8 {
        let slot = (i as usize) % BARE_SLOTS;
        // SAFETY: inside the mapping.
        unsafe { self.base.add(slot * SLOT + 8) }
    }

    pub fn send(&mut self, msg: &[u8; 56]) {
        let i = self.next;
        while self.word(i).load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        // SAFETY: the slot is free (word 0, Acquire pairs with the reader's
        // Release): the reader is done with it until we set the word.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.payload(i), 56) };
        self.word(i).store(i + 1, Ordering::Release);
        self.next += 1;
    }

    fn recv(&mut self) -> [u8; 56] {
        let i = self.next;
        while self.word(i).load(Ordering::Acquire) != i + 1 {
            std::hint::spin_loop();
        }
        let mut out = [0u8; 56];
        // SAFETY: the slot holds message i (Acquire pairs with the writer's
        // Release); the writer does not touch it until we free it.
        unsafe { std::ptr::copy_nonoverlapping(self.payload(i), out.as_mut_ptr(), 56) };
        self.word(i).store(0, Ordering::Release);
        self.next += 1;
        out
    }

    /// Waits until the reader has taken every message sent.
    pub fn drain(&self) {
        if self.next > 0 {
            while self.word(self.next - 1).load(Ordering::Acquire) != 0 {
                std::hint::spin_loop();
            }
        }
    }
}

impl Drop for BareRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our mapping; no reference into it outlives
        // self.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn bare_reader(path: &str) {
    let mut ring = BareRing::map(std::path::Path::new(path), false);
    let mut acc = 0u64;
    loop {
        let msg = ring.recv();
        if msg[0] == 0xFF {
            break;
        }
        acc ^= u64::from(msg[1]);
    }
    std::hint::black_box(acc);
}

/// The bare ring with its reader process.
pub struct BareRig {
    pub ring: BareRing,
    child: Child,
}

impl BareRig {
    pub fn new() -> BareRig {
        let path = std::path::PathBuf::from(format!(
            "/dev/shm/clusterduck-benchbare{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let ring = BareRing::map(&path, true);
        let child = spawn("bare-reader", path.to_str().unwrap());
        BareRig { ring, child }
    }

    pub fn run(&mut self, n: u64) {
        let msg = [1u8; 56];
        for _ in 0..n {
            self.ring.send(&msg);
        }
        self.ring.drain();
    }

    pub fn finish(mut self) {
        self.ring.send(&[0xFF; 56]);
        assert!(self.child.wait().unwrap().success());
        let _ = std::fs::remove_file(&self.ring.path);
    }
}

/// crossbeam-channel between threads: 1 receiver, or `readers` receivers
/// each on its own channel, sent a shared `Arc` (no copy per receiver).
pub struct ChannelRig {
    senders: Vec<crossbeam_channel::Sender<Msg>>,
    done: crossbeam_channel::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    payload_len: usize,
}

/// A message on the baseline channel.
pub enum Msg {
    Small([u8; 64]),
    Bytes(std::sync::Arc<[u8]>),
    Drained,
    End,
}

impl ChannelRig {
    pub fn new(readers: usize, payload_len: usize) -> ChannelRig {
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..readers {
            // Bounded like the ring: about as many messages as fit in it.
            let cap = (RING_BYTES / (payload_len + 16)).max(16);
            let (tx, rx) = crossbeam_channel::bounded::<Msg>(cap);
            let done_tx = done_tx.clone();
            senders.push(tx);
            threads.push(std::thread::spawn(move || {
                let mut acc = 0u64;
                for m in rx {
                    match m {
                        Msg::Small(b) => acc ^= touch(&b),
                        Msg::Bytes(b) => acc ^= touch(&b),
                        Msg::Drained => done_tx.send(()).unwrap(),
                        Msg::End => break,
                    }
                }
                std::hint::black_box(acc);
            }));
        }
        ChannelRig {
            senders,
            done,
            threads,
            payload_len,
        }
    }

    pub fn run(&mut self, n: u64) {
        let source: Vec<u8> = (0..self.payload_len).map(|i| i as u8).collect();
        for _ in 0..n {
            if self.payload_len == 64 {
                let mut b = [0u8; 64];
                b.copy_from_slice(&source);
                for tx in &self.senders {
                    tx.send(Msg::Small(b)).unwrap();
                }
            } else {
                // The sender's one copy: bytes into a shared buffer.
                let b: std::sync::Arc<[u8]> = std::sync::Arc::from(&source[..]);
                for tx in &self.senders {
                    tx.send(Msg::Bytes(b.clone())).unwrap();
                }
            }
        }
        for tx in &self.senders {
            tx.send(Msg::Drained).unwrap();
        }
        for _ in &self.senders {
            self.done.recv().unwrap();
        }
    }

    pub fn finish(self) {
        for tx in &self.senders {
            tx.send(Msg::End).unwrap();
        }
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One timed run: wall time and the writer thread's CPU time.
pub fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (t0, c0) = (Instant::now(), thread_cpu());
    f();
    (t0.elapsed(), thread_cpu() - c0)
}
