//! A hostile gRPC peer flooding large messages cannot make the exporter's memory grow
//! without bound. A decoded v2 event keeps its message alive (its lean payload is
//! slices of it; a v1 event owns copies of its names, at most its message's size), so
//! counting held and queued events is not enough: the ordering buffer keeps at most
//! `core::order::HELD_BYTES` (16 MiB) of messages and the fold's queue
//! `source::supervisor::queue_bytes` (64 MiB by default); and v2 messages are copied
//! out of tonic's receive buffer (`grpc::EventDecoder`; v1 ones are decoded in it),
//! whose growth after a large message a small event sliced out of it would keep alive.
//!
//! The peer (tonic's server side over hyper, a real socket) serves one API's `Events`
//! to the real exporter binary (default flags, `--api` fixed) as fast as flow
//! control allows, then holds the stream open, as Skaffold does. The events are
//! stamped alike (or a nanosecond apart), so the ordering buffer holds them until the
//! stream pauses or its byte bound lets them go (its count cap, 1024, is never
//! reached). Cases:
//!
//! - `big_events`: builds of 8 artifacts, In Progress then Failed, each event
//!   carrying a ~3.5 MiB error text (a build log; under `limits::MAX_EVENT_BYTES`,
//!   read only on Failed, where it is truncated to 4 KiB) and a short artifact name;
//! - `junk_then_small`: pairs of a 5 MiB message (over `MAX_EVENT_BYTES`, under
//!   `grpc::MAX_FRAME_BYTES`: counted `undecodable`, never decoded) and a small
//!   build event, which arrives in the receive buffer the junk grew;
//! - `junk_late_held`: triples of a 5 MiB junk message, a small event stamped a minute
//!   earlier (late: it leaves the ordering buffer at once) and a small event that is
//!   held, in the same receive buffer as the junk;
//! - `undecided` (v2): small events after 15 MiB junk messages, with no MetaEvent, so
//!   the reader holds them (up to 64) until it knows the stream's layout.
//!
//! Each case waits until `/metrics` accounts for every message (events folded by
//! kind, builds by result, invalid events by reason, exactly), then asserts that the
//! exporter's peak RSS (`VmHWM`) stayed under [`PEAK_BUDGET_MIB`]. Pinning every
//! held message's buffer would take [`BIG_EVENTS`] × 3.5 MiB (560 MiB) and
//! [`JUNK_PAIRS`] × 5 MiB (1.5 GiB): measured before the byte bounds, 588 MiB and
//! 1.5 GiB. With the byte bounds but events still sliced out of tonic's buffer,
//! `junk_late_held` reached 522-527 MiB and `undecided` 460 MiB. Now every case
//! stays at 32-71 MiB. (The ordering buffer also lets go when the reader has waited
//! 100 ms for an event: on a loaded machine the junk between two small events can
//! take that long to arrive, so fewer are held at once.)

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use prost::Message as _;
use tonic::Status;

use skaffold_exporter::pb::{v1, v2};
use skaffold_exporter::skaffold::RawCodec;
use skaffold_exporter::source::grpc::{V1_EVENTS, V2_EVENTS};
use support::child::Exporter;

/// Most the exporter's peak RSS may reach during a flood (MiB). The bounds allow
/// more (16 MiB held for ordering, as much held back, 64 MiB queued, tonic's
/// receive buffer up to about twice the largest message, the exporter's own 10-20
/// MiB), but these floods stay far below them: measured 32-71 MiB.
const PEAK_BUDGET_MIB: u64 = 110;

const MIB: usize = 1024 * 1024;
/// Error text of each `big_events` event: under the 4 MiB decoding limit with the
/// rest of the message.
const BIG_TEXT: usize = 7 * MIB / 2;
/// Size of each junk message of `junk_then_small`: over the 4 MiB decoding limit,
/// under the 16 MiB frame limit.
const JUNK: usize = 5 * MIB;
/// Events of `big_events` (even: In Progress, Failed).
const BIG_EVENTS: usize = 160;
/// Junk + small event pairs of `junk_then_small` (even: the small events are In
/// Progress, Complete).
const JUNK_PAIRS: usize = 300;
/// Artifacts the builds cycle through.
const ARTIFACTS: usize = 8;
/// The Skaffold timestamp of every event (seconds).
const AT: i64 = 1_700_000_000;

// === the hostile peer ===

/// Makes message `i` of a flood.
type Make = Arc<dyn Fn(usize) -> Bytes + Send + Sync>;

/// `Events` of one API: `count` messages made on demand (so the peer holds only
/// what is in flight), then the stream stays open.
#[derive(Clone)]
struct Flood {
    path: &'static str,
    make: Make,
    count: usize,
    /// Messages handed to the encoder so far.
    sent: Arc<AtomicUsize>,
}

type Messages = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl tonic::server::ServerStreamingService<Bytes> for Flood {
    type Response = Bytes;
    type ResponseStream = Messages;
    type Future = std::future::Ready<Result<tonic::Response<Messages>, Status>>;

    fn call(&mut self, _req: tonic::Request<Bytes>) -> Self::Future {
        let flood = self.clone();
        let messages = futures_util::stream::iter(0..flood.count)
            .map(move |i| {
                let m = (flood.make)(i);
                flood.sent.fetch_add(1, Ordering::Relaxed);
                Ok(m)
            })
            .chain(futures_util::stream::pending());
        std::future::ready(Ok(tonic::Response::new(Box::pin(messages) as Messages)))
    }
}

/// Serves `flood` on a free loopback port (HTTP/2, any other call UNIMPLEMENTED).
async fn serve(flood: Flood) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let flood = flood.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let flood = flood.clone();
                    async move {
                        if req.uri().path() != flood.path {
                            let path = req.uri().path().to_owned();
                            return Ok::<_, Infallible>(Status::unimplemented(path).into_http());
                        }
                        let mut grpc = tonic::server::Grpc::new(RawCodec);
                        Ok(grpc.server_streaming(flood, req).await)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(io), service),
            );
        }
    });
    addr
}

// === the messages ===

fn timestamp() -> Option<prost_types::Timestamp> {
    stamped(AT, 0)
}

fn stamped(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// The artifact of build `k`: `app-{k % ARTIFACTS}`, `late-…` from build 1000 on.
fn artifact(k: usize) -> String {
    let prefix = if k >= 1000 { "late" } else { "app" };
    format!("{prefix}-{}", k % ARTIFACTS)
}

/// Build `k` (of [`artifact`]`(k)`): its start or its end (`end`, with
/// status `end_status`), with an error text of `text` bytes.
fn v1_build(k: usize, end: Option<&str>, text: usize) -> Bytes {
    v1_build_at(timestamp(), k, end, text)
}

/// [`v1_build`] stamped `at`.
fn v1_build_at(
    at: Option<prost_types::Timestamp>,
    k: usize,
    end: Option<&str>,
    text: usize,
) -> Bytes {
    let entry = v1::LogEntry {
        timestamp: at,
        event: Some(v1::Event {
            event_type: Some(v1::event::EventType::BuildEvent(v1::BuildEvent {
                artifact: artifact(k),
                status: end.unwrap_or("In Progress").to_owned(),
                err: build_log(k, text),
                ..Default::default()
            })),
        }),
        entry: format!("Build event for artifact {}", artifact(k)),
    };
    Bytes::from(entry.encode_to_vec())
}

/// The v2 counterpart of [`v1_build`].
fn v2_build(k: usize, end: Option<&str>, text: usize) -> Bytes {
    v2_build_at(timestamp(), k, end, text)
}

/// [`v2_build`] stamped `at`.
fn v2_build_at(
    at: Option<prost_types::Timestamp>,
    k: usize,
    end: Option<&str>,
    text: usize,
) -> Bytes {
    let event = v2::Event {
        timestamp: at,
        event_type: Some(v2::event::EventType::BuildSubtaskEvent(
            v2::BuildSubtaskEvent {
                id: "0".into(),
                task_id: "Build-0".into(),
                artifact: artifact(k),
                step: "Build".into(),
                status: end.unwrap_or("InProgress").to_owned(),
                actionable_err: (text > 0).then(|| v2::ActionableErr {
                    message: build_log(k, text),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    };
    Bytes::from(event.encode_to_vec())
}

/// The v2 stream's first event, which tells the exporter the layout is current.
fn v2_meta() -> Bytes {
    let event = v2::Event {
        timestamp: timestamp(),
        event_type: Some(v2::event::EventType::MetaEvent(v2::MetaEvent {
            entry: "Starting Skaffold: &{Version:v2.24.0 ConfigVersion:skaffold/v4beta13}".into(),
            metadata: None,
        })),
    };
    Bytes::from(event.encode_to_vec())
}

/// `len` bytes of build output, different for each build.
fn build_log(k: usize, len: usize) -> String {
    static LINES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if len == 0 {
        return String::new();
    }
    let lines = LINES.get_or_init(|| {
        "#7 [builder 3/7] RUN go build -o /app ./cmd/app\n".repeat(BIG_TEXT / 48 + 1)
    });
    let head = format!("build {k} failed:\n");
    let mut log = String::with_capacity(len);
    log.push_str(&head);
    log.push_str(&lines[..len - head.len()]);
    log
}

/// Message `i` of `big_events`: build `i / 2`'s start (even) or failure (odd).
fn big_event(api: &str, i: usize) -> Bytes {
    let end = (i % 2 == 1).then_some("Failed");
    if api == "v1" {
        v1_build(i / 2, end, BIG_TEXT)
    } else {
        v2_build(i / 2, end, BIG_TEXT)
    }
}

/// Message `i` of `junk_then_small`: `junk` (even), then build `i / 4`'s start or
/// success (odd).
fn junk_or_small(api: &str, i: usize, junk: &Bytes) -> Bytes {
    if i.is_multiple_of(2) {
        return junk.clone();
    }
    let small = i / 2;
    if api == "v1" {
        v1_build(small / 2, (small % 2 == 1).then_some("Complete"), 0)
    } else {
        v2_build(small / 2, (small % 2 == 1).then_some("Succeeded"), 0)
    }
}

/// Message `i` of `junk_late_held`, in threes: `junk`; then a build event stamped a
/// minute before the others (late: it leaves the ordering buffer at once, in arrival
/// order it is not); then build `i / 6`'s start or success, stamped at [`AT`] (held
/// for ordering). Sliced out of tonic's buffer, the held event would share the
/// junk's buffer, which the late event had been charged with.
fn junk_late_or_held(api: &str, i: usize, junk: &Bytes) -> Bytes {
    let k = i / 3;
    let unique = i32::try_from(i).unwrap();
    match i % 3 {
        0 => junk.clone(),
        1 => {
            // Late builds of their own artifacts, in order among themselves.
            let at = stamped(AT - 60, unique);
            let end = (k % 2 == 1).then_some("Failed");
            if api == "v1" {
                v1_build_at(at, 1000 + k / 2, end, 0)
            } else {
                v2_build_at(at, 1000 + k / 2, end, 0)
            }
        }
        _ => {
            let end = (k % 2 == 1).then_some(if api == "v1" { "Complete" } else { "Succeeded" });
            // Stamped a nanosecond apart: no two messages alike.
            let at = stamped(AT, unique);
            if api == "v1" {
                v1_build_at(at, k / 2, end, 0)
            } else {
                v2_build_at(at, k / 2, end, 0)
            }
        }
    }
}

// === the run ===

/// What `/metrics` must show once every message is accounted for.
#[derive(Debug, Clone, Copy)]
struct Want {
    /// `skaffold_exporter_events_total{event="build"}`.
    build_events: f64,
    /// `skaffold_builds_total`, summed over artifacts, by `result`.
    builds: &'static [(&'static str, f64)],
    /// `skaffold_exporter_invalid_events_total{reason="undecodable"}`; no other
    /// reason may be above zero but `tolerated`, up to the count given.
    undecodable: f64,
    /// Other reasons the case may cause (see there).
    tolerated: &'static [(&'static str, f64)],
}

/// Sum of the samples of `name` whose labels contain every `labels` pair.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// (build events, builds with `want`'s result, undecodable events) on `text`.
fn seen(text: &str, want: Want) -> Vec<f64> {
    std::iter::once(sum(
        text,
        "skaffold_exporter_events_total",
        &[("event", "build")],
    ))
    .chain(
        want.builds
            .iter()
            .map(|(result, _)| sum(text, "skaffold_builds_total", &[("result", result)])),
    )
    .chain([sum(
        text,
        "skaffold_exporter_invalid_events_total",
        &[("reason", "undecodable")],
    )])
    .collect()
}

/// Floods the exporter with `count` messages of `make` over `api`; once `/metrics`
/// accounts for all of them as `want` says, returns the exporter's peak RSS (MiB).
async fn flood(case: &str, api: &'static str, count: usize, make: Make, want: Want) -> u64 {
    flood_with(case, api, true, count, make, want).await
}

/// [`flood`], with or without (`meta`) a MetaEvent first over v2.
async fn flood_with(
    case: &str,
    api: &'static str,
    meta: bool,
    count: usize,
    make: Make,
    want: Want,
) -> u64 {
    let path = if api == "v1" { V1_EVENTS } else { V2_EVENTS };
    // Over v2 the exporter decides the layout from the MetaEvent, Skaffold's first.
    let (make, count) = if api == "v1" || !meta {
        (make, count)
    } else {
        let after_meta: Make = Arc::new(move |i| if i == 0 { v2_meta() } else { make(i - 1) });
        (after_meta, count + 1)
    };
    let sent = Arc::new(AtomicUsize::new(0));
    let addr = serve(Flood {
        path,
        make,
        count,
        sent: sent.clone(),
    })
    .await;
    let start = Instant::now();
    let exp = Exporter::start(
        &[
            "--skaffold-addr",
            &addr.to_string(),
            "--api",
            api,
            "--listen",
            "127.0.0.1:0",
        ],
        |_| {},
    );
    let pid = exp.child.id();
    let metrics = exp.http_addr().await;
    let expected: Vec<f64> = std::iter::once(want.build_events)
        .chain(want.builds.iter().map(|(_, n)| *n))
        .chain([want.undecodable])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let (_, _, text) = support::http_get(metrics, "/metrics", None).await;
        if seen(&text, want) == expected {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "{case} over {api}: (build events, {:?} builds, undecodable) {:?} of {expected:?}; {} of {count} messages sent; log:\n{}",
            want.builds,
            seen(&text, want),
            sent.load(Ordering::Relaxed),
            exp.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peak = support::vm_hwm_kib(pid) / 1024;
    let took = start.elapsed();
    // Nothing more arrives: nothing was counted twice, no other invalid event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, after) = support::http_get(metrics, "/metrics", None).await;
    assert_eq!(
        seen(&after, want),
        expected,
        "{case} over {api}: counted again"
    );
    let invalid: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_exporter_invalid_events_total{"))
        .filter(|l| !l.ends_with(" 0") && !l.contains("reason=\"undecodable\""))
        .filter(|l| {
            !want.tolerated.iter().any(|(r, most)| {
                l.contains(&format!("reason=\"{r}\""))
                    && l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) <= Some(*most)
            })
        })
        .collect();
    assert!(
        invalid.is_empty(),
        "{case} over {api}: {invalid:?}; log:\n{}",
        exp.log()
    );
    assert_eq!(sent.load(Ordering::Relaxed), count);
    assert_eq!(
        support::sample(&text, "skaffold_exporter_connected", &[]),
        Some(1.0),
        "{case} over {api}: the stream stays up"
    );
    eprintln!(
        "{case} over {api}: {count} messages folded or counted in {:.1} s; exporter peak RSS {peak} MiB (budget {PEAK_BUDGET_MIB} MiB)",
        took.as_secs_f64()
    );
    peak
}

#[track_caller]
fn assert_within_budget(case: &str, peak: u64) {
    assert!(
        peak < PEAK_BUDGET_MIB,
        "{case}: the exporter's peak RSS reached {peak} MiB (budget {PEAK_BUDGET_MIB} MiB)"
    );
}

async fn big_events(api: &'static str) {
    let make: Make = Arc::new(move |i| big_event(api, i));
    let want = Want {
        build_events: BIG_EVENTS as f64,
        builds: &[("failure", BIG_EVENTS as f64 / 2.0)],
        undecodable: 0.0,
        tolerated: &[],
    };
    let peak = flood("big_events", api, BIG_EVENTS, make, want).await;
    assert_within_budget("big_events", peak);
}

async fn junk_then_small(api: &'static str) {
    // One junk message, sent again and again (the peer only copies it out).
    let junk = Bytes::from(vec![0xff; JUNK]);
    let make: Make = Arc::new(move |i| junk_or_small(api, i, &junk));
    let want = Want {
        build_events: JUNK_PAIRS as f64,
        builds: &[("success", JUNK_PAIRS as f64 / 2.0)],
        undecodable: JUNK_PAIRS as f64,
        tolerated: &[],
    };
    let peak = flood("junk_then_small", api, 2 * JUNK_PAIRS, make, want).await;
    assert_within_budget("junk_then_small", peak);
}

/// Triples of `junk_late_held`.
const TRIPLES: usize = 100;

async fn junk_late_held(api: &'static str) {
    let junk = Bytes::from(vec![0xff; JUNK]);
    let make: Make = Arc::new(move |i| junk_late_or_held(api, i, &junk));
    let want = Want {
        build_events: 2.0 * TRIPLES as f64,
        // The late builds fail, the held ones succeed (an end without its start
        // still counts as a build: see `tolerated`).
        builds: &[
            ("failure", TRIPLES as f64 / 2.0),
            ("success", TRIPLES as f64 / 2.0),
        ],
        undecodable: TRIPLES as f64,
        // Iterations are derived from the builds (there are no dev-loop events here):
        // when a pause releases held builds between late ones (a loaded machine), a
        // late failure ends the iteration a held build started, and that build's end
        // is then counted as an end without a start (seen over v2). Still counted as
        // a build, never lost; at most one per held build.
        tolerated: &[("terminal_without_start", TRIPLES as f64 / 2.0)],
    };
    let peak = flood("junk_late_held", api, 3 * TRIPLES, make, want).await;
    assert_within_budget("junk_late_held", peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_events_held_after_junk_and_a_late_event_stay_within_the_memory_budget() {
    junk_late_held("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_events_held_after_junk_and_a_late_event_stay_within_the_memory_budget() {
    junk_late_held("v2").await;
}

/// v2 messages before Skaffold's MetaEvent are held until the stream's layout is
/// decided (64 of them, or a pause): small events after junk frames of 15 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_messages_held_before_the_layout_is_known_stay_within_the_memory_budget() {
    const PAIRS: usize = 30;
    let junk = Bytes::from(vec![0xff; 15 * MIB]);
    let make: Make = Arc::new(move |i| junk_or_small("v2", i, &junk));
    let want = Want {
        build_events: PAIRS as f64,
        builds: &[("success", PAIRS as f64 / 2.0)],
        undecodable: PAIRS as f64,
        tolerated: &[],
    };
    let peak = flood_with("undecided", "v2", false, 2 * PAIRS, make, want).await;
    assert_within_budget("undecided", peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_big_events_held_for_ordering_stay_within_the_memory_budget() {
    big_events("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_small_events_after_junk_frames_stay_within_the_memory_budget() {
    junk_then_small("v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_big_events_held_for_ordering_stay_within_the_memory_budget() {
    big_events("v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_small_events_after_junk_frames_stay_within_the_memory_budget() {
    junk_then_small("v2").await;
}
