//! The master's control port: it accepts the connections of nodes and host
//! agents, authenticates each (mutual HMAC on the run's secret; one
//! connection per peer), and turns what arrives on them into [`Incoming`]
//! facts on one channel, which the master's loop hands to its supervisor.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use rkyv::util::AlignedVec;

use super::exit::ExitCause;
use super::protocol::{decode, FromAgent, ToMaster};
use super::supervisor::Peer;
use crate::graph::NodeId;
use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::wire::{read_message, WireError};

/// How long a peer may take to authenticate.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// A fact for the master's loop.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A peer authenticated; the stream is the sending half.
    Connected(Peer, TcpStream),
    /// A node said something.
    Node(NodeId, Box<ToMaster>),
    /// An agent said something.
    Agent(usize, FromAgent),
    /// A connection closed: cleanly (`None`), or why not.
    Closed(Peer, Option<String>),
    /// A node that is the master's child exited.
    Exited(NodeId, ExitCause),
    /// An agent the master started could not be: its host's error. (Agents
    /// report the hosts below them with [`FromAgent::HostFailed`].)
    HostFailed(super::remote::HostError),
}

/// The accepting thread; dropping it stops accepting.
#[derive(Debug)]
pub(crate) struct ControlPort {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ControlPort {
    /// Accepts on `listener` for a run of `nodes` nodes and `agents` remote
    /// hosts.
    pub(crate) fn open(
        listener: TcpListener,
        secret: Secret,
        nodes: usize,
        agents: usize,
        tx: Sender<Incoming>,
    ) -> io::Result<Self> {
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let thread = thread::Builder::new()
            .name("clusterduck-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    // Relaxed: a flag; `Drop` wakes this thread with a
                    // connection after setting it.
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let stream = match stream {
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::warn!("control port: {e}");
                            continue;
                        }
                    };
                    let (secret, tx, seen) = (secret.clone(), tx.clone(), seen.clone());
                    let served = thread::Builder::new()
                        .name("clusterduck-conn".into())
                        .spawn(move || serve(stream, secret, nodes, agents, &seen, tx));
                    if let Err(e) = served {
                        tracing::warn!("control port: cannot serve a connection: {e}");
                    }
                }
            })?;
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// Where peers connect.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for ControlPort {
    fn drop(&mut self) {
        // Relaxed: as in `open`; the connection below wakes the thread.
        self.stop.store(true, Ordering::Relaxed);
        if TcpStream::connect(self.address).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Authenticates one connection, then forwards what arrives on it.
fn serve(
    mut stream: TcpStream,
    secret: Secret,
    nodes: usize,
    agents: usize,
    seen: &Mutex<HashSet<Peer>>,
    tx: Sender<Incoming>,
) {
    let peer_address = stream
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_owned(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE));
    let refuse = |why: String| {
        tracing::warn!("control connection from {peer_address} refused: {why}");
    };
    let peer = match auth::accept(&mut stream, &secret) {
        Ok(id) => match Peer::from_id(id, nodes, agents) {
            Some(peer) => peer,
            None => return refuse(format!("no node or host #{id}")),
        },
        Err(e) => return refuse(e.to_string()),
    };
    // One connection per peer at a time: a restarted node's process
    // connects once its predecessor's connection closed.
    if !seen.lock().unwrap_or_else(|e| e.into_inner()).insert(peer) {
        return refuse(format!("{peer:?} is connected already"));
    }
    let _ = stream.set_read_timeout(None);
    match stream.try_clone() {
        Ok(writer) => {
            if tx.send(Incoming::Connected(peer, writer)).is_err() {
                return;
            }
        }
        Err(e) => {
            seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
            let _ = tx.send(Incoming::Closed(peer, Some(e.to_string())));
            return;
        }
    }
    let mut buf = AlignedVec::new();
    let mut stream = io::BufReader::with_capacity(1 << 16, stream);
    let reason = loop {
        match read_message(&mut stream, &mut buf) {
            Ok(()) => {
                let incoming = match peer {
                    Peer::Node(node) => {
                        decode::<ToMaster>(&buf).map(|m| Incoming::Node(node, Box::new(m)))
                    }
                    Peer::Agent(host) => {
                        decode::<FromAgent>(&buf).map(|m| Incoming::Agent(host, m))
                    }
                };
                match incoming {
                    Ok(incoming) => {
                        if tx.send(incoming).is_err() {
                            return;
                        }
                    }
                    Err(e) => break Some(format!("bad message: {e}")),
                }
            }
            Err(WireError::Closed) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    // A successor connects only once the master handled this close (it is
    // started then): its connection is accepted.
    seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
    let _ = tx.send(Incoming::Closed(peer, reason));
}
