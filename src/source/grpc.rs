//! Subscribes to Skaffold's v1 `Events` stream over gRPC and keeps subscribing:
//! Skaffold may not be up yet, may restart, or may exit. Each received entry is
//! handed to the fold with `try_send` (never awaited), so a slow consumer can never
//! stall Skaffold, which delivers events synchronously; a full queue drops and counts.
//!
//! The stream is never cut on purpose: no idle timeout (a subscriber that leaves
//! during Skaffold's replay can wedge Skaffold's event handler).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use super::SourceMessage;
use super::backoff::Backoff;
use crate::pb::v1::skaffold_service_client::SkaffoldServiceClient;
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
}

/// Runs until `shutdown` turns true or the fold's queue closes.
pub async fn run(
    cfg: Config,
    tx: mpsc::Sender<SourceMessage>,
    progress: Arc<Progress>,
    metrics: SelfMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, fastrand::u64(..))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Using the default reconnect backoff.");
            Backoff::new(Duration::from_millis(250), Duration::from_secs(30), 0)
                .expect("valid defaults")
        });
    let uri = format!("http://{}", cfg.addr);
    let mut stream_id = 0u64;
    let mut failures = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match subscribe(&uri).await {
            Ok(mut stream) => {
                stream_id += 1;
                if stream_id > 1 {
                    metrics.reconnects.inc();
                }
                progress.connected.store(true, Ordering::Release);
                metrics.connected.set(1);
                tracing::info!(addr = %cfg.addr, stream = stream_id, "Subscribed to Skaffold's event stream.");
                failures = 0;
                let mut position = 0u64;
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => {
                            progress.connected.store(false, Ordering::Release);
                            metrics.connected.set(0);
                            return;
                        }
                        msg = stream.message() => match msg {
                            Ok(Some(entry)) => {
                                if position == 0 {
                                    backoff.reset();
                                }
                                progress.received.fetch_add(1, Ordering::AcqRel);
                                let m = SourceMessage { stream: stream_id, position, entry };
                                position += 1;
                                match tx.try_send(m) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        metrics.dropped.inc();
                                        progress.handled.fetch_add(1, Ordering::AcqRel);
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                            Ok(None) => {
                                tracing::info!(stream = stream_id, "Skaffold closed the event stream.");
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(stream = stream_id, code = ?status.code(), message = status.message(), "Skaffold's event stream failed.");
                                break;
                            }
                        }
                    }
                }
                progress.connected.store(false, Ordering::Release);
                metrics.connected.set(0);
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(addr = %cfg.addr, error = %e, "Cannot reach Skaffold yet; retrying with backoff (is `skaffold dev --rpc-port` running?).");
                } else {
                    tracing::debug!(addr = %cfg.addr, error = %e, failures, "Still cannot reach Skaffold.");
                }
            }
        }
        let delay = backoff.next().unwrap_or(cfg.backoff_max);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn subscribe(
    uri: &str,
) -> Result<tonic::Streaming<crate::pb::v1::LogEntry>, Box<dyn std::error::Error + Send + Sync>> {
    let channel = Endpoint::from_shared(uri.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // No HTTP/2 keep-alive pings: grpc-go servers (Skaffold) answer pings more
        // frequent than every 5 minutes with GOAWAY, which would cut the stream.
        .connect()
        .await?;
    let mut client =
        SkaffoldServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    Ok(client.events(()).await?.into_inner())
}
