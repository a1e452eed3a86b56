//! Wiring: reader task → bounded queue → fold task → metrics; HTTP and gRPC servers
//! at the edge. `start` returns once every listener is bound, so callers (main, demo,
//! tests) know the real addresses.
//!
//! The reader receives, fingerprints, decodes and orders messages; the fold
//! de-duplicates and folds them, taking them from the queue in batches. The two run
//! as separate tasks, so on two cores they work in parallel. The queue carries the
//! connection's state too (see `source::Delivery`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{Settings, SourceSettings};
use crate::pipeline::{Built, Pipeline, Progress};
use crate::server::grpc::Passthrough;
use crate::server::http::{self, Shared};
use crate::sink::otlp_setup::{OtlpSettings, Sidecar, SlotClaim, Telemetry, host_name};
use crate::skaffold::Upstream;
use crate::source::Origin;
use crate::source::supervisor::{Batch, Retry};

/// Resolves on ctrl-c or SIGTERM (kept here for `main`).
pub use crate::signal::{Signal, exit_on_second_signal, shutdown_signal};

/// Most batches the fold takes from the queue at once.
pub const FOLD_BATCH: usize = 8;

/// How long shutdown may take in all, from the signal to the exit: the reader stops,
/// the fold drains its queue, the last OTLP exports and open HTTP requests get what is
/// left (docs/configuration.md: at most 5 s).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

/// What the final OTLP flush leaves of the budget, for the tasks to end.
const FLUSH_MARGIN: Duration = Duration::from_millis(300);

/// A running exporter.
#[derive(Debug)]
pub struct Running {
    /// Where `/metrics` is served.
    pub http_addr: SocketAddr,
    /// Where the gRPC passthrough is served, if enabled.
    pub grpc_addr: Option<SocketAddr>,
    /// Reader progress (readiness).
    pub progress: Arc<Progress>,
    shutdown: watch::Sender<bool>,
    /// When shutdown must be over (set when it starts; the OTLP flush reads it).
    deadline: Arc<OnceLock<Instant>>,
    tasks: Vec<JoinHandle<()>>,
    /// Released when the exporter is shut down (see `SlotClaim`).
    _slot: Option<SlotClaim>,
}

impl Running {
    /// Stops reading, lets the fold drain, flushes OTLP and closes the servers
    /// gracefully, all within [`SHUTDOWN_BUDGET`].
    pub async fn shutdown(self) {
        self.shutdown_within(SHUTDOWN_BUDGET).await;
    }

    /// As [`Running::shutdown`], within `budget`: tasks still running then are aborted.
    pub async fn shutdown_within(self, budget: Duration) {
        let deadline = Instant::now() + budget;
        let _ = self.deadline.set(deadline);
        let _ = self.shutdown.send(true);
        let mut late = 0;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                late += 1;
            }
        }
        if late > 0 {
            tracing::warn!(
                tasks = late,
                budget_ms = budget.as_millis() as u64,
                "Shutdown ran out of time; stopped what was still running."
            );
        }
    }
}

/// Binds the listeners and starts every task, reading events over gRPC from
/// `settings.skaffold_addr` with `--api auto`.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    start_with(settings, SourceSettings::default()).await
}

/// Binds the listeners and starts every task, reading events as `source` says.
pub async fn start_with(settings: Settings, source: SourceSettings) -> anyhow::Result<Running> {
    start_all(settings, source, OtlpSettings::default()).await
}

/// Binds the listeners and starts every task, with traces and the OTLP metrics push
/// as `otlp` says (off by default).
pub async fn start_all(
    settings: Settings,
    source: SourceSettings,
    mut otlp: OtlpSettings,
) -> anyhow::Result<Running> {
    let http_listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", settings.listen))?;
    let http_addr = http_listener.local_addr()?;
    let target = match &source.skaffold_http {
        Some(base) => base.to_string(),
        None => settings.skaffold_addr.clone(),
    };
    // This exporter's slot among those reading the same Skaffold here: part of
    // `service.instance.id`, held while it runs.
    let mut slot = None;
    if otlp.enabled() && otlp.sidecar.is_none() {
        let claim = SlotClaim::take(&host_name(), &target);
        otlp.sidecar = Some(Sidecar::here(target, claim.slot()));
        slot = Some(claim);
    }
    // The metrics push waits until the fold has taken in Skaffold's replay.
    let progress = Arc::new(Progress::default());
    otlp.catch_up = Some(progress.history_folded.clone());

    let Built {
        mut pipeline,
        registry,
        telemetry,
    } = Pipeline::builder()
        .buckets(&settings.buckets)
        .max_label_values(settings.max_label_values)
        .process_metrics()
        .otlp(&otlp)
        .progress(progress.clone())
        .observer(Box::new(crate::sink::loop_log::LoopLog::default()))
        .build()?;
    let own = pipeline.metrics.own.clone();
    let registry = Arc::new(registry);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut upstream = Upstream::new(&settings.skaffold_addr, settings.upstream_timeout)
        .with_context(|| format!("invalid Skaffold address {:?}", settings.skaffold_addr))?;
    if let Some(base) = source.skaffold_http.clone() {
        upstream = upstream.with_gateway(base);
    }
    let grpc_listener = match settings.grpc_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--grpc-listen)"))?,
        ),
        None => None,
    };
    let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr()).transpose()?;

    let batches = crate::source::supervisor::queue_batches(settings.queue_capacity);
    let (tx, mut rx) = mpsc::channel::<Batch>(batches);
    // Folded batches go back to the reader, to be freed on its thread (up to this
    // channel's capacity: beyond, the fold frees them itself). A returned batch keeps
    // its share of the queue's byte budget until the reader frees it (at its next
    // flush, or while it waits for that budget).
    let (recycle, recycled) = mpsc::channel::<Batch>(2 * FOLD_BATCH);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::catch_up::open_by(
        progress.history_folded.clone(),
        crate::catch_up::BOUND,
        shutdown_rx.clone(),
    )));

    // The event source: Skaffold's HTTP gateway when given, else its gRPC port.
    let origin = match source.skaffold_http.clone() {
        Some(base) => Origin::Gateway(base),
        None => Origin::Grpc(settings.skaffold_addr.clone()),
    };
    let retry = Retry {
        min: settings.backoff.0,
        max: settings.backoff.1,
    };
    tasks.push(tokio::spawn(crate::source::run(
        origin,
        source.api,
        retry,
        crate::source::supervisor::Queue {
            tx,
            recycled: Some(recycled),
        },
        own,
        shutdown_rx.clone(),
    )));

    let deadline = Arc::new(OnceLock::new());
    let flush_deadline = deadline.clone();
    tasks.push(tokio::spawn(async move {
        let Telemetry {
            meter_provider,
            shutdown_timeout,
            ..
        } = telemetry;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(FOLD_BATCH);
        // Ends when the reader drops its sender: everything queued is folded first.
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, FOLD_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for b in batch.drain(..) {
                        pipeline.deliver_batch(&b.deliveries);
                        // A full or closed return queue: dropped here instead.
                        let _ = recycle.try_send(b);
                    }
                }
                // Span housekeeping (finished root spans are released after a grace
                // period for late port forwards).
                _ = tick.tick() => pipeline.tick(),
            }
        }
        pipeline.finish();
        // The last exports get what is left of the shutdown budget, at most their own
        // timeout.
        let flush = flush_deadline
            .get()
            .map_or(shutdown_timeout, |d: &Instant| {
                d.saturating_duration_since(Instant::now())
                    .saturating_sub(FLUSH_MARGIN)
                    .min(shutdown_timeout)
            });
        crate::sink::otlp_setup::shutdown(pipeline.take_spans(), meter_provider, flush).await;
    }));

    let shared = Arc::new(Shared {
        registry,
        progress: progress.clone(),
        upstream: Some(upstream.clone()),
        wait_for_history: true,
    });
    tasks.push(tokio::spawn(http::serve(
        http_listener,
        shared,
        shutdown_rx.clone(),
    )));

    if let Some(listener) = grpc_listener {
        let svc = Passthrough::new(upstream, settings.allow_control);
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "The gRPC passthrough server failed.");
            }
        }));
    }

    match grpc_addr {
        Some(grpc) => {
            tracing::info!(%http_addr, %grpc, skaffold = %settings.skaffold_addr, "skaffold-exporter is serving /metrics on http://{http_addr} and the gRPC passthrough on {grpc}.")
        }
        None => {
            tracing::info!(%http_addr, skaffold = %settings.skaffold_addr, "skaffold-exporter is serving /metrics on http://{http_addr}.")
        }
    }
    Ok(Running {
        http_addr,
        grpc_addr,
        progress,
        shutdown,
        deadline,
        tasks,
        _slot: slot,
    })
}
