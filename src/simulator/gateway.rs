//! The simulated Skaffold's HTTP gateway (what `--rpc-http-port` serves): `GET
//! /v1/events` and `/v2/events` stream newline-delimited `{"result": <message>}`
//! chunks, one per event, flushed per message, in the grpc-gateway v2 marshaling of
//! Skaffold v1.33+ (proto field names, so `task_id` stays snake_case; every field
//! emitted; enums by name; RFC 3339 timestamps). A stream error becomes a final
//! `{"error": ...}` chunk. `GET /v1/state` returns the bare `State` JSON.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::Simulator;
use crate::source::json::{message_to_json, state_json_from_bytes};

/// Shape of the error chunk the simulated gateway ends a stream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// grpc-gateway v1 (Skaffold < v1.33): `{"error":{"grpc_code","http_code","message","http_status","details"}}`.
    GatewayV1,
    /// grpc-gateway v2 (Skaffold >= v1.33): a `google.rpc.Status`, `{"error":{"code","message","details"}}`.
    GatewayV2,
}

/// The error chunk for gRPC `code` and `message`, in `shape`.
pub fn error_chunk(shape: ErrorShape, code: i32, message: &str) -> Value {
    match shape {
        ErrorShape::GatewayV1 => json!({"error": {
            "grpc_code": code, "http_code": 500, "message": message,
            "http_status": "Internal Server Error", "details": []
        }}),
        ErrorShape::GatewayV2 => {
            json!({"error": {"code": code, "message": message, "details": []}})
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()).boxed())
        .expect("static headers are valid")
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Streams a subscription as gateway chunks: `render` turns each item into the
/// result's JSON; a stream error or an injected fault ends it with an error chunk.
fn stream<T: Send + 'static>(
    sim: &Simulator,
    mut items: ReceiverStream<Result<T, tonic::Status>>,
    render: impl Fn(T) -> Option<Value> + Send + 'static,
) -> Response<Body> {
    let fault = sim.take_gateway_fault();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let mut sent = 0u64;
        while let Some(item) = items.next().await {
            if let Some((after, shape)) = fault
                && sent >= after
            {
                let _ = tx
                    .send(line(&error_chunk(
                        shape,
                        13,
                        "transport: the stream is done or WriteHeader was already called",
                    )))
                    .await;
                return;
            }
            let chunk = match item {
                Ok(v) => match render(v) {
                    Some(v) => json!({ "result": v }),
                    None => continue,
                },
                Err(status) => {
                    let _ = tx
                        .send(line(&error_chunk(
                            ErrorShape::GatewayV2,
                            status.code() as i32,
                            status.message(),
                        )))
                        .await;
                    return;
                }
            };
            if tx.send(line(&chunk)).await.is_err() {
                return;
            }
            sent += 1;
        }
    });
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(body))
        .expect("static headers are valid")
}

async fn handle<B>(sim: Arc<Simulator>, req: Request<B>) -> Response<Body> {
    if req.method() != Method::GET {
        return full(
            StatusCode::NOT_IMPLEMENTED,
            r#"{"code":12,"message":"Method Not Allowed"}"#,
        );
    }
    match req.uri().path() {
        "/v1/events" => stream(&sim, sim.subscribe(), |e| {
            message_to_json("proto.LogEntry", &e.encode_to_vec(), true, true).ok()
        }),
        "/v2/events" if sim.v2_enabled() => stream(&sim, sim.subscribe_v2(), |b| {
            message_to_json("proto.v2.Event", &b, true, true).ok()
        }),
        "/v1/state" => match state_json_from_bytes(&sim.state().encode_to_vec()) {
            Ok(v) => full(StatusCode::OK, v.to_string()),
            Err(e) => full(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"code": 13, "message": e.to_string()}).to_string(),
            ),
        },
        _ => full(StatusCode::NOT_FOUND, r#"{"code":5,"message":"Not Found"}"#),
    }
}

impl Simulator {
    /// Serves the HTTP gateway on `listener` until `shutdown` turns true.
    pub async fn serve_gateway(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let sim = Arc::new(self);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let sim = sim.clone();
                    let svc = service_fn(move |req| {
                        let sim = sim.clone();
                        async move { Ok::<_, Infallible>(handle(sim, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    }
}
