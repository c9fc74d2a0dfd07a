//! The README's topology.
//!
//! Spouts `A` and `B` each send the ids `0..n` in their own random order
//! (each shuffles every block of 1024 ids, so that the join's reorder
//! window of 4096 ids is never outrun); `A` sends the id as an integer, `B`
//! as a string. `C` is bundled over `(A, B)` and sequenced from 0: for each
//! id it emits the line `seq=<id> a=<A's value> b=<B's value>` and writes
//! it to its own stderr. A debugger on `C` prints each line on stdout, so
//! stdout holds exactly one line per id, in id order. The report goes to
//! stderr.
//!
//! ```text
//! cargo run --release --example readme -- -n 1000
//! ```

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clusterduck::{Bundling, Emitter, Topology};

mod args;

/// The README's topology: two spouts of ids joined in id order.
#[derive(Debug, clap::Parser)]
#[command(name = "readme")]
struct Flags {
    /// Ids per spout.
    #[arg(short = 'n', value_name = "N", default_value_t = 100)]
    n: u64,
    /// Seed of the spouts' shuffles (every process of a run must have the
    /// same: a restarted spout goes on in the same order).
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    run: args::Run,
}

/// The node's own buffered stderr. Node functions are `Clone` (a node run
/// as several replicas in one process gets a copy per replica): a copy of
/// this is a writer of its own.
struct Stderr(BufWriter<std::io::Stderr>);

impl Default for Stderr {
    fn default() -> Self {
        Self(BufWriter::new(std::io::stderr()))
    }
}

impl Stderr {
    fn line(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.0, "{line}")
    }
}

impl Clone for Stderr {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Ids are shuffled within blocks of this many.
const SHUFFLE_BLOCK: u64 = 1024;

fn main() -> ExitCode {
    let flags = <Flags as clap::Parser>::parse();
    let (n, seed, mode) = (flags.n, flags.seed, flags.run.launch());

    let mut t = Topology::new();
    let a = t.spout("A", move |out| {
        // A restarted spout goes on after what its earlier processes sent.
        let sent = out.resume().map_or(0, |r| r.sent) as usize;
        for seq in shuffled(n, seed ^ 0xA).skip(sent) {
            out.send(seq, seq)?;
        }
        Ok(())
    });
    let b = t.spout("B", move |out| {
        let sent = out.resume().map_or(0, |r| r.sent) as usize;
        for seq in shuffled(n, seed ^ 0xB).skip(sent) {
            out.send(seq, seq.to_string())?;
        }
        Ok(())
    });
    let mut err = Stderr::default();
    let c = t.bundled(
        "C",
        (&a, &b),
        Bundling::sequenced(0),
        move |seq, (a, b): (u64, String), out: &mut Emitter<String>| {
            let line = format!("seq={seq} a={a} b={b}");
            err.line(&line)?;
            out.emit(line);
            Ok(())
        },
    );

    let mut stdout = BufWriter::new(std::io::stdout());
    let launch = mode
        .debug(&c, move |_, line: String| {
            // A closed stdout (a pipe to `head`) is no reason to stop the run.
            let _ = writeln!(stdout, "{line}");
        })
        .on_event(|event| eprintln!("{event}"));
    args::report(t.launch(launch))
}

/// The ids `0..n`, each block of [`SHUFFLE_BLOCK`] ids in a random order.
fn shuffled(n: u64, seed: u64) -> impl Iterator<Item = u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .step_by(SHUFFLE_BLOCK as usize)
        .flat_map(move |start| {
            let mut block: Vec<u64> = (start..n.min(start + SHUFFLE_BLOCK)).collect();
            rng.shuffle(&mut block);
            block
        })
}
