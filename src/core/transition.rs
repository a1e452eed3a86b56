//! Transitions: what the fold concluded from an event. Sinks (Prometheus, OTLP) turn
//! these into series and spans; they never look at raw events.

use super::event::{ErrorInfo, Nanos};
use super::reason::Reason;

/// How a phase ended. Label values: `success`, `failure`, `canceled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Completed successfully.
    Success,
    /// Failed.
    Failure,
    /// Canceled (or abandoned because Skaffold went away).
    Canceled,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Canceled => "canceled",
        }
    }
}

/// A measured phase. Label values for `skaffold_errors_total{phase}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// One artifact build.
    Build,
    /// Tests.
    Test,
    /// The deployer.
    Deploy,
    /// The status check as a whole.
    StatusCheck,
    /// One resource's rollout inside a status check.
    Resource,
    /// One file sync.
    FileSync,
    /// A whole dev-loop iteration.
    DevLoop,
    /// Rendering manifests (v2 only).
    Render,
    /// `skaffold verify` (v2 only).
    Verify,
    /// Custom actions, `skaffold exec` (v2 only).
    Exec,
    /// One deployer inside a deploy (v2 only; spans, not metrics).
    DeploySubtask,
    /// One renderer inside the render phase (v2 only; spans, not metrics).
    RenderSubtask,
    /// One verify test (v2 only; spans, not metrics).
    VerifySubtask,
    /// One exec action (v2 only; spans, not metrics).
    ExecSubtask,
}

impl Phase {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Test => "test",
            Phase::Deploy => "deploy",
            Phase::StatusCheck => "status_check",
            Phase::Resource => "resource",
            Phase::FileSync => "file_sync",
            Phase::DevLoop => "dev_loop",
            Phase::Render => "render",
            Phase::Verify => "verify",
            Phase::Exec => "exec",
            Phase::DeploySubtask => "deploy_subtask",
            Phase::RenderSubtask => "render_subtask",
            Phase::VerifySubtask => "verify_subtask",
            Phase::ExecSubtask => "exec_subtask",
        }
    }

    /// Whether this is a subtask (one unit inside a phase), which sinks measure for
    /// spans but never count as a phase of its own.
    pub fn is_subtask(self) -> bool {
        matches!(
            self,
            Phase::DeploySubtask | Phase::RenderSubtask | Phase::VerifySubtask | Phase::ExecSubtask
        )
    }
}

/// What kind of dev-loop iteration it was. Label values for `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoopKind {
    /// Iteration 0: the first build and deploy.
    Initial,
    /// At least one artifact was (re)built.
    Rebuild,
    /// Only files were synced.
    Sync,
    /// Deployed again without building (all cache hits, manifest change) or nothing ran.
    Redeploy,
}

impl LoopKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoopKind::Initial => "initial",
            LoopKind::Rebuild => "rebuild",
            LoopKind::Sync => "sync",
            LoopKind::Redeploy => "redeploy",
        }
    }
}

/// A phase that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Which phase.
    pub phase: Phase,
    /// Artifact (build), image (file sync) or resource (resource); `None` otherwise.
    pub subject: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Skaffold's timestamp of the start event, if one was seen.
    pub started_at: Option<Nanos>,
    /// Skaffold's timestamp of the terminal event.
    pub finished_at: Nanos,
    /// Skaffold's error, on failure.
    pub error: Option<ErrorInfo>,
    /// Files synced (file sync only).
    pub file_count: u64,
    /// Dev-loop iteration this phase belongs to, when known.
    pub iteration: Option<i64>,
    /// Dev-loop kind (dev loop only).
    pub loop_kind: Option<LoopKind>,
}

impl Finished {
    /// Duration in seconds from Skaffold's timestamps; `None` without a start, or when
    /// the clock went backwards.
    pub fn duration_seconds(&self) -> Option<f64> {
        let (s, e) = (self.started_at?, self.finished_at);
        (e >= s).then(|| (e - s) as f64 / 1e9)
    }
}

/// What ended a run (see [`Transition::RunEnded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// A new MetaEvent at `at` (Skaffold's time) started the next run.
    NewRun {
        /// Skaffold's timestamp of the new run's MetaEvent.
        at: Nanos,
    },
    /// Skaffold announced its exit (TerminationEvent) at `at`.
    Terminated {
        /// Skaffold's timestamp of the TerminationEvent.
        at: Nanos,
    },
    /// Skaffold's event stream ended (it went away, or a log file ended); seen by
    /// this exporter, not reported by Skaffold.
    StreamEnded,
}

/// A conclusion the fold drew from one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A Skaffold runner started (MetaEvent): per-run state was reset. Preceded by
    /// [`Transition::RunEnded`] when a run was going on.
    RunStarted {
        /// Skaffold's version, if the MetaEvent named one.
        version: Option<String>,
        /// Skaffold's timestamp.
        at: Nanos,
    },
    /// A subject (artifact or image) was seen for the first time in this run, so its
    /// series can be created at zero before its first failure.
    SubjectSeen {
        /// Build (artifact) or FileSync (image).
        phase: Phase,
        /// The name.
        subject: String,
    },
    /// A phase started (for spans).
    Started {
        /// Which phase.
        phase: Phase,
        /// Artifact, image or resource.
        subject: Option<String>,
        /// Skaffold's timestamp.
        at: Nanos,
        /// Dev-loop iteration, when known.
        iteration: Option<i64>,
    },
    /// A phase ended.
    Finished(Finished),
    /// Failed deploys since the last successful one.
    DeployStreak(u64),
    /// Failed builds of one artifact since its last successful build.
    BuildStreak {
        /// The artifact.
        artifact: String,
        /// The streak.
        failures: u64,
    },
    /// Port forwards announced in the current run.
    PortForwards {
        /// How many distinct local ports.
        count: u64,
        /// The local port just announced.
        local_port: i32,
        /// `kind/name` of the forwarded resource.
        resource: String,
        /// Skaffold's timestamp.
        at: Nanos,
    },
    /// One failure, counted once (`skaffold_errors_total`), at the phase that failed.
    ///
    /// A failure Skaffold reports at several levels is counted at the innermost one:
    /// a failed status check (not its failed resources, nor the deploy it ran inside,
    /// nor the iteration); a failed build, test, deploy, file-sync attempt, render,
    /// verify or exec (not the iteration). A failed iteration is a failure of its own
    /// only when no phase of it failed (e.g. Skaffold could not watch the files:
    /// `DEVINIT_REGISTER_*`). Cancellations are not failures.
    Failure {
        /// The phase that failed.
        phase: Phase,
        /// Skaffold's StatusCode name; for a status check, that of its first failed
        /// resource when one failed (the same over both APIs).
        code: Option<String>,
        /// Skaffold's timestamp.
        at: Nanos,
    },
    /// Something the fold could not reconcile (bounded reason). Counted as invalid.
    Anomaly(Reason),
    /// The run ended, `by` what; after every other transition of the event (a
    /// derived iteration the end completes comes first). What is still open stays
    /// open in the fold (a reconnect may bring its end); sinks that must close
    /// things (spans) close them here.
    RunEnded {
        /// Skaffold's newest timestamp in the run (the MetaEvent's at the latest;
        /// the next MetaEvent's, when a derived iteration closed at it).
        last_at: Nanos,
        /// What ended it.
        by: RunEnd,
    },
    /// v2 only: a build-cache lookup ended (`skaffold_build_cache_total`).
    CacheChecked {
        /// The artifact.
        artifact: String,
        /// `true` for a hit (no build needed), `false` for a miss.
        hit: bool,
        /// Skaffold's timestamp.
        at: Nanos,
        /// Dev-loop iteration, when known.
        iteration: Option<i64>,
    },
    /// v2 only: Skaffold named the current run (metadata `runID`, v1.26+).
    RunIdentified {
        /// Skaffold's run id.
        run_id: String,
        /// Skaffold's timestamp.
        at: Nanos,
    },
}

/// Receives every transition beside the metrics and the spans (the per-iteration log
/// line, replay's summary, tests).
pub trait TransitionObserver: Send {
    /// Called for each transition, in order, with the event that caused it.
    fn observe(&mut self, event: &super::Event, transition: &Transition);
}
