//! The live terminal view: while a run goes, a table of its nodes on
//! stderr, drawn in place below what was printed before (not the whole
//! screen) and refreshed every second; the last frame stays on the screen
//! when the run ends, above the report.

use std::io::{self, IsTerminal, Write};

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
/// by hand: the cursor goes back up over the last frame and each line is
/// rewritten (as progress bars do). No raw mode and no question to the
/// terminal (its cursor position): Ctrl-C keeps draining the run.
#[derive(Debug, Default)]
pub struct TerminalView {
    /// Lines of the last frame written (the cursor is below them).
    drawn: u16,
    /// Drawing failed once: the view is off.
    off: bool,
}

impl TerminalView {
    /// A view on stderr.
    pub fn new() -> Self {
        Self::default()
    }

    fn draw(&mut self, status: &Status) {
        if self.off {
            return;
        }
        let width = crossterm::terminal::size().map_or(100, |(w, _)| w.max(20));
        // Title, header, a row per node, the bottleneck line.
        let height = (status.nodes.len() + 3).min(200) as u16;
        let area = Rect::new(0, 0, width, height);
        let mut buffer = Buffer::empty(area);
        table(status).render(area, &mut buffer);
        let mut err = io::stderr().lock();
        if let Err(e) = write_frame(&mut err, &buffer, self.drawn) {
            tracing::warn!("live view: {e}; stopped");
            self.off = true;
        }
        self.drawn = height;
    }
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

impl Watch for TerminalView {
    fn show(&mut self, status: &Status) {
        self.draw(status);
    }
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
    }
}
