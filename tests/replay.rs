//! `skaffold-exporter replay`: every captured Skaffold stream (tests/fixtures/captured,
//! from public bug reports; v1 and v2, gateway chunks and State snapshots) against
//! reviewed golden output, and the command itself as a user runs it: malformed lines
//! reported as file:line with a non-zero exit code, stdin, v1 + v2 files of one
//! session, `--follow` with `--serve`. Plus a throughput measurement
//! (`cargo test --test replay -- --ignored --nocapture`).

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::replay::{Format, Output, Replayer};
use skaffold_exporter::simulator::scenario::Script;
use support::sessions::{Iteration, Session, T0, replay_paths, v1_lines, v2_lines};
use support::{assert_golden, captured_dir, events_total, sample};

const BIN: &str = env!("CARGO_BIN_EXE_skaffold-exporter");

/// What the golden files hold: the stderr notes (with the directory stripped), the
/// summary table, and the non-zero samples of the metrics.
fn golden_text(r: &Replayer, dir: &std::path::Path) -> String {
    let prefix = format!("{}/", dir.display());
    let notes: String = r
        .diagnostics()
        .iter()
        .map(|d| d.replace(&prefix, "") + "\n")
        .collect();
    // Series order within a family is not stable: sort.
    let mut lines: Vec<String> = r
        .metrics_text(Format::Prometheus)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.ends_with(" 0.0"))
        .map(|l| format!("{l}\n"))
        .collect();
    lines.sort();
    let metrics: String = lines.concat();
    format!(
        "# stderr\n{notes}replay: {} records, {} events folded, {} not folded, {} malformed\n\n# summary\n{}\n# metrics (non-zero samples)\n{metrics}",
        r.records(),
        r.folded(),
        r.skipped(),
        r.malformed(),
        r.report(Format::Prometheus, Output::Summary),
    )
}

#[test]
fn every_captured_stream_replays_to_its_golden_output() {
    let dir = captured_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let r = replay_paths(std::slice::from_ref(&path));
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/replay")
            .join(format!("{name}.txt"));
        assert_golden(&golden, &golden_text(&r, &dir));
        assert_eq!(r.malformed(), 0, "{name}: {:?}", r.diagnostics());
    }
}

/// The scripted session (written as Skaffold's `--event-log-file` writes it): the
/// initial loop and a failed rebuild of `app`, in the run `run_id`.
fn session_of_run(run_id: &str) -> Script {
    Session {
        run_id: Some(run_id.into()),
        iterations: vec![Iteration::FailedBuild],
        ..Session::default()
    }
    .script()
}

fn session() -> Script {
    session_of_run("simulated-run")
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_and_the_rest_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = v1_lines(&session(), T0);
    lines.insert(
        3,
        "{\"timestamp\": \"2023-11-14T22:13:20Z\", \"event\": {\"buildEvent\"".into(),
    );
    lines.insert(6, "this is not json".into());
    lines.insert(
        9,
        r#"{"timestamp":"yesterday","event":{"deployEvent":{"status":"Complete"}}}"#.into(),
    );
    let path = dir.path().join("events.json");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let file = path.display().to_string();

    let (code, stdout, stderr) = run(&["replay", &file], None);
    assert_eq!(code, 1, "some lines were bad\n{stderr}");
    for line in [4, 7, 10] {
        assert!(
            stderr.contains(&format!("{file}:{line}: malformed")),
            "line {line} not reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 malformed"), "{stderr}");
    // Everything else was folded: the initial loop and the failed rebuild.
    assert_eq!(
        sample(
            &stdout,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &stdout,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "failure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &stdout,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &stdout,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "undecodable")]
        ),
        Some(3.0)
    );
    assert!(stdout.starts_with("run  iteration  kind"), "{stdout}");

    // A clean file exits 0.
    let clean = dir.path().join("clean.json");
    std::fs::write(&clean, v1_lines(&session(), T0).join("\n")).unwrap();
    let (code, _, stderr) = run(&["replay", &clean.display().to_string()], None);
    assert_eq!(code, 0, "{stderr}");
    // A missing file is an error of its own.
    let (code, _, stderr) = run(&["replay", "/nonexistent/events.json"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot open /nonexistent/events.json"),
        "{stderr}"
    );
}

#[test]
fn rejected_lines_count_toward_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = v1_lines(&session(), T0);
    // Valid JSON, valid LogEntries, but nothing the fold can take.
    lines.insert(
        2,
        r#"{"timestamp":"2023-11-14T22:13:20Z","event":{"buildEvent":{"artifact":"web","status":"Exploded"}}}"#.into(),
    );
    lines.insert(
        5,
        r#"{"timestamp":"2023-11-14T22:13:21Z","event":{"buildEvent":{"status":"In Progress"}}}"#
            .into(),
    );
    let path = dir.path().join("events.json");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let file = path.display().to_string();
    let (code, stdout, stderr) = run(&["replay", &file], None);
    assert_eq!(code, 1, "rejected lines are bad lines too\n{stderr}");
    for line in [3, 6] {
        assert!(
            stderr.contains(&format!("{file}:{line}: skipped (counted as invalid)")),
            "line {line} not reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("0 malformed, 2 rejected"), "{stderr}");
    for reason in ["unknown_status", "missing_field"] {
        assert_eq!(
            sample(
                &stdout,
                "skaffold_exporter_invalid_events_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason}"
        );
    }
    assert_eq!(
        sample(
            &stdout,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "success")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_line_that_is_not_utf8_is_one_malformed_line_and_the_rest_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let lines = v1_lines(&session(), T0);
    // The session up to the failed rebuild's start, a malformed line, a line with a
    // Latin-1 byte in an artifact name, then the rebuild's end.
    let split = lines.len() - 2;
    let mut bytes = (lines[..split].join("\n") + "\nnot json\n").into_bytes();
    bytes.extend_from_slice(
        b"{\"timestamp\":\"2023-11-14T22:13:20Z\",\"event\":{\"buildEvent\":{\"artifact\":\"caf\xe9\",\"status\":\"In Progress\"}}}\n",
    );
    bytes.extend_from_slice((lines[split..].join("\n") + "\n").as_bytes());
    let path = dir.path().join("events.json");
    std::fs::write(&path, bytes).unwrap();
    let file = path.display().to_string();
    let (code, stdout, stderr) = run(&["replay", &file], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.starts_with("run  iteration  kind"), "{stdout}");
    // The rebuild after the bad line is folded.
    assert_eq!(
        sample(
            &stdout,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "failure")]
        ),
        Some(1.0),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("{file}:{}: malformed", split + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:{}: malformed", split + 2)) && stderr.contains("unicode"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("replay: {} records", lines.len() + 2)),
        "{stderr}"
    );
}

/// Starts `skaffold-exporter replay --serve --listen 127.0.0.1:0 ARGS FILE`; the child
/// (its stderr still piped) and the address it announced on its first stderr line.
fn serve(args: &[&str], file: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["replay", "--serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("replay: serving http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    // Kept open: the command reports on stderr until it exits.
    child.stderr = Some(stderr.into_inner());
    (child, addr)
}

#[test]
fn serve_is_ready_once_the_input_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json.v2");
    std::fs::write(&path, v2_lines(&session(), T0).join("\n") + "\n").unwrap();
    let (child, addr) = serve(&["--output", "summary"], &path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, _, body) = rt.block_on(support::http_get(addr, "/readyz", None));
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "never ready: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "ready\n");
    let metrics = rt.block_on(support::http_get(addr, "/metrics", None)).2;
    assert_eq!(
        sample(
            &metrics,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "failure")]
        ),
        Some(1.0),
        "ready means folded"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stdin_and_both_formats() {
    let text = v2_lines(&session(), T0).join("\n") + "\n";
    let (code, stdout, stderr) = run(
        &[
            "replay",
            "--format",
            "openmetrics",
            "--output",
            "metrics",
            "-",
        ],
        Some(&text),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim_end().ends_with("# EOF"), "{stdout}");
    assert!(
        stdout.contains("skaffold_build_cache_total{artifact=\"db\",result=\"hit\"} 1"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["replay", "--output", "summary", "-"], Some(&text));
    assert_eq!(code, 0);
    assert!(!stdout.contains("# TYPE"), "{stdout}");
    let row0 = stdout.lines().nth(1).unwrap();
    assert!(
        row0.contains("initial") && row0.contains("success") && row0.contains("web (2.500s)"),
        "{stdout}"
    );
}

#[test]
fn v1_and_v2_files_of_one_session_are_never_added_up() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("events.json");
    let v2 = dir.path().join("events.json.v2");
    std::fs::write(&v1, v1_lines(&session(), T0).join("\n")).unwrap();
    std::fs::write(&v2, v2_lines(&session(), T0).join("\n")).unwrap();
    let only_v2 = replay_paths(std::slice::from_ref(&v2));
    let both = replay_paths(&[v1.clone(), v2.clone()]);
    let sorted = |r: &Replayer| {
        let mut v: Vec<String> = r
            .metrics_text(Format::Prometheus)
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert!(
        sorted(&only_v2) == sorted(&both),
        "v1 + v2 files counted differently from v2 alone"
    );
    assert!(
        both.diagnostics()
            .iter()
            .any(|d| d.contains("events.json: skipped: ")
                && d.contains("events.json.v2 is given too")),
        "{:?}",
        both.diagnostics()
    );
    // Two runs appended to one file (O_APPEND across `skaffold dev` sessions): each
    // run's MetaEvent (a new runID) starts a run of its own.
    let appended = dir.path().join("two-runs.json.v2");
    let second = T0 + 3_600_000_000_000;
    let text = [
        v2_lines(&session(), T0),
        v2_lines(&session_of_run("second-run"), second),
    ]
    .concat()
    .join("\n");
    std::fs::write(&appended, text).unwrap();
    let r = replay_paths(&[appended]);
    let table = r.summary_table();
    assert_eq!(
        table.lines().filter(|l| l.starts_with("1 ")).count(),
        2,
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("2 ")).count(),
        2,
        "{table}"
    );
}

/// The summary's rows as (run, iteration, result, failed_phase, error_code).
fn rows(r: &Replayer) -> Vec<(String, String, String, String, String)> {
    r.summary_table()
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('('))
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            let s = |i: usize| c[i].to_owned();
            (s(0), s(1), s(3), s(4), s(5))
        })
        .collect()
}

#[test]
fn inputs_of_unrelated_sessions_are_each_a_session_of_their_own() {
    let dir = captured_dir();
    let v1_2019 = dir.join("skaffold-issue-3812_v1.5.0-dev_http-v1-events.json");
    let v1_2020 = dir.join("skaffold-issue-4578_v1.12.1-dev_http-v1-events.json");
    let v2_2021 = dir.join("skaffold-pr-5637_2021-04_http-v2-taskEvents.json");
    let each: Vec<Replayer> = [&v1_2019, &v1_2020, &v2_2021]
        .iter()
        .map(|p| replay_paths(std::slice::from_ref(*p)))
        .collect();
    let all = replay_paths(&[v1_2019.clone(), v1_2020.clone(), v2_2021.clone()]);
    // No v1 input is dropped for the v2 one: none is the other's `.v2` sibling.
    assert!(
        !all.diagnostics().iter().any(|d| d.contains("skipped: ")),
        "{:?}",
        all.diagnostics()
    );
    assert_eq!(
        all.folded(),
        each.iter().map(Replayer::folded).sum::<u64>(),
        "every input folded"
    );
    // Three sessions, three runs: each input's iteration 0 is a row of its own, as it
    // is when the input is replayed alone.
    let mut expected = Vec::new();
    for (run, r) in each.iter().enumerate() {
        for mut row in rows(r) {
            row.0 = (run + 1).to_string();
            expected.push(row);
        }
    }
    assert_eq!(expected.len(), 3, "{expected:?}");
    pretty_assertions::assert_eq!(rows(&all), expected);
    // Sessions do not leak into each other: the 2020 capture's deploy (0.526 s) is
    // its own, in run 2.
    let table = all.summary_table();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains("0.526")),
        "{table}"
    );

    // An unrelated v1 file next to a session's `FILE` + `FILE.v2`: only `FILE` is
    // skipped.
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("events.json");
    let v2 = tmp.path().join("events.json.v2");
    std::fs::write(&v1, v1_lines(&session(), T0).join("\n")).unwrap();
    std::fs::write(&v2, v2_lines(&session(), T0).join("\n")).unwrap();
    let r = replay_paths(&[v1_2020.clone(), v1.clone(), v2.clone()]);
    let skipped: Vec<&String> = r
        .diagnostics()
        .iter()
        .filter(|d| d.contains("skipped: "))
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].starts_with(&format!("{}: skipped", v1.display())));
    assert_eq!(
        r.folded(),
        each[1].folded() + replay_paths(std::slice::from_ref(&v2)).folded()
    );
}

#[test]
fn a_v1_22_build_task_is_reported_not_folded_never_silently() {
    let path = captured_dir().join("skaffold-pr-5637_2021-04_http-v2-taskEvents.json");
    let r = replay_paths(std::slice::from_ref(&path));
    assert_eq!((r.records(), r.folded(), r.skipped()), (5, 3, 1));
    let name = path.display().to_string();
    let note = r
        .diagnostics()
        .iter()
        .find(|d| d.starts_with(&format!("{name}:3: not folded: Build task")))
        .unwrap_or_else(|| panic!("{:?}", r.diagnostics()));
    assert!(note.contains("8.134 s"), "{note}");
    // And the command says so on stderr.
    let (code, _, stderr) = run(&["replay", &name], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("replay: 5 records, 3 events folded, 1 not folded"),
        "{stderr}"
    );
    assert!(stderr.contains(":3: not folded: Build task"), "{stderr}");
}

#[test]
fn a_failed_iteration_shows_the_failed_phase_and_skaffolds_code() {
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(1000, 0, "In Progress")
        .build(500, "web", "In Progress", C::Ok)
        .build(2500, "web", "Complete", C::Ok)
        .deploy(100, "In Progress", C::Ok)
        .deploy(800, "Failed", C::DeployKubectlUserErr)
        .dev_loop(50, 0, "Failed")
        .dev_loop(2000, 1, "In Progress")
        .build(100, "web", "In Progress", C::Ok)
        .build(900, "web", "Failed", C::BuildUserError)
        .dev_loop(100, 1, "Failed")
        .dev_loop(2000, 2, "In Progress")
        .build(100, "web", "In Progress", C::Ok)
        .build(900, "web", "Complete", C::Ok)
        .deploy(100, "In Progress", C::Ok)
        .deploy(800, "Complete", C::Ok)
        .status_check(100, "Started", C::Ok)
        .resource(
            700,
            "deployment/web",
            "Failed",
            C::StatuscheckContainerTerminated,
        )
        .status_check(100, "Failed", C::StatuscheckContainerTerminated)
        .dev_loop(50, 2, "Failed")
        .dev_loop(2000, 3, "In Progress")
        .build(100, "web", "In Progress", C::Ok)
        .build(900, "web", "Complete", C::Ok)
        .dev_loop(50, 3, "Succeeded");
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("events.json");
    let v2 = tmp.path().join("events.json.v2");
    std::fs::write(&v1, v1_lines(&s, T0).join("\n")).unwrap();
    std::fs::write(&v2, v2_lines(&s, T0).join("\n")).unwrap();
    let row = |i: &str, result: &str, phase: &str, code: &str| {
        (
            "1".to_owned(),
            i.to_owned(),
            result.to_owned(),
            phase.to_owned(),
            code.to_owned(),
        )
    };
    let expected = vec![
        row("0", "failure", "deploy", "DEPLOY_KUBECTL_USER_ERR"),
        row("1", "failure", "build", "BUILD_USER_ERROR"),
        row(
            "2",
            "failure",
            "status_check",
            "STATUSCHECK_CONTAINER_TERMINATED",
        ),
        row("3", "success", "-", "-"),
    ];
    for file in [v1, v2] {
        let r = replay_paths(std::slice::from_ref(&file));
        pretty_assertions::assert_eq!(rows(&r), expected, "{}", file.display());
    }
}

#[test]
fn follow_tails_a_growing_file_and_serve_keeps_metrics_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.json");
    let lines = v1_lines(&session(), T0);
    std::fs::write(&path, lines[..4].join("\n") + "\n").unwrap();
    let (child, addr) = serve(&["--follow", "--output", "metrics"], &path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scrape =
        |rt: &tokio::runtime::Runtime| rt.block_on(support::http_get(addr, "/metrics", None)).2;
    let wait = |rt: &tokio::runtime::Runtime, what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = scrape(rt);
            if pred(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what}:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(&rt, "first lines", &|t| {
        sample(
            t,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "success")],
        ) == Some(1.0)
    });
    // Caught up with the file so far: ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.block_on(support::http_get(addr, "/readyz", None)).0 != 200 {
        assert!(Instant::now() < deadline, "never ready while following");
        std::thread::sleep(Duration::from_millis(20));
    }
    let folded = events_total(&scrape(&rt));
    // The file grows, the last line arriving in two pieces.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let rest = lines[4..].join("\n");
    let (a, b) = rest.split_at(rest.len() - 10);
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    // The rest is written once the whole lines of the first piece are folded: the
    // follower has handed over everything before the partial line, so its next read
    // (at once, while the fold and a scrape take far longer) finds the end of the
    // file mid-line, and it must keep the piece and wait a poll for the rest.
    let whole_lines = a.matches('\n').count() as f64;
    wait(&rt, "the whole lines of the first piece", &|t| {
        events_total(t) == folded + whole_lines
    });
    f.write_all(format!("{b}\n").as_bytes()).unwrap();
    drop(f);
    wait(&rt, "the rest", &|t| {
        sample(
            t,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "failure")],
        ) == Some(1.0)
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    // 0: no malformed line (either piece folded as a line would be one).
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        sample(
            &stdout,
            "skaffold_dev_loops_total",
            &[("kind", "rebuild"), ("result", "failure")]
        ),
        Some(1.0)
    );
}

/// Replay throughput on a large generated log file (v2, with Skaffold log lines mixed
/// in as Skaffold writes them). Run with `--ignored --nocapture`; prints events/s.
#[test]
#[ignore = "measurement; run explicitly"]
fn replay_throughput() {
    let loops: usize = std::env::var("REPLAY_BENCH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    for (name, lines_of) in [
        ("events.json", v1_lines as fn(&Script, i64) -> Vec<String>),
        ("events.json.v2", v2_lines),
    ] {
        let path = dir.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut s = Script::new();
        s.meta(0, "v2.16.1");
        for i in 0..loops as i32 {
            s.dev_loop(1000, i, "In Progress")
                .log(5, "Generating tags...\n")
                .build(100, "web", "In Progress", C::Ok)
                .log(5, "Building [web]...\n")
                .build(2000, "web", "Complete", C::Ok)
                .deploy(100, "In Progress", C::Ok)
                .deploy(500, "Complete", C::Ok)
                .status_check(10, "Started", C::Ok)
                .resource(300, "deployment/web", "In Progress", C::Ok)
                .resource(300, "deployment/web", "Succeeded", C::Ok)
                .status_check(10, "Succeeded", C::Ok)
                .app_log(5, "web-1", "GET / 200")
                .dev_loop(10, i, "Succeeded");
        }
        let mut n = 0u64;
        for l in lines_of(&s, T0) {
            writeln!(f, "{l}").unwrap();
            n += 1;
        }
        drop(f);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let start = Instant::now();
        let r = replay_paths(&[path]);
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.records(), n);
        assert_eq!(r.malformed(), 0);
        println!(
            "replay throughput ({name}, {} build): {n} lines ({:.1} MiB), {} events folded in {secs:.2} s = {:.0} lines/s, {:.1} MiB/s",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "optimised"
            },
            bytes as f64 / 1048576.0,
            r.folded(),
            n as f64 / secs,
            bytes as f64 / 1048576.0 / secs
        );
    }
}
