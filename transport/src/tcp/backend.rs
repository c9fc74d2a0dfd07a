//! Which I/O backend links use: io_uring where the kernel allows it, the
//! readiness (epoll) backend elsewhere; `CLUSTERDUCK_IO` forces one.

use std::sync::OnceLock;

/// The environment variable that forces a backend: `uring` or `epoll`.
pub const IO_ENV: &str = "CLUSTERDUCK_IO";

/// How a link drives its socket. Both backends speak the same protocol and
/// pass the same conformance tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// io_uring: batched submissions, sends straight from the ring's mapped
    /// memory, a multishot receive into a provided-buffer ring for credit.
    Uring,
    /// Non-blocking sockets and `ppoll(2)`: runs where io_uring is refused
    /// (seccomp, `kernel.io_uring_disabled`, an old kernel).
    Epoll,
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoBackend::Uring => "uring",
            IoBackend::Epoll => "epoll",
        })
    }
}

/// The backend for this process, decided once (and said once on stderr):
/// `CLUSTERDUCK_IO=uring|epoll` forces one; otherwise io_uring if the kernel
/// lets this process set up a ring with the operations links use.
pub fn io_backend() -> IoBackend {
    static CHOICE: OnceLock<IoBackend> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let (backend, why) = choose(std::env::var(IO_ENV).ok().as_deref(), probe_uring());
        tracing::info!("tcp links use the {backend} backend ({why})");
        backend
    })
}

/// The choice, without side effects: what was asked and what the probe said.
fn choose(forced: Option<&str>, probe: Result<(), String>) -> (IoBackend, String) {
    match (forced, probe) {
        (Some("epoll"), _) => (IoBackend::Epoll, format!("{IO_ENV}=epoll")),
        (Some("uring"), Ok(())) => (IoBackend::Uring, format!("{IO_ENV}=uring")),
        (Some("uring"), Err(e)) => (
            IoBackend::Epoll,
            format!("{IO_ENV}=uring, but io_uring is refused: {e}"),
        ),
        (Some(other), probe) => {
            let (b, why) = choose(None, probe);
            (
                b,
                format!("{IO_ENV}={other:?} is not uring or epoll; {why}"),
            )
        }
        (None, Ok(())) => (IoBackend::Uring, "io_uring available".into()),
        (None, Err(e)) => (IoBackend::Epoll, format!("io_uring refused: {e}")),
    }
}

/// Whether this process may use io_uring for links: sets up a small ring and
/// checks that the kernel has every operation the backend submits.
pub fn probe_uring() -> Result<(), String> {
    super::uring::probe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_forces_and_a_refusal_falls_back() {
        assert_eq!(choose(Some("epoll"), Ok(())).0, IoBackend::Epoll);
        assert_eq!(choose(Some("uring"), Ok(())).0, IoBackend::Uring);
        assert_eq!(choose(Some("uring"), Err("no".into())).0, IoBackend::Epoll);
        assert_eq!(choose(None, Err("EPERM".into())).0, IoBackend::Epoll);
        assert_eq!(choose(None, Ok(())).0, IoBackend::Uring);
        let (b, why) = choose(Some("fast"), Ok(()));
        assert_eq!(b, IoBackend::Uring);
        assert!(why.contains("not uring or epoll"), "{why}");
    }
}
