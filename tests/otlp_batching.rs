//! What a trace store sees from a live session, measured with an independent
//! OTLP receiver (the in-process collector of `support::otlp`, which records every
//! export request): spans leave in batches, not one request per span, and every
//! span of an iteration leaves with its root.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use skaffold_exporter::app;
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::{Flavor, Session, now_nanos, play};
use skaffold_exporter::sink::otlp_setup::{Endpoint, OtlpSettings, Protocol};
use support::otlp::Collector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_leaves_in_batches_each_trace_whole() {
    let collector = Collector::grpc().await;
    let sim = Simulator::new();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let otlp = OtlpSettings {
        traces: Some(Endpoint {
            url: format!("http://{}", collector.addr),
            protocol: Protocol::Grpc,
        }),
        pipeline_name: Some("shop".into()),
        os_user: Some("alice".into()),
        span_queue: 2048,
        shutdown_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let running = app::start_all(support::settings(addr), SourceSettings::default(), otlp)
        .await
        .expect("exporter starts");

    // A dev session played live, 50 times faster than real time: about 25
    // iterations over some seconds, so spans end one after the other.
    let mut clock = now_nanos();
    for script in Session::new(Flavor::Normal, 7).take(25) {
        play(&sim, &script, &mut clock, 0.02).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim.end_streams();
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await;

    let traces = std::mem::take(&mut collector.received.lock().unwrap().traces);
    let per_request: Vec<usize> = traces
        .iter()
        .map(|r| {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum()
        })
        .collect();
    let spans: usize = per_request.iter().sum();
    let requests = per_request.len();
    println!(
        "{spans} spans in {requests} export requests ({:.3} requests per span)",
        requests as f64 / spans as f64
    );
    assert!(spans > 50, "only {spans} spans");
    // By size (512) and by time (2 s after the first span of a batch): a session
    // of a few seconds fits in a handful of requests.
    assert!(
        requests * 10 <= spans,
        "{requests} requests for {spans} spans"
    );

    // Each trace leaves root first, its children with it (or right after, when a
    // batch closes between them): never a child before its parent.
    let mut root_request: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut first_request: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, r) in traces.iter().enumerate() {
        for s in r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            first_request.entry(s.trace_id.clone()).or_insert(i);
            if s.parent_span_id.is_empty() {
                root_request.insert(s.trace_id.clone(), i);
            }
        }
    }
    let late_roots: BTreeSet<_> = first_request
        .iter()
        .filter(|(t, i)| root_request.get(*t) != Some(i))
        .map(|(t, _)| t.clone())
        .collect();
    assert!(
        late_roots.is_empty(),
        "{} traces whose root came after a child",
        late_roots.len()
    );
    collector.stop();
}
