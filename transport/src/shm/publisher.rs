//! Publishing a ring's frames from another thread than the writer's.
//!
//! A writer that defers publishing ([`RingWriter::defer_publishing`]) makes
//! its frames visible every few frames, or when it stops writing for a while
//! (a flush, a wait for space, the end). While its thread runs someone else's
//! code (a node's function that takes long), frames it wrote before would
//! stay unseen: a [`RingPublisher`], called on a timer from another thread,
//! bounds that.

use std::sync::Arc;

use super::index::publish_from_afar;
use super::segment::ShmRing;
use crate::sync::AtomicU64;

#[cfg(doc)]
use super::RingWriter;

/// Publishes what a deferring [`RingWriter`] has written, from any thread.
/// Cheap when there is nothing new: two loads.
#[derive(Clone, Debug)]
pub struct RingPublisher {
    ring: Arc<ShmRing>,
    head: Arc<AtomicU64>,
}

impl RingPublisher {
    pub(crate) fn new(ring: Arc<ShmRing>, head: Arc<AtomicU64>) -> Self {
        Self { ring, head }
    }

    /// Makes every frame the writer has written so far visible to readers,
    /// and wakes those asleep; returns whether there was anything new. Once
    /// the writer is gone, does nothing.
    pub fn publish(&self) -> bool {
        publish_from_afar(self.ring.control(), &self.head)
    }
}
