//! Reaching other hosts over SSH: starting a host's agent there, shipping
//! this binary in the same connection when the host lacks it
//! (content-hashed), the agent's configuration on its stdin.
//!
//! Agents are started in a tree: whoever starts agents (the master, or an
//! agent) starts at most `fanout` itself, in parallel, and hands each a
//! share of the remaining hosts to start in turn; a host that cannot be
//! used is reported and the hosts below it are started by its would-be
//! parent instead, so that every host of a run is tried and every error
//! told.
//!
//! `ssh` runs in batch mode (no prompt ever) and checks host keys as the
//! user's SSH configuration says; `CLUSTERDUCK_SSH_CONFIG` names a config
//! file to use instead (`ssh -F`).

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use sha2::{Digest, Sha256};

use super::agent::AGENT_ENV;
use super::node::NODE_ENV;
use super::protocol::{encode, AgentConfig, RemoteHost};
use clusterduck_transport::wire::write_message;

/// The environment variable naming the ssh config file to use.
pub const SSH_CONFIG_ENV: &str = "CLUSTERDUCK_SSH_CONFIG";

/// Why a host could not be used. Each variant names the host.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum HostError {
    /// `ssh` could not connect.
    #[error("host {host}: unreachable: {detail}")]
    Unreachable {
        /// The host.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// The host refused our key.
    #[error("host {host}: authentication refused: {detail}")]
    AuthRefused {
        /// The host.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// The host's key is unknown or changed.
    #[error("host {host}: host key not verified: {detail}")]
    HostKey {
        /// The host.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// This program could not be copied to the host.
    #[error("host {host}: binary copy failed: {detail}")]
    Copy {
        /// The host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// The host's address could not be found.
    #[error("host {host}: cannot resolve its address: {detail}")]
    Resolve {
        /// The host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// The host's agent did not start, or ended before it answered.
    #[error("host {host}: its agent did not start: {detail}")]
    Agent {
        /// The host.
        host: String,
        /// What failed: the agent's or the shell's last words.
        detail: String,
    },
}

impl HostError {
    /// The host it names.
    pub fn host(&self) -> &str {
        match self {
            Self::Unreachable { host, .. }
            | Self::AuthRefused { host, .. }
            | Self::HostKey { host, .. }
            | Self::Copy { host, .. }
            | Self::Resolve { host, .. }
            | Self::Agent { host, .. } => host,
        }
    }
}

/// How this process reaches other hosts.
#[derive(Clone, Debug)]
pub(crate) struct Ssh {
    config: Option<PathBuf>,
}

impl Ssh {
    /// Ssh as the environment configures it.
    pub(crate) fn from_env() -> Self {
        Self {
            config: std::env::var_os(SSH_CONFIG_ENV).map(PathBuf::from),
        }
    }

    fn command(&self, host: &str) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.config {
            cmd.arg("-F").arg(config);
        }
        cmd.args(["-o", "BatchMode=yes", "-T", host, "--"]);
        cmd
    }
}

/// This program, as shipped to hosts: its bytes (read once, when a host
/// first lacks it) and the name of its copy there, from its content hash.
#[derive(Debug)]
struct Program {
    bytes: Vec<u8>,
    /// `<name>-<first 16 hex digits of its SHA-256>`.
    copy_name: String,
}

impl Program {
    fn read(path: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let hash: String = Sha256::digest(&bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clusterduck".into());
        Ok(Self {
            bytes,
            copy_name: format!("{name}-{hash}"),
        })
    }
}

/// Starts host agents over SSH, in a tree (see the module's doc).
#[derive(Debug)]
pub(crate) struct AgentLauncher {
    ssh: Ssh,
    program: OnceLock<Result<Program, String>>,
    program_path: PathBuf,
    args: Vec<OsString>,
    /// The run's settings (`CLUSTERDUCK_IO=...`, the ssh config, ...), as
    /// `K='v' ` words for `env`: ssh would not pass them on.
    settings: String,
    /// The configuration every agent gets, but for its host and the hosts
    /// below it.
    template: AgentConfig,
    /// The `ssh` processes of agents that have not answered yet, by pid;
    /// `None` once [`abandon`](AgentLauncher::abandon)ed: no more `ssh` is
    /// started.
    pending: Mutex<Option<Vec<u32>>>,
}

/// The SSH session of a running agent: the agent ends when it closes.
#[derive(Debug)]
pub(crate) struct AgentSession {
    ssh: Child,
    stdin: Option<ChildStdin>,
}

impl AgentSession {
    /// Closes the session's input, which tells the agent its starter is
    /// done with it, and waits for `ssh` to end, killing it after `limit`.
    pub(crate) fn close(mut self, limit: std::time::Duration) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.ssh.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = self.ssh.kill();
                    let _ = self.ssh.wait();
                    return;
                }
                Ok(None) => thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    }
}

impl AgentLauncher {
    /// A launcher of agents that run `program` with `args` and log in `dir`
    /// on their hosts; `template` is their configuration but for `host` and
    /// `below`.
    pub(crate) fn new(
        ssh: Ssh,
        program: PathBuf,
        args: Vec<OsString>,
        template: AgentConfig,
    ) -> Self {
        // `vars_os`: a variable of the user's that is not UTF-8 is none of
        // ours, and must not stop a launch.
        let settings = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| k.starts_with("CLUSTERDUCK_") && k != NODE_ENV && k != AGENT_ENV)
            .map(|(k, v)| format!("{k}={} ", quote(&v.to_string_lossy())))
            .collect();
        Self {
            ssh,
            program: OnceLock::new(),
            program_path: program,
            args,
            settings,
            template,
            pending: Mutex::new(Some(Vec::new())),
        }
    }

    /// Gives up on the agents that have not answered: their `ssh` is
    /// killed, so that their launch ends (with an error for their host).
    pub(crate) fn abandon(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for pid in pending.unwrap_or_default() {
            let _ = clusterduck_transport::process::kill(pid);
        }
    }

    /// Starts the agents of `hosts`: the first `fanout` itself, in
    /// parallel, each given its share of the others to start. Returns the
    /// sessions of the agents it started; every host that cannot be used
    /// goes to `failed`, and the hosts below it are started from here.
    pub(crate) fn launch(
        &self,
        hosts: Vec<RemoteHost>,
        failed: &(dyn Fn(HostError) + Sync),
    ) -> Vec<AgentSession> {
        let width = (self.template.fanout as usize).max(1);
        thread::scope(|scope| {
            let branches: Vec<_> = fan_out(hosts, width)
                .into_iter()
                .map(|(host, below)| {
                    scope.spawn(move || match self.start(&host, below.clone()) {
                        Ok(session) => vec![session],
                        Err(e) => {
                            failed(e);
                            self.launch(below, failed)
                        }
                    })
                })
                .collect();
            branches
                .into_iter()
                .flat_map(|b| b.join().unwrap_or_default())
                .collect()
        })
    }

    fn program(&self) -> Result<&Program, String> {
        self.program
            .get_or_init(|| {
                Program::read(&self.program_path)
                    .map_err(|e| format!("reading {}: {e}", self.program_path.display()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts the agent of `host`, in one SSH connection: the remote shell
    /// says whether it has this binary (`have`) or not (`need`, and it reads
    /// exactly its bytes); then the agent reads its configuration and says
    /// `up` once it is connected to the master.
    fn start(&self, host: &RemoteHost, below: Vec<RemoteHost>) -> Result<AgentSession, HostError> {
        let name = &host.name;
        let copy_failed = |detail: String| HostError::Copy {
            host: name.clone(),
            detail,
        };
        let program = self.program().map_err(copy_failed)?;
        let dir = &self.template.dir;
        let bin_dir = format!("{dir}/.bin");
        let target = format!("{bin_dir}/{}", program.copy_name);
        let log = format!("{dir}/.agent-{}", file_safe(name));
        let header = format!(
            "==== clusterduck run {}, agent of host {name}, started {} ====",
            self.template.run_id,
            super::logs::utc_now()
        );
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| quote(&a.to_string_lossy()))
            .collect();
        // A copy is written aside (a name of its own, even for hosts that
        // share a file system, such as NFS homes, and copy at once), checked
        // whole (a session cut short gives `head` a short input, which it
        // does not call an error), and linked into place, never renamed over
        // one that exists: a running agent's binary must not be replaced.
        // The agent speaks to its starter on descriptor 3 (`up`) and reads
        // it on descriptor 4 (its configuration, then the session's end);
        // the user's code that runs before it reaches the launch gets an
        // empty stdin (it must not eat the configuration) and, like the
        // agent, writes to the agent's log files.
        let script = format!(
            "mkdir -p {b} || exit 1; \
             if test -x {t}; then echo have; else echo need; \
             part=$(mktemp {b}/.part.XXXXXX) || exit 1; \
             head -c {n} > \"$part\" && test \"$(wc -c < \"$part\")\" -eq {n} && chmod 700 \"$part\" \
             && {{ ln \"$part\" {t} 2>/dev/null || test -x {t}; }}; \
             ok=$?; rm -f \"$part\"; test $ok = 0 || exit 1; fi; \
             printf '%s\\n' {h} >> {log}.out && printf '%s\\n' {h} >> {log}.err || exit 1; \
             exec env {settings}{agent}=3,4 {t} {a} 3>&1 4<&0 </dev/null >> {log}.out 2>> {log}.err",
            b = quote(&bin_dir),
            t = quote(&target),
            n = program.bytes.len(),
            h = quote(&header),
            log = quote(&log),
            settings = self.settings,
            agent = AGENT_ENV,
            a = args.join(" "),
        );
        let mut ssh = self
            .ssh
            .command(name)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C at the terminal reaches the
            // master only, which drains the run in order; it must not cut
            // the agents' sessions.
            .process_group(0)
            .spawn()
            .map_err(|e| HostError::Unreachable {
                host: name.clone(),
                detail: format!("running ssh: {e}"),
            })?;
        let pid = ssh.id();
        if let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            pending.push(pid);
        } else {
            // Given up meanwhile (`abandon`): this one too.
            let _ = ssh.kill();
            let _ = ssh.wait();
            return Err(HostError::Agent {
                host: name.clone(),
                detail: "the launch gave up waiting for the hosts".into(),
            });
        }
        let mut stdin = ssh.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(ssh.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = ssh.stderr.take().expect("piped stderr");
        let collected = stderr.clone();
        let err_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                let mut all = collected.lock().unwrap_or_else(|e| e.into_inner());
                // Keep the end: ssh's diagnosis is its last line.
                if all.len() > 1 << 16 {
                    all.drain(..1 << 15);
                }
                all.extend_from_slice(&buf[..n]);
            }
        });
        let config = AgentConfig {
            host: host.clone(),
            below,
            ..self.template.clone()
        };
        // How far the handshake got tells a failure's kind.
        let mut stage = Stage::Connecting;
        let mut line = String::new();
        let handshake = (|| -> io::Result<bool> {
            stdout.read_line(&mut line)?;
            match line.trim() {
                "have" => {}
                "need" => {
                    stage = Stage::Copying;
                    stdin.write_all(&program.bytes)?;
                }
                _ => return Ok(false),
            }
            write_message(&mut stdin, &encode(&config))?;
            stage = Stage::Starting;
            line.clear();
            stdout.read_line(&mut line)?;
            Ok(line.trim() == "up")
        })();
        if let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            pending.retain(|p| *p != pid);
        }
        if let Ok(true) = handshake {
            return Ok(AgentSession {
                ssh,
                stdin: Some(stdin),
            });
        }
        drop(stdin);
        let status = ssh.wait();
        let _ = err_reader.join();
        let stderr = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let host = name.clone();
        Err(match (status, stage) {
            (Ok(status), Stage::Connecting) if status.code() == Some(255) => {
                classify(name, &stderr)
            }
            // Before `have` or `need`, the shell only makes the directory
            // of copies; with `need`, it writes the copy.
            (Ok(status), Stage::Connecting | Stage::Copying) => HostError::Copy {
                host,
                detail: format!("{status}: {}", stderr_line(&stderr)),
            },
            (Ok(status), Stage::Starting) => HostError::Agent {
                host,
                detail: format!("{status}: {}; its log: {log}.err", stderr_line(&stderr)),
            },
            (Err(e), _) => HostError::Agent {
                host,
                detail: format!("waiting for ssh: {e}"),
            },
        })
    }
}

/// How far an agent's start got.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// Connecting, and making the directory of copies.
    Connecting,
    /// Sending the binary.
    Copying,
    /// The agent was told its configuration; it has not said `up` yet.
    Starting,
}

/// Splits `hosts` into the first `width`, to start directly, each with its
/// share of the others (contiguous, as even as can be) to start in turn.
pub(crate) fn fan_out(hosts: Vec<RemoteHost>, width: usize) -> Vec<(RemoteHost, Vec<RemoteHost>)> {
    let width = width.max(1).min(hosts.len());
    let mut hosts = hosts.into_iter();
    let direct: Vec<RemoteHost> = hosts.by_ref().take(width).collect();
    let rest: Vec<RemoteHost> = hosts.collect();
    let mut rest = rest.into_iter();
    let total = rest.len();
    direct
        .into_iter()
        .enumerate()
        .map(|(i, host)| {
            let share = (i + 1) * total / width - i * total / width;
            (host, rest.by_ref().take(share).collect())
        })
        .collect()
}

/// `name` with anything but letters, digits, `.`, `_` and `-` made `_`, for
/// a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Tells an ssh failure (exit status 255) by what ssh said.
fn classify(host: &str, stderr: &[u8]) -> HostError {
    let detail = stderr_line(stderr);
    let host = host.to_owned();
    if detail.contains("Could not resolve hostname") {
        HostError::Resolve { host, detail }
    } else if detail.contains("Permission denied") {
        HostError::AuthRefused { host, detail }
    } else if detail.contains("Host key verification failed")
        || detail.contains("HOST IDENTIFICATION HAS CHANGED")
        || detail.contains("No ED25519 host key is known")
    {
        HostError::HostKey { host, detail }
    } else {
        HostError::Unreachable { host, detail }
    }
}

/// The last non-empty line ssh printed.
fn stderr_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim()
        .to_owned()
}

/// `s` quoted for a POSIX shell.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "two words", "it's", "$HOME `x` \"q\" \\ ;|&"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn ssh_failures_are_told_apart() {
        let e = classify("h1", b"root@10.0.0.1: Permission denied (publickey).\n");
        assert_eq!(
            e.to_string(),
            "host h1: authentication refused: root@10.0.0.1: Permission denied (publickey)."
        );
        let e = classify(
            "h2",
            b"ssh: connect to host 10.0.0.2 port 22: Connection refused\n",
        );
        assert_eq!(
            e.to_string(),
            "host h2: unreachable: ssh: connect to host 10.0.0.2 port 22: Connection refused"
        );
        let e = classify("h3", b"No ED25519 host key is known for h3 and you have requested strict checking.\nHost key verification failed.\n");
        assert!(matches!(e, HostError::HostKey { .. }));
    }

    #[test]
    fn an_unknown_host_is_a_resolution_error() {
        let e = classify(
            "cd-nowhere",
            b"ssh: Could not resolve hostname cd-nowhere: Name or service not known\n",
        );
        assert!(matches!(e, HostError::Resolve { .. }), "{e}");
    }

    fn hosts(n: u32) -> Vec<RemoteHost> {
        (0..n)
            .map(|index| RemoteHost {
                index,
                name: format!("h{index}"),
            })
            .collect()
    }

    fn shape(tree: &[(RemoteHost, Vec<RemoteHost>)]) -> Vec<(u32, Vec<u32>)> {
        tree.iter()
            .map(|(h, below)| (h.index, below.iter().map(|b| b.index).collect()))
            .collect()
    }

    #[test]
    fn fan_out_starts_the_first_width_and_shares_the_rest_evenly() {
        assert_eq!(shape(&fan_out(hosts(2), 3)), [(0, vec![]), (1, vec![])]);
        assert_eq!(
            shape(&fan_out(hosts(12), 3)),
            [(0, vec![3, 4, 5]), (1, vec![6, 7, 8]), (2, vec![9, 10, 11])]
        );
        assert_eq!(
            shape(&fan_out(hosts(8), 3)),
            [(0, vec![3]), (1, vec![4, 5]), (2, vec![6, 7])]
        );
        assert!(fan_out(Vec::new(), 3).is_empty());
    }

    /// With width w, depth d reaches w + w^2 + ... + w^d hosts: the tree's
    /// depth grows with the logarithm of the number of hosts.
    #[test]
    fn the_tree_is_as_shallow_as_its_width_allows() {
        fn depth(hosts: Vec<RemoteHost>, width: usize) -> usize {
            fan_out(hosts, width)
                .into_iter()
                .map(|(_, below)| 1 + depth(below, width))
                .max()
                .unwrap_or(0)
        }
        assert_eq!(depth(hosts(12), 3), 2);
        assert_eq!(depth(hosts(39), 3), 3);
        assert_eq!(depth(hosts(32), 32), 1);
        assert_eq!(depth(hosts(1000), 32), 2);
        let mut seen: Vec<u32> = Vec::new();
        fn walk(tree: Vec<(RemoteHost, Vec<RemoteHost>)>, width: usize, seen: &mut Vec<u32>) {
            for (host, below) in tree {
                seen.push(host.index);
                walk(fan_out(below, width), width, seen);
            }
        }
        walk(fan_out(hosts(100), 4), 4, &mut seen);
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>(), "every host once");
    }
}
