//! Edges between nodes on different hosts: the producer serves its ring to
//! each remote consumer over an authenticated TCP connection, and the
//! consumer lands the frames in a local mirror ring that it reads like any
//! other (`clusterduck_transport::tcp` moves the bytes, with credit-based
//! flow control, over io_uring or epoll).

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::tcp::{io_backend, receive_into_ring_metered, send_ring, LinkError};
use clusterduck_transport::{ProcessStamp, RingName, RingReader, RingWriter};

use crate::graph::NodeId;
use crate::metrics::Link;
use crate::report::Failure;
use crate::run::RunControl;

/// How long a handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// The name of the mirror ring of `producer`'s output at `consumer`.
pub(crate) fn mirror_name(
    run_id: &str,
    producer: &str,
    consumer: &str,
) -> Result<RingName, String> {
    RingName::new(run_id, &format!("{producer}@{consumer}")).map_err(|e| e.to_string())
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

/// Serves node `node`'s ring to its remote consumers: each connection must
/// authenticate as one of `consumers` (once); it then gets a reader of the
/// ring, streamed by a thread of its own (in the returned [`Senders`]).
/// Anything else is closed and logged, and the node goes on.
pub(crate) fn serve(
    listener: TcpListener,
    secret: Secret,
    node: String,
    ring: RingName,
    consumers: Vec<NodeId>,
    control: Arc<RunControl>,
) -> Senders {
    let senders = Senders::default();
    let started = senders.clone();
    let served = Arc::new(Mutex::new(HashSet::new()));
    thread::Builder::new()
        .name(format!("{node}-links"))
        .spawn(move || {
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!("node {node}: data port: {e}");
                        continue;
                    }
                };
                let peer = peer_of(&stream);
                // The handshake's messages go out at once (the link itself
                // turns Nagle off for its frames and credit: `send_ring`).
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(HANDSHAKE));
                let consumer = match auth::accept(&mut stream, &secret) {
                    Ok(id) => id as NodeId,
                    Err(e) => {
                        tracing::warn!("node {node}: data connection from {peer} refused: {e}");
                        continue;
                    }
                };
                let fresh = served.lock().unwrap_or_else(|e| e.into_inner()).insert(consumer);
                if !consumers.contains(&consumer) || !fresh {
                    tracing::warn!(
                        "node {node}: data connection from {peer} refused: node #{consumer} is not a remote consumer waiting for this node"
                    );
                    continue;
                }
                let _ = stream.set_read_timeout(None);
                let reader = match RingReader::attach(&ring) {
                    Ok(reader) => reader,
                    Err(e) => {
                        control.fail(Failure::Node {
                            node: node.clone(),
                            seq: None,
                            message: format!("serving consumer #{consumer}: {e}"),
                        });
                        return;
                    }
                };
                let (name, failed) = (node.clone(), control.clone());
                let handle = thread::Builder::new()
                    .name(format!("{node}->#{consumer}"))
                    .spawn(move || {
                        // `send_ring` logs its own failure. A lost connection
                        // is the consumer's end to report (or the master,
                        // which sees a process die); anything else this node
                        // tells, as a failure of its own: the consumer sees
                        // only a closed connection.
                        match send_ring(reader, stream, io_backend()) {
                            Err(e) if !e.is_disconnect() => failed.fail(Failure::Node {
                                node: name,
                                seq: match e {
                                    LinkError::Forwarded { seq, .. } => Some(seq),
                                    _ => None,
                                },
                                message: format!("the link to node #{consumer}: {e}"),
                            }),
                            _ => {}
                        }
                    });
                match handle {
                    Ok(handle) => started.0.lock().unwrap_or_else(|e| e.into_inner()).push(handle),
                    Err(e) => control.fail(Failure::Node {
                        node: node.clone(),
                        seq: None,
                        message: format!("starting the link to consumer #{consumer}: {e}"),
                    }),
                }
            }
        })
        .expect("spawn the data port thread");
    senders
}

/// Where a consumer links to a remote upstream, and how.
pub(crate) struct Upstream<'a> {
    /// The upstream's name and data address.
    pub(crate) name: &'a str,
    pub(crate) address: &'a str,
    /// The local mirror ring, its size and its space for large values (as
    /// the producer's).
    pub(crate) mirror: RingName,
    pub(crate) ring_bytes: usize,
    pub(crate) large_bytes: usize,
    /// Whose the mirror's space for large values is (it is kept until the
    /// run's segments are removed).
    pub(crate) owner: ProcessStamp,
}

/// Connects node `me` (named `node`) to its remote upstream and returns the
/// reader of the local mirror ring its frames land in, counting what
/// arrives in `link`. A link that breaks
/// the protocol fails the node (`control`), naming the upstream; one that is
/// lost is the producer's end: the master reports why.
pub(crate) fn connect(
    up: Upstream<'_>,
    secret: &Secret,
    (me, node): (NodeId, &str),
    link: &Arc<Link>,
    control: Arc<RunControl>,
) -> Result<RingReader, String> {
    let Upstream {
        name: producer,
        address,
        mirror,
        ring_bytes,
        large_bytes,
        owner,
    } = up;
    let mut stream =
        TcpStream::connect(address).map_err(|e| format!("connecting to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE));
    auth::connect(&mut stream, secret, me as u32)
        .map_err(|e| format!("authenticating with {address}: {e}"))?;
    let _ = stream.set_read_timeout(None);
    let mut writer = RingWriter::create(&mirror, ring_bytes).map_err(|e| e.to_string())?;
    // Removed with the run's segments: values forwarded from it may be read
    // after the link ended.
    writer.keep_arena_name(owner);
    writer
        .set_large_bytes(large_bytes)
        .map_err(|e| format!("its space for large values: {e}"))?;
    let reader = RingReader::attach(&mirror).map_err(|e| e.to_string())?;
    let (node, producer, link) = (node.to_owned(), producer.to_owned(), link.clone());
    thread::Builder::new()
        .name(format!("link<-{address}"))
        .spawn(move || {
            // `receive_into_ring` logs its own failure; the mirror's reader
            // then sees its writer dropped.
            let received = receive_into_ring_metered(stream, writer, io_backend(), link.meter());
            link.ended(received.is_ok());
            match received {
                Err(e) if !e.is_disconnect() => control.fail(Failure::Node {
                    node,
                    seq: None,
                    message: format!("the link from {producer}: {e}"),
                }),
                _ => {}
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(reader)
}

fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_else(|_| "an unknown peer".into())
}
