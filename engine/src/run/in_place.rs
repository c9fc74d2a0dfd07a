//! The loop of a worker that takes its values archived, in place: each value
//! is handed to the function where it lies in its upstream's ring, never
//! decoded, copied or queued. Only a plain worker (nothing to bundle or
//! reorder) whose every input is a ring runs this way.

use super::inlet::{BadInput, RING_POLL};
use super::worker::{call_guarded, WorkerTask};
use super::NodeOutput;
use super::TICK;
use crate::report::NodeReport;

/// Why the loop stops early.
enum Halt {
    /// A frame or value that could not be read.
    Bad(BadInput),
    /// The function failed (the run was told).
    Failed(String),
}

impl From<BadInput> for Halt {
    fn from(bad: BadInput) -> Self {
        Halt::Bad(bad)
    }
}

impl<O: NodeOutput> WorkerTask<O> {
    /// Whether this worker runs [`run_in_place`](Self::run_in_place).
    pub(crate) fn runs_in_place(&self) -> bool {
        self.body.takes_archived() && !self.core.bundles()
    }

    /// Runs the worker to the end of its inputs, or until the run aborts,
    /// calling its function with each value in place.
    pub(crate) fn run_in_place(mut self) -> NodeReport {
        let mut report = NodeReport {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            ..NodeReport::default()
        };
        let n = self.inputs.len();
        let mut ended = vec![false; n];
        // As in the decoding loop: stay on an input while it has values,
        // move on when it runs dry.
        let mut current = 0;
        loop {
            if self.control.stop.is_aborted() {
                break;
            }
            let open: Vec<usize> = (0..n)
                .map(|i| (current + i) % n)
                .filter(|u| !ended[*u] && !self.inputs[*u].is_broken())
                .collect();
            if open.is_empty() {
                if ended.iter().all(|e| *e) {
                    self.output.finish();
                    break;
                }
                // Only broken inputs left: the master sees the dead
                // upstream and stops the run.
                std::thread::sleep(TICK);
                continue;
            }
            let mut took = false;
            for u in &open {
                match self.visit(*u, None, &mut ended[*u], &mut report) {
                    Ok(got) => took |= got,
                    Err(message) => {
                        report.error = Some(message);
                        return self.close(report);
                    }
                }
                if took {
                    current = *u;
                    break;
                }
            }
            if took {
                continue;
            }
            // Nothing there: wake our consumers, then sleep on one input (for
            // a short slice when others may have values meanwhile).
            self.output.flush();
            let u = open[0];
            current = (u + 1) % n;
            let slice = if open.len() == 1 { TICK } else { RING_POLL };
            if let Err(message) = self.visit(u, Some(slice), &mut ended[u], &mut report) {
                report.error = Some(message);
                return self.close(report);
            }
        }
        self.close(report)
    }

    fn close(&mut self, mut report: NodeReport) -> NodeReport {
        report.messages_out = self.output.emitted();
        report
    }

    /// Reads input `u` in place, waiting up to `wait`, and calls the
    /// function with each value; an error is the node's failure message.
    fn visit(
        &mut self,
        u: usize,
        wait: Option<std::time::Duration>,
        ended: &mut bool,
        report: &mut NodeReport,
    ) -> Result<bool, String> {
        let Self {
            name,
            body,
            inputs,
            output,
            control,
            ..
        } = self;
        let result = inputs[u].visit(wait, ended, |seq, bytes| {
            report.messages_in += 1;
            call_guarded(
                &mut **body,
                &mut *output,
                control,
                name,
                seq,
                |body, out| body.call_archived(seq, u, bytes, out),
            )
            .map_err(Halt::Failed)
        });
        match result {
            Ok(got) => Ok(got),
            Err(Halt::Failed(message)) => Err(message),
            Err(Halt::Bad(bad)) => Err(self.bad_input(u, bad)),
        }
    }
}
