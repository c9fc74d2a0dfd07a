//! The live terminal view: while a run goes, a table of its nodes on
//! stderr, drawn in place below what was printed before (not the whole
//! screen) and refreshed every second; the last frame stays on the screen
//! when the run ends, above the report.

use std::io::{self, IsTerminal, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use clusterduck_engine::log;
use clusterduck_engine::metrics::{NodeState, NodeStatus, RunState, Status, Watch};
use crossterm::cursor::{MoveToColumn, MoveUp};
use crossterm::queue;
use crossterm::style::{Attribute, SetAttribute};
use crossterm::terminal::{Clear, ClearType};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Row, Table, Widget};

/// The environment variable that turns the live view on (`1`) or off (`0`)
/// whatever the terminal.
pub const LIVE_ENV: &str = "CLUSTERDUCK_LIVE";

/// Whether a run should show the live view, by default: `CLUSTERDUCK_LIVE`
/// if set (`0` off, anything else on, if stderr is a terminal); otherwise
/// when stderr is a terminal that stdout is not (values a program prints
/// on stdout would tear the table: redirect them, or set the variable).
pub fn live_view_wanted() -> bool {
    let stderr = io::stderr();
    if !stderr.is_terminal() {
        return false;
    }
    match std::env::var(LIVE_ENV) {
        Ok(v) => v != "0",
        Err(_) => !io::stdout().is_terminal() || !same_device(1, 2),
    }
}

/// Whether `CLUSTERDUCK_LIVE=1` (or any value but `0`) asks for the view,
/// stderr being a terminal: where it is off by default.
pub fn live_view_forced() -> bool {
    io::stderr().is_terminal() && std::env::var(LIVE_ENV).is_ok_and(|v| v != "0")
}

/// Whether two file descriptors are the same terminal.
fn same_device(a: i32, b: i32) -> bool {
    let dev = |fd: i32| {
        // SAFETY: all zeroes is a valid `stat` (plain integers).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above: `st` is ours and large enough.
        let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        ok.then_some(st.st_rdev)
    };
    dev(a).is_some() && dev(a) == dev(b)
}

/// The live view. Laid out by `ratatui` into a buffer, written to stderr
/// by hand on a thread of its own: the cursor goes back up over the last
/// frame and each line is rewritten (as progress bars do). No raw mode and
/// no question to the terminal (its cursor position): Ctrl-C keeps
/// draining the run. The engine's log lines go through the view meanwhile
/// (`log::divert`), printed above the table; a terminal that blocks (paused
/// with Ctrl-S) holds back the view's thread, not the run's supervision.
#[derive(Debug)]
pub struct TerminalView {
    to_view: Option<mpsc::Sender<Shown>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What the view's thread is given.
enum Shown {
    Status(Arc<Status>),
    Line(Vec<u8>),
    /// The last status: draw it and stop.
    End(Arc<Status>),
}

impl Default for TerminalView {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalView {
    /// A view on stderr, its thread started, the engine's log lines
    /// diverted to it.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("clusterduck-view".into())
            .spawn(move || draw_until_end(&rx))
            .inspect_err(|e| tracing::warn!("no live view: {e}"))
            .ok();
        if thread.is_some() {
            let lines = Mutex::new(tx.clone());
            log::divert(Some(Box::new(move |line: &[u8]| {
                let tx = lines.lock().unwrap_or_else(|e| e.into_inner());
                if tx.send(Shown::Line(line.to_vec())).is_err() {
                    // The view is gone: the line goes where it would have.
                    let _ = io::stderr().write_all(line);
                }
            })));
        }
        Self {
            to_view: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Stops the view's thread after it drew `last`, and gives the log
    /// lines back to stderr.
    fn stop(&mut self, last: Option<Arc<Status>>) {
        log::divert(None);
        if let (Some(tx), Some(last)) = (self.to_view.take(), last) {
            let _ = tx.send(Shown::End(last));
        }
        self.to_view = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Watch for TerminalView {
    fn show(&mut self, status: &Status) {
        if let Some(tx) = &self.to_view {
            let _ = tx.send(Shown::Status(Arc::new(status.clone())));
        }
    }

    fn end(&mut self, status: &Status) {
        self.stop(Some(Arc::new(status.clone())));
    }
}

impl Drop for TerminalView {
    fn drop(&mut self) {
        self.stop(None);
    }
}

/// The view's thread: draws the latest status, with the log lines that
/// came meanwhile above it, until the end (or its sender is gone).
fn draw_until_end(rx: &mpsc::Receiver<Shown>) {
    let mut drawn = 0u16;
    let mut last: Option<Arc<Status>> = None;
    let mut ended = false;
    while let Ok(first) = rx.recv() {
        let mut lines = Vec::new();
        for shown in std::iter::once(first).chain(rx.try_iter()) {
            match shown {
                Shown::Status(s) => last = Some(s),
                Shown::Line(l) => lines.push(l),
                Shown::End(s) => {
                    last = Some(s);
                    ended = true;
                }
            }
        }
        let Some(status) = &last else {
            // Lines before the first frame: nothing to draw around.
            let mut err = io::stderr().lock();
            for l in &lines {
                let _ = err.write_all(l);
            }
            continue;
        };
        let (width, rows) = crossterm::terminal::size().unwrap_or((100, 50));
        let mut err = io::stderr().lock();
        match draw(&mut err, status, &lines, drawn, (width.max(20), rows)) {
            Ok(height) => drawn = height,
            Err(_) => return,
        }
        if ended {
            return;
        }
    }
}

/// Draws `status` over the last frame (`drawn` lines above the cursor),
/// the log `lines` first; the frame's height.
fn draw(
    out: &mut impl Write,
    status: &Status,
    lines: &[Vec<u8>],
    drawn: u16,
    (width, rows): (u16, u16),
) -> io::Result<u16> {
    // Title, header, a row per node, the bottleneck line: within the
    // terminal (going up past its top would scroll, not redraw).
    let height = (status.nodes.len() + 3).min(usize::from(rows.saturating_sub(1)).max(3)) as u16;
    let area = Rect::new(0, 0, width, height);
    let mut buffer = Buffer::empty(area);
    table(status).render(area, &mut buffer);
    if drawn > 0 && !lines.is_empty() {
        // The lines go where the table was; the table below them.
        queue!(
            out,
            MoveUp(drawn),
            MoveToColumn(0),
            Clear(ClearType::FromCursorDown)
        )?;
        for l in lines {
            out.write_all(l)?;
        }
        write_frame(out, &buffer, 0)?;
    } else {
        for l in lines {
            out.write_all(l)?;
        }
        write_frame(out, &buffer, drawn)?;
    }
    Ok(height)
}

/// Writes `buffer`'s lines over the last frame's `drawn` lines.
fn write_frame(out: &mut impl Write, buffer: &Buffer, drawn: u16) -> io::Result<()> {
    if drawn > 0 {
        queue!(out, MoveUp(drawn), MoveToColumn(0))?;
    }
    let area = buffer.area;
    for y in 0..area.height {
        let mut style = Modifier::empty();
        for x in 0..area.width {
            let cell = &buffer[(x, y)];
            if cell.modifier != style {
                queue!(out, SetAttribute(Attribute::Reset))?;
                if cell.modifier.contains(Modifier::BOLD) {
                    queue!(out, SetAttribute(Attribute::Bold))?;
                }
                if cell.modifier.contains(Modifier::REVERSED) {
                    queue!(out, SetAttribute(Attribute::Reverse))?;
                }
                style = cell.modifier;
            }
            out.write_all(cell.symbol().as_bytes())?;
        }
        queue!(
            out,
            SetAttribute(Attribute::Reset),
            Clear(ClearType::UntilNewLine)
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The view of `status`: a row per node.
pub(crate) fn table(status: &Status) -> Table<'static> {
    let header = Row::new(
        [
            "node", "host", "state", "in/s", "out/s", "busy%", "blocked%", "ring%", "p99", "errors",
        ]
        .map(Cell::from),
    )
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = status
        .nodes
        .iter()
        .map(|n| {
            let bottleneck = status.bottleneck.as_deref() == Some(n.name.as_str());
            let name = if bottleneck {
                format!("{} *", n.name)
            } else {
                n.name.clone()
            };
            let row = Row::new(vec![
                Cell::from(name),
                Cell::from(n.host.clone()),
                Cell::from(n.state.label()),
                Cell::from(rate(n.in_per_s)),
                Cell::from(rate(n.out_per_s)),
                Cell::from(format!("{:.0}", n.busy * 100.0)),
                Cell::from(format!("{:.0}", n.blocked * 100.0)),
                Cell::from(ring_fill(status, n)),
                Cell::from(n.p99_s.map_or_else(|| "-".into(), duration)),
                Cell::from(errors(n)),
            ]);
            if bottleneck {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    let title = format!(
        "clusterduck {} {:.0}s",
        match status.run {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
        },
        status.elapsed_s
    );
    let footer = match &status.bottleneck {
        Some(b) => format!("bottleneck: {b} (busy, not held back by its consumers)"),
        None => "bottleneck: none (no node busy half of its time)".to_owned(),
    };
    Table::new(rows, widths).header(header).block(
        ratatui::widgets::Block::default()
            .title(Line::from(title))
            .title_bottom(Line::from(footer)),
    )
}

/// A rate, short: `950`, `12.3k`, `4.56M`.
fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M", per_s / 1e6)
    } else if per_s >= 1e4 {
        format!("{:.1}k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

/// A duration in seconds, short: `850ns`, `12.5µs`, `3.2ms`, `1.25s`.
fn duration(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.0}ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.1}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// The fullest of the rings a node reads, in percent.
fn ring_fill(status: &Status, n: &NodeStatus) -> String {
    status
        .edges
        .iter()
        .filter(|e| e.to == n.name)
        .map(|e| e.fill)
        .max_by(f64::total_cmp)
        .map_or_else(|| "-".into(), |f| format!("{:.0}", f * 100.0))
}

/// Values its policies dropped, or why it failed or died.
fn errors(n: &NodeStatus) -> String {
    if let (NodeState::Failed | NodeState::Dead, Some(e)) = (&n.state, &n.error) {
        return e.clone();
    }
    let p = &n.policy;
    let dropped = p.duplicates + p.late + p.gaps + p.evicted;
    if dropped == 0 {
        "-".into()
    } else {
        format!("{dropped} dropped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_node_and_marks_the_bottleneck() {
        let node = |name: &str, busy: f64, state: NodeState| NodeStatus {
            name: name.into(),
            host: "localhost".into(),
            state,
            in_per_s: 123_456.0,
            busy,
            p99_s: Some(0.000_012_5),
            error: (state == NodeState::Dead).then(|| "killed by signal 9".into()),
            ..NodeStatus::default()
        };
        let status = Status {
            elapsed_s: 3.0,
            run: RunState::Running,
            nodes: vec![
                node("A", 0.2, NodeState::Running),
                node("C", 0.9, NodeState::Running),
                node("B", 0.0, NodeState::Dead),
            ],
            bottleneck: Some("C".into()),
            ..Status::default()
        };
        let area = Rect::new(0, 0, 110, 6);
        let mut buffer = Buffer::empty(area);
        table(&status).render(area, &mut buffer);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &buffer, 0).unwrap();
        let screen = String::from_utf8(bytes).unwrap();
        assert!(screen.contains("clusterduck running 3s"), "{screen}");
        assert!(screen.contains("C *"), "{screen}");
        assert!(screen.contains("123.5k"), "{screen}");
        assert!(screen.contains("12.5µs"), "{screen}");
        assert!(screen.contains("dead"), "{screen}");
        assert!(screen.contains("killed by signal 9"), "{screen}");
        assert!(screen.contains("bottleneck: C"), "{screen}");
        assert_eq!(screen.matches('\n').count(), 6, "a line per row: {screen}");
        // The next frame goes back up over this one.
        let mut next = Vec::new();
        write_frame(&mut next, &buffer, 6).unwrap();
        assert!(String::from_utf8(next).unwrap().starts_with("\x1b[6A"));

        // A log line that came meanwhile goes where the table was, the
        // table below it.
        let mut out = Vec::new();
        let line = b"clusterduck: warning: a line\n".to_vec();
        let height = draw(&mut out, &status, &[line], 6, (110, 50)).unwrap();
        assert_eq!(height, 6);
        let out = String::from_utf8(out).unwrap();
        let (before, after) = out.split_once("clusterduck: warning: a line\n").unwrap();
        assert!(before.starts_with("\x1b[6A"), "{before:?}");
        assert!(after.contains("clusterduck running 3s"), "{after}");
        // A terminal of 4 rows gets a frame of 3 lines: never above its top.
        let mut out = Vec::new();
        assert_eq!(draw(&mut out, &status, &[], 0, (110, 4)).unwrap(), 3);
    }
}
