//! The test hosts that the multi-host tests run on (`tools/testnet.sh`):
//! each is its own network, with its own address, reachable over ssh only
//! with its own, checked, host key.
//!
//! These tests need the hosts up and `CLUSTERDUCK_SSH_CONFIG` naming their ssh
//! config, as `.ci/run` does:
//!
//! ```text
//! eval "$(tools/testnet.sh up 3)"
//! cargo test -p clusterduck-tests --test testnet
//! tools/testnet.sh down
//! ```
//!
//! Without the variable each test prints a loud `SKIPPED: test hosts are not
//! up` line on stderr and returns (it fails instead where
//! `CLUSTERDUCK_NO_SKIP` is set, as in CI): the hosts need root and Debian's
//! `openssh-server`, which a developer's machine may not have. With the
//! variable set, every failure is a real one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use clusterduck_tests::{fresh_dir, watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// The hosts `.ci/run` brings up (`tools/testnet.sh up 3`).
const HOSTS: [&str; 3] = ["cd-h1", "cd-h2", "cd-h3"];

/// The ssh config naming the test hosts, or `None` if they are not up
/// (after saying so: a failure where skipping is forbidden).
fn ssh_config(test: &str) -> Option<PathBuf> {
    let path = clusterduck_tests::test_hosts(test)?;
    assert!(
        path.is_file(),
        "CLUSTERDUCK_SSH_CONFIG={} is not a file: are the test hosts still up?",
        path.display()
    );
    Some(path)
}

/// `ssh -F config [extra..] host command`, without stdin.
fn ssh(config: &Path, extra: &[&str], host: &str, command: &str) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(extra)
        .arg(host)
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// Runs `command` on `host` and returns its stdout; panics with ssh's stderr
/// if it fails.
fn on_host(config: &Path, host: &str, command: &str) -> String {
    let out = ssh(config, &[], host, command);
    assert!(
        out.status.success(),
        "ssh {host} {command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The value of `key` in ssh's effective configuration for `host` (`ssh -G`).
fn ssh_option(config: &Path, host: &str, key: &str) -> String {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .arg("-G")
        .arg(host)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh -G");
    assert!(out.status.success(), "ssh -G {host} failed");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("ssh -G {host} has no {key}"))
        .to_owned()
}

/// The network namespace of this test process.
fn own_net_ns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .expect("read /proc/self/ns/net")
        .to_string_lossy()
        .into_owned()
}

/// What a host says about itself: its network namespace and its IPv4
/// addresses other than loopback.
#[derive(Debug)]
struct HostView {
    net_ns: String,
    addresses: Vec<String>,
}

/// Asks `host`, over ssh from this process, for its
/// [`HostView`].
fn host_view(config: &Path, host: &str) -> HostView {
    let text = on_host(
        config,
        host,
        "readlink /proc/self/ns/net && ip -o -4 addr show",
    );
    let mut lines = text.lines();
    let net_ns = lines.next().expect("the namespace line").to_owned();
    let addresses = lines
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            let address = words.next()?.split('/').next()?;
            (!address.starts_with("127.")).then(|| address.to_owned())
        })
        .collect();
    HostView { net_ns, addresses }
}

#[test]
fn each_host_has_its_own_network_and_address() {
    let Some(config) = ssh_config("each_host_has_its_own_network_and_address") else {
        return;
    };
    let _w = watchdog("each_host_has_its_own_network_and_address", LIMIT);
    let own = own_net_ns();
    let mut namespaces = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for host in HOSTS {
        let view = host_view(&config, host);
        let configured = ssh_option(&config, host, "hostname");
        assert_eq!(
            view.addresses,
            vec![configured.clone()],
            "{host} should have exactly its configured address {configured}"
        );
        assert_ne!(view.net_ns, own, "{host} runs in the test's own network");
        assert!(
            namespaces.insert(view.net_ns.clone()),
            "{host} shares its network namespace {} with another host",
            view.net_ns
        );
        assert!(
            addresses.insert(configured.clone()),
            "{host} shares its address {configured} with another host"
        );
    }
}

#[test]
fn hosts_reach_each_other() {
    let Some(config) = ssh_config("hosts_reach_each_other") else {
        return;
    };
    let _w = watchdog("hosts_reach_each_other", LIMIT);
    let path = config.to_str().expect("a UTF-8 path");
    assert!(!path.contains('\''), "the config path needs no quoting");
    for (i, from) in HOSTS.iter().enumerate() {
        let to = HOSTS[(i + 1) % HOSTS.len()];
        let direct = host_view(&config, to).net_ns;
        // The config and keys are files, shared by all the hosts.
        let hop = on_host(
            &config,
            from,
            &format!("ssh -F '{path}' {to} readlink /proc/self/ns/net"),
        );
        assert_eq!(hop.trim(), direct, "{from} -> {to} reached another host");
    }
}

#[test]
fn a_wrong_host_key_is_refused() {
    let Some(config) = ssh_config("a_wrong_host_key_is_refused") else {
        return;
    };
    let _w = watchdog("a_wrong_host_key_is_refused", LIMIT);
    let dir = fresh_dir("testnet-keys");
    let (host, other) = (HOSTS[0], HOSTS[1]);
    let address = ssh_option(&config, host, "hostname");

    // The real known_hosts lets the command through.
    assert_eq!(on_host(&config, host, "echo reached").trim(), "reached");
    assert_eq!(
        ssh_option(&config, host, "stricthostkeychecking"),
        "true",
        "the ssh config must check host keys"
    );

    // No key known for the host: refused, not learned.
    let empty = dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    // `other`'s key listed under `host`'s names: a host pretending.
    let known = std::fs::read_to_string(ssh_option(&config, host, "userknownhostsfile"))
        .expect("read the hosts' known_hosts");
    let other_key = known
        .lines()
        .find_map(|l| {
            let (names, key) = l.split_once(' ')?;
            names.split(',').any(|n| n == other).then_some(key)
        })
        .unwrap_or_else(|| panic!("no key for {other} in known_hosts"));
    let swapped = dir.join("swapped_known_hosts");
    std::fs::write(&swapped, format!("{host},{address} {other_key}\n")).unwrap();

    for file in [&empty, &swapped] {
        let known_hosts = format!("UserKnownHostsFile={}", file.display());
        let out = ssh(
            &config,
            &["-o", &known_hosts, "-o", "StrictHostKeyChecking=yes"],
            host,
            "echo reached",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(255),
            "ssh with {} should fail: {stderr}",
            file.display()
        );
        assert!(
            stderr.contains("Host key verification failed"),
            "ssh with {} failed, but not on the host key: {stderr}",
            file.display()
        );
        assert!(out.stdout.is_empty(), "the command ran anyway");
        assert_eq!(
            std::fs::read_to_string(file).unwrap(),
            if file == &empty {
                String::new()
            } else {
                format!("{host},{address} {other_key}\n")
            },
            "ssh changed {}",
            file.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
