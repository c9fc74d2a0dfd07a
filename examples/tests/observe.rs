//! Looks at a running topology the way its user does: the Prometheus
//! endpoint and the status page's JSON scraped while the readme example
//! runs (and a node killed under it), the live view in a real terminal
//! (`tmux`, read with `capture-pane`), the status page in headless
//! Chromium (its DOM and screenshots).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clusterduck_tests::{example_path, fresh_dir, node_processes, skip, watchdog};

const LIMIT: Duration = Duration::from_secs(180);

/// The readme example, serving its metrics on a port of its own: the child
/// (killed when dropped), its metrics address, and its stderr's lines.
struct Served {
    child: Child,
    address: String,
    stderr: mpsc::Receiver<String>,
    started: Instant,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_readme(n: u64, dir: &Path) -> Served {
    serve_readme_with(n, dir, &[])
}

/// [`serve_readme`] with more flags.
fn serve_readme_with(n: u64, dir: &Path, args: &[&str]) -> Served {
    let started = Instant::now();
    let mut child = Command::new(example_path("readme"))
        .args([
            "-n",
            &n.to_string(),
            "--metrics",
            "127.0.0.1:0",
            "--linger",
            "60",
        ])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the readme example");
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let prefix = "status page and metrics at http://";
    let address = loop {
        let line = rx
            .recv()
            .expect("the example ended before it said where its metrics are");
        if let Some(at) = line.split(prefix).nth(1) {
            break at.trim_end_matches('/').to_owned();
        }
    };
    Served {
        child,
        address,
        stderr: rx,
        started,
    }
}

/// `GET path` from `address`: the status line and the body.
fn get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The samples of a scrape: (metric name, node) -> value.
fn samples(text: &str) -> BTreeMap<(String, String), f64> {
    let mut found = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap().to_owned();
        let node = series
            .split("node=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_owned();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a sample: {line}"));
        found.insert((name, node), value);
    }
    found
}

fn status(address: &str) -> serde_json::Value {
    let (head, body) = get(address, "/status.json");
    assert!(head.contains("200"), "{head}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"))
}

fn node_state(status: &serde_json::Value, node: &str) -> Option<String> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["state"].as_str())
        .map(str::to_owned)
}

/// Polls `probe` every 20 ms until it gives something.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_metrics_endpoint_counts_every_node_and_a_killed_node_shows_dead() {
    let _w = watchdog("metrics endpoint", LIMIT);
    let dir = fresh_dir("metrics-endpoint");
    let served = serve_readme(3_000_000, &dir);
    let address = served.address.clone();

    // The first figures, and the time they took from the launch.
    let first = wait_for("the first figures", || {
        let s = status(&address);
        (s["run"] == "running").then_some(s)
    });
    let first_after = served.started.elapsed();
    for node in ["A", "B", "C"] {
        assert!(
            node_state(&first, node).is_some(),
            "{node} missing: {first}"
        );
    }

    // Two scrapes: every node's counter there, and growing.
    let (head, text) = get(&address, "/metrics");
    assert!(head.contains("200"), "{head}");
    assert!(
        text.contains("# TYPE clusterduck_values_out counter"),
        "{text}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends so: {text}"
    );
    let one = samples(&text);
    let out = |s: &BTreeMap<(String, String), f64>, node: &str| {
        s.get(&("clusterduck_values_out_total".to_owned(), node.to_owned()))
            .copied()
            .unwrap_or_else(|| panic!("no values_out of {node}"))
    };
    for node in ["A", "B", "C"] {
        for metric in [
            "clusterduck_busy_seconds_total",
            "clusterduck_blocked_seconds_total",
            "clusterduck_node_up",
            "clusterduck_node_restarts_total",
        ] {
            assert!(
                one.contains_key(&(metric.to_owned(), node.to_owned())),
                "{metric} of {node} missing:\n{text}"
            );
        }
    }
    for edge in ["A->C", "B->C"] {
        assert!(
            text.contains(&format!("edge=\"{edge}\"")),
            "{edge}:\n{text}"
        );
    }
    assert!(!text.contains("seq="), "no label per sequence id:\n{text}");
    let two = wait_for("counters that grow", || {
        let two = samples(&get(&address, "/metrics").1);
        ["A", "B", "C"]
            .iter()
            .all(|n| out(&two, n) > out(&one, n))
            .then_some(two)
    });
    eprintln!(
        "first figures {:.2} s after the launch; values_out of C {} -> {}",
        first_after.as_secs_f64(),
        out(&one, "C"),
        out(&two, "C")
    );

    // Kill C: the page says it is dead.
    let c = node_processes(dir.to_str().unwrap())
        .into_iter()
        .find(|p| p.node == "C")
        .expect("C's process");
    let killed = Instant::now();
    clusterduck_tests::send_signal(c.pid, 9);
    let seen = wait_for("C shown dead", || {
        let s = status(&address);
        (node_state(&s, "C").as_deref() == Some("dead")).then_some(s)
    });
    let after = killed.elapsed();
    let c_status = seen["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "C")
        .unwrap()
        .clone();
    assert!(
        c_status["error"]
            .as_str()
            .unwrap_or("")
            .contains("signal 9"),
        "{c_status}"
    );
    eprintln!("C shown dead {} ms after kill -9", after.as_millis());
    let up = samples(&get(&address, "/metrics").1);
    assert_eq!(
        up.get(&("clusterduck_node_up".to_owned(), "C".to_owned())),
        Some(&0.0)
    );
    // The run fails, naming C; the page keeps its final report.
    let last = wait_for("the run's end", || {
        let s = status(&address);
        (s["run"] == "failed").then_some(s)
    });
    assert!(
        last["failure"].as_str().unwrap_or("").contains("node C"),
        "{last}"
    );
    let report_nodes: Vec<&str> = last["report"]["nodes"]
        .as_array()
        .expect("the final report")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(report_nodes, ["A", "B", "C"]);
    let said = wait_for("the report on stderr", || {
        served.stderr.try_iter().find(|l| l.starts_with("error:"))
    });
    assert!(said.contains("node C"), "{said}");
}

#[test]
fn across_hosts_each_node_shows_its_host_and_each_link_its_bytes() {
    let test = "metrics-hosts";
    let _w = watchdog("metrics across hosts", LIMIT);
    let Some(hosts) = clusterduck_tests::test_hosts_at_least(test, 3) else {
        return;
    };
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    let dir = fresh_dir(test);
    // Round-robin: A on the first host, B on the second, C on the third.
    let served = serve_readme_with(3_000_000, &dir, &["--hosts", &names.join(",")]);
    let address = served.address.clone();
    let link_bytes = |s: &serde_json::Value, from: &str| -> Option<u64> {
        let edge = s["edges"].as_array()?.iter().find(|e| e["from"] == from)?;
        assert_eq!(edge["to"], "C", "{edge}");
        // None until C's first figures.
        let link = edge["link"].as_object()?;
        assert_eq!(link["state"], "up", "{edge}");
        link["bytes"].as_u64()
    };
    let first = wait_for("links that carry bytes", || {
        let s = status(&address);
        let moving = ["A", "B"]
            .iter()
            .all(|f| link_bytes(&s, f).unwrap_or(0) > 0);
        (s["run"] == "running" && moving).then_some(s)
    });
    for (node, host) in ["A", "B", "C"].iter().zip(&names) {
        let n = first["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == *node)
            .unwrap();
        assert_eq!(n["host"], *host, "{n}");
    }
    let second = wait_for("bytes that grow", || {
        let s = status(&address);
        ["A", "B"]
            .iter()
            .all(|f| link_bytes(&s, f) > link_bytes(&first, f))
            .then_some(s)
    });
    let scrape = get(&address, "/metrics").1;
    for edge in ["A->C", "B->C"] {
        let line = scrape
            .lines()
            .find(|l| {
                l.starts_with("clusterduck_link_received_bytes_total")
                    && l.contains(&format!("edge=\"{edge}\""))
            })
            .unwrap_or_else(|| panic!("no link bytes of {edge}:\n{scrape}"));
        assert!(!line.ends_with(" 0.0"), "{line}");
    }
    eprintln!(
        "link A->C: {:?} -> {:?} bytes",
        link_bytes(&first, "A"),
        link_bytes(&second, "A")
    );
}

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(test: &str, command: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            skip(test, "tmux is not installed");
            return None;
        }
        let tmux = Tmux {
            socket: format!("cd-{test}-{}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "new-session",
                "-d",
                "-x",
                "140",
                "-y",
                "30",
            ])
            .arg(command)
            .env_remove("CLUSTERDUCK_LIVE")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Some(tmux)
    }

    /// What the pane shows now.
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The row of `node` in a capture of the live view.
fn row<'a>(screen: &'a str, node: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        let first = l.split_whitespace().next();
        first == Some(node) && l.contains("localhost")
    })
}

#[test]
fn the_live_view_shows_every_node_in_a_terminal_with_changing_numbers() {
    let test = "live-view";
    let _w = watchdog("live view in tmux", LIMIT);
    let dir = fresh_dir(test);
    let n = 2_000_000u64;
    let out = dir.join("stdout");
    let done = dir.join("done");
    // Verbose: the master logs while the view is drawn ("every node
    // ready ...; started").
    let command = format!(
        "CLUSTERDUCK_VERBOSE=1 {} -n {n} --dir {} > {} ; echo $? > {} ; sleep 600",
        example_path("readme").display(),
        dir.display(),
        out.display(),
        done.display()
    );
    let Some(tmux) = Tmux::start(test, &command) else {
        return;
    };
    let first = wait_for("the live view", || {
        let screen = tmux.capture();
        (screen.contains("clusterduck running")
            && ["A", "B", "C"].iter().all(|n| row(&screen, n).is_some()))
        .then_some(screen)
    });
    eprintln!("{first}");
    assert!(
        first.contains("busy%") && first.contains("blocked%"),
        "{first}"
    );
    let c_first = row(&first, "C").unwrap().to_owned();
    let later = wait_for("numbers that change", || {
        let screen = tmux.capture();
        let c = row(&screen, "C")?.to_owned();
        (c != c_first && screen.contains("clusterduck running")).then_some(screen)
    });
    eprintln!("{later}");
    // One table, redrawn in place: the title once on the screen, and the
    // master's log lines above it, whole.
    assert_eq!(later.matches("clusterduck running").count(), 1, "{later}");
    let logged = later
        .find("every node ready after")
        .expect("the master's line");
    assert!(
        logged < later.find("clusterduck running").unwrap(),
        "{later}"
    );
    let end = wait_for("the end of the run", || {
        std::fs::read_to_string(&done)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(end.trim(), "0", "the run failed:\n{}", tmux.capture());
    let last = tmux.capture();
    assert!(last.contains("clusterduck finished"), "{last}");
    assert!(last.contains("run report"), "{last}");
    // The view never went to stdout: exactly the ids, in order.
    let printed = std::fs::read_to_string(&out).unwrap();
    assert!(!printed.contains('\x1b'), "escape codes on stdout");
    assert_eq!(printed.lines().count() as u64, n);
    assert_eq!(
        printed.lines().last(),
        Some(format!("seq={} a={} b={}", n - 1, n - 1, n - 1).as_str())
    );
}

#[test]
fn clusterduck_live_0_turns_the_view_off_in_a_terminal() {
    let test = "live-off";
    let _w = watchdog("live view off", LIMIT);
    let dir = fresh_dir(test);
    let done = dir.join("done");
    let command = format!(
        "CLUSTERDUCK_LIVE=0 {} -n 20000 --dir {} > /dev/null ; echo $? > {} ; sleep 600",
        example_path("readme").display(),
        dir.display(),
        done.display()
    );
    let Some(tmux) = Tmux::start(test, &command) else {
        return;
    };
    wait_for("the end of the run", || {
        std::fs::read_to_string(&done)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    let screen = tmux.capture();
    // The pane is read (the report is there), and the view is not.
    assert!(screen.contains("run report"), "{screen}");
    assert!(!screen.contains("clusterduck running"), "{screen}");
    assert!(!screen.contains("clusterduck finished"), "{screen}");
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=2500",
            "--window-size=1100,600",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the table cell of `node`'s row in column `column` of the
/// page's node table, from its DOM.
fn cell(dom: &str, node: &str, column: usize) -> Option<String> {
    let start = dom.find(&format!("<tr data-node=\"{node}\""))?;
    let row = &dom[start..];
    let row = &row[..row.find("</tr>")?];
    row.split("<td")
        .skip(1)
        .nth(column)
        .and_then(|td| td.split('>').nth(1))
        .and_then(|t| t.split('<').next())
        .map(str::to_owned)
}

#[test]
fn the_status_page_draws_every_node_and_updates_itself() {
    let test = "status-page";
    let _w = watchdog("status page in chromium", LIMIT);
    if Command::new("chromium").arg("--version").output().is_err() {
        return skip(test, "chromium is not installed");
    }
    let dir = fresh_dir(test);
    let served = serve_readme(3_000_000, &dir);
    let url = format!("http://{}/", served.address);
    wait_for("the first figures", || {
        (status(&served.address)["run"] == "running").then_some(())
    });
    let first = chromium(&url, &["--dump-dom"]);
    assert!(first.contains("<g class=\"node running"), "{first}");
    for node in ["A", "B", "C"] {
        // Drawn in the graph and listed in the table.
        let drawn = format!("data-node=\"{node}\"");
        assert_eq!(first.matches(&drawn).count(), 2, "{node}:\n{first}");
    }
    assert!(first.contains("host localhost"), "{first}");
    assert!(first.contains("bottleneck"), "{first}");
    // Column 11: values out, in all.
    let out_first = cell(&first, "C", 11).expect("C's row");
    let shot_one = dir.join("one.png");
    let shot_two = dir.join("two.png");
    chromium(&url, &[&format!("--screenshot={}", shot_one.display())]);
    let second = wait_for("numbers that change", || {
        let dom = chromium(&url, &["--dump-dom"]);
        (cell(&dom, "C", 11)? != out_first).then_some(dom)
    });
    chromium(&url, &[&format!("--screenshot={}", shot_two.display())]);
    let (one, two) = (
        std::fs::read(&shot_one).unwrap(),
        std::fs::read(&shot_two).unwrap(),
    );
    assert!(
        one.starts_with(b"\x89PNG") && one.len() > 10_000,
        "{}",
        one.len()
    );
    assert_ne!(one, two, "the page did not change between two screenshots");
    eprintln!(
        "C's values out on the page: {out_first} -> {}",
        cell(&second, "C", 11).unwrap()
    );
}
