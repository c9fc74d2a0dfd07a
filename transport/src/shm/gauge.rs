//! How full a ring is for one of its readers, read from any thread: the
//! bytes published that the reader has not released, against the ring's
//! capacity. A node's metrics sample it once a second beside the thread
//! that reads the ring; the gauge maps the segment's header and data a
//! second time (address space only) and touches nothing but two atomics.

use super::error::AttachError;
use super::index::ReaderIndex;
use super::layout::SLOT_ACTIVE;
use super::reader::RingReader;
use super::segment::ShmRing;
use crate::sync::Ordering::Acquire;

/// One reader's place in a ring, for metrics.
#[derive(Debug)]
pub struct RingGauge {
    ring: ShmRing,
    slot: usize,
}

/// A ring's fill, as one reader sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFill {
    /// Bytes written that the reader has not released (what it holds the
    /// writer back by).
    pub bytes: u64,
    /// The ring's data capacity in bytes.
    pub capacity: u64,
}

impl RingFill {
    /// `bytes` as a share of the capacity, 0 to 1.
    pub fn share(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            (self.bytes as f64 / self.capacity as f64).min(1.0)
        }
    }
}

impl RingGauge {
    /// A gauge of `reader`'s place in its ring.
    pub fn of(reader: &RingReader) -> Result<RingGauge, AttachError> {
        Ok(RingGauge {
            ring: ShmRing::open(reader.name().path())?,
            slot: reader.slot(),
        })
    }

    /// The fill now; empty once the reader detached.
    pub fn fill(&self) -> RingFill {
        let ctl = self.ring.control();
        let slot = &ctl.slots[self.slot];
        let capacity = self.ring.capacity() as u64;
        // SYNC: Acquire pairs with the Release store of the slot's state in
        // `ReaderIndex::attach`; a detached reader holds nothing.
        if slot.state.load(Acquire) != SLOT_ACTIVE {
            return RingFill { bytes: 0, capacity };
        }
        let written = ReaderIndex::write_pos(ctl);
        // SYNC: Acquire pairs with the Release store in `ReaderIndex::release`
        // (a figure: either value is a fill the ring had).
        let released = slot.cursor.load(Acquire);
        RingFill {
            bytes: written.saturating_sub(released).min(capacity),
            capacity,
        }
    }
}
