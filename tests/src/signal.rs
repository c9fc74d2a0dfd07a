//! Signals between the nodes of a test topology and its master, wherever
//! they run: files in a directory that every process of the run sees (the
//! test hosts share this machine's filesystem). A test orders events by
//! waiting for facts ("C has dropped the duplicate of 1") that a node or
//! the debugger raises, never by sleeping.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How often a waiter looks again. Polling for a fact is ordering by the
/// fact: the interval only bounds how late the waiter sees it.
const POLL: Duration = Duration::from_millis(1);

/// The signals of one run: a directory of flag files and counters.
#[derive(Clone, Debug)]
pub struct Signals {
    dir: PathBuf,
}

impl Signals {
    /// The signals under `<dir>/signals`, made if missing.
    pub fn new(dir: &Path) -> Self {
        let dir = dir.join("signals");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty() && !name.contains('/'),
            "bad signal name {name:?}"
        );
        self.dir.join(name)
    }

    /// Raises the flag `name` (raising it again changes nothing).
    pub fn raise(&self, name: &str) {
        let path = self.path(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot raise {}: {e}", path.display()),
        }
    }

    /// Whether the flag `name` is raised.
    pub fn is_raised(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Waits until the flag `name` is raised (`true`), or until `give_up`
    /// says so (`false`).
    pub fn wait(&self, name: &str, mut give_up: impl FnMut() -> bool) -> bool {
        loop {
            if self.is_raised(name) {
                return true;
            }
            if give_up() {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until every flag of `names` is raised, or `give_up` says so.
    pub fn wait_all(&self, names: &[String], mut give_up: impl FnMut() -> bool) -> bool {
        names.iter().all(|n| self.wait(n, &mut give_up))
    }

    /// The counter `name`, shared by every process of the run (0 at first).
    pub fn counter(&self, name: &str) -> Counter {
        let path = self.path(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open the counter {}: {e}", path.display()));
        Counter {
            file: Arc::new(file),
            path,
        }
    }
}

/// A number that one process sets and others read.
#[derive(Clone, Debug)]
pub struct Counter {
    file: Arc<File>,
    path: PathBuf,
}

impl Counter {
    /// Sets it.
    pub fn set(&self, value: u64) {
        self.file
            .write_all_at(&value.to_le_bytes(), 0)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }

    /// Its value (0 if never set).
    pub fn get(&self) -> u64 {
        let mut bytes = [0u8; 8];
        match self.file.read_exact_at(&mut bytes, 0) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => panic!("cannot read {}: {e}", self.path.display()),
        }
    }
}
