//! The OTLP export's life: building the span and metric exporters for the
//! configured endpoints (over HTTP with a client that keeps the cause of a
//! transport failure for the logs), starting the span sink and the metrics push
//! ([`Telemetry::start`]), and flushing and stopping them within the shutdown
//! timeout ([`shutdown`]).

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;

use super::super::otlp::{Driver, OtlpStats, SpanSink, error_chain};
use super::super::otlp_metrics::{CountingExporter, MetricsPush};
use super::super::semconv as k;
use super::config::{Endpoint, OtlpSettings, Protocol};
use super::resource::{
    GitInfo, InstanceIds, metric_resource_attributes, resource, resource_attributes,
};
use crate::catch_up::Gate;
use crate::core::Nanos;

// === exporters ===

/// The blocking HTTP client of an OTLP/HTTP exporter, noting in [`OtlpStats`] why a
/// request got no answer (connection refused, timeout, DNS...): opentelemetry-otlp
/// turns every such failure into "network error" and keeps the cause to itself.
#[derive(Debug)]
struct NotingClient {
    inner: reqwest::blocking::Client,
    signal: &'static str,
    stats: OtlpStats,
}

impl NotingClient {
    /// A client for `signal` whose requests give up after `timeout` (what the
    /// exporter would have built itself). The blocking client runs a runtime of its
    /// own: it is built outside the application's.
    fn new(
        signal: &'static str,
        timeout: Duration,
        stats: &OtlpStats,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        use opentelemetry_otlp::ExporterBuildError::InternalFailure;
        let inner = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .join()
        .map_err(|_| InternalFailure("building the HTTP client panicked".into()))?
        .map_err(|e| InternalFailure(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner,
            signal,
            stats: stats.clone(),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for NotingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let res = self.inner.send_bytes(request).await;
        self.stats.note_transport(
            self.signal,
            res.as_ref().err().map(|e| error_chain(e.as_ref())),
        );
        res
    }
}

/// Builds the span exporter for `ep` (call inside the tokio runtime: the gRPC
/// channel is bound to it) and the way to drive it.
pub fn span_exporter(
    ep: &Endpoint,
    timeout: Option<Duration>,
    resource: &Resource,
    stats: &OtlpStats,
) -> Result<(opentelemetry_otlp::SpanExporter, Driver), TelemetryError> {
    use opentelemetry_otlp::WithHttpConfig;
    use opentelemetry_sdk::trace::SpanExporter as _;
    let driver = driver(ep.protocol)?;
    let b = opentelemetry_otlp::SpanExporter::builder();
    let timeout = timeout.unwrap_or(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT);
    let built = match ep.protocol {
        Protocol::Grpc => to_endpoint(b.with_tonic(), ep, timeout).build(),
        Protocol::HttpProtobuf => NotingClient::new("traces", timeout, stats).and_then(|client| {
            to_endpoint(
                b.with_http()
                    .with_http_client(client)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary),
                ep,
                timeout,
            )
            .build()
        }),
    };
    let mut exporter = built.map_err(|error| TelemetryError::SpanExporter {
        url: ep.url.clone(),
        error,
    })?;
    exporter.set_resource(resource);
    Ok((exporter, driver))
}

/// Builds the metric exporter for `ep` (cumulative temporality).
pub fn metric_exporter(
    ep: &Endpoint,
    timeout: Option<Duration>,
    stats: &OtlpStats,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    use opentelemetry_otlp::WithHttpConfig;
    use opentelemetry_sdk::metrics::Temporality;
    let b = opentelemetry_otlp::MetricExporter::builder();
    let timeout = timeout.unwrap_or(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT);
    let built = match ep.protocol {
        Protocol::Grpc => to_endpoint(
            b.with_tonic().with_temporality(Temporality::Cumulative),
            ep,
            timeout,
        )
        .build(),
        Protocol::HttpProtobuf => NotingClient::new("metrics", timeout, stats).and_then(|client| {
            to_endpoint(
                b.with_http()
                    .with_http_client(client)
                    .with_temporality(Temporality::Cumulative)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary),
                ep,
                timeout,
            )
            .build()
        }),
    };
    built.map_err(|error| TelemetryError::MetricExporter {
        url: ep.url.clone(),
        error,
    })
}

/// An exporter builder `b` sending to `ep`, each request given `timeout`.
fn to_endpoint<B: WithExportConfig>(b: B, ep: &Endpoint, timeout: Duration) -> B {
    b.with_endpoint(ep.url.clone()).with_timeout(timeout)
}

/// How an exporter over `protocol` is driven: gRPC through a handle to the
/// application's tokio runtime (call inside it), HTTP by blocking calls.
fn driver(protocol: Protocol) -> Result<Driver, TelemetryError> {
    Ok(match protocol {
        Protocol::Grpc => Driver::Tokio(
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?,
        ),
        Protocol::HttpProtobuf => Driver::Blocking,
    })
}

// === running ===

/// Why the OTLP export could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP/gRPC exporter was asked for outside a tokio runtime.
    #[error("the OTLP/gRPC exporter needs a tokio runtime")]
    NoRuntime,
    /// The span exporter refused its configuration.
    #[error("cannot build the OTLP span exporter for {url}: {error}")]
    SpanExporter {
        /// The traces endpoint.
        url: String,
        /// The exporter's complaint.
        error: opentelemetry_otlp::ExporterBuildError,
    },
    /// The metric exporter refused its configuration.
    #[error("cannot build the OTLP metric exporter for {url}: {error}")]
    MetricExporter {
        /// The metrics endpoint.
        url: String,
        /// The exporter's complaint.
        error: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The OTLP pieces of a running exporter.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Spans, for the pipeline (`Pipeline::set_spans`).
    pub spans: Option<SpanSink>,
    /// The metrics push.
    pub meter_provider: Option<MetricsPush>,
    /// How long shutdown waits for the last exports.
    pub shutdown_timeout: Duration,
}

impl Telemetry {
    /// Starts what `s` asks for (nothing when OTLP is off): registers the OTLP
    /// counters in `registry` and hooks the OTLP metrics recorder into `metrics`.
    /// Call inside the tokio runtime.
    pub fn start(
        s: &OtlpSettings,
        registry: &mut prometheus_client::registry::Registry,
        metrics: &mut super::super::Metrics,
        buckets: &[f64],
    ) -> Result<Self, TelemetryError> {
        use super::super::otlp::{OtlpStats, SpanBuilder, SpanConfig, spawn_exporter};
        if !s.enabled() {
            return Ok(Telemetry {
                shutdown_timeout: s.shutdown_timeout,
                ..Default::default()
            });
        }
        let dir = s.checkout.clone().or_else(|| std::env::current_dir().ok());
        let git = dir.map(|d| GitInfo::read(&d)).unwrap_or_default();
        let ids = InstanceIds::of(s);
        let attrs = resource_attributes(s, &git, &ids.for_run(None));
        if !attrs.contains_key(k::USER_HASH) && !attrs.contains_key(k::USER_NAME) {
            tracing::warn!(
                "No user identity for OTLP: neither $USER nor a process uid; set OTEL_RESOURCE_ATTRIBUTES=user.hash=... or --user-name."
            );
        }
        let res = resource(&attrs);
        // What ended before the exporter started is history: the exporter running
        // then sent it (`replay`, tests: nothing is).
        let history_before = if s.skip_history {
            crate::catch_up::now_nanos()
        } else {
            Nanos::MIN
        };
        let stats = OtlpStats::default().register(registry);
        let spans = match &s.traces {
            Some(ep) => {
                let (exporter, driver) = span_exporter(ep, s.timeout, &res, &stats)?;
                let (tx, thread) = spawn_exporter(exporter, driver, s.span_queue, stats.clone());
                let mut builder = SpanBuilder::new(SpanConfig {
                    pipeline: s.pipeline(&git),
                });
                if s.skip_history {
                    builder = builder.skip_iterations_ended_before(history_before);
                }
                stats.set_endpoint("traces", &ep.url);
                tracing::info!(endpoint = %ep.url, protocol = ep.protocol.as_str(), pipeline = %s.pipeline(&git), "Exporting a trace per dev-loop iteration over OTLP.");
                Some(
                    SpanSink::new(builder, tx, Some(thread), stats.clone())
                        .with_connection(metrics.own.connected.clone()),
                )
            }
            None => None,
        };
        let meter_provider = match &s.metrics {
            Some(ep) => {
                let exporter = metric_exporter(ep, s.metrics_timeout, &stats)?;
                let driver = driver(ep.protocol)?;
                let interval = s.metric_interval.unwrap_or(Duration::from_secs(60));
                let base = metric_resource_attributes(&attrs);
                let run_resource = move |run: Option<Nanos>| {
                    let mut a = base.clone();
                    a.insert(k::SERVICE_INSTANCE_ID.to_owned(), ids.for_run(run));
                    resource(&a)
                };
                let push = MetricsPush::new(
                    CountingExporter::new(exporter, driver, stats.clone()),
                    interval,
                    Box::new(run_resource),
                    s.catch_up.clone().unwrap_or_else(Gate::open),
                    history_before,
                    metrics.own.clone(),
                    stats.clone(),
                );
                metrics.add_recorder(Box::new(push.recorder(buckets)));
                stats.set_endpoint("metrics", &ep.url);
                tracing::info!(endpoint = %ep.url, protocol = ep.protocol.as_str(), interval_s = interval.as_secs_f64(), "Pushing metrics over OTLP, a series set per Skaffold run.");
                Some(push)
            }
            None => None,
        };
        Ok(Telemetry {
            spans,
            meter_provider,
            shutdown_timeout: s.shutdown_timeout,
        })
    }
}

/// Flushes and stops the span export and the metrics push, waiting at most
/// `timeout` in all (a collector that is down cannot hold shutdown up).
pub async fn shutdown(
    spans: Option<SpanSink>,
    meter_provider: Option<MetricsPush>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(mut s) = spans {
        let h = tokio::task::spawn_blocking(move || s.close(timeout));
        let _ = tokio::time::timeout_at(deadline + Duration::from_millis(100), h).await;
    }
    if let Some(p) = meter_provider {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let h = tokio::task::spawn_blocking(move || p.shutdown(left));
        if tokio::time::timeout(left + Duration::from_millis(100), h)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "The final OTLP metrics push did not finish in time."
            );
        }
    }
}
