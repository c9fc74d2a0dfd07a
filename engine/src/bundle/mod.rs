//! Bundling: joining, for each sequence id, one value from every upstream of
//! a node, within bounded memory and under explicit policies.
//!
//! A sequenced node uses a [`ReorderWindow`] (dense ids, a ring of slots); an
//! unordered node uses a [`SparseTable`] (any ids, a bounded map). Both are
//! deterministic and free of I/O: the caller offers values, ends upstreams
//! and polls events, passing the current time in.

mod config;
mod event;
mod seq_hash;
mod sparse;
mod window;

use std::time::Instant;

pub use config::{Bundling, GapPolicy, Order, OverflowPolicy, DEFAULT_GAP_TIMEOUT, DEFAULT_WINDOW};
pub use event::{Notice, PolicyCounts, TableEvent};
pub use sparse::SparseTable;
pub use window::ReorderWindow;

use crate::Seq;

/// The values of one bundle, one per upstream in upstream order: held
/// inline up to four upstreams, so that a bundle costs no allocation.
pub type BundleVec<V> = smallvec::SmallVec<[V; 4]>;

/// The bundling table of one node: a reorder window when sequenced, a
/// bounded map otherwise.
#[derive(Debug)]
pub enum BundleTable<V> {
    /// Sequenced: dense ids, delivered in order.
    Window(ReorderWindow<V>),
    /// Unordered: any ids, delivered as they complete.
    Sparse(SparseTable<V>),
}

macro_rules! delegate {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            BundleTable::Window($t) => $e,
            BundleTable::Sparse($t) => $e,
        }
    };
}

impl<V> BundleTable<V> {
    /// The table for a node with `upstreams` inputs and this configuration.
    pub fn new(upstreams: usize, config: Bundling) -> Self {
        match config.order() {
            Order::Sequenced { first } => {
                BundleTable::Window(ReorderWindow::new(upstreams, first, config))
            }
            Order::Unordered => BundleTable::Sparse(SparseTable::new(upstreams, config)),
        }
    }

    /// Whether a value from `upstream` may be offered now; false while its
    /// last value is held back (the table is full or the value is ahead of
    /// the window), after it ended, or once the table failed.
    pub fn accepts(&self, upstream: usize) -> bool {
        delegate!(self, t => t.accepts(upstream))
    }

    /// Whether a value with id `seq` would be taken in now, rather than
    /// held back (which stops its upstream being read).
    pub fn fits(&self, seq: Seq) -> bool {
        delegate!(self, t => t.fits(seq))
    }

    /// Offers the next value of `upstream`, which must be accepted.
    pub fn offer(&mut self, upstream: usize, seq: Seq, value: V, now: Instant) {
        delegate!(self, t => t.offer(upstream, seq, value, now))
    }

    /// Marks `upstream` as ended.
    pub fn end(&mut self, upstream: usize, now: Instant) {
        delegate!(self, t => t.end(upstream, now))
    }

    /// The next event, applying the gap timeout at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<TableEvent<V>> {
        delegate!(self, t => t.poll(now))
    }

    /// The id whose bundle would be delivered at once, and alone, if every
    /// upstream offered a value for it now: see
    /// [`ReorderWindow::lockstep_seq`]. Always `None` for an unordered table.
    pub fn lockstep_seq(&self) -> Option<Seq> {
        match self {
            BundleTable::Window(t) => t.lockstep_seq(),
            BundleTable::Sparse(_) => None,
        }
    }

    /// Whether values of `upstream` wait in the table while another
    /// upstream has none there (see [`ReorderWindow::leads`]). Always false
    /// for an unordered table.
    pub fn leads(&self, upstream: usize) -> bool {
        match self {
            BundleTable::Window(t) => t.leads(upstream),
            BundleTable::Sparse(_) => false,
        }
    }

    /// Records that the driver ran bundle `seq`, which
    /// [`lockstep_seq`](Self::lockstep_seq) gave, itself.
    ///
    /// # Panics
    /// If `seq` is not the lockstep id.
    pub fn delivered_in_lockstep(&mut self, seq: Seq) {
        match self {
            BundleTable::Window(t) => t.delivered_in_lockstep(seq),
            BundleTable::Sparse(_) => panic!("bundle {seq} delivered out of lockstep"),
        }
    }

    /// When [`poll`](Self::poll) must be called again for the gap timeout.
    pub fn deadline(&self) -> Option<Instant> {
        delegate!(self, t => t.deadline())
    }

    /// Whether every upstream has ended and every event has been taken (or
    /// the table failed).
    pub fn is_finished(&self) -> bool {
        delegate!(self, t => t.is_finished())
    }

    /// Values stored or held back: the table's memory, in values.
    pub fn buffered(&self) -> usize {
        delegate!(self, t => t.buffered())
    }

    /// What the policies did so far.
    pub fn counts(&self) -> PolicyCounts {
        delegate!(self, t => t.counts())
    }

    /// Tells the table that the run drains: spouts were stopped mid-stream
    /// and left ids unsent, so from now on gaps are skipped and counted
    /// whatever the gap policy. Stopping is not a failure.
    pub fn drain(&mut self) {
        delegate!(self, t => t.drain())
    }
}
