//! How a topology is launched: the mode, the debugger, the stop switch; and
//! the handle of a running topology.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use clusterduck_engine::body::{DebugSink, Payload};
use clusterduck_engine::graph::{Graph, NodeId};
use clusterduck_engine::local::LocalRun;
use clusterduck_engine::metrics::{Watch, Watchers};
use clusterduck_engine::process::{
    agent_main, agent_role, node_main, node_role, Backoff, ProcessRun, DEFAULT_DIR, DEFAULT_FANOUT,
    DEFAULT_SILENCE,
};
use clusterduck_engine::replica::{Replicated, Scale, DEFAULT_KEY_GROUPS};
use clusterduck_engine::report::{PolicyEvent, RunFailure, RunReport};
use clusterduck_engine::stop::StopSignal;
use clusterduck_engine::Seq;
use clusterduck_engine::DEFAULT_BATCH;

use clusterduck_monitor::{live_view_forced, live_view_wanted, MetricsServer, TerminalView};

use crate::ctrl_c;
use crate::error::Error;
use crate::message::{unbox, Message};
use crate::node::Node;
use crate::topology::Topology;

type OutputCallback = Box<dyn FnMut(Seq, Payload) + Send>;
type EventCallback = Box<dyn FnMut(&PolicyEvent) + Send>;

/// Where and how the nodes of a topology run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Every node is a thread of the launching process.
    Local,
    /// Every node is a process of its own, started by re-executing this
    /// program; values cross between them through shared-memory rings.
    Processes,
}

/// Default bytes of a node's output ring, in every mode.
pub const DEFAULT_RING_BYTES: usize = 4 << 20;

/// How long a link between hosts may stay down before the run fails, by
/// default (see [`Launch::link_grace`]).
pub const DEFAULT_LINK_GRACE: Duration = Duration::from_secs(10);

/// Default bytes of a node's space for values too large for its ring, in
/// every mode: ten camera photos of 12 MiB.
pub const DEFAULT_LARGE_BYTES: usize = clusterduck_engine::local::DEFAULT_LARGE_BYTES;

/// The options of a launch.
///
/// ```
/// # use clusterduck::{Launch, Topology};
/// let mut t = Topology::new();
/// let a = t.spout("A", |out| {
///     for i in 0..3u64 {
///         out.send(i, i * 10)?;
///     }
///     Ok(())
/// });
/// let report = t
///     .launch(Launch::local().debug(&a, |seq, v: u64| assert_eq!(v, seq * 10)))
///     .unwrap();
/// assert_eq!(report.node("A").unwrap().messages_out, 3);
/// ```
pub struct Launch {
    mode: Mode,
    dir: PathBuf,
    ring_bytes: usize,
    large_bytes: usize,
    ready_timeout: Duration,
    /// The heartbeat timeout, if set (else the default, or the link
    /// grace if longer).
    silence: Option<Duration>,
    fanout: usize,
    hosts: Vec<String>,
    placements: Vec<(u64, String, String)>,
    replicas: Vec<(u64, usize, String, usize)>,
    /// Restarts per node (topology, node, name, count), and for every node.
    restarts: Vec<(u64, usize, String, u32)>,
    restarts_all: u32,
    backoff: Backoff,
    link_grace: Duration,
    key_groups: usize,
    batch: usize,
    spin: Duration,
    watches: Vec<(u64, NodeId, String, OutputCallback)>,
    on_event: Option<EventCallback>,
    ctrl_c: bool,
    stop: StopSignal,
    /// The live view: on, off, or as the terminal says (`None`).
    live: Option<bool>,
    /// Where to serve `/metrics` and the status page.
    metrics: Option<String>,
}

impl fmt::Debug for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("mode", &self.mode)
            .field("dir", &self.dir)
            .field("ring_bytes", &self.ring_bytes)
            .field("batch", &self.batch)
            .field("spin", &self.spin)
            .field(
                "watched",
                &self.watches.iter().map(|w| &w.2).collect::<Vec<_>>(),
            )
            .field("ctrl_c", &self.ctrl_c)
            .finish_non_exhaustive()
    }
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    /// The default launch: [`Mode::Processes`], logs in
    /// `/tmp/clusterduck`.
    pub fn new() -> Self {
        Self {
            mode: Mode::Processes,
            dir: PathBuf::from(DEFAULT_DIR),
            ring_bytes: DEFAULT_RING_BYTES,
            large_bytes: DEFAULT_LARGE_BYTES,
            ready_timeout: Duration::from_secs(30),
            silence: None,
            fanout: DEFAULT_FANOUT,
            hosts: Vec::new(),
            placements: Vec::new(),
            replicas: Vec::new(),
            restarts: Vec::new(),
            restarts_all: 0,
            backoff: Backoff::default(),
            link_grace: DEFAULT_LINK_GRACE,
            key_groups: DEFAULT_KEY_GROUPS,
            batch: DEFAULT_BATCH,
            spin: Duration::ZERO,
            watches: Vec::new(),
            on_event: None,
            ctrl_c: true,
            stop: StopSignal::new(),
            live: None,
            metrics: None,
        }
    }

    /// Every node a thread of this process.
    pub fn local() -> Self {
        Self {
            mode: Mode::Local,
            ..Self::new()
        }
    }

    /// Every node a process of its own.
    pub fn processes() -> Self {
        Self {
            mode: Mode::Processes,
            ..Self::new()
        }
    }

    /// Every node a process of its own, on `hosts` (SSH destinations, as
    /// `ssh` resolves them; `localhost` is this machine, without SSH). Nodes
    /// not [placed](Self::place) go round-robin over the hosts in
    /// declaration order. The binary is copied once per host, under
    /// `<dir>/.bin/`, named by its content hash and reused across runs.
    pub fn hosts<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            mode: Mode::Processes,
            hosts: hosts.into_iter().map(Into::into).collect(),
            ..Self::new()
        }
    }

    /// Runs `node` on `host`, which must be one of the [hosts](Self::hosts).
    pub fn place<T>(mut self, node: &Node<T>, host: &str) -> Self {
        self.placements
            .push((node.topology, node.name().to_owned(), host.to_owned()));
        self
    }

    /// Runs replica `index` of `node` on `host` (one of the
    /// [hosts](Self::hosts)), whatever [`place`](Self::place) says of the
    /// node; its other replicas go where `place` or round-robin puts them.
    /// Index 0 of a node of one replica is the node.
    pub fn place_replica<T>(mut self, node: &Node<T>, index: usize, host: &str) -> Self {
        let name = format!("{}[{index}]", node.name());
        self.placements.push((node.topology, name, host.to_owned()));
        self
    }

    /// Runs `node` as `count` replicas (1 by default): each a process of its
    /// own in process mode (placed like nodes: round-robin over the hosts,
    /// or with [`place`](Self::place) and
    /// [`place_replica`](Self::place_replica)), a thread in local mode, with
    /// a copy of the node's function made from it as declared. Each of the
    /// node's inputs is split among the replicas by the grouping the node
    /// chose for it ([`Node::by_key`] and its siblings; shuffle by default,
    /// by id for a bundled worker). A spout's replicas all run its
    /// function, each told its index
    /// ([`Dispatcher::replica`](crate::Dispatcher::replica)).
    ///
    /// Replicas are named `name[i]` in reports, failures and policy events;
    /// their logs are `<dir>/name.i.out` and `.err`. The topology's code
    /// does not change: the count is the launch's.
    pub fn replicas<T>(mut self, node: &Node<T>, count: usize) -> Self {
        self.replicas
            .push((node.topology, node.id, node.name().to_owned(), count));
        self
    }

    /// Restarts `node`'s process up to `count` times (0 by default: the
    /// first fault fails the run), in process mode, on its host (by its
    /// host's agent on another host): a node whose process dies (a signal: `kill -9`, the OOM killer, a crash) or
    /// whose function fails (an error returned, a panic) is started again,
    /// the first time at once, then after 100 ms, 200 ms, ... up to 5 s;
    /// the run goes on meanwhile, its neighbours waiting for it. A node
    /// that used its restarts fails the run, naming its restarts. Both kinds
    /// of fault restart, as either may be passing (memory, a service the
    /// function calls); a fault that comes back every time uses the
    /// restarts up quickly, and the run fails as it would have.
    ///
    /// A restarted node goes on from its rings: no value is lost, and a
    /// node whose outputs depend only on its inputs (a worker, a bundled
    /// worker) sends its consumers every output exactly once, in the same
    /// order for all but bundled workers in no order (see
    /// `docs/RECOVERY.md`, which says what a crash loses: a function's own
    /// state in memory). Its links to other hosts reconnect (see
    /// [`link_grace`](Self::link_grace)). Replicas count for themselves:
    /// `count` restarts each.
    pub fn restarts<T>(mut self, node: &Node<T>, count: u32) -> Self {
        self.restarts
            .push((node.topology, node.id, node.name().to_owned(), count));
        self
    }

    /// Restarts every node's process up to `count` times, but those given
    /// their own count with [`restarts`](Self::restarts).
    pub fn restarts_all(mut self, count: u32) -> Self {
        self.restarts_all = count;
        self
    }

    /// The waits between a node's restarts: its first restart is at once,
    /// its second after `first`, each later one twice as long as the one
    /// before, up to `max` (100 ms and 5 s by default). `Duration::ZERO`
    /// restarts at once every time.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = Backoff { first, max };
        self
    }

    /// How long a link between two hosts may stay down before the run
    /// fails (10 s by default; at least 100 ms). A link whose connection
    /// breaks (a reset, a cable cut, which a link notices within about 2 s,
    /// a restart of the process at either end) reconnects, and its stream
    /// resumes exactly where it stopped: nothing is lost, nothing comes
    /// twice. Past the grace, the run fails naming both hosts and the nodes
    /// on the edge. Keep it above the restart back-off's longest wait, so
    /// that a restarting node's links wait for it. A host cut off from the
    /// master keeps running through the grace unless a [heartbeat
    /// timeout](Self::heartbeat_timeout) set shorter ends the run first (by
    /// default the heartbeat timeout is the grace, if that is longer than
    /// 10 s).
    pub fn link_grace(mut self, grace: Duration) -> Self {
        self.link_grace = grace.max(Duration::from_millis(100));
        self
    }

    /// How many key groups inputs grouped by key are hashed to (128 by
    /// default, as Flink's default maximum parallelism): at least the
    /// replicas of any node with such an input. Groups are dealt to
    /// replicas in contiguous ranges, so that a rescale moves whole groups.
    pub fn key_groups(mut self, groups: usize) -> Self {
        self.key_groups = groups;
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where each node's stdout and stderr go in process mode, as
    /// `<dir>/<name>.out` and `<dir>/<name>.err` (appended to, each run
    /// starting with a header line); `/tmp/clusterduck` by default, created
    /// if missing. In local mode every node shares the launching process's
    /// stdout and stderr.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = dir.as_ref().to_owned();
        self
    }

    /// Bytes of each node's output ring, in every mode (4 MiB by default):
    /// an edge holds what its producer's ring holds, and a producer whose
    /// ring is full waits. Values up to a quarter of it are written in the
    /// ring; larger ones out of line (see
    /// [`large_bytes`](Self::large_bytes)).
    pub fn ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Bytes of each node's space for values larger than a quarter of its
    /// ring, in every mode (128 MiB by default; at most 2 GiB): such a value
    /// is written once into a shared-memory segment beside the ring and
    /// reaches its consumers as any other (read in place by zero-copy
    /// workers, decoded for the others). The space is a bound: a producer
    /// whose space is full waits for its consumers to be done with earlier
    /// values (back-pressure, as for a full ring), and a single value
    /// larger than it fails the node, naming its size and this setting.
    /// Its pages take memory only as values are written. 0: no such space,
    /// and a value must fit in the ring (a little less than `ring_bytes`).
    ///
    /// Values stored out of line cannot cross hosts yet: across hosts, a
    /// value must fit in a quarter of the ring.
    pub fn large_bytes(mut self, bytes: usize) -> Self {
        self.large_bytes = bytes;
        self
    }

    /// How long node processes may take to start and report ready (30 s by
    /// default).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long a node process may say nothing before the master takes it
    /// for hung and fails the run (10 s by default, or the
    /// [link grace](Self::link_grace) if longer; at least 1 s). Nodes
    /// send a heartbeat every 500 ms whatever they do, so silence means a
    /// stopped process or a cut connection, not a slow function.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.silence = Some(timeout.max(Duration::from_secs(1)));
        self
    }

    /// How many hosts' agents one process starts itself, at most (32 by
    /// default; at least 1). The master opens one SSH connection per remote
    /// host: to its first `width` hosts itself, all at once; each of those
    /// hosts' agents then starts its share of the remaining hosts, and so
    /// on: a launch costs as many connection times as the tree is deep, not
    /// as there are hosts (or nodes). Each host below the first `width`
    /// must be able to reach the hosts below it with `ssh`, as the master
    /// does (the same names, keys and `CLUSTERDUCK_SSH_CONFIG`).
    pub fn fanout(mut self, width: usize) -> Self {
        self.fanout = width.max(1);
        self
    }

    /// How many values a node takes from one upstream at a time, at most
    /// (256 by default), from its upstream's ring (values decoded per read;
    /// the rest stay in the ring, holding the upstream back).
    ///
    /// Batching never delays a value: a value is visible to its consumers
    /// the moment it is written, and a node takes whatever is there, up to
    /// `batch`, each time it reads. A larger batch spreads the cost of a
    /// read (looking at the ring, the loop's bookkeeping) over more
    /// values; a smaller one keeps fewer decoded values in memory per
    /// upstream and lets a node with several upstreams alternate between
    /// them more finely. `clusterduck-bench --sweep batch` measures the
    /// trade-off on your machine.
    pub fn batch(mut self, values: usize) -> Self {
        self.batch = values.max(1);
        self
    }

    /// How long a node that has read everything keeps polling its inputs
    /// before it sleeps, in every mode (by default a few microseconds).
    ///
    /// A sleeping node costs nothing, but the next value must wake it: about
    /// 10 µs per edge on the reference machine, more under load. A polling
    /// node sees the next value within a microsecond and burns its core
    /// meanwhile. Spinning pays where latency matters and there are cores
    /// for it: at least one per node that spins, or inputs that come often
    /// enough that a node rarely polls for long. `clusterduck-bench
    /// --sweep spin --rate R` measures the trade-off at a given load.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Hands every output of `node` (a leaf included) to `f`, in this
    /// process, in the order the node emitted them. Callbacks of all nodes
    /// run on one thread; a slow callback slows the node it watches, it does
    /// not lose values.
    pub fn debug<T, F>(mut self, node: &Node<T>, mut f: F) -> Self
    where
        T: Message,
        F: FnMut(Seq, T) + Send + 'static,
    {
        let name = node.name().to_owned();
        let callback: OutputCallback = Box::new(move |seq, value| match unbox::<T>(value) {
            Ok(value) => f(seq, value),
            Err(e) => panic!("{e}"),
        });
        self.watches.push((node.topology, node.id, name, callback));
        self
    }

    /// Hands every policy event (duplicate, late, gap, evicted, incomplete)
    /// of every node to `f`, in this process.
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: FnMut(&PolicyEvent) + Send + 'static,
    {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Whether Ctrl-C drains the run (and a second Ctrl-C aborts it); on by
    /// default. Off, or when the process has its own SIGINT handler, use
    /// [`stop_signal`](Self::stop_signal).
    pub fn ctrl_c(mut self, on: bool) -> Self {
        self.ctrl_c = on;
        self
    }

    /// A handle that drains or aborts the run from elsewhere.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// Whether the launching process shows the live view while the run
    /// goes: a table of the nodes on stderr, refreshed every second (in/s,
    /// out/s, busy and blocked shares, the fill of the rings each reads,
    /// its function's p99, errors; the bottleneck marked). By default it
    /// shows in process mode when stderr is a terminal and stdout is not
    /// that terminal (printed values would tear the table), unless
    /// `CLUSTERDUCK_LIVE=0`; `CLUSTERDUCK_LIVE=1` shows it whatever stdout
    /// is, and in local mode (where the nodes print on this process's
    /// stdout and stderr, so it is off by default). `false` never
    /// shows it; `true` shows it whenever stderr is a terminal. It is never
    /// written to stdout.
    pub fn live(mut self, on: bool) -> Self {
        self.live = Some(on);
        self
    }

    /// Serves the run's metrics at `address` (`host:port`, port 0 for any;
    /// off by default): `/metrics` in the Prometheus text format, `/` a
    /// status page that draws the topology with each node's figures,
    /// updated every second, and the final report when the run ended,
    /// `/status.json` what the page reads. The server starts with the run
    /// (an address that cannot be bound fails the launch, and a launch that
    /// fails stops it) and, once the run ended, serves its final report
    /// until the process exits; the address is logged and given by
    /// [`Running::metrics_address`]. See `docs/OPERATIONS.md`.
    pub fn serve_metrics(mut self, address: impl Into<String>) -> Self {
        self.metrics = Some(address.into());
        self
    }
}

/// The watchers a launch asks for (`live`: [`Launch::live`]; `metrics`:
/// [`Launch::serve_metrics`]), and the metrics server's address.
fn watchers(
    live: Option<bool>,
    metrics: Option<&str>,
    mode: Mode,
) -> Result<(Watchers, Option<SocketAddr>), Error> {
    let mut watchers = Vec::new();
    let live = match live {
        // Local nodes print on this process's stdout and stderr too.
        None if mode == Mode::Local => live_view_forced(),
        None => live_view_wanted(),
        Some(on) => on && std::io::stderr().is_terminal(),
    };
    if live {
        watchers.push(Box::new(TerminalView::new()) as Box<dyn Watch>);
    }
    let mut address = None;
    if let Some(at) = metrics {
        let server = MetricsServer::start(at)?;
        clusterduck_engine::log::init();
        tracing::info!("status page and metrics at http://{}/", server.address());
        address = Some(server.address());
        watchers.push(server.watch());
    }
    Ok((Watchers(watchers), address))
}

/// The debugger of a local run: typed callbacks behind the engine's sink.
struct Debugger {
    outputs: HashMap<NodeId, OutputCallback>,
    on_event: Option<EventCallback>,
}

impl DebugSink for Debugger {
    fn output(&mut self, node: NodeId, seq: Seq, value: Payload) {
        if let Some(f) = self.outputs.get_mut(&node) {
            f(seq, value);
        }
    }

    fn event(&mut self, event: &PolicyEvent) {
        if let Some(f) = &mut self.on_event {
            f(event);
        }
    }
}

/// A topology that is running. Dropping it does not stop the run; call
/// [`wait`](Self::wait).
#[derive(Debug)]
pub struct Running {
    stop: StopSignal,
    ctrl_c: bool,
    metrics: Option<SocketAddr>,
    thread: thread::JoinHandle<Result<RunReport, Box<RunFailure>>>,
}

impl Running {
    /// Asks the run to drain: spouts are told to return, and everything they
    /// sent is still processed.
    pub fn drain(&self) {
        self.stop.drain();
    }

    /// Asks the run to stop at once.
    pub fn abort(&self) {
        self.stop.abort();
    }

    /// Where the run's metrics and status page are served, if
    /// [`Launch::serve_metrics`] asked.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Waits for the end of the run and returns its report.
    pub fn wait(self) -> Result<RunReport, Error> {
        let result = self.thread.join();
        if self.ctrl_c {
            ctrl_c::unregister(&self.stop);
        }
        match result {
            Ok(result) => result.map_err(Error::from),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Topology {
    /// Validates the topology, runs it to the end and returns its report:
    /// the run ends when every spout has returned and every node has drained,
    /// on Ctrl-C (which drains), or when a node fails.
    pub fn launch(self, launch: Launch) -> Result<RunReport, Error> {
        self.start(launch)?.wait()
    }

    /// Validates the topology and starts it; [`Running::wait`] returns its
    /// report.
    ///
    /// In process mode, a node process (this same program, re-executed by
    /// the master) does not return from here: it runs its node and exits.
    /// Node processes are tied to the thread that calls `start` (Linux's
    /// parent-death signal): call it from a thread that lives until the run
    /// ends, such as `main`.
    pub fn start(self, launch: Launch) -> Result<Running, Error> {
        if let Some(e) = self.deferred {
            return Err(e.into());
        }
        let graph = Graph::new(self.specs)?;
        let mut scale = Scale::single(graph.nodes().len());
        scale.key_groups = launch.key_groups;
        for (topology, id, name, count) in &launch.replicas {
            if *topology != self.id {
                return Err(Error::ReplicasForeignNode { node: name.clone() });
            }
            scale.replicas[*id] = *count;
        }
        if launch.mode == Mode::Processes && node_role().is_some() {
            node_main(graph, self.impls);
        }
        if launch.mode == Mode::Processes && agent_role() {
            agent_main();
        }
        let mut outputs = HashMap::new();
        for (topology, id, name, callback) in launch.watches {
            if topology != self.id {
                return Err(Error::DebugForeignNode { node: name });
            }
            if outputs.insert(id, callback).is_some() {
                return Err(Error::DebugTwice { node: name });
            }
        }
        let watched: Vec<NodeId> = outputs.keys().copied().collect();
        let mut restarts = vec![launch.restarts_all; graph.nodes().len()];
        for (topology, id, name, count) in &launch.restarts {
            if *topology != self.id {
                return Err(Error::RestartsForeignNode { node: name.clone() });
            }
            restarts[*id] = *count;
        }
        if launch.mode == Mode::Local && restarts.iter().any(|r| *r > 0) {
            return Err(Error::RestartsLocal);
        }
        let mut placements = Vec::with_capacity(launch.placements.len());
        for (topology, node, host) in &launch.placements {
            if *topology != self.id {
                return Err(Error::PlaceForeignNode { node: node.clone() });
            }
            placements.push((node.clone(), host.clone()));
        }
        // Refused here, before anything starts: a node of zero replicas,
        // more replicas than key groups.
        let run = Replicated::new(graph, &scale)?;
        let (watchers, metrics) = watchers(launch.live, launch.metrics.as_deref(), launch.mode)?;
        let debugger: Option<Box<dyn DebugSink>> =
            if outputs.is_empty() && launch.on_event.is_none() {
                None
            } else {
                Some(Box::new(Debugger {
                    outputs,
                    on_event: launch.on_event,
                }))
            };
        let impls = self.impls;
        let run: Box<dyn FnOnce() -> Result<RunReport, Box<RunFailure>> + Send> = match launch.mode
        {
            Mode::Local => {
                let local = LocalRun {
                    ring_bytes: launch.ring_bytes,
                    large_bytes: launch.large_bytes,
                    spin: launch.spin,
                    batch: launch.batch,
                    watched,
                    stop: launch.stop.clone(),
                    watchers,
                };
                Box::new(move || local.run(&run, impls, debugger))
            }
            Mode::Processes => {
                let codecs = impls.iter().map(|i| i.codec.clone()).collect();
                let master = ProcessRun {
                    dir: launch.dir.clone(),
                    ring_bytes: launch.ring_bytes,
                    large_bytes: launch.large_bytes,
                    batch: launch.batch,
                    spin: launch.spin,
                    watched,
                    stop: launch.stop.clone(),
                    ready_timeout: launch.ready_timeout,
                    silence: launch
                        .silence
                        .unwrap_or(DEFAULT_SILENCE.max(launch.link_grace)),
                    link_grace: launch.link_grace,
                    hosts: launch.hosts.clone(),
                    placements,
                    fanout: launch.fanout,
                    watchers,
                    restarts,
                    backoff: launch.backoff,
                }
                .start(&run, codecs, debugger)?;
                Box::new(move || master.wait())
            }
        };
        let ctrl_c = launch.ctrl_c && ctrl_c::register(&launch.stop);
        let thread = thread::Builder::new()
            .name("clusterduck-run".into())
            .spawn(run)
            .expect("spawn the run thread");
        Ok(Running {
            stop: launch.stop,
            ctrl_c,
            metrics,
            thread,
        })
    }
}
