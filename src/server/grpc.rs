//! The gRPC face of the exporter: `proto.SkaffoldService` with `GetState` passed
//! through to Skaffold byte for byte. Control RPCs (`Execute`, `Auto*`, `Handle`)
//! change what Skaffold does, so they are refused unless `--allow-control` is given;
//! `Events` is not proxied (subscribe to Skaffold directly). A call that Skaffold does
//! not answer within `--upstream-timeout` (or the caller's shorter deadline) ends with
//! DEADLINE_EXCEEDED; `GetState` answers up to [`MAX_STATE_BYTES`] pass.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::upstream::{GET_STATE, MAX_STATE_BYTES, RawCodec, Upstream};

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
    deadline: Duration,
}

impl UnaryService<Bytes> for Forward {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let upstream = self.upstream.clone();
        let (path, deadline) = (self.path, self.deadline);
        Box::pin(async move {
            upstream
                .unary_within(path, req.into_inner(), deadline)
                .await
        })
    }
}

/// A caller's `grpc-timeout` header (`100m`, `5S`, ...), if valid.
fn caller_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long a forwarded call may take: our `--upstream-timeout`, or a little less than
/// the caller's own deadline when that is shorter, so that the caller hears
/// DEADLINE_EXCEEDED from us rather than CANCELLED from tonic's timer.
fn forward_deadline(ours: Duration, caller: Option<Duration>) -> Duration {
    match caller {
        Some(c) if c < ours => c.saturating_sub(CALLER_MARGIN.min(c / 10)),
        _ => ours,
    }
}

/// How much earlier than a caller's deadline a forwarded call gives up.
const CALLER_MARGIN: Duration = Duration::from_millis(20);

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
        let deadline = forward_deadline(upstream.deadline(), caller_timeout(req.headers()));
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let forward = move |path: &'static str| Forward {
                upstream,
                path,
                deadline,
            };
            let res = if path == GET_STATE {
                // A large project's state is passed back unchanged, up to its own cap.
                let mut grpc = grpc
                    .max_decoding_message_size(MAX_STATE_BYTES)
                    .max_encoding_message_size(MAX_STATE_BYTES);
                grpc.unary(forward(GET_STATE), req).await
            } else if let Some(path) = CONTROL.iter().find(|p| **p == path) {
                if allow_control {
                    grpc.unary(forward(path), req).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_shorter_deadline_wins_with_a_margin() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            caller_timeout(&m)
        };
        assert_eq!(h("100m"), Some(Duration::from_millis(100)));
        assert_eq!(h("2S"), Some(Duration::from_secs(2)));
        assert_eq!(h("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(h("5x"), None);
        assert_eq!(h("m"), None);
        assert_eq!(caller_timeout(&http::HeaderMap::new()), None);
        let ours = Duration::from_secs(5);
        assert_eq!(forward_deadline(ours, None), ours);
        assert_eq!(forward_deadline(ours, Some(Duration::from_secs(9))), ours);
        assert_eq!(
            forward_deadline(ours, Some(Duration::from_secs(1))),
            Duration::from_millis(980)
        );
        assert_eq!(
            forward_deadline(ours, Some(Duration::from_millis(50))),
            Duration::from_millis(45)
        );
    }
}
