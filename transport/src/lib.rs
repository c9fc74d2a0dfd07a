//! Clusterduck's transport: it moves bytes between the processes of a run and
//! knows nothing of topologies.
//!
//! The shared-memory rings and the TCP links live here; the engine above
//! decides what flows where.
