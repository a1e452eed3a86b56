//! Caps that interact (issue 13 item 12): the fold's limit on tracked entries must
//! not silently override the label cap. With 100,000 resources in one status check
//! and 40,000 artifacts failing, every rollout and every build is counted (the names
//! past `--max-label-values` in `other`), and nothing is refused as `too_many_open`.

use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::replay::{Format, Replayer};
use skaffold_exporter::simulator::scenario::Script;
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::source::Payload;

const RESOURCES: usize = 100_000;
const FAILING: usize = 40_000;

/// The session, as Skaffold's v1 entries.
fn session() -> Vec<skaffold_exporter::pb::v1::LogEntry> {
    let mut s = Script::new();
    s.meta(0, "v2.24.0").dev_loop(10, 0, "In Progress");
    for i in 0..FAILING {
        let a = format!("app-{i}");
        s.build(1, &a, "In Progress", C::Ok)
            .build(1, &a, "Failed", C::BuildUnknown);
    }
    s.deploy(1, "In Progress", C::Ok)
        .deploy(1, "Complete", C::Ok)
        .status_check(1, "Started", C::Ok);
    for i in 0..RESOURCES {
        s.resource(0, &format!("ns:deployment/r{i}"), "In Progress", C::Ok);
    }
    for i in 0..RESOURCES {
        s.resource(0, &format!("ns:deployment/r{i}"), "Succeeded", C::Ok);
    }
    s.status_check(1, "Succeeded", C::Ok);
    s.entries(1_700_000_000_000_000_000)
}

/// The sum of every sample of `family` whose labels contain `with`.
fn total(text: &str, family: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(with))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_hundred_thousand_resources_and_forty_thousand_failing_builds_all_count() {
    let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
    for entry in session() {
        r.pipeline_mut().fold_payload(&Payload::V1(Box::new(entry)));
    }
    let text = r.metrics_text(Format::Prometheus);
    assert_eq!(
        total(
            &text,
            "skaffold_exporter_invalid_events_total",
            "too_many_open"
        ),
        0.0
    );
    assert_eq!(
        total(
            &text,
            "skaffold_resource_rollout_duration_seconds_count",
            "result=\"success\""
        ),
        RESOURCES as f64
    );
    // Past the label cap, in `other`.
    assert_eq!(
        total(
            &text,
            "skaffold_resource_rollout_duration_seconds_count",
            "resource=\"other\""
        ),
        (RESOURCES - 200) as f64
    );
    assert_eq!(
        total(&text, "skaffold_builds_total", "result=\"failure\""),
        FAILING as f64
    );
    assert_eq!(
        total(
            &text,
            "skaffold_builds_total",
            "artifact=\"other\",result=\"failure\""
        ),
        (FAILING - 200) as f64
    );
}
