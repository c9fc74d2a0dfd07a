//! Local mode: every node of a topology runs as a thread of the launching
//! process, joined by bounded channels. The reference semantics for the
//! other modes, and the quickest way to test a topology.

mod debugger;
mod output;

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use self::debugger::DebugMsg;
use self::output::LocalOutput;
use crate::body::{Body, DebugSink, NodeImpl};
use crate::graph::{Graph, NodeId, NodeKind};
use crate::node::NodeCore;
use crate::report::{Failure, NodeReport, PolicyEvent, RunFailure, RunReport};
use crate::run::edge::{self, send, EdgeRx, EdgeTx};
use crate::run::inlet::{Inlet, DEFAULT_BATCH};
use crate::run::spout::SpoutTask;
use crate::run::worker::WorkerTask;
use crate::run::{panic_message, EmitGate, EventSink, RunControl};
use crate::stop::{StopSignal, ABORT_GRACE};

/// How often the run looks whether it was aborted while its nodes run.
const ABORT_POLL: Duration = Duration::from_millis(20);

/// Default capacity of an edge, in values.
pub const DEFAULT_EDGE_CAPACITY: usize = 1024;

/// How a local run is set up.
#[derive(Debug)]
pub struct LocalRun {
    /// Values in flight on one edge, at most.
    pub edge_capacity: usize,
    /// Values a node takes from one upstream at a time, at most.
    pub batch: usize,
    /// The nodes whose outputs go to the debugger, by id.
    pub watched: Vec<NodeId>,
    /// Stops the run from outside.
    pub stop: StopSignal,
}

impl Default for LocalRun {
    fn default() -> Self {
        Self {
            edge_capacity: DEFAULT_EDGE_CAPACITY,
            batch: DEFAULT_BATCH,
            watched: Vec::new(),
            stop: StopSignal::new(),
        }
    }
}

/// Sends a node's policy events to the debugger thread.
struct LocalEvents {
    tx: Sender<DebugMsg>,
    stop: StopSignal,
}

impl EventSink for LocalEvents {
    fn event(&mut self, event: PolicyEvent) {
        // Refused only when the run aborts: the event is moot then.
        let _ = send(&self.tx, DebugMsg::Event(event), &self.stop);
    }
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
        self,
        graph: &Graph,
        nodes: Vec<NodeImpl>,
        debugger: Option<Box<dyn DebugSink>>,
    ) -> Result<RunReport, Box<RunFailure>> {
        assert_eq!(nodes.len(), graph.nodes().len(), "one function per node");
        let started = Instant::now();
        let control = RunControl::new(self.stop.clone());
        let (debug_tx, debug_thread) = match debugger {
            Some(sink) => {
                let (tx, handle) = debugger::spawn(sink, control.clone());
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };

        // One bounded edge per (producer, consumer input).
        let count = graph.nodes().len();
        let mut inputs: Vec<Vec<Option<EdgeRx>>> = (0..count)
            .map(|id| (0..graph.upstreams(id).len()).map(|_| None).collect())
            .collect();
        let mut outputs: Vec<Vec<EdgeTx>> = vec![Vec::new(); count];
        for (producer, edges) in outputs.iter_mut().enumerate() {
            for (consumer, input) in graph.downstreams(producer) {
                let (tx, rx) = edge::edge(self.edge_capacity);
                edges.push(tx);
                inputs[*consumer][*input] = Some(rx);
            }
        }

        let (done_tx, done_rx) = crossbeam_channel::unbounded::<NodeId>();
        let mut threads = Vec::with_capacity(count);
        for (id, (node, edges)) in nodes.into_iter().zip(outputs).enumerate() {
            let spec = graph.node(id);
            let output = LocalOutput {
                node: id,
                gate: EmitGate::new(control.stop.clone(), matches!(spec.kind, NodeKind::Spout)),
                edges,
                tap: if self.watched.contains(&id) {
                    debug_tx.clone()
                } else {
                    None
                },
                codec: node.codec,
                emitted: 0,
            };
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
                    let task = WorkerTask {
                        name: name.clone(),
                        kind: spec.kind.label(),
                        spec: spec.clone(),
                        core: NodeCore::new(spec),
                        body,
                        inputs: inputs[id]
                            .iter_mut()
                            .map(|rx| {
                                Inlet::edge(rx.take().expect("every input has an edge"), self.batch)
                            })
                            .collect(),
                        upstream_names: spec.upstreams.clone().into(),
                        output,
                        control: control.clone(),
                        events: debug_tx.clone().map(|tx| {
                            Box::new(LocalEvents {
                                tx,
                                stop: control.stop.clone(),
                            }) as Box<dyn EventSink>
                        }),
                    };
                    Box::new(move || task.run())
                }
                (body, kind) => panic!("node {name:?}: a {body:?} cannot run a {kind:?} node"),
            };
            let done = done_tx.clone();
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
                    task()
                })
                .expect("spawn a node thread");
            threads.push((name, handle));
        }
        drop(debug_tx);
        drop(done_tx);
        let ended = wait_for_nodes(threads.len(), &done_rx, &control.stop);

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
        match control.take_failure() {
            Some(failure) => Err(Box::new(RunFailure { failure, report })),
            None if control.stop.is_aborted() => Err(Box::new(RunFailure {
                failure: Failure::Aborted,
                report,
            })),
            None => Ok(report),
        }
    }
}

/// Waits until every node thread has ended, or, once the run is aborted,
/// at most [`ABORT_GRACE`] more: a node stuck in its own function (which no
/// stop request reaches) must not keep an aborted run from ending, as a
/// node process would be killed.
/// Returns which of the `count` nodes ended (the others are left behind).
fn wait_for_nodes(
    count: usize,
    done: &crossbeam_channel::Receiver<NodeId>,
    stop: &StopSignal,
) -> Vec<bool> {
    let mut ended = vec![false; count];
    let mut left = count;
    let mut deadline: Option<Instant> = None;
    while left > 0 {
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
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    ended
}
