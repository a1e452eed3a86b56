//! The fold task's body: connection state and replay de-duplication → decode →
//! `State::apply_into` → sinks.
//!
//! One `Pipeline` is owned by one task; sources feed it [`Delivery`]s through a
//! bounded queue: messages and, in band with them, the connection's state, so
//! readiness, `skaffold_exporter_connected` and the end of derived iterations follow
//! the events in order. It does no I/O of its own (metrics are in-memory; logging is
//! rate-limited), so the same code folds live streams, log files and test fixtures.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::catch_up::Gate;
use crate::core::order::{HELD_BYTES, HELD_CAP};
use crate::core::{
    Admission, Attribution, Event, InvalidEvent, LogKind, Reason, ReplayFilter, State, Transition,
};
use crate::pb::{lean, v1, v2};
use crate::sink::Metrics;
use crate::sink::otlp::SpanSink;
use crate::sink::otlp_setup::{OtlpSettings, Telemetry, TelemetryError};
use crate::source::decode::decode_v1_full;
use crate::source::decode_v2::V2Decoder;
use crate::source::{Delivery, Payload, SourceMessage};

/// The connection as the fold has seen it (in band, in order with the events), for
/// readiness and the catch-up gate.
#[derive(Debug, Default)]
pub struct Progress {
    /// Subscribed right now.
    pub connected: AtomicBool,
    /// The current stream's replay (everything up to its first pause) is folded.
    pub caught_up: AtomicBool,
    /// The last attempt to reach Skaffold failed, and no stream has begun since.
    pub unreachable: AtomicBool,
    /// Opens the first time `caught_up` is set, and stays open (see
    /// [`crate::catch_up`]).
    pub history_folded: Gate,
}

impl Progress {
    /// Subscribed, and Skaffold's replay has been taken in.
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Acquire) && self.caught_up.load(Ordering::Acquire)
    }

    /// Records a subscription (`true`: its replay still to come) or its end.
    pub fn set_connected(&self, connected: bool) {
        self.caught_up.store(false, Ordering::Release);
        if connected {
            self.unreachable.store(false, Ordering::Release);
        }
        self.connected.store(connected, Ordering::Release);
    }

    /// An attempt to reach Skaffold failed.
    pub fn set_unreachable(&self) {
        self.unreachable.store(true, Ordering::Release);
    }

    /// Everything received so far is folded (the replay, or a whole input file).
    pub fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
        self.history_folded.open_now();
    }
}

/// Receives every transition besides the Prometheus sink (defined in the core, so
/// sinks implement it without depending on the pipeline).
pub use crate::core::TransitionObserver;

/// The fold and its sinks.
pub struct Pipeline {
    state: State,
    filter: ReplayFilter,
    /// The Prometheus sink.
    pub metrics: Metrics,
    observers: Vec<Box<dyn TransitionObserver>>,
    /// Traces (OTLP), when configured.
    spans: Option<SpanSink>,
    logged: HashSet<Reason>,
    /// Whether a v2 `Build` task with no per-artifact events was logged already.
    told_unattributed_build: bool,
    folded: u64,
    v2: V2Decoder,
    scratch: Vec<Event>,
    /// The transitions of the event being folded (one buffer, reused).
    transitions: Vec<Transition>,
    /// Events counted as invalid so far, and the last reason (replay reports them).
    invalid_count: u64,
    last_invalid: Option<String>,
    /// Readiness, as the deliveries say (live sources).
    progress: Option<Arc<Progress>>,
    /// `folded` when Skaffold was last found gone (derived iterations end once).
    folded_when_gone: u64,
    /// Messages a broken stream held back (see [`Delivery::HeldBack`]).
    held_back: Vec<SourceMessage>,
    /// `skaffold_exporter_events_total` and `..._log_events_skipped_total` series by
    /// label, looked up once (a family lookup hashes the label every time).
    event_counters: Vec<(&'static str, Counter)>,
    log_counters: [Option<Counter>; 2],
    /// What the last v2 event brought that is not folded, with the reason (replay
    /// reports it per record).
    not_folded: Option<String>,
}

/// Puts a [`Pipeline`] together with its metrics registry and sinks, the one way the
/// live exporter, `replay`, the demo, the tests and the benches wire it:
/// `Pipeline::builder().buckets(..).otlp(..).observer(..).build()`. Defaults are the
/// command line's: the default buckets, 200 label values, no OTLP, no process
/// metrics.
#[must_use]
pub struct PipelineBuilder<'a> {
    buckets: Vec<f64>,
    max_label_values: usize,
    process_metrics: bool,
    otlp: Option<&'a OtlpSettings>,
    spans: Option<SpanSink>,
    observers: Vec<Box<dyn TransitionObserver>>,
    progress: Option<Arc<Progress>>,
}

/// What [`PipelineBuilder::build`] returns.
pub struct Built {
    /// The fold and its sinks.
    pub pipeline: Pipeline,
    /// The registry `/metrics` serves (the pipeline's metrics, then the process
    /// metrics, then the OTLP export's own counters, in that order).
    pub registry: Registry,
    /// The OTLP metrics push and shutdown budget (the span sink is in the pipeline).
    pub telemetry: Telemetry,
}

impl<'a> PipelineBuilder<'a> {
    /// Histogram buckets (seconds).
    pub fn buckets(mut self, buckets: &[f64]) -> Self {
        self.buckets = buckets.to_vec();
        self
    }

    /// The label cardinality cap.
    pub fn max_label_values(mut self, n: usize) -> Self {
        self.max_label_values = n;
        self
    }

    /// Registers the process metrics (`process_*`) too, as the live exporter does.
    pub fn process_metrics(mut self) -> Self {
        self.process_metrics = true;
        self
    }

    /// Starts the OTLP export `settings` asks for (nothing when it is off); call
    /// [`PipelineBuilder::build`] inside the tokio runtime then.
    pub fn otlp(mut self, settings: &'a OtlpSettings) -> Self {
        self.otlp = Some(settings);
        self
    }

    /// Sends spans to `sink` (tests and benches that build a sink by hand; replaces
    /// the one [`PipelineBuilder::otlp`] starts).
    pub fn spans(mut self, sink: SpanSink) -> Self {
        self.spans = Some(sink);
        self
    }

    /// Adds an observer of transitions (in the order added).
    pub fn observer(mut self, o: Box<dyn TransitionObserver>) -> Self {
        self.observers.push(o);
        self
    }

    /// Reports readiness through `progress` (see [`Pipeline::set_progress`]).
    pub fn progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Registers the metrics, starts the OTLP export and wires it all.
    pub fn build(self) -> Result<Built, TelemetryError> {
        let mut registry = Registry::default();
        let mut metrics = Metrics::register(&mut registry, &self.buckets, self.max_label_values);
        if self.process_metrics {
            crate::sink::process::register(&mut registry);
        }
        let mut telemetry = match self.otlp {
            Some(o) => Telemetry::start(o, &mut registry, &mut metrics, &self.buckets)?,
            None => Telemetry::default(),
        };
        let mut pipeline = Pipeline::new(metrics);
        if let Some(spans) = self.spans.or_else(|| telemetry.spans.take()) {
            pipeline.set_spans(spans);
        }
        if let Some(progress) = self.progress {
            pipeline.set_progress(progress);
        }
        for o in self.observers {
            pipeline.add_observer(o);
        }
        Ok(Built {
            pipeline,
            registry,
            telemetry,
        })
    }
}

impl Pipeline {
    /// A builder with the command line's defaults.
    pub fn builder<'a>() -> PipelineBuilder<'a> {
        PipelineBuilder {
            buckets: crate::sink::DEFAULT_BUCKETS.to_vec(),
            max_label_values: crate::sink::DEFAULT_MAX_LABEL_VALUES,
            process_metrics: false,
            otlp: None,
            spans: None,
            observers: Vec::new(),
            progress: None,
        }
    }

    /// A pipeline writing into `metrics` (see [`Pipeline::builder`]).
    fn new(metrics: Metrics) -> Self {
        Self {
            state: State::new(),
            filter: ReplayFilter::new(),
            metrics,
            observers: Vec::new(),
            spans: None,
            logged: HashSet::new(),
            told_unattributed_build: false,
            folded: 0,
            v2: V2Decoder::new(),
            scratch: Vec::new(),
            transitions: Vec::new(),
            invalid_count: 0,
            last_invalid: None,
            progress: None,
            folded_when_gone: 0,
            held_back: Vec::new(),
            event_counters: Vec::new(),
            log_counters: [None, None],
            not_folded: None,
        }
    }

    /// Reports the connection (readiness) through `progress`, as deliveries arrive.
    pub fn set_progress(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    /// Adds an observer of transitions.
    pub fn add_observer(&mut self, o: Box<dyn TransitionObserver>) {
        self.observers.push(o);
    }

    /// Entries folded so far (not counting replayed ones).
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Takes one delivery from a live source, in order: connection changes, and
    /// messages (replays skipped, the rest folded).
    /// The delivery stays the caller's, to be dropped where it was allocated (see
    /// [`Pipeline::deliver_batch`]).
    pub fn deliver(&mut self, delivery: &Delivery) {
        match delivery {
            Delivery::Message(m) => self.handle(m),
            Delivery::Subscribed { .. } => {
                self.filter.begin_stream();
                self.metrics.own.connected.set(1);
                if let Some(p) = &self.progress {
                    p.set_connected(true);
                }
            }
            Delivery::HeldBack(messages) => {
                self.held_back.extend(messages.iter().cloned());
                self.bound_held_back();
            }
            Delivery::Paused => {
                if self.filter.settled() == Attribution::NewProcess {
                    tracing::info!(
                        "The event stream comes from a new Skaffold process: replay de-duplication starts afresh."
                    );
                }
                // The replay is in and did not bring them: their Skaffold is gone.
                self.fold_held_back();
                if let Some(p) = &self.progress {
                    p.set_caught_up();
                }
            }
            Delivery::Ended => {
                self.filter.end_stream();
                self.metrics.own.connected.set(0);
                if let Some(p) = &self.progress {
                    p.set_connected(false);
                }
            }
            Delivery::Unreachable => {
                if let Some(p) = &self.progress {
                    p.set_unreachable();
                }
                self.fold_held_back();
                // Skaffold went away after sending something: a derived iteration
                // that is complete ends; spans it left open end, `disconnected`. Only
                // then: a stream that broke while Skaffold lives on is resumed (and
                // its replay skipped) instead.
                if self.folded > self.folded_when_gone {
                    self.folded_when_gone = self.folded;
                    self.disconnected();
                }
            }
        }
    }

    /// Takes a batch of deliveries, in order. The fingerprints of its messages are
    /// looked up first, all together, so the memory reads overlap. The batch stays
    /// the caller's: the live path hands it back to the reader, so that what the
    /// reader allocated is freed on its thread (glibc's allocator makes frees from
    /// another thread contend for the allocating thread's arena: measured, up to
    /// twice the CPU per event).
    pub fn deliver_batch(&mut self, batch: &[Delivery]) {
        self.filter.warm(batch.iter().filter_map(|d| match d {
            Delivery::Message(m) => Some(m.fingerprint),
            _ => None,
        }));
        for d in batch {
            self.deliver(d);
        }
    }

    /// Handles one message of the current stream: skips replays, folds the rest.
    pub fn handle(&mut self, msg: &SourceMessage) {
        let admission = self.filter.admit(msg.fingerprint, msg.at);
        // A replayed event proves the stream comes from the Skaffold whose broken
        // stream held messages back: its replay brings them, in order.
        if !self.held_back.is_empty()
            && (admission == Admission::Replayed
                || self
                    .held_back
                    .iter()
                    .any(|h| h.fingerprint == msg.fingerprint))
        {
            self.held_back.clear();
        }
        match admission {
            Admission::Replayed => {
                self.metrics.own.replayed_skipped.inc();
            }
            Admission::Fold => self.fold_payload(&msg.payload),
        }
    }

    /// Streams that keep breaking before the fold learns where the next one comes
    /// from pile up held-back messages: beyond what one stream may hold
    /// (`core::order::HELD_CAP` messages, `HELD_BYTES` kept alive), the oldest are
    /// folded now. They lose their place in Skaffold's order, but still count exactly
    /// once (a later replay of them is recognised and skipped).
    fn bound_held_back(&mut self) {
        let mut bytes: u64 = self.held_back.iter().map(|m| u64::from(m.keeps)).sum();
        let mut excess = 0;
        while excess < self.held_back.len()
            && (self.held_back.len() - excess > HELD_CAP || bytes > HELD_BYTES)
        {
            bytes -= u64::from(self.held_back[excess].keeps);
            excess += 1;
        }
        if excess == 0 {
            return;
        }
        let rest = self.held_back.split_off(excess);
        self.fold_held_back();
        self.held_back = rest;
    }

    /// Folds the messages a broken stream held back: their Skaffold is gone or was
    /// replaced, so no replay will bring them.
    fn fold_held_back(&mut self) {
        for m in std::mem::take(&mut self.held_back) {
            self.handle(&m);
        }
    }

    /// The source is done (shutdown): anything still held back is folded.
    pub fn finish(&mut self) {
        self.fold_held_back();
    }

    /// Fingerprints of the current Skaffold process held for de-duplication, and the
    /// bytes they take.
    pub fn dedup_size(&self) -> (usize, usize) {
        (self.filter.len(), self.filter.bytes())
    }

    /// Folds one received message (no de-duplication).
    pub fn fold_payload(&mut self, payload: &Payload) {
        match payload {
            Payload::V1(entry) => self.fold_entry(entry),
            Payload::Event(ev) => self.fold_event(ev),
            Payload::V2(event) => self.fold_lean_v2(event),
            Payload::SkippedLog(kind) => self.skipped_log(*kind),
            Payload::Invalid(e) => self.invalid(e, e.reason()),
        }
    }

    /// Folds one v2 event (no de-duplication: for files and fixtures). Log events are
    /// counted, and otherwise only looked at for file syncs.
    pub fn fold_v2(&mut self, event: &v2::Event) {
        self.fold_lean_v2(&lean::v2::Event::of(event));
    }

    /// Folds one v2 event, as the sources decode it (see [`Pipeline::fold_v2`]).
    pub fn fold_lean_v2(&mut self, event: &lean::v2::Event) {
        use lean::v2::event::EventType as E;
        match &event.event_type {
            Some(E::SkaffoldLogEvent(_)) => self.skipped_log(LogKind::Skaffold),
            Some(E::ApplicationLogEvent(_)) => {
                self.skipped_log(LogKind::Application);
                return;
            }
            _ => {}
        }
        let mut events = std::mem::take(&mut self.scratch);
        match self.v2.decode(event, &mut events) {
            Ok(()) => {
                for ev in &events {
                    self.fold_event(ev);
                }
            }
            Err(e) => self.invalid(&e, e.reason()),
        }
        if let Some(build) = self.v2.take_unattributed_build() {
            if !std::mem::replace(&mut self.told_unattributed_build, true) {
                tracing::info!("Not folded: {build}. Further ones are not logged.");
            }
            self.not_folded = Some(build.to_string());
        }
        events.clear();
        self.scratch = events;
    }

    /// Counts a log event that was not folded.
    pub fn skipped_log(&mut self, kind: LogKind) {
        let slot = match kind {
            LogKind::Skaffold => 0,
            LogKind::Application => 1,
        };
        let own = &self.metrics.own;
        self.log_counters[slot]
            .get_or_insert_with(|| own.log_skipped_counter(kind))
            .inc();
    }

    /// Increments `skaffold_exporter_events_total{event}`.
    fn count_event(&mut self, event: &'static str) {
        // Event names are constants: the same name is nearly always the same pointer.
        if let Some((_, c)) = self
            .event_counters
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, event) || *k == event)
        {
            c.inc();
            return;
        }
        let c = self.metrics.own.event_counter(event);
        c.inc();
        self.event_counters.push((event, c));
    }

    /// The v2 decoder's view of the current run's id (Skaffold v1.26+).
    pub fn run_id(&self) -> Option<&str> {
        self.v2.run_id()
    }

    /// Folds one entry (no de-duplication: for files and fixtures).
    pub fn fold_entry(&mut self, entry: &v1::LogEntry) {
        match decode_v1_full(entry) {
            Ok(ev) => self.fold_event(&ev),
            Err(e) => self.invalid(&e, e.reason()),
        }
    }

    /// Folds one decoded event.
    pub fn fold_event(&mut self, ev: &Event) {
        self.folded += 1;
        self.count_event(ev.kind.name());
        let secs = ev.at as f64 / 1e9;
        if secs > self.metrics.own.last_event_timestamp.get() {
            self.metrics.own.last_event_timestamp.set(secs);
        }
        let mut transitions = std::mem::take(&mut self.transitions);
        self.state.apply_into(ev, &mut transitions);
        self.emit(ev, &transitions);
        transitions.clear();
        self.transitions = transitions;
    }

    /// Hands the transitions `ev` caused to every sink.
    fn emit(&mut self, ev: &Event, transitions: &[Transition]) {
        for t in transitions {
            if let Transition::Anomaly(reason) = &t {
                self.log_once(*reason, &format!("{:?} event", ev.kind.name()));
            }
            let trace = self.spans.as_mut().and_then(|s| s.builder.observe(t));
            self.metrics.observe_traced(t, trace, ev.at);
            for o in &mut self.observers {
                o.observe(ev, t);
            }
        }
        if let Some(s) = &mut self.spans {
            s.ship();
        }
    }

    /// Sends spans (one trace per dev-loop iteration) to `sink`; exemplars on the
    /// duration histograms then carry their trace ids.
    pub fn set_spans(&mut self, sink: SpanSink) {
        self.spans = Some(sink);
    }

    /// Takes the span sink back (to close it on shutdown).
    pub fn take_spans(&mut self) -> Option<SpanSink> {
        let mut spans = self.spans.take();
        if let (Some(s), Some(at)) = (&mut spans, self.state.newest_at()) {
            // Where open spans end if the sink finds Skaffold gone on close.
            s.builder.seen_until(at);
        }
        spans
    }

    /// Takes the reason the last event was not (wholly) folded, when it had one that is
    /// not an error (e.g. a v1.22 `Build` task that names no artifact).
    pub fn take_not_folded(&mut self) -> Option<String> {
        self.not_folded.take()
    }

    /// What follows comes from another, unrelated Skaffold session (the next input of
    /// a replay): the current stream ends (see [`Pipeline::disconnected`]) and the
    /// next event starts a new run, MetaEvent or not; the v2 decoder starts afresh.
    pub fn begin_session(&mut self) {
        self.disconnected();
        self.v2.reset();
        self.state.begin_session();
    }

    /// Skaffold's event stream ended (or a log file did): a derived iteration whose
    /// phases all ended is complete (see `State::stream_ended`); spans still open
    /// end with result `error`.
    pub fn disconnected(&mut self) {
        let transitions = self.state.stream_ended();
        let Some(at) = transitions.iter().find_map(|t| match t {
            Transition::Finished(f) => Some(f.finished_at),
            Transition::RunEnded { last_at, .. } => Some(*last_at),
            _ => None,
        }) else {
            return;
        };
        // The end of the stream, as an event (for observers and exemplars):
        // Skaffold's last timestamp.
        let end = Event {
            at,
            kind: crate::core::EventKind::Termination {
                status: crate::core::Status::Succeeded,
                error: None,
            },
        };
        self.emit(&end, &transitions);
    }

    /// Periodic housekeeping (wall clock): releases finished root spans once their
    /// grace period for late port forwards has passed.
    pub fn tick(&mut self) {
        if let Some(s) = &mut self.spans {
            s.builder.tick();
            s.ship();
        }
    }

    /// Counts an event that could not be interpreted, logging the first of each reason.
    pub fn invalid(&mut self, err: &InvalidEvent, reason: Reason) {
        self.invalid_count += 1;
        self.last_invalid = Some(err.to_string());
        self.metrics.own.count_invalid(reason);
        self.log_once(reason, &err.to_string());
    }

    /// Events counted as invalid so far (decoding failures and rejected events).
    pub fn invalid_count(&self) -> u64 {
        self.invalid_count
    }

    /// Why the last invalid event was rejected.
    pub fn last_invalid(&self) -> Option<&str> {
        self.last_invalid.as_deref()
    }

    fn log_once(&mut self, reason: Reason, detail: &str) {
        if self.logged.insert(reason) {
            tracing::warn!(
                reason = reason.as_str(),
                detail,
                "Skipped an event the exporter cannot interpret; further ones with this reason are only counted (skaffold_exporter_invalid_events_total)."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held-back event message keeping `keeps` bytes alive.
    fn held(fingerprint: u64, keeps: u32) -> SourceMessage {
        let at = fingerprint as i64 * 1_000_000;
        SourceMessage {
            fingerprint,
            at: Some(at),
            keeps,
            payload: Payload::Event(Event {
                at,
                kind: crate::core::EventKind::Debug,
            }),
        }
    }

    #[test]
    fn streams_that_keep_breaking_fold_their_oldest_held_back_messages_once() {
        let mut p = Pipeline::builder().build().unwrap().pipeline;
        p.deliver(&Delivery::Subscribed { stream: 1 });
        let first: Vec<SourceMessage> = (0..HELD_CAP as u64).map(|i| held(i, 1)).collect();
        p.deliver(&Delivery::HeldBack(first));
        p.deliver(&Delivery::Ended);
        assert_eq!((p.folded(), p.held_back.len()), (0, HELD_CAP));
        // The next stream breaks too before anything tells where it comes from.
        p.deliver(&Delivery::Subscribed { stream: 2 });
        let second: Vec<SourceMessage> = (0..10).map(|i| held(10_000 + i, 1)).collect();
        p.deliver(&Delivery::HeldBack(second));
        assert_eq!(p.folded(), 10, "the ten oldest were folded");
        assert_eq!(p.held_back.len(), HELD_CAP);
        assert_eq!(p.held_back[0].fingerprint, 10);
        // One message keeping more than the byte bound: everything before it goes.
        p.deliver(&Delivery::HeldBack(vec![held(
            20_000,
            HELD_BYTES as u32 - 5,
        )]));
        assert_eq!(
            p.held_back.len(),
            6,
            "5 + (HELD_BYTES - 5) bytes are kept, no more"
        );
        assert_eq!(p.folded(), 10 + HELD_CAP as u64 - 5);
        // Every message is folded exactly once; a replay of one is recognised.
        p.finish();
        assert_eq!(p.folded(), 10 + HELD_CAP as u64 + 1);
        p.deliver(&Delivery::Ended);
        p.deliver(&Delivery::Subscribed { stream: 3 });
        p.handle(&held(3, 1));
        assert_eq!(p.metrics.own.replayed_skipped.get(), 1);
        assert_eq!(p.folded(), 10 + HELD_CAP as u64 + 1);
    }
}
