//! The gRPC passthrough: `GetState` reaches Skaffold and comes back byte for byte
//! (a field newer than our proto survives), control RPCs are refused unless
//! `--allow-control`, an unreachable Skaffold is a clear UNAVAILABLE, one that never
//! answers (gRPC or gateway) a 504 / DEADLINE_EXCEEDED, and a `GetState` over 4 MiB
//! passes unchanged.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prost::Message;
use skaffold_exporter::app;
use skaffold_exporter::config::Settings;
use skaffold_exporter::pb::v1;
use skaffold_exporter::skaffold::{RawCodec, Upstream};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// A Skaffold whose GetState answers fixed bytes and which counts Execute calls.
#[derive(Clone)]
struct FakeSkaffold {
    state: Bytes,
    executes: Arc<AtomicUsize>,
}

struct Reply(Bytes);

impl UnaryService<Bytes> for Reply {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;
    fn call(&mut self, _req: Request<Bytes>) -> Self::Future {
        let b = self.0.clone();
        Box::pin(async move { Ok(Response::new(b)) })
    }
}

impl NamedService for FakeSkaffold {
    const NAME: &'static str = "proto.SkaffoldService";
}

impl<B> tower_service::Service<http::Request<B>> for FakeSkaffold
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(match req.uri().path() {
                "/proto.SkaffoldService/GetState" => grpc.unary(Reply(this.state), req).await,
                "/proto.SkaffoldService/Execute" => {
                    this.executes.fetch_add(1, Ordering::SeqCst);
                    grpc.unary(Reply(Bytes::new()), req).await
                }
                _ => Status::unimplemented("fake").into_http(),
            })
        })
    }
}

/// A State with a field (number 100) that our proto does not define.
fn state_with_future_field() -> Bytes {
    let mut bytes = v1::State {
        deploy_state: Some(v1::DeployState {
            status: "Complete".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    // field 100, wire type 2 (length-delimited): key varint 802 = [0xA2, 0x06]
    bytes.extend_from_slice(&[0xA2, 0x06, 6]);
    bytes.extend_from_slice(b"future");
    Bytes::from(bytes)
}

async fn fake_skaffold(state: Bytes) -> (SocketAddr, Arc<AtomicUsize>) {
    let executes = Arc::new(AtomicUsize::new(0));
    let svc = FakeSkaffold {
        state,
        executes: executes.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, executes)
}

fn exporter_settings(skaffold: SocketAddr, allow_control: bool) -> Settings {
    Settings {
        skaffold_addr: skaffold.to_string(),
        listen: "127.0.0.1:0".parse().unwrap(),
        grpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        allow_control,
        upstream_timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_is_forwarded_byte_for_byte_including_unknown_fields() {
    let original = state_with_future_field();
    let (skaffold, _) = fake_skaffold(original.clone()).await;
    let exp = app::start(exporter_settings(skaffold, false))
        .await
        .unwrap();
    let grpc = exp.grpc_addr.unwrap();

    // Raw client: the exact bytes come back.
    let client = Upstream::new(&grpc.to_string(), Duration::from_secs(2)).unwrap();
    let got = client
        .get_state()
        .await
        .expect("GetState through the exporter");
    assert_eq!(got, original);

    // Generated client: decodes, and prost keeps nothing of field 100 (so only the
    // byte passthrough preserves it).
    let mut typed =
        v1::skaffold_service_client::SkaffoldServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    let state = typed.get_state(()).await.unwrap().into_inner();
    assert_eq!(state.deploy_state.unwrap().status, "Complete");
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_rpcs_are_refused_unless_allowed() {
    let (skaffold, executes) = fake_skaffold(Bytes::new()).await;
    let exp = app::start(exporter_settings(skaffold, false))
        .await
        .unwrap();
    let grpc = exp.grpc_addr.unwrap();
    let mut client =
        v1::skaffold_service_client::SkaffoldServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    let err = client
        .execute(v1::UserIntentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("--allow-control"),
        "{}",
        err.message()
    );
    let err = client.events(()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert_eq!(executes.load(Ordering::SeqCst), 0);
    exp.shutdown().await;

    let exp = app::start(exporter_settings(skaffold, true)).await.unwrap();
    let grpc = exp.grpc_addr.unwrap();
    let mut client =
        v1::skaffold_service_client::SkaffoldServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    client
        .execute(v1::UserIntentRequest::default())
        .await
        .expect("forwarded with --allow-control");
    assert_eq!(executes.load(Ordering::SeqCst), 1);
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_skaffold_is_unavailable_with_a_clear_message() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = probe.local_addr().unwrap();
    drop(probe);
    let exp = app::start(exporter_settings(nobody, false)).await.unwrap();
    let grpc = exp.grpc_addr.unwrap();
    let mut client =
        v1::skaffold_service_client::SkaffoldServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    let err = client.get_state(()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("not reachable"), "{}", err.message());
    assert!(
        err.message().contains(&nobody.to_string()),
        "{}",
        err.message()
    );
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_skaffold_is_a_timeout_504_and_deadline_exceeded() {
    let (hole, _) = support::child::black_hole().await;
    let exp = app::start(exporter_settings(hole, false)).await.unwrap();
    // /v1/state: 504, with the gRPC code of a deadline (4), not CANCELLED (1).
    let (status, _, body) = support::http_get(exp.http_addr, "/v1/state", None).await;
    assert_eq!(status, 504, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["grpc_code"], 4, "{body}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 500 ms"),
        "{body}"
    );
    // The passthrough: every one of many concurrent calls ends DEADLINE_EXCEEDED.
    let grpc = exp.grpc_addr.unwrap();
    let client =
        v1::skaffold_service_client::SkaffoldServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.get_state(()).await.map(|_| ()) })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    }
    // A caller with a shorter deadline hears DEADLINE_EXCEEDED from us too.
    let mut req = Request::new(());
    req.set_timeout(Duration::from_millis(200));
    let mut c = client.clone();
    let err = c.get_state(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_gateway_is_a_timeout_504() {
    let (hole, _) = support::child::black_hole().await;
    let source = skaffold_exporter::config::SourceSettings {
        api: skaffold_exporter::source::Api::Auto,
        skaffold_http: Some(format!("http://{hole}").parse().unwrap()),
    };
    let exp = app::start_with(exporter_settings(hole, false), source)
        .await
        .unwrap();
    let (status, _, body) = support::http_get(exp.http_addr, "/v1/state", None).await;
    assert_eq!(status, 504, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["grpc_code"], 4, "{body}");
    assert!(v["error"].as_str().unwrap().contains("gateway"), "{body}");
    exp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_state_over_4_mib_is_passed_back_unchanged() {
    let artifacts = (0..200_000)
        .map(|i| (format!("artifact-{i:06}"), "Complete".to_owned()))
        .collect();
    let state = v1::State {
        build_state: Some(v1::BuildState {
            artifacts,
            ..Default::default()
        }),
        ..Default::default()
    };
    let original = Bytes::from(state.encode_to_vec());
    assert!(original.len() > 4 << 20, "{}", original.len());
    let (skaffold, _) = fake_skaffold(original.clone()).await;
    let mut s = exporter_settings(skaffold, false);
    s.upstream_timeout = Duration::from_secs(10);
    let exp = app::start(s).await.unwrap();
    let grpc = exp.grpc_addr.unwrap();
    let client = Upstream::new(&grpc.to_string(), Duration::from_secs(10)).unwrap();
    let got = client.get_state().await.expect("a large GetState passes");
    assert_eq!(got, original, "byte for byte");
    // And over HTTP, as the gateway's JSON.
    let (status, _, body) = support::http_get(exp.http_addr, "/v1/state", None).await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["buildState"]["artifacts"]["artifact-199999"],
        "Complete",
        "{}",
        &body[..300]
    );
    exp.shutdown().await;
}
