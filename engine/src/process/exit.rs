//! How a node's process ended, as `waitpid` said: told the same way for a
//! node on this machine and one whose host agent saw it end.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ExitCause {
    /// It exited with this status.
    Status(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ExitCause {
    /// The cause `waitpid` gave.
    pub(crate) fn of(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Status(code),
            (None, Some(signal)) => Self::Signal(signal),
            // Neither a code nor a signal: a stopped or continued process,
            // which `wait` does not return. Say what little is known.
            (None, None) => Self::Status(-1),
        }
    }
}

impl fmt::Display for ExitCause {
    /// `exited with status 1`, `killed by signal 9 (SIGKILL)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Status(code) => write!(f, "exited with status {code}"),
            Self::Signal(signal) => match signal_name(signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_as_a_person_says_them() {
        assert_eq!(ExitCause::Status(1).to_string(), "exited with status 1");
        assert_eq!(
            ExitCause::Signal(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitCause::Signal(40).to_string(), "killed by signal 40");
    }

    #[test]
    fn waitpid_statuses_become_causes() {
        assert_eq!(
            ExitCause::of(ExitStatus::from_raw(3 << 8)),
            ExitCause::Status(3)
        );
        assert_eq!(
            ExitCause::of(ExitStatus::from_raw(11)),
            ExitCause::Signal(11)
        );
    }
}
