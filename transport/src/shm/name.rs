//! Naming ring segments, and finding the ones a crashed run left behind.

use std::path::{Path, PathBuf};

use super::error::NameError;
use super::layout::MAGIC;
use super::segment::Prefix;
use crate::process::ProcessStamp;

/// Where segments live: a RAM file system shared by every process of a host.
pub const SHM_DIR: &str = "/dev/shm";

/// Every segment's file name starts with this.
pub const SEGMENT_PREFIX: &str = "clusterduck-";

/// The name of a node's output ring in a run: the segment file
/// `/dev/shm/clusterduck-<run id>-<node>`.
///
/// The run id is 1 to 64 ASCII letters, digits or `_` (so the first `-` after
/// the prefix ends it); the node name may be anything, bytes other than ASCII
/// letters, digits and `_` being written `%XX`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RingName {
    run_id: String,
    node: String,
    path: PathBuf,
}

impl RingName {
    /// The ring of `node` in run `run_id`.
    pub fn new(run_id: &str, node: &str) -> Result<RingName, NameError> {
        if run_id.is_empty()
            || run_id.len() > 64
            || !run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(NameError::RunId(run_id.to_owned()));
        }
        let mut file = format!("{SEGMENT_PREFIX}{run_id}-");
        for b in node.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                file.push(char::from(b));
            } else {
                file.push_str(&format!("%{b:02X}"));
            }
        }
        if file.len() > 255 {
            return Err(NameError::TooLong(node.to_owned()));
        }
        Ok(RingName {
            run_id: run_id.to_owned(),
            node: node.to_owned(),
            path: Path::new(SHM_DIR).join(file),
        })
    }

    /// The path of the ring's arena of large values: the ring's, with
    /// `.large` appended (node names escape `.`, so no ring has it).
    pub fn arena_path(&self) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(".large");
        PathBuf::from(path)
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Display for RingName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.run_id, self.node)
    }
}

/// A segment that [`remove_stale_segments`] found.
#[derive(Debug)]
pub struct StaleSegment {
    /// The segment file.
    pub path: PathBuf,
    /// What was found, and done.
    pub status: StaleStatus,
}

impl std::fmt::Display for StaleSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.status {
            StaleStatus::Removed { creator } => write!(
                f,
                "removed {path}, left by a dead run (its creator, pid {}, is gone)",
                creator.pid
            ),
            StaleStatus::RemoveFailed { creator, error } => write!(
                f,
                "cannot remove {path}, left by a dead run (its creator, pid {}, is gone): {error}",
                creator.pid
            ),
            StaleStatus::Unreadable { reason } => {
                write!(
                    f,
                    "left {path} alone: not a readable ring segment ({reason})"
                )
            }
        }
    }
}

/// What [`remove_stale_segments`] found about one segment.
#[derive(Debug)]
#[non_exhaustive]
pub enum StaleStatus {
    /// Its creator is dead: removed.
    Removed {
        /// The dead creator.
        creator: ProcessStamp,
    },
    /// Its creator is dead, but removing the file failed.
    RemoveFailed {
        /// The dead creator.
        creator: ProcessStamp,
        /// The system's error.
        error: std::io::Error,
    },
    /// Not a readable ring segment (a foreign file, or one still being
    /// created): left alone, reported.
    Unreadable {
        /// Why it could not be read.
        reason: String,
    },
}

/// Finds the `clusterduck-*` segments under [`SHM_DIR`] whose creator process
/// is dead (a crashed run's), removes them, and reports them, together with
/// files of that name it cannot read. Segments of live processes, of this run
/// or any other, are not touched. Call it when a run starts.
pub fn remove_stale_segments() -> std::io::Result<Vec<StaleSegment>> {
    remove_stale_segments_in(Path::new(SHM_DIR))
}

pub(crate) fn remove_stale_segments_in(dir: &Path) -> std::io::Result<Vec<StaleSegment>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(SEGMENT_PREFIX) {
            continue;
        }
        let path = entry.path();
        let status = match Prefix::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => StaleStatus::Unreadable {
                reason: e.to_string(),
            },
            Ok(p) if p.magic != MAGIC => StaleStatus::Unreadable {
                reason: format!("magic {:#018x}", p.magic),
            },
            Ok(p) if p.creator.is_alive() => continue,
            Ok(p) => match std::fs::remove_file(&path) {
                Ok(()) => StaleStatus::Removed { creator: p.creator },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => StaleStatus::RemoveFailed {
                    creator: p.creator,
                    error,
                },
            },
        };
        found.push(StaleSegment { path, status });
    }
    Ok(found)
}

/// Removes every segment of run `run_id`, live or not (the master calls this
/// when a run ends, after its nodes stopped). Returns how many it removed.
pub fn remove_run_segments(run_id: &str) -> std::io::Result<usize> {
    let prefix = format!("{SEGMENT_PREFIX}{run_id}-");
    let mut removed = 0;
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_the_node_and_check_the_run() {
        let n = RingName::new("r42", "photo A/b").unwrap();
        assert_eq!(
            n.path(),
            Path::new("/dev/shm/clusterduck-r42-photo%20A%2Fb")
        );
        assert_eq!(n.to_string(), "r42/photo A/b");
        assert!(matches!(
            RingName::new("a-b", "x"),
            Err(NameError::RunId(_))
        ));
        assert!(matches!(RingName::new("", "x"), Err(NameError::RunId(_))));
        assert!(matches!(
            RingName::new("r", &"é".repeat(50)),
            Err(NameError::TooLong(_))
        ));
    }
}
