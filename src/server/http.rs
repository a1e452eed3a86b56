//! The HTTP server: `/metrics` (OpenMetrics, or Prometheus text 0.0.4 when the
//! scraper does not ask for OpenMetrics), `/healthz`, `/readyz`, `/v1/state` and a
//! landing page. One task per connection; graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let om = exposition::encode_openmetrics(&shared.registry);
            if exposition::wants_openmetrics(accept) {
                text(StatusCode::OK, exposition::OPENMETRICS_CONTENT_TYPE, om)
            } else {
                let body = exposition::openmetrics_to_prometheus(&om);
                text(StatusCode::OK, exposition::PROMETHEUS_CONTENT_TYPE, body)
            }
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
            Err(e) => {
                let body = serde_json::json!({ "error": e });
                text(StatusCode::SERVICE_UNAVAILABLE, json, format!("{body}\n"))
            }
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
        Err(status) => {
            let code = if status.code() == tonic::Code::DeadlineExceeded {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body =
                serde_json::json!({"error": status.message(), "grpc_code": status.code() as i32});
            text(code, json, format!("{body}\n"))
        }
    }
}

/// Serves until `shutdown` turns true, then lets open requests finish (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                let shared = shared.clone();
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "HTTP connection ended with an error.");
                    }
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
