//! The one place the transport's atomics, fences and futexes come from.
//!
//! Normally these are std's atomics and Linux futexes on words in shared
//! memory. Under `cfg(loom)` they are loom's, and a futex is modelled by a
//! mutex and a condition variable with the same "compare, then sleep
//! atomically" contract, so the model tests run the very index protocol the
//! rings run and loom reports a lost wake-up as a deadlock.

use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Why a [`futex_wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word no longer held the expected value, or a signal: the
    /// caller re-checks its condition.
    Woken,
    /// The timeout passed first.
    TimedOut,
}

/// A CPU hint inside a short busy-wait.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives the core to another runnable process, if there is one.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Sleeps while `word` holds `expected`, at most `timeout`.
///
/// The comparison and the sleep are atomic with respect to [`futex_wake_all`]:
/// a waker that changes `word` and then wakes cannot be missed. The futex is
/// a shared (not process-private) one, so it works across processes that map
/// the same file.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Wake {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 4-byte atomic for the whole call (it
    // is borrowed); FUTEX_WAIT only reads it and `ts` is a valid timespec on
    // our stack. The remaining arguments are ignored by FUTEX_WAIT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wake::TimedOut
    } else {
        Wake::Woken
    }
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 4-byte atomic; FUTEX_WAKE does not
    // access memory through the pointer beyond hashing its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(loom)]
loom::lazy_static! {
    /// The model's futex: one wait queue for every word, as spurious wake-ups
    /// are allowed by the contract.
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

/// Loom's futex: no timeout, so that a wake-up the protocol fails to send
/// shows up as a deadlock instead of being papered over by a timer.
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Duration) -> Wake {
    let guard = FUTEX.0.lock().unwrap();
    // SYNC: the waker changes `word` before taking the lock in
    // `futex_wake_all`, so under the lock we either see the change or are
    // already queued when it notifies.
    if word.load(Ordering::Acquire) != expected {
        return Wake::Woken;
    }
    drop(FUTEX.1.wait(guard).unwrap());
    Wake::Woken
}

/// Loom's futex wake: see [`futex_wait`].
#[cfg(loom)]
pub(crate) fn futex_wake_all(_word: &AtomicU32) {
    let _guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
}
