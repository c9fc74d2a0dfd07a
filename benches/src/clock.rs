//! The benches' timestamps, cheap enough to take twice per value.
//!
//! On x86_64 with an invariant time-stamp counter (one rate on every core,
//! through sleep states: CPUID 0x8000_0007, EDX bit 8), a stamp is the
//! counter: 7 ns a read on the reference machine, against 25 ns for the
//! system clock, which would otherwise be a sizeable part of what a `pipe`
//! run measures. Elsewhere a stamp is the system clock in nanoseconds.
//!
//! Counter ticks become nanoseconds with the rate a [`Calibration`] measures
//! over a whole run against the monotonic clock, so no process needs to
//! calibrate up front.

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether stamps are counter ticks.
static COUNTER: LazyLock<bool> = LazyLock::new(invariant_counter);

/// A timestamp, comparable across the processes of one machine.
#[inline]
pub(crate) fn stamp() -> u64 {
    if *COUNTER {
        read_counter()
    } else {
        wall_ns()
    }
}

/// Measures the rate of [`stamp`]s from a first moment to a later one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calibration {
    stamp: u64,
    at: Instant,
}

impl Calibration {
    /// Starts measuring now.
    pub(crate) fn start() -> Self {
        Self {
            stamp: stamp(),
            at: Instant::now(),
        }
    }

    /// Stamps per nanosecond since the start. Waits until a few milliseconds
    /// have passed since the start, so that the rate is precise.
    pub(crate) fn per_ns(&self) -> f64 {
        if !*COUNTER {
            return 1.0;
        }
        const SPAN: Duration = Duration::from_millis(20);
        let elapsed = self.at.elapsed();
        if elapsed < SPAN {
            std::thread::sleep(SPAN - elapsed);
        }
        let (now, at) = (stamp(), Instant::now());
        (now - self.stamp) as f64 / (at - self.at).as_nanos() as f64
    }
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
fn read_counter() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU and reads a register.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_counter() -> u64 {
    wall_ns()
}

#[cfg(target_arch = "x86_64")]
fn invariant_counter() -> bool {
    use std::arch::x86_64::__cpuid;
    // Leaf 0x8000_0000 gives the highest extended leaf; 0x8000_0007 is read
    // only if it exists.
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_counter() -> bool {
    false
}
