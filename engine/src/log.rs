//! The engine's diagnostics: `tracing` events (the transport's too), one
//! line each on stderr, which is a node's `<name>.err` file in process mode:
//!
//! ```text
//! clusterduck[W]: tcp links use the uring backend (io_uring available)
//! clusterduck[W]: warning: tcp receive: link with 10.0.0.2:4711: peer closed the connection mid-stream
//! clusterduck: stale shared-memory segment: removed /dev/shm/..., left by a dead run
//! ```
//!
//! `[W]` names the node the line is about (every thread of a node process,
//! the thread of a node in local mode, `agent@host` for a host agent; none in
//! the launching process). Information goes plain; other levels say theirs
//! (`warning:`, `error:`, `debug:`, `trace:`). `RUST_LOG` filters as usual
//! (`RUST_LOG=debug`, `RUST_LOG=clusterduck_transport=warn`); the default
//! is `info`.
//!
//! A process the engine owns (a node, an agent) installs this format at its
//! start; the launching process installs it at `launch` unless the
//! application installed a subscriber of its own first, which then gets the
//! engine's events like any others.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// What every line of this process is about, when the whole process is one
/// node's (or one agent's).
static PROCESS: OnceLock<String> = OnceLock::new();

thread_local! {
    /// What this thread's lines are about, in local mode.
    static THREAD: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Where this process's lines go instead of stderr, while something draws
/// on stderr (the live view).
type Diversion = Box<dyn Fn(&[u8]) + Send + Sync>;
static DIVERTED: Mutex<Option<Diversion>> = Mutex::new(None);

/// Sends this process's lines (whole lines, one call each) to `to` instead
/// of stderr, until `divert(None)`: the live view prints them above its
/// table, which they would otherwise tear. Lines go through it only where
/// the engine's format is the subscriber ([`init`]).
pub fn divert(to: Option<Diversion>) {
    *DIVERTED.lock().unwrap_or_else(|e| e.into_inner()) = to;
}

/// Stderr, or the diversion.
struct Out;

impl std::io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(to) = DIVERTED.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            to(buf);
            return Ok(buf.len());
        }
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the engine's format as this process's subscriber, unless one is
/// installed already.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Out)
        .event_format(Lines)
        .try_init();
}

/// Names what every line of this process is about (once).
pub(crate) fn set_process(who: &str) {
    let _ = PROCESS.set(who.to_owned());
}

/// Names what this thread's lines are about until the guard goes.
pub(crate) fn for_thread(who: &str) -> ThreadName {
    THREAD.with(|t| *t.borrow_mut() = Some(who.to_owned()));
    ThreadName(())
}

/// Keeps a thread's name for its lines; see [`for_thread`].
#[derive(Debug)]
pub(crate) struct ThreadName(());

impl Drop for ThreadName {
    fn drop(&mut self) {
        THREAD.with(|t| *t.borrow_mut() = None);
    }
}

/// The line format.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        w.write_str("clusterduck")?;
        let thread = THREAD.with(|t| t.borrow().clone());
        if let Some(who) = thread.as_deref().or(PROCESS.get().map(String::as_str)) {
            write!(w, "[{who}]")?;
        }
        w.write_str(": ")?;
        match *event.metadata().level() {
            Level::INFO => {}
            Level::WARN => w.write_str("warning: ")?,
            Level::ERROR => w.write_str("error: ")?,
            Level::DEBUG => w.write_str("debug: ")?,
            Level::TRACE => w.write_str("trace: ")?,
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}
