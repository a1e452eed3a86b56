//! Side-by-side speed of the event path: a flood server replays N realistic Skaffold
//! events (v1 `LogEntry`s or v2 `Event`s, from the demo's scenario) to every new
//! subscriber and then holds the stream open, as Skaffold does. Against it, in one
//! run, each round:
//!
//! - a bare tonic client (the generated `Events` client: connect, subscribe, decode
//!   and count messages) drains the stream, in a process of its own (in the flood
//!   server's with `--bare-in-process`);
//! - the real exporter (the release binary, started as a child process with default
//!   flags: only `--skaffold-addr`, `--listen` and `--api` set, so its RSS is its own)
//!   folds it;
//! - the bare client drains it again. Its rate is over the mean of its two times, so
//!   a machine whose speed drifts through the round favours neither side (both
//!   drains' rates are printed too).
//!
//! Each side is timed from the moment the flood server starts sending to the moment
//! the last message was counted (the drain) or the exporter's `/metrics` shows every
//! event folded (read every 2 ms once the exporter's work is done, so at most 2 ms
//! late, and never while it works; the expected totals come from folding the same
//! messages in this process). The replay's last events are held for Skaffold's order
//! until the pause that ends it (`core::order::WINDOW`, 100 ms without events), so
//! the exporter's time includes that pause. (`/metrics` itself answers at once here:
//! the exporter opened it at the pause before the replay was released, as for a
//! Skaffold with no history; after a real Skaffold's replay it opens at the same
//! pause that releases the last events.) Printed per round: both rates, their ratio,
//! the CPU time per event of each side and of the flood server, the exporter's max
//! RSS (VmHWM) and idle RSS, how many expected events it never folded (dropped),
//! invalid events, and whether its totals are exact; then the exporter's rate less
//! that pause (`WINDOW` taken off its time: the rate at which it received, ordered
//! and folded the events) and that rate's ratio. The pause starts at the last
//! event's arrival; what the exporter still had to fold then (its queue: four
//! batches, a millisecond or two of folding) is done during the pause, so taking the
//! whole pause off hides at most that much of its work. `WINDOW` is this crate's: an
//! exporter given in `STREAM_BENCH_EXPORTER` must be built with the same window.
//!
//! ```text
//! cargo bench --bench stream                      # 1,000,000 events, v1 and v2, 3 rounds
//! cargo bench --bench stream -- --events 300000 --api v2 --rounds 5
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use skaffold_exporter::core::order::WINDOW;
use skaffold_exporter::pb::{v1, v2};
use skaffold_exporter::simulator::scenario::{Flavor, Script, Session};
use skaffold_exporter::skaffold::RawCodec;

/// The exporter binary (`STREAM_BENCH_EXPORTER` overrides it, e.g. with a profiler
/// wrapper).
fn exporter_binary() -> String {
    std::env::var("STREAM_BENCH_EXPORTER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_skaffold-exporter").to_owned())
}

// === the flood server ===

/// Which service a flood serves.
trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

#[derive(Clone)]
struct V1Name;
impl ServiceName for V1Name {
    const NAME: &'static str = "proto.SkaffoldService";
}
#[derive(Clone)]
struct V2Name;
impl ServiceName for V2Name {
    const NAME: &'static str = "proto.v2.SkaffoldV2Service";
}

/// The replayed log (pre-encoded, so the server costs as little as possible) and the
/// gate: subscription `k` (from 1) starts sending once `go >= k`.
struct Log {
    messages: Vec<Bytes>,
    subscriptions: AtomicU64,
    go: watch::Sender<u64>,
}

/// `Events` of one API: replays the log, then holds the stream open.
struct Flood<N> {
    log: Arc<Log>,
    _name: std::marker::PhantomData<N>,
}

impl<N> Clone for Flood<N> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            _name: std::marker::PhantomData,
        }
    }
}

impl<N: ServiceName> tonic::server::NamedService for Flood<N> {
    const NAME: &'static str = N::NAME;
}

type Messages = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

struct Events(Arc<Log>);

impl tonic::server::ServerStreamingService<Bytes> for Events {
    type Response = Bytes;
    type ResponseStream = Messages;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Messages>, Status>> + Send>>;

    fn call(&mut self, _req: Request<Bytes>) -> Self::Future {
        let log = self.0.clone();
        Box::pin(async move {
            let ticket = log.subscriptions.fetch_add(1, Ordering::AcqRel) + 1;
            let mut go = log.go.subscribe();
            let gate = async move {
                let _ = go.wait_for(|g| *g >= ticket).await;
            };
            let n = log.messages.len();
            let replay = futures_util::stream::iter(0..n).map(move |i| Ok(log.messages[i].clone()));
            let stream = futures_util::stream::once(gate)
                .filter_map(|()| std::future::ready(None))
                .chain(replay)
                .chain(futures_util::stream::pending());
            Ok(Response::new(Box::pin(stream) as Messages))
        })
    }
}

impl<N: ServiceName, B> tower_service::Service<http::Request<B>> for Flood<N>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let log = self.log.clone();
        Box::pin(async move {
            if req.uri().path().ends_with("/Events") {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                return Ok(grpc.server_streaming(Events(log), req).await);
            }
            let mut response = http::Response::new(tonic::body::Body::default());
            response.headers_mut().insert(
                Status::GRPC_STATUS,
                (tonic::Code::Unimplemented as i32).into(),
            );
            Ok(response)
        })
    }
}

fn flood<N>(messages: Vec<Bytes>) -> (Flood<N>, Arc<Log>) {
    let log = Arc::new(Log {
        messages,
        subscriptions: AtomicU64::new(0),
        go: watch::channel(0).0,
    });
    (
        Flood {
            log: log.clone(),
            _name: std::marker::PhantomData,
        },
        log,
    )
}

impl Log {
    /// Returns once a subscription waits to be released.
    async fn subscribed(&self) {
        while self.subscriptions.load(Ordering::Acquire) <= *self.go.borrow() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits for a subscription, then lets every one that waits send; returns when
    /// they were released. (Releasing all of them, not one by number, keeps the next
    /// client from waiting forever if an exporter subscribed twice.)
    async fn release(&self) -> Instant {
        self.subscribed().await;
        self.go
            .send_replace(self.subscriptions.load(Ordering::Acquire));
        Instant::now()
    }
}

// === the streams ===

fn script(events: usize) -> Script {
    let mut s = Script::new();
    for script in Session::new(Flavor::Normal, 7) {
        if s.steps.len() >= events {
            break;
        }
        s.steps.extend(script.steps);
    }
    s
}

const START: i64 = 1_700_000_000_000_000_000;

fn v1_stream(n: usize) -> Vec<Bytes> {
    let mut entries = script(n + n / 4).entries(START);
    entries.truncate(n);
    entries
        .iter()
        .map(|e| Bytes::from(e.encode_to_vec()))
        .collect()
}

fn v2_stream(n: usize) -> Vec<Bytes> {
    let mut steps = n / 2 + 16;
    let mut events = script(steps).events_v2(START);
    while events.len() < n {
        steps *= 2;
        events = script(steps).events_v2(START);
    }
    events.truncate(n);
    events
        .iter()
        .map(|e| Bytes::from(e.encode_to_vec()))
        .collect()
}

// === the bare client ===

async fn drain(addr: SocketAddr, api: &str, log: &Log, n: usize) -> f64 {
    let (count, start) = subscribe_and_count(addr, api, n, || log.release()).await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count, n, "the drain received every message");
    n as f64 / secs
}

/// The bare client: connects, subscribes to `api`'s `Events`, calls `subscribed`,
/// then counts (decoded) messages until `n` arrived or the stream ended. Returns the
/// count and what `subscribed` returned.
async fn subscribe_and_count<F: Future>(
    addr: impl std::fmt::Display,
    api: &str,
    n: usize,
    subscribed: impl FnOnce() -> F,
) -> (usize, F::Output) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    if api == "v1" {
        let mut c = v1::skaffold_service_client::SkaffoldServiceClient::new(channel)
            .max_decoding_message_size(64 << 20);
        let s = c.events(()).await.unwrap().into_inner();
        let out = subscribed().await;
        (count_messages(s, n).await, out)
    } else {
        let mut c = v2::skaffold_v2_service_client::SkaffoldV2ServiceClient::new(channel)
            .max_decoding_message_size(64 << 20);
        let s = c.events(()).await.unwrap().into_inner();
        let out = subscribed().await;
        (count_messages(s, n).await, out)
    }
}

/// The bare client in a process of its own (this binary, `--bare-drain ADDR API N`),
/// like the exporter: its own runtime, scheduled against the flood server's process
/// the same way. Returns its rate and its CPU time per event (µs).
async fn drain_process(addr: SocketAddr, api: &str, log: &Log, n: usize) -> (f64, f64) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--bare-drain", &addr.to_string(), api, &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the bare client");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
    });
    assert_eq!(rx.recv().await.as_deref(), Some("subscribed"));
    let start = log.release().await;
    let done = rx.recv().await.expect("the bare client reports");
    let secs = start.elapsed().as_secs_f64();
    // It exits right after `done`; waited for off the flood server's workers.
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let cpu: f64 = done
        .strip_prefix("done ")
        .and_then(|c| c.parse().ok())
        .expect("done <cpu seconds>");
    (n as f64 / secs, cpu * 1e6 / n as f64)
}

/// The child side of [`drain_process`]: subscribes, says so, counts `n` messages,
/// then prints `done <CPU seconds spent counting>`.
fn bare_drain_main(addr: &str, api: &str, n: usize) {
    // The exporter's runtime: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let me = std::process::id();
        let (count, cpu) = subscribe_and_count(addr, api, n, || async {
            println!("subscribed");
            cpu_seconds(me)
        })
        .await;
        assert_eq!(count, n, "the drain received every message");
        println!("done {}", cpu_seconds(me) - cpu);
    });
}

// === the exporter ===

/// CPU time `pid` has used, user and system (seconds).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Time `pid`'s threads have run (ns, from their `schedstat`: precise, where
/// `cpu_seconds` counts 10-ms ticks).
fn run_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Returns once `pid` has finished its work: after its first stretch of
/// [`IDLE_AFTER`] using under a third of a core, after it was busy (sampled every
/// [`BUSY_SAMPLE`]). The exporter then only waits: the events it still holds for
/// Skaffold's order, and `/metrics` (which waits until the replay is folded), are
/// released by the pause that ends a replay (`core::order::WINDOW` of silence). Only
/// says when to start reading `/metrics`: the times come from `/metrics`.
async fn work_done(pid: u32) {
    let mut last = (Instant::now(), run_ns(pid));
    let mut busy = false;
    loop {
        tokio::time::sleep(BUSY_SAMPLE).await;
        let now = (Instant::now(), run_ns(pid));
        let used = now.1.saturating_sub(last.1) as f64 / (now.0 - last.0).as_nanos() as f64;
        if used > 1.0 / 3.0 {
            busy = true;
            last = now;
        } else if !busy {
            last = now;
        } else if now.0 - last.0 >= IDLE_AFTER {
            return;
        }
    }
}

/// How often `/metrics` is read once the exporter's work is done.
const POLL: Duration = Duration::from_millis(2);

/// How often [`work_done`] samples.
const BUSY_SAMPLE: Duration = Duration::from_millis(5);

/// How long the exporter must stay idle for its work to count as done (under the
/// 100-ms pause that ends a replay).
const IDLE_AFTER: Duration = Duration::from_millis(50);

/// (VmHWM, VmRSS) of `pid` in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    // OpenMetrics: served as encoded, without the conversion to the classic format.
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// Sum of every sample of `name` (any labels).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// What the exporter shows once it folded everything: (events folded, log events
/// skipped, invalid events).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Totals {
    events: f64,
    skipped: f64,
    invalid: f64,
}

fn totals(text: &str) -> Totals {
    Totals {
        events: sum(text, "skaffold_exporter_events_total"),
        skipped: sum(text, "skaffold_exporter_log_events_skipped_total"),
        invalid: sum(text, "skaffold_exporter_invalid_events_total"),
    }
}

/// The totals of folding `messages` once, in this process (the same library code).
fn expected(api: &str, messages: &[Bytes]) -> Totals {
    use skaffold_exporter::pipeline::{Built, Pipeline};
    let Built {
        pipeline: mut p,
        registry,
        ..
    } = Pipeline::builder().build().expect("no OTLP to start");
    for m in messages {
        if api == "v1" {
            p.fold_entry(&v1::LogEntry::decode(&m[..]).unwrap());
        } else {
            p.fold_v2(&v2::Event::decode(&m[..]).unwrap());
        }
    }
    let text = skaffold_exporter::sink::exposition::encode_openmetrics(&registry);
    totals(&text)
}

struct Exporter {
    child: Child,
    metrics: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ExporterRun {
    /// The exporter's CPU time per event, in µs (includes the polling of /metrics).
    cpu_us: f64,
    rate: f64,
    /// Events per second less the pause that ends a replay (`WINDOW` taken off its
    /// time): the rate at which it received, ordered and folded the events.
    unheld_rate: f64,
    max_rss: f64,
    idle_rss: f64,
    dropped: f64,
    invalid: f64,
    exact: bool,
}

async fn exporter(
    skaffold: SocketAddr,
    api: &str,
    log: &Log,
    n: usize,
    want: Totals,
) -> ExporterRun {
    let metrics = free_port();
    let child = Command::new(exporter_binary())
        .args(["--skaffold-addr", &skaffold.to_string()])
        .args(["--listen", &metrics.to_string()])
        .args(["--api", api])
        .args(extra_args())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the exporter (cargo bench builds it)");
    let exporter = Exporter { child, metrics };
    let pid = exporter.child.id();
    // Subscribed and idle: the flood server holds the replay until released.
    log.subscribed().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, idle_rss) = rss(pid);
    let cpu_before = cpu_seconds(pid);
    let start = log.release().await;
    // No scrape while the exporter works (a scrape is work for it, and Prometheus
    // scrapes every few seconds, not every few milliseconds): once its work is done,
    // /metrics is read every 2 ms until it shows every event.
    let _ = tokio::time::timeout(Duration::from_secs(60), tokio::spawn(work_done(pid))).await;
    // Until every event is folded, or nothing changed for 3 s (events were lost): the
    // time, and whether every event was folded.
    let mut last = (Totals::default(), Instant::now());
    let (secs, complete) = loop {
        if let Some(text) = scrape(exporter.metrics).await {
            let t = totals(&text);
            if t.events >= want.events && t.skipped >= want.skipped {
                break (start.elapsed().as_secs_f64(), true);
            }
            if t != last.0 {
                last = (t, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(3) {
                let folded = t.events + t.skipped;
                println!(
                    "  (the exporter stopped at {folded} of {} expected events + skipped logs)",
                    want.events + want.skipped
                );
                let secs =
                    (last.1 - start).as_secs_f64() * (want.events + want.skipped) / folded.max(1.0);
                break (secs, false);
            }
        }
        tokio::time::sleep(POLL).await;
    };
    let (max_rss, _) = rss(pid);
    let cpu = cpu_seconds(pid) - cpu_before;
    // Anything beyond the expected totals would be a double count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = scrape(exporter.metrics).await.unwrap_or_default();
    let got = totals(&text);
    ExporterRun {
        cpu_us: cpu * 1e6 / n as f64,
        rate: n as f64 / secs,
        // Only when every event was folded, after the pause (an extrapolated time
        // scaled the pause with the work).
        unheld_rate: if complete && secs > WINDOW.as_secs_f64() {
            n as f64 / (secs - WINDOW.as_secs_f64())
        } else {
            f64::NAN
        },
        max_rss,
        idle_rss,
        // Events the exporter never folded (0 when nothing was lost on the way in).
        dropped: (want.events + want.skipped - got.events - got.skipped).max(0.0),
        invalid: got.invalid,
        exact: got == want,
    }
}

/// Extra exporter flags (`--exporter-arg=--queue-capacity=1000000`), e.g. to compare.
fn extra_args() -> Vec<String> {
    std::env::args()
        .filter_map(|a| a.strip_prefix("--exporter-arg=").map(str::to_owned))
        .collect()
}

// === main ===

struct Args {
    events: usize,
    apis: Vec<&'static str>,
    rounds: usize,
    /// Run the bare client in this process (sharing the flood server's runtime)
    /// instead of in a process of its own.
    bare_in_process: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        apis: vec!["v1", "v2"],
        rounds: 3,
        bare_in_process: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => a.events = it.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--bare-in-process" => a.bare_in_process = true,
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--api" => {
                a.apis = match it.next().as_deref() {
                    Some("v1") => vec!["v1"],
                    Some("v2") => vec!["v2"],
                    _ => vec!["v1", "v2"],
                }
            }
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    a
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--bare-drain") {
        let n = argv[i + 3].parse().expect("--bare-drain ADDR API N");
        return bare_drain_main(&argv[i + 1], &argv[i + 2], n);
    }
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        for api in &args.apis {
            let messages = if *api == "v1" {
                v1_stream(args.events)
            } else {
                v2_stream(args.events)
            };
            let bytes: usize = messages.iter().map(Bytes::len).sum();
            let want = expected(api, &messages);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop_tx, mut stop) = watch::channel(false);
            let log = if *api == "v1" {
                let (svc, log) = flood::<V1Name>(messages);
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                            let _ = stop.wait_for(|s| *s).await;
                        }),
                );
                log
            } else {
                let (svc, log) = flood::<V2Name>(messages);
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                            let _ = stop.wait_for(|s| *s).await;
                        }),
                );
                log
            };
            println!(
                "api {api}: {} events ({:.1} MiB encoded), replayed to each subscriber, then held open",
                args.events,
                bytes as f64 / (1 << 20) as f64
            );
            let mut ratios = Vec::new();
            let mut unheld_ratios = Vec::new();
            for round in 1..=args.rounds {
                let me = std::process::id();
                // The bare client drains before and after the exporter's run, and its
                // rate is over the mean of the two times: a machine whose speed drifts
                // through the round (a VM's neighbours) favours neither side.
                let (bare1, cpu1, srv1) = bare_drain(addr, api, &log, &args).await;
                let cpu = cpu_seconds(me);
                let exp = exporter(addr, api, &log, args.events, want).await;
                // This process during the exporter's run: flood server (+ polling).
                let server_cpu = (cpu_seconds(me) - cpu) * 1e6 / args.events as f64;
                let (bare2, cpu2, srv2) = bare_drain(addr, api, &log, &args).await;
                let bare = 2.0 / (1.0 / bare1 + 1.0 / bare2);
                let bare_cpu = (cpu1 + cpu2) / 2.0;
                let drain_server_cpu = (srv1 + srv2) / 2.0;
                let ratio = exp.rate / bare;
                ratios.push(ratio);
                unheld_ratios.push(exp.unheld_rate / bare);
                println!(
                    "  round {round}: bare tonic {:>9.0} ev/s ({bare1:.0} before, {bare2:.0} after) | exporter {:>9.0} ev/s | ratio {:.2} | exporter max RSS {:.1} MiB, idle RSS {:.1} MiB | dropped {} | invalid {} | totals exact: {}",
                    bare, exp.rate, ratio, exp.max_rss, exp.idle_rss, exp.dropped, exp.invalid, exp.exact
                );
                if args.bare_in_process {
                    println!(
                        "           CPU per event: server + bare client (one process) {drain_server_cpu:.2} us; server {server_cpu:.2} us + exporter {:.2} us",
                        exp.cpu_us
                    );
                } else {
                    println!(
                        "           CPU per event: server {drain_server_cpu:.2} us + bare client {bare_cpu:.2} us; server {server_cpu:.2} us + exporter {:.2} us",
                        exp.cpu_us
                    );
                }
                println!(
                    "           less the pause that ends a replay ({} ms): exporter {:>9.0} ev/s | ratio {:.2}",
                    WINDOW.as_millis(),
                    exp.unheld_rate,
                    exp.unheld_rate / bare
                );
            }
            let (lo, hi, median, at_least) = summary(&mut ratios);
            println!(
                "  ratio range over {} rounds: {lo:.2}–{hi:.2}, median {median:.2}; at least 0.8 in {at_least} of {}",
                args.rounds, args.rounds
            );
            let (lo, hi, median, at_least) = summary(&mut unheld_ratios);
            println!(
                "  less the pause that ends a replay: {lo:.2}–{hi:.2}, median {median:.2}; at least 0.8 in {at_least} of {}",
                args.rounds
            );
            let _ = stop_tx.send(true);
        }
    });
}

/// One drain by the bare client: its rate, its CPU time per event
/// and this process's (the flood server's, and the bare client's when in process).
async fn bare_drain(addr: SocketAddr, api: &str, log: &Log, args: &Args) -> (f64, f64, f64) {
    let me = std::process::id();
    let cpu = cpu_seconds(me);
    let (bare, bare_cpu) = if args.bare_in_process {
        (drain(addr, api, log, args.events).await, f64::NAN)
    } else {
        drain_process(addr, api, log, args.events).await
    };
    (
        bare,
        bare_cpu,
        (cpu_seconds(me) - cpu) * 1e6 / args.events as f64,
    )
}

/// Range, median and how many reached 0.8, of `ratios` (sorted here).
fn summary(ratios: &mut [f64]) -> (f64, f64, f64, usize) {
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    let median = if ratios.len() % 2 == 1 {
        ratios[mid]
    } else {
        (ratios[mid - 1] + ratios[mid]) / 2.0
    };
    let at_least = ratios.iter().filter(|r| **r >= 0.8).count();
    (ratios[0], ratios[ratios.len() - 1], median, at_least)
}

/// Counts (decoded) messages of `s` until `n` arrived or the stream ended.
async fn count_messages<T>(mut s: tonic::Streaming<T>, n: usize) -> usize {
    let mut count = 0;
    while count < n {
        let Some(_message) = s.message().await.unwrap() else {
            break;
        };
        count += 1;
    }
    count
}
