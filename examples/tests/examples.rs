//! Runs the examples as a user would and checks what they print.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use clusterduck_tests::{example_path, watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// The example binary `name`, built by `cargo test` beside this test.
fn example(name: &str) -> Command {
    Command::new(example_path(name))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run the example");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn expected_readme(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("seq={i} a={i} b={i}")).collect()
}

#[test]
fn readme_prints_one_line_per_id_in_order_on_stdout_and_cs_stderr() {
    let _w = watchdog("readme", LIMIT);
    let out = run(example("readme").args(["--local", "-n", "1000"]));
    assert_eq!(lines(&out.stdout), expected_readme(1000));
    let stderr = lines(&out.stderr);
    let from_c: Vec<String> = stderr
        .iter()
        .filter(|l| l.starts_with("seq="))
        .cloned()
        .collect();
    assert_eq!(
        from_c,
        expected_readme(1000),
        "C writes each line to its stderr"
    );
    let report = stderr.join("\n");
    assert!(report.contains("run report"), "{report}");
    // The counts, then busy % and blocked % (timings), then no RSS (one
    // process).
    assert!(
        report.lines().any(|l| {
            let w: Vec<_> = l.split_whitespace().collect();
            w.len() == 12
                && w[..9] == ["C", "bundled", "2000", "1000", "0", "0", "0", "0", "0"]
                && w[11] == "-"
        }),
        "{report}"
    );
}

#[test]
fn readme_in_process_mode_prints_what_local_mode_prints_and_logs_per_node() {
    let _w = watchdog("readme-processes", LIMIT);
    let dir = std::env::temp_dir().join(format!("cd-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(example("readme").args(["-n", "1000", "--dir", dir.to_str().unwrap()]));
    assert_eq!(lines(&out.stdout), expected_readme(1000));
    let local = run(example("readme").args(["-n", "1000", "--local"]));
    assert_eq!(out.stdout, local.stdout);
    let c_err = std::fs::read_to_string(dir.join("C.err")).unwrap();
    let mut c_lines = c_err.lines();
    assert!(c_lines.next().unwrap().starts_with("==== clusterduck run "));
    assert_eq!(
        c_lines.map(str::to_owned).collect::<Vec<_>>(),
        expected_readme(1000)
    );
    for node in ["A", "B", "C"] {
        for ext in ["out", "err"] {
            assert!(dir.join(format!("{node}.{ext}")).exists(), "{node}.{ext}");
        }
    }
    let small = ["--image-bytes", "128"];
    let collage = run(example("collage")
        .args(small)
        .args(["--dir", dir.to_str().unwrap()]));
    let local = run(example("collage").args(small).arg("--local"));
    assert_eq!(collage.stdout, local.stdout);
    assert_eq!(lines(&collage.stdout).len(), 24);
}

#[test]
fn readme_output_does_not_depend_on_the_spouts_orders() {
    let _w = watchdog("readme-seeds", LIMIT);
    for seed in ["1", "2", "3"] {
        let out = run(example("readme").args(["-n", "3000", "--seed", seed, "--local"]));
        assert_eq!(lines(&out.stdout), expected_readme(3000), "seed {seed}");
    }
    let out = run(example("readme").args(["-n", "0", "--local"]));
    assert!(out.stdout.is_empty());
}

#[test]
fn readme_rejects_bad_flags_naming_them() {
    let out = example("readme").args(["-n", "many"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: invalid value 'many' for '-n <N>': invalid digit found in string"),
        "{err}"
    );
    assert!(err.contains("try '--help'"), "{err}");
    let out = example("readme").arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unexpected argument '--frobnicate' found"),
        "{err}"
    );
    assert!(err.contains("Usage: readme [OPTIONS]"), "{err}");
    let out = example("readme")
        .args(["--local", "--hosts", "a,b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: the argument '--local' cannot be used with '--hosts <H1,H2,...>'"),
        "{err}"
    );
}

/// Every example's `--help` lists every flag it takes, and exits 0 without
/// running anything.
#[test]
fn every_example_lists_its_flags_with_help() {
    let common = [
        "--local",
        "--dir <DIR>",
        "--hosts <H1,H2,...>",
        "--report-json <FILE>",
        "--help",
    ];
    for (name, own) in [
        ("readme", &["-n <N>", "--seed <S>"][..]),
        ("collage", &["--hours <N>", "--image-bytes <N>"][..]),
        ("wordcount", &["--replicas <N>", "<FILE>"][..]),
    ] {
        let out = example(name).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help: {:?}", out.status);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(&format!("Usage: {name}")), "{help}");
        for flag in common.iter().chain(own) {
            assert!(help.contains(flag), "{name} --help lacks {flag}: {help}");
        }
    }
}

#[test]
fn collage_stitches_one_collage_per_hour_in_order() {
    let _w = watchdog("collage", LIMIT);
    let small = ["--image-bytes", "128"];
    let out = run(example("collage")
        .args(small)
        .args(["--local", "--hours", "24"]));
    let lines_of = lines;
    let lines = lines_of(&out.stdout);
    assert_eq!(lines.len(), 24);
    for (hour, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                "hour={hour:02} collage 42x9 of tokyo+paris+new-york checksum="
            )),
            "{line}"
        );
    }
    // Deterministic pictures: the same collages every run.
    let again = run(example("collage").args(small).args(["--hours", "24"]));
    assert_eq!(out.stdout, again.stdout);
    // By default, camera-sized photos (12 MiB, 4096 x 3072), out of line,
    // the same in both modes.
    let processes = run(example("collage").args(["--hours", "2"]));
    let local = run(example("collage").args(["--local", "--hours", "2"]));
    assert_eq!(processes.stdout, local.stdout);
    let lines = lines_of(&processes.stdout);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[1].starts_with("hour=01 collage 12288x3072 of tokyo+paris+new-york checksum="),
        "{}",
        lines[1]
    );
}

#[test]
fn ctrl_c_drains_the_readme_run_and_reports() {
    let _w = watchdog("ctrl-c", LIMIT);
    let mut child = example("readme")
        .args(["-n", "1000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // C writes every line to stderr too: read it meanwhile, or the pipe
    // fills and C waits for us.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "seq=0 a=0 b=0\n");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let stderr = stderr.join().unwrap();
    let tail = &stderr[stderr.len().saturating_sub(2000)..];
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {tail}");
    assert!(stderr.contains("drained on request"), "{tail}");
    // The spouts stopped mid-block: the ids they left unsent are skipped
    // (and counted as gaps), the rest is in order with equal values.
    let mut last = None;
    for line in std::iter::once(first.trim_end()).chain(rest.lines()) {
        let fields: Vec<&str> = line.split(['=', ' ']).collect();
        assert_eq!(fields.len(), 6, "{line}");
        let seq: u64 = fields[1].parse().unwrap();
        assert_eq!((fields[3], fields[5]), (fields[1], fields[1]), "{line}");
        assert!(last < Some(seq), "{line} after {last:?}");
        last = Some(seq);
    }
    assert!(last < Some(1_000_000_000 - 1), "the run was cut short");
}

/// A text of `lines` lines of words from a small vocabulary (so that words
/// repeat across replicas' shares), written to a file of its own.
fn words_file(name: &str, lines: usize) -> PathBuf {
    let mut rng = fastrand::Rng::with_seed(lines as u64);
    let vocabulary: Vec<String> = ["duck", "goose", "swan", "teal", "coot"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..200).map(|i| format!("w{i}")))
        .collect();
    let text: String = (0..lines)
        .map(|_| {
            let words: Vec<&str> = (0..rng.usize(1..12))
                .map(|_| vocabulary[rng.usize(..vocabulary.len())].as_str())
                .collect();
            words.join(" ") + "\n"
        })
        .collect();
    let path = std::env::temp_dir().join(format!("clusterduck-{name}-{}.txt", std::process::id()));
    std::fs::write(&path, text).expect("write the words file");
    path
}

/// What `tr -s ' ' '\n' < FILE | sort | uniq -c` says of `file`, as
/// `word count` lines.
fn uniq_counts(file: &std::path::Path) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("tr -s ' ' '\\n' < \"$1\" | sort | uniq -c")
        .arg("sh")
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .expect("run the shell pipeline");
    assert!(out.status.success(), "the pipeline failed");
    lines(&out.stdout)
        .iter()
        .map(|l| {
            let (count, word) = l.trim().split_once(' ').expect("count and word");
            format!("{word} {count}")
        })
        .collect()
}

#[test]
fn wordcount_with_four_replicas_prints_what_uniq_counts_in_local_and_process_mode() {
    let _w = watchdog("wordcount", LIMIT);
    let file = words_file("wordcount", 5000);
    let expected = uniq_counts(&file);
    assert_eq!(expected.len(), 205, "every word of the vocabulary is used");
    let dir = std::env::temp_dir().join(format!("clusterduck-wordcount-{}", std::process::id()));
    for mode in ["--local", "--dir"] {
        let mut cmd = example("wordcount");
        cmd.args(["--replicas", "4", mode]);
        if mode == "--dir" {
            cmd.arg(&dir);
        }
        let out = run(cmd.arg(&file));
        assert_eq!(lines(&out.stdout), expected, "{mode}");
        let report = String::from_utf8_lossy(&out.stderr);
        // Every replica took a share of the words; together, all of them.
        let counted: Vec<u64> = (0..4)
            .map(|i| {
                let row = report
                    .lines()
                    .find(|l| l.starts_with(&format!("  count[{i}] ")))
                    .unwrap_or_else(|| panic!("{mode}: no row for count[{i}]:\n{report}"));
                row.split_whitespace().nth(2).unwrap().parse().unwrap()
            })
            .collect();
        let words: u64 = expected
            .iter()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted.iter().sum::<u64>(), words, "{mode}: {counted:?}");
        assert!(counted.iter().all(|c| *c > 0), "{mode}: {counted:?}");
    }
    // Each replica logs to a file of its own.
    for i in 0..4 {
        assert!(dir.join(format!("count.{i}.err")).exists(), "count.{i}.err");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn wordcount_refuses_zero_replicas_naming_the_node() {
    let _w = watchdog("wordcount-zero", LIMIT);
    let file = words_file("wordcount-zero", 10);
    let out = example("wordcount")
        .args(["--replicas", "0", "--local"])
        .arg(&file)
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node \"count\": a node runs as at least one replica, 0 were asked for"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_file(&file);
}

#[test]
fn report_json_writes_the_report_and_the_error_as_json() {
    let _w = watchdog("report-json", LIMIT);
    let dir = std::env::temp_dir().join(format!("clusterduck-report-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    run(example("readme")
        .args(["-n", "50", "--local", "--report-json"])
        .arg(&path));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["error"], serde_json::Value::Null);
    let nodes = json["report"]["nodes"].as_array().unwrap();
    let c = nodes.iter().find(|n| n["name"] == "C").unwrap();
    assert_eq!(
        (c["messages_in"].as_u64(), c["messages_out"].as_u64()),
        (Some(100), Some(50))
    );
    assert!(json["report"]["elapsed_s"].as_f64().unwrap() > 0.0);
    // A run refused before it starts: no report, the error.
    let words = words_file("report-json", 3);
    let out = example("wordcount")
        .args(["--replicas", "0", "--local", "--report-json"])
        .arg(&path)
        .arg(&words)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["report"], serde_json::Value::Null);
    assert_eq!(
        json["error"],
        "invalid topology: node \"count\": a node runs as at least one replica, 0 were asked for"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&words);
}

/// Engine diagnostics go through `tracing`: a node's lines, in its `.err`
/// file, name it (`clusterduck[A]: ...`); the launching process's do not;
/// `RUST_LOG` filters them (the verbose lines are information: `warn`
/// hides them).
#[test]
fn diagnostics_name_their_node_and_follow_rust_log() {
    let _w = watchdog("readme-diagnostics", LIMIT);
    let said = |filter: Option<&str>| {
        let dir = std::env::temp_dir().join(format!(
            "clusterduck-diagnostics-{}-{}",
            std::process::id(),
            filter.unwrap_or("default")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = example("readme");
        cmd.args(["-n", "10", "--dir", dir.to_str().unwrap()])
            .env("CLUSTERDUCK_VERBOSE", "1")
            .env_remove("RUST_LOG");
        if let Some(filter) = filter {
            cmd.env("RUST_LOG", filter);
        }
        let out = run(&mut cmd);
        let a = std::fs::read_to_string(dir.join("A.err")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (String::from_utf8_lossy(&out.stderr).into_owned(), a)
    };
    let (master, a) = said(None);
    assert!(
        a.lines()
            .any(|l| l.starts_with("clusterduck[A]: node A of run ")),
        "{a}"
    );
    assert!(
        master
            .lines()
            .any(|l| l.starts_with("clusterduck: run ") && l.ends_with(": node C on localhost")),
        "{master}"
    );
    let (master, a) = said(Some("warn"));
    assert!(!a.contains("clusterduck[A]: node A of run "), "{a}");
    assert!(!master.contains("clusterduck: run "), "{master}");
    // The report still goes to stderr: it is the program's output, not a
    // diagnostic.
    assert!(master.contains("bundled"), "{master}");
}
