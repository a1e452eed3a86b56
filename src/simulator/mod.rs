//! A stand-in Skaffold that speaks the real gRPC APIs: v1 (`proto.SkaffoldService`)
//! always, v2 (`proto.v2.SkaffoldV2Service`) once [`Simulator::enable_v2`] is called,
//! both on one port as Skaffold v1.22+ does; and, with [`Simulator::serve_gateway`],
//! the HTTP gateway (`/v1/events`, `/v2/events`, `/v1/state`: newline-delimited
//! `{"result": ...}` chunks). It keeps an in-memory event log per API and delivers it
//! as Skaffold's `forEachEvent` does: a new subscriber is registered under the log
//! lock, then the log so far is replayed while live events go to the same stream as
//! they happen, so live events can arrive in the middle of the replay, even before its
//! first message ([`Simulator::hold_replays_after`] pins that down for tests). Streams
//! read the log by position: a slow subscriber is held by flow control and costs no
//! memory; the log itself is all a simulated Skaffold keeps (as a real one does).
//! Used by `demo` and by the tests, so both exercise the same sockets, HTTP/2,
//! protobuf and JSON as a real Skaffold.
//!
//! v2 events are kept as encoded bytes, so a test can also play a server that uses
//! the pre-v1.26 message layout ([`Simulator::emit_v2_raw`]).
//!
//! `scenario` scripts sessions (the builders, their player, the demo's random
//! session); `gateway` serves the HTTP gateway; `old_layout` encodes v2 messages in
//! the v1.22–v1.25 layout.

pub mod gateway;
pub mod old_layout;
pub mod scenario;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::pb::v1::{self, skaffold_service_server as svc};
use crate::pb::v2;
use crate::skaffold::RawCodec;

pub use gateway::ErrorShape;

/// An event log (Skaffold's `eventLog`). Subscribers read it by position, so a slow
/// subscriber costs no memory: it falls behind in the log (held by the transport's
/// flow control) instead of queueing copies, as Skaffold's `logEvent` holds its event
/// handler until the slowest stream has taken the event.
#[derive(Debug)]
struct Log<T> {
    entries: Vec<T>,
    /// Bumped when the log is emptied (a restart): the old process's streams end.
    generation: u64,
    /// Told of every append and restart.
    appended: watch::Sender<()>,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            generation: 0,
            appended: watch::channel(()).0,
        }
    }
}

/// What a subscriber finds at its position in the log.
enum Slot<T> {
    Entry(T),
    /// Nothing there yet.
    Empty,
    /// The log was emptied by a restart since the stream began.
    Restarted,
}

impl<T: Clone> Log<T> {
    /// `logEvent`: appends and wakes every subscriber.
    fn append(&mut self, entry: T) {
        self.entries.push(entry);
        self.appended.send_replace(());
    }

    /// A restart: a new process with an empty log.
    fn clear(&mut self) {
        self.entries = Vec::new();
        self.generation += 1;
        self.appended.send_replace(());
    }

    fn at(&self, generation: u64, i: usize) -> Slot<T> {
        if self.generation != generation {
            return Slot::Restarted;
        }
        self.entries
            .get(i)
            .cloned()
            .map_or(Slot::Empty, Slot::Entry)
    }
}

#[derive(Debug)]
struct Inner {
    /// v2 events, encoded.
    log_v2: Mutex<Log<Bytes>>,
    v2_enabled: AtomicBool,
    /// The next gateway stream ends with an error chunk after this many chunks.
    gateway_fault: Mutex<Option<(u64, ErrorShape)>>,
    log: Mutex<Log<v1::LogEntry>>,
    /// New subscriptions pause their replay after this many entries (`u64::MAX`:
    /// never) until `release_replays`.
    hold_after: AtomicU64,
    /// Bumped by `release_replays`.
    release: watch::Sender<u64>,
    state: Mutex<v1::State>,
    /// Bumped to end every open stream with UNAVAILABLE.
    abort: watch::Sender<u64>,
    /// Bumped to end every open stream cleanly (status OK), as Skaffold does at exit.
    end: watch::Sender<u64>,
    /// Streams the subscriber went away from before the server ended them.
    closed_by_client: AtomicU64,
    /// End each new stream after this many entries (0 = never).
    cut_after: AtomicU64,
    subscriptions: AtomicU64,
    /// Messages handed to `Events` streams, all streams together.
    sent: AtomicU64,
}

/// The simulated Skaffold. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    /// An empty Skaffold process.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                log_v2: Mutex::new(Log::default()),
                v2_enabled: AtomicBool::new(false),
                gateway_fault: Mutex::new(None),
                log: Mutex::new(Log::default()),
                hold_after: AtomicU64::new(u64::MAX),
                release: watch::channel(0).0,
                state: Mutex::new(v1::State::default()),
                abort: watch::channel(0).0,
                end: watch::channel(0).0,
                closed_by_client: AtomicU64::new(0),
                cut_after: AtomicU64::new(0),
                subscriptions: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            }),
        }
    }

    /// Appends an entry to the log and sends it to every subscriber (in the middle of
    /// its replay, if that is still going on).
    pub fn emit(&self, entry: v1::LogEntry) {
        self.update_state(&entry);
        self.inner.log.lock().expect("log lock").append(entry);
    }

    /// Replays of subscriptions made from now on stop after `n` entries (0: before the
    /// first) until [`Simulator::release_replays`], while live events keep flowing:
    /// live events overtake the replay exactly where a test wants them to.
    pub fn hold_replays_after(&self, n: u64) {
        self.inner.hold_after.store(n, Ordering::Release);
    }

    /// Lets held replays go on; later subscriptions replay without pausing.
    pub fn release_replays(&self) {
        self.inner.hold_after.store(u64::MAX, Ordering::Release);
        self.inner.release.send_modify(|n| *n += 1);
    }

    /// Serves API v2 too (as Skaffold v1.22+ does); off by default, so a plain
    /// simulator is a pre-v1.22 Skaffold whose v2 calls answer UNIMPLEMENTED. Call it
    /// before `serve`.
    pub fn enable_v2(&self) -> &Self {
        self.inner.v2_enabled.store(true, Ordering::Release);
        self
    }

    /// Whether API v2 is served.
    pub fn v2_enabled(&self) -> bool {
        self.inner.v2_enabled.load(Ordering::Acquire)
    }

    /// Appends a v2 event to the v2 log and sends it to every v2 subscriber.
    pub fn emit_v2(&self, event: v2::Event) {
        self.emit_v2_raw(Bytes::from(event.encode_to_vec()));
    }

    /// Appends an already encoded v2 event (any layout) to the v2 log.
    pub fn emit_v2_raw(&self, bytes: Bytes) {
        self.inner.log_v2.lock().expect("log lock").append(bytes);
    }

    /// Events in the v2 log.
    pub fn len_v2(&self) -> usize {
        self.inner.log_v2.lock().expect("log lock").entries.len()
    }

    /// The next gateway event stream sends `after` chunks, then an error chunk of
    /// `shape`, then ends (as Skaffold's gateway does on a stream error).
    pub fn fail_next_gateway_stream(&self, after: u64, shape: ErrorShape) {
        *self.inner.gateway_fault.lock().expect("fault lock") = Some((after, shape));
    }

    pub(crate) fn take_gateway_fault(&self) -> Option<(u64, ErrorShape)> {
        self.inner.gateway_fault.lock().expect("fault lock").take()
    }

    /// Entries in the log.
    pub fn len(&self) -> usize {
        self.inner.log.lock().expect("log lock").entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages handed to `Events` streams so far, all streams together.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Acquire)
    }

    /// `Events` subscriptions served so far.
    pub fn subscriptions(&self) -> u64 {
        self.inner.subscriptions.load(Ordering::Acquire)
    }

    /// Ends every open stream with UNAVAILABLE (as when Skaffold's server hiccups).
    pub fn abort_streams(&self) {
        self.inner.abort.send_modify(|n| *n += 1);
    }

    /// Ends every open stream cleanly (status OK, no error), as Skaffold's server does
    /// when Skaffold exits.
    pub fn end_streams(&self) {
        self.inner.end.send_modify(|n| *n += 1);
    }

    /// `Events` streams the subscriber left (cancelled the call or closed the
    /// connection) before the server ended them. A subscriber that leaves during
    /// Skaffold's replay can wedge Skaffold's event handler, so the exporter never does
    /// this on its own.
    pub fn streams_closed_by_client(&self) -> u64 {
        self.inner.closed_by_client.load(Ordering::Acquire)
    }

    /// Ends each stream opened from now on after `n` entries (0 = never).
    pub fn cut_streams_after(&self, n: u64) {
        self.inner.cut_after.store(n, Ordering::Release);
    }

    /// Simulates a Skaffold restart: a new process with an empty log; open streams end.
    pub fn restart(&self) {
        let mut log = self.inner.log.lock().expect("log lock");
        let mut log_v2 = self.inner.log_v2.lock().expect("log lock");
        // Their streams see the new generation and end (UNAVAILABLE).
        log.clear();
        log_v2.clear();
        drop(log_v2);
        drop(log);
        *self.inner.state.lock().expect("state lock") = v1::State::default();
        self.abort_streams();
    }

    /// The current state, as `GetState` returns it.
    pub fn state(&self) -> v1::State {
        self.inner.state.lock().expect("state lock").clone()
    }

    fn update_state(&self, entry: &v1::LogEntry) {
        use v1::event::EventType as E;
        let Some(ev) = entry.event.as_ref().and_then(|e| e.event_type.as_ref()) else {
            return;
        };
        let mut st = self.inner.state.lock().expect("state lock");
        match ev {
            E::BuildEvent(b) => {
                st.build_state
                    .get_or_insert_with(Default::default)
                    .artifacts
                    .insert(b.artifact.clone(), b.status.clone());
            }
            E::DeployEvent(d) => {
                st.deploy_state.get_or_insert_with(Default::default).status = d.status.clone();
            }
            E::StatusCheckEvent(s) => {
                st.status_check_state
                    .get_or_insert_with(Default::default)
                    .status = s.status.clone();
            }
            E::ResourceStatusCheckEvent(r) => {
                st.status_check_state
                    .get_or_insert_with(Default::default)
                    .resources
                    .insert(r.resource.clone(), r.status.clone());
            }
            E::FileSyncEvent(f) => {
                st.file_sync_state
                    .get_or_insert_with(Default::default)
                    .status = f.status.clone();
            }
            E::PortEvent(p) => {
                st.forwarded_ports.insert(p.local_port, p.clone());
            }
            E::MetaEvent(m) => st.metadata = m.metadata.clone(),
            _ => {}
        }
    }

    /// Serves the v1 API (and v2, when enabled) on `listener` until `shutdown`
    /// turns true (dropping its sender keeps it serving). Then, as Skaffold does when it exits, every open `Events` stream
    /// ends cleanly, and the server waits at most [`SHUTDOWN_GRACE`] for its
    /// connections to close: a subscriber that does not read (its stream held by flow
    /// control) cannot keep the process alive.
    pub async fn serve(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), tonic::transport::Error> {
        let v2 = self.v2_enabled().then(|| V2Service(self.clone()));
        let ending = self.clone();
        let mut stopped = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .add_service(svc::SkaffoldServiceServer::new(self))
            .add_optional_service(v2)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                if shutdown.wait_for(|s| *s).await.is_err() {
                    // The sender is gone without stopping: serve on.
                    std::future::pending::<()>().await;
                }
                ending.end_streams();
            });
        tokio::select! {
            r = server => r,
            () = async {
                if stopped.wait_for(|s| *s).await.is_err() {
                    // The sender is gone without stopping: serve on.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::debug!("simulated Skaffold: connections still open after the grace period; closing");
                Ok(())
            }
        }
    }
}

/// How long a stopping [`Simulator::serve`] waits for its connections to close.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[tonic::async_trait]
impl svc::SkaffoldService for Simulator {
    async fn get_state(&self, _req: Request<()>) -> Result<Response<v1::State>, Status> {
        Ok(Response::new(self.state()))
    }

    type EventLogStream = ReceiverStream<Result<v1::LogEntry, Status>>;

    async fn event_log(
        &self,
        _req: Request<tonic::Streaming<v1::LogEntry>>,
    ) -> Result<Response<Self::EventLogStream>, Status> {
        Ok(Response::new(self.subscribe()))
    }

    type EventsStream = ReceiverStream<Result<v1::LogEntry, Status>>;

    async fn events(&self, _req: Request<()>) -> Result<Response<Self::EventsStream>, Status> {
        Ok(Response::new(self.subscribe()))
    }

    async fn execute(&self, _req: Request<v1::UserIntentRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn auto_build(&self, _req: Request<v1::TriggerRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn auto_sync(&self, _req: Request<v1::TriggerRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn auto_deploy(&self, _req: Request<v1::TriggerRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn handle(&self, req: Request<v1::Event>) -> Result<Response<()>, Status> {
        let now = std::time::SystemTime::now();
        self.emit(v1::LogEntry {
            timestamp: Some(prost_types::Timestamp::from(now)),
            event: Some(req.into_inner()),
            entry: String::new(),
        });
        Ok(Response::new(()))
    }
}

impl Simulator {
    /// v1 `Events`: the log so far, with live entries interleaved.
    pub(crate) fn subscribe(&self) -> ReceiverStream<Result<v1::LogEntry, Status>> {
        self.subscribe_to(|i| &i.log)
    }

    /// v2 `Events` (encoded events): the log so far, with live events interleaved.
    pub(crate) fn subscribe_v2(&self) -> ReceiverStream<Result<Bytes, Status>> {
        self.subscribe_to(|i| &i.log_v2)
    }

    /// Skaffold's `forEachEvent`: under the log lock, note where the log ends (the
    /// replay is everything before) and start listening; then send the replay while
    /// live entries are sent as they come. Both are read from the log by position, and
    /// the response channel is bounded (the transport's flow control), so a slow
    /// subscriber only falls behind: it holds no copies and nothing is dropped.
    fn subscribe_to<T: Clone + Send + 'static>(
        &self,
        pick: fn(&Inner) -> &Mutex<Log<T>>,
    ) -> ReceiverStream<Result<T, Status>> {
        self.inner.subscriptions.fetch_add(1, Ordering::AcqRel);
        let (generation, replay_len, mut appended) = {
            let log = pick(&self.inner).lock().expect("log lock");
            (log.generation, log.entries.len(), log.appended.subscribe())
        };
        let mut abort = self.inner.abort.subscribe();
        abort.mark_unchanged();
        let mut end = self.inner.end.subscribe();
        end.mark_unchanged();
        let cut_after = self.inner.cut_after.load(Ordering::Acquire);
        let hold_after = self.inner.hold_after.load(Ordering::Acquire);
        let mut release = self.inner.release.subscribe();
        release.mark_unchanged();
        let inner = self.inner.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let client_left = || {
                inner.closed_by_client.fetch_add(1, Ordering::AcqRel);
            };
            let log = pick(&inner);
            let mut sent = 0u64;
            // Next replayed position (up to `replay_len`), next live position.
            let mut replayed = 0usize;
            let mut live = replay_len;
            let mut held = hold_after == 0;
            let cut = |sent: u64| cut_after > 0 && sent >= cut_after;
            loop {
                if cut(sent) {
                    let _ = tx
                        .send(Err(Status::unavailable("stream cut by the simulator")))
                        .await;
                    return;
                }
                let replaying = !held && replayed < replay_len;
                // Live entries and the rest of the replay, in whatever order they
                // are ready (unbiased): as Skaffold's two senders race.
                let next = tokio::select! {
                    _ = end.changed() => return,
                    _ = abort.changed() => {
                        let _ = tx.try_send(Err(Status::unavailable("stream aborted by the simulator")));
                        return;
                    }
                    _ = tx.closed() => {
                        client_left();
                        return;
                    }
                    _ = release.changed(), if held => {
                        held = false;
                        continue;
                    }
                    e = next_live(log, generation, live, &mut appended) => match e {
                        Some(e) => {
                            live += 1;
                            e
                        }
                        None => {
                            let _ = tx.try_send(Err(Status::unavailable("Skaffold restarted")));
                            return;
                        }
                    },
                    e = std::future::ready(()), if replaying => {
                        let () = e;
                        let slot = log.lock().expect("log lock").at(generation, replayed);
                        let Slot::Entry(e) = slot else {
                            let _ = tx.try_send(Err(Status::unavailable("Skaffold restarted")));
                            return;
                        };
                        replayed += 1;
                        if replayed as u64 == hold_after {
                            held = true;
                        }
                        e
                    }
                };
                // Waiting for room (a slow subscriber) must not hold an ending server.
                let delivered = tokio::select! {
                    r = tx.send(Ok(next)) => r.is_ok(),
                    _ = end.changed() => return,
                    _ = abort.changed() => return,
                };
                if !delivered {
                    client_left();
                    return;
                }
                sent += 1;
                inner.sent.fetch_add(1, Ordering::AcqRel);
            }
        });
        ReceiverStream::new(rx)
    }
}

/// The log entry at `i` once there is one; `None` once the log was emptied by a
/// restart.
async fn next_live<T: Clone>(
    log: &Mutex<Log<T>>,
    generation: u64,
    i: usize,
    appended: &mut watch::Receiver<()>,
) -> Option<T> {
    loop {
        appended.borrow_and_update();
        let slot = log.lock().expect("log lock").at(generation, i);
        match slot {
            Slot::Entry(e) => return Some(e),
            Slot::Restarted => return None,
            Slot::Empty => {}
        }
        appended.changed().await.ok()?;
    }
}

// === impl V2Service ===

/// `proto.v2.SkaffoldV2Service`, serving raw encoded events (so any layout can be
/// played). Only `Events` is implemented; other methods answer UNIMPLEMENTED.
#[derive(Debug, Clone)]
struct V2Service(Simulator);

impl tonic::server::NamedService for V2Service {
    const NAME: &'static str = "proto.v2.SkaffoldV2Service";
}

struct V2Events(Simulator);

impl tonic::server::ServerStreamingService<Bytes> for V2Events {
    type Response = Bytes;
    type ResponseStream = ReceiverStream<Result<Bytes, Status>>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, _req: Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.subscribe_v2())))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> tower_service::Service<http::Request<B>> for V2Service
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/proto.v2.SkaffoldV2Service/Events" {
            let sim = self.0.clone();
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok(grpc.server_streaming(V2Events(sim), req).await)
            });
        }
        Box::pin(async move {
            let mut response = http::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(
                Status::GRPC_STATUS,
                (tonic::Code::Unimplemented as i32).into(),
            );
            headers.insert(
                http::header::CONTENT_TYPE,
                tonic::metadata::GRPC_CONTENT_TYPE,
            );
            Ok(response)
        })
    }
}
