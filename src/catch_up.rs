//! When a freshly started exporter has taken in Skaffold's history.
//!
//! Skaffold replays its whole event log to every new subscriber, then streams live
//! events. A restarted exporter re-folds that history, so its counters end up at least
//! where the exporter before it left them; what it must never publish is a *partial*
//! fold: a value below the last one published reads as a counter reset, and
//! `increase()` then counts the history again. So `/metrics` and the OTLP metrics push
//! wait for the [`Gate`].
//!
//! The gate has no notion of "caught up" of its own: the fold opens it the first time
//! it has folded a stream's replay, i.e. everything up to the stream's first pause
//! (`Delivery::Paused`, `pipeline::Progress::set_caught_up`), the same signal
//! `/readyz` reports. Unlike readiness it stays open: a later reconnect's replay is
//! de-duplicated by the fold (`core::replay`), so no value goes down meanwhile.
//!
//! A stream that never pauses never reports its replay folded: one whose events keep
//! coming less than `core::order::WINDOW` apart (log lines do not count, see
//! `core::order`). So the gate opens [`BOUND`] after the exporter started at the
//! latest, logged: from then on `/metrics` and the push publish what is folded, as
//! they would without the gate. Only a replay that takes longer than that to fold
//! could then be published in part.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::Nanos;

/// How long after its start an exporter waits for the replay at most.
pub const BOUND: Duration = Duration::from_secs(5);

/// Opens `gate` after `bound` unless the fold opened it before (logs why); returns
/// early when `stop` turns true.
pub async fn open_by(gate: Gate, bound: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(bound) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    if !gate.is_open() {
        gate.open_now();
        tracing::warn!(
            ?bound,
            "Skaffold's event stream has not paused since the exporter started (a steady stream of log lines?): /metrics and the OTLP metrics push publish what is folded from now on."
        );
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A latch opened by the fold once Skaffold's first replay is folded; `/metrics` and
/// the OTLP metrics push wait for it. Cloning shares it; `default()` is closed.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Latch>);

#[derive(Debug, Default)]
struct Latch {
    /// When it opened (nanoseconds since the epoch), 0 while closed.
    opened: AtomicI64,
    /// Wakes those waiting for it to open.
    opening: tokio::sync::Notify,
}

impl Gate {
    /// A gate that was always open (`replay`, which folds whole files before it
    /// pushes, and tests).
    pub fn open() -> Self {
        let g = Gate::default();
        g.0.opened.store(1, Ordering::Release);
        g
    }

    /// Opens the gate (the first call sets the time, and wakes the waiters).
    pub fn open_now(&self) {
        let first = self
            .0
            .opened
            .compare_exchange(0, now_nanos().max(2), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.0.opening.notify_waiters();
        }
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        self.0.opened.load(Ordering::Acquire) != 0
    }

    /// Returns once the gate is open.
    pub async fn wait_open(&self) {
        loop {
            // Registered before the look, so an opening in between is not missed.
            let opening = self.0.opening.notified();
            tokio::pin!(opening);
            opening.as_mut().enable();
            if self.is_open() {
                return;
            }
            opening.await;
        }
    }

    /// When the gate opened, if it did. What was collected before then may be a
    /// partial fold.
    pub fn opened_at(&self) -> Option<SystemTime> {
        match self.0.opened.load(Ordering::Acquire) {
            0 => None,
            n => Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_once_and_remembers_when() {
        let g = Gate::default();
        assert!(!g.is_open() && g.opened_at().is_none());
        g.open_now();
        let first = g.opened_at().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        g.clone().open_now();
        assert_eq!(g.opened_at(), Some(first));
        let o = Gate::open();
        assert!(o.is_open() && o.opened_at().unwrap() < first);
    }

    #[tokio::test]
    async fn waiting_for_the_gate_ends_when_it_opens() {
        let g = Gate::default();
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.wait_open().await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "closed: still waiting");
        g.open_now();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when it opened")
            .unwrap();
        // Open already: no wait.
        tokio::time::timeout(Duration::from_secs(5), g.wait_open())
            .await
            .expect("an open gate does not wait");
    }
}
