//! The fold task's body: replay de-duplication → decode → `State::apply` → sinks.
//!
//! One `Pipeline` is owned by one task; sources feed it through a bounded queue. It
//! does no I/O of its own (metrics are in-memory; logging is rate-limited), so the
//! same code folds live streams, log files and test fixtures.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hasher};

use prost::Message;

use crate::core::{Admission, Event, InvalidEvent, ReplayFilter, State, Transition};
use crate::pb::v1;
use crate::sink::Metrics;
use crate::source::SourceMessage;
use crate::source::decode::decode_v1;

/// Receives every transition besides the Prometheus sink (spans, summaries, tests).
pub trait TransitionObserver: Send {
    /// Called for each transition, in order, with the event that caused it.
    fn observe(&mut self, event: &Event, transition: &Transition);
}

/// The fold and its sinks.
pub struct Pipeline {
    state: State,
    filter: ReplayFilter,
    /// The Prometheus sink.
    pub metrics: Metrics,
    observers: Vec<Box<dyn TransitionObserver>>,
    logged: HashSet<&'static str>,
    folded: u64,
}

impl Pipeline {
    /// A pipeline writing into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            state: State::new(),
            filter: ReplayFilter::new(),
            metrics,
            observers: Vec::new(),
            logged: HashSet::new(),
            folded: 0,
        }
    }

    /// Adds an observer of transitions.
    pub fn add_observer(&mut self, o: Box<dyn TransitionObserver>) {
        self.observers.push(o);
    }

    /// Entries folded so far (not counting replayed ones).
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Handles one message from a live source: skips replays, folds the rest.
    pub fn handle(&mut self, msg: &SourceMessage) {
        let fingerprint = fingerprint(&msg.entry);
        match self.filter.admit(msg.position, fingerprint) {
            Admission::Replayed => {
                self.metrics.own.replayed_skipped.inc();
            }
            Admission::ReplayMismatch => self.invalid(
                &InvalidEvent::Undecodable("replayed history differs from what was folded".into()),
                "replay_mismatch",
            ),
            Admission::Fold | Admission::FoldNewProcess => self.fold_entry(&msg.entry),
        }
    }

    /// Folds one entry (no de-duplication: for files and fixtures).
    pub fn fold_entry(&mut self, entry: &v1::LogEntry) {
        match decode_v1(entry) {
            Ok(ev) => self.fold_event(&ev),
            Err(e) => self.invalid(&e, e.reason()),
        }
    }

    /// Folds one decoded event.
    pub fn fold_event(&mut self, ev: &Event) {
        self.folded += 1;
        self.metrics
            .own
            .events
            .get_or_create(&crate::sink::prometheus::EventLabel {
                event: ev.kind.name(),
            })
            .inc();
        let secs = ev.at as f64 / 1e9;
        if secs > self.metrics.own.last_event_timestamp.get() {
            self.metrics.own.last_event_timestamp.set(secs);
        }
        for t in self.state.apply(ev) {
            if let Transition::Anomaly(reason) = &t {
                self.log_once(reason, &format!("{:?} event", ev.kind.name()));
            }
            self.metrics.observe(&t);
            for o in &mut self.observers {
                o.observe(ev, &t);
            }
        }
    }

    /// Counts an event that could not be interpreted, logging the first of each reason.
    pub fn invalid(&mut self, err: &InvalidEvent, reason: &'static str) {
        self.metrics
            .own
            .invalid
            .get_or_create(&crate::sink::prometheus::ReasonLabel { reason })
            .inc();
        self.log_once(reason, &err.to_string());
    }

    fn log_once(&mut self, reason: &'static str, detail: &str) {
        if self.logged.insert(reason) {
            tracing::warn!(
                reason,
                detail,
                "Skipped an event the exporter cannot interpret; further ones with this reason are only counted (skaffold_exporter_invalid_events_total)."
            );
        }
    }
}

/// A stable hash of an entry's encoded bytes.
pub fn fingerprint(entry: &v1::LogEntry) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(&entry.encode_to_vec());
    h.finish()
}
