//! The metric contract (names, labels, label values) and the one mapping from
//! transitions to instrument updates.
//!
//! [`Mapping::record`] is the only place that decides which instrument a transition
//! touches and with which labels; it writes through the small [`Recorder`] trait. The
//! Prometheus registry (`/metrics`, [`PromRecorder`]) and the OTLP metrics push
//! (`sink::otlp_metrics`) are two recorders of the same updates, so the two can never
//! drift apart. Metric names here are a public contract: dashboards and alert rules
//! depend on them, and docs/metrics.md documents each one.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{LabelCap, OTHER};
use super::resource::ResourceRef;
use crate::core::{Finished, LogKind, LoopKind, Outcome, Phase, ReaderHealth, Reason, Transition};

/// The default bucket set, shared by every duration histogram (seconds).
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0,
];

/// [`DEFAULT_BUCKETS`] written as `--buckets` takes it, the default `--help` shows
/// (a test in `config` keeps the two equal).
pub const DEFAULT_BUCKETS_ARG: &str = "0.1,0.25,0.5,1,2.5,5,10,20,30,60,120,300,600,900,1800,3600";

// === the contract ===

/// Instrument kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (`_total`).
    Counter,
    /// Duration histogram in seconds, with the configured buckets.
    Histogram,
    /// Gauge with labels.
    Gauge,
    /// Gauge without labels.
    PlainGauge,
}

/// One instrument of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Instrument {
    Builds,
    BuildDuration,
    Deploys,
    DeployDuration,
    StatusChecks,
    StatusCheckDuration,
    Tests,
    TestDuration,
    Renders,
    RenderDuration,
    Verifies,
    VerifyDuration,
    Execs,
    ExecDuration,
    BuildCache,
    RolloutDuration,
    FileSyncs,
    FileSyncDuration,
    SyncedFiles,
    DevLoops,
    DevLoopDuration,
    DeployStreak,
    BuildStreak,
    Errors,
    PortForwards,
    Info,
}

/// How an instrument is named and described in both backends.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The instrument.
    pub instrument: Instrument,
    /// Prometheus name without `_total` / unit suffix (`skaffold_build_duration`).
    pub name: &'static str,
    /// OTLP instrument name; Prometheus' OTLP translation turns it into the same
    /// series name as `/metrics` (`skaffold.build.duration` in `s` →
    /// `skaffold_build_duration_seconds`).
    pub otel_name: &'static str,
    /// OTLP unit (`s`, or a `{annotation}` that the translation drops).
    pub otel_unit: &'static str,
    /// Help text (both backends).
    pub help: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Label names, in exposition order.
    pub labels: &'static [&'static str],
}

const fn spec(
    instrument: Instrument,
    name: &'static str,
    otel_name: &'static str,
    otel_unit: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Spec {
    Spec {
        instrument,
        name,
        otel_name,
        otel_unit,
        help,
        kind,
        labels,
    }
}

use Instrument as I;
use Kind::{Counter as C, Gauge as G, Histogram as H, PlainGauge as P};

/// Every instrument, in registration (and exposition) order.
pub const SPECS: &[Spec] = &[
    spec(
        I::Builds,
        "skaffold_builds",
        "skaffold.builds",
        "{build}",
        C,
        &["artifact", "result"],
        "Artifact builds finished, by artifact and result",
    ),
    spec(
        I::BuildDuration,
        "skaffold_build_duration",
        "skaffold.build.duration",
        "s",
        H,
        &["artifact", "result"],
        "Artifact build time from Skaffold's start to end event",
    ),
    spec(
        I::Deploys,
        "skaffold_deploys",
        "skaffold.deploys",
        "{deploy}",
        C,
        &["result"],
        "Deploys finished, by result",
    ),
    spec(
        I::DeployDuration,
        "skaffold_deploy_duration",
        "skaffold.deploy.duration",
        "s",
        H,
        &["result"],
        "Deploy time (the deployer, without the status check)",
    ),
    spec(
        I::StatusChecks,
        "skaffold_status_checks",
        "skaffold.status_checks",
        "{check}",
        C,
        &["result"],
        "Status checks finished, by result",
    ),
    spec(
        I::StatusCheckDuration,
        "skaffold_status_check_duration",
        "skaffold.status_check.duration",
        "s",
        H,
        &["result"],
        "Status check time (waiting for resources to stabilise)",
    ),
    spec(
        I::Tests,
        "skaffold_tests",
        "skaffold.tests",
        "{test}",
        C,
        &["result"],
        "Test phases finished, by result",
    ),
    spec(
        I::TestDuration,
        "skaffold_test_duration",
        "skaffold.test.duration",
        "s",
        H,
        &["result"],
        "Test phase time",
    ),
    spec(
        I::Renders,
        "skaffold_renders",
        "skaffold.renders",
        "{render}",
        C,
        &["result"],
        "Render phases finished, by result (API v2 only)",
    ),
    spec(
        I::RenderDuration,
        "skaffold_render_duration",
        "skaffold.render.duration",
        "s",
        H,
        &["result"],
        "Render phase time (API v2 only)",
    ),
    spec(
        I::Verifies,
        "skaffold_verifies",
        "skaffold.verifies",
        "{verify}",
        C,
        &["result"],
        "Verify phases finished, by result (API v2 only)",
    ),
    spec(
        I::VerifyDuration,
        "skaffold_verify_duration",
        "skaffold.verify.duration",
        "s",
        H,
        &["result"],
        "Verify phase time (API v2 only)",
    ),
    spec(
        I::Execs,
        "skaffold_execs",
        "skaffold.execs",
        "{exec}",
        C,
        &["result"],
        "Custom action (exec) phases finished, by result (API v2 only)",
    ),
    spec(
        I::ExecDuration,
        "skaffold_exec_duration",
        "skaffold.exec.duration",
        "s",
        H,
        &["result"],
        "Custom action (exec) phase time (API v2 only)",
    ),
    spec(
        I::BuildCache,
        "skaffold_build_cache",
        "skaffold.build_cache",
        "{lookup}",
        C,
        &["artifact", "result"],
        "Build-cache lookups, by artifact and result (hit or miss; API v2 only)",
    ),
    spec(
        I::RolloutDuration,
        "skaffold_resource_rollout_duration",
        "skaffold.resource_rollout.duration",
        "s",
        H,
        &["namespace", "kind", "name", "resource", "result"],
        "Time from the status check's start until a resource succeeded or failed",
    ),
    spec(
        I::FileSyncs,
        "skaffold_file_syncs",
        "skaffold.file_syncs",
        "{sync}",
        C,
        &["image", "result"],
        "File syncs finished, by image and result",
    ),
    spec(
        I::FileSyncDuration,
        "skaffold_file_sync_duration",
        "skaffold.file_sync.duration",
        "s",
        H,
        &["image", "result"],
        "File sync time",
    ),
    spec(
        I::SyncedFiles,
        "skaffold_synced_files",
        "skaffold.synced_files",
        "{file}",
        C,
        &["image"],
        "Files synced to running containers, by image",
    ),
    spec(
        I::DevLoops,
        "skaffold_dev_loops",
        "skaffold.dev_loops",
        "{iteration}",
        C,
        &["kind", "result"],
        "Dev-loop iterations finished, by kind and result",
    ),
    spec(
        I::DevLoopDuration,
        "skaffold_dev_loop_duration",
        "skaffold.dev_loop.duration",
        "s",
        H,
        &["kind", "result"],
        "Dev-loop iteration time, from its start to its end event",
    ),
    spec(
        I::DeployStreak,
        "skaffold_deploy_consecutive_failures",
        "skaffold.deploy.consecutive_failures",
        "{failure}",
        P,
        &[],
        "Failed deploys since the last successful one",
    ),
    spec(
        I::BuildStreak,
        "skaffold_build_consecutive_failures",
        "skaffold.build.consecutive_failures",
        "{failure}",
        G,
        &["artifact"],
        "Failed builds of an artifact since its last successful build",
    ),
    spec(
        I::Errors,
        "skaffold_errors",
        "skaffold.errors",
        "{error}",
        C,
        &["phase", "code"],
        "Failures by phase and Skaffold status code, each failure counted once at the phase that failed",
    ),
    spec(
        I::PortForwards,
        "skaffold_port_forwards",
        "skaffold.port_forwards",
        "{forward}",
        P,
        &[],
        "Port forwards announced in the current Skaffold run",
    ),
    spec(
        I::Info,
        "skaffold_info",
        "skaffold.info",
        "",
        G,
        &["version"],
        "Skaffold version of the current run (value is always 1)",
    ),
];

/// Label values of one update, in the instrument's label order.
pub type Labels<'a> = &'a [&'a str];

/// The trace that produced a histogram observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplar {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Skaffold's timestamp of the event that ended the span.
    pub at: SystemTime,
}

/// A metrics backend: receives the updates [`Mapping::record`] decides on.
pub trait Recorder: std::fmt::Debug {
    /// Adds `by` to a counter (`by == 0` creates the series at zero).
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64);
    /// Records a histogram observation (seconds).
    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>);
    /// Sets a gauge.
    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64);
    /// Forgets every series of a gauge (`skaffold_info` on a version change).
    fn clear(&mut self, i: Instrument);
    /// A Skaffold run started (its MetaEvent, stamped `at` by Skaffold); the run's
    /// updates follow. The OTLP push starts the run's own series here.
    fn run_started(&mut self, _at: crate::core::Nanos) {}
}

const SUCCESS_FAILURE: [&str; 2] = ["success", "failure"];

/// The `code` of `skaffold_errors_total` when Skaffold sent no StatusCode (or 0, or
/// one newer than our enum). Skaffold's own "could not classify" is `UNKNOWN_ERROR`
/// or a phase's `*_UNKNOWN` code, which are kept as they are.
pub const UNKNOWN_CODE: &str = "UNKNOWN";

/// The one mapping from transitions to instrument updates (plus the state it needs:
/// label caps, versions seen).
#[derive(Debug)]
pub struct Mapping {
    artifacts: LabelCap,
    images: LabelCap,
    resources: LabelCap,
    versions_seen: HashSet<String>,
    cache_artifacts_seen: HashSet<String>,
}

impl Mapping {
    /// A mapping with the `max_label_values` cardinality cap.
    pub fn new(max_label_values: usize) -> Self {
        Self {
            artifacts: LabelCap::new(max_label_values),
            images: LabelCap::new(max_label_values),
            resources: LabelCap::new(max_label_values),
            versions_seen: HashSet::new(),
            cache_artifacts_seen: HashSet::new(),
        }
    }

    /// Creates the series that exist before anything happened.
    pub fn precreate(r: &mut dyn Recorder) {
        for result in SUCCESS_FAILURE {
            r.add(I::Deploys, &[result], 0);
            r.add(I::StatusChecks, &[result], 0);
            r.add(I::Tests, &[result], 0);
            for kind in [
                LoopKind::Initial,
                LoopKind::Rebuild,
                LoopKind::Sync,
                LoopKind::Redeploy,
            ] {
                r.add(I::DevLoops, &[kind.as_str(), result], 0);
            }
        }
        r.set(I::DeployStreak, &[], 0);
        r.set(I::PortForwards, &[], 0);
    }

    fn cap(&mut self, phase: Phase, value: &str, own: &SelfMetrics) -> String {
        let (cap, label, value) = match phase {
            Phase::Build => (&mut self.artifacts, "artifact", value),
            // A sync names the image by its built tag: the label is the image name, so
            // a rebuild does not start a new series (see `sink::image`).
            Phase::FileSync => (&mut self.images, "image", super::image::name(value)),
            _ => (&mut self.resources, "resource", value),
        };
        let (v, folded) = cap.apply(value);
        if folded {
            own.label_values_folded
                .get_or_create(&LabelLabel { label })
                .inc();
        }
        v
    }

    /// Records one transition into `r`; histogram observations carry `ex`.
    pub fn record(
        &mut self,
        t: &Transition,
        ex: Option<&Exemplar>,
        own: &SelfMetrics,
        r: &mut dyn Recorder,
    ) {
        match t {
            Transition::RunStarted { version, at } => {
                r.run_started(*at);
                r.set(I::PortForwards, &[], 0);
                if let Some(v) = version {
                    r.clear(I::Info);
                    // At most 16 distinct versions per process (OTLP gauges cannot be
                    // deleted); later ones show as `other`.
                    let v = if self.versions_seen.len() < 16 || self.versions_seen.contains(v) {
                        self.versions_seen.insert(v.clone());
                        v.as_str()
                    } else {
                        super::labels::OTHER
                    };
                    r.set(I::Info, &[v], 1);
                }
            }
            Transition::SubjectSeen { phase, subject } => {
                let name = self.cap(*phase, subject, own);
                let i = match phase {
                    Phase::Build => I::Builds,
                    Phase::FileSync => I::FileSyncs,
                    _ => return,
                };
                for result in SUCCESS_FAILURE {
                    r.add(i, &[&name, result], 0);
                }
            }
            Transition::Started { phase, .. } => {
                // Series of the v2-only phases appear once the phase is first seen.
                let i = match phase {
                    Phase::Render => I::Renders,
                    Phase::Verify => I::Verifies,
                    Phase::Exec => I::Execs,
                    _ => return,
                };
                for result in SUCCESS_FAILURE {
                    r.add(i, &[result], 0);
                }
            }
            Transition::CacheChecked { artifact, hit, .. } => {
                let artifact = self.cap(Phase::Build, artifact, own);
                if self.cache_artifacts_seen.len() < 100_000
                    && self.cache_artifacts_seen.insert(artifact.clone())
                {
                    for result in ["hit", "miss"] {
                        r.add(I::BuildCache, &[&artifact, result], 0);
                    }
                }
                let result = if *hit { "hit" } else { "miss" };
                r.add(I::BuildCache, &[&artifact, result], 1);
            }
            Transition::Finished(f) => self.finished(f, ex, own, r),
            Transition::DeployStreak(n) => {
                r.set(I::DeployStreak, &[], i64::try_from(*n).unwrap_or(i64::MAX));
            }
            Transition::BuildStreak { artifact, failures } => {
                let label = self.cap(Phase::Build, artifact, own);
                // A streak is per artifact: `other` would mix unrelated artifacts.
                if self.artifacts.is_kept(artifact) {
                    let n = i64::try_from(*failures).unwrap_or(i64::MAX);
                    r.set(I::BuildStreak, &[&label], n);
                }
            }
            Transition::PortForwards { count, .. } => {
                r.set(
                    I::PortForwards,
                    &[],
                    i64::try_from(*count).unwrap_or(i64::MAX),
                );
            }
            Transition::Failure { phase, code, .. } => {
                // Once per failure, at the phase the fold attributes it to.
                let code = code.as_deref().unwrap_or(UNKNOWN_CODE);
                r.add(I::Errors, &[phase.as_str(), code], 1);
            }
            Transition::Anomaly(reason) => {
                own.count_invalid(*reason);
            }
            _ => {}
        }
    }

    fn finished(
        &mut self,
        f: &Finished,
        ex: Option<&Exemplar>,
        own: &SelfMetrics,
        r: &mut dyn Recorder,
    ) {
        if f.phase.is_subtask() {
            // Measured for spans only: the enclosing phase is counted (and its failure).
            return;
        }
        let result = f.outcome.as_str();
        let secs = f.duration_seconds();
        if f.phase == Phase::Resource {
            if let (Some(resource), Some(s)) = (f.subject.as_deref(), secs) {
                self.rollout(resource, result, s, ex, own, r);
            }
            return;
        }
        let subject = f
            .subject
            .as_deref()
            .map(|s| self.cap(f.phase, s, own))
            .unwrap_or_default();
        let single = |count: Instrument, hist: Instrument, r: &mut dyn Recorder| {
            r.add(count, &[result], 1);
            if let Some(s) = secs {
                r.observe(hist, &[result], s, ex);
            }
        };
        match f.phase {
            Phase::Build => {
                r.add(I::Builds, &[&subject, result], 1);
                if let Some(s) = secs {
                    r.observe(I::BuildDuration, &[&subject, result], s, ex);
                }
            }
            Phase::Test => single(I::Tests, I::TestDuration, r),
            Phase::Deploy => single(I::Deploys, I::DeployDuration, r),
            Phase::StatusCheck => single(I::StatusChecks, I::StatusCheckDuration, r),
            Phase::Render => single(I::Renders, I::RenderDuration, r),
            Phase::Verify => single(I::Verifies, I::VerifyDuration, r),
            Phase::Exec => single(I::Execs, I::ExecDuration, r),
            Phase::FileSync => {
                r.add(I::FileSyncs, &[&subject, result], 1);
                if let Some(s) = secs {
                    r.observe(I::FileSyncDuration, &[&subject, result], s, ex);
                }
                if f.outcome == Outcome::Success {
                    r.add(I::SyncedFiles, &[&subject], f.file_count);
                }
            }
            Phase::DevLoop => {
                let kind = f.loop_kind.unwrap_or(LoopKind::Redeploy).as_str();
                r.add(I::DevLoops, &[kind, result], 1);
                if let Some(s) = secs {
                    r.observe(I::DevLoopDuration, &[kind, result], s, ex);
                }
            }
            _ => {}
        }
    }
}

impl Mapping {
    /// One resource's rollout: labelled by its namespace, kind and name (see
    /// `sink::resource`) and by Skaffold's own string. A pod Skaffold reports inside
    /// a checked resource is left out: a new name every rollout, the same rollout
    /// as its resource's. The cap counts resources; a folded one is `other` in every
    /// label.
    fn rollout(
        &mut self,
        resource: &str,
        result: &str,
        secs: f64,
        ex: Option<&Exemplar>,
        own: &SelfMetrics,
        r: &mut dyn Recorder,
    ) {
        let parts = ResourceRef::parse(resource);
        if parts.is_member_pod() {
            return;
        }
        let capped = self.cap(Phase::Resource, resource, own);
        let labels: [&str; 5] = if capped == resource {
            [
                parts.namespace.unwrap_or(""),
                parts.kind.unwrap_or(""),
                parts.name,
                resource,
                result,
            ]
        } else {
            [OTHER, OTHER, OTHER, OTHER, result]
        };
        r.observe(I::RolloutDuration, &labels, secs, ex);
    }
}

// === the Prometheus backend ===

/// Exemplar labels on `/metrics` histograms (OpenMetrics only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    /// The trace's id, 32 hex digits.
    pub trace_id: String,
}

type LabelSet = Vec<(&'static str, String)>;
type Hist = HistogramWithExemplars<TraceLabel>;

/// Creates histograms with the configured buckets.
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl MetricConstructor<Hist> for Buckets {
    fn new_metric(&self) -> Hist {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

#[derive(Debug)]
enum Slot {
    Counter(Family<LabelSet, Counter>),
    Histogram(Family<LabelSet, Hist, Buckets>),
    Gauge(Family<LabelSet, Gauge>),
    Plain(Gauge),
}

/// The Prometheus registry as a [`Recorder`].
#[derive(Debug)]
pub struct PromRecorder {
    slots: Vec<Slot>,
    /// Series already created, by instrument and label values: an update then costs a
    /// hash of the values, not a label set built and hashed into the family (the fold
    /// records every transition).
    series: std::collections::HashMap<u64, (usize, Box<[String]>, Series)>,
}

/// A handle on one series (shares its value with the family's).
#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Histogram(Hist),
    Gauge(Gauge),
}

/// The key of a series in [`PromRecorder::series`].
fn series_key(i: Instrument, labels: Labels<'_>) -> u64 {
    use std::hash::Hasher as _;
    let mut h = twox_hash::XxHash3_64::with_seed(i as u64);
    for l in labels {
        h.write(l.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// The label set of an update; an empty value leaves its label out (Prometheus reads
/// an empty label as an absent one: a resource Skaffold names without a namespace).
fn label_set(i: Instrument, values: Labels<'_>) -> LabelSet {
    let names = SPECS[i as usize].labels;
    names
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect()
}

impl PromRecorder {
    /// Registers every instrument of [`SPECS`] in `r`.
    pub fn register(r: &mut Registry, buckets: &[f64]) -> Self {
        let b = Buckets(buckets.into());
        let slots = SPECS
            .iter()
            .enumerate()
            .map(|(n, s)| {
                debug_assert_eq!(s.instrument as usize, n, "SPECS in enum order");
                match s.kind {
                    Kind::Counter => {
                        let f = Family::<LabelSet, Counter>::default();
                        r.register(s.name, s.help, f.clone());
                        Slot::Counter(f)
                    }
                    Kind::Histogram => {
                        let f = Family::new_with_constructor(b.clone());
                        r.register_with_unit(s.name, s.help, Unit::Seconds, f.clone());
                        Slot::Histogram(f)
                    }
                    Kind::Gauge => {
                        let f = Family::<LabelSet, Gauge>::default();
                        r.register(s.name, s.help, f.clone());
                        Slot::Gauge(f)
                    }
                    Kind::PlainGauge => {
                        let g = Gauge::default();
                        r.register(s.name, s.help, g.clone());
                        Slot::Plain(g)
                    }
                }
            })
            .collect();
        Self {
            slots,
            series: std::collections::HashMap::new(),
        }
    }

    /// The series of `i` with `labels`, created in its family if new.
    fn series(&mut self, i: Instrument, labels: Labels<'_>) -> Option<Series> {
        let key = series_key(i, labels);
        if let Some((n, values, s)) = self.series.get(&key)
            && *n == i as usize
            && values.len() == labels.len()
            && values.iter().zip(labels).all(|(a, b)| a == b)
        {
            return Some(s.clone());
        }
        let set = label_set(i, labels);
        let s = match &self.slots[i as usize] {
            Slot::Counter(f) => Series::Counter(f.get_or_create(&set).clone()),
            Slot::Histogram(f) => Series::Histogram(f.get_or_create(&set).clone()),
            Slot::Gauge(f) => Series::Gauge(f.get_or_create(&set).clone()),
            Slot::Plain(_) => return None,
        };
        // A hash shared with other labels (never seen in practice) is not cached.
        self.series.entry(key).or_insert_with(|| {
            let values = labels.iter().map(|l| (*l).to_owned()).collect();
            (i as usize, values, s.clone())
        });
        Some(s)
    }
}

impl Recorder for PromRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        if let Some(Series::Counter(c)) = self.series(i, labels) {
            c.inc_by(by);
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>) {
        if let Some(Series::Histogram(h)) = self.series(i, labels) {
            let ex = ex.map(|e| {
                (
                    TraceLabel {
                        trace_id: e.trace_id.clone(),
                    },
                    e.at,
                )
            });
            let (label, at) = match ex {
                Some((l, at)) => (Some(l), Some(at)),
                None => (None, None),
            };
            h.observe(value, label, at);
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if let Slot::Plain(g) = &self.slots[i as usize] {
            g.set(value);
            return;
        }
        if let Some(Series::Gauge(g)) = self.series(i, labels) {
            g.set(value);
        }
    }

    fn clear(&mut self, i: Instrument) {
        if let Slot::Gauge(f) = &self.slots[i as usize] {
            f.clear();
            // Handles on removed series would update nothing that is exposed.
            self.series.retain(|_, (n, _, _)| *n != i as usize);
        }
    }
}

/// Sends every update to two recorders.
#[derive(Debug)]
struct Tee<'a>(
    &'a mut dyn Recorder,
    Option<&'a mut Box<dyn Recorder + Send>>,
);

impl Recorder for Tee<'_> {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        self.0.add(i, labels, by);
        if let Some(r) = self.1.as_deref_mut() {
            r.add(i, labels, by);
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>) {
        self.0.observe(i, labels, value, ex);
        if let Some(r) = self.1.as_deref_mut() {
            r.observe(i, labels, value, ex);
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        self.0.set(i, labels, value);
        if let Some(r) = self.1.as_deref_mut() {
            r.set(i, labels, value);
        }
    }

    fn clear(&mut self, i: Instrument) {
        self.0.clear(i);
        if let Some(r) = self.1.as_deref_mut() {
            r.clear(i);
        }
    }

    fn run_started(&mut self, at: crate::core::Nanos) {
        self.0.run_started(at);
        if let Some(r) = self.1.as_deref_mut() {
            r.run_started(at);
        }
    }
}

// === the exporter's own metrics ===

/// `{event}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// Event type.
    pub event: &'static str,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// `{label}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelLabel {
    /// Which capped label.
    pub label: &'static str,
}

/// `{event}` of log events skipped without decoding.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogEventLabel {
    /// skaffold_log | application_log
    pub event: &'static str,
}

/// The exporter's own health, shared between the reader and the fold.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    /// 1 while subscribed to Skaffold's event stream.
    pub connected: Gauge,
    /// Re-subscriptions after the first one.
    pub reconnects: Counter,
    /// Events folded, by type.
    pub events: Family<EventLabel, Counter>,
    /// Replayed events skipped after a reconnect.
    pub replayed_skipped: Counter,
    /// Events that could not be interpreted, by reason.
    pub invalid: Family<ReasonLabel, Counter>,
    /// Skaffold's timestamp of the newest event folded.
    pub last_event_timestamp: Gauge<f64, AtomicU64>,
    /// 1 while the reader has waited more than 5 s on a full queue (the fold is making
    /// no progress; nothing is lost).
    pub fold_stalled: Gauge,
    /// Times the reader waited more than 5 s on a full queue.
    pub fold_stalls: Counter,
    /// Label values folded into `other` by the cardinality cap.
    pub label_values_folded: Family<LabelLabel, Counter>,
    /// v2 Skaffold / application log events skipped without decoding.
    pub log_events_skipped: Family<LogEventLabel, Counter>,
}

impl SelfMetrics {
    fn register(self, r: &mut Registry) -> Self {
        r.register(
            "skaffold_exporter_connected",
            "1 while the exporter is subscribed to Skaffold's event stream, else 0",
            self.connected.clone(),
        );
        r.register(
            "skaffold_exporter_reconnects",
            "Re-subscriptions to Skaffold's event stream after the first one",
            self.reconnects.clone(),
        );
        r.register(
            "skaffold_exporter_events",
            "Skaffold events folded into metrics, by event type",
            self.events.clone(),
        );
        r.register(
            "skaffold_exporter_replayed_events_skipped",
            "Events Skaffold replayed after a reconnect that were already counted",
            self.replayed_skipped.clone(),
        );
        r.register(
            "skaffold_exporter_invalid_events",
            "Events that could not be interpreted, by reason",
            self.invalid.clone(),
        );
        for reason in Reason::ALL {
            let _ = self.invalid.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        r.register_with_unit(
            "skaffold_exporter_last_event_timestamp",
            "Skaffold's timestamp of the newest event folded (Unix seconds)",
            Unit::Seconds,
            self.last_event_timestamp.clone(),
        );
        r.register(
            "skaffold_exporter_fold_stalled",
            "1 while the fold has taken nothing from its full queue for more than 5 s (the reader waits; nothing is lost), else 0",
            self.fold_stalled.clone(),
        );
        r.register(
            "skaffold_exporter_fold_stalls",
            "Times the fold took nothing from its full queue for more than 5 s (the reader waited; nothing was lost)",
            self.fold_stalls.clone(),
        );
        r.register(
            "skaffold_exporter_label_values_folded",
            "Label values folded into 'other' by the --max-label-values cap, by label",
            self.label_values_folded.clone(),
        );
        r.register(
            "skaffold_exporter_log_events_skipped",
            "Skaffold's own log lines and the application's log lines (API v2) skipped without decoding, by event",
            self.log_events_skipped.clone(),
        );
        self
    }
}

impl SelfMetrics {
    /// Counts one event that could not be interpreted, by `reason`.
    pub fn count_invalid(&self, reason: Reason) {
        self.invalid
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The `skaffold_exporter_events_total{event}` series (kept by callers that
    /// count often: a family lookup hashes the label every time).
    pub fn event_counter(&self, event: &'static str) -> Counter {
        self.events.get_or_create(&EventLabel { event }).clone()
    }

    /// The `skaffold_exporter_log_events_skipped_total{event}` series.
    pub fn log_skipped_counter(&self, kind: LogKind) -> Counter {
        self.log_events_skipped
            .get_or_create(&LogEventLabel {
                event: kind.as_str(),
            })
            .clone()
    }
}

impl ReaderHealth for SelfMetrics {
    fn reconnected(&self) {
        self.reconnects.inc();
    }

    fn fold_stalled(&self, stalled: bool) {
        if stalled {
            self.fold_stalled.set(1);
            self.fold_stalls.inc();
        } else {
            self.fold_stalled.set(0);
        }
    }

    fn invalid(&self, reason: Reason) {
        self.count_invalid(reason);
    }
}

/// Every Skaffold metric: the Prometheus registry, plus an optional second recorder
/// (the OTLP push) fed by the same [`Mapping`].
#[derive(Debug)]
pub struct Metrics {
    prom: PromRecorder,
    mapping: Mapping,
    otlp: Option<Box<dyn Recorder + Send>>,
    /// The exporter's own metrics.
    pub own: SelfMetrics,
}

impl Metrics {
    /// Registers every metric in `r`, with the histogram `buckets` and the label
    /// cardinality cap `max_label_values`.
    pub fn register(r: &mut Registry, buckets: &[f64], max_label_values: usize) -> Self {
        let own = SelfMetrics::default().register(r);
        let mut prom = PromRecorder::register(r, buckets);
        Mapping::precreate(&mut prom);
        Self {
            prom,
            mapping: Mapping::new(max_label_values),
            otlp: None,
            own,
        }
    }

    /// Feeds every later update to `recorder` too (the OTLP metrics push).
    pub fn add_recorder(&mut self, mut recorder: Box<dyn Recorder + Send>) {
        Mapping::precreate(recorder.as_mut());
        self.otlp = Some(recorder);
    }

    /// Applies one transition.
    pub fn observe(&mut self, t: &Transition) {
        self.observe_traced(t, None, 0);
    }

    /// Applies one transition; histogram observations carry `trace` (the span that
    /// produced them) as exemplar, stamped `at` (Skaffold's time).
    pub fn observe_traced(
        &mut self,
        t: &Transition,
        trace: Option<opentelemetry::trace::TraceId>,
        at: crate::core::Nanos,
    ) {
        let ex = trace.map(|id| Exemplar {
            trace_id: id.to_string(),
            at: std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(u64::try_from(at).unwrap_or(0)),
        });
        let mut tee = Tee(&mut self.prom, self.otlp.as_mut());
        self.mapping.record(t, ex.as_ref(), &self.own, &mut tee);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Finished, Transition};

    /// The Prometheus text lines of `r` that start with one of `prefixes`, sorted.
    fn exposed(r: &Registry, prefixes: &[&str]) -> Vec<String> {
        let text = super::super::exposition::openmetrics_to_prometheus(
            &super::super::exposition::encode_openmetrics(r),
        );
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
            .map(str::to_owned)
            .collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn the_image_label_is_the_name_without_tag_and_digest_and_a_rebuild_folds_nothing() {
        // A cap of 2: three tags of one image and two images must keep both names.
        let mut r = Registry::default();
        let mut m = Metrics::register(&mut r, &DEFAULT_BUCKETS, 2);
        let digest = "sha256:e3c03bbaf0830afb79d586c5a0d5ce7510a027585fb0cbc88db9bd14bfbad139";
        let refs = [
            "localhost:5000/web:v1".to_owned(),
            format!("localhost:5000/web:v2@{digest}"),
            format!("localhost:5000/web@{digest}"),
            "gcr.io/p/app:v1".to_owned(),
        ];
        for (i, image) in refs.iter().enumerate() {
            m.observe(&Transition::SubjectSeen {
                phase: Phase::FileSync,
                subject: image.clone(),
            });
            m.observe(&Transition::Finished(Finished {
                phase: Phase::FileSync,
                subject: Some(image.clone()),
                outcome: Outcome::Success,
                started_at: Some(1_700_000_000_000_000_000),
                finished_at: 1_700_000_000_500_000_000,
                error: None,
                file_count: 2,
                iteration: Some(i as i64 + 1),
                loop_kind: None,
            }));
        }
        assert_eq!(
            exposed(
                &r,
                &[
                    "skaffold_file_syncs_total",
                    "skaffold_synced_files_total",
                    "skaffold_exporter_label_values_folded_total",
                ]
            ),
            [
                "skaffold_file_syncs_total{image=\"gcr.io/p/app\",result=\"failure\"} 0",
                "skaffold_file_syncs_total{image=\"gcr.io/p/app\",result=\"success\"} 1",
                "skaffold_file_syncs_total{image=\"localhost:5000/web\",result=\"failure\"} 0",
                "skaffold_file_syncs_total{image=\"localhost:5000/web\",result=\"success\"} 3",
                "skaffold_synced_files_total{image=\"gcr.io/p/app\"} 2",
                "skaffold_synced_files_total{image=\"localhost:5000/web\"} 6",
            ]
        );
    }

    #[test]
    fn rollouts_fold_whole_under_the_cap_and_member_pods_take_no_place() {
        // A cap of 1: the member pod first (left out, so it takes no place), then two
        // resources: the second folds into `other` in every label.
        let mut r = Registry::default();
        let mut m = Metrics::register(&mut r, &DEFAULT_BUCKETS, 1);
        for resource in [
            "pod/web-6b8f7c9d4-x2x9z",
            "shop:deployment/web",
            "statefulset/db",
        ] {
            m.observe(&Transition::Finished(Finished {
                phase: Phase::Resource,
                subject: Some(resource.into()),
                outcome: Outcome::Success,
                started_at: Some(1_700_000_000_000_000_000),
                finished_at: 1_700_000_002_000_000_000,
                error: None,
                file_count: 0,
                iteration: Some(0),
                loop_kind: None,
            }));
        }
        assert_eq!(
            exposed(
                &r,
                &[
                    "skaffold_resource_rollout_duration_seconds_count",
                    "skaffold_exporter_label_values_folded_total",
                ]
            ),
            [
                "skaffold_exporter_label_values_folded_total{label=\"resource\"} 1",
                "skaffold_resource_rollout_duration_seconds_count{namespace=\"other\",kind=\"other\",name=\"other\",resource=\"other\",result=\"success\"} 1",
                "skaffold_resource_rollout_duration_seconds_count{namespace=\"shop\",kind=\"Deployment\",name=\"web\",resource=\"shop:deployment/web\",result=\"success\"} 1",
            ]
        );
    }

    #[test]
    fn histograms_carry_trace_exemplars_in_openmetrics_only() {
        let mut r = Registry::default();
        let mut m = Metrics::register(&mut r, &DEFAULT_BUCKETS, 10);
        let f = Finished {
            phase: Phase::Build,
            subject: Some("web".into()),
            outcome: Outcome::Success,
            started_at: Some(1_700_000_000_020_000_000),
            finished_at: 1_700_000_001_225_000_000,
            error: None,
            file_count: 0,
            iteration: Some(0),
            loop_kind: None,
        };
        let trace = opentelemetry::trace::TraceId::from_bytes([0xab; 16]);
        m.observe_traced(
            &Transition::Finished(f),
            Some(trace),
            1_700_000_001_225_000_000,
        );
        let om = super::super::exposition::encode_openmetrics(&r);
        let line = om
            .lines()
            .find(|l| {
                l.starts_with("skaffold_build_duration_seconds_bucket") && l.contains("le=\"2.5\"")
            })
            .unwrap();
        assert_eq!(
            line,
            "skaffold_build_duration_seconds_bucket{le=\"2.5\",artifact=\"web\",result=\"success\"} 1 # {trace_id=\"abababababababababababababababab\"} 1.205 1700000001.225"
        );
        let text = super::super::exposition::openmetrics_to_prometheus(&om);
        assert!(!text.contains("trace_id"));
        // Without a trace, the histogram encodes exactly as before exemplars existed.
        let mut r2 = Registry::default();
        let mut m2 = Metrics::register(&mut r2, &DEFAULT_BUCKETS, 10);
        m2.observe(&Transition::RunStarted {
            version: Some("v2".into()),
            at: 0,
        });
        assert!(!super::super::exposition::encode_openmetrics(&r2).contains(" # {"));
    }
}
