//! The one reconnect loop, shared by the gRPC and HTTP-gateway sources: connect,
//! read until the stream ends or fails, wait (capped, jittered backoff), connect
//! again, forever, until shutdown.
//!
//! Each message goes to the fold with `try_send` (never awaited), so a slow consumer
//! can never stall Skaffold, which delivers events synchronously; a full queue drops
//! and counts. The backoff is reset only after the first message of a new stream.
//! The stream is never cut on purpose: no idle timeout (a subscriber that leaves
//! during Skaffold's replay can wedge Skaffold's event handler).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::grpc::Progress;
use super::{Payload, SourceMessage};
use crate::sink::SelfMetrics;

/// One message read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Hash of the message as sent (see [`SourceMessage::fingerprint`]).
    pub fingerprint: u64,
    /// The message.
    pub payload: Payload,
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Transport trouble or an error from Skaffold: reconnect with backoff.
    #[error("{0}")]
    Failed(String),
    /// This API cannot be read from this Skaffold (v2 missing, or its pre-v1.26
    /// layout): the connector picks again (`--api auto`) or reports it.
    #[error("{0}")]
    Incompatible(String),
}

/// Opens streams.
pub trait Connector: Send {
    /// The stream type.
    type Stream: EventStream;
    /// Where it connects, for logs.
    fn target(&self) -> String;
    /// Opens a new stream.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Stream, String>> + Send;
    /// A stream it opened ended with `err`.
    fn stream_failed(&mut self, _err: &StreamError) {}
}

/// An open stream of messages.
pub trait EventStream: Send {
    /// The next message; `Ok(None)` when Skaffold closed the stream cleanly.
    fn next(&mut self) -> impl Future<Output = Result<Option<Received>, StreamError>> + Send;
}

/// Reconnect backoff bounds.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

/// Runs until `shutdown` turns true or the fold's queue closes.
pub async fn run<C: Connector>(
    mut connector: C,
    retry: Retry,
    tx: mpsc::Sender<SourceMessage>,
    progress: Arc<Progress>,
    metrics: SelfMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(retry.min, retry.max, fastrand::u64(..)).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Using the default reconnect backoff.");
        Backoff::new(Duration::from_millis(250), Duration::from_secs(30), 0)
            .expect("valid defaults")
    });
    let target = connector.target();
    let mut stream_id = 0u64;
    let mut failures = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = tokio::select! {
            _ = shutdown.changed() => return,
            c = connector.connect() => c,
        };
        match connected {
            Ok(mut stream) => {
                stream_id += 1;
                if stream_id > 1 {
                    metrics.reconnects.inc();
                }
                progress.connected.store(true, Ordering::Release);
                metrics.connected.set(1);
                tracing::info!(target = %target, stream = stream_id, "Subscribed to Skaffold's event stream.");
                failures = 0;
                let mut position = 0u64;
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => {
                            progress.connected.store(false, Ordering::Release);
                            metrics.connected.set(0);
                            return;
                        }
                        msg = stream.next() => match msg {
                            Ok(Some(r)) => {
                                if position == 0 {
                                    backoff.reset();
                                }
                                progress.received.fetch_add(1, Ordering::AcqRel);
                                let m = SourceMessage {
                                    stream: stream_id,
                                    position,
                                    fingerprint: r.fingerprint,
                                    payload: r.payload,
                                };
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
                            Err(e @ StreamError::Failed(_)) => {
                                tracing::warn!(stream = stream_id, error = %e, "Skaffold's event stream failed.");
                                connector.stream_failed(&e);
                                break;
                            }
                            Err(e @ StreamError::Incompatible(_)) => {
                                tracing::error!(stream = stream_id, error = %e, "Cannot read this event stream.");
                                connector.stream_failed(&e);
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
                    tracing::warn!(target = %target, error = %e, "Cannot reach Skaffold yet; retrying with backoff (is `skaffold dev --rpc-port` running?).");
                } else {
                    tracing::debug!(target = %target, error = %e, failures, "Still cannot reach Skaffold.");
                }
            }
        }
        let delay = backoff.next().unwrap_or(retry.max);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
