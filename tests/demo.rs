//! The demo and its simulated Skaffold under the conditions a new user creates:
//! flags that make no sense, a subscriber that does not read, a second exporter on the
//! demo's Skaffold port while the demo is stopped (or killed), scaled time.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skaffold_exporter::app;
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::pb::v1::{self, skaffold_service_client::SkaffoldServiceClient};
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::{self, Flavor, Script};
use support::{http_get, sample, serve_skaffold, settings};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_skaffold-exporter");

/// Bytes of text per test entry: big enough that the transport's buffers and
/// windows (a few MiB) hold few of them.
const ENTRY_BYTES: usize = 2048;

fn entry(i: u64) -> v1::LogEntry {
    v1::LogEntry {
        timestamp: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + i as i64,
            nanos: 0,
        }),
        event: None,
        entry: format!("entry {i:<width$}", width = ENTRY_BYTES),
    }
}

/// Waits (at most 15 s) until `pred` holds.
async fn until(what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connected(addr: std::net::SocketAddr) -> Option<f64> {
    let (_, _, body) = http_get(addr, "/metrics", None).await;
    sample(&body, "skaffold_exporter_connected", &[])
}

#[test]
fn time_scale_zero_or_less_is_refused_naming_the_flag() {
    for scale in ["0", "-1", "NaN", "inf"] {
        let out = Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                &format!("--time-scale={scale}"),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{scale}: {stderr}");
        assert!(
            stderr.contains("--time-scale must be a positive number"),
            "{scale}: {stderr}"
        );
    }
}

/// Subscribes to the simulator's v1 `Events` as a bare client (the stream is not read
/// until the caller reads it). The client is returned too: the caller keeps the
/// connection for as long as the test needs the subscriber.
async fn subscribe(
    addr: std::net::SocketAddr,
) -> (
    SkaffoldServiceClient<tonic::transport::Channel>,
    tonic::Streaming<skaffold_exporter::pb::v1::LogEntry>,
) {
    let mut client = SkaffoldServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let stream = client.events(()).await.unwrap().into_inner();
    (client, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_held_by_flow_control_and_loses_nothing() {
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    // Subscribed, and not reading.
    let (_client, mut stream) = subscribe(addr).await;
    // 40 MiB of events.
    let total = 20_000u64;
    for i in 0..total {
        sim.emit(entry(i));
    }
    // Whatever the timing, a subscriber that reads nothing can only have been handed
    // what the stream's channel (256 entries), the server's send buffer and the
    // client's flow-control windows (about 2.5 MiB) hold: under 8 MiB.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let handed = sim.sent();
    assert!(
        handed < 4_096,
        "{handed} of {total} entries went to a stream nobody reads"
    );
    // Then it reads: everything, in order.
    for i in 0..total {
        let e = stream.message().await.unwrap().expect("an entry");
        assert_eq!(e.entry, entry(i).entry);
    }
    assert_eq!(sim.streams_closed_by_client(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_skaffold_is_not_held_by_its_subscribers_and_the_exporter_sees_it_go() {
    let sim = Simulator::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(sim.clone().serve(listener, rx));
    for i in 0..20_000 {
        sim.emit(entry(i));
    }
    // One subscriber that never reads (its stream is held by flow control) ...
    let (_client, _stuck) = subscribe(addr).await;
    // ... and an exporter.
    let exp = app::start_with(settings(addr), SourceSettings::default())
        .await
        .unwrap();
    until("the exporter is ready", async || {
        http_get(exp.http_addr, "/readyz", None).await.0 == 200
    })
    .await;
    // `serve` is the demo's Skaffold server: stopping it ends its streams and closes
    // its connections, whoever is subscribed.
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the server stops although a subscriber does not read")
        .unwrap()
        .unwrap();
    until("the exporter sees Skaffold gone", async || {
        connected(exp.http_addr).await == Some(0.0)
    })
    .await;
    assert_eq!(http_get(exp.http_addr, "/readyz", None).await.0, 503);
    exp.shutdown().await;
}

/// Runs the demo binary with its Skaffold on `skaffold` (and /metrics on any port).
fn spawn_demo(skaffold: std::net::SocketAddr) -> std::process::Child {
    Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--skaffold-listen",
            &skaffold.to_string(),
            "--time-scale",
            "0.05",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn exits(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stops_on_sigterm_with_a_second_exporter_subscribed_which_sees_it_go() {
    for (sig, clean) in [("-TERM", true), ("-KILL", false)] {
        let skaffold = free_port();
        let mut demo = spawn_demo(skaffold);
        // A second exporter on the demo's Skaffold port, as in the report.
        let exp = app::start_with(settings(skaffold), SourceSettings::default())
            .await
            .unwrap();
        until("the second exporter is ready", async || {
            http_get(exp.http_addr, "/readyz", None).await.0 == 200
        })
        .await;
        signal(&demo, sig);
        let status = exits(&mut demo).await;
        let status = status.unwrap_or_else(|| panic!("{sig}: the demo did not exit"));
        if clean {
            assert!(status.success(), "{sig}: {status}");
        }
        until("the second exporter sees Skaffold gone", async || {
            connected(exp.http_addr).await == Some(0.0)
        })
        .await;
        assert_eq!(
            http_get(exp.http_addr, "/readyz", None).await.0,
            503,
            "{sig}"
        );
        exp.shutdown().await;
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn nanos(e: &v1::LogEntry) -> i64 {
    let t = e.timestamp.unwrap();
    t.seconds * 1_000_000_000 + i64::from(t.nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_time_never_stamps_events_ahead_of_the_clock() {
    let mut script = Script::new();
    script.meta(0, "v2.16.1").dev_loop(20, 0, "In Progress");
    for _ in 0..5 {
        script
            .build(20, "web", "In Progress", C::Ok)
            .build(40, "web", "Complete", C::Ok);
    }
    script.dev_loop(20, 0, "Succeeded");
    let steps = script.entries(0).len();
    for scale in [0.05, 1.5] {
        let sim = Simulator::new();
        let (addr, _stop) = serve_skaffold(&sim).await;
        let (_client, mut stream) = subscribe(addr).await;
        let player = {
            let (sim, script) = (sim.clone(), script.clone());
            tokio::spawn(async move {
                let mut clock = scenario::now_nanos();
                scenario::play(&sim, &script, &mut clock, scale).await;
            })
        };
        let mut previous = 0;
        for _ in 0..steps {
            let e = stream.message().await.unwrap().expect("an entry");
            // Received after it was emitted: the clock now is past the emission.
            let now = now_nanos();
            let at = nanos(&e);
            assert!(
                at <= now,
                "scale {scale}: {:?} stamped {} ms ahead of the clock",
                e.entry,
                (at - now) / 1_000_000
            );
            assert!(at >= previous, "scale {scale}: stamps go backwards");
            previous = at;
        }
        player.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_skaffold_restarts_when_its_log_is_full_so_memory_stays_bounded() {
    let sim = Simulator::new();
    let (addr, _stop) = serve_skaffold(&sim).await;
    let (_client, mut stream) = subscribe(addr).await;
    let limit = 500;
    let player = tokio::spawn(scenario::run_demo(
        sim.clone(),
        Flavor::Normal,
        1e-9,
        7,
        limit,
    ));
    // The stream of the first process ends with the restart.
    let mut read = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the stream ended cleanly after {read} entries"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(read > 0);
    // The log never holds much more than the limit (at most one more iteration).
    for _ in 0..50 {
        let held = sim.len() + sim.len_v2();
        assert!(held < limit + 2_000, "{held} events held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    player.abort();
}
