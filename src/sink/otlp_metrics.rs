//! The OTLP metrics push: a second [`Recorder`] of the updates `sink::prometheus`'s
//! [`Mapping`](super::prometheus::Mapping) decides on, so `/metrics` and OTLP carry
//! the same metrics, with the same names after Prometheus' OTLP translation
//! (`skaffold.build.duration` in `s` → `skaffold_build_duration_seconds`,
//! `skaffold.builds` → `skaffold_builds_total`), the same buckets, and cumulative
//! temporality. The exporter's own metrics are mirrored with observable instruments
//! that read the same values `/metrics` shows.
//!
//! One difference: when Skaffold's version changes, `/metrics` drops the old
//! `skaffold_info` series while OTLP reports it as 0 (OTel gauges cannot be deleted).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::otlp::{Driver, OtlpStats, SignalLabel};
use super::prometheus::{
    EventLabel, Exemplar, Instrument, Kind, LabelLabel, Labels, LogEventLabel, ReasonLabel,
    Recorder, SPECS, SelfMetrics,
};
use crate::source::LogKind;

/// OTel instruments for every instrument of the contract.
#[derive(Debug)]
pub struct OtelRecorder {
    counters: HashMap<Instrument, Counter<u64>>,
    histograms: HashMap<Instrument, Histogram<f64>>,
    gauges: HashMap<Instrument, Gauge<i64>>,
    /// Label sets set on each labelled gauge (for `clear`).
    gauge_series: HashMap<Instrument, HashSet<Vec<KeyValue>>>,
}

/// The attributes of an update; an empty value leaves its attribute out, as on
/// `/metrics`.
fn attrs(i: Instrument, labels: Labels<'_>) -> Vec<KeyValue> {
    SPECS[i as usize]
        .labels
        .iter()
        .zip(labels)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| KeyValue::new(*k, (*v).to_owned()))
        .collect()
}

impl OtelRecorder {
    /// Creates the instruments on `meter`, histograms with `buckets`.
    pub fn new(meter: &Meter, buckets: &[f64]) -> Self {
        let mut r = OtelRecorder {
            counters: HashMap::new(),
            histograms: HashMap::new(),
            gauges: HashMap::new(),
            gauge_series: HashMap::new(),
        };
        for s in SPECS {
            match s.kind {
                Kind::Counter => {
                    let c = meter
                        .u64_counter(s.otel_name)
                        .with_description(s.help)
                        .with_unit(s.otel_unit)
                        .build();
                    r.counters.insert(s.instrument, c);
                }
                Kind::Histogram => {
                    let h = meter
                        .f64_histogram(s.otel_name)
                        .with_description(s.help)
                        .with_unit(s.otel_unit)
                        .with_boundaries(buckets.to_vec())
                        .build();
                    r.histograms.insert(s.instrument, h);
                }
                Kind::Gauge | Kind::PlainGauge => {
                    let g = meter
                        .i64_gauge(s.otel_name)
                        .with_description(s.help)
                        .with_unit(s.otel_unit)
                        .build();
                    r.gauges.insert(s.instrument, g);
                }
            }
        }
        r
    }
}

impl Recorder for OtelRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        if let Some(c) = self.counters.get(&i) {
            c.add(by, &attrs(i, labels));
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, _ex: Option<&Exemplar>) {
        if let Some(h) = self.histograms.get(&i) {
            h.record(value, &attrs(i, labels));
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if let Some(g) = self.gauges.get(&i) {
            let a = attrs(i, labels);
            g.record(value, &a);
            if !a.is_empty() {
                let series = self.gauge_series.entry(i).or_default();
                if series.len() < 10_000 {
                    series.insert(a);
                }
            }
        }
    }

    fn clear(&mut self, i: Instrument) {
        if let (Some(g), Some(series)) = (self.gauges.get(&i), self.gauge_series.get_mut(&i)) {
            for a in series.drain() {
                g.record(0, &a);
            }
        }
    }
}

/// Mirrors the exporter's own metrics (and the OTLP counters) as observable
/// instruments reading the same values `/metrics` shows.
pub fn mirror_self_metrics(meter: &Meter, own: &SelfMetrics, stats: &OtlpStats) {
    let o = own.clone();
    let _ = meter
        .i64_observable_gauge("skaffold_exporter.connected")
        .with_description("1 while the exporter is subscribed to Skaffold's event stream, else 0")
        .with_callback(move |obs| obs.observe(o.connected.get(), &[]))
        .build();
    let o = own.clone();
    let _ = meter
        .i64_observable_gauge("skaffold_exporter.fold_stalled")
        .with_description("1 while the fold has taken nothing from its full queue for more than 5 s (the reader waits; nothing is lost), else 0")
        .with_callback(move |obs| obs.observe(o.fold_stalled.get(), &[]))
        .build();
    let counters: [(
        &'static str,
        &'static str,
        prometheus_client::metrics::counter::Counter,
    ); 5] = [
        (
            "skaffold_exporter.reconnects",
            "Re-subscriptions to Skaffold's event stream after the first one",
            own.reconnects.clone(),
        ),
        (
            "skaffold_exporter.replayed_events_skipped",
            "Events Skaffold replayed after a reconnect that were already counted",
            own.replayed_skipped.clone(),
        ),
        (
            "skaffold_exporter.fold_stalls",
            "Times the fold took nothing from its full queue for more than 5 s (the reader waited; nothing was lost)",
            own.fold_stalls.clone(),
        ),
        (
            "skaffold_exporter.spans_exported",
            "Spans the OTLP exporter handed to the collector",
            stats.spans_exported.clone(),
        ),
        (
            "skaffold_exporter.spans_dropped",
            "Spans dropped because the OTLP export queue was full (collector slow or down)",
            stats.spans_dropped.clone(),
        ),
    ];
    for (name, help, c) in counters {
        let _ = meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |obs| obs.observe(c.get(), &[]))
            .build();
    }
    let errors = stats.export_errors.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.otlp_export_errors")
        .with_description("OTLP export requests that failed, by signal (traces, metrics)")
        .with_callback(move |obs| {
            for signal in ["traces", "metrics"] {
                let n = errors.get_or_create(&SignalLabel { signal }).get();
                obs.observe(n, &[KeyValue::new("signal", signal)]);
            }
        })
        .build();
    // The labelled families: their label values are bounded, known sets, so each
    // existing series is read with `Family::get`.
    let o = own.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.events")
        .with_description("Skaffold events folded into metrics, by event type")
        .with_callback(move |obs| {
            for event in crate::core::event::EVENT_NAMES {
                if let Some(c) = o.events.get(&EventLabel { event }) {
                    obs.observe(c.get(), &[KeyValue::new("event", event)]);
                }
            }
        })
        .build();
    let o = own.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.invalid_events")
        .with_description("Events that could not be interpreted, by reason")
        .with_callback(move |obs| {
            for reason in crate::core::event::INVALID_REASONS {
                if let Some(c) = o.invalid.get(&ReasonLabel { reason }) {
                    obs.observe(c.get(), &[KeyValue::new("reason", reason)]);
                }
            }
        })
        .build();
    let o = own.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.label_values_folded")
        .with_description(
            "Label values folded into 'other' by the --max-label-values cap, by label",
        )
        .with_callback(move |obs| {
            for label in ["artifact", "image", "resource"] {
                if let Some(c) = o.label_values_folded.get(&LabelLabel { label }) {
                    obs.observe(c.get(), &[KeyValue::new("label", label)]);
                }
            }
        })
        .build();
    let o = own.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.log_events_skipped")
        .with_description(
            "Skaffold's own log lines and the application's log lines (API v2) skipped without decoding, by event",
        )
        .with_callback(move |obs| {
            for kind in [LogKind::Skaffold, LogKind::Application] {
                let event = kind.as_str();
                if let Some(c) = o.log_events_skipped.get(&LogEventLabel { event }) {
                    obs.observe(c.get(), &[KeyValue::new("event", event)]);
                }
            }
        })
        .build();
    let o = own.clone();
    let _ = meter
        .f64_observable_gauge("skaffold_exporter.last_event_timestamp")
        .with_description("Skaffold's timestamp of the newest event folded (Unix seconds)")
        .with_unit("s")
        .with_callback(move |obs| obs.observe(o.last_event_timestamp.get(), &[]))
        .build();
}

/// Wraps the OTLP metric exporter: drives it where it can run (see
/// [`Driver`]) and counts failed exports.
#[derive(Debug)]
pub struct CountingExporter {
    inner: opentelemetry_otlp::MetricExporter,
    driver: Driver,
    stats: OtlpStats,
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        // The reader's thread already runs this future on its own executor: the
        // blocking HTTP client can simply be awaited; tonic needs the tokio runtime.
        let attempt = std::time::Instant::now();
        let res = match &self.driver {
            Driver::Tokio(h) => h.block_on(self.inner.export(metrics)),
            Driver::Blocking => self.inner.export(metrics).await,
        };
        if let Err(e) = &res {
            self.stats.export_failed(
                "metrics",
                &super::otlp::error_chain(e),
                attempt.elapsed(),
                "",
            );
        }
        res
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// A meter provider pushing through `exporter` every `interval`.
pub fn provider(
    exporter: opentelemetry_otlp::MetricExporter,
    driver: Driver,
    stats: OtlpStats,
    interval: Duration,
    resource: opentelemetry_sdk::Resource,
) -> SdkMeterProvider {
    let reader = PeriodicReader::builder(CountingExporter {
        inner: exporter,
        driver,
        stats,
    })
    .with_interval(interval)
    .build();
    SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build()
}

/// The meter all instruments live on.
pub fn meter(p: &SdkMeterProvider) -> Meter {
    p.meter_with_scope(
        opentelemetry::InstrumentationScope::builder("skaffold-exporter")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(super::semconv::SCHEMA_URL)
            .build(),
    )
}
