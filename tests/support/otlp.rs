//! Test helpers for traces and the OTLP push: an in-process OTLP collector (gRPC via
//! the opentelemetry-proto tonic services, and HTTP/protobuf via a tiny hyper server),
//! a stable text rendering of span trees.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// What the collector received.
#[derive(Debug, Default)]
pub struct Received {
    /// Trace export requests, in arrival order.
    pub traces: Vec<ExportTraceServiceRequest>,
    /// Metric export requests, in arrival order.
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Content-Type of HTTP requests.
    pub content_types: Vec<String>,
}

/// An in-process OTLP collector.
#[derive(Debug, Clone)]
pub struct Collector {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub received: Arc<Mutex<Received>>,
    stop: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct Svc(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().traces.push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().metrics.push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Collector {
    /// An OTLP/gRPC collector on 127.0.0.1:0.
    pub async fn grpc() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let svc = Svc(received.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(svc.clone()))
                .add_service(MetricsServiceServer::new(svc))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = rx.wait_for(|s| *s).await;
                }),
        );
        Collector {
            addr,
            received,
            stop,
        }
    }

    /// An OTLP/HTTP (protobuf) collector on 127.0.0.1:0: POST /v1/traces, /v1/metrics.
    pub async fn http() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let rec = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = rx.wait_for(|s| *s) => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let rec = rec.clone();
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let rec = rec.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let ctype = req
                            .headers()
                            .get(hyper::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let out = {
                            let mut r = rec.lock().unwrap();
                            r.content_types.push(ctype);
                            match path.as_str() {
                                "/v1/traces" => {
                                    r.traces
                                        .push(ExportTraceServiceRequest::decode(body).unwrap());
                                    ExportTraceServiceResponse::default().encode_to_vec()
                                }
                                "/v1/metrics" => {
                                    r.metrics
                                        .push(ExportMetricsServiceRequest::decode(body).unwrap());
                                    ExportMetricsServiceResponse::default().encode_to_vec()
                                }
                                _ => {
                                    return Ok::<_, Infallible>(
                                        hyper::Response::builder()
                                            .status(404)
                                            .body(Full::new(Bytes::new()))
                                            .unwrap(),
                                    );
                                }
                            }
                        };
                        Ok(hyper::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::from(out)))
                            .unwrap())
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Collector {
            addr,
            received,
            stop,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let r = self.received.lock().unwrap();
        r.traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    /// Waits until at least `n` spans arrived (or panics after `timeout`).
    pub async fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} spans arrived: {:#?}",
                spans.len(),
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// A port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// === rendering ===

/// Renders an OTLP attribute value.
pub fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => format!("{s:?}"),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Attributes as a sorted map of rendered values.
pub fn attrs(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

/// String attribute `key`, if present.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            _ => value(&kv.value),
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kind(k: i32) -> &'static str {
    match k {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

/// Renders spans as indented trees, one per trace, in a stable order (traces by
/// root start, children by start time then name). Ids are shown so that a test
/// comparing two renderings also compares ids.
pub fn render(spans: &[Span]) -> String {
    let mut out = String::new();
    let mut traces: BTreeMap<Vec<u8>, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        traces.entry(s.trace_id.clone()).or_default().push(s);
    }
    let mut traces: Vec<(Vec<u8>, Vec<&Span>)> = traces.into_iter().collect();
    traces.sort_by_key(|(id, spans)| {
        (
            spans
                .iter()
                .map(|s| s.start_time_unix_nano)
                .min()
                .unwrap_or(0),
            id.clone(),
        )
    });
    for (trace, mut spans) in traces {
        spans.sort_by(|a, b| {
            (a.start_time_unix_nano, &a.name, a.end_time_unix_nano).cmp(&(
                b.start_time_unix_nano,
                &b.name,
                b.end_time_unix_nano,
            ))
        });
        out.push_str(&format!("trace {}\n", hex(&trace)));
        let ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        let roots: Vec<&&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty() || !ids.contains(&s.parent_span_id.as_slice()))
            .collect();
        for r in roots {
            node(&mut out, r, &spans, 1);
        }
    }
    out
}

fn node(out: &mut String, s: &Span, all: &[&Span], depth: usize) {
    let pad = "  ".repeat(depth);
    let status = match &s.status {
        Some(st) if st.code == 2 => format!("ERROR {:?}", st.message),
        Some(st) if st.code == 1 => "OK".to_owned(),
        _ => "UNSET".to_owned(),
    };
    let parent = if s.parent_span_id.is_empty() {
        "-".to_owned()
    } else {
        hex(&s.parent_span_id)
    };
    out.push_str(&format!(
        "{pad}{} {:?} span={} parent={} start={} end={} status={status}\n",
        kind(s.kind),
        s.name,
        hex(&s.span_id),
        parent,
        s.start_time_unix_nano,
        s.end_time_unix_nano,
    ));
    for (k, v) in attrs(&s.attributes) {
        out.push_str(&format!("{pad}  @{k}={v}\n"));
    }
    for e in &s.events {
        let a: Vec<String> = attrs(&e.attributes)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{pad}  event {:?} at={} {}\n",
            e.name,
            e.time_unix_nano,
            a.join(" ")
        ));
    }
    for c in all.iter().filter(|c| c.parent_span_id == s.span_id) {
        node(out, c, all, depth + 1);
    }
}

/// Converts SDK span data (as the exporter builds it) to the OTLP wire form, so the
/// same rendering serves spans from the builder and spans from a collector.
pub fn to_proto(spans: Vec<opentelemetry_sdk::trace::SpanData>) -> Vec<Span> {
    let rs = opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope(
        spans,
        &opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::default(),
    );
    rs.into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

/// A pipeline that folds into spans only, with the span builder as the exporter sets
/// it up (pipeline `skaffold`); the spans queue on the receiver (up to `capacity`).
pub fn span_pipeline(
    capacity: usize,
) -> (
    skaffold_exporter::pipeline::Pipeline,
    std::sync::mpsc::Receiver<opentelemetry_sdk::trace::SpanData>,
) {
    use skaffold_exporter::sink::otlp::{OtlpStats, SpanBuilder, SpanConfig, SpanSink};
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let builder = SpanBuilder::new(SpanConfig {
        pipeline: "skaffold".into(),
    });
    let pipeline = skaffold_exporter::pipeline::Pipeline::builder()
        .spans(SpanSink::new(builder, tx, None, OtlpStats::default()))
        .build()
        .expect("no OTLP to start")
        .pipeline;
    (pipeline, rx)
}
