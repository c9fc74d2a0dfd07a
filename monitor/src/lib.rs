//! Views of a running Clusterduck topology, fed by the engine's metrics
//! (`clusterduck_engine::metrics`) once a second:
//!
//! - [`TerminalView`]: a table on the launching process's stderr, refreshed
//!   every second (`ratatui`), one row per node, the bottleneck marked;
//! - [`MetricsServer`]: `/metrics` in the Prometheus text format
//!   (`prometheus-client`), `/` a status page that draws the topology and
//!   updates itself, `/status.json` what the page reads (`axum`, on a
//!   runtime thread of its own: nothing of it runs on a node's path).

mod page;
mod prometheus;
mod server;
mod terminal;

pub use server::{MetricsServer, ServeError};
pub use terminal::{live_view_forced, live_view_wanted, TerminalView, LIVE_ENV};
