//! When a freshly started exporter has taken in Skaffold's history.
//!
//! Skaffold replays its whole event log to every new subscriber, then streams live
//! events, with no marker in between. A restarted exporter re-folds that history, so
//! its counters end up at least where the exporter before it left them; what it must
//! never publish is a *partial* fold: a value below the last one published reads as
//! a counter reset, and `increase()` then counts the history again. So `/metrics`
//! and the OTLP metrics push wait for the [`Gate`], which opens once, when
//! [`CatchUp`] sees the fold level with the reader and either
//!
//! - an event stamped (by Skaffold) at or after the exporter's start is folded: the
//!   exporter before this one stopped before that instant, so everything it could
//!   have counted comes earlier in Skaffold's log and is folded too; or
//! - the stream has been quiet for [`QUIET`] (an idle Skaffold: its replay is one
//!   burst, written by a loop that does nothing else).
//!
//! Skaffold and the exporter share a clock (the same machine or pod), as the span
//! builder already assumes for the iterations it leaves out after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::Nanos;

/// How long a connected stream must stay quiet, with everything folded, before an
/// idle Skaffold's replay counts as taken in.
pub const QUIET: Duration = Duration::from_secs(1);

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A latch shared by the catch-up watcher (opens it), `/metrics` and the OTLP
/// metrics push (wait for it). Cloning shares it.
#[derive(Debug, Clone)]
pub struct Gate(Arc<GateInner>);

#[derive(Debug)]
struct GateInner {
    /// When the exporter started (Unix ns): events before it are history.
    started: Nanos,
    /// When the gate opened (Unix ns); 0 while closed.
    opened: AtomicI64,
}

impl Gate {
    /// A closed gate of an exporter that started at `started` (Unix ns).
    pub fn closed(started: Nanos) -> Self {
        Gate(Arc::new(GateInner {
            started,
            opened: AtomicI64::new(0),
        }))
    }

    /// A gate that was always open and for which nothing is history (`replay`,
    /// which reads whole files before it exits).
    pub fn open() -> Self {
        Gate(Arc::new(GateInner {
            started: Nanos::MIN,
            opened: AtomicI64::new(1),
        }))
    }

    /// When the exporter started (Unix ns; `Nanos::MIN` for [`Gate::open`]).
    pub fn started(&self) -> Nanos {
        self.0.started
    }

    /// Opens the gate (the first call sets the time).
    pub fn open_now(&self) {
        let _ = self.0.opened.compare_exchange(
            0,
            now_nanos().max(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        self.0.opened.load(Ordering::Acquire) != 0
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

/// One look at the reader and the fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Subscribed to Skaffold right now.
    pub connected: bool,
    /// Entries received from Skaffold so far.
    pub received: u64,
    /// Entries the fold has handled so far.
    pub handled: u64,
    /// Skaffold's timestamp of the newest event folded (Unix ns; 0: none).
    pub newest_event: Nanos,
}

/// Decides, from successive [`Reading`]s, when the replay has been taken in.
#[derive(Debug, Clone)]
pub struct CatchUp {
    started: Nanos,
    quiet: Duration,
    /// Entries received at the last change, and since when.
    unchanged: Option<(u64, Instant)>,
}

impl CatchUp {
    /// For an exporter that started at `started` (Unix ns), with quiet period `quiet`.
    pub fn new(started: Nanos, quiet: Duration) -> Self {
        Self {
            started,
            quiet,
            unchanged: None,
        }
    }

    /// Whether, at `now`, the history has been taken in.
    pub fn observe(&mut self, now: Instant, r: Reading) -> bool {
        if !r.connected {
            self.unchanged = None;
            return false;
        }
        let since = match self.unchanged {
            Some((n, since)) if n == r.received => since,
            _ => {
                self.unchanged = Some((r.received, now));
                now
            }
        };
        r.handled >= r.received
            && (r.newest_event >= self.started || now.duration_since(since) >= self.quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Nanos = 1_700_000_000_000_000_000;

    fn reading(connected: bool, received: u64, handled: u64, newest: Nanos) -> Reading {
        Reading {
            connected,
            received,
            handled,
            newest_event: newest,
        }
    }

    #[test]
    fn a_folded_event_from_after_the_start_ends_the_history_at_once() {
        let mut c = CatchUp::new(START, QUIET);
        let t = Instant::now();
        assert!(!c.observe(t, reading(false, 0, 0, 0)), "not connected");
        assert!(
            !c.observe(t, reading(true, 40, 39, START - 5)),
            "still folding"
        );
        assert!(
            !c.observe(t, reading(true, 40, 40, START - 5)),
            "history only"
        );
        assert!(
            !c.observe(t, reading(true, 41, 40, START - 5)),
            "not folded yet"
        );
        assert!(c.observe(t, reading(true, 41, 41, START + 1)));
    }

    #[test]
    fn an_idle_skaffold_is_caught_up_after_a_quiet_period_with_everything_folded() {
        let mut c = CatchUp::new(START, QUIET);
        let t = Instant::now();
        assert!(!c.observe(t, reading(true, 10, 10, START - 9)));
        let later = t + QUIET / 2;
        assert!(!c.observe(later, reading(true, 10, 10, START - 9)));
        // More history arrives: the quiet period starts again.
        assert!(!c.observe(t + QUIET, reading(true, 12, 12, START - 8)));
        assert!(!c.observe(t + QUIET * 3 / 2, reading(true, 12, 12, START - 8)));
        assert!(c.observe(t + QUIET * 2, reading(true, 12, 12, START - 8)));
        // A quiet stream with entries still queued for the fold is not caught up.
        let mut c = CatchUp::new(START, QUIET);
        assert!(!c.observe(t, reading(true, 12, 11, START - 8)));
        assert!(!c.observe(t + QUIET * 5, reading(true, 12, 11, START - 8)));
    }

    #[test]
    fn a_disconnect_restarts_the_quiet_period() {
        let mut c = CatchUp::new(START, QUIET);
        let t = Instant::now();
        assert!(!c.observe(t, reading(true, 3, 3, START - 1)));
        assert!(!c.observe(t + QUIET / 2, reading(false, 3, 3, START - 1)));
        assert!(!c.observe(t + QUIET, reading(true, 3, 3, START - 1)));
        assert!(c.observe(t + QUIET * 2, reading(true, 3, 3, START - 1)));
    }

    #[test]
    fn the_gate_opens_once_and_remembers_when() {
        let g = Gate::closed(START);
        assert!(!g.is_open() && g.opened_at().is_none());
        g.open_now();
        let first = g.opened_at().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        g.clone().open_now();
        assert_eq!(g.opened_at(), Some(first));
        assert_eq!(g.started(), START);
        let o = Gate::open();
        assert!(o.is_open() && o.opened_at().unwrap() < first);
        assert_eq!(o.started(), Nanos::MIN);
    }
}
