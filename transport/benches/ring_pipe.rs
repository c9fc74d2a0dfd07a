//! The ceiling of Clusterduck's standard workloads with one process per node:
//! the `pipe` and `join` topologies of the engine bench
//! (`benches/src/workload.rs`), with nodes that are separate processes joined
//! by shared-memory rings, but hand-written node loops and no engine in
//! between. What the engine measures on the same machine can be read against
//! these figures.
//!
//! - `pipe`: spout S → worker W → sink K. S writes `n` [`Sample`]s with
//!   `write_value`; W reads S's ring, validates each frame
//!   ([`Frame::access`]) and writes it again into its own ring; K validates
//!   and counts.
//! - `join`: spouts A and B write the same `n` seqs; J reads both rings,
//!   pairs their values in lockstep (they arrive in order), checks that the
//!   seqs match and writes one value per pair; K validates and counts.
//!
//! How W and J write a value, the two variants measured:
//! - "reserialise": the fields of the archived value go into an owned
//!   `Sample` (reused, so no allocation per value), which `write_value`
//!   serialises in place in the ring, as a node that works on owned values
//!   does;
//! - "forward bytes": the validated archive is copied as it is with
//!   `write_bytes` (for `join`, A's half of the pair).
//!
//! Spouts send a reused value whose `sent_ns` is its seq: no clock is read per
//! value. The clock runs from the moment every process is set up (rings
//! created and attached) until K has counted the End frame. Each figure is the
//! median of several runs, each with fresh processes and rings.
//!
//! `cargo bench -p clusterduck-transport --bench ring_pipe`, with
//! `CD_BENCH_MESSAGES` (default 20 000 000 values per run), `CD_BENCH_RUNS`
//! (default 5) and `CD_BENCH_FILTER` (a substring of a line's label, such as
//! "join (forward bytes), 64 B").

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clusterduck_transport::{Frame, FrameKind, ReadError, RingName, RingReader, RingWriter};
use rkyv::util::AlignedVec;

/// The environment variable that makes the bench binary a node process: its
/// value is the node's [`Spec`].
const ROLE: &str = "CD_RING_PIPE_NODE";

/// The engine's default ring size (`clusterduck::DEFAULT_RING_BYTES`).
const RING_BYTES: usize = 4 << 20;

/// How long a node may take to find its input rings and its reader.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A value of the engine benches: when it was sent, and its payload.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Sample {
    sent_ns: u64,
    payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Pipe,
    Join,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Pipe => "pipe",
            Workload::Join => "join",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Pipe => "msg/s",
            Workload::Join => "pairs/s",
        }
    }
}

/// How a worker writes the values it passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forward {
    /// An owned `Sample` serialised in place with `write_value`.
    Reserialise,
    /// The validated archive copied as it is with `write_bytes`.
    Bytes,
}

impl Forward {
    fn name(self) -> &'static str {
        match self {
            Forward::Reserialise => "reserialise",
            Forward::Bytes => "forward bytes",
        }
    }

    fn parse(s: &str) -> Forward {
        match s {
            "reserialise" => Forward::Reserialise,
            "bytes" => Forward::Bytes,
            other => panic!("unknown forward mode {other:?}"),
        }
    }

    fn code(self) -> &'static str {
        match self {
            Forward::Reserialise => "reserialise",
            Forward::Bytes => "bytes",
        }
    }
}

/// What a node process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Writes `n` values once told to go.
    Spout,
    /// Reads one ring, writes each value to its own.
    Pass,
    /// Reads two rings, writes one value per pair.
    Join,
    /// Reads one ring and counts.
    Sink,
}

impl Role {
    fn code(self) -> &'static str {
        match self {
            Role::Spout => "spout",
            Role::Pass => "pass",
            Role::Join => "join",
            Role::Sink => "sink",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "spout" => Role::Spout,
            "pass" => Role::Pass,
            "join" => Role::Join,
            "sink" => Role::Sink,
            other => panic!("unknown role {other:?}"),
        }
    }
}

/// One node of a run, as its process gets it (encoded in [`ROLE`]).
#[derive(Clone, Debug)]
struct Spec {
    role: Role,
    run: String,
    /// The node's name, which is its ring's (unused by a sink).
    node: String,
    /// The nodes it reads.
    inputs: Vec<String>,
    n: u64,
    payload: usize,
    forward: Forward,
}

impl Spec {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            self.role.code(),
            self.run,
            self.node,
            if self.inputs.is_empty() {
                "-".to_owned()
            } else {
                self.inputs.join(",")
            },
            self.n,
            self.payload,
            self.forward.code()
        )
    }

    fn decode(s: &str) -> Spec {
        let f: Vec<&str> = s.split(' ').collect();
        assert_eq!(f.len(), 7, "bad node spec {s:?}");
        Spec {
            role: Role::parse(f[0]),
            run: f[1].to_owned(),
            node: f[2].to_owned(),
            inputs: match f[3] {
                "-" => Vec::new(),
                list => list.split(',').map(str::to_owned).collect(),
            },
            n: f[4].parse().expect("message count"),
            payload: f[5].parse().expect("payload length"),
            forward: Forward::parse(f[6]),
        }
    }

    fn ring(&self, node: &str) -> RingName {
        RingName::new(&self.run, node).expect("valid ring name")
    }
}

// ---------------------------------------------------------------------------
// The node processes.

/// Runs the node `spec` describes: sets up its rings, says "ready" on stdout,
/// then runs its loop (a spout first waits for "go" on stdin).
fn node(spec: &Spec) {
    let out = (spec.role != Role::Sink).then(|| {
        RingWriter::create(&spec.ring(&spec.node), RING_BYTES).expect("create the output ring")
    });
    let mut inputs: Vec<RingReader> = spec
        .inputs
        .iter()
        .map(|input| attach(&spec.ring(input)))
        .collect();
    if let Some(out) = &out {
        out.wait_for_readers(1, SETUP_TIMEOUT)
            .expect("the downstream node attaches");
    }
    println!("ready");
    match (spec.role, out) {
        (Role::Spout, Some(out)) => {
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).expect("read go");
            assert_eq!(go.trim(), "go", "spout told {go:?}");
            spout(out, spec.n, spec.payload);
        }
        (Role::Pass, Some(out)) => pass(&mut inputs[0], out, spec.forward),
        (Role::Join, Some(out)) => {
            let (a, b) = inputs.split_at_mut(1);
            join(&mut a[0], &mut b[0], out, spec.forward);
        }
        (Role::Sink, None) => println!("done {}", sink(&mut inputs[0])),
        (role, _) => unreachable!("{role:?}"),
    }
}

/// Attaches to `name`, waiting for its writer to create it.
fn attach(name: &RingName) -> RingReader {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        match RingReader::attach(name) {
            Ok(reader) => return reader,
            Err(e) if Instant::now() >= deadline => panic!("attach {name}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// The next batch of `reader`, `None` at the end of the stream.
fn next_batch<'r>(
    reader: &'r mut RingReader,
    who: &str,
) -> Option<clusterduck_transport::Batch<'r>> {
    match reader.read() {
        Ok(batch) => Some(batch),
        Err(ReadError::Ended) => None,
        Err(e) => panic!("{who}: read: {e}"),
    }
}

fn spout(mut out: RingWriter, n: u64, payload: usize) {
    let mut value = Sample {
        sent_ns: 0,
        payload: vec![0xAB; payload],
    };
    for seq in 0..n {
        value.sent_ns = seq;
        out.write_value(seq, &value).expect("spout: write");
    }
    out.finish(n).expect("spout: finish");
}

/// Writes one value for the validated archive `value` (whose bytes are
/// `bytes`) with seq `seq`; `scratch` is the reused owned value.
#[inline]
fn emit(
    out: &mut RingWriter,
    forward: Forward,
    scratch: &mut Sample,
    seq: u64,
    sent_ns: u64,
    value: &ArchivedSample,
    bytes: &[u8],
) {
    match forward {
        Forward::Reserialise => {
            scratch.sent_ns = sent_ns;
            scratch.payload.clear();
            scratch.payload.extend_from_slice(value.payload.as_slice());
            out.write_value(seq, scratch)
        }
        Forward::Bytes => out.write_bytes(seq, bytes),
    }
    .expect("write");
}

fn pass(input: &mut RingReader, mut out: RingWriter, forward: Forward) {
    let mut scratch = Sample {
        sent_ns: 0,
        payload: Vec::new(),
    };
    let mut next = 0u64;
    while let Some(batch) = next_batch(input, "W") {
        for frame in &batch {
            let frame = frame.expect("W: frame");
            if frame.kind() != FrameKind::Data {
                continue;
            }
            assert_eq!(frame.seq(), next, "W: out of order");
            next += 1;
            let value = frame.access::<Sample>().expect("W: a valid Sample");
            let sent_ns = value.sent_ns.to_native();
            emit(
                &mut out,
                forward,
                &mut scratch,
                frame.seq(),
                sent_ns,
                value,
                frame.bytes(),
            );
        }
        drop(batch);
        // About to wait for input: wake K if it sleeps on what we wrote.
        out.flush();
    }
    out.finish(next).expect("W: finish");
}

/// A value of A whose B half was not read yet: a copy of its archive.
struct Held {
    seq: u64,
    bytes: AlignedVec,
}

fn join(a: &mut RingReader, b: &mut RingReader, mut out: RingWriter, forward: Forward) {
    let mut scratch = Sample {
        sent_ns: 0,
        payload: Vec::new(),
    };
    let mut pairs = 0u64;
    let mut held: Option<Held> = None;
    let mut pair =
        |out: &mut RingWriter, seq: u64, va: &ArchivedSample, bytes: &[u8], fb: Frame| {
            assert_eq!(fb.kind(), FrameKind::Data, "J: B ended before A");
            assert_eq!(fb.seq(), seq, "J: seqs differ");
            assert_eq!(seq, pairs, "J: out of order");
            let vb = fb.access::<Sample>().expect("J: a valid Sample from B");
            let sent_ns = va.sent_ns.to_native().min(vb.sent_ns.to_native());
            emit(out, forward, &mut scratch, seq, sent_ns, va, bytes);
            pairs += 1;
        };
    'run: loop {
        let mut ba = next_batch(a, "J").expect("J: A ended before its End frame");
        let mut bb = next_batch(b, "J").expect("J: B ended before its End frame");
        // Release only the frames paired: the rest are read again next time.
        ba.limit(usize::MAX);
        bb.limit(usize::MAX);
        let (fa, mut fb) = (ba.iter(), bb.iter());
        if let Some(h) = held.take() {
            let vb = fb.next().expect("a read yields a frame").expect("J: frame");
            let va = rkyv::access::<ArchivedSample, rkyv::rancor::Error>(&h.bytes)
                .expect("J: a valid Sample from A");
            pair(&mut out, h.seq, va, &h.bytes, vb);
        }
        for x in fa {
            let x = x.expect("J: frame");
            if x.kind() == FrameKind::End {
                // Every value of A is paired: B's next frame is its End.
                break 'run;
            }
            let va = x.access::<Sample>().expect("J: a valid Sample from A");
            match fb.next() {
                Some(y) => pair(&mut out, x.seq(), va, x.bytes(), y.expect("J: frame")),
                None => {
                    let mut bytes = AlignedVec::with_capacity(x.bytes().len());
                    bytes.extend_from_slice(x.bytes());
                    held = Some(Held {
                        seq: x.seq(),
                        bytes,
                    });
                    break;
                }
            }
        }
        drop((ba, bb));
        out.flush();
    }
    let end = loop {
        let batch = next_batch(b, "J").expect("J: B ended before its End frame");
        let mut frames = batch.iter();
        if let Some(f) = frames.next() {
            break f.expect("J: frame").kind();
        }
    };
    assert_eq!(end, FrameKind::End, "J: B sent more values than A");
    out.finish(pairs).expect("J: finish");
}

fn sink(input: &mut RingReader) -> u64 {
    let mut count = 0u64;
    let mut acc = 0u64;
    while let Some(batch) = next_batch(input, "K") {
        for frame in &batch {
            let frame = frame.expect("K: frame");
            if frame.kind() == FrameKind::Data {
                let value = frame.access::<Sample>().expect("K: a valid Sample");
                acc ^= value.sent_ns.to_native();
                count += 1;
            }
        }
    }
    std::hint::black_box(acc);
    count
}

// ---------------------------------------------------------------------------
// The launching process.

/// A node process, with its stdin and the lines of its stdout.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(spec: &Spec) -> Proc {
        let mut child = Command::new(std::env::current_exe().expect("the bench binary"))
            .env(ROLE, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a node process");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Proc {
            name: spec.node.clone(),
            child,
            stdin,
            lines,
        }
    }

    fn line(&mut self) -> String {
        match self.lines.next() {
            Some(line) => line.expect("read a node's stdout"),
            None => panic!("node {} exited early", self.name),
        }
    }
}

/// The processes of one run; any still running when it is dropped (the
/// launcher panicked) are killed.
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// CPU time (user + system) of the reaped children of this process.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write to.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// What one run measured.
struct Measure {
    /// Values (pairs for `join`) per second through the sink.
    rate: f64,
    /// CPU time of all the run's processes per value.
    cpu_ns: f64,
}

fn run_once(workload: Workload, forward: Forward, n: u64, payload: usize) -> Measure {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = format!(
        "ringpipe{}_{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let spec = |role: Role, node: &str, inputs: &[&str]| Spec {
        role,
        run: run.clone(),
        node: node.to_owned(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        n,
        payload,
        forward,
    };
    let specs = match workload {
        Workload::Pipe => vec![
            spec(Role::Sink, "K", &["W"]),
            spec(Role::Pass, "W", &["S"]),
            spec(Role::Spout, "S", &[]),
        ],
        Workload::Join => vec![
            spec(Role::Sink, "K", &["J"]),
            spec(Role::Join, "J", &["A", "B"]),
            spec(Role::Spout, "A", &[]),
            spec(Role::Spout, "B", &[]),
        ],
    };
    let cpu0 = children_cpu();
    let mut procs = Procs(specs.iter().map(Proc::spawn).collect());
    for p in &mut procs.0 {
        let line = p.line();
        assert_eq!(line, "ready", "node {}", p.name);
    }
    let start = Instant::now();
    for (p, s) in procs.0.iter_mut().zip(&specs) {
        if s.role == Role::Spout {
            let mut stdin = p.stdin.take().expect("a spout's stdin");
            writeln!(stdin, "go").expect("tell a spout to go");
        }
    }
    let done = procs.0[0].line();
    let elapsed = start.elapsed();
    assert_eq!(done, format!("done {n}"), "the sink's count");
    for p in &mut procs.0 {
        let status = p.child.wait().expect("wait for a node");
        assert!(status.success(), "node {} failed: {status}", p.name);
    }
    Measure {
        rate: n as f64 / elapsed.as_secs_f64(),
        cpu_ns: (children_cpu() - cpu0).as_secs_f64() * 1e9 / n as f64,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a valid value")),
        Err(_) => default,
    }
}

fn main() {
    if let Ok(spec) = std::env::var(ROLE) {
        node(&Spec::decode(&spec));
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = env_or("CD_BENCH_MESSAGES", 20_000_000);
    let runs: usize = env_or("CD_BENCH_RUNS", 5);
    assert!(
        n > 0 && runs > 0,
        "CD_BENCH_MESSAGES and CD_BENCH_RUNS must be positive"
    );
    let filter = std::env::var("CD_BENCH_FILTER").ok();
    println!(
        "one process per node, hand-written loops, no engine; ring {} MiB; \
         {n} values per run, median of {runs} runs",
        RING_BYTES >> 20
    );
    for payload in [64usize, 0] {
        for workload in [Workload::Pipe, Workload::Join] {
            for forward in [Forward::Reserialise, Forward::Bytes] {
                let label = format!("{} ({}), {payload} B", workload.name(), forward.name());
                if filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
                    continue;
                }
                let measures: Vec<Measure> = (0..runs)
                    .map(|_| run_once(workload, forward, n, payload))
                    .collect();
                let rates: Vec<f64> = measures.iter().map(|m| m.rate / 1e6).collect();
                let cpu: Vec<f64> = measures.iter().map(|m| m.cpu_ns).collect();
                let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
                println!(
                    "{label:<32} median {:>6.1} M {} [{}]  CPU {:.0} ns/{} (all processes)",
                    median(&rates),
                    workload.unit(),
                    all.join(" "),
                    median(&cpu),
                    if workload == Workload::Join {
                        "pair"
                    } else {
                        "msg"
                    },
                );
            }
        }
    }
}
