//! Quick throughput figures (prints, asserts nothing): events/s through decode + fold
//! + Prometheus sink, and through the whole exporter over gRPC from the simulator.
//!
//!     cargo bench --bench fold

use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use skaffold_exporter::config::Settings;
use skaffold_exporter::pipeline::Pipeline;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::{Flavor, Script, Session};
use skaffold_exporter::sink::{DEFAULT_BUCKETS, Metrics};
use skaffold_exporter::source::SourceMessage;

fn session(iterations: usize) -> Script {
    let mut s = Script::new();
    for script in Session::new(Flavor::Normal, 7).take(iterations + 1) {
        s.steps.extend(script.steps);
    }
    s
}

fn main() {
    let entries = session(20_000).entries(1_700_000_000_000_000_000);
    let n = entries.len();

    let mut registry = Registry::default();
    let mut pipeline = Pipeline::new(Metrics::register(&mut registry, &DEFAULT_BUCKETS, 200));
    let start = Instant::now();
    for e in &entries {
        pipeline.fold_entry(e);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fold (decode + fold + prometheus sink): {n} events in {secs:.3} s = {:.0} events/s, {:.2} us/event",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );

    let mut registry = Registry::default();
    let mut pipeline = Pipeline::new(Metrics::register(&mut registry, &DEFAULT_BUCKETS, 200));
    let first = skaffold_exporter::pipeline::fingerprint(&entries[0]);
    let start = Instant::now();
    for (i, e) in entries.iter().enumerate() {
        // The fingerprint is computed when the message is built (by the reader).
        pipeline.handle(&SourceMessage::v1(1, i as u64, e.clone()).with_first(first));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "handle (+ replay fingerprint): {n} events in {secs:.3} s = {:.0} events/s",
        n as f64 / secs
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = Simulator::new();
        for e in &entries {
            sim.emit(e.clone());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(sim.clone().serve(listener, rx));
        let start = Instant::now();
        let exp = skaffold_exporter::app::start(Settings {
            skaffold_addr: addr.to_string(),
            listen: "127.0.0.1:0".parse().unwrap(),
            grpc_listen: None,
            allow_control: false,
            max_label_values: 200,
            buckets: DEFAULT_BUCKETS.to_vec(),
            queue_capacity: 1 << 20,
            upstream_timeout: Duration::from_secs(1),
            backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        })
        .await
        .unwrap();
        while exp.progress.handled.load(std::sync::atomic::Ordering::Acquire) < n as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!("end to end (simulator gRPC replay -> exporter fold): {n} events in {secs:.3} s = {:.0} events/s", n as f64 / secs);
        exp.shutdown().await;
    });
}
