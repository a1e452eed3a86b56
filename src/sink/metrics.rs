//! Every Skaffold metric as the fold sees it ([`Metrics`]): the Prometheus registry
//! and, when OTLP is on, the OTLP push, both fed by the one [`Mapping`], plus the
//! exporter's own metrics.

use prometheus_client::registry::Registry;

use super::contract::{Exemplar, Instrument, Labels, Recorder};
use super::mapping::Mapping;
use super::prometheus::PromRecorder;
use super::self_metrics::SelfMetrics;
use crate::core::Transition;

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
    use crate::core::{Finished, Outcome, Phase};
    use crate::sink::DEFAULT_BUCKETS;

    /// A successful `phase` of `subject`, from `start` to `end` ns after
    /// 2023-11-14T22:13:20Z.
    fn success(phase: Phase, subject: &str, start: i64, end: i64) -> Finished {
        const T0: i64 = 1_700_000_000_000_000_000;
        Finished {
            phase,
            subject: Some(subject.into()),
            outcome: Outcome::Success,
            started_at: Some(T0 + start),
            finished_at: T0 + end,
            error: None,
            file_count: 0,
            iteration: Some(0),
            loop_kind: None,
        }
    }

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
                file_count: 2,
                iteration: Some(i as i64 + 1),
                ..success(Phase::FileSync, image, 0, 500_000_000)
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
            m.observe(&Transition::Finished(success(
                Phase::Resource,
                resource,
                0,
                2_000_000_000,
            )));
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
        let f = success(Phase::Build, "web", 20_000_000, 1_225_000_000);
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
