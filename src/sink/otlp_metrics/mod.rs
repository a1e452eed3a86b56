//! The OTLP metrics push: a second [`Recorder`](super::contract::Recorder) of the
//! updates [`Mapping`](super::mapping::Mapping) decides on, with instruments built
//! from the same contract (`sink::contract`), so `/metrics` and OTLP carry the same
//! metrics, with the same names after Prometheus' OTLP translation
//! (`skaffold.build.duration` in `s` → `skaffold_build_duration_seconds`,
//! `skaffold.builds` → `skaffold_builds_total`), the same buckets, and cumulative
//! temporality. The exporter's own metrics are mirrored with observable instruments
//! that read the same values `/metrics` shows.
//!
//! **One series set per Skaffold run.** Each run gets its own meter provider, whose
//! resource names the sidecar *and* the run in `service.instance.id`
//! (`otlp_setup::Sidecar`), and whose counters start at zero when the run starts:
//!
//! - a restarted exporter re-folds the run from Skaffold's replay and continues the
//!   run's series with values that only grow: no counter reset, every event counted
//!   once by `increase()` and the dashboards;
//! - a new run (a new Skaffold process, a config reload, the next CI job on the same
//!   runner) is a new series that counts from zero, never a continuation of an old
//!   one with a misleading value;
//! - exports wait for the catch-up [`Gate`](crate::catch_up::Gate): a partially folded
//!   replay is never pushed. A run that ended before the exporter started is not sent
//!   again (the exporter running then sent it); one that ended after sends its last
//!   values, retrying for [`RUN_END_RETRY`].
//!
//! `/metrics` keeps one set of counters per process, as a scrape target names its
//! series itself. The failure-streak gauges go on across runs on both.
//!
//! One difference: when Skaffold's version changes, `/metrics` drops the old
//! `skaffold_info` series while OTLP reports it as 0 (OTel gauges cannot be deleted).
//!
//! `recorder` holds the instruments a run's updates go to, `own` the exporter's own
//! metrics as each run shows them, `push` the per-run meter providers and the
//! exporter they share.

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

mod own;
mod push;
mod recorder;

pub use own::{SelfWindow, mirror_self_metrics};
pub use push::{CountingExporter, MetricsPush, RUN_END_RETRY, RunResource};
pub use recorder::{OtelRecorder, RunRecorder};

/// The meter all instruments live on.
pub fn meter(p: &SdkMeterProvider) -> Meter {
    p.meter_with_scope(
        opentelemetry::InstrumentationScope::builder("skaffold-exporter")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(super::semconv::SCHEMA_URL)
            .build(),
    )
}
