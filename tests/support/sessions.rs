//! One scripted Skaffold session seen through every source: a simulated Skaffold
//! serving gRPC (v1, and v2 when asked) and the HTTP gateway with the script already
//! played, exporters against it, and the script as Skaffold's `--event-log-file`
//! files replayed through `skaffold-exporter replay`.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use skaffold_exporter::app::{self, Running};
use skaffold_exporter::config::SourceSettings;
use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::replay::{Format, Input, Replayer};
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::Script;
use skaffold_exporter::sink::DEFAULT_BUCKETS;
use skaffold_exporter::source::Api;
use skaffold_exporter::source::json::message_to_json;

use super::{http_get, sample, settings};

/// Skaffold's timestamp of a script's first step.
pub const T0: i64 = 1_700_000_000_000_000_000;

/// A dev session touching every phase: an initial loop with a cache hit, tests and
/// rendering; a sync; a failed build; a failed deploy; a failed rollout. Skaffold's
/// log lines and the application's are mixed in (v2 only).
pub fn session() -> Script {
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .log(5, "Generating tags...\n")
        .dev_loop(1000, 0, "In Progress")
        .build(500, "web", "In Progress", C::Ok)
        .build(2500, "web", "Complete", C::Ok)
        .cache_hit(10, "db")
        .build(100, "app", "In Progress", C::Ok)
        .build(1500, "app", "Complete", C::Ok)
        .test(50, "In Progress", C::Ok)
        .test(700, "Complete", C::Ok)
        .render(20, "In Progress")
        .render(150, "Succeeded")
        .deploy(100, "In Progress", C::Ok)
        .deploy(800, "Complete", C::Ok)
        .status_check(100, "Started", C::Ok)
        .resource(200, "deployment/web", "In Progress", C::Ok)
        .resource(500, "deployment/web", "In Progress", C::Ok)
        .resource(500, "deployment/web", "Succeeded", C::Ok)
        .status_check(100, "Succeeded", C::Ok)
        .port(50, 9000, "web")
        .app_log(10, "web-1", "Listening on :8080")
        .dev_loop(50, 0, "Succeeded")
        .app_log(300, "web-1", "GET / 200")
        .dev_loop(2000, 1, "In Progress")
        .sync(100, "web", 3, "In Progress")
        .sync(400, "web", 3, "Succeeded")
        // Over v2 the sync ends at the next task event (Skaffold sends no v2 sync
        // end); Skaffold fires the loop's end right after the sync.
        .dev_loop(0, 1, "Succeeded")
        .dev_loop(1400, 2, "In Progress")
        .build(100, "app", "In Progress", C::Ok)
        .build(900, "app", "Failed", C::BuildUserError)
        .dev_loop(100, 2, "Failed")
        .dev_loop(900, 3, "In Progress")
        .render(10, "In Progress")
        .render(90, "Succeeded")
        .deploy(100, "In Progress", C::Ok)
        .deploy(400, "Failed", C::DeployKubectlUserErr)
        .dev_loop(100, 3, "Failed")
        .dev_loop(900, 4, "In Progress")
        .build(100, "web", "In Progress", C::Ok)
        .build(1200, "web", "Complete", C::Ok)
        .deploy(100, "In Progress", C::Ok)
        .deploy(300, "Complete", C::Ok)
        .status_check(100, "Started", C::Ok)
        .resource(
            300,
            "deployment/web",
            "Failed",
            C::StatuscheckContainerTerminated,
        )
        .status_check(100, "Failed", C::StatuscheckContainerTerminated)
        .dev_loop(100, 4, "Failed");
    s
}

/// Skaffold's timestamp of the script's last step, in seconds.
pub fn last_timestamp(script: &Script) -> f64 {
    let total: i64 = script.steps.iter().map(|s| s.after.as_nanos() as i64).sum();
    (T0 + total) as f64 / 1e9
}

/// A simulated Skaffold and its two ports.
pub struct Skaffold {
    /// The simulated process.
    pub sim: Simulator,
    /// gRPC (v1 and, when enabled, v2).
    pub grpc: SocketAddr,
    /// The HTTP gateway.
    pub http: SocketAddr,
    /// Dropping it stops the servers.
    pub _stop: tokio::sync::watch::Sender<bool>,
}

/// A simulated Skaffold with the session already played (its log is replayed to
/// every subscriber); `v2` = a v1.26+ Skaffold, else a pre-v1.22 one.
pub async fn skaffold(v2: bool, script: &Script) -> Skaffold {
    let sim = Simulator::new();
    if v2 {
        sim.enable_v2();
    }
    for e in script.entries(T0) {
        sim.emit(e);
    }
    if v2 {
        for e in script.events_v2(T0) {
            sim.emit_v2(e);
        }
    }
    let (stop, rx) = tokio::sync::watch::channel(false);
    let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc, http) = (grpc_l.local_addr().unwrap(), http_l.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(grpc_l, rx.clone()));
    tokio::spawn(sim.clone().serve_gateway(http_l, rx));
    Skaffold {
        sim,
        grpc,
        http,
        _stop: stop,
    }
}

/// An exporter reading `sk` with `api`, over gRPC or (`gateway`) the HTTP gateway.
pub async fn exporter(sk: &Skaffold, api: Api, gateway: bool) -> Running {
    let source = SourceSettings {
        api,
        skaffold_http: gateway.then(|| format!("http://{}", sk.http).parse().unwrap()),
    };
    app::start_with(settings(sk.grpc), source).await.unwrap()
}

/// The exporter's `/metrics`, without the process metrics (they change at every scrape).
pub async fn scrape(addr: SocketAddr) -> String {
    let (status, _, body) = http_get(addr, "/metrics", None).await;
    assert_eq!(status, 200);
    super::without_process_metrics(&body)
}

/// Waits until the exporter folded everything up to `last` (Skaffold's timestamp of
/// the final step) and /metrics stopped changing.
pub async fn settled(exp: &Running, last: f64, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut previous = String::new();
    loop {
        let text = scrape(exp.http_addr).await;
        let at = sample(&text, "skaffold_exporter_last_event_timestamp_seconds", &[]);
        let ready = http_get(exp.http_addr, "/readyz", None).await.0 == 200;
        if ready && at.is_some_and(|t| (t - last).abs() < 1e-3) && text == previous {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: timed out; last scrape:\n{text}");
        }
        previous = text;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Families only API v2 can fill.
pub const V2_ONLY: [&str; 4] = [
    "skaffold_build_cache",
    "skaffold_render",
    "skaffold_verif",
    "skaffold_exec",
];

/// The Skaffold series (no `skaffold_exporter_*` bookkeeping), sorted; `v1_view`
/// drops the v2-only families.
pub fn core(text: &str, v1_view: bool) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_") && !l.starts_with("skaffold_exporter_"))
        .filter(|l| !v1_view || !V2_ONLY.iter().any(|p| l.starts_with(p)))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The session as Skaffold's `--event-log-file` writes it (lowerCamel JSON, zero
/// values left out): `events.json` and `events.json.v2`.
pub fn event_log_files(dir: &std::path::Path, script: &Script) -> (String, String) {
    let v1: String = script
        .entries(T0)
        .iter()
        .map(|e| {
            message_to_json("proto.LogEntry", &e.encode_to_vec(), false, false)
                .unwrap()
                .to_string()
                + "\n"
        })
        .collect();
    let v2: String = script
        .events_v2(T0)
        .iter()
        .map(|e| {
            message_to_json("proto.v2.Event", &e.encode_to_vec(), false, false)
                .unwrap()
                .to_string()
                + "\n"
        })
        .collect();
    let p1 = dir.join("events.json");
    let p2 = dir.join("events.json.v2");
    std::fs::write(&p1, v1).unwrap();
    std::fs::write(&p2, v2).unwrap();
    (p1.display().to_string(), p2.display().to_string())
}

/// Replays files through `skaffold-exporter replay`'s pipeline; the metrics text.
pub fn replay_files(files: &[String]) -> String {
    let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
    let inputs: Vec<Input> = files.iter().map(|f| Input::open(f).unwrap()).collect();
    let inputs = skaffold_exporter::replay::select_inputs(inputs, &mut r);
    let stop = std::sync::atomic::AtomicBool::new(false);
    for i in inputs {
        i.feed(&mut r, false, &stop, false).unwrap();
    }
    assert_eq!(r.malformed(), 0, "{:?}", r.diagnostics());
    r.metrics_text(Format::Prometheus)
}

/// Waits until `/metrics` satisfies `pred`; returns that scrape.
pub async fn wait_for(exp: &Running, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(exp.http_addr).await;
        if pred(&text) {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: timed out; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
