//! A byte-level gRPC client to Skaffold for the passthrough: requests and responses
//! are forwarded as the encoded bytes, never decoded and re-encoded, so fields newer
//! than our proto reach the caller intact.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

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
    /// `None` when no gateway is configured; else the HTTP status and body.
    pub async fn gateway_state(&self) -> Option<Result<(http::StatusCode, Bytes), String>> {
        let gw = self.gateway.as_ref()?;
        Some(gw.get_body("/v1/state", self.deadline).await)
    }

    /// Calls a unary method with raw request bytes and returns the raw response bytes.
    pub async fn unary(&self, path: &'static str, body: Bytes) -> Result<Response<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| self.unavailable(&e.to_string()))?;
        let mut req = Request::new(body);
        req.set_timeout(self.deadline);
        grpc.unary(req, PathAndQuery::from_static(path), RawCodec)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown
                    if s.message().contains("transport")
                        || s.code() == tonic::Code::Unavailable =>
                {
                    self.unavailable(s.message())
                }
                tonic::Code::DeadlineExceeded => Status::deadline_exceeded(format!(
                    "Skaffold at {} did not answer within {:?}",
                    self.addr, self.deadline
                )),
                _ => s,
            })
    }

    /// Fetches Skaffold's `State` as encoded bytes.
    pub async fn get_state(&self) -> Result<Bytes, Status> {
        Ok(self
            .unary("/proto.SkaffoldService/GetState", Bytes::new())
            .await?
            .into_inner())
    }

    fn unavailable(&self, detail: &str) -> Status {
        Status::unavailable(format!(
            "Skaffold is not reachable at {} ({detail}); is `skaffold dev --rpc-port` running?",
            self.addr
        ))
    }
}
