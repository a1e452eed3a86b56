//! API v2 → domain: `V2Decoder::decode(&v2::Event)` → the same `core::Event`s as v1,
//! plus what only v2 reports (build-cache hits and misses, render / verify / exec,
//! subtasks, the run id).
//!
//! v2 does not describe phases the way v1 does, so the decoder keeps a little state
//! per Skaffold run to produce the v1 shapes the fold (and the metric contract) is
//! built on:
//!
//! - **Runs.** v2 sends a MetaEvent when the runner starts *and again at every dev
//!   iteration*. Only the first one of a run (or one with a new `runID`) starts a run;
//!   the repeats are ignored. The run id follows as `RunIdentified`.
//! - **Iterations.** From v1.26 the v2 dev-loop counter starts at 1 (`DevLoop-1` is
//!   v1's iteration 0); v1.22–v1.25 counted from 0. A `DevLoop` task with iteration 0
//!   marks the old numbering for the rest of the run; otherwise `n` maps to `n - 1`.
//! - **Builds.** Per-artifact `BuildSubtaskEvent`s: step `Build` is v1's build, step
//!   `Cache` is the cache lookup (`Succeeded` = hit, `Failed` = miss). The `Build` task
//!   itself adds nothing v1 lacks and is not folded.
//! - **Deploy.** The v2 `Deploy` task also spans the status check, so v1's deploy
//!   phase is rebuilt: it starts with the `Deploy` task, fails with a failed deployer
//!   subtask (or a failed `Deploy` task before any status check), and succeeds at the
//!   last deployer's end once the status check starts or the `Deploy` task ends.
//! - **Status check.** The `StatusCheck` task is the status check;
//!   `StatusCheckSubtaskEvent`s are the per-resource events.
//! - **File syncs.** Skaffold never emits v2 `FileSyncEvent`s (no caller at any
//!   release); a sync only shows as the log line `Syncing N files for IMAGE`. The
//!   decoder starts a sync there and ends it at the next task event of the iteration
//!   (success) or when the dev loop fails (failure), so sync durations are an upper
//!   bound. Should a `FileSyncEvent` ever arrive, the log lines are no longer used.
//! - **Logs.** `SkaffoldLogEvent` / `ApplicationLogEvent` carry no metric; sources
//!   skip them before decoding where they can (see [`crate::source::wire`]).

use crate::core::{ErrorInfo, Event, EventKind, InvalidEvent, Nanos, Phase, Status, event};
use crate::pb::v2::{self, event::EventType as E};
use crate::source::decode::{MAX_NAME, name, status, status_code_name, timestamp_nanos, truncated};

/// The log line that announces a file sync (`output.Default.Fprintf(out, "Syncing %d
/// files for %s\n", ...)` in Skaffold's dev loop).
pub const SYNC_LOG_PREFIX: &str = "Syncing ";

/// Per-run state needed to map v2 onto the v1-shaped domain events.
#[derive(Debug, Default, Clone)]
pub struct V2Decoder {
    run_started: bool,
    run_id: Option<String>,
    zero_based: bool,
    deploy_open: bool,
    last_deployer_end: Option<Nanos>,
    sync_open: Option<(String, u64)>,
    file_sync_events_seen: bool,
}

fn error(status: Status, code: i32, actionable: Option<&v2::ActionableErr>) -> Option<ErrorInfo> {
    if status != Status::Failed {
        return None;
    }
    let (code, message) = match actionable {
        Some(a) => (
            status_code_name(a.err_code).or_else(|| status_code_name(code)),
            a.message.as_str(),
        ),
        None => (status_code_name(code), ""),
    };
    Some(ErrorInfo {
        code,
        message: truncated(message, 4096),
    })
}

/// Parses `Syncing 3 files for leeroy-web` into (image, file count). A count too
/// large for a u64 comes out as `u64::MAX` (the decoder rejects anything above
/// `i32::MAX`, the range of the file count Skaffold's events carry).
pub fn parse_sync_line(message: &str) -> Option<(String, u64)> {
    let rest = message.strip_prefix(SYNC_LOG_PREFIX)?;
    let (count, rest) = rest.split_once(' ')?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = count.parse().unwrap_or(u64::MAX);
    let image = rest
        .strip_prefix("files for ")
        .or_else(|| rest.strip_prefix("file for "))?
        .trim_end();
    (!image.is_empty()).then(|| (truncated(image, MAX_NAME), count))
}

impl V2Decoder {
    /// A decoder that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything: a new Skaffold process.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The current run's id, when Skaffold sent one.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// Decodes one v2 event into zero or more domain events (appended to `out`).
    /// Nothing is appended when the event is invalid.
    pub fn decode(&mut self, ev: &v2::Event, out: &mut Vec<Event>) -> Result<(), InvalidEvent> {
        let kind = ev.event_type.as_ref().ok_or(InvalidEvent::Empty)?;
        let at = timestamp_nanos(ev.timestamp.as_ref())?;
        let push = |out: &mut Vec<Event>, kind: EventKind| out.push(Event { at, kind });
        match kind {
            E::MetaEvent(m) => {
                let run_id = m
                    .metadata
                    .as_ref()
                    .map(|md| truncated(&md.run_id, MAX_NAME))
                    .filter(|r| !r.is_empty());
                let new_run = !self.run_started
                    || run_id
                        .as_ref()
                        .is_some_and(|r| self.run_id.as_ref() != Some(r));
                if new_run {
                    self.reset();
                    self.run_started = true;
                    self.run_id = run_id.clone();
                    push(
                        out,
                        EventKind::Meta {
                            version: event::parse_version(&m.entry),
                        },
                    );
                    if let Some(run_id) = run_id {
                        push(out, EventKind::RunIdentified { run_id });
                    }
                }
            }
            E::SkaffoldLogEvent(l) => {
                if self.file_sync_events_seen {
                    return Ok(());
                }
                if let Some((image, files)) = parse_sync_line(&l.message) {
                    if files > i32::MAX as u64 {
                        return Err(InvalidEvent::AbsurdValue {
                            event: "file sync",
                            detail: format!("{files} files in Skaffold's sync log line"),
                        });
                    }
                    self.close_sync(at, Status::Succeeded, None, out);
                    self.sync_open = Some((image.clone(), files));
                    push(
                        out,
                        EventKind::FileSync {
                            image,
                            file_count: files,
                            status: Status::InProgress,
                            error: None,
                        },
                    );
                }
            }
            E::ApplicationLogEvent(_) | E::CloudRunReadyEvent(_) => {}
            E::TaskEvent(t) => self.task(t, at, out)?,
            E::BuildSubtaskEvent(b) => {
                let st = status("build", &b.status)?;
                let artifact = name("build", "artifact", &b.artifact)?;
                match b.step.as_str() {
                    "Cache" => push(
                        out,
                        EventKind::BuildCache {
                            artifact,
                            status: st,
                        },
                    ),
                    // No step before v1.26 (only real builds were reported).
                    "Build" | "" => {
                        if st == Status::InProgress {
                            self.close_sync(at, Status::Succeeded, None, out);
                        }
                        push(
                            out,
                            EventKind::Build {
                                artifact,
                                status: st,
                                error: error(st, 0, b.actionable_err.as_ref()),
                            },
                        );
                    }
                    // Skaffold sends no other step (`event/v2/build.go`): e.g. a
                    // status word here is not something to fold.
                    other => {
                        return Err(InvalidEvent::AbsurdValue {
                            event: "build",
                            detail: format!(
                                "BuildSubtaskEvent step {:?}",
                                other.chars().take(64).collect::<String>()
                            ),
                        });
                    }
                }
            }
            E::DeploySubtaskEvent(d) => {
                let st = status("deploy", &d.status)?;
                let err = error(st, 0, d.actionable_err.as_ref());
                push(
                    out,
                    EventKind::Subtask {
                        phase: Phase::DeploySubtask,
                        id: truncated(&d.id, MAX_NAME),
                        status: st,
                        error: err.clone(),
                    },
                );
                match st {
                    Status::Succeeded => self.last_deployer_end = Some(at),
                    Status::Failed | Status::Canceled if self.deploy_open => {
                        self.deploy_open = false;
                        push(
                            out,
                            EventKind::Deploy {
                                status: st,
                                error: err,
                            },
                        );
                    }
                    _ => {}
                }
            }
            E::TestEvent(t) => {
                let st = status("test", &t.status)?;
                push(
                    out,
                    subtask(Phase::TestSubtask, &t.id, st, t.actionable_err.as_ref()),
                );
            }
            E::RenderEvent(r) => {
                let st = status("render", &r.status)?;
                push(
                    out,
                    subtask(Phase::RenderSubtask, &r.id, st, r.actionable_err.as_ref()),
                );
            }
            E::VerifyEvent(v) => {
                let st = status("verify", &v.status)?;
                push(
                    out,
                    subtask(Phase::VerifySubtask, &v.id, st, v.actionable_err.as_ref()),
                );
            }
            E::ExecEvent(x) => {
                let st = status("exec", &x.status)?;
                push(
                    out,
                    subtask(Phase::ExecSubtask, &x.id, st, x.actionable_err.as_ref()),
                );
            }
            E::StatusCheckSubtaskEvent(s) => {
                let st = status("resource_status_check", &s.status)?;
                let resource = if s.resource.trim().is_empty() {
                    &s.id
                } else {
                    &s.resource
                };
                push(
                    out,
                    EventKind::ResourceStatus {
                        resource: name("resource_status_check", "resource", resource)?,
                        status: st,
                        error: error(st, s.status_code, s.actionable_err.as_ref()),
                    },
                );
            }
            E::PortEvent(p) => {
                if !(0..=65535).contains(&p.local_port) {
                    return Err(InvalidEvent::AbsurdValue {
                        event: "port",
                        detail: format!("localPort {}", p.local_port),
                    });
                }
                push(
                    out,
                    EventKind::PortForward {
                        local_port: p.local_port,
                        resource_type: truncated(&p.resource_type, MAX_NAME),
                        resource_name: truncated(&p.resource_name, MAX_NAME),
                        namespace: truncated(&p.namespace, MAX_NAME),
                    },
                );
            }
            E::FileSyncEvent(f) => {
                let st = status("file_sync", &f.status)?;
                if f.file_count < 0 {
                    return Err(InvalidEvent::AbsurdValue {
                        event: "file_sync",
                        detail: format!("fileCount {}", f.file_count),
                    });
                }
                let image = name("file_sync", "image", &f.image)?;
                self.file_sync_events_seen = true;
                self.sync_open = None;
                push(
                    out,
                    EventKind::FileSync {
                        image,
                        file_count: f.file_count as u64,
                        status: st,
                        error: error(st, 0, f.actionable_err.as_ref()),
                    },
                );
            }
            E::DebuggingContainerEvent(_) => push(out, EventKind::Debug),
            E::TerminationEvent(t) => {
                let st = status("termination", &t.status)?;
                push(
                    out,
                    EventKind::Termination {
                        status: st,
                        error: error(st, 0, t.err.as_ref()),
                    },
                );
            }
        }
        Ok(())
    }

    fn task(
        &mut self,
        t: &v2::TaskEvent,
        at: Nanos,
        out: &mut Vec<Event>,
    ) -> Result<(), InvalidEvent> {
        let st = status("task", &t.status)?;
        let err = error(st, 0, t.actionable_err.as_ref());
        let push = |out: &mut Vec<Event>, kind: EventKind| out.push(Event { at, kind });
        match t.task.as_str() {
            "DevLoop" => {
                if t.iteration < 0 {
                    return Err(InvalidEvent::AbsurdValue {
                        event: "dev_loop",
                        detail: format!("iteration {}", t.iteration),
                    });
                }
                if t.iteration == 0 {
                    self.zero_based = true;
                }
                let iteration = if self.zero_based {
                    i64::from(t.iteration)
                } else {
                    i64::from(t.iteration) - 1
                };
                match st {
                    Status::InProgress => {
                        // A new iteration: what an earlier one left open is stale (the
                        // fold drops and counts its side too; see State::abandon_open).
                        self.sync_open = None;
                        self.deploy_open = false;
                        self.last_deployer_end = None;
                    }
                    Status::Failed | Status::Canceled => {
                        self.close_sync(at, st, err.clone(), out);
                    }
                    _ => self.close_sync(at, Status::Succeeded, None, out),
                }
                push(
                    out,
                    EventKind::DevLoop {
                        iteration,
                        status: st,
                        error: err,
                    },
                );
            }
            "Build" if st == Status::InProgress => {
                self.close_sync(at, Status::Succeeded, None, out);
            }
            "Test" => {
                self.close_sync(at, Status::Succeeded, None, out);
                push(
                    out,
                    EventKind::Test {
                        status: st,
                        error: err,
                    },
                );
            }
            "Render" => {
                self.close_sync(at, Status::Succeeded, None, out);
                push(
                    out,
                    EventKind::Render {
                        status: st,
                        error: err,
                    },
                );
            }
            "Deploy" => match st {
                Status::InProgress => {
                    self.close_sync(at, Status::Succeeded, None, out);
                    if !self.deploy_open {
                        self.deploy_open = true;
                        self.last_deployer_end = None;
                        push(
                            out,
                            EventKind::Deploy {
                                status: st,
                                error: None,
                            },
                        );
                    }
                }
                Status::Succeeded => self.end_deploy(at, out),
                Status::Failed | Status::Canceled if self.deploy_open => {
                    self.deploy_open = false;
                    push(
                        out,
                        EventKind::Deploy {
                            status: st,
                            error: err,
                        },
                    );
                }
                _ => {}
            },
            "StatusCheck" => {
                if st == Status::InProgress {
                    self.end_deploy(at, out);
                }
                push(
                    out,
                    EventKind::StatusCheck {
                        status: st,
                        error: err,
                    },
                );
            }
            "Verify" => push(
                out,
                EventKind::Verify {
                    status: st,
                    error: err,
                },
            ),
            "Exec" => push(
                out,
                EventKind::Exec {
                    status: st,
                    error: err,
                },
            ),
            // PortForward and task names newer than this decoder carry no phase.
            _ => {}
        }
        Ok(())
    }

    /// v1's deploy ended successfully: at the last deployer's end, if one was seen.
    fn end_deploy(&mut self, at: Nanos, out: &mut Vec<Event>) {
        if !self.deploy_open {
            return;
        }
        self.deploy_open = false;
        out.push(Event {
            at: self.last_deployer_end.unwrap_or(at),
            kind: EventKind::Deploy {
                status: Status::Succeeded,
                error: None,
            },
        });
    }

    fn close_sync(
        &mut self,
        at: Nanos,
        status: Status,
        error: Option<ErrorInfo>,
        out: &mut Vec<Event>,
    ) {
        if let Some((image, file_count)) = self.sync_open.take() {
            out.push(Event {
                at,
                kind: EventKind::FileSync {
                    image,
                    file_count,
                    status,
                    error: (status == Status::Failed).then(|| error.unwrap_or_default()),
                },
            });
        }
    }
}

fn subtask(phase: Phase, id: &str, st: Status, ae: Option<&v2::ActionableErr>) -> EventKind {
    EventKind::Subtask {
        phase,
        id: truncated(id, MAX_NAME),
        status: st,
        error: error(st, 0, ae),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::enums::StatusCode;

    fn at(ms: i64, kind: E) -> v2::Event {
        let t = 1_700_000_000_000 + ms;
        v2::Event {
            timestamp: Some(prost_types::Timestamp {
                seconds: t / 1000,
                nanos: ((t % 1000) * 1_000_000) as i32,
            }),
            event_type: Some(kind),
        }
    }

    fn task(name: &str, iteration: i32, status: &str) -> E {
        E::TaskEvent(v2::TaskEvent {
            id: format!("{name}-{iteration}"),
            task: name.into(),
            iteration,
            status: status.into(),
            ..Default::default()
        })
    }

    fn meta(run_id: &str) -> E {
        E::MetaEvent(v2::MetaEvent {
            entry: "Starting Skaffold: &{Version:v2.16.1 ConfigVersion:skaffold/v4beta11}".into(),
            metadata: Some(v2::Metadata {
                run_id: run_id.into(),
                ..Default::default()
            }),
        })
    }

    fn build(artifact: &str, step: &str, status: &str) -> E {
        E::BuildSubtaskEvent(v2::BuildSubtaskEvent {
            id: artifact.into(),
            task_id: "Build-1".into(),
            artifact: artifact.into(),
            step: step.into(),
            status: status.into(),
            ..Default::default()
        })
    }

    fn deployer(status: &str) -> E {
        E::DeploySubtaskEvent(v2::DeploySubtaskEvent {
            id: "0".into(),
            task_id: "Deploy-1".into(),
            status: status.into(),
            actionable_err: (status == "Failed").then(|| v2::ActionableErr {
                err_code: StatusCode::DeployKubectlUserErr as i32,
                message: "kubectl apply failed".into(),
                suggestions: vec![],
            }),
        })
    }

    fn log(message: &str) -> E {
        E::SkaffoldLogEvent(v2::SkaffoldLogEvent {
            task_id: "DevLoop-2".into(),
            subtask_id: "-1".into(),
            level: 1,
            message: message.into(),
        })
    }

    fn decode_all(events: &[v2::Event]) -> Vec<(i64, EventKind)> {
        let mut d = V2Decoder::new();
        let mut out = Vec::new();
        for e in events {
            d.decode(e, &mut out).unwrap();
        }
        out.into_iter()
            .map(|e| ((e.at - 1_700_000_000_000_000_000) / 1_000_000, e.kind))
            .collect()
    }

    #[test]
    fn repeated_meta_events_start_one_run_and_name_it() {
        let evs = decode_all(&[
            at(0, meta("run-a")),
            at(10, task("DevLoop", 1, "InProgress")),
            at(11, meta("run-a")),
            at(20, meta("run-b")),
        ]);
        let kinds: Vec<&str> = evs.iter().map(|(_, k)| k.name()).collect();
        assert_eq!(kinds, ["meta", "run_id", "dev_loop", "meta", "run_id"]);
        assert_eq!(
            evs[1].1,
            EventKind::RunIdentified {
                run_id: "run-a".into()
            }
        );
        assert_eq!(
            evs[0].1,
            EventKind::Meta {
                version: Some("v2.16.1".into())
            }
        );
    }

    #[test]
    fn dev_loop_counter_is_one_based_from_v1_26_and_zero_based_before() {
        let new = decode_all(&[at(0, task("DevLoop", 1, "InProgress"))]);
        assert!(matches!(new[0].1, EventKind::DevLoop { iteration: 0, .. }));
        let old = decode_all(&[
            at(0, task("DevLoop", 0, "InProgress")),
            at(1, task("DevLoop", 0, "Succeeded")),
            at(2, task("DevLoop", 1, "InProgress")),
        ]);
        assert!(matches!(old[2].1, EventKind::DevLoop { iteration: 1, .. }));
    }

    #[test]
    fn cache_step_is_a_lookup_and_build_step_a_build() {
        let evs = decode_all(&[
            at(0, build("web", "Cache", "InProgress")),
            at(1, build("web", "Cache", "Failed")),
            at(2, build("web", "Build", "InProgress")),
            at(9, build("web", "Build", "Succeeded")),
            at(10, build("db", "Cache", "Succeeded")),
        ]);
        assert_eq!(
            evs.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>(),
            [
                EventKind::BuildCache {
                    artifact: "web".into(),
                    status: Status::InProgress
                },
                EventKind::BuildCache {
                    artifact: "web".into(),
                    status: Status::Failed
                },
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::InProgress,
                    error: None
                },
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::Succeeded,
                    error: None
                },
                EventKind::BuildCache {
                    artifact: "db".into(),
                    status: Status::Succeeded
                },
            ]
        );
    }

    #[test]
    fn deploy_ends_at_the_last_deployer_like_v1_not_after_the_status_check() {
        let evs = decode_all(&[
            at(0, task("Deploy", 1, "InProgress")),
            at(5, deployer("InProgress")),
            at(900, deployer("Succeeded")),
            at(905, task("StatusCheck", 1, "InProgress")),
            at(3000, task("StatusCheck", 1, "Succeeded")),
            at(3001, task("Deploy", 1, "Succeeded")),
        ]);
        let deploys: Vec<_> = evs
            .iter()
            .filter(|(_, k)| k.name() == "deploy")
            .map(|(t, k)| (*t, k.clone()))
            .collect();
        assert_eq!(
            deploys,
            [
                (
                    0,
                    EventKind::Deploy {
                        status: Status::InProgress,
                        error: None
                    }
                ),
                (
                    900,
                    EventKind::Deploy {
                        status: Status::Succeeded,
                        error: None
                    }
                ),
            ]
        );
        assert_eq!(evs.iter().filter(|(_, k)| k.name() == "subtask").count(), 2);
    }

    #[test]
    fn failed_deployer_fails_the_deploy_once() {
        let evs = decode_all(&[
            at(0, task("Deploy", 1, "InProgress")),
            at(5, deployer("InProgress")),
            at(400, deployer("Failed")),
            at(401, task("Deploy", 1, "Failed")),
        ]);
        let deploys: Vec<_> = evs
            .iter()
            .filter(|(_, k)| k.name() == "deploy")
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(deploys.len(), 2);
        assert_eq!(
            deploys[1],
            EventKind::Deploy {
                status: Status::Failed,
                error: Some(ErrorInfo {
                    code: Some("DEPLOY_KUBECTL_USER_ERR".into()),
                    message: "kubectl apply failed".into()
                })
            }
        );
    }

    #[test]
    fn status_check_failure_is_not_a_deploy_failure() {
        let evs = decode_all(&[
            at(0, task("Deploy", 1, "InProgress")),
            at(100, deployer("Succeeded")),
            at(101, task("StatusCheck", 1, "InProgress")),
            at(900, task("StatusCheck", 1, "Failed")),
            at(901, task("Deploy", 1, "Failed")),
        ]);
        let outcomes: Vec<_> = evs
            .iter()
            .filter_map(|(_, k)| match k {
                EventKind::Deploy { status, .. } => Some(("deploy", *status)),
                EventKind::StatusCheck { status, .. } => Some(("check", *status)),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("deploy", Status::InProgress),
                ("deploy", Status::Succeeded),
                ("check", Status::InProgress),
                ("check", Status::Failed)
            ]
        );
    }

    #[test]
    fn file_syncs_are_inferred_from_skaffolds_sync_log_line() {
        assert_eq!(
            parse_sync_line("Syncing 3 files for leeroy-web\n"),
            Some(("leeroy-web".into(), 3))
        );
        assert_eq!(parse_sync_line("Syncing nothing"), None);
        assert_eq!(parse_sync_line("Syncing -1 files for a"), None);
        assert_eq!(
            parse_sync_line("Syncing 99999999999999999999999 files for a"),
            Some(("a".into(), u64::MAX))
        );
        let evs = decode_all(&[
            at(0, task("DevLoop", 2, "InProgress")),
            at(10, log("Syncing 3 files for leeroy-web\n")),
            at(20, log("Watching for changes...\n")),
            at(400, task("DevLoop", 2, "Succeeded")),
        ]);
        let syncs: Vec<_> = evs
            .iter()
            .filter_map(|(t, k)| match k {
                EventKind::FileSync {
                    image,
                    file_count,
                    status,
                    ..
                } => Some((*t, image.as_str(), *file_count, *status)),
                _ => None,
            })
            .collect();
        assert_eq!(
            syncs,
            [
                (10, "leeroy-web", 3, Status::InProgress),
                (400, "leeroy-web", 3, Status::Succeeded)
            ]
        );
        let failed = decode_all(&[
            at(10, log("Syncing 1 files for app\n")),
            at(50, task("DevLoop", 2, "Failed")),
        ]);
        assert!(matches!(
            failed[1].1,
            EventKind::FileSync {
                status: Status::Failed,
                error: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn an_absurd_file_count_in_the_sync_line_is_rejected() {
        let mut d = V2Decoder::new();
        let mut out = Vec::new();
        for line in [
            "Syncing 2147483648 files for web\n",
            "Syncing 18446744073709551615 files for web\n",
            "Syncing 99999999999999999999999 files for web\n",
        ] {
            let err = d.decode(&at(10, log(line)), &mut out).unwrap_err();
            assert_eq!(err.reason(), "absurd_value", "{line}: {err}");
        }
        assert!(out.is_empty());
        d.decode(&at(10, log("Syncing 2147483647 files for web\n")), &mut out)
            .unwrap();
        assert!(matches!(
            out[..],
            [Event {
                kind: EventKind::FileSync {
                    file_count: 2_147_483_647,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn status_check_subtasks_are_resources() {
        let evs = decode_all(&[at(
            0,
            E::StatusCheckSubtaskEvent(v2::StatusCheckSubtaskEvent {
                id: "deployment/web".into(),
                task_id: "Deploy-1".into(),
                status: "Failed".into(),
                status_code: StatusCode::StatuscheckContainerTerminated as i32,
                ..Default::default()
            }),
        )]);
        assert_eq!(
            evs[0].1,
            EventKind::ResourceStatus {
                resource: "deployment/web".into(),
                status: Status::Failed,
                error: Some(ErrorInfo {
                    code: Some("STATUSCHECK_CONTAINER_TERMINATED".into()),
                    message: String::new()
                })
            }
        );
    }

    #[test]
    fn rejects_what_skaffold_never_sends() {
        let mut d = V2Decoder::new();
        let mut out = Vec::new();
        let empty = v2::Event::default();
        assert_eq!(
            d.decode(&empty, &mut out).unwrap_err().reason(),
            "empty_event"
        );
        let bad = at(0, task("Deploy", 1, "Exploded"));
        assert_eq!(
            d.decode(&bad, &mut out).unwrap_err().reason(),
            "unknown_status"
        );
        let mut no_time = at(0, task("Deploy", 1, "InProgress"));
        no_time.timestamp = None;
        assert_eq!(
            d.decode(&no_time, &mut out).unwrap_err().reason(),
            "missing_field"
        );
        assert!(out.is_empty());
    }
}
