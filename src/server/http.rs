//! The HTTP server: `/metrics` (OpenMetrics, or Prometheus text 0.0.4 when the
//! scraper does not ask for OpenMetrics; gzip when accepted), `/healthz`, `/readyz`,
//! `/v1/state` and a landing page. One task per connection, a header-read timeout and
//! a connection limit (see [`Limits`]); graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::pipeline::Progress;
use crate::sink::exposition;
use crate::skaffold::Upstream;
use crate::source::json::state_json_from_bytes;

/// What the handlers read.
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// The reader's progress (readiness).
    pub progress: Arc<Progress>,
    /// Skaffold, for `/v1/state`.
    pub upstream: Option<Upstream>,
    /// `/metrics` waits until Skaffold's replay is folded (`Progress::history_folded`,
    /// see `crate::catch_up`), so a restarted exporter is never scraped half-way
    /// through re-folding the history (a value below the last scrape reads as a
    /// counter reset). `false`: serve at once (`replay --serve`).
    pub wait_for_history: bool,
}

/// How long `/metrics` waits for the replay to be folded before answering 503 (the
/// gate opens at the latest `catch_up::BOUND` after the start).
pub const METRICS_WAIT: Duration = Duration::from_secs(6);

/// Whether `/metrics` may answer now: the replay is folded, or Skaffold cannot be
/// reached (nothing to wait for: the series at zero and `connected 0` are the news).
fn metrics_ready(shared: &Shared) -> bool {
    let p = &shared.progress;
    !shared.wait_for_history
        || p.history_folded.is_open()
        || (p.unreachable.load(Ordering::Acquire) && !p.connected.load(Ordering::Acquire))
}

const LANDING: &str = "<!doctype html><html><head><title>skaffold-exporter</title></head><body>\
<h1>skaffold-exporter</h1><p>Skaffold's dev loop as Prometheus metrics.</p><ul>\
<li><a href=\"/metrics\">/metrics</a>: metrics (OpenMetrics or Prometheus text)</li>\
<li><a href=\"/healthz\">/healthz</a>: liveness</li>\
<li><a href=\"/readyz\">/readyz</a>: ready once subscribed and Skaffold's replay is folded</li>\
<li><a href=\"/v1/state\">/v1/state</a>: Skaffold's state (HTTP gateway JSON)</li>\
</ul></body></html>\n";

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

/// Answers one request. Generic over the body so tests can call it without a socket.
pub async fn handle<B>(shared: &Shared, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let deadline = tokio::time::Instant::now() + METRICS_WAIT;
            while !metrics_ready(shared) {
                if tokio::time::Instant::now() >= deadline {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain; charset=utf-8",
                        "still folding Skaffold's replay\n",
                    );
                }
                // Woken when the gate opens; Skaffold found unreachable is looked
                // for every 10 ms.
                tokio::select! {
                    () = shared.progress.history_folded.wait_open() => {}
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            metrics(shared, req.headers())
        }
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            if shared.progress.ready() {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "not ready: not subscribed to Skaffold yet, or still folding its replay\n",
                )
            }
        }
        "/v1/state" => state(shared).await,
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; see /\n",
        ),
    }
}

async fn state(shared: &Shared) -> Response<Full<Bytes>> {
    let json = "application/json";
    let Some(upstream) = &shared.upstream else {
        return text(
            StatusCode::NOT_FOUND,
            json,
            "{\"error\":\"no Skaffold address configured\"}\n",
        );
    };
    if let Some(res) = upstream.gateway_state().await {
        // The gateway already speaks the JSON we serve: pass its answer through.
        return match res {
            Ok((status, body)) => text(status, json, body),
            Err(status) => upstream_error(&status),
        };
    }
    match upstream.get_state().await {
        Ok(bytes) => match state_json_from_bytes(&bytes) {
            Ok(v) => text(StatusCode::OK, json, format!("{v}\n")),
            Err(e) => {
                let body = serde_json::json!({"error": format!("Skaffold's state could not be decoded: {e}")});
                text(StatusCode::BAD_GATEWAY, json, format!("{body}\n"))
            }
        },
        Err(status) => upstream_error(&status),
    }
}

/// `/v1/state` when Skaffold did not answer: 504 when it did not answer in time, else
/// 503; the body names the cause and the gRPC code.
fn upstream_error(status: &tonic::Status) -> Response<Full<Bytes>> {
    let code = if status.code() == tonic::Code::DeadlineExceeded {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"error": status.message(), "grpc_code": status.code() as i32});
    text(code, "application/json", format!("{body}\n"))
}

/// `/metrics` in the format the scraper prefers, gzipped when it accepts gzip.
fn metrics(shared: &Shared, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(format) = exposition::negotiate(header(header::ACCEPT)) else {
        return text(
            StatusCode::NOT_ACCEPTABLE,
            "text/plain; charset=utf-8",
            format!(
                "Accept excludes both formats served: {} and {}\n",
                exposition::OPENMETRICS_CONTENT_TYPE,
                exposition::PROMETHEUS_CONTENT_TYPE
            ),
        );
    };
    let om = exposition::encode_openmetrics(&shared.registry);
    let (content_type, body) = match format {
        exposition::Format::OpenMetrics => (exposition::OPENMETRICS_CONTENT_TYPE, om),
        exposition::Format::Prometheus => (
            exposition::PROMETHEUS_CONTENT_TYPE,
            exposition::openmetrics_to_prometheus(&om),
        ),
    };
    let gzip = exposition::accepts_gzip(header(header::ACCEPT_ENCODING));
    let body: Bytes = if gzip {
        exposition::gzip(body.as_bytes()).into()
    } else {
        body.into()
    };
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::VARY, "Accept, Accept-Encoding");
    if gzip {
        resp = resp.header(header::CONTENT_ENCODING, "gzip");
    }
    resp.body(Full::new(body))
        .expect("static headers are valid")
}

/// Limits that keep `/metrics` and `/healthz` answering while clients hold
/// connections open without finishing a request (slowloris).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections held at once. A new connection beyond it closes the oldest one
    /// that is not in the middle of a request (a client still sending its headers, or
    /// an idle keep-alive); when every one is, the new connection is closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (also an idle
    /// keep-alive's limit).
    pub header_read_timeout: Duration,
}

/// The default header-read timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections held, when the file-descriptor limit allows it.
pub const MAX_CONNECTIONS: usize = 512;

impl Default for Limits {
    /// [`MAX_CONNECTIONS`], or half the soft file-descriptor limit when that is lower
    /// (the other half is for Skaffold, the collector and files), and
    /// [`HEADER_READ_TIMEOUT`].
    fn default() -> Self {
        #[cfg(unix)]
        let fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        #[cfg(not(unix))]
        let fds = usize::MAX;
        Self {
            max_connections: (fds / 2).clamp(8, MAX_CONNECTIONS),
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// The open connections, oldest first: whether each is handling a request, and the
/// handle that closes it when dropped.
#[derive(Debug, Default)]
struct Connections {
    next: u64,
    open: std::collections::BTreeMap<u64, (Arc<AtomicBool>, oneshot::Sender<()>)>,
}

impl Connections {
    /// Makes room for one more connection within `max`: closes the oldest connection
    /// not handling a request. `false` when every connection is busy.
    fn make_room(&mut self, max: usize) -> bool {
        if self.open.len() < max {
            return true;
        }
        let idle = self
            .open
            .iter()
            .find(|(_, (busy, _))| !busy.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match idle {
            Some(id) => {
                self.open.remove(&id);
                true
            }
            None => false,
        }
    }

    fn add(&mut self, busy: Arc<AtomicBool>) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (busy, tx));
        (id, rx)
    }
}

/// Serves until `shutdown` turns true, then lets open requests finish (up to 5 s),
/// with the default [`Limits`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    serve_with(listener, shared, shutdown, Limits::default()).await;
}

/// Serves until `shutdown` turns true, then lets open requests finish (up to 5 s).
/// Warns once when it listens on an address other hosts can reach.
pub async fn serve_with(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) {
    if let Ok(addr) = listener.local_addr()
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            listen = %addr,
            "Serving /metrics and /v1/state on a non-loopback address: anyone who can reach it can read Skaffold's state. Use --listen 127.0.0.1:PORT unless the network is trusted."
        );
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(std::sync::Mutex::new(Connections::default()));
    let mut shed_logged = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accepting an HTTP connection failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let busy = Arc::new(AtomicBool::new(false));
                let (id, closed) = {
                    let mut c = connections.lock().expect("never poisoned");
                    if !c.make_room(limits.max_connections) {
                        if !shed_logged {
                            shed_logged = true;
                            tracing::warn!(max = limits.max_connections, "Every HTTP connection is busy; closing new ones until one ends.");
                        }
                        continue;
                    }
                    c.add(busy.clone())
                };
                let shared = shared.clone();
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    let busy = busy.clone();
                    async move {
                        busy.store(true, Ordering::Release);
                        let resp = handle(&shared, req).await;
                        busy.store(false, Ordering::Release);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                let connections = connections.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(error = %e, "HTTP connection ended with an error.");
                        },
                        // Closed to make room for a newer connection.
                        _ = closed => {}
                    }
                    connections.lock().expect("never poisoned").open.remove(&id);
                });
            }
        }
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after 5 s; closing them.");
    }
}
