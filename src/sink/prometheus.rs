//! The Prometheus sink: the metric contract (names, labels, label values) and
//! `observe(&Transition)`. Metric names here are a public contract: dashboards and
//! alert rules depend on them, and the README documents each one.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::labels::LabelCap;
use crate::core::{Finished, LoopKind, Outcome, Phase, Transition};

/// The default bucket set, shared by every duration histogram (seconds).
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0,
];

/// Creates histograms with the configured buckets.
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success | failure | canceled
    pub result: &'static str,
}

/// `{artifact, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArtifactLabels {
    /// Artifact image name (capped).
    pub artifact: String,
    /// success | failure | canceled
    pub result: &'static str,
}

/// `{image, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    /// Image name (capped).
    pub image: String,
    /// success | failure | canceled
    pub result: &'static str,
}

/// `{resource, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `namespace:kind/name` (capped).
    pub resource: String,
    /// success | failure | canceled
    pub result: &'static str,
}

/// `{kind, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    /// initial | rebuild | sync | redeploy
    pub kind: &'static str,
    /// success | failure | canceled
    pub result: &'static str,
}

/// `{phase, code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// build | test | deploy | status_check | resource | file_sync | dev_loop
    pub phase: &'static str,
    /// Skaffold StatusCode name, or UNKNOWN.
    pub code: String,
}

/// A single string label (`artifact`, `image`, `version`, `event`, `reason`, `label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArtifactLabel {
    /// Artifact (capped).
    pub artifact: String,
}

/// `{image}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabel {
    /// Image (capped).
    pub image: String,
}

/// `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// Skaffold version.
    pub version: String,
}

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
    /// Events dropped because the fold's queue was full.
    pub dropped: Counter,
    /// Label values folded into `other` by the cardinality cap.
    pub label_values_folded: Family<LabelLabel, Counter>,
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
        r.register_with_unit(
            "skaffold_exporter_last_event_timestamp",
            "Skaffold's timestamp of the newest event folded (Unix seconds)",
            Unit::Seconds,
            self.last_event_timestamp.clone(),
        );
        r.register(
            "skaffold_exporter_events_dropped",
            "Events dropped because the exporter's internal queue was full",
            self.dropped.clone(),
        );
        r.register(
            "skaffold_exporter_label_values_folded",
            "Label values folded into 'other' by the --max-label-values cap, by label",
            self.label_values_folded.clone(),
        );
        self
    }
}

/// Every Skaffold metric; `observe` applies one transition.
#[derive(Debug)]
pub struct Metrics {
    builds: Family<ArtifactLabels, Counter>,
    build_duration: Histograms<ArtifactLabels>,
    deploys: Family<ResultLabels, Counter>,
    deploy_duration: Histograms<ResultLabels>,
    status_checks: Family<ResultLabels, Counter>,
    status_check_duration: Histograms<ResultLabels>,
    tests: Family<ResultLabels, Counter>,
    test_duration: Histograms<ResultLabels>,
    rollout_duration: Histograms<ResourceLabels>,
    file_syncs: Family<ImageLabels, Counter>,
    file_sync_duration: Histograms<ImageLabels>,
    synced_files: Family<ImageLabel, Counter>,
    dev_loops: Family<LoopLabels, Counter>,
    dev_loop_duration: Histograms<LoopLabels>,
    deploy_streak: Gauge,
    build_streak: Family<ArtifactLabel, Gauge>,
    errors: Family<ErrorLabels, Counter>,
    port_forwards: Gauge,
    info: Family<VersionLabel, Gauge>,
    /// The exporter's own metrics.
    pub own: SelfMetrics,
    artifacts: LabelCap,
    images: LabelCap,
    resources: LabelCap,
    versions_seen: HashSet<String>,
}

const SUCCESS_FAILURE: [&str; 2] = ["success", "failure"];

impl Metrics {
    /// Registers every metric in `r`, with the histogram `buckets` and the label
    /// cardinality cap `max_label_values`.
    pub fn register(r: &mut Registry, buckets: &[f64], max_label_values: usize) -> Self {
        let b = Buckets(buckets.into());
        fn hist<L: Clone + std::hash::Hash + Eq>(b: &Buckets) -> Histograms<L> {
            Family::new_with_constructor(b.clone())
        }
        let m = Metrics {
            builds: Family::default(),
            build_duration: hist(&b),
            deploys: Family::default(),
            deploy_duration: hist(&b),
            status_checks: Family::default(),
            status_check_duration: hist(&b),
            tests: Family::default(),
            test_duration: hist(&b),
            rollout_duration: hist(&b),
            file_syncs: Family::default(),
            file_sync_duration: hist(&b),
            synced_files: Family::default(),
            dev_loops: Family::default(),
            dev_loop_duration: hist(&b),
            deploy_streak: Gauge::default(),
            build_streak: Family::default(),
            errors: Family::default(),
            port_forwards: Gauge::default(),
            info: Family::default(),
            own: SelfMetrics::default().register(r),
            artifacts: LabelCap::new(max_label_values),
            images: LabelCap::new(max_label_values),
            resources: LabelCap::new(max_label_values),
            versions_seen: HashSet::new(),
        };
        let s = Unit::Seconds;
        r.register(
            "skaffold_builds",
            "Artifact builds finished, by artifact and result",
            m.builds.clone(),
        );
        r.register_with_unit(
            "skaffold_build_duration",
            "Artifact build time from Skaffold's start to end event",
            s.clone(),
            m.build_duration.clone(),
        );
        r.register(
            "skaffold_deploys",
            "Deploys finished, by result",
            m.deploys.clone(),
        );
        r.register_with_unit(
            "skaffold_deploy_duration",
            "Deploy time (the deployer, without the status check)",
            s.clone(),
            m.deploy_duration.clone(),
        );
        r.register(
            "skaffold_status_checks",
            "Status checks finished, by result",
            m.status_checks.clone(),
        );
        r.register_with_unit(
            "skaffold_status_check_duration",
            "Status check time (waiting for resources to stabilise)",
            s.clone(),
            m.status_check_duration.clone(),
        );
        r.register(
            "skaffold_tests",
            "Test phases finished, by result",
            m.tests.clone(),
        );
        r.register_with_unit(
            "skaffold_test_duration",
            "Test phase time",
            s.clone(),
            m.test_duration.clone(),
        );
        r.register_with_unit(
            "skaffold_resource_rollout_duration",
            "Time from the status check's start until a resource succeeded or failed",
            s.clone(),
            m.rollout_duration.clone(),
        );
        r.register(
            "skaffold_file_syncs",
            "File syncs finished, by image and result",
            m.file_syncs.clone(),
        );
        r.register_with_unit(
            "skaffold_file_sync_duration",
            "File sync time",
            s.clone(),
            m.file_sync_duration.clone(),
        );
        r.register(
            "skaffold_synced_files",
            "Files synced to running containers, by image",
            m.synced_files.clone(),
        );
        r.register(
            "skaffold_dev_loops",
            "Dev-loop iterations finished, by kind and result",
            m.dev_loops.clone(),
        );
        r.register_with_unit(
            "skaffold_dev_loop_duration",
            "Dev-loop iteration time, from its start to its end event",
            s,
            m.dev_loop_duration.clone(),
        );
        r.register(
            "skaffold_deploy_consecutive_failures",
            "Failed deploys since the last successful one",
            m.deploy_streak.clone(),
        );
        r.register(
            "skaffold_build_consecutive_failures",
            "Failed builds of an artifact since its last successful build",
            m.build_streak.clone(),
        );
        r.register(
            "skaffold_errors",
            "Failures by phase and Skaffold status code",
            m.errors.clone(),
        );
        r.register(
            "skaffold_port_forwards",
            "Port forwards announced in the current Skaffold run",
            m.port_forwards.clone(),
        );
        r.register(
            "skaffold_info",
            "Skaffold version of the current run (value is always 1)",
            m.info.clone(),
        );
        for result in SUCCESS_FAILURE {
            let _ = m.deploys.get_or_create(&ResultLabels { result });
            let _ = m.status_checks.get_or_create(&ResultLabels { result });
            let _ = m.tests.get_or_create(&ResultLabels { result });
            for kind in [
                LoopKind::Initial,
                LoopKind::Rebuild,
                LoopKind::Sync,
                LoopKind::Redeploy,
            ] {
                let _ = m.dev_loops.get_or_create(&LoopLabels {
                    kind: kind.as_str(),
                    result,
                });
            }
        }
        m
    }

    fn cap(&mut self, phase: Phase, value: &str) -> String {
        let (cap, label) = match phase {
            Phase::Build => (&mut self.artifacts, "artifact"),
            Phase::FileSync => (&mut self.images, "image"),
            _ => (&mut self.resources, "resource"),
        };
        let (v, folded) = cap.apply(value);
        if folded {
            self.own
                .label_values_folded
                .get_or_create(&LabelLabel { label })
                .inc();
        }
        v
    }

    /// Applies one transition.
    pub fn observe(&mut self, t: &Transition) {
        match t {
            Transition::RunStarted { version, .. } => {
                self.port_forwards.set(0);
                if let Some(v) = version {
                    self.info.clear();
                    if self.versions_seen.len() < 16 || self.versions_seen.contains(v) {
                        self.versions_seen.insert(v.clone());
                        self.info
                            .get_or_create(&VersionLabel { version: v.clone() })
                            .set(1);
                    }
                }
            }
            Transition::SubjectSeen { phase, subject } => {
                let name = self.cap(*phase, subject);
                for result in SUCCESS_FAILURE {
                    match phase {
                        Phase::Build => {
                            let _ = self.builds.get_or_create(&ArtifactLabels {
                                artifact: name.clone(),
                                result,
                            });
                        }
                        Phase::FileSync => {
                            let _ = self.file_syncs.get_or_create(&ImageLabels {
                                image: name.clone(),
                                result,
                            });
                        }
                        _ => {}
                    }
                }
            }
            Transition::Started { .. } => {}
            Transition::Finished(f) => self.finished(f),
            Transition::DeployStreak(n) => {
                self.deploy_streak
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            Transition::BuildStreak { artifact, failures } => {
                let artifact = self.cap(Phase::Build, artifact);
                self.build_streak
                    .get_or_create(&ArtifactLabel { artifact })
                    .set(i64::try_from(*failures).unwrap_or(i64::MAX));
            }
            Transition::PortForwards { count, .. } => {
                self.port_forwards
                    .set(i64::try_from(*count).unwrap_or(i64::MAX));
            }
            Transition::Anomaly(reason) => {
                self.own
                    .invalid
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
        }
    }

    fn finished(&mut self, f: &Finished) {
        let result = f.outcome.as_str();
        let secs = f.duration_seconds();
        let subject = f.subject.as_deref().map(|s| self.cap(f.phase, s));
        match f.phase {
            Phase::Build => {
                let l = ArtifactLabels {
                    artifact: subject.unwrap_or_default(),
                    result,
                };
                self.builds.get_or_create(&l).inc();
                if let Some(s) = secs {
                    self.build_duration.get_or_create(&l).observe(s);
                }
            }
            Phase::Test | Phase::Deploy | Phase::StatusCheck => {
                let (count, hist) = match f.phase {
                    Phase::Test => (&self.tests, &self.test_duration),
                    Phase::Deploy => (&self.deploys, &self.deploy_duration),
                    _ => (&self.status_checks, &self.status_check_duration),
                };
                let l = ResultLabels { result };
                count.get_or_create(&l).inc();
                if let Some(s) = secs {
                    hist.get_or_create(&l).observe(s);
                }
            }
            Phase::Resource => {
                if let Some(s) = secs {
                    let l = ResourceLabels {
                        resource: subject.unwrap_or_default(),
                        result,
                    };
                    self.rollout_duration.get_or_create(&l).observe(s);
                }
            }
            Phase::FileSync => {
                let image = subject.unwrap_or_default();
                let l = ImageLabels {
                    image: image.clone(),
                    result,
                };
                self.file_syncs.get_or_create(&l).inc();
                if let Some(s) = secs {
                    self.file_sync_duration.get_or_create(&l).observe(s);
                }
                if f.outcome == Outcome::Success {
                    self.synced_files
                        .get_or_create(&ImageLabel { image })
                        .inc_by(f.file_count);
                }
            }
            Phase::DevLoop => {
                let kind = f.loop_kind.unwrap_or(LoopKind::Redeploy).as_str();
                let l = LoopLabels { kind, result };
                self.dev_loops.get_or_create(&l).inc();
                if let Some(s) = secs {
                    self.dev_loop_duration.get_or_create(&l).observe(s);
                }
            }
        }
        if f.outcome == Outcome::Failure {
            let code = f
                .error
                .as_ref()
                .and_then(|e| e.code.clone())
                .unwrap_or_else(|| "UNKNOWN".to_owned());
            self.errors
                .get_or_create(&ErrorLabels {
                    phase: f.phase.as_str(),
                    code,
                })
                .inc();
        }
    }
}
