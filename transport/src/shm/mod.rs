//! Shared-memory rings: the same-host data plane.
//!
//! A node writes its output once into its own ring, a file under `/dev/shm`
//! (mode 0600) that every downstream node on the host maps; each reader has
//! its own cursor, so fan-out costs the writer no copy. See the crate docs
//! for an example, and `transport/README.md` for the layout, the waiting
//! protocol and the measured figures.
//!
//! - [`RingWriter`]: creates the segment, writes frames (bytes, or an rkyv
//!   value serialised in place), waits for the slowest reader when full;
//!   values too large for a frame go out of line, to its arena (`arena`).
//! - [`RingReader`]: attaches, reads [`Batch`]es of [`Frame`] views in place.
//! - [`RingName`], [`remove_stale_segments`]: naming and clean-up.

#[cfg(not(loom))]
pub(crate) mod arena;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
pub(crate) mod forward;
#[cfg(not(loom))]
mod frame;
#[cfg(not(loom))]
mod gauge;
pub(crate) mod index;
pub(crate) mod layout;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use self::{
    error::{
        AccessError, AttachError, CreateError, FrameError, NameError, ReadError, ReopenError,
        WaitReadersError, WriteError,
    },
    forward::{ArenaSpan, ArenaValue, FORWARDED_ARENAS},
    frame::{Frame, FrameBuf, FrameKind, FrameSerializer},
    gauge::{RingFill, RingGauge},
    name::{
        remove_run_segments, remove_stale_segments, RingName, StaleSegment, StaleStatus,
        SEGMENT_PREFIX, SHM_DIR,
    },
    reader::{Batch, Frames, Hold, RingReader},
    writer::{DeadReader, RingWriter},
};

#[cfg(all(test, not(loom)))]
mod tests;
