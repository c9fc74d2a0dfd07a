//! Ctrl-C for the runs of this process: the first press drains every
//! running run, the second aborts them.

use std::sync::{Mutex, OnceLock};

use clusterduck_engine::stop::StopSignal;

static RUNS: Mutex<Vec<StopSignal>> = Mutex::new(Vec::new());
static HANDLER: OnceLock<bool> = OnceLock::new();

/// Makes Ctrl-C stop the run behind `signal` until [`unregister`] is called.
/// Returns false if the process has another SIGINT handler (the user's), in
/// which case Ctrl-C is left to it.
pub(crate) fn register(signal: &StopSignal) -> bool {
    let installed = *HANDLER.get_or_init(|| {
        ctrlc::set_handler(|| {
            let runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
            for run in runs.iter() {
                if !run.drain() {
                    run.abort();
                }
            }
        })
        .is_ok()
    });
    if installed {
        RUNS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(signal.clone());
    }
    installed
}

/// Stops routing Ctrl-C to the run behind `signal`.
pub(crate) fn unregister(signal: &StopSignal) {
    RUNS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|s| !s.same_as(signal));
}
