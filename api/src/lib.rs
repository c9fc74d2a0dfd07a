//! Clusterduck: Storm-like computational topologies (DAGs) of spouts and
//! workers, run as one binary.
//!
//! A **spout** is a data source: its function is given a [`Dispatcher`] and
//! sends `(sequence id, value)` pairs, the spout choosing the ids. A
//! **worker** processes the values of its upstreams, emitting zero, one or
//! many values per input; it takes each value owned
//! ([`Topology::worker`]) or zero-copy, as a reference to the value archived
//! where it lies in its upstream's ring ([`Topology::worker_archived`]). A
//! **bundled** worker receives, for each id, one
//! value from every upstream, optionally strictly in id order. A
//! **debugger** hands the outputs of chosen nodes to callbacks in the
//! launching process.
//!
//! ```
//! use clusterduck::{Bundling, Emitter, Launch, Topology};
//!
//! let mut t = Topology::new();
//! let a = t.spout("A", |out| {
//!     for seq in (0..5u64).rev() {
//!         out.send(seq, seq)?;
//!     }
//!     Ok(())
//! });
//! let b = t.spout("B", |out| {
//!     for seq in 0..5u64 {
//!         out.send(seq, format!("#{seq}"))?;
//!     }
//!     Ok(())
//! });
//! let c = t.bundled("C", (&a, &b), Bundling::sequenced(0), |seq, (x, y), out: &mut Emitter<String>| {
//!     out.emit(format!("seq={seq} a={x} b={y}"));
//!     Ok(())
//! });
//! let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let seen = lines.clone();
//! let report = t
//!     .launch(Launch::local().debug(&c, move |_, line| seen.lock().unwrap().push(line)))
//!     .unwrap();
//! assert_eq!(lines.lock().unwrap()[4], "seq=4 a=4 b=#4");
//! assert_eq!(report.node("C").unwrap().messages_out, 5);
//! ```
//!
//! # Semantics
//!
//! - **Back-pressure, never loss.** Every edge is its producer's ring, of
//!   [`Launch::ring_bytes`] bytes in every mode; a node whose ring is full
//!   waits. [`Dispatcher::send`] blocks the same way.
//! - **Ids.** A worker's outputs keep the id of the input unless it emits
//!   with [`Emitter::emit_at`]. A merged worker sees each upstream's values in
//!   the order that upstream sent them.
//! - **Bundling** ([`Bundling`]): a sequenced node keeps a reorder window of
//!   `window` ids from the next one due; an upstream that runs further ahead
//!   is not read until the window moves. An unordered node keeps at most
//!   `window` pending bundles. A second value for a pending `(id, upstream)`
//!   is dropped and counted (duplicate); a value for an id already processed
//!   is dropped and counted (late); a bundle that blocks progress for the gap
//!   timeout fails the run by default, naming the id and the silent
//!   upstreams, or is skipped and counted ([`GapPolicy::Skip`]); a bundle
//!   that misses a value from an upstream that has ended is reported
//!   incomplete. Every such event reaches [`Launch::on_event`] and is counted
//!   in the [`RunReport`].
//! - **End.** A run ends when every spout has returned and every node has
//!   drained; Ctrl-C (or [`StopSignal::drain`]) tells spouts to stop
//!   ([`Dispatcher::send`] returns [`SendError::Stopping`]) and drains the
//!   rest; a second Ctrl-C aborts. Spouts stop wherever they are, so a
//!   drain can leave ids that some spouts sent and others did not: bundled
//!   nodes then skip and count those gaps whatever their gap policy (never
//!   delivering out of order), and report the rest as incomplete. A node function that returns an error or
//!   panics ends the run with an error naming the node, the id and the
//!   message.
//! - **Modes.** By default ([`Launch::new`], [`Mode::Processes`]) every
//!   node runs in its own process: the master re-executes this program with
//!   the same arguments and `CLUSTERDUCK_NODE=<name>`, and values cross
//!   through shared-memory rings. The topology-building code therefore runs
//!   in every process and must build the same topology each time (a node
//!   that builds another one refuses to start, showing both fingerprints);
//!   whatever `main` does before `launch` happens in every process, and node
//!   processes read their configuration on stdin, so do not read stdin
//!   before `launch`. Each node's stdout and stderr go to
//!   `<dir>/<name>.out` and `.err` ([`Launch::dir`]). [`Launch::local`] runs
//!   every node as a thread of the launching process instead: same
//!   semantics, same output. Inside `cargo test`, use local mode (a test
//!   binary re-executed with the harness's arguments would run every test),
//!   or launch a binary of your own as the tests of this crate do.
//! - **Values** are [`Message`]s: rkyv-archivable, `Send + 'static`. A value
//!   sent to several consumers is copied through its archived form, so no
//!   `Clone` is needed.

mod body;
mod ctrl_c;
mod dispatcher;
mod emitter;
mod error;
mod launch;
mod message;
mod node;
mod topology;

pub use clusterduck_engine::body::{BoxError, Resumed};
pub use clusterduck_engine::bundle::{Bundling, GapPolicy, Notice, OverflowPolicy, PolicyCounts};
pub use clusterduck_engine::graph::GraphError;
pub use clusterduck_engine::graph::Grouping;
pub use clusterduck_engine::process::DEFAULT_DIR as DEFAULT_LOG_DIR;
pub use clusterduck_engine::process::DEFAULT_FANOUT;
pub use clusterduck_engine::replica::DEFAULT_KEY_GROUPS;
pub use clusterduck_engine::report::{
    Failure, IncompleteBundle, NodeReport, PolicyEvent, RunFailure, RunReport,
};
pub use clusterduck_engine::stop::StopSignal;
pub use clusterduck_engine::Seq;
pub use dispatcher::{Dispatcher, SendError};
pub use emitter::Emitter;
pub use error::Error;
pub use launch::{
    Launch, Mode, Running, DEFAULT_LARGE_BYTES, DEFAULT_LINK_GRACE, DEFAULT_RING_BYTES,
};
pub use message::Message;
pub use node::{ArchivedBundle, Bundle, BundleValues, Grouped, Inputs, Node, NodeRef};
pub use rkyv;
pub use topology::Topology;

/// A key for [`Node::by_key`]: the same bytes give the same key in every
/// process and every build (64-bit FNV-1a), unlike `std`'s seeded hashers.
///
/// ```
/// // FNV-1a's published value for "a": keys do not change between builds.
/// assert_eq!(clusterduck::key_of("a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn key_of(bytes: impl AsRef<[u8]>) -> u64 {
    clusterduck_engine::fingerprint::fnv1a(bytes.as_ref())
}
