//! The builder of a topology: spouts, workers and bundled workers, each a
//! named node with a typed function.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clusterduck_engine::body::{Body, BoxError, NodeImpl};
use clusterduck_engine::bundle::Bundling;
use clusterduck_engine::graph::{GraphError, Grouping, NodeSpec};
use clusterduck_engine::replica::KeyFn;
use clusterduck_engine::Seq;
use rkyv::Archived;

use crate::body::{Bundled, InPlace, InPlaceBundled, Merge, Spout};
use crate::dispatcher::Dispatcher;
use crate::emitter::Emitter;
use crate::message::{Message, TypedCodec};
use crate::node::{ArchivedBundle, Bundle, BundleValues, Inputs, Node, NodeRef};

/// Gives each topology of a process its own id, so that a handle from
/// another topology is caught.
static NEXT_TOPOLOGY: AtomicU64 = AtomicU64::new(1);

/// A topology under construction: a DAG of spouts and workers.
///
/// Nodes are declared in order, each naming its upstreams by their handles,
/// so a topology built through this API has no cycle and no unknown
/// upstream; names and shapes are checked when it is launched, before
/// anything starts.
///
/// Building must be deterministic: when nodes run in their own processes,
/// every process runs the same building code and checks that it got the
/// same topology.
///
/// Node functions are `Clone`: a node run as several replicas in one
/// process (local mode, [`Launch::replicas`](crate::Launch::replicas)) gets
/// a copy of its function per replica, made from the function as it was
/// declared, as Storm and Flink copy a serialised function per task. A
/// closure is `Clone` when what it captures is (share state across
/// replicas through an `Arc`, if you mean to).
pub struct Topology {
    pub(crate) id: u64,
    pub(crate) specs: Vec<NodeSpec>,
    pub(crate) impls: Vec<NodeImpl>,
    /// The first mistake found while building, reported at launch.
    pub(crate) deferred: Option<GraphError>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("nodes", &self.specs)
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self {
            // Relaxed: only uniqueness matters.
            id: NEXT_TOPOLOGY.fetch_add(1, Ordering::Relaxed),
            specs: Vec::new(),
            impls: Vec::new(),
            deferred: None,
        }
    }

    /// Adds a spout: a data source whose function is given a [`Dispatcher`]
    /// and sends `(seq, value)` pairs through it. When the function returns,
    /// its stream ends; an error it returns fails the run, naming the spout.
    pub fn spout<T, F>(&mut self, name: &str, f: F) -> Node<T>
    where
        T: Message,
        F: FnOnce(&mut Dispatcher<'_, T>) -> Result<(), BoxError> + Clone + Send + 'static,
    {
        let make = move || {
            Body::Spout(Box::new(Spout {
                f: f.clone(),
                _type: PhantomData,
            }))
        };
        self.add::<T>(
            NodeSpec::spout(name, std::any::type_name::<T>()),
            make,
            Vec::new(),
        )
    }

    /// Adds a worker over one upstream, or several of the same type merged
    /// (`[&a, &b]`): its function is called once per input value, each
    /// upstream's values in the order sent. It emits zero, one or many values
    /// through the [`Emitter`]; they keep the input's id unless it sets one.
    pub fn worker<I, U, F>(&mut self, name: &str, inputs: I, f: F) -> Node<U>
    where
        I: Inputs,
        U: Message,
        F: FnMut(Seq, I::Value, &mut Emitter<'_, U>) -> Result<(), BoxError>
            + Clone
            + Send
            + 'static,
    {
        let (spec, keys) = self.worker_spec::<I, U>(name, &inputs);
        let make = move || {
            Body::Worker(Box::new(Merge {
                f: f.clone(),
                _type: PhantomData::<fn(I::Value) -> U>,
            }))
        };
        self.add::<U>(spec, make, keys)
    }

    /// Adds a worker that takes its input zero-copy: a reference to the
    /// value as rkyv archived it, where it lies in its upstream's ring,
    /// validated (bytes from another process are never trusted) but never
    /// decoded, copied or allocated. Otherwise like [`worker`](Self::worker):
    /// one upstream or several of one type, merged.
    ///
    /// Read fields through the archived type (`value.id.to_native()`,
    /// `value.name.as_str()`); get an owned value with
    /// `rkyv::deserialize::<T, rkyv::rancor::Error>(value)`; send the input
    /// on unchanged with [`Emitter::forward`], which copies its bytes as
    /// they are. Where values are not in rings (local mode), each is
    /// archived once before the call, so the function sees the same thing
    /// in every mode.
    ///
    /// ```
    /// use clusterduck::{Emitter, Launch, Topology};
    ///
    /// let mut t = Topology::new();
    /// let words = t.spout("words", |out| {
    ///     for (i, w) in ["duck", "goose", "swan"].into_iter().enumerate() {
    ///         out.send(i as u64, w.to_string())?;
    ///     }
    ///     Ok(())
    /// });
    /// // Keeps the short words, passing them on as they are.
    /// let short = t.worker_archived("short", &words, |_, w, out: &mut Emitter<String>| {
    ///     if w.len() <= 4 {
    ///         out.forward(w);
    ///     }
    ///     Ok(())
    /// });
    /// t.sink_archived("print", &short, |seq, w| {
    ///     println!("{seq} {}", w.as_str());
    ///     Ok(())
    /// });
    /// let report = t.launch(Launch::local()).unwrap();
    /// assert_eq!(report.node("short").unwrap().messages_out, 2);
    /// ```
    pub fn worker_archived<I, U, F>(&mut self, name: &str, inputs: I, f: F) -> Node<U>
    where
        I: Inputs,
        U: Message,
        F: FnMut(Seq, &Archived<I::Value>, &mut Emitter<'_, U>) -> Result<(), BoxError>
            + Clone
            + Send
            + 'static,
    {
        let (spec, keys) = self.worker_spec::<I, U>(name, &inputs);
        let make = move || {
            Body::Worker(Box::new(InPlace {
                f: f.clone(),
                scratch: Default::default(),
                _type: PhantomData::<fn(I::Value) -> U>,
            }))
        };
        self.add::<U>(spec, make, keys)
    }

    /// Adds a worker that takes its input zero-copy (see
    /// [`worker_archived`](Self::worker_archived)) and emits nothing.
    pub fn sink_archived<I, F>(&mut self, name: &str, inputs: I, mut f: F) -> Node<()>
    where
        I: Inputs,
        F: FnMut(Seq, &Archived<I::Value>) -> Result<(), BoxError> + Clone + Send + 'static,
    {
        self.worker_archived(name, inputs, move |seq, value, _: &mut Emitter<'_, ()>| {
            f(seq, value)
        })
    }

    /// Adds a worker that emits nothing: the end of a pipeline.
    pub fn sink<I, F>(&mut self, name: &str, inputs: I, mut f: F) -> Node<()>
    where
        I: Inputs,
        F: FnMut(Seq, I::Value) -> Result<(), BoxError> + Clone + Send + 'static,
    {
        self.worker(name, inputs, move |seq, value, _: &mut Emitter<'_, ()>| {
            f(seq, value)
        })
    }

    /// Adds a bundled worker: for each id, its function receives one value
    /// from every upstream, as a tuple in the order of `upstreams` (which may
    /// have different types), or a `Vec` for a `Vec` of handles of one type.
    ///
    /// [`Bundling`] sets the order (unordered, or sequenced from a first id),
    /// the memory bound and the policies for duplicates, late ids and gaps.
    ///
    /// Sequencing is a property of bundling, so a plain worker cannot be
    /// sequenced: a [`Bundling`] is not an input a plain worker takes (this
    /// does not compile, for that reason: E0277, a trait not implemented)...
    ///
    /// ```compile_fail,E0277
    /// # use clusterduck::{Topology, Bundling, Emitter};
    /// let mut t = Topology::new();
    /// let a = t.spout("A", |out| out.send(0, 1u64).map_err(Into::into));
    /// t.worker("B", Bundling::sequenced(0), |_, v: u64, out: &mut Emitter<u64>| Ok(out.emit(v)));
    /// ```
    ///
    /// ...while the same upstream, bundled, is sequenced:
    ///
    /// ```
    /// # use clusterduck::{Topology, Bundling, Emitter};
    /// let mut t = Topology::new();
    /// let a = t.spout("A", |out| out.send(0, 1u64).map_err(Into::into));
    /// t.bundled("B", (&a,), Bundling::sequenced(0), |_, (v,): (u64,), out: &mut Emitter<u64>| Ok(out.emit(v)));
    /// ```
    pub fn bundled<B, U, F>(
        &mut self,
        name: &str,
        upstreams: B,
        bundling: Bundling,
        f: F,
    ) -> Node<U>
    where
        B: Bundle,
        U: Message,
        F: FnMut(Seq, B::Values, &mut Emitter<'_, U>) -> Result<(), BoxError>
            + Clone
            + Send
            + 'static,
    {
        let names = self.upstream_names(name, upstreams.upstreams());
        let make = move || {
            Body::Worker(Box::new(Bundled {
                f: f.clone(),
                unpack: B::unpack,
                _type: PhantomData::<fn(B::Values) -> U>,
            }))
        };
        let spec = NodeSpec::bundled(name, names, bundling, std::any::type_name::<U>());
        self.add::<U>(spec, make, Vec::new())
    }

    /// Adds a bundled worker that takes its values zero-copy: for each id,
    /// its function receives a tuple of references to the values as rkyv
    /// archived them (a `Vec` of them for a `Vec` of handles), validated,
    /// where they lie in their upstreams' rings. Otherwise like
    /// [`bundled`](Self::bundled): same bundling, same policies.
    ///
    /// The values a bundle waits for stay in their rings until it is
    /// processed: the reorder window holds ring space, not heap. A fast
    /// upstream therefore waits for a slow one once its ring is full of
    /// values waiting for their bundles, and an upstream that sends its ids
    /// out of order must find room in its own ring for every value it sends
    /// before the one the window waits for: size
    /// [`Launch::ring_bytes`](crate::Launch::ring_bytes) for that reordering
    /// distance. Beyond it the upstream cannot send the id the window needs,
    /// and the gap policy applies after the gap timeout (by default the run
    /// fails, naming the id and that upstream); [`bundled`](Self::bundled),
    /// which holds decoded values, has no such limit. [`Emitter::forward`]
    /// sends one of the values on as it is. In local mode each value is
    /// archived once before the call.
    ///
    /// ```
    /// use clusterduck::{Bundling, Emitter, Launch, Topology};
    ///
    /// let mut t = Topology::new();
    /// let names = t.spout("names", |out| {
    ///     for (i, n) in ["ada", "grace"].into_iter().enumerate() {
    ///         out.send(i as u64, n.to_string())?;
    ///     }
    ///     Ok(())
    /// });
    /// let ages = t.spout("ages", |out| {
    ///     for (i, a) in [36u32, 85].into_iter().enumerate() {
    ///         out.send(i as u64, a)?;
    ///     }
    ///     Ok(())
    /// });
    /// let people = t.bundled_archived(
    ///     "people",
    ///     (&names, &ages),
    ///     Bundling::sequenced(0),
    ///     |_, (name, age), out: &mut Emitter<String>| {
    ///         out.emit(format!("{} is {}", name.as_str(), age.to_native()));
    ///         Ok(())
    ///     },
    /// );
    /// # let _ = people;
    /// t.launch(Launch::local()).unwrap();
    /// ```
    pub fn bundled_archived<B, U, F>(
        &mut self,
        name: &str,
        upstreams: B,
        bundling: Bundling,
        f: F,
    ) -> Node<U>
    where
        B: Bundle,
        U: Message,
        F: for<'a> FnMut(Seq, ArchivedBundle<'a, B>, &mut Emitter<'_, U>) -> Result<(), BoxError>
            + Clone
            + Send
            + 'static,
    {
        let names = self.upstream_names(name, upstreams.upstreams());
        let make = move || {
            Body::Worker(Box::new(InPlaceBundled {
                f: f.clone(),
                types: <B::Values as BundleValues>::type_ids(),
                _type: PhantomData::<fn(B::Values) -> U>,
            }))
        };
        let spec = NodeSpec::bundled(name, names, bundling, std::any::type_name::<U>());
        self.add::<U>(spec, make, Vec::new())
    }

    /// The number of nodes declared.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether no node is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Adds the node `spec`, whose function `make` makes: once for the
    /// node, and again for each further replica run in this process.
    fn add<T: Message>(
        &mut self,
        spec: NodeSpec,
        make: impl Fn() -> Body + Send + 'static,
        keys: Vec<Option<KeyFn>>,
    ) -> Node<T> {
        let node = Node::new(self.id, self.specs.len(), &spec.name);
        self.specs.push(spec);
        self.impls.push(NodeImpl {
            body: make(),
            codec: Arc::new(TypedCodec::<T>::new()),
            again: Some(Box::new(make)),
            keys,
        });
        node
    }

    /// The spec of a worker over `inputs`, with their groupings, and its
    /// key functions.
    fn worker_spec<I: Inputs, U>(
        &mut self,
        name: &str,
        inputs: &I,
    ) -> (NodeSpec, Vec<Option<KeyFn>>) {
        let upstreams = self.upstream_names(name, inputs.upstreams());
        let mut spec = NodeSpec::worker(name, upstreams, std::any::type_name::<U>());
        let (groupings, keys): (Vec<Grouping>, Vec<Option<KeyFn>>) =
            inputs.groupings().into_iter().unzip();
        spec.groupings = groupings;
        (spec, keys)
    }

    /// The names of `upstreams`, recording the first that belongs to another
    /// topology.
    fn upstream_names(&mut self, node: &str, upstreams: Vec<NodeRef>) -> Vec<String> {
        upstreams
            .into_iter()
            .map(|up| {
                if up.topology != self.id && self.deferred.is_none() {
                    self.deferred = Some(GraphError::UnknownUpstream {
                        node: node.to_owned(),
                        upstream: format!("{} (a node of another topology)", up.name),
                    });
                }
                up.name.to_string()
            })
            .collect()
    }
}
