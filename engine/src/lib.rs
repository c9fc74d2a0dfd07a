//! Clusterduck's engine: the topology graph and its validation, bundling and
//! sequencing, the step of a node, and the runtimes that drive them.
//!
//! At the centre is a deterministic core with no I/O: [`graph`],
//! [`bundle`] and [`node`] take their inputs and the current time as
//! arguments and are tested by driving them directly. Around it,
//! [`local`] runs a whole topology as threads of one process.
//!
//! ```
//! use std::time::Instant;
//! use clusterduck_engine::bundle::{BundleTable, Bundling, TableEvent};
//!
//! // Join two upstreams, strictly in id order from 0.
//! let mut table = BundleTable::new(2, Bundling::sequenced(0).window(8));
//! let now = Instant::now();
//! table.offer(0, 1, "a1", now);
//! table.offer(1, 1, "b1", now);
//! assert_eq!(table.poll(now), None); // 1 waits for 0
//! table.offer(1, 0, "b0", now);
//! table.offer(0, 0, "a0", now);
//! assert_eq!(table.poll(now), Some(TableEvent::Bundle { seq: 0, values: vec!["a0", "b0"].into() }));
//! assert_eq!(table.poll(now), Some(TableEvent::Bundle { seq: 1, values: vec!["a1", "b1"].into() }));
//! ```

pub mod body;
pub mod bundle;
mod failure;
pub mod fingerprint;
pub mod graph;
pub mod local;
pub mod log;
pub mod metrics;
pub mod node;
pub mod process;
pub mod replica;
pub mod report;
mod run;
pub mod stop;

pub use run::inlet::DEFAULT_BATCH;

/// A sequence id, chosen by spouts and carried by every value.
pub type Seq = u64;
