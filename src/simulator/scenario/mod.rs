//! Scripted Skaffold sessions: builders for v1 events with Skaffold's real status
//! strings and entry texts, each with the v2 events Skaffold v1.26+ fires beside it
//! (same call sites, same instant: TaskEvents `DevLoop-n`/`Build-n`/..., per-artifact
//! cache and build subtasks, deployer, tester and status-check subtasks, the
//! per-iteration MetaEvent, log lines), a realistic random dev session for the demo,
//! and a player that emits a script into a [`Simulator`] with Skaffold-style
//! timestamps.
//!
//! Where the two APIs differ, the builders send what Skaffold sends (read from its
//! source, after v2.24.0): a failed iteration carries the failed phase's code over v1
//! (`event/event.go`, `DevLoopFailedInPhase`) and `UNKNOWN_ERROR` over v2
//! (`ActionableErrV2(DevLoop)` of a plain error); a failed status check carries
//! `STATUSCHECK_UNKNOWN` over v2; a build stopped by Ctrl-C is v1 `Failed` with
//! `BUILD_CANCELLED` and v2 `Canceled` (`build/scheduler.go`); after a config reload
//! v1 counts iterations from 0 again while the v2 counter goes on (`event/v2/task.go`);
//! the v2 `Test` task wraps the testers and closes after the last one
//! (`runner/test.go`).
//!
//! This module holds the script and its player; the builders, one per Skaffold
//! event, are in `phases`; the demo's random session (its flavours, [`Session`],
//! [`run_demo`]) in `demo`.

mod demo;
mod phases;

use std::time::Duration;

pub use demo::{
    DEMO_ARTIFACTS, DEMO_LOG_LIMIT, Flavor, Session, initial_loop, next_loop, reload_loop, run_demo,
};

use super::Simulator;
use crate::core::Nanos;
use crate::pb::enums::StatusCode;
use crate::pb::v1::{self, event::EventType as E};
use crate::pb::v2::{self, event::EventType as V2};

/// One scripted step: emitted `after` the previous one (virtual time).
#[derive(Debug, Clone)]
pub struct Step {
    /// Virtual time since the previous step.
    pub after: Duration,
    /// The v1 event (`None`: a step only API v2 reports, e.g. a cache hit).
    pub event: Option<E>,
    /// `LogEntry.entry` text.
    pub entry: String,
    /// The v2 events Skaffold fires at the same instant.
    pub v2: Vec<V2>,
}

/// A script under construction.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The steps, in order.
    pub steps: Vec<Step>,
    v2: V2Context,
    v1: V1Context,
}

/// What the v2 counterparts depend on.
#[derive(Debug, Clone, Default)]
struct V2Context {
    /// v2 iteration (v1 iteration + 1 + `offset` during `skaffold dev`; 0 before the
    /// first loop).
    iteration: i32,
    /// How far the v2 counter is ahead of v1's iteration + 1: the iterations of the
    /// runs before the last config reload (the v2 counter is package-level).
    offset: i32,
    build_open: bool,
    /// The code of a failed or cancelled build, reported with the `Build` task once
    /// every artifact ended (`runner/build.go`).
    build_failure: Option<StatusCode>,
    test_open: bool,
    next_tester: u32,
    /// The status check runs inside the deployer (`--iterative-status-check`).
    iterative_status_check: bool,
    run_id: Option<String>,
    /// Skaffold's output goes to a colour terminal (or `--force-colors`).
    colors: bool,
    /// Skaffold's first error message went out (`sendErrorMessage` sends one per
    /// process).
    error_logged: bool,
}

/// What v1 remembers of the iteration.
#[derive(Debug, Clone, Default)]
struct V1Context {
    /// The current (or last) iteration.
    iteration: i32,
    /// The code of the phase that failed in the current iteration (for the code of
    /// its `DevLoopEvent`).
    failure: Option<StatusCode>,
}

/// Where a session stands after a script: what the next script continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The last iteration (v1 numbering: from 0 in each run).
    pub iteration: i32,
    /// How far the v2 dev-loop counter is ahead of v1's iteration + 1 (the iterations
    /// of the runs before the last config reload: the v2 counter is package-level).
    pub v2_offset: i32,
    /// The run's id (v2 `Metadata.runID`).
    pub run_id: String,
}

/// The run id of a script that names none.
pub const DEFAULT_RUN_ID: &str = "simulated-run";

fn v2_err(code: StatusCode, message: &str) -> Option<v2::ActionableErr> {
    Some(v2::ActionableErr {
        err_code: code as i32,
        message: message.to_owned(),
        suggestions: vec![],
    })
}

/// Skaffold's v2 error for `code` when `failed` (none otherwise).
fn v2_err_if(failed: bool, code: StatusCode, message: &str) -> Option<v2::ActionableErr> {
    failed.then(|| v2_err(code, message)).flatten()
}

/// A v1 event's `err_code` and `actionable_err`: `code` and its error when `failed`
/// (zero and none otherwise).
fn v1_failure(failed: bool, code: StatusCode, message: &str) -> (i32, Option<v1::ActionableErr>) {
    if failed {
        (code as i32, err(code, message))
    } else {
        (0, None)
    }
}

/// v1 status strings → v2 ones (no spaces; `Complete` is `Succeeded`).
fn v2_status(status: &str) -> &str {
    match status {
        "In Progress" | "Started" => "InProgress",
        "Complete" => "Succeeded",
        other => other,
    }
}

fn err(code: StatusCode, message: &str) -> Option<v1::ActionableErr> {
    Some(v1::ActionableErr {
        err_code: code as i32,
        message: message.to_owned(),
        suggestions: vec![],
    })
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a v1 event `after_ms` milliseconds (virtual) after the previous one
    /// (without v2 counterpart).
    pub fn push(&mut self, after_ms: u64, event: E, entry: impl Into<String>) -> &mut Self {
        self.push_both(after_ms, Some(event), entry, Vec::new())
    }

    /// Appends a step only API v2 reports.
    pub fn push_v2(&mut self, after_ms: u64, v2: Vec<V2>) -> &mut Self {
        self.push_both(after_ms, None, "", v2)
    }

    fn push_both(
        &mut self,
        after_ms: u64,
        event: Option<E>,
        entry: impl Into<String>,
        v2: Vec<V2>,
    ) -> &mut Self {
        self.steps.push(Step {
            after: Duration::from_millis(after_ms),
            event,
            entry: entry.into(),
            v2,
        });
        self
    }

    /// Names the Skaffold run (v2 `Metadata.runID`); default `simulated-run`.
    pub fn with_run_id(&mut self, run_id: &str) -> &mut Self {
        self.v2.run_id = Some(run_id.to_owned());
        self
    }

    /// Skaffold's output is coloured from now on, as on a colour terminal or with
    /// `--force-colors`: lines printed with `output.Default` (`Building [...]`, the
    /// sync line) reach the v2 log events wrapped in SGR codes, exactly as
    /// heroku/color writes them (`ESC[34m` for the default blue, the text with its
    /// newline, `ESC[0m`).
    pub fn with_colors(&mut self) -> &mut Self {
        self.v2.colors = true;
        self
    }

    /// `text` as `output.Default.Fprintf` writes it to Skaffold's output.
    fn default_color(&self, text: &str) -> String {
        if self.v2.colors {
            format!("\x1b[34m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Continues a session from where an earlier script left it.
    pub fn continuing(&mut self, from: &Position) -> &mut Self {
        self.v1.iteration = from.iteration;
        self.v2.offset = from.v2_offset;
        self.v2.iteration = from.iteration + 1 + from.v2_offset;
        self.v2.run_id = Some(from.run_id.clone());
        self
    }

    /// Where the session stands after this script.
    pub fn position(&self) -> Position {
        Position {
            iteration: self.v1.iteration,
            v2_offset: self.v2.offset,
            run_id: self.run_id(),
        }
    }

    /// The run's id (v2 `Metadata.runID`).
    fn run_id(&self) -> String {
        self.v2
            .run_id
            .clone()
            .unwrap_or_else(|| DEFAULT_RUN_ID.into())
    }

    /// The status check runs inside the deployer (`--iterative-status-check`, or
    /// deploy hooks): it comes before v1's deploy end, and the v2 `Deploy` task ends
    /// after the deployer (`deploy/deploy_mux.go`, `runner/deploy.go`).
    pub fn with_iterative_status_check(&mut self) -> &mut Self {
        self.v2.iterative_status_check = true;
        self
    }

    fn task(&self, task: &str, status: &str, err: Option<v2::ActionableErr>) -> V2 {
        let k = self.v2.iteration;
        V2::TaskEvent(v2::TaskEvent {
            id: format!("{task}-{k}"),
            task: task.to_owned(),
            description: match task {
                "DevLoop" => String::new(),
                "Build" => "Build containers".into(),
                "Render" => "Rendering manifests".into(),
                "Deploy" => "Deploy to cluster".into(),
                "StatusCheck" => "Waiting for deployments to stabilize".into(),
                "Test" => "Testing images".into(),
                other => other.to_owned(),
            },
            iteration: k,
            status: v2_status(status).to_owned(),
            actionable_err: err,
        })
    }

    fn v2_meta(&self, version: &str) -> V2 {
        V2::MetaEvent(v2::MetaEvent {
            entry: format!(
                "Starting Skaffold: &{{Version:{version} ConfigVersion:skaffold/v4beta11}}"
            ),
            metadata: Some(v2::Metadata {
                run_id: self.run_id(),
                build: Some(v2::BuildMetadata {
                    artifacts: DEMO_ARTIFACTS
                        .iter()
                        .map(|a| v2::build_metadata::Artifact {
                            r#type: 6,
                            name: (*a).to_owned(),
                            ..Default::default()
                        })
                        .collect(),
                    r#type: 3,
                    additional: Default::default(),
                }),
                ..Default::default()
            }),
        })
    }

    fn log_event(&self, task: &str, subtask: &str, message: &str) -> V2 {
        V2::SkaffoldLogEvent(v2::SkaffoldLogEvent {
            task_id: format!("{task}-{}", self.v2.iteration),
            subtask_id: subtask.to_owned(),
            level: 1,
            message: message.to_owned(),
        })
    }

    fn build_subtask(
        &self,
        artifact: &str,
        step: &str,
        status: &str,
        err: Option<v2::ActionableErr>,
    ) -> V2 {
        V2::BuildSubtaskEvent(v2::BuildSubtaskEvent {
            id: artifact.to_owned(),
            task_id: format!("Build-{}", self.v2.iteration),
            artifact: artifact.to_owned(),
            step: step.to_owned(),
            status: v2_status(status).to_owned(),
            actionable_err: err,
            host_platform: "linux/amd64".into(),
            target_platforms: "linux/amd64".into(),
        })
    }

    fn open_build(&mut self, v2: &mut Vec<V2>) {
        if !self.v2.build_open {
            self.v2.build_open = true;
            v2.push(self.task("Build", "InProgress", None));
        }
    }

    /// Ends the `Build` task (after its last artifact), and the `Test` task.
    fn close_build(&mut self, v2: &mut Vec<V2>) {
        if self.v2.build_open {
            self.v2.build_open = false;
            let t = match self.v2.build_failure.take() {
                Some(code) => self.task("Build", "Failed", v2_err(code, "build failed")),
                None => self.task("Build", "Succeeded", None),
            };
            v2.push(t);
        }
        if self.v2.test_open {
            self.v2.test_open = false;
            v2.push(self.task("Test", "Succeeded", None));
        }
    }

    /// Turns the script into log entries stamped from `start` (virtual time).
    pub fn entries(&self, start: Nanos) -> Vec<v1::LogEntry> {
        let mut t = start;
        self.steps
            .iter()
            .filter_map(|s| {
                t += i64::try_from(s.after.as_nanos()).unwrap_or(i64::MAX);
                entry_at(t, s)
            })
            .collect()
    }

    /// Turns the script into v2 events stamped from `start` (virtual time); each
    /// step's v2 events carry the same timestamp as its v1 entry.
    pub fn events_v2(&self, start: Nanos) -> Vec<v2::Event> {
        let mut t = start;
        let mut out = Vec::new();
        for s in &self.steps {
            t += i64::try_from(s.after.as_nanos()).unwrap_or(i64::MAX);
            out.extend(events_v2_at(t, s));
        }
        out
    }
}

fn timestamp(t: Nanos) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.div_euclid(1_000_000_000),
        nanos: t.rem_euclid(1_000_000_000) as i32,
    }
}

fn entry_at(t: Nanos, s: &Step) -> Option<v1::LogEntry> {
    Some(v1::LogEntry {
        timestamp: Some(timestamp(t)),
        event: Some(v1::Event {
            event_type: Some(s.event.clone()?),
        }),
        entry: s.entry.clone(),
    })
}

fn events_v2_at(t: Nanos, s: &Step) -> impl Iterator<Item = v2::Event> + '_ {
    s.v2.iter().map(move |e| v2::Event {
        timestamp: Some(timestamp(t)),
        event_type: Some(e.clone()),
    })
}

/// Plays a script into `sim`. With `time_scale` 0, nothing waits and the steps are
/// stamped with `clock` advanced by each step's `after` (virtual time: tests). Above
/// 0, each step waits its `after` scaled by `time_scale` and `clock` advances by that
/// same scaled time, never beyond the wall clock: like Skaffold's, the timestamps
/// never run ahead of the clock (durations shrink or grow with the scale).
pub async fn play(sim: &Simulator, script: &Script, clock: &mut Nanos, time_scale: f64) {
    for step in &script.steps {
        if time_scale > 0.0 {
            let wait = step.after.mul_f64(time_scale);
            if wait.is_zero() {
                // Still let other tasks (and a shutdown) run.
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(wait).await;
            }
            let scaled = i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX);
            *clock = clock.saturating_add(scaled).min(now_nanos());
        } else {
            *clock += i64::try_from(step.after.as_nanos()).unwrap_or(i64::MAX);
        }
        if let Some(e) = entry_at(*clock, step) {
            sim.emit(e);
        }
        for e in events_v2_at(*clock, step) {
            sim.emit_v2(e);
        }
    }
}

/// Now, in nanoseconds since the epoch (for stamping live demo events).
pub fn now_nanos() -> Nanos {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
