//! Metrics of a running run: every node's figures every second, and who
//! looks at them.
//!
//! - A node's threads publish into its [`Probe`] (`probe`), for next to
//!   nothing; its sampler turns it into a [`NodeSample`] once a second
//!   (`sample`), sent to the master over the control connection (in local
//!   mode, read in place).
//! - The master keeps the last two samples of each instance in a [`Live`]
//!   view (`live`), which makes the [`Status`] of the run (`status`):
//!   rates, shares of time, ring fill and lag per edge, the bottleneck.
//! - An [`Observer`] (`watch`) shows that status to the run's [`Watch`]es
//!   every second: the live terminal view, the status page, the Prometheus
//!   endpoint (in the `clusterduck-monitor` crate).

mod link;
mod live;
pub mod probe;
mod sample;
mod status;
mod watch;

pub use link::Link;
pub use live::Live;
pub use probe::Probe;
pub use sample::{InputSample, LinkSample, LinkState, NodeSample};
pub use status::{EdgeStatus, LinkStatus, NodeState, NodeStatus, RunState, Status, Waiting};
pub use watch::{Observer, Watch, Watchers, REFRESH};

/// How often a node sends its figures.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
