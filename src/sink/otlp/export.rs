//! The way out: [`SpanSink`] holds the builder and a bounded queue to one export
//! thread (a full queue drops and counts), which batches, retries and counts failures
//! (see the module docs of `sink::otlp`).

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::builder::SpanBuilder;
use crate::sink::contract::{Own, OwnLabel};
use crate::sink::prometheus::register;

/// The `signal` label values of `skaffold_exporter_otlp_export_errors_total`.
pub const SIGNALS: [&str; 2] = ["traces", "metrics"];

/// The exporter's own OTLP counters (registered only when OTLP is on).
#[derive(Clone, Debug, Default)]
pub struct OtlpStats {
    /// Spans handed to the collector.
    pub spans_exported: Counter,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: Counter,
    /// Failed export requests, by signal.
    pub export_errors: Family<OwnLabel, Counter>,
    /// What each signal's failure logs name, by signal.
    notes: Arc<Mutex<HashMap<&'static str, SignalNotes>>>,
}

/// What the failure log of one signal's export names besides the error itself.
#[derive(Debug, Default)]
struct SignalNotes {
    /// Where the signal is exported ([`OtlpStats::set_endpoint`]).
    endpoint: Option<String>,
    /// Why the signal's last HTTP request failed to get an answer, noted by its
    /// client ([`OtlpStats::note_transport`]): the OTLP HTTP exporter says only
    /// "network error". Taken by the failure log it belongs to.
    transport: Option<String>,
}

/// Export failures logged per signal; later ones are only counted.
pub const FAILURES_LOGGED: u64 = 3;

/// The cause of an error and its sources, `: `-joined (`error sending request: connection refused`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl OtlpStats {
    /// Registers the counters (and creates both error series at 0).
    pub fn register(self, r: &mut Registry) -> Self {
        register(r, Own::SpansExported, self.spans_exported.clone());
        register(r, Own::SpansDropped, self.spans_dropped.clone());
        register(r, Own::OtlpExportErrors, self.export_errors.clone());
        for signal in SIGNALS {
            let _ = self
                .export_errors
                .get_or_create(&Own::OtlpExportErrors.label(signal));
        }
        self
    }

    /// Notes where `signal` (`traces`, `metrics`) is exported, for the failure logs.
    pub fn set_endpoint(&self, signal: &'static str, endpoint: &str) {
        self.with_notes(signal, |n| n.endpoint = Some(endpoint.to_owned()));
    }

    /// Notes why `signal`'s last HTTP request got no answer (`None`: it got one), for
    /// the failure log of the export it belonged to.
    pub fn note_transport(&self, signal: &'static str, cause: Option<String>) {
        self.with_notes(signal, |n| n.transport = cause);
    }

    /// Runs `f` on `signal`'s notes, under their lock.
    fn with_notes<T>(&self, signal: &'static str, f: impl FnOnce(&mut SignalNotes) -> T) -> T {
        f(self
            .notes
            .lock()
            .expect("never poisoned")
            .entry(signal)
            .or_default())
    }

    /// Counts a failed export of `signal` and logs the first [`FAILURES_LOGGED`] of
    /// them, naming the endpoint, the cause (with the transport failure its HTTP
    /// client noted: the OTLP HTTP exporter itself says only "network error") and how
    /// long the attempt took (a timeout shows as an attempt as long as
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`); the last of those says that further failures are
    /// only counted.
    pub fn export_failed(&self, signal: &'static str, cause: &str, took: Duration, detail: &str) {
        let (transport, endpoint) =
            self.with_notes(signal, |n| (n.transport.take(), n.endpoint.clone()));
        let cause = match transport {
            Some(t) => format!("{cause}: {t}"),
            None => cause.to_owned(),
        };
        let n = self
            .export_errors
            .get_or_create(&Own::OtlpExportErrors.label(signal));
        n.inc();
        let count = n.get();
        if count > FAILURES_LOGGED {
            return;
        }
        let endpoint = endpoint.unwrap_or_else(|| "the collector".to_owned());
        let more = if count == FAILURES_LOGGED {
            "; further failures are not logged, only counted in skaffold_exporter_otlp_export_errors_total"
        } else {
            " (counted in skaffold_exporter_otlp_export_errors_total)"
        };
        tracing::warn!(
            signal,
            endpoint = %endpoint,
            "OTLP {signal} export to {endpoint} failed after {} ms: {cause}{detail}{more}.",
            took.as_millis()
        );
    }
}

/// How the export thread drives the exporter's futures.
#[derive(Debug, Clone)]
pub enum Driver {
    /// gRPC (tonic): on the application's tokio runtime, through its handle.
    Tokio(tokio::runtime::Handle),
    /// HTTP with the blocking client: outside any runtime.
    Blocking,
}

impl Driver {
    pub(crate) fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Tokio(h) => h.block_on(f),
            Driver::Blocking => futures_executor::block_on(f),
        }
    }
}

/// Largest batch per export request.
pub const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for more before the batch leaves.
pub const BATCH_DELAY: Duration = Duration::from_secs(2);
/// How long a failed batch is retried (with backoff) before it is dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts the export thread; returns the queue's sender and the thread.
pub fn spawn_exporter(
    exporter: opentelemetry_otlp::SpanExporter,
    driver: Driver,
    capacity: usize,
    stats: OtlpStats,
) -> (SyncSender<SpanData>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let handle = std::thread::Builder::new()
        .name("otlp-spans".into())
        .spawn(move || export_loop(exporter, driver, rx, stats))
        .expect("spawning a thread");
    (tx, handle)
}

/// The next batch: waits for a first span, then takes more until the batch is
/// full or [`BATCH_DELAY`] has passed since the first. `None`: the queue is closed
/// and empty. The bool is false once the queue is closed (shutdown: no waiting).
fn next_batch(rx: &Receiver<SpanData>) -> Option<(Vec<SpanData>, bool)> {
    let first = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    };
    let deadline = Instant::now() + BATCH_DELAY;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(s) => batch.push(s),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Some((batch, false)),
        }
    }
    Some((batch, true))
}

fn export_loop(
    mut exporter: opentelemetry_otlp::SpanExporter,
    driver: Driver,
    rx: Receiver<SpanData>,
    stats: OtlpStats,
) {
    // Spans taken off the queue while a failed batch waited for its retry.
    let mut carry: Vec<SpanData> = Vec::new();
    let mut open = true;
    loop {
        let batch = if carry.is_empty() {
            if !open {
                break;
            }
            match next_batch(&rx) {
                Some((b, still_open)) => {
                    open = still_open;
                    b
                }
                None => break,
            }
        } else {
            std::mem::take(&mut carry)
        };
        let n = batch.len() as u64;
        let first_try = Instant::now();
        let mut backoff = BACKOFF_MIN;
        loop {
            let attempt = Instant::now();
            match driver.run(exporter.export(batch.clone())) {
                Ok(()) => {
                    stats.spans_exported.inc_by(n);
                    break;
                }
                Err(e) => {
                    let give_up = !open || first_try.elapsed() + backoff > RETRY_FOR;
                    let detail = if give_up {
                        format!(" ({n} spans dropped)")
                    } else {
                        format!(" ({n} spans; retrying)")
                    };
                    stats.export_failed("traces", &error_chain(&e), attempt.elapsed(), &detail);
                    if give_up {
                        // Shutting down, or the collector refused them for too long.
                        stats.spans_dropped.inc_by(n);
                        break;
                    }
                    // Wait for the retry; notice a shutdown (the queue closing)
                    // meanwhile. Spans arriving now join the next batch, at most
                    // one batch of them: the rest stay in the bounded queue.
                    let until = Instant::now() + backoff;
                    while open && Instant::now() < until {
                        if carry.len() >= MAX_BATCH {
                            std::thread::sleep(until.saturating_duration_since(Instant::now()));
                            break;
                        }
                        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                            Ok(s) => carry.push(s),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => open = false,
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
    let _ = exporter.shutdown_with_timeout(Duration::from_secs(1));
    let _ = &mut exporter;
}

/// The span pipeline as the fold sees it: a builder plus a non-blocking queue.
#[derive(Debug)]
pub struct SpanSink {
    /// The pure builder.
    pub builder: SpanBuilder,
    tx: Option<SyncSender<SpanData>>,
    stats: OtlpStats,
    thread: Option<std::thread::JoinHandle<()>>,
    told_skipped: bool,
    skaffold_connected: Option<prometheus_client::metrics::gauge::Gauge>,
    /// Since when the stream has been down (sampled at every `ship`), after it
    /// was up.
    stream_down_since: Option<Instant>,
    stream_was_up: bool,
}

/// How long Skaffold's stream must have been down, before the exporter stops, for
/// Skaffold to count as gone (a shutdown of our own takes the stream down too,
/// just before the spans are closed).
pub const SKAFFOLD_GONE_AFTER: Duration = Duration::from_secs(2);

impl SpanSink {
    /// A sink exporting through `tx` (see [`spawn_exporter`]).
    pub fn new(
        builder: SpanBuilder,
        tx: SyncSender<SpanData>,
        thread: Option<std::thread::JoinHandle<()>>,
        stats: OtlpStats,
    ) -> Self {
        Self {
            builder,
            tx: Some(tx),
            stats,
            thread,
            told_skipped: false,
            skaffold_connected: None,
            stream_down_since: None,
            stream_was_up: false,
        }
    }

    /// Lets [`Self::close`] see whether Skaffold is still streaming
    /// (`skaffold_exporter_connected`).
    pub fn with_connection(mut self, connected: prometheus_client::metrics::gauge::Gauge) -> Self {
        self.skaffold_connected = Some(connected);
        self
    }

    /// Moves finished spans to the export queue; never blocks.
    pub fn ship(&mut self) {
        if let Some(g) = &self.skaffold_connected {
            if g.get() == 1 {
                self.stream_was_up = true;
                self.stream_down_since = None;
            } else if self.stream_was_up && self.stream_down_since.is_none() {
                self.stream_down_since = Some(Instant::now());
            }
        }
        let Some(tx) = &self.tx else {
            return;
        };
        let skipped = self.builder.skipped_iterations();
        if skipped > 0 && !self.told_skipped {
            self.told_skipped = true;
            tracing::info!(
                "Skaffold replayed iterations that ended before this exporter started; they are not exported again (the exporter running then sent them)."
            );
        }
        for span in self.builder.take_ready() {
            match tx.try_send(span) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.stats.spans_dropped.inc();
                }
            }
        }
    }

    /// Ships what is finished, closes the queue and waits up to `timeout` for the
    /// export thread to send it. While Skaffold is still streaming, spans still open
    /// are not exported: a restarted exporter rebuilds them, with the same ids, from
    /// the replay. When Skaffold is gone already (its stream has been down for
    /// [`SKAFFOLD_GONE_AFTER`]: a CI job's `skaffold run` exited and the sidecar is
    /// stopped after it), nothing would rebuild them: they end as at a disconnect and
    /// leave now.
    pub fn close(&mut self, timeout: Duration) -> bool {
        let gone = self
            .skaffold_connected
            .as_ref()
            .is_some_and(|g| g.get() == 0)
            && self
                .stream_down_since
                .is_some_and(|t| t.elapsed() >= SKAFFOLD_GONE_AFTER);
        if gone {
            self.builder.disconnected();
        }
        self.builder.flush();
        self.ship();
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "OTLP span export did not finish in time; giving up on the rest."
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
        true
    }
}
