//! Local mode: every node of a topology runs as a thread of the launching
//! process, on the same rings and the same node loops as a node process.
//! What stays local is only what must: the debugger is called in this
//! process, a panic is caught per thread, and there is no fingerprint,
//! control connection or process to supervise. Which nodes share a process
//! is a placement decision; this run places them all in this one.

mod debugger;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clusterduck_transport::{ProcessStamp, RingName, RingReader, RingWriter};

use self::debugger::{LocalEvents, LocalTap};
use crate::body::{Body, Codec, DebugSink, NodeImpl};
use crate::graph::{Graph, NodeId, NodeKind};
use crate::metrics::{Live, NodeState, Observer, Probe, Watchers, SAMPLE_EVERY};
use crate::replica::{KeyFn, Replicated};
use crate::report::{Failure, NodeReport, RunFailure, RunReport};
use crate::run::inlet::{Inlet, DEFAULT_BATCH};
use crate::run::ring_output::{RingOutput, Tap};
use crate::run::spout::SpoutTask;
use crate::run::worker::{WorkerParts, WorkerTask};
use crate::run::{new_run_id, panic_message, EmitGate, EventSink, RunControl};
use crate::stop::{StopSignal, ABORT_GRACE};

/// How often the run looks whether it was aborted while its nodes run.
const ABORT_POLL: Duration = Duration::from_millis(20);

/// Default bytes of a node's output ring.
pub const DEFAULT_RING_BYTES: usize = 4 << 20;

/// Default bytes of a node's space for values too large for its ring: ten
/// camera photos of 12 MiB.
pub const DEFAULT_LARGE_BYTES: usize = 128 << 20;

/// How a local run is set up.
#[derive(Debug)]
pub struct LocalRun {
    /// Bytes of each node's output ring.
    pub ring_bytes: usize,
    /// Bytes of each node's space for values too large for its ring.
    pub large_bytes: usize,
    /// Values a node takes from one upstream at a time, at most.
    pub batch: usize,
    /// How long a node polls its inputs before it sleeps.
    pub spin: Duration,
    /// The nodes whose outputs go to the debugger, by id.
    pub watched: Vec<NodeId>,
    /// Stops the run from outside.
    pub stop: StopSignal,
    /// Who watches the run while it goes.
    pub watchers: Watchers,
}

impl Default for LocalRun {
    fn default() -> Self {
        Self {
            ring_bytes: DEFAULT_RING_BYTES,
            large_bytes: DEFAULT_LARGE_BYTES,
            batch: DEFAULT_BATCH,
            spin: Duration::ZERO,
            watched: Vec::new(),
            stop: StopSignal::new(),
            watchers: Watchers::default(),
        }
    }
}

/// The rings of a local run, removed when it ends.
struct Rings {
    run_id: String,
}

impl Rings {
    /// The name of node `name`'s ring.
    fn name(&self, node: &str) -> Result<RingName, String> {
        RingName::new(&self.run_id, node).map_err(|e| e.to_string())
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        if let Err(e) = clusterduck_transport::remove_run_segments(&self.run_id) {
            tracing::warn!("removing the run's segments: {e}");
        }
    }
}

/// What runs one instance: its function, its output's codec, its key
/// functions.
struct Instance {
    body: Body,
    codec: Arc<dyn Codec>,
    keys: Vec<Option<KeyFn>>,
}

/// A run that could not start: `node`'s ring or inputs.
fn not_started(graph: &Graph, node: NodeId, message: String) -> Box<RunFailure> {
    Box::new(RunFailure {
        failure: Failure::NotStarted {
            node: graph.node(node).name.clone(),
            host: crate::process::LOCAL_HOST.to_owned(),
            message,
        },
        report: RunReport::default(),
    })
}

impl LocalRun {
    /// Runs `graph` with one function per node (in declaration order) until
    /// every spout has returned and every node has drained, or until a node
    /// fails. The debugger sink, if any, receives the watched outputs and
    /// every policy event.
    ///
    /// # Panics
    /// If `nodes` does not hold one function per node, of the node's kind.
    pub fn run(
        mut self,
        run: &Replicated,
        nodes: Vec<NodeImpl>,
        debugger: Option<Box<dyn DebugSink>>,
    ) -> Result<RunReport, Box<RunFailure>> {
        assert_eq!(
            nodes.len(),
            run.graph().nodes().len(),
            "one function per node"
        );
        let graph = run.instances();
        crate::log::init();
        // Segments of local runs that were killed (no `Drop` ran) go here,
        // as at a process-mode launch.
        crate::run::remove_stale_segments();
        let started = Instant::now();
        let control = RunControl::new(self.stop.clone());
        let (debug_tx, debug_thread) = match debugger {
            Some(sink) => {
                let (tx, handle) = debugger::spawn(sink, control.clone());
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };

        // Each instance's function: the declared one for a node's first
        // replica, another made like it for each further one.
        let count = graph.nodes().len();
        let mut instances: Vec<Instance> = Vec::with_capacity(count);
        for (node, imp) in nodes.into_iter().enumerate() {
            let replicas = run.replicas_of(node);
            if replicas > 1 && imp.again.is_none() {
                return Err(not_started(
                    graph,
                    run.of_node(node).start,
                    "its function cannot be copied for its replicas".into(),
                ));
            }
            let NodeImpl {
                body,
                codec,
                again,
                keys,
            } = imp;
            let mut body = Some(body);
            for _ in 0..replicas {
                let body = match body.take() {
                    Some(body) => body,
                    None => again.as_ref().map(|again| again()).expect("checked above"),
                };
                instances.push(Instance {
                    body,
                    codec: codec.clone(),
                    keys: keys.clone(),
                });
            }
        }

        // Every instance's ring, then every consumer's readers, before any
        // thread starts: no node waits for another to attach.
        let rings = Rings {
            run_id: new_run_id().map_err(|e| not_started(graph, 0, e.to_string()))?,
        };
        let mut writers: Vec<Option<RingWriter>> = Vec::with_capacity(count);
        for (id, spec) in graph.nodes().iter().enumerate() {
            writers.push(if graph.downstreams(id).is_empty() {
                None
            } else {
                let name = rings
                    .name(&spec.name)
                    .map_err(|e| not_started(graph, id, e))?;
                let mut writer = RingWriter::create(&name, self.ring_bytes)
                    .map_err(|e| not_started(graph, id, format!("its ring: {e}")))?;
                // Removed with the run's segments (values forwarded from it
                // may be read after its node ended).
                writer.keep_arena_name(ProcessStamp::current());
                writer.set_large_bytes(self.large_bytes).map_err(|e| {
                    not_started(graph, id, format!("its space for large values: {e}"))
                })?;
                Some(writer)
            });
        }
        let codecs: Vec<Arc<dyn Codec>> = instances.iter().map(|n| n.codec.clone()).collect();
        // Sampled only if someone watches.
        let watched = !self.watchers.0.is_empty();
        let probes: Vec<Arc<Probe>> = (0..count).map(|_| Probe::new(watched)).collect();
        let mut inputs: Vec<Vec<Inlet>> = Vec::with_capacity(count);
        for (id, probe) in probes.iter().enumerate() {
            let mut inlets = Vec::new();
            for up in graph.upstreams(id) {
                let up_name = &graph.node(*up).name;
                let mut reader = rings
                    .name(up_name)
                    .and_then(|name| RingReader::attach(&name).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        not_started(
                            graph,
                            id,
                            format!("attaching to the ring of {up_name}: {e}"),
                        )
                    })?;
                reader.set_spin(self.spin);
                probe.input(up_name, &reader, None);
                inlets.push(Inlet::ring(reader, codecs[*up].clone(), self.batch));
            }
            inputs.push(inlets);
        }

        let (done_tx, done_rx) = crossbeam_channel::unbounded::<NodeId>();
        let mut threads = Vec::with_capacity(count);
        let per_node = instances.into_iter().zip(writers).zip(inputs);
        for (id, ((node, ring), inlets)) in per_node.enumerate() {
            let spec = graph.node(id);
            let replica = run.replica(id);
            let tap = match &debug_tx {
                Some(tx) if self.watched.contains(&replica.node) => Some(Box::new(LocalTap {
                    node: replica.node,
                    name: spec.name.clone(),
                    codec: node.codec.clone(),
                    tx: tx.clone(),
                    control: control.clone(),
                })
                    as Box<dyn Tap>),
                _ => None,
            };
            let probe = probes[id].clone();
            let gate = EmitGate::new(control.stop.clone(), matches!(spec.kind, NodeKind::Spout));
            let replica_of = (replica.index, replica.count);
            let mut output =
                RingOutput::new(ring, node.codec, gate, replica_of, true, probe.clone());
            output.tap = tap;
            let name = spec.name.clone();
            let task: Box<dyn FnOnce() -> NodeReport + Send> = match (node.body, &spec.kind) {
                (Body::Spout(body), NodeKind::Spout) => {
                    let task = SpoutTask {
                        name: name.clone(),
                        body,
                        output,
                        control: control.clone(),
                    };
                    Box::new(move || task.run())
                }
                (Body::Worker(body), NodeKind::Worker | NodeKind::Bundled(_)) => {
                    let parts = WorkerParts {
                        body,
                        inputs: inlets,
                        keys: node.keys,
                        output,
                        probe,
                        control: control.clone(),
                        events: debug_tx.clone().map(|tx| {
                            Box::new(LocalEvents {
                                tx,
                                stop: control.stop.clone(),
                            }) as Box<dyn EventSink>
                        }),
                        before: None,
                        journal: None,
                    };
                    let task = WorkerTask::new(run, id, parts);
                    Box::new(move || task.run())
                }
                (body, kind) => panic!("node {name:?}: a {body:?} cannot run a {kind:?} node"),
            };
            let done = done_tx.clone();
            let node_control = control.clone();
            let thread_name = name.clone();
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // Says it ended even if the task panicked.
                    struct Ended(crossbeam_channel::Sender<NodeId>, NodeId);
                    impl Drop for Ended {
                        fn drop(&mut self) {
                            let _ = self.0.send(self.1);
                        }
                    }
                    let _ended = Ended(done, id);
                    let _log = crate::log::for_thread(&thread_name);
                    // A panic outside the node's function (its function's
                    // are caught where it is called) fails the run, as the
                    // death of a node process does: its consumers, who see
                    // its ring's writer gone, must not wait for it.
                    match catch_unwind(AssertUnwindSafe(task)) {
                        Ok(report) => report,
                        Err(panic) => {
                            let message = format!("panicked: {}", panic_message(&*panic));
                            node_control.fail(Failure::Node {
                                node: name_of_thread(),
                                seq: None,
                                message: message.clone(),
                            });
                            NodeReport {
                                name: name_of_thread(),
                                error: Some(message),
                                ..NodeReport::default()
                            }
                        }
                    }
                })
                .expect("spawn a node thread");
            threads.push((name, handle));
        }
        drop(debug_tx);
        drop(done_tx);
        let hosts = vec![crate::process::LOCAL_HOST.to_owned(); count];
        let live = Live::new(run, &hosts, started);
        let mut watching = Watching {
            observer: Observer::new(live, std::mem::take(&mut self.watchers)),
            probes,
            next: Instant::now(),
        };
        let ended = wait_for_nodes(&done_rx, &control.stop, &mut watching);

        let mut report = RunReport {
            nodes: Vec::with_capacity(count),
            elapsed: Default::default(),
            launch: None,
            drained_on_request: false,
        };
        let mut abandoned = false;
        for (id, (name, handle)) in threads.into_iter().enumerate() {
            if !ended[id] {
                // Aborted, and still in its function after the grace: a
                // thread cannot be killed, so it is left to end with the
                // process, and the run ends without it.
                abandoned = true;
                report.nodes.push(NodeReport {
                    name,
                    kind: graph.node(id).kind.label().to_owned(),
                    error: Some(format!(
                        "abandoned: still running {}s after the run was aborted",
                        ABORT_GRACE.as_secs()
                    )),
                    ..NodeReport::default()
                });
                continue;
            }
            let node_report = handle.join().unwrap_or_else(|panic| NodeReport {
                name,
                error: Some(format!("node thread panicked: {}", panic_message(&*panic))),
                ..NodeReport::default()
            });
            report.nodes.push(node_report);
        }
        // A node left behind still holds a handle to the debugger's
        // channel: its thread ends with theirs, not waited for either.
        if let Some(handle) = debug_thread.filter(|_| !abandoned) {
            let _ = handle.join();
        }
        report.elapsed = started.elapsed();
        report.drained_on_request = control.stop.drain_requested();
        // Threads left behind keep their mappings; the names go now.
        drop(rings);
        let result = match control.take_failure() {
            Some(failure) => Err(Box::new(RunFailure { failure, report })),
            None if control.stop.is_aborted() => Err(Box::new(RunFailure {
                failure: Failure::Aborted,
                report,
            })),
            None => Ok(report),
        };
        watching.observer.end(&result);
        result
    }
}

/// The name of the calling node thread: its node's.
fn name_of_thread() -> String {
    thread::current().name().unwrap_or("a node").to_owned()
}

/// A local run's watchers, and the probes they are fed from.
struct Watching {
    observer: Observer,
    probes: Vec<Arc<Probe>>,
    /// When the nodes are sampled next.
    next: Instant,
}

impl Watching {
    /// Samples the running nodes if it is time, and shows the run.
    fn tick(&mut self, ended: &[bool]) {
        if !self.observer.is_watched() {
            return;
        }
        let now = Instant::now();
        if now >= self.next {
            self.next = now + SAMPLE_EVERY;
            for (id, probe) in self.probes.iter().enumerate() {
                if !ended[id] {
                    self.observer.record(id, probe.sample());
                }
            }
        }
        self.observer.tick(now);
    }
}

/// Waits until every node thread has ended, or, once the run is aborted,
/// at most [`ABORT_GRACE`] more: a node stuck in its own function (which no
/// stop request reaches) must not keep an aborted run from ending, as a
/// node process would be killed. Meanwhile, shows the run to its watchers.
/// Returns which nodes ended (the others are left behind).
fn wait_for_nodes(
    done: &crossbeam_channel::Receiver<NodeId>,
    stop: &StopSignal,
    watching: &mut Watching,
) -> Vec<bool> {
    let count = watching.probes.len();
    let mut ended = vec![false; count];
    let mut left = count;
    let mut deadline: Option<Instant> = None;
    while left > 0 {
        watching.tick(&ended);
        if deadline.is_none() && stop.is_aborted() {
            deadline = Some(Instant::now() + ABORT_GRACE);
        }
        let timeout = match deadline {
            Some(d) if Instant::now() >= d => break,
            Some(d) => d.saturating_duration_since(Instant::now()).min(ABORT_POLL),
            None => ABORT_POLL,
        };
        match done.recv_timeout(timeout) {
            Ok(id) => {
                ended[id] = true;
                left -= 1;
                watching.observer.set_state(id, NodeState::Done, None);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    ended
}
