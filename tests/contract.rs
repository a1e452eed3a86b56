//! The metric contract (`sink::contract`) is the one list of metric families: what
//! `/metrics` registers, what the OTLP push creates and what docs/metrics.md lists
//! are exactly its families, each with the contract's help text, unit, type and
//! label names. A family added on one side only, or a name or help text written
//! again somewhere and changed there, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use prometheus_client::registry::Registry;
use skaffold_exporter::core::{Finished, LoopKind, Outcome, Phase, Reason, Transition};
use skaffold_exporter::sink::contract::{self, Kind, Spec};
use skaffold_exporter::sink::exposition::encode_openmetrics;
use skaffold_exporter::sink::mapping::Mapping;
use skaffold_exporter::sink::otlp::OtlpStats;
use skaffold_exporter::sink::otlp_metrics::{OtelRecorder, SelfWindow, meter, mirror_self_metrics};
use skaffold_exporter::sink::{DEFAULT_BUCKETS, Metrics, SelfMetrics, process};

const T0: i64 = 1_700_000_000_000_000_000;

/// How one family looks in one backend: type, help, unit, and the label names of
/// each of its series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Family {
    kind: String,
    help: String,
    unit: String,
    labels: BTreeSet<Vec<String>>,
}

fn finished(phase: Phase, subject: Option<&str>, loop_kind: Option<LoopKind>) -> Transition {
    Transition::Finished(Finished {
        phase,
        subject: subject.map(str::to_owned),
        outcome: Outcome::Success,
        started_at: Some(T0),
        finished_at: T0 + 1_500_000_000,
        error: None,
        file_count: 2,
        iteration: Some(1),
        loop_kind,
    })
}

/// Transitions that give every Skaffold family a series with all its labels.
fn session() -> Vec<Transition> {
    vec![
        Transition::RunStarted {
            version: Some("v2.16.0".into()),
            at: T0,
        },
        Transition::SubjectSeen {
            phase: Phase::Build,
            subject: "web".into(),
        },
        finished(Phase::Build, Some("web"), None),
        Transition::CacheChecked {
            artifact: "web".into(),
            hit: true,
            at: T0,
            iteration: Some(1),
        },
        finished(Phase::Test, None, None),
        finished(Phase::Render, None, None),
        finished(Phase::Deploy, None, None),
        finished(Phase::StatusCheck, None, None),
        finished(Phase::Resource, Some("shop:deployment/web"), None),
        finished(Phase::Verify, None, None),
        finished(Phase::Exec, None, None),
        finished(Phase::FileSync, Some("localhost:5000/web:v1"), None),
        finished(Phase::DevLoop, None, Some(LoopKind::Rebuild)),
        Transition::DeployStreak(1),
        Transition::BuildStreak {
            artifact: "web".into(),
            failures: 1,
        },
        Transition::PortForwards {
            count: 1,
            local_port: 8080,
            resource: "service/web".into(),
            at: T0,
        },
        Transition::Failure {
            phase: Phase::Build,
            code: Some("BUILD_USER_ERROR".into()),
            at: T0,
        },
        Transition::Anomaly(Reason::ALL[0]),
    ]
}

/// Gives every labelled family of the exporter's own a series.
fn count_own(own: &SelfMetrics, stats: &OtlpStats) {
    own.event_counter("meta").inc();
    own.count_folded("artifact");
    own.log_skipped_counter(skaffold_exporter::core::LogKind::Skaffold)
        .inc();
    stats.spans_exported.inc();
}

/// The label names of the series in an OpenMetrics sample line (`name{a="x",b="y"} 1`).
fn label_names(line: &str) -> Vec<String> {
    let Some(start) = line.find('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut rest = &line[start + 1..];
    while let Some(eq) = rest.find("=\"") {
        names.push(rest[..eq].trim_start_matches(',').to_owned());
        // Skip the quoted value (with its escapes).
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len() - eq - 2;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[eq + 2 + end + 1..];
        if rest.starts_with('}') {
            break;
        }
    }
    names.retain(|n| n != "le");
    names
}

/// The families of an OpenMetrics exposition, by name.
fn scraped(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some(what @ ("TYPE" | "HELP" | "UNIT")), Some(name), value) => {
                let f = out.entry(name.to_owned()).or_insert_with(|| Family {
                    kind: String::new(),
                    help: String::new(),
                    unit: String::new(),
                    labels: BTreeSet::new(),
                });
                let value = value.unwrap_or("").to_owned();
                match what {
                    "TYPE" => f.kind = value,
                    "HELP" => f.help = value,
                    _ => f.unit = value,
                }
            }
            (Some(sample), ..) if !sample.starts_with('#') => {
                let name = &sample[..sample.find('{').unwrap_or(sample.len())];
                // The family whose name is the longest prefix of the sample's.
                let family = out
                    .keys()
                    .filter(|f| name.starts_with(f.as_str()))
                    .max_by_key(|f| f.len())
                    .cloned();
                let family = family.unwrap_or_else(|| panic!("sample without family: {line}"));
                let labels = label_names(line.split(" # ").next().unwrap_or(line));
                out.get_mut(&family).unwrap().labels.insert(labels);
            }
            _ => {}
        }
    }
    out
}

/// A family as the contract says `/metrics` shows it (OpenMetrics), under its name.
fn expected_on_metrics(s: &Spec) -> (String, Family) {
    let (name, unit) = if s.is_seconds() {
        (format!("{}_seconds", s.name), "seconds")
    } else {
        (s.name.to_owned(), "")
    };
    let kind = match s.kind {
        Kind::Counter => "counter",
        Kind::Histogram => "histogram",
        Kind::Gauge | Kind::PlainGauge => "gauge",
    };
    let labels = s.labels.iter().map(|l| (*l).to_owned()).collect();
    let family = Family {
        kind: kind.into(),
        // prometheus-client ends every help text with a full stop.
        help: format!("{}.", s.help),
        unit: unit.into(),
        labels: BTreeSet::from([labels]),
    };
    (name, family)
}

/// The families of every series an exposition shows: the label names of the series
/// with all its labels (a series may leave out a label whose value is empty).
fn with_full_series(mut families: BTreeMap<String, Family>) -> BTreeMap<String, Family> {
    for f in families.values_mut() {
        let longest = f.labels.iter().map(Vec::len).max().unwrap_or(0);
        f.labels.retain(|l| l.len() == longest);
    }
    families
}

/// `seen` (what `side` carries) equals `expected` (the contract); names the families
/// on one side only first.
fn assert_same<V: PartialEq + std::fmt::Debug>(
    side: &str,
    seen: &BTreeMap<String, V>,
    expected: &BTreeMap<String, V>,
) {
    let extra: Vec<&String> = seen.keys().filter(|k| !expected.contains_key(*k)).collect();
    let missing: Vec<&String> = expected.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{side} carries families not in the contract: {extra:?}; the contract has families {side} does not carry: {missing:?}"
    );
    for (name, family) in expected {
        assert_eq!(&seen[name], family, "{name} on {side}");
    }
}

#[test]
fn metrics_registers_exactly_the_contracts_families() {
    // As `Pipeline::build` does, with OTLP and the process metrics on.
    let mut r = Registry::default();
    let mut m = Metrics::register(&mut r, &DEFAULT_BUCKETS, 10);
    process::register(&mut r);
    let stats = OtlpStats::default().register(&mut r);
    for t in session() {
        m.observe(&t);
    }
    count_own(&m.own, &stats);
    let mut seen = with_full_series(scraped(&encode_openmetrics(&r)));
    // The standard process metrics (`sink::process`) are the Prometheus client
    // libraries' names, not ours.
    seen.retain(|name, _| !name.starts_with("process_"));
    let expected: BTreeMap<String, Family> =
        contract::families().map(expected_on_metrics).collect();
    assert_eq!(seen, expected);
}

/// Captures what a metrics push carries.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<BTreeMap<String, Family>>>);

impl PushMetricExporter for Capture {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        fn keys<'a>(attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<String> {
            let mut keys: Vec<String> = attrs.map(|kv| kv.key.to_string()).collect();
            keys.sort();
            keys
        }
        fn family<T>(d: &MetricData<T>) -> (String, BTreeSet<Vec<String>>) {
            match d {
                MetricData::Sum(s) => {
                    let kind = if s.is_monotonic() { "counter" } else { "sum" };
                    (
                        kind.into(),
                        s.data_points().map(|p| keys(p.attributes())).collect(),
                    )
                }
                MetricData::Gauge(g) => (
                    "gauge".into(),
                    g.data_points().map(|p| keys(p.attributes())).collect(),
                ),
                MetricData::Histogram(h) => (
                    "histogram".into(),
                    h.data_points().map(|p| keys(p.attributes())).collect(),
                ),
                MetricData::ExponentialHistogram(_) => ("exponential".into(), BTreeSet::new()),
            }
        }
        let mut out = self.0.lock().unwrap();
        for m in metrics.scope_metrics().flat_map(|s| s.metrics()) {
            let (kind, labels) = match m.data() {
                AggregatedMetrics::F64(d) => family(d),
                AggregatedMetrics::U64(d) => family(d),
                AggregatedMetrics::I64(d) => family(d),
            };
            out.insert(
                m.name().to_owned(),
                Family {
                    kind,
                    help: m.description().to_owned(),
                    unit: m.unit().to_owned(),
                    labels,
                },
            );
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

#[test]
fn the_otlp_push_creates_exactly_the_contracts_families() {
    let capture = Capture::default();
    let reader = PeriodicReader::builder(capture.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    // As a run's provider has them (`otlp_metrics::MetricsPush`).
    let meter = meter(&provider);
    let own = SelfMetrics::default();
    let stats = OtlpStats::default();
    let window = SelfWindow::open(&own, &stats, false);
    mirror_self_metrics(&meter, &own, &window);
    let mut recorder = OtelRecorder::new(&meter, &DEFAULT_BUCKETS);
    Mapping::precreate(&mut recorder);
    let mut mapping = Mapping::new(10);
    for t in session() {
        mapping.record(&t, None, &own, &mut recorder);
    }
    count_own(&own, &stats);
    provider.force_flush().unwrap();
    let seen = capture.0.lock().unwrap().clone();
    let expected: BTreeMap<String, Family> = contract::families()
        .filter_map(|s| {
            let name = s.otel_name?;
            let kind = match s.kind {
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Gauge | Kind::PlainGauge => "gauge",
            };
            let mut labels: Vec<String> = s.labels.iter().map(|l| (*l).to_owned()).collect();
            labels.sort();
            let family = Family {
                kind: kind.into(),
                help: s.help.into(),
                unit: s.otel_unit.into(),
                labels: BTreeSet::from([labels]),
            };
            Some((name.to_owned(), family))
        })
        .collect();
    assert_same("the OTLP push", &with_full_series(seen), &expected);
    let _ = provider.shutdown();
}

/// The metric names of the first table of docs/metrics.md, as a scrape shows them
/// (`..._x` abbreviates `skaffold_exporter_x`).
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let table = doc
        .split("\n\n")
        .find(|block| block.starts_with("| metric |"))
        .expect("the metric table");
    let mut out = BTreeSet::new();
    for row in table.lines().skip(2) {
        let first = row.split('|').nth(1).expect("a cell");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                out.insert(part.replace("...", "skaffold_exporter"));
            }
        }
    }
    out
}

#[test]
fn docs_metrics_md_lists_exactly_the_contracts_families() {
    let mut documented = documented();
    documented.retain(|name| !name.starts_with("process_"));
    let families = contract::families()
        .map(|s| (s.exposed_name(), ()))
        .collect();
    let documented = documented.into_iter().map(|name| (name, ())).collect();
    assert_same("docs/metrics.md", &documented, &families);
}
