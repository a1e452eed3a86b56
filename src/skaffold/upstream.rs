//! A byte-level gRPC client to Skaffold for the passthrough: requests and responses
//! are forwarded as the encoded bytes, never decoded and re-encoded, so fields newer
//! than our proto reach the caller intact. `/v1/state` comes from the HTTP gateway
//! instead when the exporter reads events from it.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::codec::RawCodec;
use super::gateway::GatewayClient;

/// Skaffold's gRPC endpoint, connected lazily (and its HTTP gateway, when the
/// exporter reads from it: `/v1/state` then comes from the gateway).
#[derive(Debug, Clone)]
pub struct Upstream {
    addr: String,
    channel: Channel,
    deadline: Duration,
    gateway: Option<GatewayClient>,
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
        self.gateway = Some(GatewayClient::new(base));
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
