//! The run report's timings: each node's busy and blocked shares, and the
//! bottleneck named, in local and process mode.

use std::process::Command;
use std::time::Duration;

use clusterduck_tests::{fresh_dir, report_row as row, start, watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// A sink that takes 500 µs over each value, behind a pass-through worker
/// and a spout that sends as fast as rings of 4 KiB let it: the sink is
/// busy nearly all the time, the spout held back nearly all the time, and
/// the report names the sink the bottleneck.
#[test]
fn the_report_names_the_node_that_holds_the_run_back() {
    let dir = fresh_dir("report-bottleneck");
    let marker = dir.to_str().unwrap().to_owned();
    let _w = watchdog("report bottleneck", LIMIT).guard(marker.clone());
    for local in [true, false] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_topology"));
        cmd.args(["bottleneck", "2000", &marker]);
        if local {
            cmd.env("CD_TEST_LOCAL", "1");
        }
        let (status, _, err) = start(&mut cmd).finish();
        assert!(status.success(), "local {local}: {err}");
        let header = row(&err, "node");
        assert_eq!(header[9..11], ["busy%", "blocked%"], "{err}");
        let share = |node: &str, column: usize| -> f64 { row(&err, node)[column].parse().unwrap() };
        // K: 2000 values of 500 µs, a second at least, busy nearly all of it.
        assert!(share("K", 9) >= 80.0, "local {local}: {err}");
        // S: held back by the rings nearly all its time.
        assert!(share("S", 10) >= 50.0, "local {local}: {err}");
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with("bottleneck: K (busy ")),
            "local {local}: {err}"
        );
    }
}
