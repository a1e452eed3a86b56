//! Every way Skaffold publishes events, through real sockets: API v1 over gRPC, API
//! v2 over gRPC, the HTTP gateway (`/v1/events`, `/v2/events`), and the event log
//! files. The simulated Skaffold fires each scripted step's v1 event and its v2
//! counterparts side by side, as Skaffold v1.26+ does, so one script is one session
//! seen through every source.

mod support;

use std::time::Duration;

use prost::Message;
use skaffold_exporter::app;
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::pb::v2::event::EventType as V2Kind;
use skaffold_exporter::simulator::old_layout::{OldEvent, OldTaskEvent, old_meta};
use skaffold_exporter::simulator::scenario::Script;
use skaffold_exporter::simulator::{ErrorShape, Simulator};
use skaffold_exporter::source::grpc::GrpcConnector;
use skaffold_exporter::source::supervisor::{Connector, EventStream, StreamError};
use skaffold_exporter::source::{Api, Payload};
use support::sessions::*;
use support::{close, events_folded, http_get, sample, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_over_every_source_yields_the_same_core_metrics() {
    let script = session();
    let last = last_timestamp(&script);
    let old = skaffold(false, &script).await;
    let new = skaffold(true, &script).await;

    // API v1 over gRPC: `--api auto` against a pre-v1.22 Skaffold (v2 UNIMPLEMENTED).
    let e = exporter(&old, Api::Auto, false).await;
    let grpc_v1 = settled(&e, last, "gRPC v1").await;
    e.shutdown().await;
    // API v2 over gRPC: `--api auto` against a v1.26+ Skaffold.
    let e = exporter(&new, Api::Auto, false).await;
    let grpc_v2 = settled(&e, last, "gRPC v2").await;
    e.shutdown().await;
    // The HTTP gateway, /v2/events (auto) and /v1/events (--api v1).
    let e = exporter(&new, Api::Auto, true).await;
    let http_v2 = settled(&e, last, "gateway v2").await;
    e.shutdown().await;
    let e = exporter(&new, Api::V1, true).await;
    let http_v1 = settled(&e, last, "gateway v1").await;
    e.shutdown().await;
    // The event log files.
    let dir = tempfile::tempdir().unwrap();
    let (f1, f2) = event_log_files(dir.path(), &script);
    let file_v1 = replay_files(std::slice::from_ref(&f1));
    let file_v2 = replay_files(std::slice::from_ref(&f2));

    // Each source chose the API it was meant to (one subscription each, no fallback
    // loops): v1 Skaffold was asked for v2 once, then v1.
    assert_eq!(
        sample(&grpc_v1, "skaffold_exporter_reconnects_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &grpc_v2,
            "skaffold_exporter_log_events_skipped_total",
            &[("event", "application_log")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &grpc_v1,
            "skaffold_exporter_log_events_skipped_total",
            &[("event", "application_log")]
        ),
        None
    );

    // Same core metrics everywhere.
    let reference = core(&grpc_v1, true);
    assert!(reference.len() > 50, "{reference:#?}");
    for (name, text) in [
        ("gRPC v2", &grpc_v2),
        ("gateway v2", &http_v2),
        ("gateway v1", &http_v1),
        ("file v1", &file_v1),
        ("file v2", &file_v2),
    ] {
        pretty_assertions::assert_eq!(reference, core(text, true), "{name} vs gRPC v1");
    }
    // v2 adds the cache, render (and, when used, verify / exec) metrics, the same over
    // every v2 source.
    let v2_reference = core(&grpc_v2, false);
    pretty_assertions::assert_eq!(v2_reference, core(&http_v2, false), "gateway v2");
    pretty_assertions::assert_eq!(v2_reference, core(&file_v2, false), "file v2");
    let cache = |r: &str, a: &str| {
        sample(
            &grpc_v2,
            "skaffold_build_cache_total",
            &[("artifact", a), ("result", r)],
        )
    };
    assert_eq!(cache("hit", "db"), Some(1.0));
    assert_eq!(cache("miss", "web"), Some(2.0));
    assert_eq!(cache("miss", "app"), Some(2.0));
    assert_eq!(
        sample(&grpc_v2, "skaffold_renders_total", &[("result", "success")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&grpc_v2, "skaffold_tests_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &grpc_v1,
            "skaffold_build_cache_total",
            &[("artifact", "db"), ("result", "hit")]
        ),
        None
    );
    // Spot checks of the shared numbers.
    close(
        sample(
            &grpc_v2,
            "skaffold_deploy_duration_seconds_sum",
            &[("result", "success")],
        ),
        1.1,
    );
    close(
        sample(
            &grpc_v2,
            "skaffold_file_sync_duration_seconds_sum",
            &[("image", "web")],
        ),
        0.4,
    );
    assert_eq!(
        sample(
            &grpc_v2,
            "skaffold_errors_total",
            &[("phase", "deploy"), ("code", "DEPLOY_KUBECTL_USER_ERR")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &grpc_v2,
            "skaffold_dev_loops_total",
            &[("kind", "sync"), ("result", "success")]
        ),
        Some(1.0)
    );
    drop((old.sim, new.sim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_error_chunk_mid_stream_reconnects_and_counts_nothing_twice() {
    let script = session();
    let last = last_timestamp(&script);
    let clean = skaffold(true, &script).await;
    let e = exporter(&clean, Api::Auto, true).await;
    let reference = settled(&e, last, "clean gateway pass").await;
    e.shutdown().await;
    let n = script.events_v2(T0).len() as f64;

    for shape in [ErrorShape::GatewayV1, ErrorShape::GatewayV2] {
        let sk = skaffold(true, &script).await;
        // The first stream breaks with an error chunk half-way through the replay.
        sk.sim.fail_next_gateway_stream(40, shape);
        let e = exporter(&sk, Api::Auto, true).await;
        let text = settled(&e, last, "gateway with an error chunk").await;
        e.shutdown().await;
        pretty_assertions::assert_eq!(core(&reference, false), core(&text, false), "{shape:?}");
        assert_eq!(
            sample(&text, "skaffold_exporter_reconnects_total", &[]),
            Some(1.0)
        );
        // Of the 40 events of the broken stream, those already folded were skipped
        // when replayed; those still held for ordering were folded from the replay.
        let skipped = sample(
            &text,
            "skaffold_exporter_replayed_events_skipped_total",
            &[],
        )
        .unwrap();
        assert!(skipped <= 40.0, "skipped {skipped}");
        assert_eq!(
            events_folded(&reference),
            events_folded(&text),
            "each event folded once"
        );
        assert!(n > 80.0, "the error chunk came mid-stream");
        assert_eq!(
            sk.sim.subscriptions(),
            2,
            "{shape:?}: one stream, one reconnect"
        );
    }
}

/// A Skaffold v1.22–v1.25: v2 served, with the pre-v1.26 layout.
async fn old_v2_skaffold(script: &Script) -> Skaffold {
    let sk = skaffold(false, script).await;
    // `serve` already ran without v2; start a second server with it on.
    let sim = sk.sim.clone();
    sim.enable_v2();
    // Its log starts with its MetaEvent, which names the version.
    sim.emit_v2_raw(old_meta("v1.25.1", 1_699_999_999).encode_to_vec().into());
    for (i, task) in ["DevLoop", "Build", "Build"].iter().enumerate() {
        let ev = OldEvent {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + i as i64,
                nanos: 0,
            }),
            task: Some(OldTaskEvent {
                id: format!("{task}-0"),
                task: (*task).into(),
                iteration: 0,
                status: if i == 2 { "Succeeded" } else { "InProgress" }.into(),
            }),
            ..Default::default()
        };
        sim.emit_v2_raw(ev.encode_to_vec().into());
    }
    let (stop, rx) = tokio::sync::watch::channel(false);
    let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = grpc_l.local_addr().unwrap();
    tokio::spawn(sim.clone().serve(grpc_l, rx));
    Skaffold {
        sim,
        grpc,
        http: sk.http,
        _stop: stop,
    }
}

fn incompatible(text: &str) -> Option<f64> {
    sample(
        text,
        "skaffold_exporter_invalid_events_total",
        &[("reason", "incompatible_layout")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_v1_26_v2_stream_is_a_clear_error_and_readable_to_its_end() {
    let script = session();
    let sk = old_v2_skaffold(&script).await;
    let mut c = GrpcConnector::new(&sk.grpc.to_string(), Api::V2);
    let mut stream = c.connect().await.expect("v2 is offered");
    // The layout is decided once, from the MetaEvent at the head of the stream: a
    // clear error that says what and why...
    match stream.next().await {
        Err(StreamError::Incompatible(msg)) => {
            assert!(msg.contains("pre-v1.26"), "{msg}");
            assert!(msg.contains("--api v1"), "{msg}");
        }
        other => panic!("expected a clear incompatibility error, got {other:?}"),
    }
    // ...and the stream goes on to its end, the rest only counted, never decoded.
    let mut rest = 0;
    loop {
        if rest == 3 {
            sk.sim.end_streams();
        }
        match stream.next().await {
            Ok(Some(m)) => {
                assert!(matches!(m.payload, Payload::Invalid(_)), "{m:?}");
                rest += 1;
            }
            Ok(None) => break,
            other => panic!("expected the stream to go on, got {other:?}"),
        }
    }
    assert_eq!(rest, 3);
    assert!(
        !c.stream_failed(&StreamError::Incompatible(String::new())),
        "--api v2 is never silently changed"
    );
    assert_eq!(c.chosen(), Some(Api::V2));
    assert_eq!(sk.sim.streams_closed_by_client(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_v1_at_once_and_keeps_the_old_v2_stream_open() {
    let script = session();
    let sk = old_v2_skaffold(&script).await;
    let e = exporter(&sk, Api::Auto, false).await;
    let text = settled(&e, last_timestamp(&script), "auto after old v2").await;
    // The v2 stream is read to its end in the background, its messages counted; v1 is
    // read meanwhile (one reconnect: v2, then v1).
    let text = if incompatible(&text) == Some(4.0) {
        text
    } else {
        wait_for(&e, "v2 drained", |t| incompatible(t) == Some(4.0)).await
    };
    assert_eq!(
        sample(&text, "skaffold_exporter_reconnects_total", &[]),
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sk.sim.streams_closed_by_client(),
        0,
        "the exporter left the v2 stream mid-stream"
    );
    assert_eq!(sk.sim.subscriptions(), 2, "one v2 stream, one v1 stream");
    // Skaffold exits: both streams end; the exporter reconnects to v1 only.
    sk.sim.end_streams();
    let after = wait_for(&e, "v1 again", |t| {
        sample(t, "skaffold_exporter_reconnects_total", &[]) == Some(2.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sk.sim.subscriptions(), 3);
    assert_eq!(sk.sim.streams_closed_by_client(), 0);
    assert_eq!(incompatible(&after), Some(4.0));
    let after = settled(&e, last_timestamp(&script), "v1 again, settled").await;
    e.shutdown().await;

    let reference_sk = skaffold(false, &script).await;
    let e = exporter(&reference_sk, Api::V1, false).await;
    let reference = settled(&e, last_timestamp(&script), "v1 reference").await;
    e.shutdown().await;
    pretty_assertions::assert_eq!(core(&reference, true), core(&text, true));
    pretty_assertions::assert_eq!(core(&reference, true), core(&after, true));
    assert_eq!(incompatible(&reference), Some(0.0), "exposed at zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v2_drains_an_old_layout_stream_until_skaffold_closes_it() {
    let script = session();
    let sk = old_v2_skaffold(&script).await;
    let e = exporter(&sk, Api::V2, false).await;
    let text = wait_for(&e, "drained", |t| incompatible(t) == Some(4.0)).await;
    // Not connected (nothing is read), not ready, and no new subscription while the
    // unreadable stream is open, however long it stays open.
    assert_eq!(sample(&text, "skaffold_exporter_connected", &[]), Some(0.0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sk.sim.subscriptions(), 1, "re-subscribed while draining");
    assert_eq!(sk.sim.streams_closed_by_client(), 0, "the stream was cut");
    assert_eq!(http_get(e.http_addr, "/readyz", None).await.0, 503);
    // Skaffold closes it (exits; here it keeps serving): back off, subscribe again,
    // drain again; once.
    sk.sim.end_streams();
    let text = wait_for(&e, "second stream drained", |t| {
        incompatible(t) == Some(8.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sk.sim.subscriptions(), 2);
    assert_eq!(sk.sim.streams_closed_by_client(), 0);
    assert_eq!(
        sample(&text, "skaffold_exporter_reconnects_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "skaffold_exporter_events_total",
            &[("event", "meta")]
        ),
        None,
        "nothing was folded"
    );
    e.shutdown().await;
}

/// The gRPC API v2 twin of e2e's `reconnects_and_replays_never_count_twice`: the v2
/// stream is cut during the replay, then aborted mid-session; the totals equal a
/// clean pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_v2_reconnects_and_replays_never_count_twice() {
    let script = session();
    let last = last_timestamp(&script);
    let clean = skaffold(true, &script).await;
    let e = exporter(&clean, Api::Auto, false).await;
    let reference = settled(&e, last, "clean v2 pass").await;
    e.shutdown().await;

    // The first half ends with the initial loop's end (a folded event, so its
    // timestamp shows when the half has been taken in).
    let half = script
        .steps
        .iter()
        .position(|s| {
            s.v2.iter().any(|e| {
                matches!(e, V2Kind::TaskEvent(t) if t.task == "DevLoop" && t.status == "Succeeded")
            })
        })
        .unwrap()
        + 1;
    let first_n: usize = script.steps[..half].iter().map(|s| s.v2.len()).sum();
    let half_at: i64 = script.steps[..half]
        .iter()
        .map(|s| s.after.as_nanos() as i64)
        .sum();
    let events = script.events_v2(T0);
    assert!(first_n > 14 && first_n < events.len(), "{first_n}");

    let sim = Simulator::new();
    sim.enable_v2();
    for e in &events[..first_n] {
        sim.emit_v2(e.clone());
    }
    let (stop, rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    tokio::spawn(sim.clone().serve(listener, rx));
    sim.cut_streams_after(7);
    let e = app::start_with(settings(grpc), SourceSettings::default())
        .await
        .unwrap();
    while sim.subscriptions() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.cut_streams_after(0);
    settled(&e, (T0 + half_at) as f64 / 1e9, "first half").await;
    sim.abort_streams();
    for ev in &events[first_n..] {
        sim.emit_v2(ev.clone());
    }
    let text = settled(&e, last, "second half").await;
    e.shutdown().await;
    drop(stop);

    pretty_assertions::assert_eq!(core(&reference, false), core(&text, false));
    for family in ["skaffold_exporter_log_events_skipped_total"] {
        for event in ["skaffold_log", "application_log"] {
            assert_eq!(
                sample(&text, family, &[("event", event)]),
                sample(&reference, family, &[("event", event)]),
                "{event} skipped once each"
            );
        }
    }
    let reconnects = sample(&text, "skaffold_exporter_reconnects_total", &[]).unwrap();
    assert!(reconnects >= 3.0, "reconnects {reconnects}");
    let skipped = sample(
        &text,
        "skaffold_exporter_replayed_events_skipped_total",
        &[],
    )
    .unwrap();
    // At least the first half, folded before the abort, was replayed and skipped.
    assert!(skipped >= first_n as f64, "skipped {skipped}");
    let invalid: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(invalid.is_empty(), "{invalid:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_state_is_passed_through_from_the_gateway() {
    let script = session();
    let sk = skaffold(true, &script).await;
    let e = exporter(&sk, Api::Auto, true).await;
    let (status, ctype, body) = http_get(e.http_addr, "/v1/state", None).await;
    let (_, _, upstream) = http_get(sk.http, "/v1/state", None).await;
    e.shutdown().await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    assert_eq!(body, upstream);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["buildState"]["artifacts"]["web"], "Complete");
}

/// One odd message (the three measured cases of issue 9) in the middle of a v1.26+
/// session over v2: counted as invalid on its own; the layout, decided from the
/// stream's MetaEvent, stays; nothing else changes (`--api auto` does not fall back).
async fn one_odd_v2_message(odd: OldEvent, api: Api, reason: &str) {
    let script = session();
    let clean = skaffold(true, &script).await;
    let e = exporter(&clean, api, false).await;
    let reference = settled(&e, last_timestamp(&script), "clean v2 session").await;
    e.shutdown().await;

    let sim = Simulator::new();
    sim.enable_v2();
    for e in script.entries(T0) {
        sim.emit(e);
    }
    let events = script.events_v2(T0);
    let mid = events.len() / 2;
    for e in &events[..mid] {
        sim.emit_v2(e.clone());
    }
    sim.emit_v2_raw(odd.encode_to_vec().into());
    for e in &events[mid..] {
        sim.emit_v2(e.clone());
    }
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let e = app::start_with(
        settings(addr),
        SourceSettings {
            api,
            skaffold_http: None,
        },
    )
    .await
    .unwrap();
    let text = settled(&e, last_timestamp(&script), "session with an odd message").await;
    pretty_assertions::assert_eq!(core(&reference, false), core(&text, false), "{api:?}");
    let invalid: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        invalid,
        [format!("skaffold_exporter_invalid_events_total{{reason=\"{reason}\"}} 1").as_str()],
        "{api:?}"
    );
    assert_eq!(incompatible(&text), Some(0.0));
    assert_eq!(sample(&text, "skaffold_exporter_connected", &[]), Some(1.0));
    assert_eq!(http_get(e.http_addr, "/readyz", None).await.0, 200);
    assert_eq!(
        sample(&text, "skaffold_exporter_reconnects_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sim.subscriptions(),
        1,
        "{api:?}: one v2 stream, no fallback to v1"
    );
    e.shutdown().await;
}

fn odd_task(iteration: i32, status: &str) -> OldEvent {
    OldEvent {
        timestamp: Some(prost_types::Timestamp {
            seconds: T0 / 1_000_000_000 + 8,
            nanos: 0,
        }),
        task: Some(OldTaskEvent {
            id: "DevLoop-1".into(),
            task: "DevLoop".into(),
            iteration,
            status: status.into(),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_event_with_a_varint_at_field_3_is_invalid_alone() {
    for api in [Api::V2, Api::Auto] {
        one_odd_v2_message(odd_task(1, ""), api, "undecodable").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_event_with_a_string_at_field_4_is_invalid_alone() {
    for api in [Api::V2, Api::Auto] {
        one_odd_v2_message(odd_task(0, "InProgress"), api, "undecodable").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_subtask_with_step_succeeded_is_invalid_alone() {
    // Well-typed in the current layout: step (field 4) "Succeeded", no status.
    let odd = OldEvent {
        timestamp: Some(prost_types::Timestamp {
            seconds: T0 / 1_000_000_000 + 8,
            nanos: 0,
        }),
        build: Some(skaffold_exporter::simulator::old_layout::OldBuildSubtask {
            id: "web".into(),
            task_id: "Build-1".into(),
            artifact: "web".into(),
            status: "Succeeded".into(),
        }),
        ..Default::default()
    };
    for api in [Api::V2, Api::Auto] {
        one_odd_v2_message(odd.clone(), api, "unknown_status").await;
    }
}
