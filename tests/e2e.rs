//! End to end through real sockets: the simulated Skaffold (a real tonic server
//! speaking proto.SkaffoldService) streams scripted sessions; the real exporter
//! subscribes, folds and serves /metrics over HTTP, which we scrape and check exactly.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use skaffold_exporter::app::{self, Running};
use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::pb::v1;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::Script;
use support::sessions::{Session, T0, core, scrape, wait_for};
use support::{close, events_total, http_get, sample, series_count, serve_skaffold, settings};

/// The v1 session (an initial loop, a sync, a failed build, a failed deploy).
fn session() -> Script {
    Session::v1().script()
}

fn emit_all(sim: &Simulator, script: &Script, start: i64) {
    for e in script.entries(start) {
        sim.emit(e);
    }
}

async fn start(sim_addr: SocketAddr) -> Running {
    app::start(settings(sim_addr))
        .await
        .expect("exporter starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_session_yields_exact_counts_and_durations() {
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    let script = session();
    let n = script.steps.len() as f64;
    // Half of the session happened before the exporter started (learned from the
    // replay), half arrives live.
    let entries = script.entries(T0);
    let (before, after) = entries.split_at(12);
    for e in before {
        sim.emit(e.clone());
    }
    let exp = start(addr).await;
    wait_for(&exp, "replay", |t| events_total(t) == 12.0).await;
    for e in after {
        sim.emit(e.clone());
    }
    let t = wait_for(&exp, "whole session", |t| events_total(t) == n).await;

    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "success")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "failure")],
        ),
        0.0,
    );
    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "success")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "app"), ("result", "failure")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", "web"), ("result", "success")],
        ),
        2.5,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", "app"), ("result", "success")],
        ),
        1.5,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", "app"), ("result", "failure")],
        ),
        0.9,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_bucket",
            &[("artifact", "web"), ("result", "success"), ("le", "2.5")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_bucket",
            &[("artifact", "web"), ("result", "success"), ("le", "1.0")],
        ),
        0.0,
    );
    close(
        sample(&t, "skaffold_deploys_total", &[("result", "success")]),
        1.0,
    );
    close(
        sample(&t, "skaffold_deploys_total", &[("result", "failure")]),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_deploy_duration_seconds_sum",
            &[("result", "success")],
        ),
        0.8,
    );
    close(
        sample(
            &t,
            "skaffold_deploy_duration_seconds_sum",
            &[("result", "failure")],
        ),
        0.4,
    );
    close(
        sample(&t, "skaffold_status_checks_total", &[("result", "success")]),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_status_check_duration_seconds_sum",
            &[("result", "success")],
        ),
        1.3,
    );
    close(
        sample(
            &t,
            "skaffold_resource_rollout_duration_seconds_sum",
            &[("resource", "deployment/web"), ("result", "success")],
        ),
        1.2,
    );
    close(
        sample(
            &t,
            "skaffold_file_syncs_total",
            &[("image", "web"), ("result", "success")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_file_sync_duration_seconds_sum",
            &[("image", "web"), ("result", "success")],
        ),
        0.4,
    );
    close(
        sample(&t, "skaffold_synced_files_total", &[("image", "web")]),
        3.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "sync"), ("result", "success")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "rebuild"), ("result", "failure")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "redeploy"), ("result", "failure")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "rebuild"), ("result", "success")],
        ),
        0.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loop_duration_seconds_sum",
            &[("kind", "initial"), ("result", "success")],
        ),
        7.0,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loop_duration_seconds_sum",
            &[("kind", "sync"), ("result", "success")],
        ),
        0.6,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loop_duration_seconds_sum",
            &[("kind", "rebuild"), ("result", "failure")],
        ),
        1.1,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loop_duration_seconds_sum",
            &[("kind", "redeploy"), ("result", "failure")],
        ),
        0.6,
    );
    close(sample(&t, "skaffold_deploy_consecutive_failures", &[]), 1.0);
    close(
        sample(
            &t,
            "skaffold_build_consecutive_failures",
            &[("artifact", "app")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_build_consecutive_failures",
            &[("artifact", "web")],
        ),
        0.0,
    );
    close(
        sample(
            &t,
            "skaffold_errors_total",
            &[("phase", "build"), ("code", "BUILD_USER_ERROR")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_errors_total",
            &[("phase", "deploy"), ("code", "DEPLOY_KUBECTL_USER_ERR")],
        ),
        1.0,
    );
    // Each failure counts once, at the phase that failed: the two failed iterations
    // are the failed build and the failed deploy, not failures of their own.
    assert_eq!(
        sample(&t, "skaffold_errors_total", &[("phase", "dev_loop")]),
        None
    );
    close(sample(&t, "skaffold_port_forwards", &[]), 1.0);
    close(sample(&t, "skaffold_info", &[("version", "v2.16.1")]), 1.0);
    close(sample(&t, "skaffold_exporter_connected", &[]), 1.0);
    close(
        sample(&t, "skaffold_exporter_replayed_events_skipped_total", &[]),
        0.0,
    );
    close(
        sample(&t, "skaffold_exporter_last_event_timestamp_seconds", &[]),
        1_700_000_014.6,
    );
    // Every reason is exposed from the start, and none was counted.
    for reason in skaffold_exporter::core::event::INVALID_REASONS {
        close(
            sample(
                &t,
                "skaffold_exporter_invalid_events_total",
                &[("reason", reason)],
            ),
            0.0,
        );
    }

    let (status, _, body) = http_get(exp.http_addr, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_openmetrics_when_asked_and_prometheus_text_otherwise() {
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    emit_all(&sim, &session(), T0);
    let exp = start(addr).await;
    wait_for(&exp, "session", |t| events_total(t) > 0.0).await;
    let (status, ctype, body) = http_get(
        exp.http_addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE skaffold_builds counter"));
    assert!(body.contains("# UNIT skaffold_build_duration_seconds seconds"));
    let (_, ctype, text) = http_get(exp.http_addr, "/metrics", Some("text/plain")).await;
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert!(text.contains("# TYPE skaffold_builds_total counter"));
    assert!(!text.contains("# EOF") && !text.contains("_created"));
    let (status, ctype, landing) = http_get(exp.http_addr, "/", None).await;
    assert_eq!((status, ctype.as_str()), (200, "text/html; charset=utf-8"));
    assert!(landing.contains("href=\"/metrics\""));
    assert_eq!(http_get(exp.http_addr, "/nope", None).await.0, 404);
    assert_eq!(http_get(exp.http_addr, "/healthz", None).await.0, 200);
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_replays_never_count_twice() {
    // Reference: one clean pass.
    let clean = Simulator::new();
    let (clean_addr, _s1) = serve_skaffold(&clean).await;
    emit_all(&clean, &session(), T0);
    let reference = start(clean_addr).await;
    let n = session().steps.len() as f64;
    let expected = wait_for(&reference, "clean pass", |t| events_total(t) == n).await;
    reference.shutdown().await;

    // Same session; the stream is cut during the replay, then aborted mid-session.
    let sim = Simulator::new();
    let (addr, _s2) = serve_skaffold(&sim).await;
    let entries = session().entries(T0);
    for e in &entries[..15] {
        sim.emit(e.clone());
    }
    sim.cut_streams_after(7);
    let exp = start(addr).await;
    while sim.subscriptions() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.cut_streams_after(0);
    wait_for(&exp, "first half", |t| events_total(t) == 15.0).await;
    sim.abort_streams();
    for e in &entries[15..] {
        sim.emit(e.clone());
    }
    let t = wait_for(&exp, "second half", |t| events_total(t) == n).await;
    assert_eq!(core(&t, false), core(&expected, false));
    let reconnects = sample(&t, "skaffold_exporter_reconnects_total", &[]).unwrap();
    assert!(reconnects >= 3.0, "reconnects {reconnects}");
    // At least the first half, folded before the abort, was replayed and skipped (what
    // the cut streams delivered may still have been held for ordering when they broke:
    // then it was folded from a later replay instead).
    let skipped = sample(&t, "skaffold_exporter_replayed_events_skipped_total", &[]).unwrap();
    assert!(skipped >= 15.0, "skipped {skipped}");
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skaffold_restart_starts_a_new_run_and_counters_keep_counting() {
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    emit_all(&sim, &session(), T0);
    let exp = start(addr).await;
    let n = session().steps.len() as f64;
    wait_for(&exp, "first run", |t| events_total(t) == n).await;
    sim.restart();
    let mut second = Script::new();
    second
        .meta(0, "v2.17.0")
        .dev_loop(100, 0, "In Progress")
        .build(10, "web", "In Progress", C::Ok)
        .build(3000, "web", "Complete", C::Ok)
        .deploy(10, "In Progress", C::Ok)
        .deploy(500, "Complete", C::Ok)
        .dev_loop(10, 0, "Succeeded");
    emit_all(&sim, &second, T0 + 3_600_000_000_000);
    let t = wait_for(&exp, "second run", |t| events_total(t) == n + 7.0).await;
    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "web"), ("result", "success")],
        ),
        2.0,
    );
    close(
        sample(
            &t,
            "skaffold_build_duration_seconds_sum",
            &[("artifact", "web"), ("result", "success")],
        ),
        5.5,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")],
        ),
        2.0,
    );
    close(sample(&t, "skaffold_deploy_consecutive_failures", &[]), 0.0);
    close(sample(&t, "skaffold_port_forwards", &[]), 0.0);
    close(sample(&t, "skaffold_info", &[("version", "v2.17.0")]), 1.0);
    assert_eq!(sample(&t, "skaffold_info", &[("version", "v2.16.1")]), None);
    close(
        sample(&t, "skaffold_exporter_replayed_events_skipped_total", &[]),
        0.0,
    );
    exp.shutdown().await;
}

fn raw(ts: Option<i64>, ev: Option<v1::event::EventType>) -> v1::LogEntry {
    v1::LogEntry {
        timestamp: ts.map(|t| prost_types::Timestamp {
            seconds: t / 1_000_000_000,
            nanos: (t % 1_000_000_000) as i32,
        }),
        event: ev.map(|e| v1::Event {
            event_type: Some(e),
        }),
        entry: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_the_exporter_keeps_serving() {
    use v1::event::EventType as E;
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    let mut s = Script::new();
    s.meta(0, "v2.16.1");
    emit_all(&sim, &s, T0);
    let deploy = |status: &str| {
        E::DeployEvent(v1::DeployEvent {
            status: status.into(),
            ..Default::default()
        })
    };
    sim.emit(raw(Some(T0 + 1), Some(deploy("Exploded"))));
    sim.emit(raw(Some(T0 + 2), None));
    sim.emit(raw(None, Some(deploy("In Progress"))));
    sim.emit(raw(Some(i64::MAX), Some(deploy("In Progress"))));
    sim.emit(raw(Some(T0 + 3), Some(deploy("Complete"))));
    sim.emit(raw(
        Some(T0 + 4),
        Some(E::BuildEvent(v1::BuildEvent {
            status: "Complete".into(),
            ..Default::default()
        })),
    ));
    sim.emit(raw(
        Some(T0 + 5),
        Some(E::FileSyncEvent(v1::FileSyncEvent {
            image: "x".into(),
            status: "In Progress".into(),
            file_count: -4,
            ..Default::default()
        })),
    ));
    let exp = start(addr).await;
    // The flood comes live, once the exporter took in the replay: thousands of events
    // stamped within microseconds, overtaking a replay of thousands, are beyond what
    // the reorder window promises (see `core::order`), and not what this is about.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !exp.progress.ready() {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Thousands of distinct artifacts.
    for i in 0..3000 {
        let a = format!("img-{i}");
        sim.emit(raw(
            Some(T0 + 10 + i),
            Some(E::BuildEvent(v1::BuildEvent {
                artifact: a.clone(),
                status: "In Progress".into(),
                ..Default::default()
            })),
        ));
        sim.emit(raw(
            Some(T0 + 20 + i),
            Some(E::BuildEvent(v1::BuildEvent {
                artifact: a,
                status: "Complete".into(),
                ..Default::default()
            })),
        ));
    }
    let t = wait_for(&exp, "flood", |t| {
        sample(t, "skaffold_exporter_events_total", &[("event", "build")]) == Some(6000.0)
    })
    .await;
    close(
        sample(
            &t,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "unknown_status")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "empty_event")],
        ),
        1.0,
    );
    close(
        sample(
            &t,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "missing_field")],
        ),
        2.0,
    );
    close(
        sample(
            &t,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "absurd_value")],
        ),
        2.0,
    );
    close(
        sample(
            &t,
            "skaffold_exporter_invalid_events_total",
            &[("reason", "terminal_without_start")],
        ),
        1.0,
    );
    close(
        sample(&t, "skaffold_deploys_total", &[("result", "success")]),
        1.0,
    );
    // 200 artifacts kept, the rest folded into "other".
    assert_eq!(series_count(&t, "skaffold_builds_total"), 201 * 2);
    close(
        sample(
            &t,
            "skaffold_builds_total",
            &[("artifact", "other"), ("result", "success")],
        ),
        2800.0,
    );
    close(
        sample(
            &t,
            "skaffold_exporter_label_values_folded_total",
            &[("label", "artifact")],
        ),
        2800.0,
    );
    // Failure streaks are per artifact: none is kept for the folded `other`.
    assert_eq!(
        sample(
            &t,
            "skaffold_build_consecutive_failures",
            &[("artifact", "other")]
        ),
        None
    );
    assert_eq!(http_get(exp.http_addr, "/healthz", None).await.0, 200);
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_skaffold_and_reports_disconnects() {
    // Nothing listens yet: the exporter serves, not connected, not ready.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let exp = start(addr).await;
    let t = scrape(exp.http_addr).await;
    close(sample(&t, "skaffold_exporter_connected", &[]), 0.0);
    assert_eq!(http_get(exp.http_addr, "/readyz", None).await.0, 503);
    let (status, _, body) = http_get(exp.http_addr, "/v1/state", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not reachable"), "{body}");
    // Skaffold comes up on that port.
    let sim = Simulator::new();
    emit_all(&sim, &session(), T0);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(sim.clone().serve(listener, rx));
    wait_for(&exp, "connect", |t| {
        sample(t, "skaffold_exporter_connected", &[]) == Some(1.0)
    })
    .await;
    let (status, _, body) = http_get(exp.http_addr, "/v1/state", None).await;
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["buildState"]["artifacts"]["web"], "Complete");
    assert_eq!(state["forwardedPorts"]["9000"]["resourceName"], "web");
    // Skaffold exits.
    stop.send(true).unwrap();
    sim.abort_streams();
    let _ = server.await;
    wait_for(&exp, "disconnect", |t| {
        sample(t, "skaffold_exporter_connected", &[]) == Some(0.0)
    })
    .await;
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skaffold_run_session_ends_when_skaffold_goes_but_not_on_a_stream_hiccup() {
    // `skaffold run`: no DevLoopEvent, so the iteration is derived.
    let sim = Simulator::new();
    let (addr, stop) = serve_skaffold(&sim).await;
    let mut build = Script::new();
    build
        .meta(0, "v2.16.1")
        .build(100, "web", "In Progress", C::Ok)
        .build(2000, "web", "Complete", C::Ok);
    let entries = build.entries(T0);
    for e in &entries {
        sim.emit(e.clone());
    }
    let exp = start(addr).await;
    wait_for(&exp, "build", |t| events_total(t) == 3.0).await;
    // The stream breaks but Skaffold lives on: the iteration must stay open.
    sim.abort_streams();
    wait_for(&exp, "reconnect", |t| {
        sample(t, "skaffold_exporter_reconnects_total", &[]) == Some(1.0)
            && sample(t, "skaffold_exporter_connected", &[]) == Some(1.0)
    })
    .await;
    let mut rest = Script::new();
    rest.deploy(500, "In Progress", C::Ok)
        .deploy(700, "Complete", C::Ok);
    let last = entries.last().unwrap().timestamp.unwrap();
    let last = last.seconds * 1_000_000_000 + i64::from(last.nanos);
    emit_all(&sim, &rest, last);
    let t = wait_for(&exp, "deploy", |t| events_total(t) == 5.0).await;
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")],
        ),
        0.0,
    );
    // Skaffold exits: the session is one complete iteration, from the first build
    // start to the deploy's end.
    stop.send(true).unwrap();
    sim.abort_streams();
    let t = wait_for(&exp, "session end", |t| {
        sample(
            t,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")],
        ) == Some(1.0)
    })
    .await;
    close(
        sample(
            &t,
            "skaffold_dev_loop_duration_seconds_sum",
            &[("kind", "initial"), ("result", "success")],
        ),
        3.2,
    );
    close(
        sample(
            &t,
            "skaffold_dev_loops_total",
            &[("kind", "redeploy"), ("result", "success")],
        ),
        0.0,
    );
    exp.shutdown().await;
}
