//! A cross-host input's link as the node's metrics see it: the bytes its
//! receiving thread counts, and whether it still carries the stream.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use clusterduck_transport::tcp::LinkMeter;

use super::sample::{LinkSample, LinkState};

/// A cross-host input's link, as its receiving thread leaves it.
#[derive(Debug, Default)]
pub struct Link {
    meter: Arc<LinkMeter>,
    state: AtomicU8,
}

impl Link {
    /// The meter the link's receiver counts bytes in.
    pub fn meter(&self) -> Arc<LinkMeter> {
        self.meter.clone()
    }

    /// The link carries its stream again (it reconnected).
    pub fn up(&self) {
        self.state.store(LinkState::Up as u8, Relaxed);
    }

    /// The link ended: cleanly, or broken (for good, or until it
    /// reconnects).
    pub fn ended(&self, clean: bool) {
        let state = if clean {
            LinkState::Ended
        } else {
            LinkState::Broken
        };
        self.state.store(state as u8, Relaxed);
    }

    pub(super) fn sample(&self) -> LinkSample {
        LinkSample {
            bytes: self.meter.bytes(),
            state: LinkState::from_code(self.state.load(Relaxed)),
        }
    }
}
