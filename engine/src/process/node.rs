//! The node side of process mode: what a re-executed binary does instead of
//! launching, once its topology is built.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clusterduck_transport::{ProcessStamp, ReopenError, RingName, RingWriter};
use rkyv::util::AlignedVec;

use super::control_tx::ControlTx;
use super::link;
use super::protocol::{decode, encode, NodeConfig, ToMaster, ToNode};
use crate::body::{Body, NodeImpl};
use crate::fingerprint::Fingerprint;
use crate::graph::{Graph, NodeId, NodeKind};
use crate::metrics::Link;
use crate::metrics::{Probe, SAMPLE_EVERY};
use crate::replica::{Replicated, Scale};
use crate::report::{NodeReport, PolicyEvent};
use crate::run::inlet::Inlet;
use crate::run::journal::{DoneAbove, Journal};
use crate::run::recovery::{after_sends, take_over_or_attach, Checkpoint, MAX_INPUTS};
use crate::run::ring_output::{RingOutput, Tap};
use crate::run::spout::SpoutTask;
use crate::run::worker::{WorkerParts, WorkerTask};
use crate::run::{EmitGate, EventSink, RunControl};
use crate::stop::StopSignal;
use clusterduck_transport::auth::{self, Secret};
use clusterduck_transport::wire::read_message;

/// The environment variable that makes a process a node: it holds the
/// node's name. Set by the master, never by hand.
pub const NODE_ENV: &str = "CLUSTERDUCK_NODE";

/// How often a node tells the master it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a node waits for its consumers to attach to its ring.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of the node this process must run, if it is a node process.
pub fn node_role() -> Option<String> {
    std::env::var(NODE_ENV).ok()
}

/// Sends policy events to the master.
struct ControlEvents(ControlTx);

impl EventSink for ControlEvents {
    fn event(&mut self, event: PolicyEvent) {
        let _ = self.0.send(&ToMaster::Event {
            notice: event.notice,
            upstreams: event.upstreams.to_vec(),
        });
    }
}

/// Why a node process could not run its node. Its exit code tells the kind
/// ([`exit_code`](Self::exit_code)).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    /// The configuration on stdin could not be read.
    #[error("reading the configuration on stdin: {0}")]
    Config(String),
    /// The master named a node this program's topology does not have.
    #[error("the master asked for node #{0}, which this topology lacks")]
    NoSuchNode(NodeId),
    /// The master could not be reached, or refused us.
    #[error("reaching the master at {address}: {detail}")]
    Master {
        /// Its control address.
        address: String,
        /// What failed.
        detail: String,
    },
    /// This process's topology differs from the master's (told to the
    /// master, which fails the run saying so).
    #[error("topology fingerprint mismatch: {0}")]
    Mismatch(String),
    /// Setting up the node failed: its ring, data port or inputs.
    #[error("{0}")]
    Setup(String),
    /// The master aborted the run before it started.
    #[error("the run was aborted before it started")]
    Aborted,
    /// The report could not be sent.
    #[error("sending the report to the master: {0}")]
    Report(#[source] io::Error),
}

impl NodeError {
    /// The process's exit code for this error: 1 for a run that ended
    /// without this node's work (aborted, report lost), 2 for a node that
    /// could not start, 3 for a topology that differs from the master's.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::Aborted | Self::Report(_) => 1,
            Self::Mismatch(_) => 3,
            Self::Config(_) | Self::NoSuchNode(_) | Self::Master { .. } | Self::Setup(_) => 2,
        }
    }
}

/// How a node that ran ended.
enum NodeEnd {
    /// Its work is done; it sent its report.
    Finished,
    /// It failed; it sent its failure and report.
    Failed,
}

/// Runs this process's node of `graph`, then exits the process: 0 when the
/// node finished, 1 when it failed, otherwise [`NodeError::exit_code`].
/// Never returns.
pub fn node_main(graph: Graph, impls: Vec<NodeImpl>) -> ! {
    crate::log::init();
    let code = match run(graph, impls) {
        Ok(NodeEnd::Finished) => 0,
        Ok(NodeEnd::Failed) => 1,
        Err(e) => {
            tracing::error!("this node process cannot run: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code)
}

/// Whose this node's kept segments are (see `RingWriter::keep_arena_name`):
/// the process that started it and removes the run's segments at its end,
/// the agent or the master; this process if that one is unknown.
fn segment_owner(config: &NodeConfig) -> ProcessStamp {
    config
        .die_with
        .and_then(ProcessStamp::of)
        .unwrap_or_else(ProcessStamp::current)
}

fn read_config() -> Result<NodeConfig, NodeError> {
    let mut bytes = Vec::new();
    io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(&bytes);
    decode::<NodeConfig>(&aligned).map_err(|e| NodeError::Config(e.to_string()))
}

/// Connects to the master and starts the heartbeat: the master hears from
/// this node from now on, whatever it does next.
fn connect(config: &NodeConfig) -> Result<(TcpStream, ControlTx), NodeError> {
    let fail = |detail: String| NodeError::Master {
        address: config.control.clone(),
        detail,
    };
    let mut stream = TcpStream::connect(&config.control).map_err(|e| fail(e.to_string()))?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    auth::connect(&mut stream, &Secret::from_bytes(config.secret), config.node)
        .map_err(|e| fail(format!("authenticating: {e}")))?;
    stream.set_read_timeout(None).ok();
    let tx = stream
        .try_clone()
        .and_then(ControlTx::new)
        .map_err(|e| fail(e.to_string()))?;
    tx.heartbeat(HEARTBEAT, ToMaster::Heartbeat)
        .map_err(|e| fail(format!("starting the heartbeat: {e}")))?;
    Ok((stream, tx))
}

fn setup(e: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(e.to_string())
}

fn run(graph: Graph, mut impls: Vec<NodeImpl>) -> Result<NodeEnd, NodeError> {
    let config = read_config()?;
    if let Some(parent) = config.die_with {
        clusterduck_transport::process::die_with_parent(parent).map_err(|e| {
            setup(format!(
                "asking to die with the process that started this one: {e}"
            ))
        })?;
    }
    let (mut stream, tx) = connect(&config)?;
    // The topology as declared is what every process must agree on; the
    // replicas come from the master.
    let ours = Fingerprint::of(&graph);
    if ours.hash() != config.fingerprint {
        let reason = format!(
            "topology fingerprint mismatch: the master has {:016x} [{}], this process has {ours}",
            config.fingerprint, config.description
        );
        tracing::error!("node #{} refused to start: {reason}", config.node);
        let _ = tx.send(&ToMaster::Refused {
            reason: reason.clone(),
        });
        let _ = tx.sync();
        return Err(NodeError::Mismatch(reason));
    }
    // The run's instances, as the master expanded them: a node process is
    // one replica of a node.
    let scale = Scale {
        replicas: config.replicas.iter().map(|r| *r as usize).collect(),
        key_groups: config.key_groups as usize,
    };
    if scale.replicas.len() != graph.nodes().len() {
        return Err(NodeError::Mismatch(format!(
            "the master runs {} nodes, this process's topology has {}",
            scale.replicas.len(),
            graph.nodes().len()
        )));
    }
    let run = Replicated::new(graph, &scale).map_err(|e| NodeError::Mismatch(e.to_string()))?;
    let graph = run.instances();
    let id = config.node as NodeId;
    if id >= graph.nodes().len() {
        return Err(NodeError::NoSuchNode(id));
    }
    let replica = run.replica(id);
    let name = graph.node(id).name.clone();
    crate::log::set_process(&name);

    let consumers = graph.downstreams(id).len();
    let remote_consumers: Vec<NodeId> = graph
        .downstreams(id)
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| config.hosts[*c] != config.hosts[id])
        .collect();
    // A node with links decides their I/O backend (and says which) as it
    // sets up, before it is ready: not at its first link, which a run that
    // fails early may never reach.
    let linked = !remote_consumers.is_empty()
        || graph
            .upstreams(id)
            .iter()
            .any(|u| config.hosts[*u] != config.hosts[id]);
    if linked {
        clusterduck_transport::tcp::io_backend();
    }
    let data_port = if remote_consumers.is_empty() {
        None
    } else {
        Some(
            std::net::TcpListener::bind((config.bind.as_str(), 0))
                .map_err(|e| setup(format!("opening the data port on {}: {e}", config.bind)))?,
        )
    };
    let data = match &data_port {
        Some(l) => l.local_addr().map_err(setup)?.to_string(),
        None => String::new(),
    };
    if std::env::var_os(super::VERBOSE_ENV).is_some() {
        let namespace = std::fs::read_link("/proc/self/ns/net")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "unknown".into());
        tracing::info!(
            "node {name} of run {} on {} (network namespace {namespace}): control at {}",
            config.run_id,
            config.hosts[id],
            config.control
        );
        if !data.is_empty() {
            tracing::info!("node {name}: data port {data}");
        }
    }
    let ring_name = RingName::new(&config.run_id, &name).map_err(setup)?;
    let opened = config
        .restartable
        .then(|| StepRings::open(&config, &ring_name, consumers, graph.upstreams(id).len()))
        .transpose()?;
    // A successor of a process that finished its work: it says so once
    // started.
    let finished = matches!(opened, Some(None));
    let mut steps = opened.flatten();
    let ring = if let Some(ring) = steps.as_mut().and_then(|s| s.ring.take()) {
        Some(ring)
    } else if consumers > 0 && !finished {
        // Spouts and workers alike make the fenced wake-up check every
        // `RingWriter::CHECK_EVERY` frames; a worker also makes it before it
        // waits for input. A consumer that fell asleep at the very instant a
        // frame was written, its flag not yet visible to the writer, gets
        // the frame at the writer's next write (which sees the flag) or
        // check, or when its sleep slice ends (20 ms) if the node pauses in
        // its user's code meanwhile. A check at every frame would close that
        // window at the price of a fence per frame, which stalls the writer
        // on the stores still in flight: 12-14 % of the join's throughput
        // here, 7-14 % of the pipe's (docs/PERFORMANCE.md).
        Some(output_ring(&config, &ring_name)?)
    } else {
        None
    };
    tx.send(&ToMaster::Ready {
        pid: std::process::id(),
        data,
    })
    .map_err(|e| setup(format!("telling the master: {e}")))?;

    // Wait for the go; then the control connection carries drain and abort.
    let mut buf = AlignedVec::new();
    let addresses = loop {
        read_message(&mut stream, &mut buf)
            .map_err(|e| setup(format!("waiting for start: {e}")))?;
        match decode::<ToNode>(&buf)
            .map_err(|e| setup(format!("bad message from the master: {e}")))?
        {
            ToNode::Start { data } if data.len() == graph.nodes().len() => break data,
            ToNode::Start { .. } => return Err(setup("a start message for another topology")),
            // The start brings every address as it is then.
            ToNode::Drain | ToNode::Moved { .. } => {}
            ToNode::Abort => return Err(NodeError::Aborted),
        }
    };
    let stop = StopSignal::new();
    // Where each node serves its ring: a restarted node's moves, and the
    // master says so.
    let addresses = link::Addresses::new(addresses);
    listen(stream, stop.clone(), tx.clone(), addresses.clone());
    let control = RunControl::new(stop);
    if finished {
        tracing::info!("restarted after its stream ended: nothing left to do");
        let report = NodeReport {
            name: name.clone(),
            kind: graph.node(id).kind.label().to_owned(),
            ..NodeReport::default()
        };
        return finish(&tx, &control, report);
    }
    if config.restartable {
        // Its function failed: the process dies where it stands, as if
        // killed, so that its successor finds its rings as they were
        // (nothing released, nothing dropped, no step committed).
        let tx = tx.clone();
        let (name, kind) = (name.clone(), graph.node(id).kind.label().to_owned());
        control.die_on_fault(move |failure| {
            let report = NodeReport {
                name: name.clone(),
                kind: kind.clone(),
                error: Some(failure.to_string()),
                ..NodeReport::default()
            };
            let _ = tx.send(&ToMaster::Failed {
                failure: failure.clone(),
                report: Box::new(report),
                passing: true,
            });
            let _ = tx.sync();
            std::process::exit(1);
        });
    }
    let links = link::Links {
        secret: Secret::from_bytes(config.secret),
        grace: Duration::from_millis(config.link_grace_ms),
        addresses,
    };
    let end_of = |n: NodeId| link::End {
        id: n,
        name: graph.node(n).name.clone(),
        host: config.hosts[n].clone(),
    };
    let predecessors: Vec<ProcessStamp> = steps
        .as_ref()
        .map(|s| s.predecessors.clone())
        .unwrap_or_default();
    let remote_count = remote_consumers.len();
    let mut senders = None;
    if let (Some(listener), Some(ring)) = (data_port, &ring) {
        let served = link::Served {
            producer: end_of(id),
            ring: ring.name().clone(),
            consumers: remote_consumers.iter().map(|c| end_of(*c)).collect(),
            predecessors: predecessors.clone(),
        };
        senders = Some(link::serve(
            listener,
            links.clone(),
            served,
            control.clone(),
        ));
    }

    let spec = graph.node(id).clone();
    // Values from upstreams are decoded with their codecs: this process
    // built the whole topology, so it has every codec.
    let codecs: Vec<_> = impls.iter().map(|i| i.codec.clone()).collect();
    let node = impls.swap_remove(replica.node);
    let probe = Probe::new(config.metrics);
    if config.metrics {
        send_metrics(&tx, probe.clone());
    }
    let gate = EmitGate::new(control.stop.clone(), matches!(spec.kind, NodeKind::Spout));
    // A link carries bytes, not references into this host's memory.
    // A node that may be restarted copies its large values: a value
    // forwarded by reference holds its upstream's frame until consumers are
    // done with it, which a successor could not know (it releases its
    // inputs up to where its predecessor was done).
    let by_reference = remote_count == 0 && !config.restartable;
    let replica_of = (replica.index, replica.count);
    let mut output = RingOutput::new(
        ring,
        node.codec,
        gate,
        replica_of,
        by_reference,
        probe.clone(),
    );
    output.tap = config.watched.then(|| Box::new(tx.clone()) as Box<dyn Tap>);
    let before = match steps {
        Some(steps) => {
            let spout = matches!(spec.kind, NodeKind::Spout);
            output.in_steps(spout, (steps.before.clone(), steps.published), steps.log);
            steps.before
        }
        None => None,
    };
    // A restarted node's consumers are attached already (or being
    // restarted themselves).
    let consumers = if predecessors.is_empty() {
        consumers
    } else {
        0
    };
    let report = match node.body {
        Body::Spout(body) => {
            wait_for_consumers(&output, consumers)?;
            SpoutTask {
                name: name.clone(),
                body,
                output,
                control: control.clone(),
            }
            .run()
        }
        Body::Worker(body) => {
            // Attach to the upstreams first, then wait for our own readers:
            // in a DAG the leaves attach first and nobody waits in a circle.
            let mut inputs = Vec::new();
            let me = link::Consumer {
                end: end_of(id),
                restartable: config.restartable,
                predecessors: &predecessors,
            };
            for up in graph.upstreams(id) {
                let up_name = &graph.node(*up).name;
                let (mut reader, link) = if config.hosts[*up] == config.hosts[id] {
                    let ring_name = RingName::new(&config.run_id, up_name).map_err(setup)?;
                    let reader = take_over_or_attach(&ring_name, &predecessors)
                        .map_err(|e| setup(format!("attaching to the ring of {up_name}: {e}")))?;
                    (reader, None)
                } else {
                    let upstream = link::Upstream {
                        end: end_of(*up),
                        mirror: link::mirror_name(&config.run_id, up_name, &name).map_err(setup)?,
                        ring_bytes: config.ring_bytes as usize,
                        large_bytes: config.large_bytes as usize,
                        owner: segment_owner(&config),
                    };
                    let link = Arc::new(Link::default());
                    let reader = link::connect(upstream, &me, &links, &link, control.clone())
                        .map_err(|e| setup(format!("linking to {up_name}: {e}")))?;
                    (reader, Some(link))
                };
                probe.input(up_name, &reader, link);
                // The node's loop reads the ring itself, with the upstream's
                // codec: this process built the whole topology, so it has
                // every codec.
                reader.set_spin(Duration::from_nanos(config.spin_ns));
                inputs.push(Inlet::ring(
                    reader,
                    codecs[run.replica(*up).node].clone(),
                    config.batch as usize,
                ));
            }
            wait_for_consumers(&output, consumers)?;
            // A bundled worker in no order that may be restarted writes
            // down the frames it is done with out of order.
            let journal = (config.restartable && spec.kind.bundles_in_no_order())
                .then(|| open_journal(&config, &name, inputs.len(), (&before, &predecessors)))
                .transpose()?;
            let parts = WorkerParts {
                body,
                inputs,
                keys: node.keys,
                output,
                control: control.clone(),
                events: Some(Box::new(ControlEvents(tx.clone()))),
                probe,
                before,
                journal,
            };
            WorkerTask::new(&run, id, parts).run()
        }
    };
    if let Some(senders) = senders {
        if !control.has_failed() {
            senders.finish(remote_count);
        }
    }
    finish(&tx, &control, report)
}

/// The journal of node `name`, a bundled worker in no order with `inputs`
/// inputs (see `run::journal`): a new one, or, restarted (its `before`
/// checkpoint, its predecessors), its predecessors' read back.
fn open_journal(
    config: &NodeConfig,
    name: &str,
    inputs: usize,
    (before, predecessors): (&Option<Checkpoint>, &[ProcessStamp]),
) -> Result<(Journal, DoneAbove), NodeError> {
    let journal = RingName::new(&config.run_id, &format!("{name}#journal")).map_err(setup)?;
    let capacity = Journal::capacity(inputs, config.ring_bytes as usize);
    // A predecessor that took no step wrote none (a checkpoint at the start
    // of every input).
    let first = Checkpoint {
        inputs: vec![Default::default(); inputs],
        ..Checkpoint::default()
    };
    let restart =
        (!predecessors.is_empty()).then(|| (before.as_ref().unwrap_or(&first), predecessors));
    Journal::open(&journal, (inputs, capacity, segment_owner(config)), restart).map_err(setup)
}

/// The ring `name` of a node with consumers, with its space for large
/// values.
fn output_ring(config: &NodeConfig, name: &RingName) -> Result<RingWriter, NodeError> {
    // Its owner is the agent or master, which removes the run's segments
    // at its end: values forwarded from it may be read after this node
    // ended, and a restarted node reopens it.
    let owner = segment_owner(config);
    let mut ring =
        RingWriter::create_owned(name, config.ring_bytes as usize, owner).map_err(setup)?;
    ring.keep_arena_name(owner);
    ring.set_large_bytes(config.large_bytes as usize)
        .map_err(|e| setup(format!("its space for large values: {e}")))?;
    if config.keep_readers {
        // A consumer that may be restarted finds its slot where it was.
        ring.keep_dead_readers();
    }
    Ok(ring)
}

/// A restartable node's rings, as it starts: its own (reopened if it is a
/// restart; created otherwise, or a log of its steps if it has no
/// consumers), and its predecessor's last checkpoint.
struct StepRings {
    /// Its output ring, for a node with consumers.
    ring: Option<RingWriter>,
    /// The ring that records the steps of a node without consumers.
    log: Option<RingWriter>,
    before: Option<Checkpoint>,
    /// A restarted worker's: outputs its predecessor published after its
    /// last step (see `RingOutput::in_steps`).
    published: u64,
    /// A restarted node's: the processes that ran it before, the newest
    /// first.
    predecessors: Vec<ProcessStamp>,
}

/// The capacity of the ring that records the steps of a node without
/// consumers: only progress records are written in it.
const LOG_BYTES: usize = 64 * 1024;

impl StepRings {
    /// The rings of node `name` (ring `ring_name`) of a restartable run, for
    /// `consumers` consumers and `inputs` inputs; `None` for a successor
    /// whose predecessor had finished its work.
    fn open(
        config: &NodeConfig,
        ring_name: &RingName,
        consumers: usize,
        inputs: usize,
    ) -> Result<Option<Self>, NodeError> {
        if inputs > MAX_INPUTS {
            return Err(setup(format!(
                "a node that may be restarted reads at most {MAX_INPUTS} rings; this one reads {inputs}"
            )));
        }
        let predecessors: Vec<ProcessStamp> = config
            .predecessors
            .iter()
            .map(|p| ProcessStamp {
                pid: p.pid,
                start_time: p.start_time,
            })
            .collect();
        let mut ring = if !predecessors.is_empty() {
            match RingWriter::reopen(ring_name) {
                Ok(ring) => ring,
                // Its predecessor ended its stream, and died before its
                // report was heard: nothing is left to do.
                Err(ReopenError::Ended) => return Ok(None),
                Err(e) => return Err(setup(format!("taking over its ring: {e}"))),
            }
        } else if consumers > 0 {
            output_ring(config, ring_name)?
        } else {
            RingWriter::create_owned(ring_name, LOG_BYTES, segment_owner(config)).map_err(setup)?
        };
        ring.expect_restarts();
        ring.keep_dead_readers();
        // Its last record, and the values published after it: a spout's
        // sends go out as made, its progress recorded now and then; a
        // worker's step that outgrew the ring was published in parts.
        let (record, after) = ring
            .progress_and_after()
            .map_err(|e| setup(format!("reading its ring's last step: {e}")))?;
        let record = match record {
            None => None,
            Some(words) => Some(Checkpoint::decode(&words, inputs).ok_or_else(|| {
                setup(format!(
                    "its ring's last step ({} words) is not a checkpoint of a node with {inputs} inputs",
                    words.len()
                ))
            })?),
        };
        let (before, published) = if inputs == 0 {
            (after_sends(record, &after), 0)
        } else {
            (record, after.len() as u64)
        };
        if let Some(p) = predecessors.first() {
            match &before {
                Some(c) => tracing::info!(
                    "restarted after process {}: going on after its last step ({} values emitted; next id {}; inputs done/read to {:?})",
                    p.pid, c.emitted, c.seq, c.inputs
                ),
                None => tracing::info!("restarted after process {}, which took no step", p.pid),
            }
        }
        let (ring, log) = if consumers > 0 {
            (Some(ring), None)
        } else {
            (None, Some(ring))
        };
        Ok(Some(Self {
            ring,
            log,
            before,
            published,
            predecessors,
        }))
    }
}

fn wait_for_consumers(output: &RingOutput, consumers: usize) -> Result<(), NodeError> {
    if let Some(ring) = &output.ring {
        ring.wait_for_readers(consumers, ATTACH_TIMEOUT)
            .map_err(|e| setup(format!("waiting for the consumers to attach: {e}")))?;
    }
    Ok(())
}

/// The peak resident memory of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// A figure in KiB of this process's `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Sends the node's figures to the master now and every
/// [`SAMPLE_EVERY`], until the connection closes.
fn send_metrics(tx: &ControlTx, probe: Arc<Probe>) {
    let sample = move || {
        let mut sample = probe.sample();
        sample.rss_kib = status_kib("VmRSS:");
        sample.peak_rss_kib = peak_rss_kib();
        encode(&ToMaster::Metrics {
            sample: Box::new(sample),
        })
    };
    if let Err(e) = tx.repeat("clusterduck-metrics", SAMPLE_EVERY, sample) {
        tracing::warn!("no metrics from this node: {e}");
    }
}

/// Sends the node's last word: its report, and its failure if it failed.
fn finish(
    tx: &ControlTx,
    control: &RunControl,
    mut report: NodeReport,
) -> Result<NodeEnd, NodeError> {
    report.peak_rss_kib = peak_rss_kib();
    let (message, end) = match control.take_failure() {
        Some(failure) => (
            ToMaster::Failed {
                failure,
                report: Box::new(report),
                passing: false,
            },
            NodeEnd::Failed,
        ),
        None => (
            ToMaster::Done {
                report: Box::new(report),
            },
            NodeEnd::Finished,
        ),
    };
    tx.send(&message)
        .and_then(|()| tx.sync())
        .map_err(NodeError::Report)?;
    Ok(end)
}

/// Obeys the master: drain, abort, and notes where a restarted node serves
/// its ring now. A master that goes away ends this process at once: no
/// orphans.
fn listen(mut stream: TcpStream, stop: StopSignal, tx: ControlTx, addresses: Arc<link::Addresses>) {
    thread::Builder::new()
        .name("clusterduck-control".into())
        .spawn(move || {
            let mut buf = AlignedVec::new();
            loop {
                if read_message(&mut stream, &mut buf).is_err() {
                    tracing::warn!("the master went away; exiting");
                    std::process::exit(1);
                }
                match decode::<ToNode>(&buf) {
                    Ok(ToNode::Drain) => {
                        stop.drain();
                        // The master tells spouts once every worker heard.
                        let _ = tx.send(&ToMaster::Draining);
                    }
                    Ok(ToNode::Abort) => std::process::exit(1),
                    Ok(ToNode::Start { .. }) => {}
                    Ok(ToNode::Moved { node, data }) => addresses.set(node as NodeId, data),
                    Err(e) => {
                        tracing::error!("bad message from the master: {e}; exiting");
                        std::process::exit(1);
                    }
                }
            }
        })
        .expect("spawn the control thread");
}
