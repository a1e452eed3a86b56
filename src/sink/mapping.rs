//! The one mapping from transitions to observations: [`Mapping::record`] is the only
//! place that decides which instrument of the contract (`sink::contract`) a
//! transition touches and with which labels, and which series exist before anything
//! happened. It writes through the [`Recorder`] trait, so `/metrics` and the OTLP push
//! receive the same updates. It owns the state that needs: the label cardinality caps
//! and the Skaffold versions seen.

use std::borrow::Cow;
use std::collections::HashSet;

use super::contract::{Exemplar, Instrument, Recorder};
use super::labels::{LabelCap, OTHER};
use super::resource::ResourceRef;
use super::self_metrics::SelfMetrics;
use crate::core::{Finished, LoopKind, Outcome, Phase, Transition};

use Instrument as I;

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

    fn cap<'v>(&mut self, phase: Phase, value: &'v str, own: &SelfMetrics) -> Cow<'v, str> {
        let (cap, label, value) = match phase {
            Phase::Build => (&mut self.artifacts, "artifact", value),
            // A sync names the image by its built tag: the label is the image name, so
            // a rebuild does not start a new series (see `sink::image`).
            Phase::FileSync => (&mut self.images, "image", super::image::name(value)),
            _ => (&mut self.resources, "resource", value),
        };
        let (v, folded) = cap.apply(value);
        if folded {
            own.count_folded(label);
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
                    && !self.cache_artifacts_seen.contains(&*artifact)
                {
                    self.cache_artifacts_seen.insert(artifact.to_string());
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
