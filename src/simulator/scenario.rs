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

use std::time::Duration;

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

/// v1 status strings → v2 ones (no spaces; `Complete` is `Succeeded`).
fn v2_status(status: &str) -> &str {
    match status {
        "In Progress" | "Started" => "InProgress",
        "Complete" => "Succeeded",
        other => other,
    }
}

/// The error fields of a failed v1 FileSyncEvent (`FileSyncFailed`).
fn sync_error(failed: bool) -> v1::FileSyncEvent {
    if !failed {
        return v1::FileSyncEvent::default();
    }
    let message = "copying files: exit status 1";
    v1::FileSyncEvent {
        err: message.into(),
        err_code: StatusCode::SyncUnknown as i32,
        actionable_err: err(StatusCode::SyncUnknown, message),
        ..Default::default()
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
            run_id: self
                .v2
                .run_id
                .clone()
                .unwrap_or_else(|| DEFAULT_RUN_ID.into()),
        }
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
                run_id: self
                    .v2
                    .run_id
                    .clone()
                    .unwrap_or_else(|| DEFAULT_RUN_ID.into()),
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

    /// v2 only: the build cache had `artifact` (no v1 event: Skaffold v1.9+ sends
    /// none for a cache hit).
    pub fn cache_hit(&mut self, after_ms: u64, artifact: &str) -> &mut Self {
        let mut v2 = Vec::new();
        self.open_build(&mut v2);
        v2.push(self.build_subtask(artifact, "Cache", "InProgress", None));
        v2.push(self.build_subtask(artifact, "Cache", "Succeeded", None));
        self.push_v2(after_ms, v2)
    }

    /// v2 only: the render phase (`In Progress`, then `Succeeded` or `Failed`).
    pub fn render(&mut self, after_ms: u64, status: &str) -> &mut Self {
        let mut v2 = Vec::new();
        let sub = |status: &str, err| {
            V2::RenderEvent(v2::RenderSubtaskEvent {
                id: "0".into(),
                task_id: format!("Render-{}", self.v2.iteration),
                status: v2_status(status).to_owned(),
                actionable_err: err,
            })
        };
        if v2_status(status) == "InProgress" {
            let (t, s) = (self.task("Render", status, None), sub(status, None));
            self.close_build(&mut v2);
            v2.extend([t, s]);
        } else {
            let err = (status == "Failed")
                .then(|| v2_err(StatusCode::RenderTransformManifestErr, "rendering failed"))
                .flatten();
            v2.extend([sub(status, err.clone()), self.task("Render", status, err)]);
        }
        self.push_v2(after_ms, v2)
    }

    /// v2 only: a line of Skaffold's own output (`SkaffoldLogEvent`).
    pub fn log(&mut self, after_ms: u64, message: &str) -> &mut Self {
        let v2 = vec![self.log_event("DevLoop", "-1", message)];
        self.push_v2(after_ms, v2)
    }

    /// v2 only: a line of the application's output (`ApplicationLogEvent`).
    pub fn app_log(&mut self, after_ms: u64, pod: &str, message: &str) -> &mut Self {
        let v2 = vec![V2::ApplicationLogEvent(v2::ApplicationLogEvent {
            container_name: "app".into(),
            pod_name: pod.to_owned(),
            prefix: format!("[{pod} app]"),
            message: message.to_owned(),
            rich_formatted_message: message.to_owned(),
        })];
        self.push_v2(after_ms, v2)
    }

    /// One tester's run: a v1 TestEvent (`In Progress`, `Complete`, `Failed`) and its
    /// v2 `TestSubtaskEvent`, inside the iteration's v2 `Test` task (opened by the first
    /// tester, failed with a failed tester, else closed by the next phase).
    pub fn test(&mut self, after_ms: u64, status: &str, code: StatusCode) -> &mut Self {
        let failed = status == "Failed";
        let entry = match status {
            "In Progress" => "Test started",
            "Complete" => "Test completed",
            _ => "Test failed",
        };
        let err1 = failed
            .then(|| err(code, "container-structure-test failed"))
            .flatten();
        let err2 = failed
            .then(|| v2_err(code, "container-structure-test failed"))
            .flatten();
        let mut v2 = Vec::new();
        if status == "In Progress" {
            self.close_build(&mut v2);
            if !self.v2.test_open {
                self.v2.test_open = true;
                self.v2.next_tester = 0;
                v2.push(self.task("Test", status, None));
            }
        }
        let sub = V2::TestEvent(v2::TestSubtaskEvent {
            id: self.v2.next_tester.to_string(),
            task_id: format!("Test-{}", self.v2.iteration),
            status: v2_status(status).to_owned(),
            actionable_err: err2.clone(),
        });
        v2.push(sub);
        if status != "In Progress" {
            self.v2.next_tester += 1;
        }
        if failed {
            // `runTests` stops at the first failed tester; `Test` fails with it.
            self.v2.test_open = false;
            self.v1.failure = Some(code);
            v2.push(self.task("Test", status, err2));
        }
        self.push_both(
            after_ms,
            Some(E::TestEvent(v1::TestEvent {
                status: status.into(),
                actionable_err: err1,
            })),
            entry,
            v2,
        )
    }

    /// v2 only: the runner's test phase ran with no tester (`runner/test.go` sends
    /// the `Test` task whenever it is called, e.g. by `skaffold run`, or in a dev
    /// iteration whose rebuilt artifacts have no tests).
    pub fn test_phase_without_testers(&mut self, after_ms: u64) -> &mut Self {
        let mut v2 = Vec::new();
        self.close_build(&mut v2);
        v2.push(self.task("Test", "InProgress", None));
        v2.push(self.task("Test", "Succeeded", None));
        self.push_v2(after_ms, v2)
    }

    /// MetaEvent as Skaffold's runner sends it, in a new Skaffold process.
    pub fn meta(&mut self, after_ms: u64, version: &str) -> &mut Self {
        self.v2 = V2Context {
            run_id: self.v2.run_id.clone(),
            iterative_status_check: self.v2.iterative_status_check,
            colors: self.v2.colors,
            ..V2Context::default()
        };
        self.runner_meta(after_ms, version)
    }

    /// A config reload: `skaffold.yaml` changed, so `skaffold dev` creates a new
    /// runner (`cmd/skaffold/app/cmd/dev.go`, `runner/new.go`) in the same process,
    /// with a new run id. Its MetaEvents start a new run; v1 counts iterations from 0
    /// again, the v2 counter goes on.
    pub fn reload(&mut self, after_ms: u64, version: &str, run_id: &str) -> &mut Self {
        self.v2.offset = self.v2.iteration;
        self.v2.run_id = Some(run_id.to_owned());
        self.v2.build_open = false;
        self.v2.test_open = false;
        self.runner_meta(after_ms, version)
    }

    fn runner_meta(&mut self, after_ms: u64, version: &str) -> &mut Self {
        let text = format!(
            "Starting Skaffold: &{{Version:{version} ConfigVersion:skaffold/v4beta11 GitVersion: GitCommit:0000000 BuildDate:2026-01-01T00:00:00Z GoVersion:go1.22 Compiler:gc Platform:linux/amd64 User:}}"
        );
        let v2 = vec![self.v2_meta(version)];
        self.push_both(
            after_ms,
            Some(E::MetaEvent(v1::MetaEvent {
                entry: text,
                metadata: None,
            })),
            "",
            v2,
        )
    }

    /// DevLoopEvent with Skaffold's v1.16+ entry texts. A `Failed` one carries the
    /// code of the phase that failed in the iteration over v1 (`UNKNOWN_ERROR` when
    /// none did) and `UNKNOWN_ERROR` over v2.
    pub fn dev_loop(&mut self, after_ms: u64, iteration: i32, status: &str) -> &mut Self {
        let code = self.v1.failure.unwrap_or(StatusCode::UnknownError);
        self.dev_loop_with(after_ms, iteration, status, code)
    }

    /// A failed DevLoopEvent with `code` over v1 (`DevLoopFailedWithErrorCode`, e.g.
    /// `DEVINIT_REGISTER_BUILD_DEPS` when Skaffold cannot watch the files).
    pub fn dev_loop_failed_with(
        &mut self,
        after_ms: u64,
        iteration: i32,
        code: StatusCode,
    ) -> &mut Self {
        self.dev_loop_with(after_ms, iteration, "Failed", code)
    }

    fn dev_loop_with(
        &mut self,
        after_ms: u64,
        iteration: i32,
        status: &str,
        code: StatusCode,
    ) -> &mut Self {
        let (entry, e) = match status {
            "In Progress" => ("Update initiated".to_owned(), None),
            "Succeeded" => ("Update succeeded".to_owned(), None),
            _ => (
                format!("Update failed with error code {}", code.as_str_name()),
                err(code, "iteration failed"),
            ),
        };
        let mut v2 = Vec::new();
        if status == "In Progress" {
            // v1.26+: the v2 counter is one ahead (more after a config reload); a
            // MetaEvent follows every start.
            self.v2.iteration = iteration + 1 + self.v2.offset;
            self.v2.build_open = false;
            self.v2.test_open = false;
            self.v1.failure = None;
            self.v1.iteration = iteration;
            v2.push(self.task("DevLoop", status, None));
            v2.push(self.v2_meta("v2.16.1"));
        } else {
            self.close_build(&mut v2);
            if status == "Failed" {
                // `TaskFailed` logs Skaffold's first error message (once per process).
                if !self.v2.error_logged {
                    self.v2.error_logged = true;
                    v2.push(self.log_event("DevLoop", "-1", "iteration failed\n"));
                }
                v2.push(self.task(
                    "DevLoop",
                    status,
                    v2_err(StatusCode::UnknownError, "iteration failed"),
                ));
            } else {
                v2.push(self.task("DevLoop", status, None));
            }
        }
        self.push_both(
            after_ms,
            Some(E::DevLoopEvent(v1::DevLoopEvent {
                iteration,
                status: status.into(),
                err: e,
            })),
            entry,
            v2,
        )
    }

    /// BuildEvent; a `Failed` one carries `code`.
    pub fn build(
        &mut self,
        after_ms: u64,
        artifact: &str,
        status: &str,
        code: StatusCode,
    ) -> &mut Self {
        let entry = match status {
            "In Progress" => format!("Build started for artifact {artifact}"),
            "Complete" => format!("Build completed for artifact {artifact}"),
            "Failed" => format!("Build failed for artifact {artifact}"),
            _ => String::new(),
        };
        let failed = status == "Failed";
        let mut v2 = Vec::new();
        match status {
            "In Progress" => {
                self.open_build(&mut v2);
                v2.push(self.build_subtask(artifact, "Cache", "InProgress", None));
                v2.push(self.build_subtask(artifact, "Cache", "Failed", None));
                v2.push(self.log_event(
                    "Build",
                    artifact,
                    &self.default_color(&format!("Building [{artifact}]...\n")),
                ));
                v2.push(self.build_subtask(artifact, "Build", "InProgress", None));
            }
            "Failed" => {
                let e = v2_err(code, "docker build returned exit code 1");
                v2.push(self.build_subtask(artifact, "Build", "Failed", e));
                self.v2.build_failure = Some(code);
                self.v1.failure = Some(code);
            }
            other => v2.push(self.build_subtask(artifact, "Build", other, None)),
        }
        self.push_both(
            after_ms,
            Some(E::BuildEvent(v1::BuildEvent {
                artifact: artifact.into(),
                status: status.into(),
                err: if failed {
                    "build failed".into()
                } else {
                    String::new()
                },
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "docker build returned exit code 1")
                } else {
                    None
                },
                ..Default::default()
            })),
            entry,
            v2,
        )
    }

    /// A build cancelled by Ctrl-C, or because a concurrent build failed
    /// (`build/scheduler.go`, `scheduler.build`). `started`: it was building (v1
    /// `Failed` with the error's code, `BUILD_CANCELLED` from "context canceled"; v2
    /// `Canceled`); else it was waiting for a dependency (`Canceled` over both, with
    /// nothing before it).
    pub fn build_canceled(&mut self, after_ms: u64, artifact: &str, started: bool) -> &mut Self {
        let code = StatusCode::BuildCancelled;
        let mut v2 = Vec::new();
        self.open_build(&mut v2);
        v2.push(self.build_subtask(
            artifact,
            "Build",
            "Canceled",
            v2_err(code, "context canceled"),
        ));
        self.v2.build_failure.get_or_insert(code);
        self.v1.failure.get_or_insert(code);
        let event = if started {
            v1::BuildEvent {
                artifact: artifact.into(),
                status: "Failed".into(),
                err: "context canceled".into(),
                err_code: code as i32,
                actionable_err: err(code, "context canceled"),
                ..Default::default()
            }
        } else {
            v1::BuildEvent {
                artifact: artifact.into(),
                status: "Canceled".into(),
                ..Default::default()
            }
        };
        let entry = if started {
            format!("Build failed for artifact {artifact}")
        } else {
            String::new()
        };
        self.push_both(after_ms, Some(E::BuildEvent(event)), entry, v2)
    }

    /// DeployEvent (v1.16+ texts).
    pub fn deploy(&mut self, after_ms: u64, status: &str, code: StatusCode) -> &mut Self {
        let entry = match status {
            "In Progress" => "Deploy started",
            "Complete" => "Deploy completed",
            "Failed" => "Deploy failed",
            _ => "",
        };
        let failed = status == "Failed";
        let mut v2 = Vec::new();
        let sub = |status: &str, err| {
            V2::DeploySubtaskEvent(v2::DeploySubtaskEvent {
                id: "0".into(),
                task_id: format!("Deploy-{}", self.v2.iteration),
                status: v2_status(status).to_owned(),
                actionable_err: err,
            })
        };
        match status {
            "In Progress" => {
                let (t, s) = (self.task("Deploy", status, None), sub(status, None));
                self.close_build(&mut v2);
                v2.extend([t, s]);
            }
            "Failed" => {
                let e = v2_err(code, "kubectl apply: exit status 1");
                v2.extend([sub(status, e.clone()), self.task("Deploy", status, e)]);
            }
            "Complete" => {
                v2.push(sub(status, None));
                if self.v2.iterative_status_check {
                    // The status check already ran inside the deployer.
                    v2.push(self.task("Deploy", "Succeeded", None));
                }
            }
            _ => {}
        }
        if failed {
            // DevLoopFailedInPhase(Deploy): the deploy's code when the deploy failed.
            self.v1.failure = Some(code);
        }
        self.push_both(
            after_ms,
            Some(E::DeployEvent(v1::DeployEvent {
                status: status.into(),
                err: if failed {
                    "kubectl apply failed".into()
                } else {
                    String::new()
                },
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "kubectl apply: exit status 1")
                } else {
                    None
                },
            })),
            entry,
            v2,
        )
    }

    /// StatusCheckEvent (`Started`, `Succeeded`, `Failed`).
    pub fn status_check(&mut self, after_ms: u64, status: &str, code: StatusCode) -> &mut Self {
        let entry = match status {
            "Started" => "Status check started",
            "Succeeded" => "Status check succeeded",
            _ => "Status check failed",
        };
        let failed = status == "Failed";
        // v2: `ActionableErrV2` of the plain "n/m deployment(s) failed" error.
        let e2 = |phase_unknown| {
            failed
                .then(|| v2_err(phase_unknown, "1/2 deployment(s) failed"))
                .flatten()
        };
        let mut v2 = match status {
            "Started" => vec![self.task("StatusCheck", status, None)],
            _ => vec![self.task("StatusCheck", status, e2(StatusCode::StatuscheckUnknown))],
        };
        if status != "Started" && !self.v2.iterative_status_check {
            // runner/deploy.go: the `Deploy` task ends with the status check.
            v2.push(self.task("Deploy", status, e2(StatusCode::DeployUnknown)));
        }
        if failed {
            self.v1.failure = Some(code);
        }
        self.push_both(
            after_ms,
            Some(E::StatusCheckEvent(v1::StatusCheckEvent {
                status: status.into(),
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "1/2 deployment(s) failed")
                } else {
                    None
                },
                ..Default::default()
            })),
            entry,
            v2,
        )
    }

    /// ResourceStatusCheckEvent.
    pub fn resource(
        &mut self,
        after_ms: u64,
        resource: &str,
        status: &str,
        code: StatusCode,
    ) -> &mut Self {
        let entry = match status {
            "In Progress" => format!("Resource {resource} status updated to In Progress"),
            "Succeeded" => format!("Resource {resource} status completed successfully"),
            _ => format!("Resource {resource} status failed with container crashed"),
        };
        let failed = status == "Failed";
        let code = match status {
            "Succeeded" => StatusCode::StatuscheckSuccess as i32,
            "Failed" => code as i32,
            _ => 0,
        };
        let message = if status == "Succeeded" {
            "Succeeded"
        } else {
            "Waiting for rollout"
        };
        let v2 = vec![V2::StatusCheckSubtaskEvent(v2::StatusCheckSubtaskEvent {
            id: resource.to_owned(),
            task_id: format!("Deploy-{}", self.v2.iteration),
            resource: resource.to_owned(),
            status: v2_status(status).to_owned(),
            message: message.to_owned(),
            status_code: code,
            actionable_err: failed
                .then(|| {
                    v2_err(
                        StatusCode::try_from(code).unwrap_or(StatusCode::UnknownError),
                        "container crashed",
                    )
                })
                .flatten(),
        })];
        self.push_both(
            after_ms,
            Some(E::ResourceStatusCheckEvent(v1::ResourceStatusCheckEvent {
                resource: resource.into(),
                status: status.into(),
                message: if status == "Succeeded" {
                    "Succeeded".into()
                } else {
                    "Waiting for rollout".into()
                },
                status_code: code,
                actionable_err: if failed {
                    err(
                        StatusCode::try_from(code).unwrap_or(StatusCode::UnknownError),
                        "container crashed",
                    )
                } else {
                    None
                },
                ..Default::default()
            })),
            entry,
            v2,
        )
    }

    /// FileSyncEvent. A `Failed` one is one failed attempt: Skaffold retries it up to
    /// 3 times, each attempt with its own `Syncing` line, FileSyncEvents and failed
    /// DevLoopEvent (`runner/dev.go`, `getSyncHandler`), then goes on with the
    /// iteration (v2.17+).
    pub fn sync(&mut self, after_ms: u64, image: &str, files: i32, status: &str) -> &mut Self {
        let verb = match status {
            "In Progress" => "started",
            "Succeeded" => "succeeded",
            _ => "failed",
        };
        if status == "Failed" {
            // `ActionableErr(Sync, err)` of a plain error (event/event.go).
            self.v1.failure = Some(StatusCode::SyncUnknown);
        }
        // Skaffold emits no v2 FileSyncEvent: only the log line announces a sync.
        let v2 = if status == "In Progress" {
            vec![self.log_event(
                "DevLoop",
                "-1",
                &self.default_color(&format!("Syncing {files} files for {image}\n")),
            )]
        } else {
            Vec::new()
        };
        self.push_both(
            after_ms,
            Some(E::FileSyncEvent(v1::FileSyncEvent {
                file_count: files,
                image: image.into(),
                status: status.into(),
                ..sync_error(status == "Failed")
            })),
            format!("File sync {verb} for {files} files for {image}"),
            v2,
        )
    }

    /// PortEvent for a service forward.
    pub fn port(&mut self, after_ms: u64, local_port: i32, service: &str) -> &mut Self {
        let v2 = vec![V2::PortEvent(v2::PortForwardEvent {
            task_id: format!("PortForward-{}", self.v2.iteration),
            local_port,
            namespace: "default".into(),
            resource_type: "service".into(),
            resource_name: service.into(),
            address: "127.0.0.1".into(),
            target_port: Some(v2::IntOrString {
                r#type: 0,
                int_val: 8080,
                str_val: String::new(),
            }),
            ..Default::default()
        })];
        self.push_both(
            after_ms,
            Some(E::PortEvent(v1::PortEvent {
                local_port,
                namespace: "default".into(),
                resource_type: "service".into(),
                resource_name: service.into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            })),
            format!("Forwarding container  to local port {local_port}"),
            v2,
        )
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

/// Which demo session to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    /// A realistic session: mostly green, some syncs, occasional failures.
    Normal,
    /// Every deploy fails (to see the repeated-deploy-failure alert fire).
    DeployFailures,
}

/// The artifacts of the demo app.
pub const DEMO_ARTIFACTS: [&str; 3] = ["leeroy-web", "leeroy-app", "leeroy-db"];
const RESOURCES: [&str; 2] = ["deployment/leeroy-web", "deployment/leeroy-app"];

/// The initial loop of a dev session (iteration 0), starting with the MetaEvent.
pub fn initial_loop(rng: &mut fastrand::Rng, flavor: Flavor) -> Script {
    let mut s = Script::new();
    s.meta(0, "v2.16.1").dev_loop(40, 0, "In Progress");
    for a in DEMO_ARTIFACTS {
        s.build(10, a, "In Progress", StatusCode::Ok).build(
            rng.u64(1500..5000),
            a,
            "Complete",
            StatusCode::Ok,
        );
    }
    deploy_and_check(&mut s, rng, flavor, 0);
    s
}

/// A config reload (`skaffold.yaml` changed) after the session stood at `from`: a new
/// runner with run id `run_id` and its initial loop, the images coming from the cache.
pub fn reload_loop(
    rng: &mut fastrand::Rng,
    flavor: Flavor,
    from: &Position,
    run_id: &str,
) -> Script {
    let mut s = Script::new();
    s.continuing(from)
        .reload(rng.u64(2000..6000), "v2.16.1", run_id)
        .dev_loop(40, 0, "In Progress");
    for a in DEMO_ARTIFACTS {
        s.cache_hit(rng.u64(5..40), a);
    }
    deploy_and_check(&mut s, rng, flavor, 0);
    s
}

/// The iteration after `from`: a sync, a rebuild or a redeploy, with occasional
/// failures.
pub fn next_loop(rng: &mut fastrand::Rng, flavor: Flavor, from: &Position) -> Script {
    let iteration = from.iteration + 1;
    let mut s = Script::new();
    s.continuing(from)
        .dev_loop(rng.u64(2000..6000), iteration, "In Progress");
    let roll = rng.u32(0..100);
    if roll < 45 && flavor == Flavor::Normal {
        let image = DEMO_ARTIFACTS[rng.usize(0..2)];
        let files = rng.i32(1..12);
        // Now and then the container is gone: the sync fails and Skaffold retries
        // it up to 3 times with an exponential backoff (runner/dev.go).
        let failures = if rng.u32(0..100) < 10 {
            rng.u32(1..5)
        } else {
            0
        };
        // backoff.NewExponentialBackOff: 500 ms, times 1.5, randomised by ±50 %.
        let (mut wait, mut backoff) = (20, 500);
        for _ in 0..failures {
            s.sync(wait, image, files, "In Progress")
                .sync(rng.u64(50..300), image, files, "Failed")
                .dev_loop(0, iteration, "Failed");
            wait = rng.u64(backoff / 2..backoff * 3 / 2);
            backoff = backoff * 3 / 2;
        }
        if failures < 4 {
            s.sync(wait, image, files, "In Progress").sync(
                rng.u64(150..900),
                image,
                files,
                "Succeeded",
            );
        }
        // Nothing else to do: doDev reports the iteration's end right away (over v2
        // that also ends the sync, which has no end event of its own).
        s.dev_loop(0, iteration, "Succeeded");
        return s;
    }
    if roll < 85 {
        let a = DEMO_ARTIFACTS[rng.usize(0..DEMO_ARTIFACTS.len())];
        if flavor == Flavor::Normal && rng.u32(0..100) < 6 {
            // leeroy-app waits for leeroy-db; db fails, so app is cancelled while it
            // waits (build/scheduler.go, waitForDependencies).
            s.build(20, "leeroy-db", "In Progress", StatusCode::Ok)
                .build(
                    rng.u64(800..3000),
                    "leeroy-db",
                    "Failed",
                    StatusCode::BuildUserError,
                )
                .build_canceled(1, "leeroy-app", false)
                .dev_loop(5, iteration, "Failed");
            return s;
        }
        s.build(20, a, "In Progress", StatusCode::Ok);
        if flavor == Flavor::Normal && rng.u32(0..100) < 12 {
            s.build(rng.u64(800..3000), a, "Failed", StatusCode::BuildUserError)
                .dev_loop(5, iteration, "Failed");
            return s;
        }
        s.build(rng.u64(1200..4500), a, "Complete", StatusCode::Ok);
    }
    deploy_and_check(&mut s, rng, flavor, iteration);
    s
}

fn deploy_and_check(s: &mut Script, rng: &mut fastrand::Rng, flavor: Flavor, iteration: i32) {
    // Rendering is only reported over API v2.
    s.render(10, "In Progress")
        .render(rng.u64(50..300), "Succeeded")
        .deploy(20, "In Progress", StatusCode::Ok);
    let deploy_fails = match flavor {
        Flavor::DeployFailures => true,
        Flavor::Normal => rng.u32(0..100) < 8,
    };
    if deploy_fails {
        s.deploy(
            rng.u64(300..1500),
            "Failed",
            StatusCode::DeployKubectlUserErr,
        )
        .dev_loop(5, iteration, "Failed");
        return;
    }
    s.deploy(rng.u64(400..1500), "Complete", StatusCode::Ok)
        .status_check(5, "Started", StatusCode::Ok);
    let rollout_fails = rng.u32(0..100) < 5;
    for r in RESOURCES {
        s.resource(rng.u64(100..400), r, "In Progress", StatusCode::Ok);
    }
    for (i, r) in RESOURCES.iter().enumerate() {
        s.resource(rng.u64(200..800), r, "In Progress", StatusCode::Ok);
        let ok = !(rollout_fails && i == 1);
        let (st, code) = if ok {
            ("Succeeded", StatusCode::Ok)
        } else {
            ("Failed", StatusCode::StatuscheckContainerTerminated)
        };
        s.resource(rng.u64(500..2500), r, st, code);
    }
    if rollout_fails {
        s.status_check(5, "Failed", StatusCode::StatuscheckContainerTerminated)
            .dev_loop(5, iteration, "Failed");
        return;
    }
    s.status_check(5, "Succeeded", StatusCode::Ok);
    if iteration == 0 {
        s.port(30, 9000, "leeroy-web").port(5, 9001, "leeroy-app");
    }
    s.app_log(5, "leeroy-web-7d9f", "Listening on :8080")
        .app_log(5, "leeroy-app-5c4b", "GET /healthz 200");
    s.dev_loop(10, iteration, "Succeeded");
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

/// The demo's dev session, one script per iteration: the initial loop, then random
/// iterations, and now and then a config reload (a new run). Endless.
#[derive(Debug)]
pub struct Session {
    rng: fastrand::Rng,
    flavor: Flavor,
    /// Where the last script left the session; `None` before the initial loop.
    position: Option<Position>,
    run: u32,
}

impl Session {
    /// A session of `flavor` whose randomness comes from `seed`.
    pub fn new(flavor: Flavor, seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            flavor,
            position: None,
            run: 1,
        }
    }
}

impl Iterator for Session {
    type Item = Script;

    fn next(&mut self) -> Option<Script> {
        let (rng, flavor) = (&mut self.rng, self.flavor);
        let script = match &self.position {
            None => initial_loop(rng, flavor),
            // Now and then `skaffold.yaml` changes: a new runner, a new run.
            Some(from) if flavor == Flavor::Normal && rng.u32(0..100) < 3 => {
                self.run += 1;
                let id = format!("{DEFAULT_RUN_ID}-{}", self.run);
                reload_loop(rng, flavor, from, &id)
            }
            Some(from) => next_loop(rng, flavor, from),
        };
        self.position = Some(script.position());
        Some(script)
    }
}

/// Events the demo's Skaffold keeps (v1 and v2 together) before it restarts: a real
/// Skaffold keeps every event for the replays, so an endless demo would grow without
/// bound. At the next iteration boundary past this, the simulated Skaffold restarts
/// (a new process, an empty log, a new session), as when a developer restarts
/// `skaffold dev`.
pub const DEMO_LOG_LIMIT: usize = 200_000;

/// Plays the demo forever: the initial loop, then random iterations; a new Skaffold
/// process once the log holds `log_limit` events. `time_scale` must be above 0.
pub async fn run_demo(
    sim: Simulator,
    flavor: Flavor,
    time_scale: f64,
    seed: u64,
    log_limit: usize,
) {
    let mut clock = now_nanos();
    let mut seed = seed;
    loop {
        for script in Session::new(flavor, seed) {
            play(&sim, &script, &mut clock, time_scale).await;
            // Keep Skaffold's clock near the wall clock (sleeps overshoot).
            clock = clock.max(now_nanos());
            if sim.len() + sim.len_v2() >= log_limit {
                break;
            }
        }
        tracing::info!(
            "demo: the simulated Skaffold restarts (its event log reached {log_limit} events)"
        );
        sim.restart();
        seed = seed.wrapping_add(1);
    }
}
