//! The OTLP metrics push: a second [`Recorder`] of the updates `sink::prometheus`'s
//! [`Mapping`](super::prometheus::Mapping) decides on, so `/metrics` and OTLP carry
//! the same metrics, with the same names after Prometheus' OTLP translation
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
//! - exports wait for the catch-up [`Gate`] (`crate::catch_up`): a partially folded
//!   replay is never pushed. A run that ended before the exporter started is not sent
//!   again (the exporter running then sent it); one that ended after sends its last
//!   values, retrying for [`RUN_END_RETRY`].
//!
//! `/metrics` keeps one set of counters per process, as a scrape target names its
//! series itself. The failure-streak gauges go on across runs on both.
//!
//! One difference: when Skaffold's version changes, `/metrics` drops the old
//! `skaffold_info` series while OTLP reports it as 0 (OTel gauges cannot be deleted).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::otlp::{Driver, OtlpStats, SignalLabel};
use super::prometheus::{
    EventLabel, Exemplar, Instrument, Kind, LabelLabel, Labels, LogEventLabel, Mapping,
    ReasonLabel, Recorder, SPECS, SelfMetrics,
};
use crate::catch_up::Gate;
use crate::core::{LogKind, Nanos};

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

/// The exporter's own counters, by (OTLP instrument name, label value; "" when the
/// instrument has no label).
type Counts = HashMap<(&'static str, &'static str), u64>;

/// The labelled self-metric counters: instrument, label key, label values.
const LABELLED: [(&str, &str); 4] = [
    ("skaffold_exporter.events", "event"),
    ("skaffold_exporter.invalid_events", "reason"),
    ("skaffold_exporter.label_values_folded", "label"),
    ("skaffold_exporter.log_events_skipped", "event"),
];

/// Reads every self-metric counter that exists (as `/metrics` shows it).
fn read_counts(own: &SelfMetrics, stats: &OtlpStats) -> Counts {
    let mut c = Counts::new();
    c.insert(("skaffold_exporter.reconnects", ""), own.reconnects.get());
    c.insert(
        ("skaffold_exporter.replayed_events_skipped", ""),
        own.replayed_skipped.get(),
    );
    c.insert(("skaffold_exporter.fold_stalls", ""), own.fold_stalls.get());
    c.insert(
        ("skaffold_exporter.spans_exported", ""),
        stats.spans_exported.get(),
    );
    c.insert(
        ("skaffold_exporter.spans_dropped", ""),
        stats.spans_dropped.get(),
    );
    for signal in ["traces", "metrics"] {
        let n = stats
            .export_errors
            .get_or_create(&SignalLabel { signal })
            .get();
        c.insert(("skaffold_exporter.otlp_export_errors", signal), n);
    }
    // The labelled families: their label values are bounded, known sets, so each
    // existing series is read with `Family::get`.
    for event in crate::core::event::EVENT_NAMES {
        if let Some(n) = own.events.get(&EventLabel { event }) {
            c.insert(("skaffold_exporter.events", event), n.get());
        }
    }
    for reason in crate::core::event::INVALID_REASONS {
        if let Some(n) = own.invalid.get(&ReasonLabel { reason }) {
            c.insert(("skaffold_exporter.invalid_events", reason), n.get());
        }
    }
    for label in ["artifact", "image", "resource"] {
        if let Some(n) = own.label_values_folded.get(&LabelLabel { label }) {
            c.insert(("skaffold_exporter.label_values_folded", label), n.get());
        }
    }
    for kind in [LogKind::Skaffold, LogKind::Application] {
        let event = kind.as_str();
        if let Some(n) = own.log_events_skipped.get(&LogEventLabel { event }) {
            c.insert(("skaffold_exporter.log_events_skipped", event), n.get());
        }
    }
    c
}

/// The exporter's own counters as one run's series show them: what happened from
/// the run's start to its end (frozen then), so the runs' series add up to the
/// process's counts and no event is counted in two of them.
#[derive(Debug, Clone)]
pub struct SelfWindow(Arc<Mutex<WindowState>>);

#[derive(Debug)]
struct WindowState {
    own: SelfMetrics,
    stats: OtlpStats,
    start: Counts,
    end: Option<Counts>,
}

/// `c` without the MetaEvent being folded: the fold counts an event
/// (`skaffold_exporter_events_total`) before it applies it, so when a run starts its
/// MetaEvent is already counted, and it belongs to the new run.
fn before_meta(mut c: Counts) -> Counts {
    if let Some(n) = c.get_mut(&("skaffold_exporter.events", "meta")) {
        *n = n.saturating_sub(1);
    }
    c
}

impl SelfWindow {
    /// A window opening now; `at_run_start`: while the fold handles the run's
    /// MetaEvent.
    pub fn open(own: &SelfMetrics, stats: &OtlpStats, at_run_start: bool) -> Self {
        let mut start = read_counts(own, stats);
        if at_run_start {
            start = before_meta(start);
        }
        SelfWindow(Arc::new(Mutex::new(WindowState {
            own: own.clone(),
            stats: stats.clone(),
            start,
            end: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the window when the next run starts (while the fold handles its
    /// MetaEvent): later reads give the counts of now.
    pub fn close(&self) {
        let mut st = self.lock();
        if st.end.is_none() {
            st.end = Some(before_meta(read_counts(&st.own, &st.stats)));
        }
    }

    /// Every counter that exists, as counted inside the window.
    pub fn counts(&self) -> Counts {
        let st = self.lock();
        let now = match &st.end {
            Some(end) => end.clone(),
            None => read_counts(&st.own, &st.stats),
        };
        now.into_iter()
            .map(|(key, n)| {
                let before = st.start.get(&key).copied().unwrap_or(0);
                (key, n.saturating_sub(before))
            })
            .collect()
    }
}

/// Mirrors the exporter's own metrics as observable instruments: the gauges as
/// `/metrics` shows them, the counters as counted inside `window` (one run).
pub fn mirror_self_metrics(meter: &Meter, own: &SelfMetrics, window: &SelfWindow) {
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
    let plain: [(&'static str, &'static str); 5] = [
        (
            "skaffold_exporter.reconnects",
            "Re-subscriptions to Skaffold's event stream after the first one",
        ),
        (
            "skaffold_exporter.replayed_events_skipped",
            "Events Skaffold replayed after a reconnect that were already counted",
        ),
        (
            "skaffold_exporter.fold_stalls",
            "Times the fold took nothing from its full queue for more than 5 s (the reader waited; nothing was lost)",
        ),
        (
            "skaffold_exporter.spans_exported",
            "Spans the OTLP exporter handed to the collector",
        ),
        (
            "skaffold_exporter.spans_dropped",
            "Spans dropped because the OTLP export queue was full (collector slow or down)",
        ),
    ];
    for (name, help) in plain {
        let w = window.clone();
        let _ = meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |obs| {
                obs.observe(w.counts().get(&(name, "")).copied().unwrap_or(0), &[]);
            })
            .build();
    }
    let w = window.clone();
    let _ = meter
        .u64_observable_counter("skaffold_exporter.otlp_export_errors")
        .with_description("OTLP export requests that failed, by signal (traces, metrics)")
        .with_callback(move |obs| {
            let c = w.counts();
            for signal in ["traces", "metrics"] {
                let n = c
                    .get(&("skaffold_exporter.otlp_export_errors", signal))
                    .copied()
                    .unwrap_or(0);
                obs.observe(n, &[KeyValue::new("signal", signal)]);
            }
        })
        .build();
    let helps = [
        "Skaffold events folded into metrics, by event type",
        "Events that could not be interpreted, by reason",
        "Label values folded into 'other' by the --max-label-values cap, by label",
        "Skaffold's own log lines and the application's log lines (API v2) skipped without decoding, by event",
    ];
    for ((name, key), help) in LABELLED.into_iter().zip(helps) {
        let w = window.clone();
        let _ = meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |obs| {
                for ((n, value), count) in w.counts() {
                    if n == name {
                        obs.observe(count, &[KeyValue::new(key, value)]);
                    }
                }
            })
            .build();
    }
    let o = own.clone();
    let _ = meter
        .f64_observable_gauge("skaffold_exporter.last_event_timestamp")
        .with_description("Skaffold's timestamp of the newest event folded (Unix seconds)")
        .with_unit("s")
        .with_callback(move |obs| obs.observe(o.last_event_timestamp.get(), &[]))
        .build();
}

/// The OTLP metric exporter of the whole process: drives it where it can run (see
/// [`Driver`]) and counts failed exports. Every run's provider exports through it.
#[derive(Debug)]
pub struct CountingExporter {
    inner: opentelemetry_otlp::MetricExporter,
    driver: Driver,
    stats: OtlpStats,
}

impl CountingExporter {
    /// Wraps `inner`.
    pub fn new(
        inner: opentelemetry_otlp::MetricExporter,
        driver: Driver,
        stats: OtlpStats,
    ) -> Self {
        Self {
            inner,
            driver,
            stats,
        }
    }

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
}

/// What a run's provider may export: the current run only what was collected after
/// the catch-up gate opened (a partial fold would read as a counter reset)...
const LIVE: u8 = 0;
/// ... a run that ended after the exporter started: complete, all of it...
const ENDED: u8 = 1;
/// ... and nothing once the run is done, or when it ended before the exporter
/// started (history: the exporter running then sent it).
const SILENT: u8 = 2;

/// How long a run that ended keeps trying to send its last values.
pub const RUN_END_RETRY: Duration = Duration::from_secs(60);

/// One run's exporter: the shared [`CountingExporter`] behind the run's mode.
#[derive(Debug)]
struct RunExporter {
    shared: Arc<CountingExporter>,
    gate: Gate,
    mode: Arc<AtomicU8>,
}

/// When the SDK began to collect `metrics`: the earliest of its metrics' times (the
/// SDK takes an instrument's time before it reads its values).
fn collected_at(metrics: &ResourceMetrics) -> Option<SystemTime> {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics as A, MetricData as D};
    fn time<T>(d: &D<T>) -> SystemTime {
        match d {
            D::Gauge(g) => g.time(),
            D::Sum(s) => s.time(),
            D::Histogram(h) => h.time(),
            D::ExponentialHistogram(e) => e.time(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .map(|m| match m.data() {
            A::F64(d) => time(d),
            A::U64(d) => time(d),
            A::I64(d) => time(d),
        })
        .min()
}

impl PushMetricExporter for RunExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        match self.mode.load(Ordering::Acquire) {
            SILENT => return Ok(()),
            LIVE => {
                let complete = self
                    .gate
                    .opened_at()
                    .is_some_and(|open| collected_at(metrics).is_none_or(|t| t >= open));
                if !complete {
                    return Ok(());
                }
            }
            _ => {}
        }
        self.shared.export(metrics).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The shared exporter outlives the run; `MetricsPush::shutdown` ends it.
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Builds the resource of a run's pushes (`None`: metrics before any run).
pub type RunResource = Box<dyn Fn(Option<Nanos>) -> opentelemetry_sdk::Resource + Send + Sync>;

/// The OTLP metrics push: a meter provider, and so a series set with its own
/// `service.instance.id`, per Skaffold run (see [`RunRecorder`]). Cloning shares it:
/// the recorder in the fold starts and ends runs, the owner shuts it down at exit.
#[derive(Clone)]
pub struct MetricsPush(Arc<PushInner>);

struct PushInner {
    /// Taken at shutdown (and dropped there: outside the async runtime, as the
    /// blocking HTTP client needs).
    exporter: Mutex<Option<Arc<CountingExporter>>>,
    interval: Duration,
    resource: RunResource,
    gate: Gate,
    /// When the exporter started (Skaffold's clock, Unix ns): a run that ended
    /// before is history.
    history_before: Nanos,
    own: SelfMetrics,
    stats: OtlpStats,
    state: Mutex<PushState>,
    stopping: Arc<AtomicBool>,
}

#[derive(Default)]
struct PushState {
    current: Option<RunProvider>,
    /// Threads sending the last values of runs that ended.
    ending: Vec<std::thread::JoinHandle<()>>,
}

struct RunProvider {
    provider: SdkMeterProvider,
    mode: Arc<AtomicU8>,
    /// The run's view of the exporter's own counters.
    window: SelfWindow,
}

impl std::fmt::Debug for MetricsPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsPush")
            .field("interval", &self.0.interval)
            .field("gate", &self.0.gate)
            .finish_non_exhaustive()
    }
}

impl MetricsPush {
    /// A push through `exporter` every `interval`, each run's resource from
    /// `resource`, exports held back until `gate` opens, runs that ended before
    /// `history_before` (Unix ns) not sent; mirrors `own` and `stats`.
    pub fn new(
        exporter: CountingExporter,
        interval: Duration,
        resource: RunResource,
        gate: Gate,
        history_before: Nanos,
        own: SelfMetrics,
        stats: OtlpStats,
    ) -> Self {
        MetricsPush(Arc::new(PushInner {
            exporter: Mutex::new(Some(Arc::new(exporter))),
            interval,
            resource,
            gate,
            history_before,
            own,
            stats,
            state: Mutex::new(PushState::default()),
            stopping: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// The recorder that feeds it (histograms with `buckets`).
    pub fn recorder(&self, buckets: &[f64]) -> RunRecorder {
        RunRecorder {
            push: self.clone(),
            buckets: buckets.to_vec(),
            current: None,
            carried: HashMap::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PushState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A provider for `run` and its meter; `None` after shutdown.
    fn provider(&self, run: Option<Nanos>) -> Option<(RunProvider, Meter)> {
        let shared = self
            .0
            .exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let mode = Arc::new(AtomicU8::new(LIVE));
        let reader = PeriodicReader::builder(RunExporter {
            shared,
            gate: self.0.gate.clone(),
            mode: mode.clone(),
        })
        .with_interval(self.0.interval)
        .build();
        let provider = SdkMeterProvider::builder()
            .with_resource((self.0.resource)(run))
            .with_reader(reader)
            .build();
        let m = meter(&provider);
        let window = SelfWindow::open(&self.0.own, &self.0.stats, run.is_some());
        mirror_self_metrics(&m, &self.0.own, &window);
        Some((
            RunProvider {
                provider,
                mode,
                window,
            },
            m,
        ))
    }

    /// Makes `next` the current run; the run before it ended at `ended` (Skaffold's
    /// time).
    fn replace(&self, next: RunProvider, ended: Nanos) {
        let old = self.lock().current.replace(next);
        if let Some(old) = old {
            self.end(old, ended);
        }
    }

    /// Sends the last values of a run that ended at `ended` (unless it ended before
    /// the exporter started), then drops its provider, on a thread of its own.
    fn end(&self, run: RunProvider, ended: Nanos) {
        run.window.close();
        let history = ended < self.0.history_before;
        run.mode
            .store(if history { SILENT } else { ENDED }, Ordering::Release);
        let stopping = self.0.stopping.clone();
        let spawned = std::thread::Builder::new()
            .name("otlp-run-end".into())
            .spawn(move || {
                if !history && !flush_until_sent(&run.provider, &stopping) {
                    tracing::warn!(
                        "The last OTLP metrics of a Skaffold run could not be sent (skaffold_exporter_otlp_export_errors_total)."
                    );
                }
                run.mode.store(SILENT, Ordering::Release);
                let _ = run.provider.shutdown_with_timeout(Duration::from_secs(1));
            });
        match spawned {
            Ok(h) => {
                let mut st = self.lock();
                st.ending.retain(|h| !h.is_finished());
                st.ending.push(h);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start a thread to end a run's OTLP metrics.")
            }
        }
    }

    /// Final push of the current run (if the gate is open), waits for the runs that
    /// ended to send theirs, then stops; at most `timeout` in all. Call outside the
    /// async runtime (`spawn_blocking`).
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.0.stopping.store(true, Ordering::Release);
        let (current, ending) = {
            let mut st = self.lock();
            (st.current.take(), std::mem::take(&mut st.ending))
        };
        if let Some(run) = current {
            let _ = run.provider.shutdown_with_timeout(timeout);
        }
        for h in ending {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        let exporter = self
            .0
            .exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(e) = exporter {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = e.inner.shutdown_with_timeout(left);
        }
    }
}

/// Flushes `p` until an export succeeds, for at most [`RUN_END_RETRY`] (one last
/// try once `stopping` is set).
fn flush_until_sent(p: &SdkMeterProvider, stopping: &AtomicBool) -> bool {
    let deadline = Instant::now() + RUN_END_RETRY;
    let mut backoff = Duration::from_millis(250);
    loop {
        let last = stopping.load(Ordering::Acquire) || Instant::now() >= deadline;
        if p.force_flush().is_ok() {
            return true;
        }
        if last {
            return false;
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stopping.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The [`Recorder`] of the OTLP push: the updates of each Skaffold run go to that
/// run's own instruments, which start at zero when the run starts.
#[derive(Debug)]
pub struct RunRecorder {
    push: MetricsPush,
    buckets: Vec<f64>,
    current: Option<OtelRecorder>,
    /// The failure streaks, which go on across runs (as on `/metrics`).
    carried: HashMap<(Instrument, Vec<String>), i64>,
}

impl RunRecorder {
    /// Starts the instruments of `run` (`None`: updates before any run).
    fn start(&mut self, run: Option<Nanos>) {
        let Some((provider, meter)) = self.push.provider(run) else {
            self.current = None;
            return;
        };
        let mut r = OtelRecorder::new(&meter, &self.buckets);
        Mapping::precreate(&mut r);
        for ((i, labels), v) in &self.carried {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            r.set(*i, &labels, *v);
        }
        self.current = Some(r);
        self.push.replace(provider, run.unwrap_or(Nanos::MAX));
    }

    /// The current run's instruments, started if an update arrives before any run.
    fn current(&mut self) -> Option<&mut OtelRecorder> {
        if self.current.is_none() {
            self.start(None);
        }
        self.current.as_mut()
    }
}

impl Recorder for RunRecorder {
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64) {
        // Creating a series at zero does not start a run of its own.
        if by == 0 && self.current.is_none() {
            return;
        }
        if let Some(r) = self.current() {
            r.add(i, labels, by);
        }
    }

    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>) {
        if let Some(r) = self.current() {
            r.observe(i, labels, value, ex);
        }
    }

    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64) {
        if matches!(i, Instrument::DeployStreak | Instrument::BuildStreak) {
            let key = (i, labels.iter().map(|l| (*l).to_owned()).collect());
            self.carried.insert(key, value);
        }
        if let Some(r) = &mut self.current {
            r.set(i, labels, value);
        }
    }

    fn clear(&mut self, i: Instrument) {
        if let Some(r) = &mut self.current {
            r.clear(i);
        }
    }

    fn run_started(&mut self, at: Nanos) {
        self.start(Some(at));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(own: &SelfMetrics) {
        own.events
            .get_or_create(&EventLabel { event: "meta" })
            .inc();
    }

    #[test]
    fn each_run_counts_the_exporters_own_counters_from_its_meta_event_to_the_next() {
        let own = SelfMetrics::default();
        let stats = OtlpStats::default();
        let build = || {
            own.events
                .get_or_create(&EventLabel { event: "build" })
                .inc()
        };
        // Run 1: its MetaEvent is counted by the fold just before the run starts.
        meta(&own);
        let run1 = SelfWindow::open(&own, &stats, true);
        build();
        build();
        stats.spans_exported.inc_by(5);
        // Run 2 starts: run 1 ends with the counts of now, without run 2's MetaEvent.
        meta(&own);
        run1.close();
        let run2 = SelfWindow::open(&own, &stats, true);
        build();
        stats.spans_exported.inc_by(3);
        own.reconnects.inc();
        let key = |n, l| (n, l);
        let (a, b) = (run1.counts(), run2.counts());
        assert_eq!(a[&key("skaffold_exporter.events", "meta")], 1);
        assert_eq!(a[&key("skaffold_exporter.events", "build")], 2);
        assert_eq!(a[&key("skaffold_exporter.spans_exported", "")], 5);
        assert_eq!(a[&key("skaffold_exporter.reconnects", "")], 0);
        assert_eq!(b[&key("skaffold_exporter.events", "meta")], 1);
        assert_eq!(b[&key("skaffold_exporter.events", "build")], 1);
        assert_eq!(b[&key("skaffold_exporter.spans_exported", "")], 3);
        assert_eq!(b[&key("skaffold_exporter.reconnects", "")], 1);
        // The runs add up to what /metrics shows for the process.
        let process = read_counts(&own, &stats);
        for (k, n) in &process {
            assert_eq!(a.get(k).unwrap_or(&0) + b.get(k).unwrap_or(&0), *n, "{k:?}");
        }
    }
}
