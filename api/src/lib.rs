//! Clusterduck: Storm-like topologies as one binary.
