//! The one reconnect loop, shared by the gRPC and HTTP-gateway sources: connect,
//! read until the stream ends or fails, wait (capped, jittered backoff), connect
//! again, forever, until shutdown.
//!
//! **Nothing is dropped on the way in.** Each message is handed to the fold's bounded
//! queue and the reader *waits* when it is full; meanwhile the transport's flow
//! control (HTTP/2 windows, TCP) holds Skaffold's sender. During Skaffold's replay
//! that sender runs outside Skaffold's log lock, so only the replay waits. The queue
//! size (`--queue-capacity`) is how far the reader may run ahead of the fold. If the
//! fold takes nothing for [`STALL`] while the queue is full, the reader logs it loudly
//! and raises `skaffold_exporter_fold_stalled` (counting it in
//! `skaffold_exporter_fold_stalls_total`), and keeps waiting: still nothing is lost.
//!
//! **Skaffold's order.** Each stream's messages pass through `core::order::Reorder`
//! (live events can overtake Skaffold's replay), so they enter the queue in Skaffold's
//! timestamp order; log events that are only counted, and undecodable messages, go
//! straight through. When a stream breaks, what it still held goes to the fold as
//! [`Delivery::HeldBack`] (see there): those events may have overtaken a replay that
//! the next stream will deliver.
//!
//! **Bounded in bytes as well as in count.** Every message says how many received
//! bytes it may keep alive (`SourceMessage::keeps`: a decoded v2 message keeps
//! slices of what was received, a v1 event copies of parts of it). What is held for
//! Skaffold's order keeps at most `core::order::HELD_BYTES` alive, and what is queued
//! for the fold (and folded, not yet freed) at most [`queue_bytes`]: each [`Batch`]
//! holds its share of that budget until it is dropped (a batch that would take more
//! than [`PART_BYTES`] is sent in parts), and the reader waits for it like for room in
//! the queue. Skaffold's events are small, so only a peer flooding large messages
//! meets these bounds.
//!
//! **Connection state in band.** [`Delivery::Subscribed`], [`Delivery::Paused`] (the
//! stream went quiet for [`WINDOW`]: at the first pause, its replay has been
//! delivered; reported at the first pause and after each burst of messages),
//! [`Delivery::Ended`] and [`Delivery::Unreachable`] go through the same queue as the
//! messages, so the fold sees them in order with the events.
//!
//! **The stream is never cut on purpose**: no idle timeout, and not even a stream whose
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

use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::{Delivery, Payload, SourceMessage};
use crate::core::order::{HELD_BYTES, HELD_CAP, Reorder, WINDOW};
use crate::core::{ReaderHealth, Reason};

/// How long the reader waits for room (in the queue or its byte budget) before it
/// reports the fold as stalled.
pub const STALL: Duration = Duration::from_secs(5);

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
    /// The stream is up, but it has Skaffold v1.22–v1.25's v2 layout (decided once,
    /// from its first messages). It is read to its end, never dropped (see the module
    /// docs); the connector picks again (`--api auto`) or it is reported.
    #[error("{0}")]
    Incompatible(String),
}

/// Why a connector could not open a stream. The supervisor logs it, reports Skaffold
/// unreachable (in band) and tries again after backoff, whichever it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Skaffold (or its gateway) could not be reached, or refused the subscription.
    #[error("{0}")]
    Unreachable(String),
    /// Skaffold answers, but does not offer the event API asked for with `--api`.
    #[error("{0}")]
    ApiMissing(String),
}

/// Opens streams.
pub trait Connector: Send {
    /// The stream type.
    type Stream: EventStream + 'static;
    /// Where it connects, for logs.
    fn target(&self) -> String;
    /// Opens a new stream.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Stream, ConnectError>> + Send;
    /// A stream it opened ended with `err`, or cannot be used. Returns `true` when the
    /// connector switched to another API (the supervisor then connects again at once).
    fn stream_failed(&mut self, _err: &StreamError) -> bool {
        false
    }
}

/// An open stream of messages.
pub trait EventStream: Send {
    /// The next message; `Ok(None)` when Skaffold closed the stream cleanly.
    fn next(&mut self) -> impl Future<Output = Result<Option<SourceMessage>, StreamError>> + Send;

    /// The next message if it is already received, without waiting; `None` when
    /// nothing is ready now. The reader takes a burst through this between turns of
    /// its select (a stream with a cheaper way than polling `next` once provides it).
    fn ready(&mut self) -> Option<Result<Option<SourceMessage>, StreamError>> {
        self.next().now_or_never()
    }
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
    /// Shutdown, or the fold is gone.
    Stop,
}

/// Counts one message of an unreadable stream as invalid `incompatible_layout`;
/// logs the first one.
fn count_incompatible(health: &impl ReaderHealth, logged: &AtomicBool) {
    health.invalid(Reason::IncompatibleLayout);
    if !logged.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            reason = %Reason::IncompatibleLayout,
            "Discarding the messages of an event stream this exporter cannot decode; they are only counted (skaffold_exporter_invalid_events_total)."
        );
    }
}

/// Reads an unreadable stream to its end, counting each message. Returns `false` when
/// it stopped because of shutdown.
async fn drain<S: EventStream, H: ReaderHealth>(
    mut stream: S,
    stream_id: u64,
    health: H,
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
                    count_incompatible(&health, &logged);
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

/// Most deliveries sent to the fold in one batch. Each batch sent wakes the fold when
/// it has run dry, and a wakeup (a worker unparked, the timer driver turned, a context
/// switch) costs about as much as folding fifty events: with 128, a 1M-event
/// replay's 7,800 batches cost about a tenth more of the exporter's CPU than 1024's
/// (docs/testing.md, twelfth session). Batching adds no latency: a batch goes as soon
/// as nothing more is ready to read.
pub const BATCH: usize = 1024;

/// The most received bytes one batch sent to the fold keeps alive (a larger one is
/// sent in parts): 32 MiB, eight messages at the size limit, and the least the
/// queue's byte budget is.
pub const PART_BYTES: u32 = 32 * 1024 * 1024;

/// The byte budget of a queue of `capacity` deliveries: the most received bytes the
/// messages queued for the fold, being folded, or folded and not yet freed may keep
/// alive. Twice `capacity` times what a small event may keep (`grpc::CHUNK_BYTES`:
/// room for what the fold holds and hands back besides the queue), at least
/// [`PART_BYTES`]: 64 MiB for the default 4096. Skaffold's events never come near it;
/// a peer flooding large messages meets it.
pub fn queue_bytes(capacity: usize) -> usize {
    (2 * capacity)
        .saturating_mul(super::grpc::CHUNK_BYTES)
        .max(PART_BYTES as usize)
}

/// Deliveries on their way to the fold, in order. A batch holds its share of the
/// queue's byte budget ([`queue_bytes`]) until it is dropped, after its deliveries.
#[derive(Debug)]
pub struct Batch {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
    /// Its share of the byte budget (none when its messages keep nothing).
    keeps: Option<OwnedSemaphorePermit>,
}

impl Batch {
    /// The emptied vector, to be reused; the batch's share of the budget is given
    /// back once its deliveries are freed. The boxes of v2 events are kept for the
    /// next ones (`super::spare`).
    fn into_empty(self) -> Vec<Delivery> {
        let Batch {
            mut deliveries,
            keeps,
        } = self;
        for d in deliveries.drain(..) {
            if let Delivery::Message(SourceMessage {
                payload: Payload::V2(event),
                ..
            }) = d
            {
                super::spare::keep(event);
            }
        }
        drop(keeps);
        deliveries
    }
}

/// The queue's capacity in batches for `--queue-capacity` deliveries.
pub fn queue_batches(capacity: usize) -> usize {
    capacity.div_ceil(BATCH).max(1)
}

/// The reader's end of the fold's queue: batches go out on `tx`; when `recycled` is
/// given, the fold sends every batch it has folded back on it, and the reader drops
/// its contents and reuses it. So what the reader allocated is freed on the reader's
/// thread: with glibc's allocator, frees from another thread contend for the
/// allocating thread's arena (measured: up to twice the exporter's CPU per event).
#[derive(Debug)]
pub struct Queue {
    /// Where batches go.
    pub tx: mpsc::Sender<Batch>,
    /// Folded batches coming back.
    pub recycled: Option<mpsc::Receiver<Batch>>,
}

impl From<mpsc::Sender<Batch>> for Queue {
    fn from(tx: mpsc::Sender<Batch>) -> Self {
        Self { tx, recycled: None }
    }
}

/// The reader's end of the fold's queue: gathers deliveries into batches (one queue
/// operation per batch, not per event), waits when the queue is full or its byte
/// budget spent, and reports a fold that makes no progress.
struct Outlet<H> {
    tx: mpsc::Sender<Batch>,
    recycled: Option<mpsc::Receiver<Batch>>,
    /// The queue's byte budget ([`queue_bytes`]), less what queued batches keep.
    budget: Arc<Semaphore>,
    batch: Vec<Delivery>,
    health: H,
    shutdown: watch::Receiver<bool>,
    /// How long the reader may wait for room before the fold counts as stalled.
    stall: Duration,
}

/// The fold is gone, or shutdown was asked for: stop reading.
struct Stopped;

/// Resolves once shutdown is asked for.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

impl<H: ReaderHealth> Outlet<H> {
    /// Adds to the batch; hands it on when it is full.
    async fn push(&mut self, d: Delivery) -> Result<(), Stopped> {
        self.batch.push(d);
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands a connection change on at once (with what came before it).
    async fn send(&mut self, d: Delivery) -> Result<(), Stopped> {
        self.batch.push(d);
        self.flush().await
    }

    /// Hands the batch on, waiting while the queue is full or its byte budget spent.
    async fn flush(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // Free what the fold is done with (here, where it was allocated); keep one
        // vector for the next batch.
        let mut next = None;
        if let Some(recycled) = self.recycled.as_mut() {
            while let Ok(folded) = recycled.try_recv() {
                let empty = folded.into_empty();
                next.get_or_insert(empty);
            }
        }
        let next = next.unwrap_or_else(|| Vec::with_capacity(BATCH));
        let mut deliveries = std::mem::replace(&mut self.batch, next);
        // In parts of at most `BATCH` deliveries (what the ordering buffer releases at
        // once can be more) keeping at most `PART_BYTES` (every delivery keeps less
        // on its own: a message at most `MAX_JSON_BYTES`, what a stream held back
        // `HELD_BYTES`).
        loop {
            let mut cost = 0u64;
            let mut end = deliveries.len();
            for (i, d) in deliveries.iter().enumerate() {
                let keeps = d.keeps();
                if i > 0 && (i >= BATCH || cost + keeps > u64::from(PART_BYTES)) {
                    end = i;
                    break;
                }
                cost += keeps;
            }
            let rest = (end < deliveries.len()).then(|| deliveries.split_off(end));
            self.send_batch(deliveries, cost).await?;
            match rest {
                Some(rest) => deliveries = rest,
                None => return Ok(()),
            }
        }
    }

    /// Sends `deliveries`, which keep `cost` received bytes alive, once the byte
    /// budget and the queue have room for them.
    async fn send_batch(&mut self, deliveries: Vec<Delivery>, cost: u64) -> Result<(), Stopped> {
        debug_assert!(cost <= u64::from(PART_BYTES), "{cost} bytes in one part");
        let cost = u32::try_from(cost).map_or(PART_BYTES, |c| c.min(PART_BYTES));
        let keeps = if cost == 0 {
            None
        } else {
            let permit = match self.budget.clone().try_acquire_many_owned(cost) {
                Ok(p) => Ok(p),
                Err(_) => {
                    let mut recycled = self.recycled.take();
                    let wanted = budget_room(self.budget.clone(), cost, recycled.as_mut());
                    let permit = self.waiting(wanted).await;
                    self.recycled = recycled;
                    permit?
                }
            };
            Some(permit.map_err(|_| Stopped)?)
        };
        let batch = match self.tx.try_send(Batch { deliveries, keeps }) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stopped),
            Err(mpsc::error::TrySendError::Full(b)) => b,
        };
        let permit = self.waiting(self.tx.reserve()).await?;
        permit.map_err(|_| Stopped)?.send(batch);
        Ok(())
    }

    /// Waits for `room` (in the queue or its byte budget): if that takes [`STALL`]
    /// (`stall`), the fold is reported stalled until it comes.
    async fn waiting<F: Future>(&self, room: F) -> Result<F::Output, Stopped> {
        let waiting = Instant::now();
        let mut shutdown = self.shutdown.clone();
        tokio::pin!(room);
        tokio::select! {
            r = &mut room => return Ok(r),
            () = stopping(&mut shutdown) => return Err(Stopped),
            () = tokio::time::sleep(self.stall) => {}
        }
        self.health.fold_stalled(true);
        tracing::error!(
            capacity = self.tx.max_capacity() * BATCH,
            bytes_free = self.budget.available_permits(),
            waited_s = self.stall.as_secs_f64(),
            "The fold has taken nothing from its full queue, or not freed the messages it took (its byte budget): the reader is waiting (Skaffold is held back by flow control; nothing is lost). Is the exporter starved of CPU?"
        );
        let r = tokio::select! {
            r = &mut room => r,
            () = stopping(&mut shutdown) => return Err(Stopped),
        };
        self.health.fold_stalled(false);
        tracing::warn!(
            waited_s = waiting.elapsed().as_secs_f64(),
            "The fold is taking events again."
        );
        Ok(r)
    }
}

/// Waits for `cost` bytes of `budget`, freeing meanwhile what the fold sends back on
/// `recycled`: the batches it folded hold their share until the reader frees them, so
/// that share may be what it waits for.
async fn budget_room(
    budget: Arc<Semaphore>,
    cost: u32,
    recycled: Option<&mut mpsc::Receiver<Batch>>,
) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
    let acquire = budget.acquire_many_owned(cost);
    let Some(recycled) = recycled else {
        return acquire.await;
    };
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            p = &mut acquire => return p,
            Some(folded) = recycled.recv() => drop(folded.into_empty()),
        }
    }
}

/// Reads one stream until it ends, in Skaffold's order, reporting its pauses.
async fn read<S: EventStream, H: ReaderHealth>(
    stream: &mut S,
    stream_id: u64,
    outlet: &mut Outlet<H>,
    backoff: &mut Backoff,
) -> Result<Result<(), StreamError>, Stopped> {
    let origin = Instant::now();
    // Holds messages (as deliveries) and hands them on in Skaffold's order.
    let mut order: Reorder<Delivery> = Reorder::new(WINDOW, HELD_CAP, HELD_BYTES);
    let mut shutdown = outlet.shutdown.clone();
    let stop = stopping(&mut shutdown);
    tokio::pin!(stop);
    let mut received = 0u64;
    // Whether a decodable message arrived (the backoff was reset).
    let mut events = false;
    // When to look for a pause (`WINDOW` after the last message): the stream's first
    // one (even before any message), then after every message.
    let mut due: Option<Duration> = Some(WINDOW);
    let timer = tokio::time::sleep(WINDOW);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => {
                order.flush(&mut outlet.batch);
                outlet.flush().await?;
                return Err(Stopped);
            }
            msg = stream.next() => {
                // One clock read per wakeup: what is ready now arrived together.
                let now = origin.elapsed();
                let mut msg = msg;
                loop {
                    match msg {
                        Ok(Some(m)) => {
                            // Only a real event shows the peer is Skaffold: a gateway
                            // that answers 200 with HTML (a proxy's login page) sends
                            // junk lines, and must keep backing off.
                            if !events && !matches!(m.payload, Payload::Invalid(_)) {
                                events = true;
                                backoff.reset();
                            }
                            received += 1;
                            match m.at {
                                Some(at) if m.ordered() => {
                                    let keeps = m.keeps;
                                    order.push(
                                        at,
                                        now,
                                        keeps,
                                        Delivery::Message(m),
                                        &mut outlet.batch,
                                    );
                                    // Only events that take part in the order end a
                                    // pause: an application that logs a line every few
                                    // milliseconds (v2 log events, only counted) must
                                    // not keep the stream from ever pausing, which
                                    // would hold the last events and keep the replay
                                    // from ever being reported folded.
                                    due = Some(now + WINDOW);
                                }
                                _ => outlet.batch.push(Delivery::Message(m)),
                            }
                        }
                        Ok(None) => {
                            tracing::info!(stream = stream_id, received, "Skaffold closed the event stream.");
                            order.flush(&mut outlet.batch);
                            outlet.flush().await?;
                            return Ok(Ok(()));
                        }
                        Err(e) => {
                            // Held messages may have overtaken a replay that broke
                            // off: the fold decides about them once it knows where
                            // the next stream comes from.
                            let mut held = Vec::new();
                            order.flush(&mut held);
                            let held: Vec<SourceMessage> = held
                                .into_iter()
                                .filter_map(|d| match d {
                                    Delivery::Message(m) => Some(m),
                                    _ => None,
                                })
                                .collect();
                            if !held.is_empty() {
                                outlet.push(Delivery::HeldBack(held)).await?;
                            }
                            outlet.flush().await?;
                            return Ok(Err(e));
                        }
                    }
                    if outlet.batch.len() >= BATCH {
                        outlet.flush().await?;
                        break;
                    }
                    // Take what was already received without another turn of the
                    // select (a burst: Skaffold's replay).
                    match stream.ready() {
                        Some(next) => msg = next,
                        None => break,
                    }
                }
            }
            // Nothing more is ready right now: hand on what was gathered.
            () = std::future::ready(()), if !outlet.batch.is_empty() => {
                outlet.flush().await?;
            }
            () = &mut timer, if due.is_some() => {
                let now = origin.elapsed();
                let at = due.unwrap_or(now);
                if now < at {
                    timer.as_mut().reset(origin + at);
                    continue;
                }
                // A timer that fires a whole window late means this process was held
                // up, not that Skaffold paused: look again.
                if now - at > WINDOW {
                    due = Some(now + WINDOW);
                    timer.as_mut().reset(origin + now + WINDOW);
                    continue;
                }
                order.paused(now, &mut outlet.batch);
                outlet.send(Delivery::Paused).await?;
                due = None;
            }
        }
    }
}

/// Runs until `shutdown` turns true or the fold's queue closes.
pub async fn run<C: Connector, H: ReaderHealth>(
    mut connector: C,
    retry: Retry,
    queue: impl Into<Queue>,
    health: H,
    mut shutdown: watch::Receiver<bool>,
) {
    let Queue { tx, recycled } = queue.into();
    let tx_capacity = tx.max_capacity();
    let mut backoff = Backoff::new(retry.min, retry.max, fastrand::u64(..)).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Using the default reconnect backoff.");
        Backoff::new(Duration::from_millis(250), Duration::from_secs(30), 0)
            .expect("valid defaults")
    });
    let target = connector.target();
    let mut outlet = Outlet {
        tx,
        recycled,
        budget: Arc::new(Semaphore::new(queue_bytes(tx_capacity * BATCH))),
        batch: Vec::with_capacity(BATCH),
        health: health.clone(),
        shutdown: shutdown.clone(),
        stall: STALL,
    };
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
                    health.reconnected();
                }
                tracing::info!(target = %target, stream = stream_id, "Subscribed to Skaffold's event stream.");
                failures = 0;
                if outlet
                    .send(Delivery::Subscribed { stream: stream_id })
                    .await
                    .is_err()
                {
                    return;
                }
                let ended = match read(&mut stream, stream_id, &mut outlet, &mut backoff).await {
                    Err(Stopped) => Ended::Stop,
                    Ok(Ok(())) => Ended::Backoff,
                    Ok(Err(e @ StreamError::Failed(_))) => {
                        tracing::warn!(stream = stream_id, error = %e, "Skaffold's event stream failed.");
                        connector.stream_failed(&e);
                        Ended::Backoff
                    }
                    Ok(Err(e @ StreamError::Missing(_))) => {
                        tracing::error!(stream = stream_id, error = %e, "Cannot read this event stream.");
                        if connector.stream_failed(&e) {
                            Ended::Switched
                        } else {
                            Ended::Backoff
                        }
                    }
                    Ok(Err(e @ StreamError::Incompatible(_))) => Ended::Incompatible(e),
                };
                // The fold learns that the stream ended, whatever follows.
                let _ = outlet.send(Delivery::Ended).await;
                match ended {
                    Ended::Stop => return,
                    Ended::Backoff => {}
                    Ended::Switched => continue,
                    Ended::Incompatible(e) => {
                        // The message that told us counts too.
                        count_incompatible(&health, &logged);
                        let switched = connector.stream_failed(&e);
                        let idle = background.as_ref().is_none_or(JoinHandle::is_finished);
                        let drained = drain(
                            stream,
                            stream_id,
                            health.clone(),
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
                failures += 1;
                if failures == 1 {
                    tracing::warn!(target = %target, error = %e, "Cannot reach Skaffold yet; retrying with backoff (is `skaffold dev --rpc-port` running?).");
                    if outlet.send(Delivery::Unreachable).await.is_err() {
                        return;
                    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What the reader reported, as a test sees it.
    #[derive(Clone, Debug, Default)]
    struct Health(Arc<Mutex<Counts>>);

    #[derive(Debug, Default, Clone, PartialEq)]
    struct Counts {
        reconnects: u64,
        stalled: bool,
        stalls: u64,
        invalid: Vec<Reason>,
    }

    impl Health {
        fn counts(&self) -> Counts {
            self.0.lock().unwrap().clone()
        }
    }

    impl ReaderHealth for Health {
        fn reconnected(&self) {
            self.0.lock().unwrap().reconnects += 1;
        }
        fn fold_stalled(&self, stalled: bool) {
            let mut c = self.0.lock().unwrap();
            c.stalled = stalled;
            c.stalls += u64::from(stalled);
        }
        fn invalid(&self, reason: Reason) {
            self.0.lock().unwrap().invalid.push(reason);
        }
    }

    /// An outlet into a queue of `capacity` batches; the queue's end, the outlet's
    /// health, and its shutdown switch (dropping it is a shutdown).
    fn outlet(
        capacity: usize,
    ) -> (
        Outlet<Health>,
        mpsc::Receiver<Batch>,
        Health,
        watch::Sender<bool>,
    ) {
        let health = Health::default();
        let (tx, rx) = mpsc::channel(capacity);
        let shutdown = watch::channel(false).0;
        let out = Outlet {
            tx,
            recycled: None,
            budget: Arc::new(Semaphore::new(PART_BYTES as usize)),
            batch: Vec::new(),
            health: health.clone(),
            shutdown: shutdown.subscribe(),
            stall: Duration::from_millis(50),
        };
        (out, rx, health, shutdown)
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_reader_wait_and_a_stalled_fold_is_reported_not_dropped() {
        let (mut out, mut rx, health, _shutdown) = outlet(1);
        out.send(Delivery::Paused).await.ok().expect("room for one");
        // The queue is full and the fold takes nothing: the reader waits...
        let waiting = tokio::spawn(async move {
            out.send(Delivery::Ended)
                .await
                .ok()
                .expect("sent once there is room");
            out
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiting.is_finished(), "the reader waits, it does not drop");
        assert!(health.counts().stalled, "reported as stalled");
        assert_eq!(health.counts().stalls, 1);
        // ...until the fold takes something: then everything arrives, in order.
        assert_eq!(rx.recv().await.unwrap().deliveries, [Delivery::Paused]);
        waiting.await.unwrap();
        assert_eq!(rx.recv().await.unwrap().deliveries, [Delivery::Ended]);
        assert!(!health.counts().stalled, "no longer stalled");
        assert_eq!(health.counts().stalls, 1);
    }

    #[tokio::test]
    async fn queued_messages_keep_at_most_the_byte_budget_alive_and_the_reader_waits_for_room() {
        let (mut out, mut rx, health, _shutdown) = outlet(64);
        let budget = out.budget.clone();
        let big = |i: u64, keeps: u32| {
            let mut m = message(i);
            m.keeps = keeps;
            Delivery::Message(m)
        };
        out.send(big(1, PART_BYTES / 2)).await.ok().unwrap();
        out.send(big(2, PART_BYTES / 2)).await.ok().unwrap();
        assert_eq!(budget.available_permits(), 0);
        // The queue has room but the budget is spent: the reader waits (and reports
        // a stalled fold), it does not drop.
        let waiting = tokio::spawn(async move {
            out.send(big(3, 1))
                .await
                .ok()
                .expect("sent once there is room");
            // Together more than the whole budget: sent in two parts.
            let half = PART_BYTES / 2 + 1;
            out.push(big(4, half)).await.ok().unwrap();
            out.send(big(5, half))
                .await
                .ok()
                .expect("sent once all is free");
            out
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiting.is_finished());
        assert!(health.counts().stalled, "reported as stalled");
        // The fold took the first batch, but its messages are alive until dropped.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.deliveries, [big(1, PART_BYTES / 2)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "still kept alive");
        drop(first);
        for want in [big(2, PART_BYTES / 2), big(3, 1)] {
            assert_eq!(rx.recv().await.unwrap().deliveries, [want]);
        }
        let half = PART_BYTES / 2 + 1;
        let fourth = rx.recv().await.unwrap();
        assert_eq!(fourth.deliveries, [big(4, half)]);
        // The second part waits for the bytes the first keeps.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second part waits");
        assert!(rx.is_empty());
        assert!(budget.available_permits() < half as usize);
        drop(fourth);
        let out = waiting.await.unwrap();
        assert_eq!(rx.recv().await.unwrap().deliveries, [big(5, half)]);
        assert!(!health.counts().stalled);
        assert_eq!(out.budget.available_permits(), PART_BYTES as usize);
    }

    #[tokio::test]
    async fn a_reader_waiting_for_bytes_frees_the_batches_the_fold_sends_back() {
        let (mut out, mut rx, _, _shutdown) = outlet(64);
        let (back, recycled) = mpsc::channel(4);
        out.recycled = Some(recycled);
        let big = |i: u64| {
            let mut m = message(i);
            m.keeps = PART_BYTES / 2;
            Delivery::Message(m)
        };
        out.send(big(1)).await.ok().unwrap();
        out.send(big(2)).await.ok().unwrap();
        let waiting = tokio::spawn(async move {
            out.send(big(3))
                .await
                .ok()
                .expect("sent once there is room");
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The fold folds both batches and hands them back instead of dropping them:
        // only the waiting reader can free their share.
        for _ in 0..2 {
            back.send(rx.recv().await.unwrap()).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the reader freed the returned batches and went on")
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().deliveries, [big(3)]);
    }

    #[tokio::test]
    async fn what_the_ordering_buffer_releases_at_once_goes_in_batches() {
        let (mut out, mut rx, _, _shutdown) = outlet(64);
        // A pause can release up to HELD_CAP messages into the batch at once.
        out.batch
            .extend((0..BATCH as u64 * 2 + 5).map(|i| Delivery::Message(message(i))));
        out.flush().await.ok().unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| b.deliveries.len())
            .collect();
        assert_eq!(sizes, [BATCH, BATCH, 5]);
    }

    #[tokio::test]
    async fn a_batch_goes_when_full_and_connection_changes_go_at_once() {
        let (mut out, mut rx, _, _shutdown) = outlet(4);
        let m = |i: u64| {
            Delivery::Message(SourceMessage {
                fingerprint: i,
                at: Some(i as i64),
                keeps: 0,
                payload: super::super::Payload::SkippedLog(crate::core::LogKind::Skaffold),
            })
        };
        for i in 0..BATCH as u64 - 1 {
            out.push(m(i)).await.ok().unwrap();
        }
        assert!(rx.try_recv().is_err(), "not full yet");
        out.push(m(999)).await.ok().unwrap();
        assert_eq!(rx.try_recv().unwrap().deliveries.len(), BATCH);
        out.push(m(1)).await.ok().unwrap();
        out.send(Delivery::Paused).await.ok().unwrap();
        assert_eq!(rx.try_recv().unwrap().deliveries, [m(1), Delivery::Paused]);
        assert_eq!(queue_batches(4096), 4);
        assert_eq!(queue_batches(4097), 5);
        assert_eq!(queue_batches(1), 1);
    }

    #[tokio::test]
    async fn folded_batches_come_back_to_the_reader_to_be_freed_and_reused() {
        let (mut out, mut rx, _, _shutdown) = outlet(4);
        let (back, recycled) = mpsc::channel(4);
        out.recycled = Some(recycled);
        out.send(Delivery::Paused).await.ok().unwrap();
        let first = rx.try_recv().unwrap();
        let reused = first.deliveries.as_ptr();
        // The fold hands back what it folded: two batches, one still holding a delivery.
        back.try_send(first).unwrap();
        back.try_send(Batch {
            deliveries: vec![Delivery::Ended],
            keeps: None,
        })
        .unwrap();
        out.send(Delivery::Ended).await.ok().unwrap();
        assert_eq!(
            back.capacity(),
            4,
            "the reader took (and freed) every returned batch"
        );
        assert_eq!(rx.try_recv().unwrap().deliveries, [Delivery::Ended]);
        out.send(Delivery::Unreachable).await.ok().unwrap();
        let next = rx.try_recv().unwrap().deliveries;
        assert_eq!(next, [Delivery::Unreachable]);
        assert_eq!(
            next.as_ptr(),
            reused,
            "the next batch is built in a returned vector"
        );
    }

    // === the reconnect loop, with a fake connector, in paused time ===

    /// A stream that hands out its script, then stays open and silent.
    struct FakeStream(std::collections::VecDeque<Result<Option<SourceMessage>, StreamError>>);

    impl EventStream for FakeStream {
        async fn next(&mut self) -> Result<Option<SourceMessage>, StreamError> {
            match self.0.pop_front() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    }

    /// Connects as scripted (then never again), noting when it was asked.
    struct FakeConnector {
        script: std::collections::VecDeque<Result<FakeStream, ConnectError>>,
        asked: Arc<Mutex<Vec<Instant>>>,
    }

    impl Connector for FakeConnector {
        type Stream = FakeStream;

        fn target(&self) -> String {
            "fake".into()
        }

        async fn connect(&mut self) -> Result<FakeStream, ConnectError> {
            self.asked.lock().unwrap().push(Instant::now());
            match self.script.pop_front() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    }

    /// An event message (ordered by its timestamp).
    fn message(i: u64) -> SourceMessage {
        let at = i as i64 * 1_000_000;
        SourceMessage {
            fingerprint: i,
            at: Some(at),
            keeps: 0,
            payload: super::super::Payload::Event(crate::core::Event {
                at,
                kind: crate::core::EventKind::Debug,
            }),
        }
    }

    fn unreachable() -> Result<FakeStream, ConnectError> {
        Err(ConnectError::Unreachable("connection refused".into()))
    }

    fn stream(
        items: Vec<Result<Option<SourceMessage>, StreamError>>,
    ) -> Result<FakeStream, ConnectError> {
        Ok(FakeStream(items.into()))
    }

    const RETRY: Retry = Retry {
        min: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };

    /// Runs the supervisor over `script` until it has handed on `n` deliveries.
    async fn supervise(
        script: Vec<Result<FakeStream, ConnectError>>,
        n: usize,
    ) -> (Vec<Delivery>, Vec<Instant>, Health) {
        let (tx, mut rx) = mpsc::channel(16);
        let (stop, shutdown) = watch::channel(false);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let health = Health::default();
        let task = tokio::spawn(run(
            FakeConnector {
                script: script.into(),
                asked: asked.clone(),
            },
            RETRY,
            tx,
            health.clone(),
            shutdown,
        ));
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(
                rx.recv()
                    .await
                    .expect("the supervisor keeps running")
                    .deliveries,
            );
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let asked = asked.lock().unwrap().clone();
        (got, asked, health)
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_skaffold_is_retried_with_backoff_and_reported_once() {
        let (got, asked, health) = supervise(
            vec![
                unreachable(),
                unreachable(),
                unreachable(),
                stream(vec![Ok(Some(message(1))), Ok(None)]),
            ],
            4,
        )
        .await;
        assert_eq!(
            got,
            [
                Delivery::Unreachable,
                Delivery::Subscribed { stream: 1 },
                Delivery::Message(message(1)),
                Delivery::Ended,
            ]
        );
        // Three failures: three waits, each within the backoff's bounds.
        assert!(asked.len() >= 4, "{asked:?}");
        for gap in asked.windows(2).take(3).map(|w| w[1] - w[0]) {
            assert!(gap >= RETRY.min && gap <= RETRY.max, "{gap:?}");
        }
        assert_eq!(health.counts().reconnects, 0, "the first subscription");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_stream_hands_on_what_it_held_and_the_next_counts_as_a_reconnect() {
        let (got, _, health) = supervise(
            vec![
                stream(vec![
                    Ok(Some(message(2))),
                    Err(StreamError::Failed("reset".into())),
                ]),
                stream(vec![Ok(Some(message(3)))]),
            ],
            6,
        )
        .await;
        assert_eq!(
            got,
            [
                Delivery::Subscribed { stream: 1 },
                // The broken stream's ordering buffer still held it: the fold decides.
                Delivery::HeldBack(vec![message(2)]),
                Delivery::Ended,
                Delivery::Subscribed { stream: 2 },
                // Quiet for a window: the replay is in.
                Delivery::Message(message(3)),
                Delivery::Paused,
            ]
        );
        assert_eq!(health.counts().reconnects, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_stream_is_read_to_its_end_and_every_message_counted() {
        let (got, _, health) = supervise(
            vec![
                stream(vec![
                    Err(StreamError::Incompatible("old layout".into())),
                    Ok(Some(message(4))),
                    Ok(Some(message(5))),
                    Ok(None),
                ]),
                stream(vec![Ok(Some(message(6)))]),
            ],
            5,
        )
        .await;
        assert_eq!(
            got,
            [
                Delivery::Subscribed { stream: 1 },
                Delivery::Ended,
                Delivery::Subscribed { stream: 2 },
                Delivery::Message(message(6)),
                Delivery::Paused,
            ]
        );
        // The message that told, and the two after it: none folded, all counted.
        assert_eq!(
            health.counts().invalid,
            [Reason::IncompatibleLayout; 3].to_vec()
        );
    }
}
