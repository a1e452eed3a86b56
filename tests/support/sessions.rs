//! The one scripted Skaffold session of the tests ([`Session`]: the variants tests
//! play) seen through every source: a simulated Skaffold serving gRPC (v1, and v2
//! when asked) and the HTTP gateway with the script already played, exporters
//! against it, and the script as Skaffold's `--event-log-file` files replayed through
//! `skaffold-exporter replay`.

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

/// One iteration of [`Session`] after the initial loop (iteration `n` is the `n`th
/// of [`Session::iterations`]).
#[derive(Clone, Debug)]
pub enum Iteration {
    /// A sync-only loop: `files` files synced to `image` in 0.4 s.
    Sync { image: String, files: i32 },
    /// `app` fails to build (`BUILD_USER_ERROR`) after 0.9 s.
    FailedBuild,
    /// The deploy fails (`DEPLOY_KUBECTL_USER_ERR`) after 0.4 s.
    FailedDeploy,
    /// [`Session::artifact`] rebuilt (1.2 s) and redeployed (0.3 s); its rollout
    /// succeeds (`C::Ok`) or fails with `rollout`, and the status check and loop with it.
    Rebuild { rollout: C },
}

/// The one scripted `skaffold dev` session of the tests, with known timestamps from
/// [`T0`]; the fields are what tests vary. [`Session::default`] (= [`session`]) is the
/// whole of it: an initial loop with a cache hit, tests and rendering; a sync; a
/// failed build; a failed deploy; a rebuild whose rollout fails, with Skaffold's log
/// lines and the application's mixed in (v2 only).
#[derive(Clone, Debug)]
pub struct Session {
    /// Skaffold's run id (`None`: the simulator's own).
    pub run_id: Option<String>,
    /// Skaffold's output in colour (`--force-colors`: the v2 log lines are coloured).
    pub colors: bool,
    /// The first artifact (built in the initial loop and in [`Iteration::Rebuild`]).
    pub artifact: String,
    /// Every phase and line Skaffold reports: tests, rendering, a cache hit (`db`),
    /// Skaffold's and the application's log lines, and a sync loop ending right after
    /// the sync, as Skaffold fires it (over API v2 a sync ends at the next event).
    /// Off: the phases the v1-only tests were written with, 0.1 s between a sync and
    /// its loop's end.
    pub every_phase: bool,
    /// The initial loop's builds and rollouts overlap (`web` and `app` built at once,
    /// two rollouts) and the port forwards are announced after the loop's end, as
    /// Skaffold v1 does: the span trees of the OTLP goldens. Off: one build after the
    /// other and one rollout. The overlapping loop has none of `every_phase`'s extras.
    pub concurrent: bool,
    /// The iterations after the initial loop, in order.
    pub iterations: Vec<Iteration>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            run_id: None,
            colors: false,
            artifact: "web".into(),
            every_phase: true,
            concurrent: false,
            iterations: vec![
                Iteration::Sync {
                    image: "web".into(),
                    files: 3,
                },
                Iteration::FailedBuild,
                Iteration::FailedDeploy,
                Iteration::Rebuild {
                    rollout: C::StatuscheckContainerTerminated,
                },
            ],
        }
    }
}

impl Session {
    /// The session of the v1-only tests (end to end over gRPC v1, the OTLP span
    /// goldens): builds, deploy, status check, sync and dev loops only (not
    /// `every_phase`), no rebuild.
    pub fn v1() -> Self {
        let mut s = Session {
            every_phase: false,
            ..Session::default()
        };
        s.iterations.pop();
        s
    }

    /// The session as a script.
    pub fn script(&self) -> Script {
        let mut s = Script::new();
        if let Some(id) = &self.run_id {
            s.with_run_id(id);
        }
        if self.colors {
            s.with_colors();
        }
        s.meta(0, "v2.16.1");
        if self.concurrent {
            self.overlapping_initial_loop(&mut s);
        } else {
            self.initial_loop(&mut s);
        }
        for (n, it) in (1..).zip(&self.iterations) {
            self.iteration(&mut s, n, it);
        }
        s
    }

    fn initial_loop(&self, s: &mut Script) {
        let (a, extras) = (self.artifact.as_str(), self.every_phase);
        if extras {
            s.log(5, "Generating tags...\n");
        }
        s.dev_loop(1000, 0, "In Progress")
            .build(500, a, "In Progress", C::Ok)
            .build(2500, a, "Complete", C::Ok);
        if extras {
            s.cache_hit(10, "db");
        }
        s.build(100, "app", "In Progress", C::Ok)
            .build(1500, "app", "Complete", C::Ok);
        if extras {
            s.test(50, "In Progress", C::Ok)
                .test(700, "Complete", C::Ok)
                .render(20, "In Progress")
                .render(150, "Succeeded");
        }
        s.deploy(100, "In Progress", C::Ok)
            .deploy(800, "Complete", C::Ok)
            .status_check(100, "Started", C::Ok)
            .resource(200, "deployment/web", "In Progress", C::Ok)
            .resource(500, "deployment/web", "In Progress", C::Ok)
            .resource(500, "deployment/web", "Succeeded", C::Ok)
            .status_check(100, "Succeeded", C::Ok)
            .port(50, 9000, "web");
        if extras {
            s.app_log(10, "web-1", "Listening on :8080");
        }
        s.dev_loop(50, 0, "Succeeded");
        if extras {
            s.app_log(300, "web-1", "GET / 200");
        }
    }

    fn overlapping_initial_loop(&self, s: &mut Script) {
        let a = self.artifact.as_str();
        s.dev_loop(10, 0, "In Progress")
            .build(10, a, "In Progress", C::Ok)
            .build(5, "app", "In Progress", C::Ok)
            .build(1200, a, "Complete", C::Ok)
            .build(300, "app", "Complete", C::Ok)
            .deploy(20, "In Progress", C::Ok)
            .deploy(600, "Complete", C::Ok)
            .status_check(5, "Started", C::Ok)
            .resource(100, "default:deployment/web", "In Progress", C::Ok)
            .resource(100, "default:deployment/app", "In Progress", C::Ok)
            .resource(700, "default:deployment/web", "Succeeded", C::Ok)
            .resource(300, "default:deployment/app", "Succeeded", C::Ok)
            .status_check(5, "Succeeded", C::Ok)
            .dev_loop(10, 0, "Succeeded")
            .port(30, 9000, "web")
            .port(5, 9001, "app");
    }

    fn iteration(&self, s: &mut Script, n: i32, it: &Iteration) {
        match it {
            Iteration::Sync { image, files } => {
                s.dev_loop(2000, n, "In Progress")
                    .sync(100, image, *files, "In Progress")
                    .sync(400, image, *files, "Succeeded")
                    .dev_loop(if self.every_phase { 0 } else { 100 }, n, "Succeeded");
            }
            Iteration::FailedBuild => {
                s.dev_loop(1400, n, "In Progress")
                    .build(100, "app", "In Progress", C::Ok)
                    .build(900, "app", "Failed", C::BuildUserError)
                    .dev_loop(100, n, "Failed");
            }
            Iteration::FailedDeploy => {
                s.dev_loop(900, n, "In Progress");
                if self.every_phase {
                    s.render(10, "In Progress").render(90, "Succeeded");
                }
                s.deploy(100, "In Progress", C::Ok)
                    .deploy(400, "Failed", C::DeployKubectlUserErr)
                    .dev_loop(100, n, "Failed");
            }
            Iteration::Rebuild { rollout } => {
                let status = |ok: &'static str| if *rollout == C::Ok { ok } else { "Failed" };
                let a = self.artifact.as_str();
                s.dev_loop(900, n, "In Progress")
                    .build(100, a, "In Progress", C::Ok)
                    .build(1200, a, "Complete", C::Ok)
                    .deploy(100, "In Progress", C::Ok)
                    .deploy(300, "Complete", C::Ok)
                    .status_check(100, "Started", C::Ok)
                    .resource(300, "deployment/web", status("Succeeded"), *rollout)
                    .status_check(100, status("Succeeded"), *rollout)
                    .dev_loop(100, n, status("Succeeded"));
            }
        }
    }
}

/// [`Session::default`]'s script: the whole session.
pub fn session() -> Script {
    Session::default().script()
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

/// The script's v1 entries from `start` as lines of Skaffold's `--event-log-file`
/// (`events.json`: lowerCamel JSON, zero values left out).
pub fn v1_lines(script: &Script, start: i64) -> Vec<String> {
    script
        .entries(start)
        .iter()
        .map(|e| {
            message_to_json("proto.LogEntry", &e.encode_to_vec(), false, false)
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The script's v2 events from `start` as lines of `events.json.v2`.
pub fn v2_lines(script: &Script, start: i64) -> Vec<String> {
    script
        .events_v2(start)
        .iter()
        .map(|e| {
            message_to_json("proto.v2.Event", &e.encode_to_vec(), false, false)
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The session as Skaffold's `--event-log-file` writes it from [`T0`]: `events.json`
/// and `events.json.v2` in `dir`, their paths.
pub fn event_log_files(dir: &std::path::Path, script: &Script) -> (String, String) {
    let p1 = dir.join("events.json");
    let p2 = dir.join("events.json.v2");
    let file = |lines: Vec<String>| lines.into_iter().map(|l| l + "\n").collect::<String>();
    std::fs::write(&p1, file(v1_lines(script, T0))).unwrap();
    std::fs::write(&p2, file(v2_lines(script, T0))).unwrap();
    (p1.display().to_string(), p2.display().to_string())
}

/// Folds files through `skaffold-exporter replay`'s pipeline (its choice of inputs
/// included: a `FILE` given with its `FILE.v2` is skipped).
pub fn replay_paths<P: AsRef<std::path::Path>>(paths: &[P]) -> Replayer {
    let mut r = Replayer::new(&DEFAULT_BUCKETS, 200);
    let inputs: Vec<Input> = paths
        .iter()
        .map(|p| Input::open(&p.as_ref().display().to_string()).unwrap())
        .collect();
    let inputs = skaffold_exporter::replay::select_inputs(inputs, &mut r);
    let stop = std::sync::atomic::AtomicBool::new(false);
    for i in inputs {
        i.feed(&mut r, false, &stop, &mut ()).unwrap();
    }
    r
}

/// Replays files (none malformed) through `skaffold-exporter replay`'s pipeline; the
/// metrics text.
pub fn replay_files(files: &[String]) -> String {
    let r = replay_paths(files);
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
