//! Bundling-table bench.
fn main() {}
