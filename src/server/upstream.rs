//! A byte-level gRPC client to Skaffold for the passthrough: requests and responses
//! are forwarded as the encoded bytes, never decoded and re-encoded, so fields newer
//! than our proto reach the caller intact.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::source::gateway::GatewayError;

/// Skaffold's `GetState`.
pub const GET_STATE: &str = "/proto.SkaffoldService/GetState";

/// The largest `GetState` answer passed through (64 MiB): Skaffold's state grows with
/// every artifact and resource, and Skaffold's gRPC server sends up to 2 GiB, so the
/// 4 MiB gRPC default would refuse a large project's state. Only `GetState` gets this
/// cap; control RPCs keep the default, the event streams their own cap.
pub const MAX_STATE_BYTES: usize = 64 << 20;

/// The message of tonic's own `grpc-timeout` timer (reported as CANCELLED).
const TIMEOUT_EXPIRED: &str = "Timeout expired";

/// A codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Skaffold's gRPC endpoint, connected lazily (and its HTTP gateway, when the
/// exporter reads from it: `/v1/state` then comes from the gateway).
#[derive(Debug, Clone)]
pub struct Upstream {
    addr: String,
    channel: Channel,
    deadline: Duration,
    gateway: Option<crate::source::gateway::GatewayClient>,
}

impl Upstream {
    /// A lazily connected client for `addr` (`host:port`); every call gets `deadline`.
    pub fn new(addr: &str, deadline: Duration) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(deadline)
            .connect_lazy();
        Ok(Self {
            addr: addr.to_owned(),
            channel,
            deadline,
            gateway: None,
        })
    }

    /// Fetch `/v1/state` from Skaffold's HTTP gateway at `base` instead of gRPC.
    pub fn with_gateway(mut self, base: http::Uri) -> Self {
        self.gateway = Some(crate::source::gateway::GatewayClient::new(base));
        self
    }

    /// Skaffold's `/v1/state` from its HTTP gateway, passed through unchanged:
    /// `None` when no gateway is configured; else the HTTP status and body, or
    /// DEADLINE_EXCEEDED / UNAVAILABLE.
    pub async fn gateway_state(&self) -> Option<Result<(http::StatusCode, Bytes), Status>> {
        let gw = self.gateway.as_ref()?;
        Some(
            gw.get_body("/v1/state", self.deadline)
                .await
                .map_err(|e| match e {
                    GatewayError::Timeout(m) => Status::deadline_exceeded(m),
                    GatewayError::Failed(m) => Status::unavailable(m),
                }),
        )
    }

    /// Calls a unary method with raw request bytes and returns the raw response bytes.
    /// Answers and requests are limited to tonic's default 4 MiB, except `GetState`'s
    /// (up to [`MAX_STATE_BYTES`]).
    pub async fn unary(&self, path: &'static str, body: Bytes) -> Result<Response<Bytes>, Status> {
        self.unary_within(path, body, self.deadline).await
    }

    /// As [`Upstream::unary`], within `deadline` (the shorter of ours and the caller's).
    pub async fn unary_within(
        &self,
        path: &'static str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Response<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if path == GET_STATE {
            grpc = grpc
                .max_decoding_message_size(MAX_STATE_BYTES)
                .max_encoding_message_size(MAX_STATE_BYTES);
        }
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| self.unavailable(&e.to_string()))?;
            let mut req = Request::new(body);
            // Skaffold learns the deadline too (grpc-timeout).
            req.set_timeout(deadline);
            grpc.unary(req, PathAndQuery::from_static(path), RawCodec)
                .await
        };
        let res = match tokio::time::timeout(deadline, call).await {
            Ok(res) => res,
            Err(_) => return Err(self.deadline_exceeded_after(deadline)),
        };
        res.map_err(|s| match s.code() {
            // tonic reports its own grpc-timeout timer as CANCELLED "Timeout expired".
            tonic::Code::DeadlineExceeded => self.deadline_exceeded_after(deadline),
            tonic::Code::Cancelled if s.message() == TIMEOUT_EXPIRED => {
                self.deadline_exceeded_after(deadline)
            }
            tonic::Code::Unavailable => self.unavailable(s.message()),
            tonic::Code::Unknown if s.message().contains("transport") => {
                self.unavailable(s.message())
            }
            _ => s,
        })
    }

    /// Fetches Skaffold's `State` as encoded bytes.
    pub async fn get_state(&self) -> Result<Bytes, Status> {
        Ok(self.unary(GET_STATE, Bytes::new()).await?.into_inner())
    }

    /// The deadline every call gets.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn deadline_exceeded_after(&self, deadline: Duration) -> Status {
        Status::deadline_exceeded(format!(
            "Skaffold at {} did not answer within {} ms",
            self.addr,
            deadline.as_millis()
        ))
    }

    fn unavailable(&self, detail: &str) -> Status {
        Status::unavailable(format!(
            "Skaffold is not reachable at {} ({detail}); is `skaffold dev --rpc-port` running?",
            self.addr
        ))
    }
}
