//! The one reconnect loop, shared by the gRPC and HTTP-gateway sources: connect,
//! read until the stream ends or fails, wait (capped, jittered backoff), connect
//! again, forever, until shutdown.
//!
//! Each message goes to the fold with `try_send` (never awaited), so a slow consumer
//! can never stall Skaffold, which delivers events synchronously; a full queue drops
//! and counts. The backoff is reset only after the first message of a new stream.
//!
//! The stream is never cut on purpose: no idle timeout, and not even a stream whose
//! messages cannot be decoded ([`StreamError::Incompatible`], Skaffold v1.22–v1.25's
//! v2 layout) is dropped. A subscriber that leaves during Skaffold's replay can wedge
//! Skaffold's event handler, so such a stream is read to its end, each message counted
//! as invalid `incompatible_layout`: in the background when the connector switched to
//! another API (`--api auto`, which then reads v1 at once; one such stream at a time),
//! else in place (`--api v2`: not connected meanwhile), before backing off and
//! connecting again once Skaffold closed it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::grpc::Progress;
use super::{Payload, SourceMessage};
use crate::core::event::INCOMPATIBLE_LAYOUT;
use crate::sink::SelfMetrics;
use crate::sink::prometheus::ReasonLabel;

/// One message read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Hash of the message as sent (see [`SourceMessage::fingerprint`]).
    pub fingerprint: u64,
    /// The message.
    pub payload: Payload,
}

/// Why a stream ended, or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Transport trouble or an error from Skaffold: reconnect with backoff.
    #[error("{0}")]
    Failed(String),
    /// This API is not offered (the gateway answered UNIMPLEMENTED); the stream has
    /// ended. The connector picks again (`--api auto`) or it is reported.
    #[error("{0}")]
    Missing(String),
    /// The stream is up, but its messages cannot be decoded (Skaffold v1.22–v1.25's
    /// v2 layout). It is read to its end, never dropped (see the module docs); the
    /// connector picks again (`--api auto`) or it is reported.
    #[error("{0}")]
    Incompatible(String),
}

/// Opens streams.
pub trait Connector: Send {
    /// The stream type.
    type Stream: EventStream + 'static;
    /// Where it connects, for logs.
    fn target(&self) -> String;
    /// Opens a new stream.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Stream, String>> + Send;
    /// A stream it opened ended with `err`, or cannot be used. Returns `true` when the
    /// connector switched to another API (the supervisor then connects again at once).
    fn stream_failed(&mut self, _err: &StreamError) -> bool {
        false
    }
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

/// How a stream's reading ended.
enum Ended {
    /// Closed or failed: back off, then connect again.
    Backoff,
    /// The connector switched API: connect again at once.
    Switched,
    /// Unreadable but up: keep it drained.
    Incompatible(StreamError),
}

/// Counts one message of an unreadable stream as invalid `incompatible_layout`;
/// logs the first one.
fn count_incompatible(metrics: &SelfMetrics, logged: &AtomicBool) {
    metrics
        .invalid
        .get_or_create(&ReasonLabel {
            reason: INCOMPATIBLE_LAYOUT,
        })
        .inc();
    if !logged.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            reason = INCOMPATIBLE_LAYOUT,
            "Discarding the messages of an event stream this exporter cannot decode; they are only counted (skaffold_exporter_invalid_events_total)."
        );
    }
}

/// Reads an unreadable stream to its end, counting each message. Returns `false` when
/// it stopped because of shutdown.
async fn drain<S: EventStream>(
    mut stream: S,
    stream_id: u64,
    metrics: SelfMetrics,
    logged: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let mut drained = 0u64;
    loop {
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = shutdown.changed() => return false,
            msg = stream.next() => match msg {
                Ok(Some(_)) | Err(StreamError::Incompatible(_)) => {
                    drained += 1;
                    count_incompatible(&metrics, &logged);
                }
                Ok(None) => {
                    tracing::info!(stream = stream_id, drained, "Skaffold closed the event stream the exporter could not decode.");
                    return true;
                }
                Err(e) => {
                    tracing::info!(stream = stream_id, drained, error = %e, "The event stream the exporter could not decode ended.");
                    return true;
                }
            }
        }
    }
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
    let logged = Arc::new(AtomicBool::new(false));
    // The unreadable stream being drained in the background, if any (one at a time).
    let mut background: Option<JoinHandle<()>> = None;
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
                progress.unreachable.store(false, Ordering::Release);
                metrics.connected.set(1);
                tracing::info!(target = %target, stream = stream_id, "Subscribed to Skaffold's event stream.");
                failures = 0;
                let mut position = 0u64;
                let mut first = 0u64;
                let ended = loop {
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
                                    first = r.fingerprint;
                                }
                                progress.received.fetch_add(1, Ordering::AcqRel);
                                let m = SourceMessage {
                                    stream: stream_id,
                                    position,
                                    fingerprint: r.fingerprint,
                                    first,
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
                                break Ended::Backoff;
                            }
                            Err(e @ StreamError::Failed(_)) => {
                                tracing::warn!(stream = stream_id, error = %e, "Skaffold's event stream failed.");
                                connector.stream_failed(&e);
                                break Ended::Backoff;
                            }
                            Err(e @ StreamError::Missing(_)) => {
                                tracing::error!(stream = stream_id, error = %e, "Cannot read this event stream.");
                                break if connector.stream_failed(&e) {
                                    Ended::Switched
                                } else {
                                    Ended::Backoff
                                };
                            }
                            Err(e @ StreamError::Incompatible(_)) => break Ended::Incompatible(e),
                        }
                    }
                };
                progress.connected.store(false, Ordering::Release);
                metrics.connected.set(0);
                match ended {
                    Ended::Backoff => {}
                    Ended::Switched => continue,
                    Ended::Incompatible(e) => {
                        // The message that told us counts too.
                        count_incompatible(&metrics, &logged);
                        let switched = connector.stream_failed(&e);
                        let idle = background.as_ref().is_none_or(JoinHandle::is_finished);
                        let drained = drain(
                            stream,
                            stream_id,
                            metrics.clone(),
                            logged.clone(),
                            shutdown.clone(),
                        );
                        if switched && idle {
                            tracing::warn!(stream = stream_id, error = %e, "Cannot decode this event stream; switching API now and keeping the unreadable stream open until Skaffold closes it (leaving during Skaffold's replay can wedge it).");
                            background = Some(tokio::spawn(async move {
                                drained.await;
                            }));
                            continue;
                        }
                        tracing::error!(stream = stream_id, error = %e, "Cannot decode this event stream. Keeping it open, its messages discarded and counted, until Skaffold closes it (leaving during Skaffold's replay can wedge it); then reconnecting.");
                        if !drained.await {
                            return;
                        }
                        if switched {
                            continue;
                        }
                    }
                }
            }
            Err(e) => {
                progress.unreachable.store(true, Ordering::Release);
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
