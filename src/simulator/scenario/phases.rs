//! The builders of a [`Script`], one per Skaffold event: each appends the v1 event
//! with Skaffold's status string and entry text, and the v2 events Skaffold fires at
//! the same call site (tasks, subtasks, log lines), keeping the iteration's context
//! (open `Build`/`Test` tasks, the failed phase's code) in step.

use super::{Script, V2Context, err, v1_failure, v2_err, v2_err_if, v2_status};
use crate::pb::enums::StatusCode;
use crate::pb::v1::{self, event::EventType as E};
use crate::pb::v2::{self, event::EventType as V2};

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

impl Script {
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
            let err = v2_err_if(
                status == "Failed",
                StatusCode::RenderTransformManifestErr,
                "rendering failed",
            );
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
        let message = "container-structure-test failed";
        let (_, err1) = v1_failure(failed, code, message);
        let err2 = v2_err_if(failed, code, message);
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
        let message = "docker build returned exit code 1";
        let (err_code, actionable_err) = v1_failure(failed, code, message);
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
                let e = v2_err(code, message);
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
                err: if failed { "build failed" } else { "" }.into(),
                err_code,
                actionable_err,
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
        let message = "kubectl apply: exit status 1";
        let (err_code, actionable_err) = v1_failure(failed, code, message);
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
                let e = v2_err(code, message);
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
                err: if failed { "kubectl apply failed" } else { "" }.into(),
                err_code,
                actionable_err,
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
        let message = "1/2 deployment(s) failed";
        let (err_code, actionable_err) = v1_failure(failed, code, message);
        // v2: `ActionableErrV2` of the plain "n/m deployment(s) failed" error.
        let e2 = |phase_unknown| v2_err_if(failed, phase_unknown, message);
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
                err_code,
                actionable_err,
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
        let status_code = match status {
            "Succeeded" => StatusCode::StatuscheckSuccess as i32,
            "Failed" => code as i32,
            _ => 0,
        };
        let (_, err1) = v1_failure(failed, code, "container crashed");
        let err2 = v2_err_if(failed, code, "container crashed");
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
            status_code,
            actionable_err: err2,
        })];
        self.push_both(
            after_ms,
            Some(E::ResourceStatusCheckEvent(v1::ResourceStatusCheckEvent {
                resource: resource.into(),
                status: status.into(),
                message: message.into(),
                status_code,
                actionable_err: err1,
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
}
