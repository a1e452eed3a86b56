//! One scripted Skaffold session seen through every way Skaffold publishes it: API v1
//! and v2 over gRPC, the HTTP gateway's `/v1/events` and `/v2/events`, and the two
//! `--event-log-file` files, each folded by the real exporter (real sockets) or by
//! `replay`. The simulated Skaffold fires each step's v1 event and its v2
//! counterparts side by side, as Skaffold v1.26+ does.

use skaffold_exporter::app;
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::Script;
use skaffold_exporter::source::Api;

use super::settings;

/// The script's start, its event-log files and `replay` of them, as in [`super::sessions`].
pub use super::sessions::{T0, event_log_files, replay_files, settled};

/// The names of [`every_source`]'s results, in order.
pub const SOURCES: [&str; 6] = [
    "gRPC v1",
    "gRPC v2",
    "gateway v1",
    "gateway v2",
    "file v1",
    "file v2",
];

/// `/metrics` (Prometheus text) after the session was folded from each source, in
/// the order of [`SOURCES`].
pub async fn every_source(script: &Script) -> Vec<(&'static str, String)> {
    let mut out = live_sources(&script.entries(T0), &script.events_v2(T0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (f1, f2) = event_log_files(dir.path(), script);
    out.push((SOURCES[4], replay_files(&[f1])));
    out.push((SOURCES[5], replay_files(&[f2])));
    out
}

/// `/metrics` after a simulated Skaffold that emitted `v1` and `v2` was read over
/// gRPC and over the gateway, for each API that has events (in the order of
/// [`SOURCES`]: gRPC v1, gRPC v2, gateway v1, gateway v2).
pub async fn live_sources(
    v1: &[skaffold_exporter::pb::v1::LogEntry],
    v2: &[skaffold_exporter::pb::v2::Event],
) -> Vec<(&'static str, String)> {
    let seconds = |t: Option<&prost_types::Timestamp>| {
        t.map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
    };
    let last_v1 = v1
        .iter()
        .map(|e| seconds(e.timestamp.as_ref()))
        .fold(0.0, f64::max);
    let last_v2 = v2
        .iter()
        .map(|e| seconds(e.timestamp.as_ref()))
        .fold(0.0, f64::max);
    let sim = Simulator::new();
    if !v2.is_empty() {
        sim.enable_v2();
    }
    for e in v1 {
        sim.emit(e.clone());
    }
    for e in v2 {
        sim.emit_v2(e.clone());
    }
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc, http) = (grpc_l.local_addr().unwrap(), http_l.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(grpc_l, rx.clone()));
    tokio::spawn(sim.clone().serve_gateway(http_l, rx));
    let mut out = Vec::new();
    for (name, api, gateway, last) in [
        (SOURCES[0], Api::V1, false, last_v1),
        (SOURCES[1], Api::V2, false, last_v2),
        (SOURCES[2], Api::V1, true, last_v1),
        (SOURCES[3], Api::V2, true, last_v2),
    ] {
        let events = if api == Api::V1 { v1.len() } else { v2.len() };
        if events == 0 {
            continue;
        }
        let source = SourceSettings {
            api,
            skaffold_http: gateway.then(|| format!("http://{http}").parse().unwrap()),
        };
        let e = app::start_with(settings(grpc), source).await.unwrap();
        out.push((name, settled(&e, last, name).await));
        e.shutdown().await;
    }
    out
}
