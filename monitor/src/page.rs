//! The status page: one HTML file with its script, which fetches
//! `/status.json` every second and draws the topology (a column per depth,
//! a band per host) with each node's live figures, the bottleneck marked,
//! and the final report once the run ended.

/// The page.
pub(crate) const PAGE: &str = include_str!("page.html");
