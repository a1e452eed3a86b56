//! What one span says: its name, `cicd.pipeline.task.type`, attributes and status,
//! for a dev-loop iteration (the root) or a phase (a child), and the vocabulary of
//! results and end reasons. [`Root`] and [`Open`] are spans still running; they
//! become [`SpanData`] when they end. Which spans exist, their ids and parents, and
//! when finished ones leave is the builder's (`otlp::builder`).

use std::borrow::Cow;

use opentelemetry::trace::{
    Event as SpanEvent, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::super::image::ImageRef;
use super::super::resource::{Platform, ResourceRef};
use super::super::semconv as k;
use super::ids::{span_id, time};
use crate::core::{Finished, LoopKind, Nanos, Outcome, Phase};

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
        Some(s) if phase == Phase::FileSync => format!("{verb} {}", super::super::image::name(s)),
        Some(s) => format!("{verb} {s}"),
        None => verb.to_owned(),
    };
    (name, ty)
}

// === spans ===

/// How a span ended: when, its result, its error (`(code, message)`), and, when the
/// exporter ended it for Skaffold, why.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    /// Skaffold's time of the end (never before the span's start).
    pub(super) at: Nanos,
    /// `cicd.pipeline[.task.run].result`.
    pub(super) result: &'static str,
    pub(super) error: Option<(Option<String>, String)>,
    pub(super) reason: Option<EndReason>,
}

impl Ending {
    /// As Skaffold reported it.
    pub(super) fn of(f: &Finished) -> Self {
        Ending {
            at: f.finished_at,
            result: result_value(f.outcome),
            error: f
                .error
                .as_ref()
                .map(|e| (e.code.clone(), e.message.clone())),
            reason: None,
        }
    }

    /// Ended by the exporter at `at`, because of `reason`.
    pub(super) fn by(reason: EndReason, at: Nanos) -> Self {
        Ending {
            at,
            result: reason.result(),
            error: (reason != EndReason::Terminated)
                .then(|| (None, reason.description().to_owned())),
            reason: Some(reason),
        }
    }

    /// A result the exporter concluded itself (the run-level root), without an error.
    pub(super) fn plain(at: Nanos, result: &'static str) -> Self {
        Ending {
            at,
            result,
            error: None,
            reason: None,
        }
    }
}

/// What every span of a run carries besides its own data.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunLabels<'a> {
    /// `cicd.pipeline.name`.
    pub(super) pipeline: &'a str,
    /// Skaffold's run id (empty before any run).
    pub(super) run_id: &'a str,
    /// Skaffold's version, when its MetaEvent said.
    pub(super) version: Option<&'a str>,
    pub(super) scope: &'a InstrumentationScope,
}

/// A child span (a phase) still running.
#[derive(Debug, Clone)]
pub(super) struct Open {
    pub(super) trace: TraceId,
    pub(super) span: SpanId,
    pub(super) parent: SpanId,
    pub(super) iteration: i64,
    pub(super) start: Nanos,
}

/// The root span of an iteration (or of a run's spans outside any) still running.
#[derive(Debug, Clone)]
pub(super) struct Root {
    pub(super) trace: TraceId,
    pub(super) span: SpanId,
    pub(super) start: Nanos,
    pub(super) events: Vec<SpanEvent>,
    pub(super) built: bool,
    pub(super) deployed: bool,
    pub(super) failed_child: bool,
    pub(super) last_end: Nanos,
}

impl Root {
    /// The root span of one trace, starting at `at`.
    pub(super) fn new(trace: TraceId, at: Nanos) -> Self {
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

    /// The finished root span of iteration `iteration` (-1: the run's spans outside
    /// any iteration).
    pub(super) fn into_span(
        self,
        run: RunLabels<'_>,
        iteration: i64,
        loop_kind: Option<LoopKind>,
        end: Ending,
    ) -> SpanData {
        let result = end.result;
        let action = match loop_kind {
            Some(LoopKind::Sync) => "SYNC",
            // `skaffold build`: artifacts built, nothing deployed, nothing failed.
            _ if self.built && !self.deployed && iteration >= 0 && result == "success" => "BUILD",
            _ => "RUN",
        };
        // Spans outside any iteration (-1) belong to the run as a whole.
        let run_id = if iteration < 0 {
            run.run_id.to_owned()
        } else {
            format!("{}-{iteration}", run.run_id)
        };
        let mut attrs = vec![
            KeyValue::new(k::CICD_PIPELINE_NAME, run.pipeline.to_owned()),
            KeyValue::new(k::CICD_PIPELINE_ACTION_NAME, action),
            KeyValue::new(k::CICD_PIPELINE_RUN_ID, run_id),
            KeyValue::new(k::CICD_PIPELINE_RESULT, result),
        ];
        if iteration >= 0 {
            attrs.push(KeyValue::new(k::SKAFFOLD_ITERATION, iteration));
        }
        if let Some(v) = run.version {
            attrs.push(KeyValue::new(k::SKAFFOLD_VERSION, v.to_owned()));
        }
        if let Some(kind) = loop_kind {
            attrs.push(KeyValue::new(k::SKAFFOLD_LOOP_KIND, kind.as_str()));
        }
        let status = status(&mut attrs, end.error);
        if let Some(r) = end.reason {
            attrs.push(KeyValue::new(k::SKAFFOLD_SPAN_END_REASON, r.as_str()));
        }
        let mut events = SpanEvents::default();
        events.events = self.events;
        SpanData {
            span_context: ctx(self.trace, self.span),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(format!("{action} {}", run.pipeline)),
            start_time: time(self.start),
            end_time: time(end.at.max(self.start)),
            attributes: attrs,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: run.scope.clone(),
        }
    }
}

impl Open {
    /// The finished span of `phase` (of `subject`); `extra` attributes go after the
    /// subject's.
    pub(super) fn to_span(
        &self,
        run: RunLabels<'_>,
        phase: Phase,
        subject: Option<&str>,
        end: Ending,
        extra: Vec<KeyValue>,
    ) -> SpanData {
        let (name, ty) = task(phase, subject);
        let run_id = run.run_id;
        let mut attrs = vec![
            KeyValue::new(k::CICD_PIPELINE_TASK_NAME, name.clone()),
            KeyValue::new(
                k::CICD_PIPELINE_TASK_RUN_ID,
                if self.iteration < 0 {
                    format!("{run_id}-{}", self.span)
                } else {
                    format!("{run_id}-{}-{}", self.iteration, self.span)
                },
            ),
            KeyValue::new(k::CICD_PIPELINE_TASK_TYPE, ty),
            KeyValue::new(k::CICD_PIPELINE_TASK_RUN_RESULT, end.result),
        ];
        if self.iteration >= 0 {
            attrs.push(KeyValue::new(k::SKAFFOLD_ITERATION, self.iteration));
        }
        subject_attributes(&mut attrs, phase, subject);
        attrs.extend(extra);
        let status = status(&mut attrs, end.error);
        if let Some(r) = end.reason {
            attrs.push(KeyValue::new(k::SKAFFOLD_SPAN_END_REASON, r.as_str()));
        }
        SpanData {
            span_context: ctx(self.trace, self.span),
            parent_span_id: self.parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(name),
            start_time: time(self.start),
            end_time: time(end.at.max(self.start)),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: run.scope.clone(),
        }
    }
}

/// The attributes a phase's subject gives its span: the image of a build or sync
/// (name, tag, digest), the parts of a rolled-out resource, a subtask's id.
fn subject_attributes(attrs: &mut Vec<KeyValue>, phase: Phase, subject: Option<&str>) {
    match (phase, subject) {
        (Phase::Build, Some(s)) => {
            attrs.push(KeyValue::new(k::CONTAINER_IMAGE_NAME, s.to_owned()));
        }
        (Phase::FileSync, Some(s)) => {
            let image = ImageRef::parse(s);
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
