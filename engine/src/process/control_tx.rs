//! The sending half of a control connection, shared by the threads of a
//! node or an agent. Messages queue to one writer thread, which sends all
//! that are waiting in one write: debugger records at millions a second
//! cost a system call per batch, not per record.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;
use rkyv::util::AlignedVec;

use super::protocol::{encode, ToMaster};
use crate::run::ring_output::Tap;
use crate::Seq;
use clusterduck_transport::wire::append_message;

/// Messages queued at most; a slow connection slows the senders.
const QUEUE: usize = 4096;
/// Bytes gathered into one write at most.
const BATCH: usize = 1 << 20;

/// A handle to the writer thread; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct ControlTx(Sender<Outgoing>, Arc<Counts>);

/// Messages queued, and written out of the process (into the socket: the
/// kernel delivers them even if the process dies next).
#[derive(Debug, Default)]
struct Counts {
    queued: AtomicU64,
    written: AtomicU64,
}

#[derive(Debug)]
enum Outgoing {
    Message(AlignedVec),
    /// Everything queued before is written: tell the sender.
    Sync(Sender<()>),
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "control connection closed")
}

impl ControlTx {
    /// Starts the writer thread over `stream`.
    pub(crate) fn new(mut stream: TcpStream) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Outgoing>(QUEUE);
        let counts = Arc::new(Counts::default());
        let written = counts.clone();
        thread::Builder::new()
            .name("clusterduck-control-tx".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut synced = Vec::new();
                    let mut messages = 0;
                    let mut next = Some(first);
                    while let Some(item) = next.take() {
                        match item {
                            Outgoing::Message(bytes) => {
                                messages += 1;
                                if append_message(&mut batch, &bytes).is_err() {
                                    tracing::error!("a control message is too long; dropped");
                                }
                            }
                            Outgoing::Sync(done) => synced.push(done),
                        }
                        if batch.len() < BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                    if stream.write_all(&batch).is_err() {
                        // The master is gone; whoever reads the connection
                        // sees it close and ends this process.
                        return;
                    }
                    batch.clear();
                    // Release: pairs with the Acquire load in `delivered`
                    // (only a count: the bytes are the kernel's now).
                    written.written.fetch_add(messages, Ordering::Release);
                    for done in synced {
                        let _ = done.send(());
                    }
                }
            })?;
        Ok(Self(tx, counts))
    }

    /// Queues a message.
    pub(crate) fn send<T>(&self, message: &T) -> io::Result<()>
    where
        T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rkyv::rancor::Error,
            >,
        >,
    {
        self.queue(encode(message))
    }

    /// Queues a message archived, counted.
    fn queue(&self, bytes: AlignedVec) -> io::Result<()> {
        self.1.queued.fetch_add(1, Ordering::Relaxed);
        self.0.send(Outgoing::Message(bytes)).map_err(|_| closed())
    }

    /// Waits until everything sent so far is written.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let (done, written) = crossbeam_channel::bounded(1);
        self.0.send(Outgoing::Sync(done)).map_err(|_| closed())?;
        written.recv().map_err(|_| closed())
    }

    /// Sends `message` every `every` on a thread of its own, until the
    /// connection closes: a peer is heard from from the moment it connects,
    /// whatever it is busy with.
    pub(crate) fn heartbeat<T>(&self, every: std::time::Duration, message: T) -> io::Result<()>
    where
        T: Send
            + 'static
            + for<'a> rkyv::Serialize<
                rkyv::api::high::HighSerializer<
                    AlignedVec,
                    rkyv::ser::allocator::ArenaHandle<'a>,
                    rkyv::rancor::Error,
                >,
            >,
    {
        let bytes = encode(&message);
        self.repeat("clusterduck-heartbeat", every, move || bytes.clone())
    }

    /// Sends what `make` archives now and every `every` after, on a thread
    /// named `name`, until the connection closes.
    pub(crate) fn repeat(
        &self,
        name: &str,
        every: std::time::Duration,
        mut make: impl FnMut() -> AlignedVec + Send + 'static,
    ) -> io::Result<()> {
        let tx = self.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                if tx.queue(make()).is_err() {
                    return;
                }
                thread::sleep(every);
            })
            .map(drop)
    }
}

/// A watched node's outputs go to the master, which hands them to the
/// debugger.
impl Tap for ControlTx {
    /// Whether every message queued so far (by any thread: those of this
    /// one are among them) was written.
    fn delivered(&self) -> bool {
        let queued = self.1.queued.load(Ordering::Relaxed);
        self.1.written.load(Ordering::Acquire) >= queued
    }

    fn deliver(&mut self) {
        // A master that is gone ends this process soon enough.
        let _ = self.sync();
    }

    fn watched(&mut self, number: u64, seq: Seq, bytes: &[u8]) {
        // A master that is gone ends this process soon enough.
        let _ = self.send(&ToMaster::Output {
            number,
            seq,
            bytes: bytes.to_vec(),
        });
    }
}
