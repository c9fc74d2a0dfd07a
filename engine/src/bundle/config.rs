//! How a bundled node joins its upstreams: order, memory bound, and the
//! policies for ids that never complete or do not fit.

use std::time::Duration;

use crate::Seq;

/// Default number of slots of a sequenced node's reorder window, and of
/// pending bundles of an unordered node's table.
pub const DEFAULT_WINDOW: usize = 4096;

/// Default time a bundle that blocks progress is waited for before the gap
/// policy applies.
pub const DEFAULT_GAP_TIMEOUT: Duration = Duration::from_secs(10);

/// In which order a bundled node processes its bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Order {
    /// Each bundle is processed as soon as it is complete; ids may be sparse
    /// or hashed.
    Unordered,
    /// Bundle `n` is processed only after bundle `n - 1`, starting at `first`.
    Sequenced {
        /// The first id processed; smaller ids are late.
        first: Seq,
    },
}

/// What happens to a bundle that never completes (a gap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GapPolicy {
    /// The run fails, naming the id and the upstreams that did not send it.
    #[default]
    Fail,
    /// The bundle is dropped, counted and reported; processing goes on.
    Skip,
}

/// What an unordered node does when its table of pending bundles is full and
/// a value for a new id arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OverflowPolicy {
    /// The upstream that sent the value is not read until a bundle completes
    /// or is given up as a gap: no loss, but that upstream waits.
    #[default]
    Backpressure,
    /// The oldest pending bundle is dropped, counted and reported as evicted.
    EvictOldest,
    /// The run fails, naming the id that did not fit.
    Fail,
}

/// The configuration of a bundled node.
///
/// The memory a bundled node holds is bounded by [`window`](Self::window)
/// bundles (plus one value held back per upstream), whatever its upstreams
/// send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bundling {
    pub(crate) order: Order,
    pub(crate) window: usize,
    pub(crate) gap_timeout: Duration,
    pub(crate) on_gap: GapPolicy,
    pub(crate) on_overflow: OverflowPolicy,
}

impl Default for Bundling {
    fn default() -> Self {
        Self::unordered()
    }
}

impl Bundling {
    /// Bundles processed as they complete, in any order; ids may be sparse.
    pub fn unordered() -> Self {
        Self {
            order: Order::Unordered,
            window: DEFAULT_WINDOW,
            gap_timeout: DEFAULT_GAP_TIMEOUT,
            on_gap: GapPolicy::Fail,
            on_overflow: OverflowPolicy::Backpressure,
        }
    }

    /// Bundles processed strictly in id order, starting at `first`.
    pub fn sequenced(first: Seq) -> Self {
        Self {
            order: Order::Sequenced { first },
            ..Self::unordered()
        }
    }

    /// The reorder window (sequenced) or the table capacity (unordered), in
    /// bundles. A sequenced node accepts ids in `[next, next + window)`; an
    /// upstream that runs further ahead is not read until the window moves.
    pub fn window(mut self, bundles: usize) -> Self {
        self.window = bundles;
        self
    }

    /// How long a bundle that blocks progress is waited for before
    /// [`GapPolicy`] applies. For a sequenced node the clock starts when the
    /// next id is missing and a later id has arrived; for an unordered node,
    /// at the bundle's first value.
    pub fn gap_timeout(mut self, timeout: Duration) -> Self {
        self.gap_timeout = timeout;
        self
    }

    /// What to do with a gap; [`GapPolicy::Fail`] by default.
    pub fn on_gap(mut self, policy: GapPolicy) -> Self {
        self.on_gap = policy;
        self
    }

    /// What an unordered node does when its table is full;
    /// [`OverflowPolicy::Backpressure`] by default.
    pub fn on_overflow(mut self, policy: OverflowPolicy) -> Self {
        self.on_overflow = policy;
        self
    }

    /// The processing order.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The window or capacity, in bundles.
    pub fn window_len(&self) -> usize {
        self.window
    }

    /// The gap timeout.
    pub fn gap_timeout_len(&self) -> Duration {
        self.gap_timeout
    }

    /// The gap policy.
    pub fn gap_policy(&self) -> GapPolicy {
        self.on_gap
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.on_overflow
    }
}
