//! The small command-line parser the examples share (no dependency needed
//! for a handful of flags).

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::OnceLock;

/// Where `--report-json FILE` asks for the run's report as JSON.
static REPORT_JSON: OnceLock<PathBuf> = OnceLock::new();

/// The command line, flag by flag.
pub(crate) struct Args {
    args: Vec<String>,
    usage: &'static str,
}

impl Args {
    /// The process's arguments.
    pub(crate) fn from_env(usage: &'static str) -> Self {
        Self {
            args: std::env::args().skip(1).collect(),
            usage,
        }
    }

    /// Whether the flag `name` is present (and removes it).
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        before != self.args.len()
    }

    /// The value of option `name` (one of its spellings), or `default`.
    pub(crate) fn value<T>(&mut self, names: &[&str], default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(i) = self.args.iter().position(|a| names.contains(&a.as_str())) else {
            return Ok(default);
        };
        if i + 1 >= self.args.len() {
            return Err(format!("{} needs a value\n{}", names[0], self.usage));
        }
        let raw = self.args.remove(i + 1);
        self.args.remove(i);
        raw.parse()
            .map_err(|e| format!("{} {raw:?}: {e}\n{}", names[0], self.usage))
    }

    /// The launch the common flags ask for: `--local` for local mode,
    /// otherwise process mode with `--dir DIR` for the logs, on this machine
    /// or on `--hosts h1,h2,...`.
    pub(crate) fn launch(&mut self) -> Result<clusterduck::Launch, String> {
        let json = self.value(&["--report-json"], String::new())?;
        if !json.is_empty() {
            let _ = REPORT_JSON.set(PathBuf::from(json));
        }
        let local = self.flag("--local");
        let dir = self.value(&["--dir"], String::from(clusterduck::DEFAULT_LOG_DIR))?;
        let hosts = self.value(&["--hosts"], String::new())?;
        if local && !hosts.is_empty() {
            return Err(format!(
                "--local and --hosts exclude each other\n{}",
                self.usage
            ));
        }
        Ok(if local {
            clusterduck::Launch::local()
        } else if hosts.is_empty() {
            clusterduck::Launch::processes().dir(dir)
        } else {
            clusterduck::Launch::hosts(hosts.split(',').filter(|h| !h.is_empty())).dir(dir)
        })
    }

    /// The first argument that is not a flag (and removes it); `what` names
    /// it in the error when it is missing.
    #[allow(dead_code)] // Not every example takes one.
    pub(crate) fn positional(&mut self, what: &str) -> Result<String, String> {
        match self.args.iter().position(|a| !a.starts_with('-')) {
            Some(i) => Ok(self.args.remove(i)),
            None => Err(format!("{what} is missing\n{}", self.usage)),
        }
    }

    /// Fails on anything not taken yet.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.args.first() {
            None => Ok(()),
            Some(a) if a == "-h" || a == "--help" => Err(self.usage.to_owned()),
            Some(a) => Err(format!("unknown argument {a:?}\n{}", self.usage)),
        }
    }
}

/// Prints the run's report (and its error) on stderr; the exit code says
/// how it went.
pub(crate) fn report(result: Result<clusterduck::RunReport, clusterduck::Error>) -> ExitCode {
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
