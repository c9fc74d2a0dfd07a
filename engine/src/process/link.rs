//! Edges between nodes on different hosts: the producer serves its ring to
//! each remote consumer over an authenticated TCP connection, and the
//! consumer lands the frames in a local mirror ring that it reads like any
//! other (`clusterduck_transport::tcp` moves the bytes, with credit-based
//! flow control, over io_uring or epoll).
//!
//! A link outlives its connections: when one breaks (a reset, a cut cable
//! noticed by [`LIVENESS`], a process of either end killed and restarted),
//! the consumer dials its producer again (at the address the master last
//! said, [`Addresses`]) and the stream resumes where the mirror's whole
//! frames end: the producer keeps every frame not landed. A link down
//! longer than the run's grace fails the run, named by both ends.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{
    io_backend, peek_resume, watch_liveness, LinkError, RingReceiver, RingSender,
};
use clusterduck_transport::{
    AttachError, ProcessStamp, ReopenError, RingName, RingReader, RingWriter,
};

use crate::graph::NodeId;
use crate::metrics::Link;
use crate::report::Failure;
use crate::run::recovery::take_over_or_attach;
use crate::run::RunControl;

/// How long a handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// How long a link's peer may stay silent (sent bytes unacknowledged, or
/// keep-alive probes unanswered) before its connection counts as broken
/// and its ends reconnect.
pub(crate) const LIVENESS: Duration = Duration::from_secs(1);

/// The first and the longest pause between two attempts to reconnect.
const REDIAL_FIRST: Duration = Duration::from_millis(20);
const REDIAL_MAX: Duration = Duration::from_millis(500);

/// The name of the mirror ring of `producer`'s output at `consumer`.
pub(crate) fn mirror_name(
    run_id: &str,
    producer: &str,
    consumer: &str,
) -> Result<RingName, String> {
    RingName::new(run_id, &format!("{producer}@{consumer}")).map_err(|e| e.to_string())
}

/// A node and its host, as a link's failure names them.
#[derive(Clone, Debug)]
pub(crate) struct End {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) host: String,
}

/// What every link of a node shares: the run's secret, its grace, and
/// where each node's data port is now (the master says when a restarted
/// node's moved).
#[derive(Clone)]
pub(crate) struct Links {
    pub(crate) secret: Secret,
    pub(crate) grace: Duration,
    pub(crate) addresses: Arc<Addresses>,
}

impl Links {
    /// The failure of the link `producer` → `consumer`, down past the grace
    /// (said in the node's log too: the master may be out of reach).
    fn down(&self, producer: &End, consumer: &End, cause: String) -> Failure {
        let failure = Failure::LinkDown {
            producer: producer.name.clone(),
            producer_host: producer.host.clone(),
            consumer: consumer.name.clone(),
            consumer_host: consumer.host.clone(),
            grace_ms: self.grace.as_millis() as u64,
            cause,
        };
        tracing::error!("{failure}");
        failure
    }
}

/// Every node's data port address, by declaration index, as the master
/// last said.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    data: Mutex<Vec<String>>,
    moved: Condvar,
}

impl Addresses {
    pub(crate) fn new(data: Vec<String>) -> Arc<Self> {
        Arc::new(Addresses {
            data: Mutex::new(data),
            moved: Condvar::new(),
        })
    }

    /// Node `id`'s address.
    pub(crate) fn of(&self, id: NodeId) -> String {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        data.get(id).cloned().unwrap_or_default()
    }

    /// Node `id` (restarted) serves at `address` now.
    pub(crate) fn set(&self, id: NodeId, address: String) {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = data.get_mut(id) {
            *slot = address;
            self.moved.notify_all();
        }
    }

    /// Waits up to `timeout` for node `id`'s address to differ from `old`.
    fn wait_moved(&self, id: NodeId, old: &str, timeout: Duration) {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .moved
            .wait_timeout_while(data, timeout, |d| d.get(id).is_some_and(|a| a == old));
    }
}

/// The threads streaming a node's ring to its remote consumers.
#[derive(Clone, Default)]
pub(crate) struct Senders(Arc<Mutex<Vec<thread::JoinHandle<()>>>>);

impl Senders {
    /// Waits until `expected` links were started and each has sent the whole
    /// stream: a node process must not exit while its frames are on the way.
    pub(crate) fn finish(&self, expected: usize) {
        loop {
            let handles: Vec<_> = {
                let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
                if list.len() < expected {
                    None
                } else {
                    Some(list.drain(..).collect())
                }
            }
            .unwrap_or_default();
            if handles.is_empty() {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            for handle in handles {
                let _ = handle.join();
            }
            return;
        }
    }
}

/// What a node serves to its remote consumers.
pub(crate) struct Served {
    pub(crate) producer: End,
    pub(crate) ring: RingName,
    pub(crate) consumers: Vec<End>,
    /// A restarted node's: the processes that ran it before, the newest
    /// first (their links' reader slots in its ring are its now).
    pub(crate) predecessors: Vec<ProcessStamp>,
}

/// The connection a consumer's sender is using, and where its next one
/// goes.
struct Handoff {
    current: TcpStream,
    next: Sender<TcpStream>,
}

/// Serves node `served.producer`'s ring to its remote consumers: each
/// connection must authenticate as one of them; the first one of a
/// consumer gets a reader of the ring (a dead predecessor's, for a
/// restarted node), streamed by a thread of its own (in the returned
/// [`Senders`]) over that connection and the consumer's later ones (a new
/// connection ends the one before). Anything else is closed and logged,
/// and the node goes on.
pub(crate) fn serve(
    listener: TcpListener,
    links: Links,
    served: Served,
    control: Arc<RunControl>,
) -> Senders {
    let senders = Senders::default();
    let started = senders.clone();
    let node = served.producer.name.clone();
    thread::Builder::new()
        .name(format!("{node}-links"))
        .spawn(move || {
            // A restarted node's links go on from its predecessor's slots,
            // which hold what their consumers had not landed.
            let mut kept = taken_over(&served.ring, &served.predecessors);
            let mut handoffs: HashMap<NodeId, Handoff> = HashMap::new();
            for stream in listener.incoming() {
                let Some((stream, consumer)) = accept(stream, &links.secret, &served) else {
                    continue;
                };
                if let Some(handoff) = handoffs.get_mut(&consumer.id) {
                    // The consumer reconnected: the connection its sender
                    // may still wait on is dead to it.
                    if let Ok(clone) = stream.try_clone() {
                        let old = std::mem::replace(&mut handoff.current, clone);
                        let _ = old.shutdown(std::net::Shutdown::Both);
                    }
                    let _ = handoff.next.send(stream);
                    continue;
                }
                let reader = match kept_or_attached(&mut kept, &served.ring, &stream) {
                    Ok(reader) => reader,
                    Err(e) => {
                        control.fail(Failure::Node {
                            node: node.clone(),
                            seq: None,
                            message: format!("serving consumer {}: {e}", consumer.name),
                        });
                        return;
                    }
                };
                let (next, later) = crossbeam_channel::unbounded();
                let Ok(current) = stream.try_clone() else {
                    continue;
                };
                handoffs.insert(consumer.id, Handoff { current, next });
                let link = SenderLink {
                    links: links.clone(),
                    producer: served.producer.clone(),
                    consumer,
                    control: control.clone(),
                };
                let handle = thread::Builder::new()
                    .name(format!("{node}->{}", link.consumer.name))
                    .spawn(move || link.run(RingSender::new(reader), stream, &later));
                match handle {
                    Ok(handle) => started
                        .0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(handle),
                    Err(e) => control.fail(Failure::Node {
                        node: node.clone(),
                        seq: None,
                        message: format!("starting a link: {e}"),
                    }),
                }
            }
        })
        .expect("spawn the data port thread");
    senders
}

/// Authenticates a connection to the data port as a remote consumer of the
/// node; anything else is logged and closed.
fn accept(
    stream: std::io::Result<TcpStream>,
    secret: &Secret,
    served: &Served,
) -> Option<(TcpStream, End)> {
    let node = &served.producer.name;
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!("node {node}: data port: {e}");
            return None;
        }
    };
    let peer = peer_of(&stream);
    // The handshake's messages go out at once (the link itself turns
    // Nagle off for its frames and credit).
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE));
    let id = match auth::accept(&mut stream, secret) {
        Ok(id) => id as NodeId,
        Err(e) => {
            tracing::warn!("node {node}: data connection from {peer} refused: {e}");
            return None;
        }
    };
    let Some(consumer) = served.consumers.iter().find(|c| c.id == id) else {
        tracing::warn!(
            "node {node}: data connection from {peer} refused: node #{id} is not a remote consumer of this node"
        );
        return None;
    };
    let _ = stream.set_read_timeout(None);
    watch_liveness(&stream, LIVENESS);
    Some((stream, consumer.clone()))
}

/// The reader slots a restarted node's predecessors held in its own ring:
/// those of its links, still where their consumers had landed.
fn taken_over(ring: &RingName, predecessors: &[ProcessStamp]) -> Vec<RingReader> {
    let mut kept = Vec::new();
    for p in predecessors {
        while let Ok(reader) = RingReader::take_over(ring, *p) {
            kept.push(reader);
        }
    }
    kept
}

/// The reader for a consumer's first connection to this process: of the
/// kept slots, the furthest one at or below where the consumer's mirror
/// ends (it says so first; each consumer's own slot is there, and taking
/// the furthest leaves every other consumer one at or below its own end);
/// a new one if none was kept.
fn kept_or_attached(
    kept: &mut Vec<RingReader>,
    ring: &RingName,
    stream: &TcpStream,
) -> Result<RingReader, String> {
    if kept.is_empty() {
        return RingReader::attach(ring).map_err(|e| e.to_string());
    }
    let at = peek_resume(stream).map_err(|e| e.to_string())?;
    let best = kept
        .iter()
        .enumerate()
        .filter(|(_, r)| r.cursor() <= at)
        .max_by_key(|(_, r)| r.cursor())
        .map(|(i, _)| i)
        .ok_or_else(|| format!("no kept place at or below {at}, where its mirror ends"))?;
    Ok(kept.swap_remove(best))
}

/// The producer's end of one link, over its connections.
struct SenderLink {
    links: Links,
    producer: End,
    consumer: End,
    control: Arc<RunControl>,
}

impl SenderLink {
    /// Streams over `stream`, then over each next connection of the
    /// consumer, until the End frame is in a socket. A connection lost
    /// waits for the next up to the grace; then the run fails, naming both
    /// ends. Anything else this node tells, as a failure of its own: the
    /// consumer sees only a closed connection.
    fn run(self, mut sender: RingSender, mut stream: TcpStream, next: &Receiver<TcpStream>) {
        let (producer, consumer) = (&self.producer.name, &self.consumer.name);
        loop {
            // `send` logs its own failure.
            let e = match sender.send(stream, io_backend()) {
                Ok(_) => return,
                Err(e) => e,
            };
            if !e.is_disconnect() {
                self.control.fail(Failure::Node {
                    node: producer.clone(),
                    seq: match e {
                        LinkError::Forwarded { seq, .. } => Some(seq),
                        _ => None,
                    },
                    message: format!("the link to {consumer}: {e}"),
                });
                return;
            }
            if self.control.stop.is_aborted() {
                return;
            }
            tracing::warn!(
                "node {producer}: the link to {consumer} broke ({e}); waiting up to {:?} for it to reconnect",
                self.links.grace
            );
            match next.recv_timeout(self.links.grace) {
                Ok(s) => {
                    tracing::info!("node {producer}: the link to {consumer} reconnected");
                    stream = s;
                }
                // Its End frame went out: the consumer, had it not landed
                // it, would have come back within the grace.
                Err(_) if matches!(e, LinkError::EndUnconfirmed { .. }) => {
                    tracing::warn!(
                        "node {producer}: the link to {consumer} ended with its End frame sent and not confirmed; no new connection came"
                    );
                    return;
                }
                Err(_) => {
                    let failure = self
                        .links
                        .down(&self.producer, &self.consumer, e.to_string());
                    self.control.fail(failure);
                    return;
                }
            }
        }
    }
}

/// Where a consumer links to a remote upstream, and how.
pub(crate) struct Upstream {
    pub(crate) end: End,
    /// The local mirror ring, its size and its space for large values (as
    /// the producer's).
    pub(crate) mirror: RingName,
    pub(crate) ring_bytes: usize,
    pub(crate) large_bytes: usize,
    /// Whose the mirror's space for large values is (it is kept until the
    /// run's segments are removed).
    pub(crate) owner: ProcessStamp,
}

/// The consumer's side of its links: whether it may be restarted (its
/// mirrors are then kept for a successor), and, for a restarted one, the
/// processes that ran it before, the newest first (their mirrors are its
/// now).
pub(crate) struct Consumer<'a> {
    pub(crate) end: End,
    pub(crate) restartable: bool,
    pub(crate) predecessors: &'a [ProcessStamp],
}

/// Connects `me` to its remote upstream `up` and returns the reader of the
/// local mirror ring its frames land in, counting what arrives in `link`.
/// A restarted consumer reopens its predecessor's mirror and reader slot,
/// and the link resumes where the mirror's frames end (a mirror whose
/// stream had ended needs no link). The link reconnects whenever its
/// connection is lost, up to the grace each time; past it, or when the
/// producer breaks the protocol, it fails the node, naming the upstream.
pub(crate) fn connect(
    up: Upstream,
    me: &Consumer<'_>,
    links: &Links,
    link: &Arc<Link>,
    control: Arc<RunControl>,
) -> Result<RingReader, String> {
    let restarted = !me.predecessors.is_empty();
    let writer = match restarted.then(|| RingWriter::reopen(&up.mirror)) {
        Some(Ok(writer)) => Some(writer),
        // Its predecessor had the whole stream.
        Some(Err(ReopenError::Ended)) => None,
        // Its predecessor died before it made the mirror.
        Some(Err(ReopenError::Attach(AttachError::Io { source, .. })))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Some(new_mirror(&up, me.restartable)?)
        }
        Some(Err(e)) => return Err(format!("reopening the mirror: {e}")),
        None => Some(new_mirror(&up, me.restartable)?),
    };
    let reader = if restarted {
        take_over_or_attach(&up.mirror, me.predecessors)
    } else {
        RingReader::attach(&up.mirror)
    }
    .map_err(|e| e.to_string())?;
    let Some(writer) = writer else {
        link.ended(true);
        return Ok(reader);
    };
    let receiver = RingReceiver::new(writer, link.meter());
    let link = ReceiverLink {
        links: links.clone(),
        producer: up.end,
        consumer: me.end.clone(),
        link: link.clone(),
        control,
    };
    // The first connection is made here: a producer that cannot be reached
    // within the grace is a failure to set up.
    let stream = link.dial().map_err(|(_, e)| e)?;
    thread::Builder::new()
        .name(format!("link<-{}", link.producer.name))
        .spawn(move || link.run(receiver, stream))
        .map_err(|e| e.to_string())?;
    Ok(reader)
}

/// A new mirror ring for `up`'s frames, kept for a successor if the
/// consumer may be restarted.
fn new_mirror(up: &Upstream, restartable: bool) -> Result<RingWriter, String> {
    let mut writer =
        RingWriter::create_owned(&up.mirror, up.ring_bytes, up.owner).map_err(|e| e.to_string())?;
    // Removed with the run's segments: values forwarded from it may be read
    // after the link ended.
    writer.keep_arena_name(up.owner);
    writer
        .set_large_bytes(up.large_bytes)
        .map_err(|e| format!("its space for large values: {e}"))?;
    if restartable {
        writer.expect_restarts();
        writer.keep_dead_readers();
    }
    Ok(writer)
}

/// The consumer's end of one link, over its connections.
struct ReceiverLink {
    links: Links,
    producer: End,
    consumer: End,
    link: Arc<Link>,
    control: Arc<RunControl>,
}

impl ReceiverLink {
    /// Lands the stream over `stream`, then over each new connection after
    /// one is lost, until the End frame.
    fn run(self, mut receiver: RingReceiver, mut stream: TcpStream) {
        loop {
            // `receive` logs its own failure; the mirror's reader waits.
            let e = match receiver.receive(stream, io_backend()) {
                Ok(_) => return self.link.ended(true),
                Err(e) => e,
            };
            self.link.ended(false);
            if !e.is_disconnect() {
                self.control.fail(Failure::Node {
                    node: self.consumer.name.clone(),
                    seq: None,
                    message: format!("the link from {}: {e}", self.producer.name),
                });
                return;
            }
            tracing::warn!(
                "node {}: the link from {} broke ({e}); reconnecting, for up to {:?}",
                self.consumer.name,
                self.producer.name,
                self.links.grace
            );
            match self.dial() {
                Ok(s) => {
                    tracing::info!(
                        "node {}: the link from {} reconnected",
                        self.consumer.name,
                        self.producer.name
                    );
                    self.link.up();
                    stream = s;
                }
                Err((true, _)) => return,
                Err((false, last)) => {
                    let cause = format!("{e}; then {last}");
                    let failure = self.links.down(&self.producer, &self.consumer, cause);
                    self.control.fail(failure);
                    return;
                }
            }
        }
    }

    /// Connects to the producer and authenticates, trying again (at its
    /// newest address) until the grace is over; `Err((aborted, last
    /// error))` if it could not.
    fn dial(&self) -> Result<TcpStream, (bool, String)> {
        let deadline = Instant::now() + self.links.grace;
        let mut pause = REDIAL_FIRST;
        loop {
            let address = self.links.addresses.of(self.producer.id);
            let last = match dial_once(&address, &self.links.secret, self.consumer.id) {
                Ok(stream) => return Ok(stream),
                Err(e) => e,
            };
            if self.control.stop.is_aborted() {
                return Err((true, last));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err((false, last));
            }
            // A restarted producer's new address wakes this at once.
            self.links
                .addresses
                .wait_moved(self.producer.id, &address, pause.min(left));
            pause = (pause * 2).min(REDIAL_MAX);
        }
    }
}

/// One attempt to connect to `address` as node `me` and authenticate.
fn dial_once(address: &str, secret: &Secret, me: NodeId) -> Result<TcpStream, String> {
    let addr: SocketAddr = address
        .parse()
        .map_err(|e| format!("the data address {address:?}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, HANDSHAKE)
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE));
    auth::connect(&mut stream, secret, me as u32)
        .map_err(|e| format!("authenticating with {address}: {e}"))?;
    let _ = stream.set_read_timeout(None);
    watch_liveness(&stream, LIVENESS);
    Ok(stream)
}

fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_else(|_| "an unknown peer".into())
}
