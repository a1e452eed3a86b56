//! Subscribes to Skaffold's `Events` stream over gRPC, API v1
//! (`proto.SkaffoldService`) or v2 (`proto.v2.SkaffoldV2Service`), and keeps
//! subscribing through [`supervisor::run`]: Skaffold may not be up yet, may restart,
//! or may exit.
//!
//! Messages are read as raw bytes and decoded here: the fingerprint for replay
//! de-duplication is the hash of the bytes Skaffold sent, a message our proto cannot
//! decode is counted instead of ending the stream, and v2 log events are skipped
//! before decoding (see [`super::wire`]).
//!
//! `--api auto` tries v2 first: UNIMPLEMENTED (Skaffold before v1.22) or the
//! pre-v1.26 layout switch to v1. The choice is kept for the life of the exporter, so
//! one Skaffold process is never read through both APIs (which would count twice). A
//! v2 stream in the pre-v1.26 layout is not dropped but read to its end (see
//! [`supervisor`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};

use super::supervisor::{self, Connector, EventStream, Received, Retry, StreamError};
use super::wire::{PeekError, peek_v2};
use super::{Api, Payload, SourceMessage, V2_SALT, fingerprint_bytes};
use crate::core::InvalidEvent;
use crate::pb::{v1, v2};
use crate::server::upstream::RawCodec;
use crate::sink::SelfMetrics;

/// Largest message accepted from Skaffold (ActionableErr texts can be long).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Shared view of the reader's progress, for readiness.
#[derive(Debug, Default)]
pub struct Progress {
    /// Subscribed right now.
    pub connected: AtomicBool,
    /// Entries received from Skaffold on all streams.
    pub received: AtomicU64,
    /// Entries the fold has handled (or that were dropped).
    pub handled: AtomicU64,
    /// The last attempt to (re)connect failed: Skaffold is gone, not just a stream.
    pub unreachable: AtomicBool,
}

impl Progress {
    /// Connected, at least one entry received, and everything received folded: the
    /// replay Skaffold sends on connect has been taken in.
    pub fn ready(&self) -> bool {
        let received = self.received.load(Ordering::Acquire);
        self.connected.load(Ordering::Acquire)
            && received > 0
            && self.handled.load(Ordering::Acquire) >= received
    }
}

/// How to reach Skaffold.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of Skaffold's gRPC server.
    pub addr: String,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Which event API.
    pub api: Api,
}

/// Runs until `shutdown` turns true or the fold's queue closes.
pub async fn run(
    cfg: Config,
    tx: mpsc::Sender<SourceMessage>,
    progress: Arc<Progress>,
    metrics: SelfMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let retry = Retry {
        min: cfg.backoff_min,
        max: cfg.backoff_max,
    };
    let connector = GrpcConnector::new(&cfg.addr, cfg.api);
    supervisor::run(connector, retry, tx, progress, metrics, shutdown).await;
}

/// gRPC path of v1 `Events`.
pub const V1_EVENTS: &str = "/proto.SkaffoldService/Events";
/// gRPC path of v2 `Events`.
pub const V2_EVENTS: &str = "/proto.v2.SkaffoldV2Service/Events";

/// Opens `Events` streams on Skaffold's gRPC port.
#[derive(Debug)]
pub struct GrpcConnector {
    addr: String,
    api: Api,
    chosen: Option<Api>,
}

impl GrpcConnector {
    /// A connector for `addr` (`host:port`).
    pub fn new(addr: &str, api: Api) -> Self {
        Self {
            addr: addr.to_owned(),
            api,
            chosen: match api {
                Api::Auto => None,
                other => Some(other),
            },
        }
    }

    /// The API in use (`None` while `auto` has not decided yet).
    pub fn chosen(&self) -> Option<Api> {
        self.chosen
    }
}

async fn open(channel: Channel, api: Api) -> Result<tonic::Streaming<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = if api == Api::V1 { V1_EVENTS } else { V2_EVENTS };
    // The request is google.protobuf.Empty: zero bytes.
    let req = tonic::Request::new(Bytes::new());
    Ok(grpc
        .server_streaming(req, PathAndQuery::from_static(path), RawCodec)
        .await?
        .into_inner())
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Connector for GrpcConnector {
    type Stream = GrpcStream;

    fn target(&self) -> String {
        format!("grpc://{} (api {})", self.addr, self.api.as_str())
    }

    async fn connect(&mut self) -> Result<GrpcStream, String> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // No HTTP/2 keep-alive pings: grpc-go servers (Skaffold) answer pings more
            // frequent than every 5 minutes with GOAWAY, which would cut the stream.
            .connect()
            .await
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            })?;
        let api = self.chosen.unwrap_or(Api::V2);
        match open(channel.clone(), api).await {
            Ok(inner) => {
                if self.chosen.is_none() {
                    tracing::info!(addr = %self.addr, "Skaffold offers event API v2; using it (--api auto).");
                    self.chosen = Some(api);
                }
                Ok(GrpcStream { inner, api })
            }
            Err(status) if status.code() == tonic::Code::Unimplemented && api == Api::V2 => {
                if self.api == Api::V2 {
                    return Err(format!(
                        "Skaffold at {} does not offer event API v2 ({}; Skaffold older than v1.22?): use --api v1 or --api auto",
                        self.addr,
                        describe(&status)
                    ));
                }
                tracing::info!(addr = %self.addr, "Skaffold does not offer event API v2 (older than v1.22); using v1 (--api auto).");
                self.chosen = Some(Api::V1);
                let inner = open(channel, Api::V1).await.map_err(|s| describe(&s))?;
                Ok(GrpcStream {
                    inner,
                    api: Api::V1,
                })
            }
            Err(status) => Err(describe(&status)),
        }
    }

    fn stream_failed(&mut self, err: &StreamError) -> bool {
        if matches!(err, StreamError::Incompatible(_) | StreamError::Missing(_))
            && self.api == Api::Auto
            && self.chosen != Some(Api::V1)
        {
            tracing::warn!(addr = %self.addr, "Falling back to event API v1 (--api auto).");
            self.chosen = Some(Api::V1);
            return true;
        }
        false
    }
}

/// An open `Events` stream, v1 or v2.
#[derive(Debug)]
pub struct GrpcStream {
    inner: tonic::Streaming<Bytes>,
    api: Api,
}

/// Decodes one raw message of `api`'s stream.
pub fn decode_raw(api: Api, bytes: &[u8]) -> Result<Received, StreamError> {
    if api == Api::V1 {
        let payload = match v1::LogEntry::decode(bytes) {
            Ok(entry) => Payload::V1(entry),
            Err(e) => Payload::Invalid(InvalidEvent::Undecodable(e.to_string())),
        };
        return Ok(Received {
            fingerprint: fingerprint_bytes(bytes),
            payload,
        });
    }
    let fingerprint = fingerprint_bytes(bytes) ^ V2_SALT;
    let payload = match peek_v2(bytes) {
        Ok(super::wire::Peek::SkipLog(kind)) => Payload::SkippedLog(kind),
        Ok(super::wire::Peek::Decode) => match v2::Event::decode(bytes) {
            Ok(ev) => Payload::V2(ev),
            Err(e) => Payload::Invalid(InvalidEvent::Undecodable(e.to_string())),
        },
        Err(e @ PeekError::OldLayout(_)) => return Err(StreamError::Incompatible(e.to_string())),
        Err(e @ PeekError::Malformed(_)) => {
            Payload::Invalid(InvalidEvent::Undecodable(e.to_string()))
        }
    };
    Ok(Received {
        fingerprint,
        payload,
    })
}

impl EventStream for GrpcStream {
    async fn next(&mut self) -> Result<Option<Received>, StreamError> {
        match self.inner.message().await {
            Ok(Some(bytes)) => decode_raw(self.api, &bytes).map(Some),
            Ok(None) => Ok(None),
            Err(status) => Err(StreamError::Failed(describe(&status))),
        }
    }
}
