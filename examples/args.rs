//! The command-line flags the examples share (parsed with `clap`), and how
//! they print a run's report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

/// Where `--report-json FILE` asks for the run's report as JSON.
static REPORT_JSON: OnceLock<PathBuf> = OnceLock::new();
/// How long `--linger` keeps the process (and its status page) after the
/// run.
static LINGER: OnceLock<Duration> = OnceLock::new();

/// How and where the topology runs: flattened into each example's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Run {
    /// Run every node as a thread of this process.
    #[arg(long, conflicts_with = "hosts")]
    local: bool,
    /// Where each node's <name>.out and <name>.err go, in process mode (the
    /// default: one process per node).
    #[arg(long, value_name = "DIR", default_value = clusterduck::DEFAULT_LOG_DIR)]
    dir: PathBuf,
    /// Run the nodes on these SSH hosts, round-robin (see
    /// CLUSTERDUCK_SSH_CONFIG).
    #[arg(long, value_name = "H1,H2,...", value_delimiter = ',')]
    hosts: Vec<String>,
    /// Write the run's report there as JSON (the report and the error).
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Serve the run's Prometheus metrics (/metrics) and its status page
    /// (/) at this address while it runs (port 0: any; the address is
    /// logged).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// With --metrics: keep serving the status page (with the final report)
    /// and the metrics this long after the run ended.
    #[arg(long, value_name = "SECS", default_value_t = 0, requires = "metrics")]
    linger: u64,
    /// Restart each node's process up to N times if it dies or fails
    /// (process mode; see docs/RECOVERY.md).
    #[arg(long, value_name = "N", default_value_t = 0)]
    restarts: u32,
    /// How long a link between hosts may stay down (reconnecting) before
    /// the run fails.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    link_grace: f64,
    /// Never show the live view (shown when stderr is a terminal and
    /// stdout is not; CLUSTERDUCK_LIVE=0 or 1 decides too).
    #[arg(long)]
    no_live: bool,
}

impl Run {
    /// The launch these flags ask for.
    pub(crate) fn launch(&self) -> clusterduck::Launch {
        if let Some(path) = &self.report_json {
            let _ = REPORT_JSON.set(path.clone());
        }
        let _ = LINGER.set(Duration::from_secs(self.linger));
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .map(String::as_str)
            .filter(|h| !h.is_empty())
            .collect();
        let mut launch = if self.local {
            clusterduck::Launch::local()
        } else if hosts.is_empty() {
            clusterduck::Launch::processes().dir(&self.dir)
        } else {
            clusterduck::Launch::hosts(hosts).dir(&self.dir)
        };
        if let Some(address) = &self.metrics {
            launch = launch.serve_metrics(address);
        }
        if self.no_live {
            launch = launch.live(false);
        }
        if self.restarts > 0 {
            launch = launch.restarts_all(self.restarts);
        }
        launch.link_grace(Duration::from_secs_f64(self.link_grace.max(0.0)))
    }
}

/// Prints the run's report (and its error) on stderr; the exit code says
/// how it went.
pub(crate) fn report(result: Result<clusterduck::RunReport, clusterduck::Error>) -> ExitCode {
    // A launch that failed has no page to keep.
    let ran = result
        .as_ref()
        .map_or_else(|e| e.report().is_some(), |_| true);
    let code = print_report(result);
    if let Some(linger) = LINGER.get().filter(|l| ran && !l.is_zero()) {
        eprintln!(
            "serving the status page for {} s more (--linger)",
            linger.as_secs()
        );
        std::thread::sleep(*linger);
    }
    code
}

fn print_report(result: Result<clusterduck::RunReport, clusterduck::Error>) -> ExitCode {
    if let Some(path) = REPORT_JSON.get() {
        // The report (the partial one of a failed run), and the error.
        let (report, error) = match &result {
            Ok(report) => (Some(report), None),
            Err(e) => (e.report(), Some(e.to_string())),
        };
        let json = serde_json::json!({ "report": report, "error": error });
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("error: cannot write the report to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    match result {
        Ok(report) => {
            eprint!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(report) = e.report() {
                eprint!("{report}");
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
