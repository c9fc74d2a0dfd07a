//! Typed handles on the nodes of a topology, and the shapes of a worker's
//! inputs: one upstream, several merged, or a bundle of several types.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use clusterduck_engine::body::{BoxError, Payload};
use clusterduck_engine::bundle::BundleVec;
use clusterduck_engine::graph::Grouping;
use clusterduck_engine::replica::KeyFn;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::Archived;

use crate::message::{unbox, Message};

/// A handle on a node of a [`Topology`](crate::Topology) whose outputs are
/// of type `T`; it names the node as an upstream or for the debugger.
pub struct Node<T> {
    pub(crate) topology: u64,
    pub(crate) id: usize,
    pub(crate) name: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Node<T> {
    pub(crate) fn new(topology: u64, id: usize, name: &str) -> Self {
        Self {
            topology,
            id,
            name: name.into(),
            _type: PhantomData,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn to_ref(&self) -> NodeRef {
        NodeRef {
            topology: self.topology,
            name: self.name.clone(),
        }
    }
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        Self {
            topology: self.topology,
            id: self.id,
            name: self.name.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node<{}>({:?})", std::any::type_name::<T>(), self.name)
    }
}

/// An upstream, untyped: which topology it belongs to and its name.
#[derive(Clone, Debug)]
pub struct NodeRef {
    pub(crate) topology: u64,
    pub(crate) name: Arc<str>,
}

/// The upstreams of a worker whose inputs are merged: one node, or several
/// of the same output type (an array, a slice or a `Vec` of handles). Each
/// upstream's values arrive in the order it sent them.
///
/// When the worker runs as several replicas, each input is split among
/// them by its grouping: [shuffle](Grouping::Shuffle) for a bare handle;
/// another with [`Node::by_key`], [`Node::broadcast`], [`Node::one`] or
/// [`Node::by_seq`].
pub trait Inputs {
    /// The type of the values the worker receives.
    type Value: Message;

    /// The upstreams, in order.
    fn upstreams(&self) -> Vec<NodeRef>;

    /// Per upstream: how it is split among the worker's replicas, and the
    /// key function of an input grouped by key.
    fn groupings(&self) -> Vec<(Grouping, Option<KeyFn>)> {
        self.upstreams()
            .iter()
            .map(|_| (Grouping::Shuffle, None))
            .collect()
    }
}

/// An upstream with the grouping its consumer chooses for it (see
/// [`Inputs`]); made by [`Node::by_key`] and its siblings.
pub struct Grouped<'a, T> {
    node: &'a Node<T>,
    grouping: Grouping,
    key: Option<KeyFn>,
}

impl<T> fmt::Debug for Grouped<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.node, self.grouping.label())
    }
}

impl<T: Message> Node<T> {
    /// This node as an input split among the consumer's replicas by the
    /// key `key` gives each value (read in place, archived): all values of
    /// one key reach the same replica. Keys are hashed to the run's key
    /// groups ([`Launch::key_groups`](crate::Launch::key_groups)), and
    /// groups dealt to replicas in contiguous ranges. The key must be the
    /// same in every process: hash with a fixed function (e.g.
    /// [`key_of`](crate::key_of)), not a randomly seeded one.
    ///
    /// Each replica reads every value's key and keeps its own: a key
    /// function should be cheap.
    pub fn by_key<F>(&self, key: F) -> Grouped<'_, T>
    where
        F: Fn(&Archived<T>) -> u64 + Send + Sync + 'static,
    {
        let key: KeyFn = Arc::new(move |bytes: &[u8]| {
            let value = rkyv::access::<Archived<T>, rancor::Error>(bytes)?;
            Ok(key(value))
        });
        Grouped {
            node: self,
            grouping: Grouping::ByKey,
            key: Some(key),
        }
    }

    /// This node as an input dealt round-robin among the consumer's
    /// replicas (the default of a worker's inputs).
    pub fn shuffle(&self) -> Grouped<'_, T> {
        self.grouped(Grouping::Shuffle)
    }

    /// This node as an input every replica of the consumer receives whole.
    pub fn broadcast(&self) -> Grouped<'_, T> {
        self.grouped(Grouping::Broadcast)
    }

    /// This node as an input only the consumer's replica 0 receives.
    pub fn one(&self) -> Grouped<'_, T> {
        self.grouped(Grouping::One)
    }

    /// This node as an input split among the consumer's replicas by id:
    /// replica `seq mod replicas` receives id `seq` (the grouping of every
    /// bundled worker's inputs).
    pub fn by_seq(&self) -> Grouped<'_, T> {
        self.grouped(Grouping::BySeq)
    }

    fn grouped(&self, grouping: Grouping) -> Grouped<'_, T> {
        Grouped {
            node: self,
            grouping,
            key: None,
        }
    }
}

impl<T: Message> Inputs for Grouped<'_, T> {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        vec![self.node.to_ref()]
    }
    fn groupings(&self) -> Vec<(Grouping, Option<KeyFn>)> {
        vec![(self.grouping, self.key.clone())]
    }
}

impl<T: Message> Inputs for Vec<Grouped<'_, T>> {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        self.iter().map(|g| g.node.to_ref()).collect()
    }
    fn groupings(&self) -> Vec<(Grouping, Option<KeyFn>)> {
        self.iter().map(|g| (g.grouping, g.key.clone())).collect()
    }
}

impl<T: Message> Inputs for &Node<T> {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        vec![self.to_ref()]
    }
}

impl<T: Message, const N: usize> Inputs for [&Node<T>; N] {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        self.iter().map(|n| n.to_ref()).collect()
    }
}

impl<T: Message> Inputs for &[&Node<T>] {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        self.iter().map(|n| n.to_ref()).collect()
    }
}

impl<T: Message> Inputs for Vec<&Node<T>> {
    type Value = T;
    fn upstreams(&self) -> Vec<NodeRef> {
        self.iter().map(|n| n.to_ref()).collect()
    }
}

/// The upstreams of a bundled worker: a tuple of node handles, of any
/// types, 1 to 16 of them. The worker receives, for each id, a tuple of one
/// value per upstream, in the same order.
pub trait Bundle {
    /// The tuple of values the worker receives.
    type Values: BundleValues;

    /// The upstreams, in order.
    fn upstreams(&self) -> Vec<NodeRef>;

    /// Builds the tuple from one value per upstream, in order.
    #[doc(hidden)]
    fn unpack(values: BundleVec<Payload>) -> Result<Self::Values, BoxError>;
}

/// What a zero-copy bundled worker
/// ([`Topology::bundled_archived`](crate::Topology::bundled_archived))
/// receives for a bundle of upstreams `B`: a tuple of references to the
/// archived values (a `Vec` of them for a `Vec` of handles).
pub type ArchivedBundle<'a, B> = <<B as Bundle>::Values as BundleValues>::Archived<'a>;

/// The values of a bundle (a tuple of value types, or a `Vec` of one), as
/// a zero-copy bundled worker reads them. Implemented for every bundle the
/// API builds; never implement it by hand.
pub trait BundleValues: Send + 'static {
    /// The tuple of references to archived values.
    type Archived<'a>;

    /// Checks the archived bytes of one value per upstream, in order, and
    /// builds the tuple of references to them.
    #[doc(hidden)]
    fn access<'a>(values: &[&'a [u8]]) -> Result<Self::Archived<'a>, BoxError>;

    /// Archives one value per upstream, in order (where values were not in
    /// rings).
    #[doc(hidden)]
    fn archive(values: BundleVec<Payload>) -> Result<Vec<AlignedVec>, BoxError>;

    /// The types of the values, per upstream.
    #[doc(hidden)]
    fn type_ids() -> Vec<TypeId>;
}

/// Checks `bytes` as the archived value of upstream `index`.
fn access_one<'a, T: Message>(
    bytes: Option<&&'a [u8]>,
    index: usize,
) -> Result<&'a Archived<T>, BoxError> {
    let bytes = bytes.ok_or("internal error: a bundle is short of values")?;
    rkyv::access::<Archived<T>, rancor::Error>(bytes)
        .map_err(|e| format!("bad value from upstream #{index}: {e}").into())
}

/// Archives a value of type `T`.
fn archive_one<T: Message>(value: Option<Payload>) -> Result<AlignedVec, BoxError> {
    let value = unbox::<T>(value.ok_or("internal error: a bundle is short of values")?)?;
    Ok(rkyv::to_bytes::<rancor::Error>(&value)?)
}

macro_rules! bundle_tuple {
    ($($t:ident $v:ident),+) => {
        impl<$($t: Message),+> Bundle for ($(&Node<$t>,)+) {
            type Values = ($($t,)+);

            fn upstreams(&self) -> Vec<NodeRef> {
                let ($($v,)+) = self;
                vec![$($v.to_ref()),+]
            }

            fn unpack(values: BundleVec<Payload>) -> Result<Self::Values, BoxError> {
                let mut values = values.into_iter();
                $(
                    let $v = unbox::<$t>(
                        values.next().ok_or("internal error: a bundle is short of values")?,
                    )?;
                )+
                Ok(($($v,)+))
            }
        }

        impl<$($t: Message),+> BundleValues for ($($t,)+) {
            type Archived<'a> = ($(&'a Archived<$t>,)+);

            fn access<'a>(values: &[&'a [u8]]) -> Result<Self::Archived<'a>, BoxError> {
                let mut values = values.iter();
                let mut index = 0;
                $(
                    let $v = access_one::<$t>(values.next(), index)?;
                    index += 1;
                )+
                let _ = index;
                Ok(($($v,)+))
            }

            fn archive(values: BundleVec<Payload>) -> Result<Vec<AlignedVec>, BoxError> {
                let mut values = values.into_iter();
                Ok(vec![$(archive_one::<$t>(values.next())?),+])
            }

            fn type_ids() -> Vec<TypeId> {
                vec![$(TypeId::of::<$t>()),+]
            }
        }
    };
}

bundle_tuple!(A a);
bundle_tuple!(A a, B b);
bundle_tuple!(A a, B b, C c);
bundle_tuple!(A a, B b, C c, D d);
bundle_tuple!(A a, B b, C c, D d, E e);
bundle_tuple!(A a, B b, C c, D d, E e, F f);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k, L l);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k, L l, M m);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k, L l, M m, N n);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k, L l, M m, N n, O o);
bundle_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j, K k, L l, M m, N n, O o, P p);

/// Any number of upstreams of one type, bundled: the worker receives a `Vec`
/// with one value per upstream, in order.
impl<T: Message> Bundle for Vec<&Node<T>> {
    type Values = Vec<T>;

    fn upstreams(&self) -> Vec<NodeRef> {
        self.iter().map(|n| n.to_ref()).collect()
    }

    fn unpack(values: BundleVec<Payload>) -> Result<Self::Values, BoxError> {
        values.into_iter().map(unbox::<T>).collect()
    }
}

impl<T: Message> BundleValues for Vec<T> {
    type Archived<'a> = Vec<&'a Archived<T>>;

    fn access<'a>(values: &[&'a [u8]]) -> Result<Self::Archived<'a>, BoxError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| access_one::<T>(Some(v), i))
            .collect()
    }

    fn archive(values: BundleVec<Payload>) -> Result<Vec<AlignedVec>, BoxError> {
        values
            .into_iter()
            .map(|v| archive_one::<T>(Some(v)))
            .collect()
    }

    fn type_ids() -> Vec<TypeId> {
        vec![TypeId::of::<T>()]
    }
}
