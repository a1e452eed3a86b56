//! The event path from Skaffold to the fold loses, doubles and reorders nothing, over
//! real sockets. The simulated Skaffold delivers like `forEachEvent`: the log is
//! copied and the listener registered under the log lock, then the copy is replayed
//! while live events go to the same stream, so live events arrive in the middle of the
//! replay (pinned with `hold_replays_after`). In each of the four reconnect
//! situations (fresh start, cut mid-replay, cut after the replay, cut while live
//! events were overtaking), over API v1 and v2, the totals equal a clean pass; a
//! 300,000-event burst with default flags is folded whole and exactly.

mod support;

use std::ops::Range;
use std::time::Duration;

use skaffold_exporter::app::{self, Running};
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::pipeline::{Built, Pipeline};
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::{self, Flavor, Script};
use skaffold_exporter::source::Api;
use support::sessions::*;
use support::{events_folded, events_total, http_get, sample, settings};

/// Skaffold's timestamp of the end of `steps[..n]`.
fn at_step(script: &Script, n: usize) -> i64 {
    T0 + script.steps[..n]
        .iter()
        .map(|s| s.after.as_nanos() as i64)
        .sum::<i64>()
}

/// Plays `steps[range]` into `sim` (v1 entries and their v2 counterparts, stamped as
/// in a clean pass).
async fn emit(sim: &Simulator, script: &Script, range: Range<usize>) {
    let mut clock = at_step(script, range.start);
    let mut part = Script::new();
    part.steps = script.steps[range].to_vec();
    scenario::play(sim, &part, &mut clock, 0.0).await;
}

/// The step after which the session has a build in progress: `history` ends there and
/// the live part starts with that build's end, so a live `Complete` can overtake the
/// replayed `In Progress`.
fn split(script: &Script) -> usize {
    script
        .steps
        .iter()
        .position(|s| s.entry.starts_with("Build started for artifact app"))
        .expect("the session builds app")
        + 1
}

/// A step after `h` that ends a dev loop (an event every API folds), past which the
/// session goes on.
fn middle(script: &Script, h: usize) -> usize {
    h + script.steps[h..]
        .iter()
        .position(|s| {
            s.entry.starts_with("Update succeeded") || s.entry.starts_with("Update failed")
        })
        .expect("a loop ends after the split")
        + 1
}

async fn serve(sim: &Simulator) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    support::serve_skaffold(sim).await
}

async fn start(addr: std::net::SocketAddr, api: Api) -> Running {
    app::start_with(
        settings(addr),
        SourceSettings {
            api,
            skaffold_http: None,
        },
    )
    .await
    .unwrap()
}

/// Messages `steps[range]` make on `api`'s stream.
fn messages(script: &Script, range: Range<usize>, api: Api) -> u64 {
    script.steps[range]
        .iter()
        .map(|s| match api {
            Api::V1 => u64::from(s.event.is_some()),
            _ => s.v2.len() as u64,
        })
        .sum()
}

/// Waits until the simulator has sent `n` messages in all.
async fn wait_sent(sim: &Simulator, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sim.sent() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} sent",
            sim.sent()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_subscriptions(sim: &Simulator, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sim.subscriptions() < n {
        assert!(tokio::time::Instant::now() < deadline, "subscription {n}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the exporter folded an event stamped `at` (or later).
async fn folded_up_to(e: &Running, at: i64, what: &str) {
    wait_for(e, what, |t| {
        sample(t, "skaffold_exporter_last_event_timestamp_seconds", &[])
            .is_some_and(|s| s >= at as f64 / 1e9 - 1e-3)
    })
    .await;
}

/// The clean pass: the whole session in Skaffold's log before the exporter subscribes.
async fn clean(api: Api) -> String {
    let script = session();
    let sim = Simulator::new();
    sim.enable_v2();
    emit(&sim, &script, 0..script.steps.len()).await;
    let (addr, _stop) = serve(&sim).await;
    let e = start(addr, api).await;
    let text = settled(&e, last_timestamp(&script), "clean pass").await;
    e.shutdown().await;
    text
}

/// What must match the clean pass: every Skaffold series, the events folded (each
/// exactly once), and no invalid event.
fn check(api: Api, situation: &str, reference: &str, text: &str) {
    pretty_assertions::assert_eq!(
        core(reference, false),
        core(text, false),
        "{situation} over {api:?}"
    );
    pretty_assertions::assert_eq!(
        events_folded(reference),
        events_folded(text),
        "{situation} over {api:?}: events folded"
    );
    support::assert_no_invalid_events(text, &format!("{situation} over {api:?}"));
    for kind in ["skaffold_log", "application_log"] {
        assert_eq!(
            sample(
                text,
                "skaffold_exporter_log_events_skipped_total",
                &[("event", kind)]
            ),
            sample(
                reference,
                "skaffold_exporter_log_events_skipped_total",
                &[("event", kind)]
            ),
            "{situation} over {api:?}: {kind} counted once each"
        );
    }
}

/// Fresh start: the exporter's very first stream gets live events before the replay's
/// first message (hold 0) or after its third (hold 3), including the end of a build
/// whose start is still in the replay.
async fn fresh_start(api: Api, hold: u64) -> String {
    let script = session();
    let h = split(&script);
    let sim = Simulator::new();
    sim.enable_v2();
    emit(&sim, &script, 0..h).await;
    let (addr, _stop) = serve(&sim).await;
    sim.hold_replays_after(hold);
    let e = start(addr, api).await;
    wait_subscriptions(&sim, 1).await;
    let n = script.steps.len();
    emit(&sim, &script, h..n).await;
    // The live events are on their way before the rest of the replay.
    wait_sent(&sim, hold + messages(&script, h..n, api)).await;
    sim.release_replays();
    let text = settled(&e, last_timestamp(&script), "fresh start").await;
    assert_eq!(sim.streams_closed_by_client(), 0, "a stream was cut");
    assert_eq!(sim.subscriptions(), 1);
    e.shutdown().await;
    text
}

/// Cut mid-replay: the first stream ends after 3 messages of the replay; the second
/// replays everything with live events overtaking it.
async fn cut_mid_replay(api: Api) -> String {
    let script = session();
    let h = split(&script);
    let sim = Simulator::new();
    sim.enable_v2();
    emit(&sim, &script, 0..h).await;
    let (addr, _stop) = serve(&sim).await;
    sim.cut_streams_after(3);
    let e = start(addr, api).await;
    wait_subscriptions(&sim, 1).await;
    sim.cut_streams_after(0);
    sim.hold_replays_after(2);
    wait_subscriptions(&sim, 2).await;
    let n = script.steps.len();
    emit(&sim, &script, h..n).await;
    wait_sent(&sim, 3 + 2 + messages(&script, h..n, api)).await;
    sim.release_replays();
    let text = settled(&e, last_timestamp(&script), "cut mid-replay").await;
    assert_eq!(sim.streams_closed_by_client(), 0, "a stream was cut");
    e.shutdown().await;
    text
}

/// Cut after the replay: the first stream delivers the replay and some live events,
/// then breaks; more happens meanwhile; the second stream's replay is overtaken.
async fn cut_after_replay(api: Api) -> String {
    let script = session();
    let h = split(&script);
    let mid = middle(&script, h);
    let sim = Simulator::new();
    sim.enable_v2();
    emit(&sim, &script, 0..h).await;
    let (addr, _stop) = serve(&sim).await;
    let e = start(addr, api).await;
    wait_subscriptions(&sim, 1).await;
    emit(&sim, &script, h..mid).await;
    folded_up_to(&e, at_step(&script, mid), "first stream").await;
    sim.hold_replays_after(4);
    sim.abort_streams();
    wait_subscriptions(&sim, 2).await;
    let n = script.steps.len();
    emit(&sim, &script, mid..n).await;
    wait_sent(
        &sim,
        messages(&script, 0..mid, api) + 4 + messages(&script, mid..n, api),
    )
    .await;
    sim.release_replays();
    let text = settled(&e, last_timestamp(&script), "cut after replay").await;
    assert_eq!(sim.streams_closed_by_client(), 0, "a stream was cut");
    e.shutdown().await;
    text
}

/// Cut while live events were overtaking: the first stream's replay stops after 3
/// messages, live events arrive, the replay goes on and the stream breaks one message
/// later, the live events still waiting for the replay; the second stream delivers
/// everything, with more live events overtaking it.
async fn cut_while_overtaking(api: Api) -> String {
    let script = session();
    let h = split(&script);
    let mid = middle(&script, h);
    let n = script.steps.len();
    let sim = Simulator::new();
    sim.enable_v2();
    emit(&sim, &script, 0..h).await;
    let (addr, _stop) = serve(&sim).await;
    let live = messages(&script, h..mid, api);
    sim.hold_replays_after(3);
    sim.cut_streams_after(3 + live + 1);
    let e = start(addr, api).await;
    wait_subscriptions(&sim, 1).await;
    sim.cut_streams_after(0);
    emit(&sim, &script, h..mid).await;
    wait_sent(&sim, 3 + live).await;
    sim.release_replays();
    sim.hold_replays_after(1);
    wait_subscriptions(&sim, 2).await;
    emit(&sim, &script, mid..n).await;
    wait_sent(&sim, 3 + live + 1 + 1 + messages(&script, mid..n, api)).await;
    sim.release_replays();
    let text = settled(&e, last_timestamp(&script), "cut while overtaking").await;
    assert_eq!(sim.streams_closed_by_client(), 0, "a stream was cut");
    e.shutdown().await;
    text
}

async fn every_situation(api: Api) {
    let reference = clean(api).await;
    assert!(
        sample(
            &reference,
            "skaffold_dev_loops_total",
            &[("kind", "initial"), ("result", "success")]
        ) == Some(1.0),
        "the clean pass counts the session"
    );
    for hold in [0, 3] {
        check(
            api,
            &format!("fresh start, live after {hold}"),
            &reference,
            &fresh_start(api, hold).await,
        );
    }
    check(
        api,
        "cut mid-replay",
        &reference,
        &cut_mid_replay(api).await,
    );
    check(
        api,
        "cut after the replay",
        &reference,
        &cut_after_replay(api).await,
    );
    check(
        api,
        "cut while live events overtook the replay",
        &reference,
        &cut_while_overtaking(api).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_replays_interleaved_with_live_events_count_exactly_once_in_order() {
    every_situation(Api::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_replays_interleaved_with_live_events_count_exactly_once_in_order() {
    every_situation(Api::V2).await;
}

/// The demo's realistic session (builds of three artifacts, deploys, status checks,
/// resources, syncs, dev loops), `n` v1 entries long.
fn burst(n: usize) -> Vec<skaffold_exporter::pb::v1::LogEntry> {
    let mut session = scenario::Session::new(Flavor::Normal, 11);
    let mut s = session.next().expect("the initial loop");
    let mut entries = s.entries(T0);
    while entries.len() < n {
        for script in session.by_ref().take(1000) {
            s.steps.extend(script.steps);
        }
        entries = s.entries(T0);
    }
    entries.truncate(n);
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300000_event_burst_with_default_flags_is_folded_whole_and_exactly() {
    const N: usize = 300_000;
    let entries = burst(N);
    let sim = Simulator::new();
    for e in &entries {
        sim.emit(e.clone());
    }
    // What folding every entry once gives.
    let Built {
        pipeline: mut p,
        registry,
        ..
    } = Pipeline::builder().build().expect("no OTLP to start");
    for e in &entries {
        p.fold_entry(e);
    }
    let want = skaffold_exporter::sink::exposition::openmetrics_to_prometheus(
        &skaffold_exporter::sink::exposition::encode_openmetrics(&registry),
    );

    let (addr, _stop) = serve(&sim).await;
    // Default flags (`settings` only picks free ports and quick reconnects).
    let e = start(addr, Api::V1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let text = loop {
        let (_, _, text) = http_get(e.http_addr, "/metrics", None).await;
        if events_total(&text) >= N as f64 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "folded {} of {N}",
            events_total(&text)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, text_after) = http_get(e.http_addr, "/metrics", None).await;
    // (The process metrics change at every scrape.)
    assert_eq!(
        support::without_process_metrics(&text_after),
        support::without_process_metrics(&text),
        "nothing more arrives: no double count"
    );
    assert_eq!(events_total(&text), N as f64);
    pretty_assertions::assert_eq!(core(&want, false), core(&text, false));
    for l in want
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{"))
    {
        assert!(text.contains(l), "{l}");
    }
    assert_eq!(
        sample(&text, "skaffold_exporter_fold_stalls_total", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&text, "skaffold_exporter_connected", &[]), Some(1.0));
    assert_eq!(http_get(e.http_addr, "/readyz", None).await.0, 200);
    assert_eq!(sim.streams_closed_by_client(), 0);
    e.shutdown().await;
}
