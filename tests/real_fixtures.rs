//! Real Skaffold v2.24.0 streams folded through our decode paths: the raw v1 and v2
//! gRPC messages, the HTTP gateway's /v1/events and /v2/events, and both
//! `--event-log-file` files, all from one `skaffold dev` session that
//! `scripts/real-skaffold.sh --capture tests/fixtures/real` drove (see
//! tests/fixtures/real/README.md for the scenario and how they were captured).
//!
//! The expected values are what the scenario made Skaffold do, written down here
//! from the scenario, not from our output: which artifacts were built and how each
//! build ended, which test phases ran, how each dev iteration ended, and (from the
//! builder's own log in the fixture) how long each build slept.
//!
//! Assertions that fail until the fidelity (issue 9) and event-path (issue 8) work
//! lands are `#[ignore]`d with the cause; `cargo test --test real_fixtures --
//! --ignored` runs them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use prometheus_client::registry::Registry;
use skaffold_exporter::pipeline::Pipeline;
use skaffold_exporter::replay::{Format, Input, Replayer};
use skaffold_exporter::sink::exposition::{encode_openmetrics, openmetrics_to_prometheus};
use skaffold_exporter::sink::{DEFAULT_BUCKETS, Metrics};
use skaffold_exporter::source::Api;
use skaffold_exporter::source::grpc::decode_raw;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real")
}

/// Seconds of slack above a build's or test's sleep (Skaffold's own work around the
/// script: starting it, the push, asking the registry for the digest), as in
/// scripts/real-skaffold.sh.
const TOL: f64 = 2.5;

// ---------------------------------------------------------------------------
// The scenario (tests/fixtures/real/README.md), as counts.

const ARTIFACTS: [&str; 3] = ["app-a", "app-b", "app-c"];
/// Builds per (artifact, result): a built in iterations 0 and 1 and cancelled by
/// Ctrl-C in 6; b built in 0 and 4 and failed in 2; c built in 0 and 3.
const BUILDS: [(&str, &str, u64); 5] = [
    ("app-a", "success", 2),
    ("app-a", "canceled", 1),
    ("app-b", "success", 2),
    ("app-b", "failure", 1),
    ("app-c", "success", 2),
];
/// Tests, one per custom test command run (issue 9: "count only tests that ran"):
/// three in iteration 0, one in 1 and one in 4 passed; c's in 3 failed.
const TESTS: [(&str, u64); 2] = [("success", 5), ("failure", 1)];
/// Deploys (no deployer: a no-op that still reports) and renders: 0, 1 and 4.
const DEPLOYS: u64 = 3;
/// Dev iterations: 0 initial; 1 and 4 rebuilt and passed; 2 (build), 3 (test) and 6
/// (cancelled build) failed; 5 only synced a file of app-c.
const LOOPS: [(&str, &str, u64); 4] = [
    ("initial", "success", 1),
    ("rebuild", "success", 2),
    ("rebuild", "failure", 3),
    ("sync", "success", 1),
];
/// Cache lookups (v2): one miss per build attempt (each edit writes new content).
const CACHE_MISSES: [(&str, u64); 3] = [("app-a", 3), ("app-b", 3), ("app-c", 2)];

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
fn frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = bytes.as_slice();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = prost::encoding::decode_varint(&mut buf).expect("frame length") as usize;
        assert!(len <= buf.len(), "{}: truncated frame", path.display());
        out.push(buf[..len].to_vec());
        buf = &buf[len..];
    }
    out
}

/// A gRPC capture through the live decode path (`decode_raw`, as the gRPC source
/// does), then the end of the stream (Skaffold exited).
fn fold_grpc(api: Api, file: &str) -> String {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, &DEFAULT_BUCKETS, 200);
    let mut pipeline = Pipeline::new(metrics);
    let frames = frames(&dir().join(file));
    assert!(!frames.is_empty(), "{file}: no messages");
    for f in &frames {
        let received = decode_raw(api, f).unwrap_or_else(|e| panic!("{file}: {e:?}"));
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
            .feed(&mut r, false, &AtomicBool::new(false), false)
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

/// Bounds of each build-duration sum, from the sleeps the scenario set: a slept 1 s
/// in iterations 0 and 1 and was killed 2 s into its build in 6 (the script sends
/// Ctrl-C 2 s after the builder logged its start); b slept 1.5 s (0), 1.5 s and
/// failed (2), 4 s (4); c slept 2 s (0 and 3). Each build may take up to TOL more.
const BUILD_SLEEPS: [(&str, &str, f64, u64); 5] = [
    ("app-a", "success", 2.0, 2),
    ("app-a", "canceled", 2.0, 1),
    ("app-b", "success", 5.5, 2),
    ("app-b", "failure", 1.5, 1),
    ("app-c", "success", 4.0, 2),
];

fn check_builds(src: Source) {
    let m = src.fold();
    for a in ARTIFACTS {
        for r in ["success", "failure", "canceled"] {
            let want = BUILDS
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
            0.0,
            "{src:?} {a}'s last build succeeded or was cancelled"
        );
    }
}

fn check_build_durations(src: Source) {
    let m = src.fold();
    for (a, r, slept, n) in BUILD_SLEEPS {
        let sum = value(
            &m,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", a), ("result", r)],
        );
        assert!(
            sum >= slept && sum <= slept + n as f64 * TOL,
            "{src:?} {a} {r}: Skaffold measured {sum}s for {n} builds that slept {slept}s"
        );
    }
    // Tests of 0.2 s: 3 in iteration 0, one in 1 and 4; one failing in 3. (Over v2 a
    // Test task spans its tests, so the bounds hold for both readings.)
    let ok = value(
        &m,
        "skaffold_test_duration_seconds_sum",
        &[("result", "success")],
    );
    assert!(
        (1.0..=1.0 + 5.0 * TOL).contains(&ok),
        "{src:?} passing tests took {ok}s"
    );
    let failed = value(
        &m,
        "skaffold_test_duration_seconds_sum",
        &[("result", "failure")],
    );
    assert!(
        (0.2..=0.2 + TOL).contains(&failed),
        "{src:?} the failing test phase took {failed}s"
    );
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
    for k in ["initial", "rebuild", "sync", "redeploy"] {
        for r in ["success", "failure", "canceled"] {
            let want = LOOPS
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
    // b's custom build failed (iteration 2) and c's custom test failed (3): Skaffold's
    // codes BUILD_UNKNOWN (no build problem matches a script's exit status) and
    // TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR. Iterations 2, 3 and 6 failed, each with
    // its failed phase's code (6: the killed build, BUILD_UNKNOWN). A cancelled build
    // is no build error.
    let expected = [
        ("build", "BUILD_UNKNOWN", 1.0),
        ("test", "TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR", 1.0),
        ("dev_loop", "BUILD_UNKNOWN", 2.0),
        ("dev_loop", "TEST_CUSTOM_CMD_RUN_NON_ZERO_EXIT_ERR", 1.0),
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
        5.0,
        "{src:?} errors in all"
    );
}

/// Iteration 5 synced one file of app-c (a no-op without a deployer). The label is
/// the image name without tag and digest (issue 9): the registry the scenario
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
fn core(text: &str, v1_comparable: bool) -> Vec<String> {
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

#[track_caller]
fn assert_same(a: Source, b: Source, v1_comparable: bool) {
    let (x, y) = (
        core(&a.fold(), v1_comparable),
        core(&b.fold(), v1_comparable),
    );
    assert!(!x.is_empty());
    pretty_assertions::assert_eq!(x, y, "{a:?} vs {b:?}");
}

// ---------------------------------------------------------------------------
// The tests. Ignored ones fail today for the cause given, pending issue 9.

// Why the ignored tests fail today (pending issue 9):
// - V1_CANCEL: Skaffold's v1 BuildEvent for the build that Ctrl-C cancelled is
//   Failed/BUILD_UNKNOWN ("building custom artifact: signal: killed"); only v2's
//   BuildSubtaskEvent says Canceled. decode_v1 and the fold count a failure (and a
//   build error, and a failure streak).
// - V2_TESTS: v2 sends one Test task per iteration and a TestSubtaskEvent per tester
//   run; decode_v2.rs counts the task (3 passed, not 5). v1 sends a TestEvent pair
//   per tester run, which is what issue 9 asks to count.
// - V2_LOOP_CODE: a failed v2 DevLoop TaskEvent carries Skaffold's generic
//   UNKNOWN_ERROR; decode_v2.rs (V2Decoder::task) takes it, where v1's DevLoopEvent
//   has the failed phase's code (BUILD_UNKNOWN).
// - V2_COLOUR: under --force-colors (as in a terminal) the v2 SkaffoldLogEvent is
//   "\x1b[34mSyncing 1 files for ...\x1b[0m"; decode_v2.rs parse_sync_line wants it
//   to start with "Syncing ": no sync over v2, and the sync-only loop is `redeploy`.
// - V1_IMAGE: v1's FileSyncEvent.image is the built tag
//   (127.0.0.1:PORT/app-c:latest@sha256:...), used verbatim as the image label.

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
    let v1 = frames(&dir().join("v1.grpc.bin")).len();
    let v2 = frames(&dir().join("v2.grpc.bin")).len();
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
#[ignore = "pending issue 9 (cancelled builds), see V1_CANCEL"]
fn v1_builds() {
    V1.into_iter().for_each(check_builds);
}

#[test]
fn v2_build_and_test_durations() {
    V2.into_iter().for_each(check_build_durations);
}

#[test]
#[ignore = "pending issue 9 (cancelled builds), see V1_CANCEL"]
fn v1_build_and_test_durations() {
    V1.into_iter().for_each(check_build_durations);
}

#[test]
fn v1_tests() {
    V1.into_iter().for_each(check_tests);
}

#[test]
#[ignore = "pending issue 9 (v1/v2 parity), see V2_TESTS"]
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
#[ignore = "pending issue 9 (coloured output), see V2_COLOUR"]
fn v2_dev_loops() {
    V2.into_iter().for_each(check_dev_loops);
}

#[test]
#[ignore = "pending issue 9 (tagged images), see V1_IMAGE"]
fn v1_syncs() {
    V1.into_iter().for_each(check_syncs);
}

#[test]
#[ignore = "pending issue 9 (coloured output), see V2_COLOUR"]
fn v2_syncs() {
    V2.into_iter().for_each(check_syncs);
}

#[test]
#[ignore = "pending issue 9 (cancelled builds), see V1_CANCEL"]
fn v1_errors() {
    V1.into_iter().for_each(check_errors);
}

#[test]
#[ignore = "pending issue 9 (v1/v2 parity), see V2_LOOP_CODE"]
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
    assert_same(Source::GrpcV2, Source::GatewayV2, false);
    assert_same(Source::GrpcV2, Source::LogFileV2, false);
}

#[test]
fn the_v1_readings_agree() {
    assert_same(Source::GrpcV1, Source::GatewayV1, false);
    assert_same(Source::GrpcV1, Source::LogFileV1, false);
}

#[test]
#[ignore = "pending issue 9: the cancelled build, the test count, the dev-loop code and the sync differ (V1_CANCEL, V2_TESTS, V2_LOOP_CODE, V2_COLOUR, V1_IMAGE)"]
fn v1_and_v2_agree() {
    assert_same(Source::GrpcV1, Source::GrpcV2, true);
}
