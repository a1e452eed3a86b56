//! Real Skaffold v2.24.0 streams folded through our decode paths: the raw v1 and v2
//! gRPC messages, the HTTP gateway's /v1/events and /v2/events, and both
//! `--event-log-file` files, all from one `skaffold dev` session that
//! `scripts/real-skaffold.sh --capture tests/fixtures/real` drove (see
//! tests/fixtures/real/README.md for the scenario and how they were captured).
//!
//! The expected values are what the scenario made Skaffold do, written down here
//! from the scenario, not from our output: which artifacts were built and how each
//! build ended, which tests ran, how each dev iteration ended, and (from the builder's
//! and tester's own logs in the fixture) how long each build and test ran. They follow
//! the rules docs/metrics.md documents (Metrics, "How events become metrics", "Errors: one
//! count per failure"), and differ between the APIs only where Skaffold reports
//! differently: the build Ctrl-C cancelled is `Failed` over v1, `Canceled` over v2.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use prometheus_client::registry::Registry;
use skaffold_exporter::pipeline::{Built, Pipeline};
use skaffold_exporter::replay::{Format, Input, Replayer};
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::sink::exposition::{encode_openmetrics, openmetrics_to_prometheus};
use skaffold_exporter::source::Api;
use skaffold_exporter::source::grpc::decode_raw;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real")
}

/// Seconds Skaffold may spend around a build or test script (starting it; for a
/// build, asking the registry for the pushed image's digest), as RS_TOL in
/// scripts/real-skaffold.sh.
const TOL: f64 = 2.5;

// ---------------------------------------------------------------------------
// The scenario (tests/fixtures/real/README.md), as counts.

const ARTIFACTS: [&str; 3] = ["app-a", "app-b", "app-c"];

/// How the build Ctrl-C cancelled in iteration 6 is counted: Skaffold v2.24.0 reports
/// it as BuildSubtaskEvent `Canceled` over v2, but over v1 as BuildEvent `Failed` with
/// BUILD_UNKNOWN ("building custom artifact: signal: killed"): its scheduler sends v1
/// only `BuildFailed` (pkg/skaffold/build/scheduler.go), and BUILD_CANCELLED only
/// when the error's text says "context canceled" (build/build_problems.go). We count
/// what Skaffold says.
fn killed_build(src: Source) -> &'static str {
    if src.is_v2() { "canceled" } else { "failure" }
}

/// Builds per (artifact, result): a built in iterations 0 and 1 and killed by Ctrl-C
/// in 6; b built in 0 and 4 and failed in 2; c built in 0 and 3.
fn builds(src: Source) -> [(&'static str, &'static str, u64); 5] {
    [
        ("app-a", "success", 2),
        ("app-a", killed_build(src), 1),
        ("app-b", "success", 2),
        ("app-b", "failure", 1),
        ("app-c", "success", 2),
    ]
}

/// Failed builds since the artifact's last success (a cancel leaves it as it is): b's
/// failure (2) was followed by a success (4); a's killed build is a failure over v1.
fn streak(src: Source, artifact: &str) -> f64 {
    if artifact == "app-a" && !src.is_v2() {
        1.0
    } else {
        0.0
    }
}

/// Tests, one per custom test command run (docs/metrics.md: tests counted per tester run):
/// three in iteration 0, one in 1 and one in 4 passed; c's in 3 failed.
const TESTS: [(&str, u64); 2] = [("success", 5), ("failure", 1)];
/// Deploys (no deployer: a no-op that still reports) and renders: 0, 1 and 4.
const DEPLOYS: u64 = 3;

/// Dev iterations: 0 initial; 1 and 4 rebuilt and passed; 2 (build) and 3 (test)
/// failed; 5 only synced a file of app-c; 6, Ctrl-C during a's build, is `canceled`
/// over v2 (only a cancellation happened in it) and `failure` over v1 (a failed build).
fn loops(src: Source) -> Vec<(&'static str, &'static str, u64)> {
    let mut l = vec![
        ("initial", "success", 1),
        ("rebuild", "success", 2),
        ("sync", "success", 1),
    ];
    if src.is_v2() {
        l.extend([("rebuild", "failure", 2), ("rebuild", "canceled", 1)]);
    } else {
        l.push(("rebuild", "failure", 3));
    }
    l
}

/// Cache lookups (v2): one miss per build attempt (each edit writes new content).
const CACHE_MISSES: [(&str, u64); 3] = [("app-a", 3), ("app-b", 3), ("app-c", 2)];

/// The script sends Ctrl-C 2 s after a's builder logged its start in iteration 6.
const KILLED_AFTER: f64 = 2.0;

// ---------------------------------------------------------------------------
// The builder's and tester's own logs.

/// Epoch seconds of an RFC 3339 timestamp.
fn epoch(rfc3339: &str) -> f64 {
    let t: prost_types::Timestamp = rfc3339.parse().expect("an RFC 3339 timestamp");
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

/// When the `skaffold dev` session's last event was stamped (the logs go on with the
/// `skaffold run` the script ran afterwards).
fn session_end() -> f64 {
    let text = std::fs::read_to_string(dir().join("events.json")).unwrap();
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    epoch(v["timestamp"].as_str().unwrap())
}

/// The runs of the session a script logged (`<name> start|success|failure <epoch s>`
/// lines), as (name, result, seconds by the script's clock); a run killed before it
/// logged its end is left out.
fn script_runs(file: &str) -> Vec<(String, String, f64)> {
    let end = session_end();
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    let mut started = std::collections::HashMap::new();
    let mut runs = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, what, at] = f[..] else {
            panic!("{file}: {line:?}")
        };
        let at: f64 = at.parse().unwrap();
        if at > end {
            continue;
        }
        if what == "start" {
            started.insert(name.to_owned(), at);
        } else if let Some(t0) = started.remove(name) {
            runs.push((name.to_owned(), what.to_owned(), at - t0));
        }
    }
    runs
}

/// Bounds of a build-duration sum: at least as long as the builder ran (Skaffold
/// stamps the start before it runs the script and the end after it exited), at most
/// TOL more per build; the killed build ran at least KILLED_AFTER.
fn build_bounds(src: Source, artifact: &str, result: &str) -> (f64, f64, u64) {
    let (mut lo, mut n) = script_runs("builds.log")
        .iter()
        .filter(|(a, r, _)| a == artifact && r == result)
        .fold((0.0, 0), |(s, n), (_, _, d)| (s + d, n + 1));
    if artifact == "app-a" && result == killed_build(src) {
        lo += KILLED_AFTER;
        n += 1;
    }
    (lo, lo + n as f64 * TOL, n)
}

/// Bounds of a test-duration sum, as for builds, from the tester's log.
fn test_bounds(result: &str) -> (f64, f64, u64) {
    let (lo, n) = script_runs("tests.log")
        .iter()
        .filter(|(_, r, _)| r == result)
        .fold((0.0, 0), |(s, n), (_, _, d)| (s + d, n + 1));
    (lo, lo + n as f64 * TOL, n)
}

// ---------------------------------------------------------------------------
// Folding.

/// Sum of the samples of `name` whose labels include every pair (0 when none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
            .then(|| v.parse::<f64>().ok())?
        })
        .fold(0.0, |a, b| a + b)
}

fn exposition(registry: &Registry) -> String {
    openmetrics_to_prometheus(&encode_openmetrics(registry))
}

/// Reads a capture of `grpccapture events`: uvarint length, message bytes, repeated.
/// A gRPC capture through the live decode path (`decode_raw`, as the gRPC source
/// does), then the end of the stream (Skaffold exited).
fn fold_grpc(api: Api, file: &str) -> String {
    let Built {
        mut pipeline,
        registry,
        ..
    } = Pipeline::builder().build().expect("no OTLP to start");
    let frames = support::capture_frames(&dir().join(file));
    assert!(!frames.is_empty(), "{file}: no messages");
    for f in &frames {
        let received = decode_raw(api, bytes::Bytes::from(f.clone()));
        pipeline.fold_payload(&received.payload);
    }
    pipeline.disconnected();
    exposition(&registry)
}

/// A JSON file (gateway capture or event-log file) through `replay`'s reader.
fn fold_file(file: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
        let input = Input::open(dir().join(file).to_str().unwrap()).unwrap();
        input
            .feed(&mut r, false, &AtomicBool::new(false), &mut ())
            .unwrap();
        r.finish().await;
        assert_eq!(r.malformed(), 0, "{file}: {:?}", r.diagnostics());
        assert_eq!(r.rejected(), 0, "{file}: {:?}", r.diagnostics());
        r.metrics_text(Format::Prometheus)
    })
}

#[derive(Clone, Copy, Debug)]
enum Source {
    GrpcV1,
    GrpcV2,
    GatewayV1,
    GatewayV2,
    LogFileV1,
    LogFileV2,
}

impl Source {
    fn fold(self) -> String {
        match self {
            Source::GrpcV1 => fold_grpc(Api::V1, "v1.grpc.bin"),
            Source::GrpcV2 => fold_grpc(Api::V2, "v2.grpc.bin"),
            Source::GatewayV1 => fold_file("gateway-v1.jsonl"),
            Source::GatewayV2 => fold_file("gateway-v2.jsonl"),
            Source::LogFileV1 => fold_file("events.json"),
            Source::LogFileV2 => fold_file("events.json.v2"),
        }
    }

    fn is_v2(self) -> bool {
        matches!(self, Source::GrpcV2 | Source::GatewayV2 | Source::LogFileV2)
    }
}

fn check_builds(src: Source) {
    let m = src.fold();
    let builds = builds(src);
    for a in ARTIFACTS {
        for r in ["success", "failure", "canceled"] {
            let want = builds
                .iter()
                .find(|(x, y, _)| *x == a && *y == r)
                .map_or(0, |b| b.2) as f64;
            let l = [("artifact", a), ("result", r)];
            assert_eq!(
                value(&m, "skaffold_builds_total", &l),
                want,
                "{src:?} builds {a} {r}"
            );
            assert_eq!(
                value(&m, "skaffold_build_duration_seconds_count", &l),
                want,
                "{src:?} build durations {a} {r}"
            );
        }
        assert_eq!(
            value(
                &m,
                "skaffold_build_consecutive_failures",
                &[("artifact", a)]
            ),
            streak(src, a),
            "{src:?} {a}'s failure streak"
        );
    }
}

fn check_build_durations(src: Source) {
    let m = src.fold();
    for (a, r, n) in builds(src) {
        let (lo, hi, runs) = build_bounds(src, a, r);
        assert_eq!(runs, n, "the builder's log has {runs} {r} builds of {a}");
        let sum = value(
            &m,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", a), ("result", r)],
        );
        assert!(
            (lo..=hi).contains(&sum),
            "{src:?} {a} {r}: Skaffold measured {sum}s for {n} builds whose builder ran {lo}s"
        );
    }
    for (r, n) in TESTS {
        let (lo, hi, runs) = test_bounds(r);
        assert_eq!(runs, n, "the tester's log has {runs} {r} runs");
        let sum = value(&m, "skaffold_test_duration_seconds_sum", &[("result", r)]);
        assert!(
            (lo..=hi).contains(&sum),
            "{src:?} {r} tests took {sum}s; the tester ran {lo}s"
        );
    }
}

fn check_tests(src: Source) {
    let m = src.fold();
    for (r, n) in TESTS {
        assert_eq!(
            value(&m, "skaffold_tests_total", &[("result", r)]),
            n as f64,
            "{src:?} tests {r}"
        );
    }
    assert_eq!(
        value(&m, "skaffold_tests_total", &[("result", "canceled")]),
        0.0
    );
}

fn check_deploys(src: Source) {
    let m = src.fold();
    assert_eq!(
        value(&m, "skaffold_deploys_total", &[("result", "success")]),
        DEPLOYS as f64,
        "{src:?}"
    );
    assert_eq!(
        value(&m, "skaffold_deploys_total", &[("result", "failure")]),
        0.0
    );
    assert_eq!(
        value(&m, "skaffold_status_checks_total", &[]),
        0.0,
        "no deployer, no status check"
    );
    assert_eq!(value(&m, "skaffold_deploy_consecutive_failures", &[]), 0.0);
}

fn check_dev_loops(src: Source) {
    let m = src.fold();
    let loops = loops(src);
    for k in ["initial", "rebuild", "sync", "redeploy"] {
        for r in ["success", "failure", "canceled"] {
            let want = loops
                .iter()
                .find(|(x, y, _)| *x == k && *y == r)
                .map_or(0, |l| l.2) as f64;
            assert_eq!(
                value(
                    &m,
                    "skaffold_dev_loops_total",
                    &[("kind", k), ("result", r)]
                ),
                want,
                "{src:?} dev loops {k} {r}"
            );
        }
    }
}

fn check_errors(src: Source) {
    let m = src.fold();
    // Each failure counted once, at the phase that failed (docs/metrics.md, "Errors: one count
    // per failure"): b's custom build (iteration 2) and c's custom test (3), with
    // Skaffold's codes BUILD_UNKNOWN (no build problem matches a script's exit status)
    // and TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR; their iterations are not counted
    // again. Over v1 also a's killed build (6), which Skaffold reports as a failed
    // build (BUILD_UNKNOWN); over v2 it is a cancellation, no error.
    let killed = if src.is_v2() { 0.0 } else { 1.0 };
    let expected = [
        ("build", "BUILD_UNKNOWN", 1.0 + killed),
        ("test", "TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR", 1.0),
    ];
    for (phase, code, n) in expected {
        assert_eq!(
            value(
                &m,
                "skaffold_errors_total",
                &[("phase", phase), ("code", code)]
            ),
            n,
            "{src:?} errors {phase} {code}"
        );
    }
    assert_eq!(
        value(&m, "skaffold_errors_total", &[]),
        2.0 + killed,
        "{src:?} errors in all: nothing else counted"
    );
}

/// Iteration 5 synced one file of app-c (a no-op without a deployer). The label is
/// the image name without tag and digest (docs/metrics.md, `skaffold_file_syncs_total`): the registry the scenario
/// pushed to (registry.txt) and the artifact.
fn check_syncs(src: Source) {
    let m = src.fold();
    let registry = std::fs::read_to_string(dir().join("registry.txt")).unwrap();
    let image = format!("{}/app-c", registry.trim());
    let l = [("image", image.as_str()), ("result", "success")];
    assert_eq!(value(&m, "skaffold_file_syncs_total", &l), 1.0, "{src:?}");
    assert_eq!(value(&m, "skaffold_file_syncs_total", &[]), 1.0, "{src:?}");
    assert_eq!(
        value(&m, "skaffold_file_sync_duration_seconds_count", &l),
        1.0,
        "{src:?}"
    );
    assert_eq!(
        value(
            &m,
            "skaffold_synced_files_total",
            &[("image", image.as_str())]
        ),
        1.0,
        "{src:?}"
    );
}

fn check_v2_only(src: Source) {
    assert!(src.is_v2());
    let m = src.fold();
    for (a, n) in CACHE_MISSES {
        assert_eq!(
            value(
                &m,
                "skaffold_build_cache_total",
                &[("artifact", a), ("result", "miss")]
            ),
            n as f64,
            "{src:?} cache misses {a}"
        );
        assert_eq!(
            value(
                &m,
                "skaffold_build_cache_total",
                &[("artifact", a), ("result", "hit")]
            ),
            0.0
        );
    }
    assert_eq!(
        value(&m, "skaffold_renders_total", &[("result", "success")]),
        DEPLOYS as f64,
        "{src:?} renders"
    );
}

fn check_clean(src: Source) {
    let m = src.fold();
    assert_eq!(
        value(&m, "skaffold_exporter_invalid_events_total", &[]),
        0.0,
        "{src:?}"
    );
}

/// The metric-contract series (not the exporter's health, not skaffold_info), sorted.
/// With `v1_comparable`, only what v1 and v2 both report and whose value does not
/// depend on which API's timestamps were used: counts (v1 and v2 events are stamped
/// separately, so sums and buckets may differ by microseconds).
fn contract_series(text: &str, v1_comparable: bool) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_") && !l.starts_with("skaffold_exporter_"))
        .filter(|l| !l.starts_with("skaffold_info") && !l.starts_with("skaffold_port_forwards"))
        .filter(|l| {
            !v1_comparable
                || !(l.starts_with("skaffold_build_cache")
                    || l.starts_with("skaffold_render")
                    || l.contains("_bucket{")
                    || l.contains("_sum{")
                    || l.contains("_sum "))
        })
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The name of a sample line (the series, labels included).
fn series(line: &str) -> &str {
    line.rsplit_once(' ').map_or(line, |(s, _)| s)
}

/// Every core series of `a` and `b` agrees, except the series named in `left_out`
/// (exact names with labels), which are left out for `reason`: each of them must
/// differ between the two (or the exclusion is wider than the difference it stands
/// for); they are checked against the scenario one by one by the other tests.
#[track_caller]
fn assert_same(a: Source, b: Source, v1_comparable: bool, left_out: &[String], reason: &str) {
    let (x, y) = (
        contract_series(&a.fold(), v1_comparable),
        contract_series(&b.fold(), v1_comparable),
    );
    assert!(!x.is_empty());
    let value_of = |lines: &[String], name: &str| {
        lines
            .iter()
            .find(|l| series(l) == name)
            .map(|l| l[name.len()..].trim().to_owned())
    };
    for name in left_out {
        assert_ne!(
            value_of(&x, name),
            value_of(&y, name),
            "{name} is left out of {a:?} vs {b:?} ({reason}), but agrees"
        );
    }
    if !left_out.is_empty() {
        eprintln!(
            "{a:?} vs {b:?}: {} series left out: {reason}",
            left_out.len()
        );
    }
    let keep = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !left_out.iter().any(|n| n == series(l)))
            .collect()
    };
    pretty_assertions::assert_eq!(keep(x), keep(y), "{a:?} vs {b:?}");
}

/// The series Skaffold's v1/v2 difference on the build Ctrl-C cancelled touches
/// (see `killed_build`): over v1 a failed build of a in a failed iteration (a build
/// error, a failure streak), over v2 a cancelled build in a cancelled iteration.
fn killed_build_series() -> Vec<String> {
    let mut v = Vec::new();
    for r in ["failure", "canceled"] {
        let b = format!("{{artifact=\"app-a\",result=\"{r}\"}}");
        let l = format!("{{kind=\"rebuild\",result=\"{r}\"}}");
        v.push(format!("skaffold_builds_total{b}"));
        v.push(format!("skaffold_build_duration_seconds_count{b}"));
        v.push(format!("skaffold_dev_loops_total{l}"));
        v.push(format!("skaffold_dev_loop_duration_seconds_count{l}"));
    }
    v.push("skaffold_build_consecutive_failures{artifact=\"app-a\"}".to_owned());
    v.push("skaffold_errors_total{phase=\"build\",code=\"BUILD_UNKNOWN\"}".to_owned());
    v
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn fixtures_are_one_skaffold_v2_24_session() {
    for f in [
        "events.json",
        "events.json.v2",
        "gateway-v1.jsonl",
        "gateway-v2.jsonl",
    ] {
        let text = std::fs::read_to_string(dir().join(f)).unwrap();
        assert!(
            text.contains("Version:v2.24.0"),
            "{f} holds Skaffold v2.24.0's MetaEvent"
        );
    }
    // Every v1 gRPC message is also in the v1 event-log file and gateway stream, and
    // every v2 one in the v2 ones: the same session, read six ways.
    let v1 = support::capture_frames(&dir().join("v1.grpc.bin")).len();
    let v2 = support::capture_frames(&dir().join("v2.grpc.bin")).len();
    let lines = |f: &str| {
        std::fs::read_to_string(dir().join(f))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    assert_eq!(v1, lines("events.json"));
    assert_eq!(v2, lines("events.json.v2"));
    assert_eq!(v1, lines("gateway-v1.jsonl"));
    assert_eq!(v2, lines("gateway-v2.jsonl"));
}

const V1: [Source; 3] = [Source::GrpcV1, Source::GatewayV1, Source::LogFileV1];
const V2: [Source; 3] = [Source::GrpcV2, Source::GatewayV2, Source::LogFileV2];

#[test]
fn v2_builds() {
    V2.into_iter().for_each(check_builds);
}

#[test]
fn v1_builds() {
    V1.into_iter().for_each(check_builds);
}

#[test]
fn v2_build_and_test_durations() {
    V2.into_iter().for_each(check_build_durations);
}

#[test]
fn v1_build_and_test_durations() {
    V1.into_iter().for_each(check_build_durations);
}

#[test]
fn v1_tests() {
    V1.into_iter().for_each(check_tests);
}

#[test]
fn v2_tests() {
    V2.into_iter().for_each(check_tests);
}

#[test]
fn deploys() {
    V1.into_iter().chain(V2).for_each(check_deploys);
}

#[test]
fn v1_dev_loops() {
    V1.into_iter().for_each(check_dev_loops);
}

#[test]
fn v2_dev_loops() {
    V2.into_iter().for_each(check_dev_loops);
}

#[test]
fn v1_syncs() {
    V1.into_iter().for_each(check_syncs);
}

#[test]
fn v2_syncs() {
    V2.into_iter().for_each(check_syncs);
}

#[test]
fn v1_errors() {
    V1.into_iter().for_each(check_errors);
}

#[test]
fn v2_errors() {
    V2.into_iter().for_each(check_errors);
}

#[test]
fn v2_cache_lookups_and_renders() {
    V2.into_iter().for_each(check_v2_only);
}

#[test]
fn no_invalid_events() {
    V1.into_iter().chain(V2).for_each(check_clean);
}

#[test]
fn the_v2_readings_agree() {
    assert_same(Source::GrpcV2, Source::GatewayV2, false, &[], "");
    assert_same(Source::GrpcV2, Source::LogFileV2, false, &[], "");
}

#[test]
fn the_v1_readings_agree() {
    assert_same(Source::GrpcV1, Source::GatewayV1, false, &[], "");
    assert_same(Source::GrpcV1, Source::LogFileV1, false, &[], "");
}

#[test]
fn v1_and_v2_agree() {
    assert_same(
        Source::GrpcV1,
        Source::GrpcV2,
        true,
        &killed_build_series(),
        "Skaffold v2.24.0 reports the build Ctrl-C cancelled as BuildEvent Failed/BUILD_UNKNOWN \
         over API v1 and as Canceled over v2 (pkg/skaffold/build/scheduler.go)",
    );
}
