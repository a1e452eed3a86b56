//! Traces: one trace per dev-loop iteration, built from the fold's transitions and
//! exported over OTLP.
//!
//! [`SpanBuilder`] is pure (no I/O, no clock): transitions in, finished [`SpanData`]
//! out, with Skaffold's timestamps as start and end times and ids derived from the
//! Skaffold run (its MetaEvent timestamp), the iteration, the phase, the subject and
//! its occurrence. Folding the same event log again (an exporter restart receives
//! Skaffold's replay) therefore yields the same trace and span ids.
//!
//! What leaves, and when: the builder holds the finished children of an iteration
//! until its root is ready and releases the whole trace at once, so stopping the
//! exporter mid-iteration never leaves children whose parent never arrives (the
//! next exporter rebuilds the whole iteration from Skaffold's replay). Since that
//! replay also rebuilds the iterations the previous exporter already sent, the live
//! exporter skips the iterations that ended (by Skaffold's clock) before it started
//! ([`SpanBuilder::skip_iterations_ended_before`]): a restart never makes the store
//! receive the same span id twice.
//!
//! [`SpanSink`] owns a builder and a bounded queue to one export thread; the fold only
//! ever `try_send`s, so a slow or absent collector never blocks it: a full queue drops
//! spans and counts them (`skaffold_exporter_spans_dropped_total`). The export thread
//! sends batches ([`MAX_BATCH`] spans, or what arrived within [`BATCH_DELAY`] of the
//! first), retries a failed batch with backoff for [`RETRY_FOR`] (spans arriving
//! meanwhile wait in the queue), and counts every failed request in
//! `skaffold_exporter_otlp_export_errors_total{signal="traces"}` and a batch it gives
//! up on in `skaffold_exporter_spans_dropped_total`.
//!
//! Export runs on a dedicated OS thread, never on a tokio worker: the gRPC (tonic)
//! exporter is driven through a handle to the application's tokio runtime, so it has
//! a reactor (the known opentelemetry-rust pitfall), and the blocking HTTP client runs
//! outside any runtime, as it must.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event as SpanEvent, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use super::resource::{Platform, ResourceRef};
use super::semconv as k;
use crate::core::{Event, EventKind, Finished, LoopKind, Nanos, Outcome, Phase, Transition};

// === ids ===

/// A 16-byte trace id, as the hex string exemplars carry.
pub type TraceHex = String;

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"skaffold-exporter/trace-ids/v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The trace id of `iteration` (-1: spans outside any iteration) of the run that
/// started at `run_at` (Skaffold's MetaEvent timestamp).
pub fn trace_id(run_at: Nanos, iteration: i64) -> TraceId {
    let d = digest(&[&run_at.to_be_bytes(), &iteration.to_be_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    if b == [0; 16] {
        b[15] = 1;
    }
    TraceId::from_bytes(b)
}

/// The span id of the `occurrence`-th span of `phase`/`subject` in `trace`.
pub fn span_id(trace: TraceId, phase: &str, subject: Option<&str>, occurrence: u32) -> SpanId {
    let d = digest(&[
        &trace.to_bytes(),
        phase.as_bytes(),
        subject.unwrap_or("\u{0}").as_bytes(),
        &occurrence.to_be_bytes(),
    ]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    if b == [0; 8] {
        b[7] = 1;
    }
    SpanId::from_bytes(b)
}

fn time(at: Nanos) -> SystemTime {
    if at >= 0 {
        UNIX_EPOCH + Duration::from_nanos(at as u64)
    } else {
        UNIX_EPOCH
    }
}

// === vocabulary ===

/// `cicd.pipeline.result` / `cicd.pipeline.task.run.result` of an outcome.
pub fn result_value(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Canceled => "cancellation",
    }
}

/// Why the exporter ended a span that Skaffold never ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Skaffold's event stream ended.
    Disconnected,
    /// A new Skaffold run (MetaEvent) started.
    NewRun,
    /// Skaffold sent a TerminationEvent.
    Terminated,
}

impl EndReason {
    /// The `skaffold.span.end_reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Disconnected => "disconnected",
            EndReason::NewRun => "new_run",
            EndReason::Terminated => "terminated",
        }
    }

    fn result(self) -> &'static str {
        match self {
            EndReason::Terminated => "cancellation",
            _ => "error",
        }
    }

    fn description(self) -> &'static str {
        match self {
            EndReason::Disconnected => "Skaffold disconnected before this ended",
            EndReason::NewRun => "a new Skaffold run started before this ended",
            EndReason::Terminated => "Skaffold terminated before this ended",
        }
    }
}

/// Span name and `cicd.pipeline.task.type` of a phase.
fn task(phase: Phase, subject: Option<&str>) -> (String, &'static str) {
    let ty = match phase {
        Phase::Build => "build",
        Phase::Test => "test",
        Phase::Deploy => "deploy",
        Phase::StatusCheck => "status_check",
        Phase::Resource => "rollout",
        Phase::FileSync => "sync",
        Phase::DevLoop => "dev_loop",
        Phase::Render => "render",
        Phase::Verify => "verify",
        Phase::Exec => "exec",
        Phase::DeploySubtask => "deploy",
        Phase::RenderSubtask => "render",
        Phase::VerifySubtask => "verify",
        Phase::ExecSubtask => "exec",
    };
    let verb = match phase {
        Phase::StatusCheck => "status check",
        _ => ty,
    };
    let name = match subject {
        // A sync names the image by its built tag: the span is named by the image name
        // (span names stay low-cardinality; the tag is an attribute).
        Some(s) if phase == Phase::FileSync => format!("{verb} {}", super::image::name(s)),
        Some(s) => format!("{verb} {s}"),
        None => verb.to_owned(),
    };
    (name, ty)
}

/// The phase whose span encloses a subtask's span.
fn enclosing(phase: Phase) -> Option<Phase> {
    Some(match phase {
        Phase::Resource => Phase::StatusCheck,
        Phase::DeploySubtask => Phase::Deploy,
        Phase::RenderSubtask => Phase::Render,
        Phase::VerifySubtask => Phase::Verify,
        Phase::ExecSubtask => Phase::Exec,
        _ => return None,
    })
}

// === the builder ===

type Key = (Phase, Option<String>);

#[derive(Debug, Clone)]
struct Open {
    trace: TraceId,
    span: SpanId,
    parent: SpanId,
    iteration: i64,
    start: Nanos,
}

#[derive(Debug, Clone)]
struct Root {
    trace: TraceId,
    span: SpanId,
    start: Nanos,
    events: Vec<SpanEvent>,
    built: bool,
    deployed: bool,
    failed_child: bool,
    last_end: Nanos,
}

impl Root {
    /// The root span of one trace, starting at `at`.
    fn new(trace: TraceId, at: Nanos) -> Self {
        Root {
            trace,
            span: span_id(trace, Phase::DevLoop.as_str(), None, 0),
            start: at,
            events: Vec::new(),
            built: false,
            deployed: false,
            failed_child: false,
            last_end: at,
        }
    }
}

/// A finished root waiting out its grace period, with the children it releases.
#[derive(Debug, Clone)]
struct Pending {
    iteration: i64,
    data: SpanData,
    children: Vec<SpanData>,
    ticks: u32,
    /// Ended before this exporter started: a previous exporter sent it.
    skip: bool,
}

#[derive(Debug, Clone)]
struct Run {
    at: Nanos,
    run_id: String,
    version: Option<String>,
    last_at: Nanos,
    last_iteration: Option<i64>,
}

/// What the builder needs besides transitions.
#[derive(Debug, Clone)]
pub struct SpanConfig {
    /// `cicd.pipeline.name` and the second word of root span names.
    pub pipeline: String,
}

/// Transitions → spans. Pure; see the module docs.
#[derive(Debug)]
pub struct SpanBuilder {
    pipeline: String,
    scope: InstrumentationScope,
    run: Option<Run>,
    open: HashMap<Key, Open>,
    roots: HashMap<i64, Root>,
    pending: Vec<Pending>,
    occurrences: HashMap<(i64, Phase, Option<String>), u32>,
    abandoned: HashSet<Key>,
    /// Iterations whose root `end_run` already ended.
    abandoned_roots: HashSet<i64>,
    /// Iterations whose root already left, and whether it was skipped.
    gone: HashMap<i64, bool>,
    /// Finished children, by iteration, waiting for their root.
    held: BTreeMap<i64, Vec<SpanData>>,
    held_count: usize,
    /// Iterations ending before this (Skaffold's clock) are not exported.
    skip_before: Option<Nanos>,
    skipped: u64,
    ready: Vec<SpanData>,
}

/// Ticks a finished root waits for the port forwards Skaffold announces after it.
const ROOT_GRACE_TICKS: u32 = 2;
/// Most spans tracked open at once (the fold caps its own state the same way).
const MAX_OPEN: usize = 10_000;
/// Most finished children held for their roots; beyond, the oldest iteration's
/// children leave without waiting (bounded memory over a pathological iteration).
const MAX_HELD: usize = 10_000;

impl SpanBuilder {
    /// A builder for `cfg.pipeline`.
    pub fn new(cfg: SpanConfig) -> Self {
        Self {
            pipeline: cfg.pipeline,
            scope: InstrumentationScope::builder("skaffold-exporter")
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_schema_url(k::SCHEMA_URL)
                .build(),
            run: None,
            open: HashMap::new(),
            roots: HashMap::new(),
            pending: Vec::new(),
            occurrences: HashMap::new(),
            abandoned: HashSet::new(),
            abandoned_roots: HashSet::new(),
            gone: HashMap::new(),
            held: BTreeMap::new(),
            held_count: 0,
            skip_before: None,
            skipped: 0,
            ready: Vec::new(),
        }
    }

    /// Skips the iterations that ended before `at` (Skaffold's clock, nanoseconds
    /// since the epoch): the live exporter passes its start time. Skaffold replays
    /// its whole history to a new subscriber; the iterations of that history were
    /// exported by the exporter running when they ended (or by none), so sending
    /// them again would give the trace store the same span ids twice. An iteration
    /// still running at the restart ends later and is exported whole, once. Without
    /// this (`replay`, tests) every iteration is exported.
    pub fn skip_iterations_ended_before(mut self, at: Nanos) -> Self {
        self.skip_before = Some(at);
        self
    }

    /// Iterations skipped so far by [`Self::skip_iterations_ended_before`].
    pub fn skipped_iterations(&self) -> u64 {
        self.skipped
    }

    fn skip(&self, ended_at: Nanos) -> bool {
        self.skip_before.is_some_and(|cut| ended_at < cut)
    }

    /// Keeps a finished child until its iteration's root is released.
    fn hold(&mut self, iteration: i64, span: SpanData) {
        // A child that ends after its root: it joins the root if that is still in
        // its grace period, else leaves on its own (the root is already out).
        if let Some(p) = self.pending.iter_mut().find(|p| p.iteration == iteration) {
            p.children.push(span);
            return;
        }
        if let Some(skipped) = self.gone.get(&iteration) {
            if !*skipped {
                self.ready.push(span);
            }
            return;
        }
        self.held.entry(iteration).or_default().push(span);
        self.held_count += 1;
        if self.held_count > MAX_HELD
            && let Some((_, oldest)) = self.held.pop_first()
        {
            self.held_count -= oldest.len();
            self.ready.extend(oldest);
        }
    }

    /// A finished root: it waits out its grace period with its held children.
    fn root_done(&mut self, iteration: i64, data: SpanData, skip: bool) {
        let children = self.take_held(iteration);
        self.pending.push(Pending {
            iteration,
            data,
            children,
            ticks: 0,
            skip,
        });
    }

    fn take_held(&mut self, iteration: i64) -> Vec<SpanData> {
        let v = self.held.remove(&iteration).unwrap_or_default();
        self.held_count -= v.len();
        v
    }

    fn release(&mut self, p: Pending) {
        self.gone.insert(p.iteration, p.skip);
        if p.skip {
            self.skipped += 1;
            return;
        }
        self.ready.push(p.data);
        self.ready.extend(p.children);
    }

    /// Traces ready to leave (and not yet taken): each root followed by its children.
    pub fn take_ready(&mut self) -> Vec<SpanData> {
        std::mem::take(&mut self.ready)
    }

    /// Spans tracked open (roots and children).
    pub fn open_spans(&self) -> usize {
        self.open.len() + self.roots.len()
    }

    fn run(&mut self, at: Nanos) -> &mut Run {
        self.run.get_or_insert_with(|| Run {
            at,
            run_id: format!(
                "{:016x}",
                u64::from_be_bytes(
                    trace_id(at, -1).to_bytes()[..8]
                        .try_into()
                        .expect("8 bytes")
                )
            ),
            version: None,
            last_at: at,
            last_iteration: None,
        })
    }

    fn iteration(&mut self, at: Nanos, it: Option<i64>) -> i64 {
        let run = self.run(at);
        match it {
            Some(i) => {
                run.last_iteration = Some(i);
                i
            }
            None => run.last_iteration.unwrap_or(-1),
        }
    }

    /// Handles a raw event the fold turns into no transition (TerminationEvent).
    pub fn event(&mut self, ev: &Event) {
        match ev.kind {
            EventKind::Termination { .. } => {
                self.end_run(ev.at, EndReason::Terminated, Some(ev.at))
            }
            // A MetaEvent belongs to the next run, not to the one it replaces.
            EventKind::Meta { .. } => {}
            _ => {
                if let Some(run) = self.run.as_mut() {
                    run.last_at = run.last_at.max(ev.at);
                }
            }
        }
    }

    /// Skaffold's stream ended: every open span ends now, with result `error`.
    pub fn disconnected(&mut self) {
        let Some(at) = self.run.as_ref().map(|r| r.last_at) else {
            return;
        };
        // Seen live, by this exporter: never skipped.
        self.end_run(at, EndReason::Disconnected, None);
    }

    /// Called periodically (wall clock) by the fold task: releases finished roots
    /// whose grace for late port forwards has passed.
    pub fn tick(&mut self) {
        for p in &mut self.pending {
            p.ticks += 1;
        }
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.ticks >= ROOT_GRACE_TICKS);
        self.pending = keep;
        for p in done {
            self.release(p);
        }
    }

    /// Releases every finished trace, including roots still in their grace period.
    /// The children of iterations still running stay held: they leave with their
    /// root, or, if this exporter stops first, the next one rebuilds them.
    pub fn flush(&mut self) {
        self.release_pending();
    }

    fn release_pending(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.release(p);
        }
    }

    /// Folds one transition; returns the trace id the transition's observation belongs
    /// to (for exemplars), when it ended a span.
    pub fn observe(&mut self, ev: &Event, t: &Transition) -> Option<TraceId> {
        if let Some(run) = self.run.as_mut()
            && !matches!(t, Transition::RunStarted { .. })
        {
            run.last_at = run.last_at.max(ev.at);
        }
        match t {
            Transition::RunStarted { version, at } => {
                if self.run.is_some() {
                    let last = self.run.as_ref().map_or(*at, |r| r.last_at);
                    self.end_run(last, EndReason::NewRun, Some(*at));
                }
                self.run = None;
                self.occurrences.clear();
                self.abandoned.clear();
                self.abandoned_roots.clear();
                self.gone.clear();
                self.run(*at).version = version.clone();
                None
            }
            Transition::RunIdentified { run_id, at } => {
                self.run(*at).run_id = run_id.clone();
                None
            }
            Transition::Started {
                phase,
                subject,
                at,
                iteration,
            } => {
                self.release_pending();
                self.started(*phase, subject.clone(), *at, *iteration);
                None
            }
            Transition::Finished(f) => self.finished(f),
            Transition::PortForwards {
                local_port,
                resource,
                at,
                ..
            } => {
                self.port_forward(*local_port, resource, *at);
                None
            }
            Transition::CacheChecked {
                artifact,
                hit,
                at,
                iteration,
            } => {
                let it = self.iteration(*at, *iteration);
                if let Some(root) = self.roots.get_mut(&it) {
                    root.events.push(SpanEvent::new(
                        k::EVENT_BUILD_CACHE,
                        time(*at),
                        vec![
                            KeyValue::new(k::CONTAINER_IMAGE_NAME, artifact.clone()),
                            KeyValue::new(k::SKAFFOLD_BUILD_CACHE_HIT, *hit),
                        ],
                        0,
                    ));
                }
                None
            }
            _ => None,
        }
    }

    fn started(&mut self, phase: Phase, subject: Option<String>, at: Nanos, it: Option<i64>) {
        let iteration = self.iteration(at, it);
        let run_at = self.run(at).at;
        let trace = trace_id(run_at, iteration);
        if phase == Phase::DevLoop {
            // Occurrence counters of iterations long gone are not needed any more
            // (bounded memory over a long session; replays prune identically).
            self.occurrences
                .retain(|(it, _, _), _| *it < 0 || *it + 2 >= iteration);
            self.gone.retain(|it, _| *it < 0 || *it + 2 >= iteration);
            self.abandoned_roots.remove(&iteration);
            if self.roots.len() < MAX_OPEN {
                self.roots.insert(iteration, Root::new(trace, at));
            }
            return;
        }
        if self.open.len() >= MAX_OPEN {
            return;
        }
        let key = (phase, subject.clone());
        self.abandoned.remove(&key);
        let occ = self
            .occurrences
            .entry((iteration, phase, subject.clone()))
            .or_default();
        let occurrence = *occ;
        *occ += 1;
        let span = span_id(trace, phase.as_str(), subject.as_deref(), occurrence);
        let parent = self.parent_of(phase, iteration, trace, at);
        if let Some(root) = self.roots.get_mut(&iteration) {
            match phase {
                Phase::Build => root.built = true,
                Phase::Deploy => root.deployed = true,
                _ => {}
            }
        }
        self.open.insert(
            key,
            Open {
                trace,
                span,
                parent,
                iteration,
                start: at,
            },
        );
    }

    fn parent_of(&mut self, phase: Phase, iteration: i64, trace: TraceId, at: Nanos) -> SpanId {
        if let Some(enc) = enclosing(phase) {
            let candidates: &[Phase] = if phase == Phase::Resource {
                &[Phase::StatusCheck, Phase::Deploy]
            } else {
                std::slice::from_ref(match enc {
                    Phase::Deploy => &Phase::Deploy,
                    Phase::Render => &Phase::Render,
                    Phase::Verify => &Phase::Verify,
                    Phase::Exec => &Phase::Exec,
                    _ => &Phase::StatusCheck,
                })
            };
            for p in candidates {
                if let Some(o) = self.open.get(&(*p, None))
                    && o.trace == trace
                {
                    return o.span;
                }
            }
        }
        if iteration < 0 && !self.roots.contains_key(&iteration) {
            // Spans outside any iteration share one trace per run, under a root that
            // ends with the run.
            self.roots.insert(iteration, Root::new(trace, at));
        }
        span_id(trace, Phase::DevLoop.as_str(), None, 0)
    }

    fn finished(&mut self, f: &Finished) -> Option<TraceId> {
        if f.phase == Phase::DevLoop {
            let iteration = self.iteration(f.finished_at, f.iteration);
            if self.abandoned_roots.remove(&iteration) {
                return None;
            }
            let root = self.roots.remove(&iteration).unwrap_or_else(|| {
                let run_at = self.run(f.finished_at).at;
                let trace = trace_id(run_at, iteration);
                Root {
                    trace,
                    span: span_id(trace, Phase::DevLoop.as_str(), None, 0),
                    start: f.started_at.unwrap_or(f.finished_at),
                    events: Vec::new(),
                    built: false,
                    deployed: false,
                    failed_child: false,
                    last_end: f.finished_at,
                }
            });
            let trace = root.trace;
            let error = f
                .error
                .as_ref()
                .map(|e| (e.code.clone(), e.message.clone()));
            let data = self.root_span(
                root,
                iteration,
                f.finished_at,
                result_value(f.outcome),
                f.loop_kind,
                error,
                None,
            );
            let skip = self.skip(f.finished_at);
            self.root_done(iteration, data, skip);
            return Some(trace);
        }
        let key = (f.phase, f.subject.clone());
        if self.abandoned.remove(&key) {
            return None;
        }
        let open = match self.open.remove(&key) {
            Some(o) => o,
            None => {
                // A terminal event without a start: a zero-length span at its time.
                self.started(f.phase, f.subject.clone(), f.finished_at, f.iteration);
                self.open.remove(&key)?
            }
        };
        let trace = open.trace;
        let error = f
            .error
            .as_ref()
            .map(|e| (e.code.clone(), e.message.clone()));
        let mut extra = Vec::new();
        if f.phase == Phase::FileSync {
            extra.push(KeyValue::new(
                k::SKAFFOLD_SYNC_FILE_COUNT,
                i64::try_from(f.file_count).unwrap_or(i64::MAX),
            ));
        }
        let data = self.child_span(
            f.phase,
            f.subject.as_deref(),
            &open,
            f.finished_at,
            result_value(f.outcome),
            error,
            None,
            extra,
        );
        if let Some(root) = self.roots.get_mut(&open.iteration) {
            root.failed_child |= f.outcome == Outcome::Failure;
            root.last_end = root.last_end.max(f.finished_at);
        }
        self.hold(open.iteration, data);
        Some(trace)
    }

    fn port_forward(&mut self, local_port: i32, resource: &str, at: Nanos) {
        let event = SpanEvent::new(
            k::EVENT_PORT_FORWARD,
            time(at),
            vec![
                KeyValue::new(k::SKAFFOLD_PORT_FORWARD_LOCAL_PORT, i64::from(local_port)),
                KeyValue::new(k::SKAFFOLD_PORT_FORWARD_RESOURCE, resource.to_owned()),
            ],
            0,
        );
        // The open root of the newest iteration, else the root that just ended.
        if let Some(it) = self.roots.keys().copied().filter(|i| *i >= 0).max()
            && let Some(root) = self.roots.get_mut(&it)
        {
            root.events.push(event);
            return;
        }
        if let Some(p) = self.pending.last_mut() {
            p.data.events.events.push(event);
            return;
        }
        // Nothing to attach to: the session-level root of this run.
        let iteration = -1;
        let run_at = self.run(at).at;
        let trace = trace_id(run_at, iteration);
        self.parent_of(Phase::DevLoop, iteration, trace, at);
        if let Some(root) = self.roots.get_mut(&iteration) {
            root.events.push(event);
            root.last_end = root.last_end.max(at);
        }
    }

    /// Ends every open span of the current run at `at`, marked with `reason`, and
    /// releases every trace of the run. `decided_at` is Skaffold's time of the event
    /// that ended the run (`None`: seen live, e.g. the stream ending); a run ended
    /// before this exporter started was exported by the one running then.
    fn end_run(&mut self, at: Nanos, reason: EndReason, decided_at: Option<Nanos>) {
        let skip = decided_at.is_some_and(|t| self.skip(t));
        let mut open: Vec<(Key, Open)> = self.open.drain().collect();
        // Deterministic order: by start time, then name.
        open.sort_by(|a, b| (a.1.start, &a.0).cmp(&(b.1.start, &b.0)));
        for (key, o) in open {
            let desc = reason.description();
            let data = self.child_span(
                key.0,
                key.1.as_deref(),
                &o,
                at.max(o.start),
                reason.result(),
                (reason != EndReason::Terminated).then(|| (None, desc.to_owned())),
                Some(reason),
                Vec::new(),
            );
            self.hold(o.iteration, data);
            self.abandoned.insert(key);
        }
        let mut roots: Vec<(i64, Root)> = self.roots.drain().collect();
        roots.sort_by_key(|(i, _)| *i);
        for (iteration, root) in roots {
            let data = if iteration < 0 {
                let result = if root.failed_child {
                    "failure"
                } else {
                    "success"
                };
                let end = root.last_end.max(root.start);
                self.root_span(root, iteration, end, result, None, None, None)
            } else {
                self.abandoned_roots.insert(iteration);
                let end = at.max(root.start);
                let error = (reason != EndReason::Terminated)
                    .then(|| (None, reason.description().to_owned()));
                self.root_span(
                    root,
                    iteration,
                    end,
                    reason.result(),
                    None,
                    error,
                    Some(reason),
                )
            };
            self.root_done(iteration, data, skip);
        }
        self.release_pending();
        // Children whose root this exporter never saw start (nothing to wait for).
        let rest = std::mem::take(&mut self.held);
        self.held_count = 0;
        if !skip {
            self.ready.extend(rest.into_values().flatten());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn root_span(
        &self,
        root: Root,
        iteration: i64,
        end: Nanos,
        result: &'static str,
        loop_kind: Option<LoopKind>,
        error: Option<(Option<String>, String)>,
        reason: Option<EndReason>,
    ) -> SpanData {
        let action = match loop_kind {
            Some(LoopKind::Sync) => "SYNC",
            // `skaffold build`: artifacts built, nothing deployed, nothing failed.
            _ if root.built && !root.deployed && iteration >= 0 && result == "success" => "BUILD",
            _ => "RUN",
        };
        let run = self.run.as_ref();
        let run_id = run.map_or_else(String::new, |r| r.run_id.clone());
        // Spans outside any iteration (-1) belong to the run as a whole.
        let run_id = if iteration < 0 {
            run_id
        } else {
            format!("{run_id}-{iteration}")
        };
        let mut attrs = vec![
            KeyValue::new(k::CICD_PIPELINE_NAME, self.pipeline.clone()),
            KeyValue::new(k::CICD_PIPELINE_ACTION_NAME, action),
            KeyValue::new(k::CICD_PIPELINE_RUN_ID, run_id),
            KeyValue::new(k::CICD_PIPELINE_RESULT, result),
        ];
        if iteration >= 0 {
            attrs.push(KeyValue::new(k::SKAFFOLD_ITERATION, iteration));
        }
        if let Some(v) = run.and_then(|r| r.version.clone()) {
            attrs.push(KeyValue::new(k::SKAFFOLD_VERSION, v));
        }
        if let Some(kind) = loop_kind {
            attrs.push(KeyValue::new(k::SKAFFOLD_LOOP_KIND, kind.as_str()));
        }
        let status = status(&mut attrs, error);
        if let Some(r) = reason {
            attrs.push(KeyValue::new(k::SKAFFOLD_SPAN_END_REASON, r.as_str()));
        }
        let mut events = SpanEvents::default();
        events.events = root.events;
        SpanData {
            span_context: ctx(root.trace, root.span),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(format!("{action} {}", self.pipeline)),
            start_time: time(root.start),
            end_time: time(end.max(root.start)),
            attributes: attrs,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn child_span(
        &self,
        phase: Phase,
        subject: Option<&str>,
        o: &Open,
        end: Nanos,
        result: &'static str,
        error: Option<(Option<String>, String)>,
        reason: Option<EndReason>,
        extra: Vec<KeyValue>,
    ) -> SpanData {
        let (name, ty) = task(phase, subject);
        let run_id = self
            .run
            .as_ref()
            .map_or_else(String::new, |r| r.run_id.clone());
        let mut attrs = vec![
            KeyValue::new(k::CICD_PIPELINE_TASK_NAME, name.clone()),
            KeyValue::new(
                k::CICD_PIPELINE_TASK_RUN_ID,
                if o.iteration < 0 {
                    format!("{run_id}-{}", o.span)
                } else {
                    format!("{run_id}-{}-{}", o.iteration, o.span)
                },
            ),
            KeyValue::new(k::CICD_PIPELINE_TASK_TYPE, ty),
            KeyValue::new(k::CICD_PIPELINE_TASK_RUN_RESULT, result),
        ];
        if o.iteration >= 0 {
            attrs.push(KeyValue::new(k::SKAFFOLD_ITERATION, o.iteration));
        }
        match (phase, subject) {
            (Phase::Build, Some(s)) => {
                attrs.push(KeyValue::new(k::CONTAINER_IMAGE_NAME, s.to_owned()));
            }
            (Phase::FileSync, Some(s)) => {
                let image = super::image::ImageRef::parse(s);
                attrs.push(KeyValue::new(
                    k::CONTAINER_IMAGE_NAME,
                    image.name.to_owned(),
                ));
                if let Some(tag) = image.tag {
                    attrs.push(KeyValue::new(
                        k::CONTAINER_IMAGE_TAGS,
                        Value::Array(Array::String(vec![tag.to_owned().into()])),
                    ));
                }
                if let Some(d) = image.repo_digest() {
                    attrs.push(KeyValue::new(
                        k::CONTAINER_IMAGE_REPO_DIGESTS,
                        Value::Array(Array::String(vec![d.into()])),
                    ));
                }
            }
            (Phase::Resource, Some(s)) => {
                let parts = ResourceRef::parse(s);
                let k8s = parts.platform == Platform::Kubernetes;
                attrs.push(KeyValue::new(k::SKAFFOLD_RESOURCE, s.to_owned()));
                if let (Some(ns), true) = (parts.namespace, k8s) {
                    attrs.push(KeyValue::new(k::K8S_NAMESPACE_NAME, ns.to_owned()));
                }
                if let Some(kind) = parts.kind {
                    attrs.push(KeyValue::new(k::SKAFFOLD_RESOURCE_KIND, kind.to_owned()));
                    // `k8s.<kind>.name` only for a Kubernetes object that has a name
                    if let (Some(key), true) = (k::k8s_kind_name_key(kind), k8s)
                        && !parts.name.is_empty()
                    {
                        attrs.push(KeyValue::new(key, parts.name.to_owned()));
                    }
                }
                if !parts.name.is_empty() {
                    attrs.push(KeyValue::new(
                        k::SKAFFOLD_RESOURCE_NAME,
                        parts.name.to_owned(),
                    ));
                }
            }
            (p, Some(s)) if p.is_subtask() => {
                attrs.push(KeyValue::new(k::SKAFFOLD_SUBTASK_ID, s.to_owned()));
            }
            _ => {}
        }
        attrs.extend(extra);
        let status = status(&mut attrs, error);
        if let Some(r) = reason {
            attrs.push(KeyValue::new(k::SKAFFOLD_SPAN_END_REASON, r.as_str()));
        }
        SpanData {
            span_context: ctx(o.trace, o.span),
            parent_span_id: o.parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(name),
            start_time: time(o.start),
            end_time: time(end.max(o.start)),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

fn ctx(trace: TraceId, span: SpanId) -> SpanContext {
    SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::NONE)
}

/// Error status and `error.type` for a failure (`(code, message)`); unset otherwise.
fn status(attrs: &mut Vec<KeyValue>, error: Option<(Option<String>, String)>) -> Status {
    match error {
        Some((code, message)) => {
            attrs.push(KeyValue::new(
                k::ERROR_TYPE,
                Value::from(code.unwrap_or_else(|| k::ERROR_TYPE_OTHER.to_owned())),
            ));
            Status::Error {
                description: Cow::Owned(message),
            }
        }
        None => Status::Unset,
    }
}

// === export ===

/// `{signal}` of the export error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabel {
    /// `traces` or `metrics`.
    pub signal: &'static str,
}

/// The exporter's own OTLP counters (registered only when OTLP is on).
#[derive(Clone, Debug, Default)]
pub struct OtlpStats {
    /// Spans handed to the collector.
    pub spans_exported: Counter,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: Counter,
    /// Failed export requests, by signal.
    pub export_errors: Family<SignalLabel, Counter>,
    /// Where each signal is exported (for the failure logs).
    endpoints: std::sync::Arc<std::sync::Mutex<Vec<(&'static str, String)>>>,
}

/// Export failures logged per signal; later ones are only counted.
pub const FAILURES_LOGGED: u64 = 3;

/// The cause of an error and its sources, `: `-joined (`error sending request: connection refused`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl OtlpStats {
    /// Registers the counters (and creates both error series at 0).
    pub fn register(self, r: &mut Registry) -> Self {
        r.register(
            "skaffold_exporter_spans_exported",
            "Spans the OTLP exporter handed to the collector",
            self.spans_exported.clone(),
        );
        r.register(
            "skaffold_exporter_spans_dropped",
            "Spans dropped because the OTLP export queue was full (collector slow or down)",
            self.spans_dropped.clone(),
        );
        r.register(
            "skaffold_exporter_otlp_export_errors",
            "OTLP export requests that failed, by signal (traces, metrics)",
            self.export_errors.clone(),
        );
        for signal in ["traces", "metrics"] {
            let _ = self.export_errors.get_or_create(&SignalLabel { signal });
        }
        self
    }

    /// Notes where `signal` (`traces`, `metrics`) is exported, for the failure logs.
    pub fn set_endpoint(&self, signal: &'static str, endpoint: &str) {
        let mut e = self.endpoints.lock().expect("never poisoned");
        e.retain(|(s, _)| *s != signal);
        e.push((signal, endpoint.to_owned()));
    }

    /// Counts a failed export of `signal` and logs the first [`FAILURES_LOGGED`] of
    /// them, naming the endpoint, the cause and how long the attempt took (the OTLP
    /// HTTP exporter reports every transport failure as "network error": a timeout
    /// shows as an attempt as long as `OTEL_EXPORTER_OTLP_TIMEOUT`); the last of those
    /// says that further failures are only counted.
    pub fn export_failed(&self, signal: &'static str, cause: &str, took: Duration, detail: &str) {
        let n = self.export_errors.get_or_create(&SignalLabel { signal });
        n.inc();
        let count = n.get();
        if count > FAILURES_LOGGED {
            return;
        }
        let endpoint = self
            .endpoints
            .lock()
            .expect("never poisoned")
            .iter()
            .find(|(s, _)| *s == signal)
            .map_or_else(|| "the collector".to_owned(), |(_, e)| e.clone());
        let more = if count == FAILURES_LOGGED {
            "; further failures are not logged, only counted in skaffold_exporter_otlp_export_errors_total"
        } else {
            " (counted in skaffold_exporter_otlp_export_errors_total)"
        };
        tracing::warn!(
            signal,
            endpoint = %endpoint,
            "OTLP {signal} export to {endpoint} failed after {} ms: {cause}{detail}{more}.",
            took.as_millis()
        );
    }
}

/// How the export thread drives the exporter's futures.
#[derive(Debug, Clone)]
pub enum Driver {
    /// gRPC (tonic): on the application's tokio runtime, through its handle.
    Tokio(tokio::runtime::Handle),
    /// HTTP with the blocking client: outside any runtime.
    Blocking,
}

impl Driver {
    pub(crate) fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Tokio(h) => h.block_on(f),
            Driver::Blocking => futures_executor::block_on(f),
        }
    }
}

/// Largest batch per export request.
pub const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for more before the batch leaves.
pub const BATCH_DELAY: Duration = Duration::from_secs(2);
/// How long a failed batch is retried (with backoff) before it is dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts the export thread; returns the queue's sender and the thread.
pub fn spawn_exporter(
    exporter: opentelemetry_otlp::SpanExporter,
    driver: Driver,
    capacity: usize,
    stats: OtlpStats,
) -> (SyncSender<SpanData>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let handle = std::thread::Builder::new()
        .name("otlp-spans".into())
        .spawn(move || export_loop(exporter, driver, rx, stats))
        .expect("spawning a thread");
    (tx, handle)
}

/// The next batch: waits for a first span, then takes more until the batch is
/// full or [`BATCH_DELAY`] has passed since the first. `None`: the queue is closed
/// and empty. The bool is false once the queue is closed (shutdown: no waiting).
fn next_batch(rx: &Receiver<SpanData>) -> Option<(Vec<SpanData>, bool)> {
    let first = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    };
    let deadline = Instant::now() + BATCH_DELAY;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(s) => batch.push(s),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Some((batch, false)),
        }
    }
    Some((batch, true))
}

fn export_loop(
    mut exporter: opentelemetry_otlp::SpanExporter,
    driver: Driver,
    rx: Receiver<SpanData>,
    stats: OtlpStats,
) {
    // Spans taken off the queue while a failed batch waited for its retry.
    let mut carry: Vec<SpanData> = Vec::new();
    let mut open = true;
    loop {
        let batch = if carry.is_empty() {
            if !open {
                break;
            }
            match next_batch(&rx) {
                Some((b, still_open)) => {
                    open = still_open;
                    b
                }
                None => break,
            }
        } else {
            std::mem::take(&mut carry)
        };
        let n = batch.len() as u64;
        let first_try = Instant::now();
        let mut backoff = BACKOFF_MIN;
        loop {
            let attempt = Instant::now();
            match driver.run(exporter.export(batch.clone())) {
                Ok(()) => {
                    stats.spans_exported.inc_by(n);
                    break;
                }
                Err(e) => {
                    let give_up = !open || first_try.elapsed() + backoff > RETRY_FOR;
                    let detail = if give_up {
                        format!(" ({n} spans dropped)")
                    } else {
                        format!(" ({n} spans; retrying)")
                    };
                    stats.export_failed("traces", &error_chain(&e), attempt.elapsed(), &detail);
                    if give_up {
                        // Shutting down, or the collector refused them for too long.
                        stats.spans_dropped.inc_by(n);
                        break;
                    }
                    // Wait for the retry; notice a shutdown (the queue closing)
                    // meanwhile. Spans arriving now join the next batch, at most
                    // one batch of them: the rest stay in the bounded queue.
                    let until = Instant::now() + backoff;
                    while open && Instant::now() < until {
                        if carry.len() >= MAX_BATCH {
                            std::thread::sleep(until.saturating_duration_since(Instant::now()));
                            break;
                        }
                        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                            Ok(s) => carry.push(s),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => open = false,
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
    let _ = exporter.shutdown_with_timeout(Duration::from_secs(1));
    let _ = &mut exporter;
}

/// The span pipeline as the fold sees it: a builder plus a non-blocking queue.
#[derive(Debug)]
pub struct SpanSink {
    /// The pure builder.
    pub builder: SpanBuilder,
    tx: Option<SyncSender<SpanData>>,
    stats: OtlpStats,
    thread: Option<std::thread::JoinHandle<()>>,
    told_skipped: bool,
    skaffold_connected: Option<prometheus_client::metrics::gauge::Gauge>,
    /// Since when the stream has been down (sampled at every `ship`), after it
    /// was up.
    stream_down_since: Option<Instant>,
    stream_was_up: bool,
}

/// How long Skaffold's stream must have been down, before the exporter stops, for
/// Skaffold to count as gone (a shutdown of our own takes the stream down too,
/// just before the spans are closed).
pub const SKAFFOLD_GONE_AFTER: Duration = Duration::from_secs(2);

impl SpanSink {
    /// A sink exporting through `tx` (see [`spawn_exporter`]).
    pub fn new(
        builder: SpanBuilder,
        tx: SyncSender<SpanData>,
        thread: Option<std::thread::JoinHandle<()>>,
        stats: OtlpStats,
    ) -> Self {
        Self {
            builder,
            tx: Some(tx),
            stats,
            thread,
            told_skipped: false,
            skaffold_connected: None,
            stream_down_since: None,
            stream_was_up: false,
        }
    }

    /// Lets [`Self::close`] see whether Skaffold is still streaming
    /// (`skaffold_exporter_connected`).
    pub fn with_connection(mut self, connected: prometheus_client::metrics::gauge::Gauge) -> Self {
        self.skaffold_connected = Some(connected);
        self
    }

    /// Moves finished spans to the export queue; never blocks.
    pub fn ship(&mut self) {
        if let Some(g) = &self.skaffold_connected {
            if g.get() == 1 {
                self.stream_was_up = true;
                self.stream_down_since = None;
            } else if self.stream_was_up && self.stream_down_since.is_none() {
                self.stream_down_since = Some(Instant::now());
            }
        }
        let Some(tx) = &self.tx else {
            return;
        };
        let skipped = self.builder.skipped_iterations();
        if skipped > 0 && !self.told_skipped {
            self.told_skipped = true;
            tracing::info!(
                "Skaffold replayed iterations that ended before this exporter started; they are not exported again (the exporter running then sent them)."
            );
        }
        for span in self.builder.take_ready() {
            match tx.try_send(span) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.stats.spans_dropped.inc();
                }
            }
        }
    }

    /// Ships what is finished, closes the queue and waits up to `timeout` for the
    /// export thread to send it. While Skaffold is still streaming, spans still open
    /// are not exported: a restarted exporter rebuilds them, with the same ids, from
    /// the replay. When Skaffold is gone already (its stream has been down for
    /// [`SKAFFOLD_GONE_AFTER`]: a CI job's `skaffold run` exited and the sidecar is
    /// stopped after it), nothing would rebuild them: they end as at a disconnect and
    /// leave now.
    pub fn close(&mut self, timeout: Duration) -> bool {
        let gone = self
            .skaffold_connected
            .as_ref()
            .is_some_and(|g| g.get() == 0)
            && self
                .stream_down_since
                .is_some_and(|t| t.elapsed() >= SKAFFOLD_GONE_AFTER);
        if gone {
            self.builder.disconnected();
        }
        self.builder.flush();
        self.ship();
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "OTLP span export did not finish in time; giving up on the rest."
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = trace_id(1, 0);
        assert_eq!(a, trace_id(1, 0));
        assert_ne!(a, trace_id(1, 1));
        assert_ne!(a, trace_id(2, 0));
        let s = span_id(a, "build", Some("web"), 0);
        assert_eq!(s, span_id(a, "build", Some("web"), 0));
        assert_ne!(s, span_id(a, "build", Some("web"), 1));
        assert_ne!(s, span_id(a, "build", Some("app"), 0));
        assert_ne!(
            span_id(a, "build", None, 0),
            span_id(a, "build", Some(""), 0)
        );
    }

    use crate::core::{State, Status};
    use opentelemetry::trace::Status as SpanStatus;

    fn fold(b: &mut SpanBuilder, st: &mut State, evs: Vec<(Nanos, EventKind)>) {
        for (at, kind) in evs {
            let ev = Event { at, kind };
            b.event(&ev);
            for t in st.apply(&ev) {
                b.observe(&ev, &t);
            }
        }
    }

    fn attr(s: &SpanData, key: &str) -> Option<String> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn start_of_build() -> Vec<(Nanos, EventKind)> {
        vec![
            (1, EventKind::Meta { version: None }),
            (
                2,
                EventKind::DevLoop {
                    iteration: 0,
                    status: Status::InProgress,
                    error: None,
                },
            ),
            (
                3,
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::InProgress,
                    error: None,
                },
            ),
            (
                4,
                EventKind::Deploy {
                    status: Status::Information,
                    error: None,
                },
            ),
        ]
    }

    #[test]
    fn a_new_run_ends_the_open_spans_of_the_old_one_as_error() {
        let mut b = SpanBuilder::new(SpanConfig {
            pipeline: "p".into(),
        });
        let mut st = State::new();
        fold(&mut b, &mut st, start_of_build());
        assert!(b.take_ready().is_empty());
        fold(
            &mut b,
            &mut st,
            vec![(10, EventKind::Meta { version: None })],
        );
        let spans = b.take_ready();
        assert_eq!(spans.len(), 2);
        for s in &spans {
            // Ended at the old run's last event, not at the new MetaEvent.
            assert_eq!(s.end_time, time(4));
            assert_eq!(
                attr(s, k::SKAFFOLD_SPAN_END_REASON).as_deref(),
                Some("new_run")
            );
            assert!(matches!(s.status, SpanStatus::Error { .. }));
        }
        let root = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .unwrap();
        assert_eq!(
            attr(root, k::CICD_PIPELINE_RESULT).as_deref(),
            Some("error")
        );
        assert_eq!(b.open_spans(), 0);
    }

    #[test]
    fn a_termination_event_ends_open_spans_as_cancellation() {
        let mut b = SpanBuilder::new(SpanConfig {
            pipeline: "p".into(),
        });
        let mut st = State::new();
        let mut evs = start_of_build();
        evs.push((
            7,
            EventKind::Termination {
                status: Status::Failed,
                error: None,
            },
        ));
        fold(&mut b, &mut st, evs);
        let spans = b.take_ready();
        assert_eq!(spans.len(), 2);
        let build = spans.iter().find(|s| s.name == "build web").unwrap();
        assert_eq!(build.end_time, time(7));
        assert_eq!(
            attr(build, k::CICD_PIPELINE_TASK_RUN_RESULT).as_deref(),
            Some("cancellation")
        );
        assert_eq!(
            attr(build, k::SKAFFOLD_SPAN_END_REASON).as_deref(),
            Some("terminated")
        );
        assert_eq!(build.status, SpanStatus::Unset);
        // A late end of the abandoned build is not exported a second time.
        fold(
            &mut b,
            &mut st,
            vec![(
                8,
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::Succeeded,
                    error: None,
                },
            )],
        );
        assert!(b.take_ready().is_empty());
    }

    /// One whole iteration (`it`) of a run that started at `run_at`: a build, then
    /// the dev loop ends at `run_at + 10`.
    fn iteration(run_at: Nanos, it: i64) -> Vec<(Nanos, EventKind)> {
        let dl = |status| EventKind::DevLoop {
            iteration: it,
            status,
            error: None,
        };
        let build = |status| EventKind::Build {
            artifact: "web".into(),
            status,
            error: None,
        };
        vec![
            (run_at + 1, dl(Status::InProgress)),
            (run_at + 2, build(Status::InProgress)),
            (run_at + 3, build(Status::Succeeded)),
            (run_at + 10, dl(Status::Succeeded)),
        ]
    }

    fn builder() -> SpanBuilder {
        SpanBuilder::new(SpanConfig {
            pipeline: "p".into(),
        })
    }

    fn release(b: &mut SpanBuilder) -> Vec<SpanData> {
        for _ in 0..ROOT_GRACE_TICKS {
            b.tick();
        }
        b.take_ready()
    }

    #[test]
    fn children_leave_with_their_root_never_before_it() {
        let mut b = builder();
        let mut st = State::new();
        let mut evs = vec![(0, EventKind::Meta { version: None })];
        let mut it0 = iteration(0, 0);
        let end = it0.pop().unwrap();
        evs.extend(it0);
        fold(&mut b, &mut st, evs);
        // The build span is finished, but its root is not: nothing leaves, not
        // even on a flush (the exporter stopping mid-iteration).
        b.flush();
        assert!(b.take_ready().is_empty());
        fold(&mut b, &mut st, vec![end]);
        let spans = release(&mut b);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["BUILD p", "build web"]);
        assert_eq!(spans[1].parent_span_id, spans[0].span_context.span_id());
    }

    #[test]
    fn a_restarted_exporter_skips_the_replayed_iterations_and_sends_the_open_one_whole() {
        // Skaffold's history: iteration 0 complete, iteration 1 half done when the
        // first exporter stops.
        let mut history = vec![(0, EventKind::Meta { version: None })];
        history.extend(iteration(0, 0));
        let mut it1 = iteration(100, 1);
        let it1_end = it1.pop().unwrap();
        history.extend(it1);

        let mut first = builder();
        let mut st = State::new();
        fold(&mut first, &mut st, history.clone());
        let mut sent = release(&mut first);
        first.flush();
        sent.extend(first.take_ready());
        assert_eq!(sent.len(), 2, "iteration 0: root and build");

        // The next exporter starts at t=105 (Skaffold's clock) and gets the replay.
        let mut second = builder().skip_iterations_ended_before(105);
        let mut st = State::new();
        fold(&mut second, &mut st, history);
        assert!(release(&mut second).is_empty());
        assert_eq!(second.skipped_iterations(), 1);
        fold(&mut second, &mut st, vec![it1_end]);
        let later = release(&mut second);
        assert_eq!(later.len(), 2, "iteration 1: root and build");
        sent.extend(later);

        let mut ids = HashSet::new();
        for s in &sent {
            assert!(
                ids.insert((s.span_context.trace_id(), s.span_context.span_id())),
                "{} sent twice",
                s.name
            );
        }
        let roots = sent.iter().filter(|s| s.parent_span_id == SpanId::INVALID);
        assert_eq!(roots.count(), 2);
    }

    #[test]
    fn a_disconnect_seen_live_is_never_skipped() {
        let mut b = builder().skip_iterations_ended_before(1_000);
        let mut st = State::new();
        let mut evs = vec![(0, EventKind::Meta { version: None })];
        let mut it0 = iteration(0, 0);
        it0.pop();
        evs.extend(it0);
        fold(&mut b, &mut st, evs);
        b.disconnected();
        let spans = b.take_ready();
        assert_eq!(spans.len(), 2);
        assert_eq!(
            attr(&spans[0], k::SKAFFOLD_SPAN_END_REASON).as_deref(),
            Some("disconnected")
        );
    }

    #[test]
    fn a_sync_span_is_named_by_the_image_and_carries_its_tag_and_digest() {
        let mut b = SpanBuilder::new(SpanConfig {
            pipeline: "p".into(),
        });
        let mut st = State::new();
        let digest = "sha256:e3c03bbaf0830afb79d586c5a0d5ce7510a027585fb0cbc88db9bd14bfbad139";
        let image = format!("localhost:5000/web:v2@{digest}");
        let sync = |at, status| {
            (
                at,
                EventKind::FileSync {
                    image: image.clone(),
                    file_count: 2,
                    status,
                    error: None,
                },
            )
        };
        let dev_loop = |at, status| {
            (
                at,
                EventKind::DevLoop {
                    iteration: 1,
                    status,
                    error: None,
                },
            )
        };
        fold(
            &mut b,
            &mut st,
            vec![
                (1, EventKind::Meta { version: None }),
                dev_loop(2, Status::InProgress),
                sync(3, Status::InProgress),
                sync(5, Status::Succeeded),
                // Spans leave with their whole trace, when the iteration ends.
                dev_loop(6, Status::Succeeded),
            ],
        );
        let spans = release(&mut b);
        let span = spans
            .iter()
            .find(|s| s.name == "sync localhost:5000/web")
            .unwrap_or_else(|| panic!("{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
        let kv = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            kv(k::CONTAINER_IMAGE_NAME),
            Some(Value::from("localhost:5000/web"))
        );
        assert_eq!(
            kv(k::CONTAINER_IMAGE_TAGS),
            Some(Value::Array(Array::String(vec!["v2".into()])))
        );
        assert_eq!(
            kv(k::CONTAINER_IMAGE_REPO_DIGESTS),
            Some(Value::Array(Array::String(vec![
                format!("localhost:5000/web@{digest}").into()
            ])))
        );
        assert_eq!(
            attr(span, k::CICD_PIPELINE_TASK_NAME).as_deref(),
            Some("sync localhost:5000/web")
        );
    }
}
