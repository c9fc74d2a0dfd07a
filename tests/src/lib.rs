//! Helpers shared by Clusterduck's end-to-end tests.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Aborts the whole test process if it is still alive `limit` after it was
/// armed: a test that hangs fails loudly instead of stalling CI. Dropping
/// the guard disarms it.
#[derive(Debug)]
pub struct Watchdog {
    disarm: mpsc::Sender<()>,
}

/// Arms a [`Watchdog`] for the test `name`.
pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (disarm, armed) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
            eprintln!("watchdog: test {name} still running after {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog { disarm }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.disarm.send(());
    }
}
