//! Word count, with the counting node run as replicas grouped by word.
//!
//! The spout `lines` reads a text file, one line per id. The worker `split`
//! splits each line into words (on ASCII whitespace). The worker `count`
//! runs as `--replicas N` replicas (4 by default), its input grouped by
//! word: every occurrence of a word reaches the same replica, which counts
//! it and emits the word's count so far. A debugger on `count` keeps the
//! last count of each word; at the end the program prints one
//! `word count` line per word, sorted by word (bytewise), on stdout. The
//! report goes to stderr.
//!
//! ```text
//! cargo run --release --example wordcount -- --replicas 4 FILE
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clusterduck::{key_of, Emitter, Topology};
use std::path::PathBuf;

mod args;

/// Counts the words of a file, the counting node replicated and grouped by
/// word.
#[derive(Debug, clap::Parser)]
#[command(name = "wordcount")]
struct Flags {
    /// The file whose words to count (across hosts: at the same path on the
    /// host of `lines`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Replicas of the counting node (0 is refused by the launch, naming
    /// the node).
    #[arg(long, value_name = "N", default_value_t = 4)]
    replicas: usize,
    #[command(flatten)]
    run: args::Run,
}

fn main() -> ExitCode {
    let flags = <Flags as clap::Parser>::parse();
    let (file, replicas, launch) = (flags.file, flags.replicas, flags.run.launch());

    let mut t = Topology::new();
    let lines = t.spout("lines", move |out| {
        let reader = BufReader::new(std::fs::File::open(&file)?);
        for (id, line) in reader.lines().enumerate() {
            out.send(id as u64, line?)?;
        }
        Ok(())
    });
    let words = t.worker(
        "split",
        &lines,
        |_, line: String, out: &mut Emitter<String>| {
            for word in line.split_ascii_whitespace() {
                out.emit(word.to_owned());
            }
            Ok(())
        },
    );
    let mut counts: HashMap<String, u64> = HashMap::new();
    let count = t.worker_archived(
        "count",
        words.by_key(|word| key_of(word.as_str())),
        move |_, word, out: &mut Emitter<(String, u64)>| {
            let n = counts.entry(word.as_str().to_owned()).or_default();
            *n += 1;
            out.emit((word.as_str().to_owned(), *n));
            Ok(())
        },
    );

    // The last count of each word: a word's counts come from one replica,
    // in increasing order.
    let totals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let seen = totals.clone();
    let launch =
        launch
            .replicas(&count, replicas)
            .debug(&count, move |_, (word, n): (String, u64)| {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                let last = seen.entry(word).or_default();
                *last = (*last).max(n);
            });
    let code = args::report(t.launch(launch));
    if code == ExitCode::SUCCESS {
        let totals = totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut stdout = std::io::stdout().lock();
        for (word, n) in totals.iter() {
            // A closed stdout (a pipe to `head`) ends the listing.
            if writeln!(stdout, "{word} {n}").is_err() {
                break;
            }
        }
    }
    code
}
