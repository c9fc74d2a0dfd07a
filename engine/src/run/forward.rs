//! Large values forwarded by reference: a worker that passes on a large
//! value it read in place (`Emitter::forward`) writes, instead of a copy, a
//! frame that refers to the value where it lies, in its input ring's arena
//! (`clusterduck_transport::ArenaValue`). Its consumers read it there.
//!
//! The value must stay there until they are done with it, so the worker
//! holds the input frame it read it from ([`Pins`]; for a value taken in
//! place, the frames of the whole read it came in) until every consumer has
//! released the frame that refers to it; the worker reads on meanwhile, but
//! releases nothing of that input past the held frame. So its upstream
//! cannot reuse that space before: a consumer that keeps a forwarded value
//! keeps it, and what came after it, in the upstream's ring and space, where
//! it would have kept the copy in the worker's.
//!
//! Only where every consumer of the worker is on its host (a TCP link
//! carries bytes, not references); elsewhere the value is copied, as any.
//! A node forwards by reference from [`FORWARDED_ARENAS`] inputs at most.
//!
//! The guarantee is for runs that go on: a worker that fails or is stopped
//! lets go of its holds when it ends, while its consumers may still be
//! reading its last forwarded values as the run stops; an upstream still
//! writing could then overwrite them under a consumer that is about to be
//! stopped too (values it emits then may be torn; the run fails anyway).
//!
//! [`FORWARDED_ARENAS`]: clusterduck_transport::FORWARDED_ARENAS

use std::collections::VecDeque;
use std::time::Duration;

use clusterduck_transport::{ArenaSpan, ArenaValue, Hold};
use smallvec::SmallVec;

use super::inlet::Inlet;

/// How often a worker that holds frames for forwarded values looks whether
/// its consumers released them, while it waits for input (its upstream may
/// be waiting for that space).
pub(crate) const PIN_POLL: Duration = Duration::from_millis(1);

/// Values forwarded by reference: per value, the input whose arena it lies
/// in, and where its frame ends in the output ring.
pub(crate) type Forwards = SmallVec<[(usize, u64); 2]>;

/// An output's side: which bytes can go by reference, and what went.
#[derive(Debug, Default)]
pub(crate) struct ByReference {
    /// Whether every consumer is on this host.
    allowed: bool,
    /// Per input with an arena: its index, and where the arena lies.
    sources: Vec<(usize, ArenaSpan)>,
    /// The shortest value any of them holds (shorter ones are looked at no
    /// further: the common case, one compare).
    smallest: usize,
    /// Forwarded since the last [`take`](Self::take).
    written: Forwards,
    /// Whether `written` holds any (a flag: one load, for every value).
    any: bool,
}

impl ByReference {
    /// Values may go by reference when `allowed` (every consumer of the
    /// output is on its host), once the inputs' arenas are known.
    pub(crate) fn allowed(allowed: bool) -> Self {
        Self {
            allowed,
            smallest: usize::MAX,
            ..Self::default()
        }
    }

    /// The inputs' arenas (per input index): at most as many as a consumer
    /// maps (values of the other inputs' are copied).
    pub(crate) fn set_sources(&mut self, mut sources: Vec<(usize, ArenaSpan)>) {
        sources.truncate(clusterduck_transport::FORWARDED_ARENAS);
        self.smallest = match self.allowed {
            true => sources
                .iter()
                .map(|(_, s)| s.smallest())
                .min()
                .unwrap_or(usize::MAX),
            false => usize::MAX,
        };
        self.sources = sources;
    }

    /// The input whose arena `bytes` lie in, and the value they are there,
    /// if they may go by reference.
    #[inline]
    pub(crate) fn locate(&self, bytes: &[u8]) -> Option<(usize, ArenaValue)> {
        if bytes.len() < self.smallest {
            return None;
        }
        self.locate_large(bytes)
    }

    #[cold]
    fn locate_large(&self, bytes: &[u8]) -> Option<(usize, ArenaValue)> {
        self.sources
            .iter()
            .find_map(|(input, span)| span.locate(bytes).map(|value| (*input, value)))
    }

    /// Whether something went by reference since the last
    /// [`take`](Self::take).
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any
    }

    /// A value of `input`'s arena went by reference, its frame ending at
    /// `end` in the output ring.
    pub(crate) fn wrote(&mut self, input: usize, end: u64) {
        self.written.push((input, end));
        self.any = true;
    }

    /// What went by reference since the last call.
    #[inline]
    pub(crate) fn take(&mut self) -> Forwards {
        self.any = false;
        std::mem::take(&mut self.written)
    }
}

/// A worker's side: the input frames it holds for values it forwarded, in
/// the order it forwarded them.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    pins: VecDeque<Pin>,
}

#[derive(Debug)]
struct Pin {
    input: usize,
    /// Where the forwarding frame ends in the output ring.
    until: u64,
    hold: Hold,
}

impl Pins {
    /// Holds `hold` on `input` until the output is released up to `until`.
    pub(crate) fn push(&mut self, input: usize, until: u64, hold: Hold) {
        self.pins.push_back(Pin { input, until, hold });
    }

    /// Whether frames are held.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// Ends the holds whose forwarding frames every consumer released (the
    /// output is released up to `released`).
    pub(crate) fn release(&mut self, released: u64, inputs: &mut [Inlet]) {
        while let Some(pin) = self.pins.front() {
            if pin.until > released {
                break;
            }
            let pin = self.pins.pop_front().expect("a pin");
            inputs[pin.input].reader_mut().0.unhold(pin.hold);
        }
    }
}
