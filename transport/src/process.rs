//! Telling whether a process that shares a ring is still alive, tying a
//! process's life to its parent's, ending a process, and taking over a file
//! descriptor a parent handed down.
//!
//! A pid alone is not enough: after a crash the pid may have been given to an
//! unrelated process. A [`ProcessStamp`] pairs the pid with the process's start
//! time (clock ticks since boot, field 22 of `/proc/<pid>/stat`), which a
//! reused pid does not share.

use std::sync::OnceLock;

/// A process, identified across pid reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessStamp {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks since boot; 0 if it could not be read.
    pub start_time: u64,
}

impl ProcessStamp {
    /// The calling process.
    pub fn current() -> ProcessStamp {
        static CURRENT: OnceLock<ProcessStamp> = OnceLock::new();
        // Forked children get a fresh pid: only cache the stamp of this pid.
        let pid = std::process::id();
        let cached = *CURRENT.get_or_init(|| ProcessStamp {
            pid,
            start_time: read_stat(pid).map_or(0, |s| s.start_time),
        });
        if cached.pid == pid {
            cached
        } else {
            ProcessStamp {
                pid,
                start_time: read_stat(pid).map_or(0, |s| s.start_time),
            }
        }
    }

    /// Process `pid`, if it runs.
    pub fn of(pid: u32) -> Option<ProcessStamp> {
        read_stat(pid).map(|s| ProcessStamp {
            pid,
            start_time: s.start_time,
        })
    }

    /// Whether the process still runs: it exists, is not a zombie, and
    /// started when this stamp says (unless the stamp has no start time).
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(stat) => {
                stat.state != b'Z'
                    && stat.state != b'X'
                    && (self.start_time == 0 || stat.start_time == self.start_time)
            }
            // No /proc entry: gone (or /proc is not mounted, when we fall
            // back to asking the kernel whether the pid exists).
            None => std::fs::metadata("/proc/self").is_err() && pid_exists(self.pid),
        }
    }
}

struct Stat {
    state: u8,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields
    // we want follow its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // `state` is field 3; `starttime` is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Asks the kernel to kill this process when its parent dies, and exits at
/// once if the parent `parent` already died (the request comes too late for
/// that). Linux ties this to the parent *thread*: the parent must start this
/// process from a thread that lives as long as the child should.
pub fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number as its only
    // argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    let ppid = unsafe { libc::getppid() };
    if ppid as u32 != parent {
        // Re-parented already: the parent died before the request.
        std::process::exit(1);
    }
    Ok(())
}

/// Sends `SIGKILL` to process `pid`. A process that is gone already is not
/// an error.
pub fn kill(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill takes a pid and a signal number and touches no memory of
    // ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        e => Err(e),
    }
}

/// Sends `SIGKILL` to the process group `pid` leads (the process and what
/// it started in its group). A group that is gone already is not an error.
pub fn kill_group(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a group leader's pid")
        })?;
    // SAFETY: kill takes a (negated: group) pid and a signal number and
    // touches no memory of ours.
    if unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        e => Err(e),
    }
}

/// Takes over file descriptor `fd`, inherited from the process that started
/// this one, as a file; it is marked close-on-exec, so that processes this
/// one starts do not inherit it. Fails if `fd` is not open.
pub fn inherited_file(fd: i32) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl with F_GETFD reads the flags of a descriptor number; an
    // unopened number gives EBADF, touching no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above, F_SETFD only sets the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (F_GETFD succeeded) and was handed to this process
    // to own: nothing else in it uses the number.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive() {
        let me = ProcessStamp::current();
        assert_eq!(me.pid, std::process::id());
        assert_ne!(me.start_time, 0);
        assert!(me.is_alive());
    }

    #[test]
    fn a_reused_pid_is_not_the_same_process() {
        let me = ProcessStamp::current();
        let impostor = ProcessStamp {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn a_reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stamp = ProcessStamp {
            pid: child.id(),
            start_time: 0,
        };
        child.wait().unwrap();
        assert!(!stamp.is_alive());
    }

    #[test]
    fn a_killed_group_takes_what_its_leader_started() {
        use std::io::BufRead;
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 100 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(leader.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started = ProcessStamp {
            pid: line.trim().parse().unwrap(),
            start_time: 0,
        };
        assert!(started.is_alive(), "what the leader started runs");
        kill_group(leader.id()).unwrap();
        assert_eq!(leader.wait().unwrap().signal(), Some(9));
        // SIGKILL is delivered to the group at once; the orphan is reaped
        // by whoever adopts it, which takes a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while started.is_alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the group's other process lives"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            kill_group(leader.id()).is_ok(),
            "a group gone is not an error"
        );
        assert!(kill_group(1).is_err(), "init leads no group of ours");
    }
}
