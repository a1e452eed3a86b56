//! The way out of the OTLP metrics push: [`MetricsPush`] keeps one meter provider
//! (and so one series set) per Skaffold run, each exporting through the process's
//! one [`CountingExporter`] under the run's mode (held back until the catch-up gate
//! opens, complete once the run ended, silent for history), and sends a run's last
//! values when the next one starts.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::metrics::Meter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::meter;
use super::own::{SelfWindow, mirror_self_metrics};
use super::recorder::RunRecorder;
use crate::catch_up::Gate;
use crate::core::Nanos;
use crate::sink::SelfMetrics;
use crate::sink::otlp::{Driver, OtlpStats};

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
                &crate::sink::otlp::error_chain(e),
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

pub(super) struct RunProvider {
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
        RunRecorder::new(self.clone(), buckets)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PushState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A provider for `run` and its meter; `None` after shutdown.
    pub(super) fn provider(&self, run: Option<Nanos>) -> Option<(RunProvider, Meter)> {
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
    pub(super) fn replace(&self, next: RunProvider, ended: Nanos) {
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
