//! `skaffold-exporter replay` against hostile or broken inputs and outputs, run as a
//! user runs it (issue 13 items 2-5, 11): an over-long line, an endless stdin,
//! inputs that cannot be read next to good ones, a reader that goes away, a full
//! disk, a closed stdout, and `--follow` through log rotation and in-place rewrites.

mod support;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::child::Exporter;
use support::{events_folded, sample, vm_hwm_kib};

const BIN: &str = env!("CARGO_BIN_EXE_skaffold-exporter");

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/real/events.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_over_long_line_is_malformed_and_the_lines_after_it_are_folded() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let long = format!("[{}0]", "0,".repeat(5 * 1024 * 1024));
    let path = dir.path().join("long.json");
    std::fs::write(
        &path,
        format!(
            "{}\n{long}\n{}\n",
            lines[..3].join("\n"),
            lines[3..].join("\n")
        ),
    )
    .unwrap();
    let file = path.display().to_string();
    let (code, stdout, stderr) = run(&["replay", "--output", "metrics", &file]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4: malformed")) && stderr.contains("line too long"),
        "{stderr}"
    );
    let (_, whole, _) = run(&["replay", "--output", "metrics", &fixture()]);
    assert_eq!(events_folded(&stdout), events_folded(&whole));
    assert!(!events_folded(&whole).is_empty());
}

/// Bytes process `pid` has read so far (`rchar` of /proc/PID/io: every read(2) and
/// its kin, whatever the file).
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

#[test]
fn replay_of_an_endless_stdin_reads_on_in_bounded_memory() {
    const PEAK_KIB: u64 = 64 * 1024;
    // Four times the memory bound: a replay that kept what it read could not stay
    // under it (it used to grow ~400 MB/s).
    const ENOUGH: u64 = 4 * PEAK_KIB * 1024;
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let mut child = Command::new(BIN)
        .args(["replay", "-"])
        .stdin(zero)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Waits for it to have read ENOUGH, then takes its peak; the child is killed
    // before any assertion, so a failure leaves nothing reading /dev/zero.
    let wait = Duration::from_secs(60);
    let deadline = Instant::now() + wait;
    let outcome = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Err(format!("it stopped reading: it exited ({status})"));
        }
        let read = bytes_read(child.id());
        if read >= ENOUGH {
            let peak = vm_hwm_kib(child.id());
            break match child.try_wait().unwrap() {
                None => Ok(peak),
                Some(status) => Err(format!("it stopped reading: it exited ({status})")),
            };
        }
        if Instant::now() >= deadline {
            break Err(format!("it stopped reading: {read} bytes in {wait:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    child.wait().unwrap();
    let peak = outcome.unwrap_or_else(|e| panic!("{e}"));
    assert!(peak < PEAK_KIB, "peak RSS {peak} KiB");
}

/// The same report (series order within a family is not stable).
fn same(a: &str, b: &str) -> bool {
    fn sorted(t: &str) -> Vec<&str> {
        let mut v: Vec<&str> = t.lines().collect();
        v.sort_unstable();
        v
    }
    !a.is_empty() && sorted(a) == sorted(b)
}

#[test]
fn unreadable_inputs_are_reported_and_the_rest_is_still_printed() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture();
    let (code, alone, _) = run(&["replay", &good]);
    assert_eq!(code, 0);
    let missing = dir.path().join("missing.json").display().to_string();
    let a_dir = dir.path().display().to_string();
    for bad in [&missing, &a_dir] {
        let (code, stdout, stderr) = run(&["replay", &good, bad]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(
            same(&stdout, &alone),
            "{bad}: what could be read is printed"
        );
        assert!(stderr.contains(bad.as_str()), "{stderr}");
        assert!(stderr.contains("could not be read"), "{stderr}");
        // First or second: the same.
        let (code, stdout, _) = run(&["replay", bad, &good]);
        assert_eq!((code, same(&stdout, &alone)), (2, true), "{bad}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // The fixture 200 times over (~240 KB of metrics text): far more than a pipe holds, so
    // the replay is still writing when the reader goes away and gets EPIPE.
    let fixture = fixture();
    let mut child = Command::new(BIN)
        .arg("replay")
        .args(std::iter::repeat_n(&fixture, 200))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut head = [0u8; 100];
    out.read_exact(&mut head).unwrap();
    drop(out);
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

#[test]
fn a_write_error_exits_2_with_a_message() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(BIN)
        .args(["replay", &fixture()])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write the report to stdout"),
        "{stderr}"
    );
    // Started with stdout closed: the metrics would be lost, so it fails.
    let out = Command::new("sh")
        .args(["-c", "exec \"$0\" replay \"$1\" >&-", BIN, &fixture()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stdout is closed"), "{stderr}");
    // A shell's `>/dev/null` is not a closed stdout.
    let out = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" replay \"$1\" >/dev/null",
            BIN,
            &fixture(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// Runs `replay --follow --serve` on `path`: waits until it is ready (the file read
/// to its end and looked at) with one run folded, lets `change` act on the file,
/// waits until a second run is folded, stops it with SIGINT; returns its report and
/// stderr. Every wait is for a condition, with a generous deadline.
fn follow(path: &Path, change: impl FnOnce()) -> (String, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut x = Exporter::start(
        &[
            "replay",
            "--follow",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--output",
            "metrics",
            path.to_str().unwrap(),
        ],
        |c| {
            c.stdout(Stdio::piped());
        },
    );
    // Read as it comes: a report larger than a pipe must not block the exit.
    let mut stdout = x.child.stdout.take().unwrap();
    let report = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    rt.block_on(x.wait_for_log("replay: serving http://"));
    let log = x.log();
    let addr: std::net::SocketAddr = log
        .split("replay: serving http://")
        .nth(1)
        .and_then(|s| s.split("/metrics").next())
        .unwrap()
        .parse()
        .unwrap();
    let wait_until = |what: &str, ok: &dyn Fn(u16, &str) -> bool, path: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _, body) = rt.block_on(support::http_get(addr, path, None));
            if ok(status, &body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {status} {body}\n{}",
                x.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_until("never ready", &|status, _| status == 200, "/readyz");
    wait_until(
        "the first run never folded",
        &|_, body| metas(body) == Some(1.0),
        "/metrics",
    );
    change();
    wait_until(
        "the change never folded",
        &|_, body| metas(body) == Some(2.0),
        "/metrics",
    );
    x.signal(rustix::process::Signal::INT);
    let (_, status) = rt.block_on(x.exit_within(Duration::from_secs(10)));
    assert!(status.success(), "{status}\n{}", x.log());
    (report.join().unwrap(), x.log())
}

fn metas(report: &str) -> Option<f64> {
    sample(
        report,
        "skaffold_exporter_events_total",
        &[("event", "meta")],
    )
}

#[test]
fn follow_picks_up_a_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    std::fs::copy(fixture(), &path).unwrap();
    let (report, stderr) = follow(&path, || {
        // Rotation: moved away (or deleted), and created again with a new run.
        std::fs::rename(&path, dir.path().join("events.json.1")).unwrap();
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
    });
    assert!(stderr.contains("replaced by a new file"), "{stderr}");
    assert_eq!(metas(&report), Some(2.0), "{report}");
}

#[test]
fn follow_picks_up_a_same_size_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    let text = std::fs::read_to_string(fixture()).unwrap();
    std::fs::write(&path, &text).unwrap();
    let (report, stderr) = follow(&path, || {
        // Rewritten in place, same size (same file, same length).
        let rewritten = text.replace("v2.24.0", "v2.24.1");
        assert_eq!(rewritten.len(), text.len());
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let before = f.metadata().unwrap().modified().unwrap();
        f.write_all(rewritten.as_bytes()).unwrap();
        // Written later than the file was read, whatever the file system's clock
        // granularity and however fast this runs.
        f.set_modified(before + Duration::from_secs(2)).unwrap();
    });
    assert!(stderr.contains("rewritten"), "{stderr}");
    assert_eq!(metas(&report), Some(2.0), "{report}");
}
