//! The span builder: transitions in, finished spans out (pure: no I/O, no clock).
//! It owns which spans are open, their ids and parents, and when finished ones
//! leave (children held for their root, a root's grace for late port forwards,
//! skipped history); what each span says is `otlp::span`'s. See the module docs of
//! `sink::otlp`.

use std::collections::{BTreeMap, HashMap, HashSet};

use opentelemetry::trace::{Event as SpanEvent, SpanId, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::SpanData;

use super::super::semconv as k;
use super::ids::{span_id, time, trace_id};
use super::span::{EndReason, Ending, Open, Root, RunLabels};
use crate::core::{Finished, Nanos, Outcome, Phase, RunEnd, Transition};

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
    /// Skaffold's newest timestamp in the run, as far as the fold told
    /// ([`SpanBuilder::seen_until`]): where spans end when the exporter stops after
    /// Skaffold went away.
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

    /// What every span of the current run carries.
    fn labels(&self) -> RunLabels<'_> {
        let run = self.run.as_ref();
        RunLabels {
            pipeline: &self.pipeline,
            run_id: run.map_or("", |r| r.run_id.as_str()),
            version: run.and_then(|r| r.version.as_deref()),
            scope: &self.scope,
        }
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

    /// The fold has seen Skaffold's events of the current run up to `at` (its newest
    /// timestamp): spans ended by [`SpanSink::close`](super::SpanSink::close) end
    /// there.
    pub fn seen_until(&mut self, at: Nanos) {
        if let Some(run) = self.run.as_mut() {
            run.last_at = run.last_at.max(at);
        }
    }

    /// Skaffold is gone and no event will end the run: every open span ends at the
    /// newest event seen, with result `error`. Seen live, by this exporter: never
    /// skipped.
    pub(super) fn disconnected(&mut self) {
        let Some(at) = self.run.as_ref().map(|r| r.last_at) else {
            return;
        };
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
    pub fn observe(&mut self, t: &Transition) -> Option<TraceId> {
        match t {
            Transition::RunEnded { last_at, by } => {
                match *by {
                    RunEnd::Terminated { at } => {
                        self.end_run(at, EndReason::Terminated, Some(at));
                    }
                    // A MetaEvent belongs to the next run, not to the one it replaces.
                    RunEnd::NewRun { at } if self.run.is_some() => {
                        self.end_run(*last_at, EndReason::NewRun, Some(at));
                    }
                    RunEnd::StreamEnded => {
                        self.seen_until(*last_at);
                        self.disconnected();
                    }
                    _ => {}
                }
                None
            }
            Transition::RunStarted { version, at } => {
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
                // Its start was not seen: it ran from what Skaffold said.
                let run_at = self.run(f.finished_at).at;
                Root {
                    start: f.started_at.unwrap_or(f.finished_at),
                    ..Root::new(trace_id(run_at, iteration), f.finished_at)
                }
            });
            let trace = root.trace;
            let data = root.into_span(self.labels(), iteration, f.loop_kind, Ending::of(f));
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
        let mut extra = Vec::new();
        if f.phase == Phase::FileSync {
            extra.push(KeyValue::new(
                k::SKAFFOLD_SYNC_FILE_COUNT,
                i64::try_from(f.file_count).unwrap_or(i64::MAX),
            ));
        }
        let data = open.to_span(
            self.labels(),
            f.phase,
            f.subject.as_deref(),
            Ending::of(f),
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
            let data = o.to_span(
                self.labels(),
                key.0,
                key.1.as_deref(),
                Ending::by(reason, at),
                Vec::new(),
            );
            self.hold(o.iteration, data);
            self.abandoned.insert(key);
        }
        let mut roots: Vec<(i64, Root)> = self.roots.drain().collect();
        roots.sort_by_key(|(i, _)| *i);
        for (iteration, root) in roots {
            let end = if iteration < 0 {
                let result = if root.failed_child {
                    "failure"
                } else {
                    "success"
                };
                Ending::plain(root.last_end, result)
            } else {
                self.abandoned_roots.insert(iteration);
                Ending::by(reason, at)
            };
            let data = root.into_span(self.labels(), iteration, None, end);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::{Event, EventKind, State, Status};
    use opentelemetry::trace::{SpanKind, Status as SpanStatus};
    use opentelemetry::{Array, Value};

    fn fold(b: &mut SpanBuilder, st: &mut State, evs: Vec<(Nanos, EventKind)>) {
        for (at, kind) in evs {
            for t in st.apply(&Event { at, kind }) {
                b.observe(&t);
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
        for t in st.stream_ended() {
            b.observe(&t);
        }
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
                    image: image.clone().into(),
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
