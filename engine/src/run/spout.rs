//! The run of a spout: call its function, then end its stream.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::{node_failure, NodeOutput, RunControl};
use crate::body::SpoutFn;
use crate::report::{Failure, NodeReport};

/// Everything a spout thread owns.
pub(crate) struct SpoutTask<O> {
    pub(crate) name: String,
    pub(crate) body: Box<dyn SpoutFn>,
    pub(crate) output: O,
    pub(crate) control: Arc<RunControl>,
}

impl<O: NodeOutput> SpoutTask<O> {
    /// Runs the spout's function; its return ends the stream.
    pub(crate) fn run(mut self) -> NodeReport {
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: "spout".to_owned(),
            ..NodeReport::default()
        };
        let body = self.body;
        let output = &mut self.output;
        let started = std::time::Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| body.run(output)));
        let ran = started.elapsed();
        // An error returned after a send was refused for draining is the
        // spout obeying the stop request, not a failure.
        let obeyed_stop = matches!(result, Ok(Err(_))) && self.output.refused_for_stop();
        match node_failure(result) {
            Some(message) if !obeyed_stop && !self.control.stop.is_aborted() => {
                self.control.fail(Failure::Node {
                    node: self.name.clone(),
                    seq: None,
                    message: message.clone(),
                });
                report.error = Some(message);
            }
            _ => self.output.finish(),
        }
        report.messages_out = self.output.emitted();
        report.skipped = self.output.resent();
        report.timed(ran, std::time::Duration::ZERO, self.output.blocked());
        report
    }
}
