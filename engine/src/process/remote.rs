//! Reaching other hosts over SSH: where a host is, shipping this binary to
//! it once (content-hashed), and starting a node there with its
//! configuration on stdin.
//!
//! `ssh` runs in batch mode (no prompt ever) and checks host keys as the
//! user's SSH configuration says; `CLUSTERDUCK_SSH_CONFIG` names a config
//! file to use instead (`ssh -F`).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

use super::node::NODE_ENV;

/// The environment variable naming the ssh config file to use.
pub const SSH_CONFIG_ENV: &str = "CLUSTERDUCK_SSH_CONFIG";

/// Why a host could not be used. Each variant names the host.
#[derive(Debug, thiserror::Error)]
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

    /// Starts `kill -KILL pid` on `host`: for a node that outlived its run
    /// (stopped, or deaf to its closed connection), which the end of its
    /// ssh session does not end.
    pub(crate) fn kill_node(&self, host: &str, pid: u32) -> io::Result<Child> {
        self.command(host)
            .arg(format!("kill -KILL {pid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    /// The host's IP address, as ssh would connect to it.
    pub(crate) fn address_of(&self, host: &str) -> Result<IpAddr, HostError> {
        let fail = |detail: String| HostError::Resolve {
            host: host.to_owned(),
            detail,
        };
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.config {
            cmd.arg("-F").arg(config);
        }
        let out = cmd
            .args(["-G", host])
            .output()
            .map_err(|e| fail(format!("running ssh -G: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("hostname "))
            .ok_or_else(|| {
                fail(format!(
                    "ssh -G printed no hostname: {}",
                    stderr_line(&out.stderr)
                ))
            })?;
        (name, 22)
            .to_socket_addrs()
            .map_err(|e| fail(format!("{name}: {e}")))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| fail(format!("{name}: no address")))
    }

    /// Copies `program` to `dir/.bin/` on `host` unless a copy with the same
    /// content is there already, and returns its path there. Also proves
    /// that the host answers and accepts us.
    pub(crate) fn ship(&self, host: &str, program: &Path, dir: &str) -> Result<String, HostError> {
        let copy_failed = |detail: String| HostError::Copy {
            host: host.to_owned(),
            detail,
        };
        let bytes = std::fs::read(program)
            .map_err(|e| copy_failed(format!("reading {}: {e}", program.display())))?;
        let hash: String = Sha256::digest(&bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clusterduck".into());
        let bin_dir = format!("{dir}/.bin");
        let target = format!("{bin_dir}/{name}-{hash}");
        // Reuse the copy if there is one; else write a temporary and rename,
        // so that a half-copied binary is never run.
        let script = format!(
            "mkdir -p {d} && if test -x {t}; then cat >/dev/null; echo reused; else cat > {t}.$$ && chmod 700 {t}.$$ && mv {t}.$$ {t} && echo copied; fi",
            d = quote(&bin_dir),
            t = quote(&target),
        );
        let mut child = self
            .command(host)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| copy_failed(format!("running ssh: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&bytes));
        let mut stderr = Vec::new();
        let mut stdout = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        let wrote = writer.join().unwrap_or(Ok(()));
        let status = child
            .wait()
            .map_err(|e| copy_failed(format!("waiting for ssh: {e}")))?;
        if status.code() == Some(255) {
            return Err(classify(host, &stderr));
        }
        if !status.success() {
            return Err(copy_failed(format!("{status}: {}", stderr_line(&stderr))));
        }
        wrote.map_err(|e| copy_failed(format!("sending the binary: {e}")))?;
        Ok(target)
    }

    /// Starts a node on another host. The child is the local `ssh`; the
    /// node's stdin is its stdin.
    pub(crate) fn spawn_node(&self, node: &RemoteNode<'_>) -> io::Result<Child> {
        let out = quote(&format!("{}/{}.out", node.dir, node.name));
        let err = quote(&format!("{}/{}.err", node.dir, node.name));
        let args: Vec<String> = node
            .args
            .iter()
            .map(|a| quote(&a.to_string_lossy()))
            .collect();
        // The run's settings (CLUSTERDUCK_IO, CLUSTERDUCK_VERBOSE, ...) go
        // along; ssh would not pass them. The remote shell starts the node
        // (its stdin, the configuration, passed on explicitly: a
        // background job's would be /dev/null), prints its pid on ssh's
        // stdout (so that the master can kill a node that never connects),
        // waits for it and exits with its status, which a shell gives as
        // 128 + the signal for a node killed by one: ssh passes that on,
        // where for an exec'd node killed by a signal it says only 255.
        let settings: String = std::env::vars()
            .filter(|(k, _)| k.starts_with("CLUSTERDUCK_") && k != NODE_ENV && k != SSH_CONFIG_ENV)
            .map(|(k, v)| format!("{k}={} ", quote(&v)))
            .collect();
        let script = format!(
            "mkdir -p {d} && printf '%s\\n' {h} >> {out} && printf '%s\\n' {h} >> {err} || exit 1; env {settings}{env}={n} {p} {a} <&0 >> {out} 2>> {err} & echo $!; wait $!; exit $?",
            d = quote(node.dir),
            h = quote(node.header.trim_end()),
            env = NODE_ENV,
            n = quote(node.name),
            p = quote(node.program),
            a = args.join(" "),
        );
        self.command(node.host)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    }
}

/// A node to start on another host.
#[derive(Debug)]
pub(crate) struct RemoteNode<'a> {
    /// The host.
    pub(crate) host: &'a str,
    /// This program, shipped there.
    pub(crate) program: &'a str,
    /// This program's arguments.
    pub(crate) args: &'a [OsString],
    /// The log directory there: stdout and stderr are appended to
    /// `<dir>/<name>.out` and `.err`, after `header`.
    pub(crate) dir: &'a str,
    /// The node.
    pub(crate) name: &'a str,
    /// The line that opens the node's logs for this run.
    pub(crate) header: &'a str,
}

use std::os::unix::process::CommandExt;

/// The local address this machine uses to reach `remote`.
pub(crate) fn local_address_towards(remote: IpAddr) -> io::Result<IpAddr> {
    let socket = UdpSocket::bind(if remote.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    // No packet is sent: connecting a UDP socket only picks the route.
    socket.connect((remote, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// Tells an ssh failure (exit status 255) by what ssh said.
fn classify(host: &str, stderr: &[u8]) -> HostError {
    let detail = stderr_line(stderr);
    let host = host.to_owned();
    if detail.contains("Permission denied") {
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
    fn the_route_to_loopback_starts_at_loopback() {
        let local = local_address_towards("127.0.0.1".parse().unwrap()).unwrap();
        assert!(local.is_loopback());
    }
}
