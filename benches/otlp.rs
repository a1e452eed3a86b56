//! Quick bench of the trace path: what tracing costs per Skaffold event, and how many
//! spans per second go through the OTLP exporter into an in-process collector.
//!
//! `cargo bench --bench otlp` (prints figures; no harness).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use skaffold_exporter::pb::v1::LogEntry;
use skaffold_exporter::pipeline::Pipeline;
use skaffold_exporter::simulator::scenario::{self, Flavor};
use skaffold_exporter::sink::otlp::{OtlpStats, SpanBuilder, SpanConfig, SpanSink, spawn_exporter};
use skaffold_exporter::sink::otlp_setup::{Endpoint, Protocol, resource, span_exporter};

/// A realistic session: the demo's initial loop and `iterations` later ones.
fn entries(iterations: usize) -> Vec<LogEntry> {
    let mut script = scenario::Script::new();
    for s in scenario::Session::new(Flavor::Normal, 7).take(iterations + 1) {
        script.steps.extend(s.steps);
    }
    script.entries(1_700_000_000_000_000_000)
}

fn pipeline(spans: Option<SpanSink>) -> Pipeline {
    let mut b = Pipeline::builder();
    if let Some(s) = spans {
        b = b.spans(s);
    }
    b.build().expect("no OTLP to start").pipeline
}

fn builder() -> SpanBuilder {
    SpanBuilder::new(SpanConfig {
        pipeline: "bench".into(),
    })
}

/// Best of `rounds` timings of folding `entries` into a fresh pipeline from `make`.
fn per_event(entries: &[LogEntry], rounds: usize, make: impl Fn() -> Pipeline) -> f64 {
    (0..rounds)
        .map(|_| {
            let mut p = make();
            let t = Instant::now();
            for e in entries {
                p.fold_entry(e);
            }
            t.elapsed().as_nanos() as f64 / entries.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

#[derive(Clone)]
struct Count(Arc<AtomicUsize>);

#[tonic::async_trait]
impl TraceService for Count {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = req
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(n, Ordering::AcqRel);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn collector() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Count(count.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, count)
}

fn main() {
    let session = entries(2_000);
    let n = session.len();
    println!("session: {n} Skaffold events (demo scenario, 2001 iterations)");

    let off = per_event(&session, 5, || pipeline(None));
    println!("fold, tracing off:                     {off:8.0} ns/event");

    // Tracing on, spans handed to a queue whose consumer discards them.
    let spans_per_session = {
        let (tx, rx) = mpsc::sync_channel(1 << 20);
        let mut p = pipeline(Some(SpanSink::new(
            builder(),
            tx,
            None,
            OtlpStats::default(),
        )));
        for e in &session {
            p.fold_entry(e);
        }
        p.disconnected();
        drop(p);
        rx.try_iter().count()
    };
    let on = per_event(&session, 5, || {
        let (tx, rx) = mpsc::sync_channel(1 << 20);
        std::thread::spawn(move || for _ in rx {});
        pipeline(Some(SpanSink::new(
            builder(),
            tx,
            None,
            OtlpStats::default(),
        )))
    });
    println!("fold, tracing on (build + enqueue):    {on:8.0} ns/event");
    println!(
        "tracing costs:                         {:8.0} ns/event ({spans_per_session} spans, {:.2} spans/event)",
        on - off,
        spans_per_session as f64 / n as f64
    );

    // Through the real exporter into an in-process collector, both transports.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (addr, count) = collector().await;
        {
            let (label, protocol) = ("grpc", Protocol::Grpc);
            let ep = Endpoint {
                url: format!("http://{addr}"),
                protocol,
            };
            count.store(0, Ordering::Release);
            let res = resource(&Default::default());
            let stats = OtlpStats::default();
            let (exporter, driver) =
                span_exporter(&ep, Some(Duration::from_secs(10)), &res, &stats).unwrap();
            let (tx, thread) = spawn_exporter(exporter, driver, 1 << 20, stats.clone());
            let session = session.clone();
            let t = Instant::now();
            let total = tokio::task::spawn_blocking(move || {
                let mut p = pipeline(Some(SpanSink::new(
                    builder(),
                    tx,
                    Some(thread),
                    stats.clone(),
                )));
                for e in &session {
                    p.fold_entry(e);
                }
                p.disconnected();
                let mut sink = p.take_spans().unwrap();
                assert!(sink.close(Duration::from_secs(60)), "export finished");
                stats.spans_exported.get()
            })
            .await
            .unwrap();
            let secs = t.elapsed().as_secs_f64();
            let received = count.load(Ordering::Acquire);
            assert_eq!(received as u64, total, "collector got every span");
            println!(
                "OTLP/{label} end to end:                {:8.0} spans/s ({received} spans in {secs:.3} s, fold + export + collector)",
                received as f64 / secs
            );
        }
    });
}
