//! A watchdog for tests that could hang, shared by the crate's unit tests
//! and its integration tests.

use std::time::Duration;

/// Aborts the process, with a message, if it still runs after `secs`.
pub fn watchdog(secs: u64, what: &'static str) -> impl Drop {
    struct Guard(std::sync::mpsc::Sender<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(secs))
        {
            eprintln!("watchdog: {what} still running after {secs} s, aborting");
            std::process::abort();
        }
    });
    Guard(tx)
}
