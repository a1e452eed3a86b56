//! The gRPC face of the exporter: `proto.SkaffoldService` with `GetState` passed
//! through to Skaffold byte for byte. Control RPCs (`Execute`, `Auto*`, `Handle`)
//! change what Skaffold does, so they are refused unless `--allow-control` is given;
//! `Events` is not proxied (subscribe to Skaffold directly).

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::skaffold::{RawCodec, Upstream};

/// The passthrough service.
#[derive(Debug, Clone)]
pub struct Passthrough {
    upstream: Upstream,
    allow_control: bool,
}

impl Passthrough {
    /// Forwards to `upstream`; control RPCs only with `allow_control`.
    pub fn new(upstream: Upstream, allow_control: bool) -> Self {
        Self {
            upstream,
            allow_control,
        }
    }
}

impl NamedService for Passthrough {
    const NAME: &'static str = "proto.SkaffoldService";
}

const CONTROL: [&str; 5] = [
    "/proto.SkaffoldService/Execute",
    "/proto.SkaffoldService/AutoBuild",
    "/proto.SkaffoldService/AutoSync",
    "/proto.SkaffoldService/AutoDeploy",
    "/proto.SkaffoldService/Handle",
];

struct Forward {
    upstream: Upstream,
    path: &'static str,
}

impl UnaryService<Bytes> for Forward {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let upstream = self.upstream.clone();
        let path = self.path;
        Box::pin(async move { upstream.unary(path, req.into_inner()).await })
    }
}

impl<B> tower_service::Service<http::Request<B>> for Passthrough
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let upstream = self.upstream.clone();
        let allow_control = self.allow_control;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let res = if path == "/proto.SkaffoldService/GetState" {
                let path = "/proto.SkaffoldService/GetState";
                grpc.unary(Forward { upstream, path }, req).await
            } else if let Some(path) = CONTROL.iter().find(|p| **p == path) {
                if allow_control {
                    grpc.unary(Forward { upstream, path }, req).await
                } else {
                    Status::permission_denied(format!(
                        "{path} changes what Skaffold does and is not forwarded; start skaffold-exporter with --allow-control to forward it"
                    ))
                    .into_http()
                }
            } else {
                Status::unimplemented(format!(
                    "{path} is not proxied by skaffold-exporter; subscribe to Skaffold's own port for event streams"
                ))
                .into_http()
            };
            Ok(res)
        })
    }
}
