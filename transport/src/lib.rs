//! Clusterduck's transport: it moves bytes between the processes of a run and
//! knows nothing of topologies.
//!
//! Same-host traffic goes through [shared-memory rings](shm): a node writes
//! each frame once into its own ring and every reader views it in place.
//! Every connection of a run opens with a [mutual challenge-response](auth)
//! on the run's secret, then carries [length-checked messages](wire); across
//! hosts, [TCP links](tcp) stream a ring's frames into a mirror ring.
//!
//! ```
//! use clusterduck_transport::{FrameKind, ReadError, RingName, RingReader, RingWriter};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! struct Photo {
//!     id: u32,
//!     pixels: Vec<u8>,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let run = format!("doc{}", std::process::id());
//! let name = RingName::new(&run, "camera")?;
//! let mut writer = RingWriter::create(&name, 64 * 1024)?;
//! let mut reader = RingReader::attach(&name)?; // usually in another process
//!
//! writer.write_value(7, &Photo { id: 1, pixels: vec![0xAB; 100] })?;
//! writer.write_bytes(8, b"raw bytes")?;
//! writer.finish(9)?;
//!
//! let batch = reader.read()?;
//! let mut frames = batch.iter();
//! let photo = frames.next().unwrap()?;
//! assert_eq!((photo.kind(), photo.seq()), (FrameKind::Data, 7));
//! let archived = photo.access::<Photo>()?; // checked, zero-copy
//! assert_eq!(archived.id, 1);
//! assert_eq!(archived.pixels.len(), 100);
//! assert_eq!(frames.next().unwrap()?.bytes(), b"raw bytes");
//! assert_eq!(frames.next().unwrap()?.kind(), FrameKind::End);
//! drop(batch); // releases the frames' space to the writer
//! assert_eq!(reader.read().err(), Some(ReadError::Ended));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(loom))]
pub mod auth;
pub mod process;
pub mod shm;
pub(crate) mod sync;
#[cfg(not(loom))]
pub mod tcp;
#[cfg(not(loom))]
pub mod waits;
#[cfg(not(loom))]
pub mod wire;

/// A watchdog for the unit tests that could hang (shared with the
/// integration tests).
#[cfg(test)]
#[path = "../tests/common/watchdog.rs"]
#[allow(unreachable_pub)]
mod test_watchdog;

#[cfg(not(loom))]
pub use process::ProcessStamp;
#[cfg(not(loom))]
pub use shm::{
    remove_run_segments, remove_stale_segments, AccessError, ArenaSpan, ArenaValue, AttachError,
    Batch, CreateError, DeadReader, Frame, FrameBuf, FrameError, FrameKind, FrameSerializer,
    Frames, Hold, NameError, ReadError, ReopenError, RingFill, RingGauge, RingName, RingReader,
    RingWriter, StaleSegment, StaleStatus, WaitReadersError, WriteError, FORWARDED_ARENAS,
};
