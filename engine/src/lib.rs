//! Clusterduck engine.
