//! Taking values decoded: each value is read back from its frame into an
//! owned one, on the node's own thread, and queued until the core takes it.
//! A queue holds at most what one read found: an upstream is read again
//! only once its queue is empty. The way of every worker whose function
//! takes owned values.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::take::{Halt, Reading, Take};
use super::worker::WorkerTask;
use super::NodeOutput;
use crate::body::Payload;
use crate::node::{Input, NodeCore};
use crate::Seq;

/// Per upstream, the values read and not yet offered.
pub(crate) struct Decoded {
    queues: Vec<VecDeque<(Seq, Payload)>>,
}

impl Decoded {
    /// For `upstreams` upstreams.
    pub(crate) fn new(upstreams: usize) -> Self {
        Self {
            queues: (0..upstreams).map(|_| VecDeque::new()).collect(),
        }
    }
}

impl Take for Decoded {
    type Value = Payload;

    fn has_read(&self, upstream: usize) -> bool {
        !self.queues[upstream].is_empty()
    }

    fn offer_read(&mut self, upstream: usize, core: &mut NodeCore<Payload>, now: Instant) {
        if let Some((seq, value)) = self.queues[upstream].pop_front() {
            core.offer(upstream, seq, value, now);
        }
    }

    fn read<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        upstream: usize,
        _core: &mut NodeCore<Payload>,
        at: Reading<'_>,
        _now: Instant,
        wait: Option<Duration>,
    ) -> Result<bool, Halt> {
        let queue = &mut self.queues[upstream];
        let before = queue.len();
        let got = task.inputs[upstream].fill(queue, at.ended, wait)?;
        *at.count += (queue.len() - before) as u64;
        Ok(got)
    }

    #[inline]
    fn call<O: NodeOutput>(
        &mut self,
        task: &mut WorkerTask<O>,
        seq: Seq,
        input: Input<Payload>,
    ) -> Result<(), String> {
        task.call(seq, |body, out| body.call(seq, input, out))
    }
}
