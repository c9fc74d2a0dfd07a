//! Each node's `<dir>/<name>.out` and `<dir>/<name>.err`, opened by the master
//! for appending, each run starting with a header line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The log directory when none is given.
pub const DEFAULT_DIR: &str = "/tmp/clusterduck";

/// Why the logs of a node could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the logs of node {node} in {}: {source}", dir.display())]
pub struct LogError {
    /// The node.
    pub node: String,
    /// The directory.
    pub dir: PathBuf,
    /// What failed.
    #[source]
    pub source: io::Error,
}

/// Opens (creating `dir` if missing) the node's stdout and stderr files and
/// writes the run's header line to each.
pub(crate) fn open(dir: &Path, node: &str, run_id: &str) -> Result<(File, File), LogError> {
    let fail = |source| LogError {
        node: node.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let header = header(run_id, node);
    let mut files = ["out", "err"].into_iter().map(|ext| {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.{ext}", crate::replica::file_stem(node))))?;
        file.write_all(header.as_bytes())?;
        Ok(file)
    });
    let out = files.next().expect("two files").map_err(fail)?;
    let err = files.next().expect("two files").map_err(fail)?;
    Ok((out, err))
}

/// The line that opens a node's logs for a run.
pub(crate) fn header(run_id: &str, node: &str) -> String {
    format!(
        "==== clusterduck run {run_id}, node {node}, started {} ====\n",
        utc_now()
    )
}

/// The current time, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
    }
}
