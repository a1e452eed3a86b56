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
//! - **Iterations.** v2 counts dev loops in a package-level counter
//!   (`event/v2/task.go`, `TaskInProgress` increments `handler.iteration`): `DevLoop-1`
//!   is v1's iteration 0 (v1.26+; v1.22–v1.25 started at 0), and after a config reload
//!   (a new runner, a new run id) the counter goes on while v1 restarts at 0. So
//!   iterations count from 1 (or 0) in a process's first run, and from the run's
//!   first `DevLoop` task after a reload: the numbers (and the `initial` loop of each
//!   run) are v1's.
//! - **Builds.** Per-artifact `BuildSubtaskEvent`s: step `Build` is v1's build, step
//!   `Cache` is the cache lookup (`Succeeded` = hit, `Failed` = miss). The `Build` task
//!   itself adds nothing v1 lacks and is not folded.
//! - **Tests.** v1 sends one TestEvent per tester run; v2 sends a `Test` task whenever
//!   the runner's test phase runs, even with no tester (`runner/test.go`), and one
//!   `TestSubtaskEvent` per tester run (`test/test_factory.go`). The tester events are
//!   v1's tests; the `Test` task is not folded.
//! - **Deploy.** The v2 `Deploy` task also spans the status check, so v1's deploy
//!   phase is rebuilt: it starts with the `Deploy` task, fails with a failed deployer
//!   subtask (or a failed `Deploy` task before any status check), and succeeds at the
//!   last deployer's end once the status check starts after every deployer ended
//!   (`runner/deploy.go`: v1 reports deploy `Complete` before it) or the `Deploy` task
//!   ends. A status check that starts while a deployer is still running runs inside
//!   the deployer (`--iterative-status-check` or deploy hooks, `deploy/deploy_mux.go`):
//!   v1 reports the deploy's end after it, and a failed check fails the deployer and
//!   the deploy, so the deploy stays open through it here too.
//! - **Status check.** The `StatusCheck` task is the status check;
//!   `StatusCheckSubtaskEvent`s are the per-resource events.
//! - **File syncs.** Skaffold never emits v2 `FileSyncEvent`s (no caller at any
//!   release); a sync only shows as the log line `Syncing N files for IMAGE`
//!   (wrapped in ANSI colour codes on a colour terminal or with `--force-colors`:
//!   matched with them stripped, see [`is_sync_line`]). The
//!   decoder starts a sync there and ends it at the next task event of the iteration
//!   (success) or when the dev loop fails (failure), so sync durations are an upper
//!   bound. Should a `FileSyncEvent` ever arrive, the log lines are no longer used.
//! - **Logs.** `SkaffoldLogEvent` / `ApplicationLogEvent` carry no metric; sources
//!   skip them before decoding where they can (see [`crate::source::wire`]).

use std::collections::HashSet;

use bytes::Bytes;

use crate::core::{ErrorInfo, Event, EventKind, InvalidEvent, Nanos, Phase, Status, event};
use crate::pb::enums::StatusCode;
use crate::pb::lean::v2::{self, event::EventType as E};
use crate::source::decode::{
    MAX_NAME, build_status, file_count, name, name_of, port_forward, status, status_code_name,
    text, timestamp_nanos, truncated,
};

/// The log line that announces a file sync (`output.Default.Fprintf(out, "Syncing %d
/// files for %s\n", ...)` in Skaffold's dev loop).
pub const SYNC_LOG_PREFIX: &str = "Syncing ";

/// The ESC byte that starts every ANSI escape sequence Skaffold's output can carry.
const ESC: u8 = 0x1b;

/// Whether a `SkaffoldLogEvent` message is the sync line, looking through ANSI escape
/// sequences: on a colour terminal, or with `--force-colors`, Skaffold's colour writer
/// (`output/color.go`, heroku/color) wraps the text in SGR codes (`ESC[34m` ...
/// `ESC[0m`), and `output/output.go` copies those same bytes into the v2 event. Any
/// escape sequence (CSI, OSC, other ESC sequences) and C0 control other than
/// whitespace is skipped, as a terminal would. Allocates nothing.
pub fn is_sync_line(message: &[u8]) -> bool {
    if !message.contains(&ESC) {
        return message.starts_with(SYNC_LOG_PREFIX.as_bytes());
    }
    let mut want = SYNC_LOG_PREFIX.as_bytes();
    for chunk in anstream::adapter::strip_bytes(message) {
        let n = chunk.len().min(want.len());
        if chunk[..n] != want[..n] {
            return false;
        }
        want = &want[n..];
        if want.is_empty() {
            return true;
        }
    }
    false
}

/// The text of a Skaffold log message as a terminal would show it (ANSI escape
/// sequences removed; see [`is_sync_line`]). Borrows when there is nothing to strip.
pub fn plain_text(message: &str) -> std::borrow::Cow<'_, str> {
    if message.as_bytes().contains(&ESC) {
        std::borrow::Cow::Owned(anstream::adapter::strip_str(message).to_string())
    } else {
        std::borrow::Cow::Borrowed(message)
    }
}

/// Per-run state needed to map v2 onto the v1-shaped domain events.
#[derive(Debug, Default, Clone)]
pub struct V2Decoder {
    run_started: bool,
    /// Runs of this Skaffold process before the current one (config reloads).
    earlier_runs: u32,
    run_id: Option<String>,
    /// v2 iteration of the run's v1 iteration 0.
    iteration_base: Option<i64>,
    deploy_open: bool,
    /// Deployer subtasks started and not ended.
    deployers_open: HashSet<String>,
    last_deployer_end: Option<Nanos>,
    sync_open: Option<(String, u64)>,
    file_sync_events_seen: bool,
    /// The open `Build` task's start, and whether a per-artifact build event came
    /// since (see [`UnattributedBuild`]).
    build_task: Option<(Nanos, bool)>,
    /// A `Build` task that ended without per-artifact events, not yet taken.
    unattributed: Option<UnattributedBuild>,
}

/// A `Build` task that ended without any per-artifact build event inside it: nothing
/// is folded for it (build metrics are per artifact, and the task names none).
/// Skaffold v1.22.0 reported builds over API v2 with this task only (per-artifact
/// `BuildSubtaskEvent`s came with v1.23.0, `build/scheduler.go`), so a v1.22 stream's
/// build time is here and nowhere else. Later versions send such a task when nothing
/// was built (`runner/build.go` returns early, e.g. `--digest-source=none`).
#[derive(Debug, Clone, PartialEq)]
pub struct UnattributedBuild {
    /// Seconds from the task's start to its end (Skaffold's timestamps).
    pub seconds: f64,
    /// How the task ended.
    pub status: Status,
    /// The task's v2 iteration.
    pub iteration: i32,
}

impl std::fmt::Display for UnattributedBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Build task of iteration {} ({}, {:.3} s) without per-artifact build events (nothing was built, or Skaffold v1.22, which sent none over API v2); build metrics are per artifact",
            self.iteration,
            match self.status {
                Status::Failed => "failed",
                Status::Canceled => "canceled",
                _ => "succeeded",
            },
            self.seconds
        )
    }
}

fn error(status: Status, code: i32, actionable: Option<&v2::ActionableErr>) -> Option<ErrorInfo> {
    if status != Status::Failed {
        return None;
    }
    let (code, message) = match actionable {
        Some(a) => (
            status_code_name(a.err_code).or_else(|| status_code_name(code)),
            &a.message[..],
        ),
        None => (status_code_name(code), &b""[..]),
    };
    Some(ErrorInfo {
        code,
        message: truncated(&String::from_utf8_lossy(message), 4096),
    })
}

/// Parses `Syncing 3 files for leeroy-web:v1` into (image, file count), coloured or
/// not (see [`is_sync_line`]). The image is Skaffold's reference as printed (the
/// built tag, `name:tag[@sha256:...]`); the sinks derive the `image` label from it. A
/// count too large for a u64 comes out as `u64::MAX` (the decoder rejects anything
/// above `i32::MAX`, the range of the file count Skaffold's events carry).
pub fn parse_sync_line(message: &str) -> Option<(String, u64)> {
    let message = plain_text(message);
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

    /// Takes the note of a `Build` task that ended without per-artifact events, if
    /// the last event decoded was one.
    pub fn take_unattributed_build(&mut self) -> Option<UnattributedBuild> {
        self.unattributed.take()
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
                    .map(|md| text(&md.run_id).map(|r| truncated(r, MAX_NAME)))
                    .transpose()?
                    .filter(|r| !r.is_empty());
                let new_run = !self.run_started
                    || run_id
                        .as_ref()
                        .is_some_and(|r| self.run_id.as_ref() != Some(r));
                if new_run {
                    let earlier_runs = self.earlier_runs + u32::from(self.run_started);
                    self.reset();
                    self.run_started = true;
                    self.earlier_runs = earlier_runs;
                    self.run_id = run_id.clone();
                    push(
                        out,
                        EventKind::Meta {
                            version: event::parse_version(text(&m.entry)?),
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
                if let Some((image, files)) = parse_sync_line(text(&l.message)?) {
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
                            image: image.into(),
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
                if let Some((_, seen)) = &mut self.build_task {
                    *seen = true;
                }
                let st = status("build", &b.status)?;
                let artifact = name("build", "artifact", &b.artifact)?;
                match text(&b.step)? {
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
                        let err = error(st, 0, b.actionable_err.as_ref());
                        let st = build_status(st, err.as_ref().and_then(|e| e.code.as_deref()));
                        push(
                            out,
                            EventKind::Build {
                                artifact,
                                status: st,
                                error: err.filter(|_| st == Status::Failed),
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
                // One form of the id for the event and the open set, so a long id
                // that was opened is also closed.
                let id = name_of(&d.id)?;
                if st == Status::InProgress {
                    // Owned: a name is a slice of its message's buffer, which the
                    // set would otherwise keep alive.
                    self.deployers_open.insert(id.to_string());
                } else if st != Status::Information {
                    self.deployers_open.remove(&*id);
                }
                push(
                    out,
                    EventKind::Subtask {
                        phase: Phase::DeploySubtask,
                        id,
                        status: st,
                        error: err.clone(),
                    },
                );
                match st {
                    Status::Succeeded => self.last_deployer_end = Some(at),
                    Status::Failed | Status::Canceled => self.fail_deploy(at, st, err, out),
                    _ => {}
                }
            }
            // One per tester run, as v1's TestEvent.
            E::TestEvent(t) => {
                let st = status("test", &t.status)?;
                push(
                    out,
                    EventKind::Test {
                        status: st,
                        error: error(st, 0, t.actionable_err.as_ref()),
                    },
                );
            }
            E::RenderEvent(r) => {
                let st = status("render", &r.status)?;
                push(
                    out,
                    subtask(Phase::RenderSubtask, &r.id, st, r.actionable_err.as_ref())?,
                );
            }
            E::VerifyEvent(v) => {
                let st = status("verify", &v.status)?;
                push(
                    out,
                    subtask(Phase::VerifySubtask, &v.id, st, v.actionable_err.as_ref())?,
                );
            }
            E::ExecEvent(x) => {
                let st = status("exec", &x.status)?;
                push(
                    out,
                    subtask(Phase::ExecSubtask, &x.id, st, x.actionable_err.as_ref())?,
                );
            }
            E::StatusCheckSubtaskEvent(s) => {
                let st = status("resource_status_check", &s.status)?;
                let resource = if text(&s.resource)?.trim().is_empty() {
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
            E::PortEvent(p) => push(
                out,
                port_forward(
                    p.local_port,
                    &p.resource_type,
                    &p.resource_name,
                    &p.namespace,
                )?,
            ),
            E::FileSyncEvent(f) => {
                let st = status("file_sync", &f.status)?;
                let file_count = file_count(f.file_count)?;
                let image = name("file_sync", "image", &f.image)?;
                self.file_sync_events_seen = true;
                self.sync_open = None;
                push(
                    out,
                    EventKind::FileSync {
                        image,
                        file_count,
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
        match text(&t.task)? {
            "DevLoop" => {
                if t.iteration < 0 {
                    return Err(InvalidEvent::AbsurdValue {
                        event: "dev_loop",
                        detail: format!("iteration {}", t.iteration),
                    });
                }
                let first_run = self.earlier_runs == 0;
                let base = *self.iteration_base.get_or_insert(match t.iteration {
                    // The process's first run: the counter started with it.
                    0 if first_run => 0,
                    _ if first_run => 1,
                    // After a reload it goes on from where the last run left it.
                    n => i64::from(n),
                });
                let iteration = i64::from(t.iteration) - base;
                if iteration < 0 {
                    return Err(InvalidEvent::AbsurdValue {
                        event: "dev_loop",
                        detail: format!(
                            "iteration {} before the run's first ({base})",
                            t.iteration
                        ),
                    });
                }
                match st {
                    Status::InProgress => {
                        // A new iteration: what an earlier one left open is stale (the
                        // fold drops and counts its side too; see State::abandon_open).
                        self.sync_open = None;
                        self.deploy_open = false;
                        self.deployers_open.clear();
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
                self.build_task = Some((at, false));
            }
            "Build" => {
                if let Some((start, false)) = self.build_task.take()
                    && matches!(st, Status::Succeeded | Status::Failed | Status::Canceled)
                {
                    self.unattributed = Some(UnattributedBuild {
                        seconds: (at - start).max(0) as f64 / 1e9,
                        status: st,
                        iteration: t.iteration,
                    });
                }
            }
            // The testers' own events are the tests (see the module docs).
            "Test" => self.close_sync(at, Status::Succeeded, None, out),
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
                        self.deployers_open.clear();
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
                Status::Failed | Status::Canceled => self.fail_deploy(at, st, err, out),
                _ => {}
            },
            "StatusCheck" => {
                // Not while a deployer runs: then the check is part of the deploy.
                if st == Status::InProgress && self.deployers_open.is_empty() {
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

    /// v1's deploy failed or was cancelled (`status`), as the first of a deployer and
    /// the `Deploy` task says it.
    fn fail_deploy(
        &mut self,
        at: Nanos,
        status: Status,
        error: Option<ErrorInfo>,
        out: &mut Vec<Event>,
    ) {
        if !self.deploy_open {
            return;
        }
        self.deploy_open = false;
        out.push(Event {
            at,
            kind: EventKind::Deploy { status, error },
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
            let error = (status == Status::Failed).then(|| sync_error(error.unwrap_or_default()));
            out.push(Event {
                at,
                kind: EventKind::FileSync {
                    image: image.into(),
                    file_count,
                    status,
                    error,
                },
            });
        }
    }
}

/// The error of a failed sync, from the failed DevLoop task that reports it. Both
/// codes come from one error (`runner/dev.go`, `getSyncHandler`): v1's FileSyncEvent
/// has `ActionableErr(Sync, err)`, the v2 task `ActionableErrV2(DevLoop, err)`. Both
/// are the error's own code when it has one; otherwise each phase's fallback
/// (`errors/errors.go`, `unknownErrForPhase`: `SYNC_UNKNOWN`, and `UNKNOWN_ERROR` for
/// DevLoop; neither phase has a problem catalog). So v1's code is v2's, with the
/// fallback translated.
fn sync_error(mut e: ErrorInfo) -> ErrorInfo {
    if e.code.as_deref() == Some(StatusCode::UnknownError.as_str_name()) {
        e.code = Some(StatusCode::SyncUnknown.as_str_name().to_owned());
    }
    e
}

fn subtask(
    phase: Phase,
    id: &Bytes,
    st: Status,
    ae: Option<&v2::ActionableErr>,
) -> Result<EventKind, InvalidEvent> {
    Ok(EventKind::Subtask {
        phase,
        id: name_of(id)?,
        status: st,
        error: error(st, 0, ae),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::enums::StatusCode;
    use crate::pb::v2::{self, event::EventType as E};

    impl V2Decoder {
        /// Decodes a full event as the gRPC source does (through its lean view).
        fn decode_full(
            &mut self,
            ev: &v2::Event,
            out: &mut Vec<Event>,
        ) -> Result<(), InvalidEvent> {
            self.decode(&crate::pb::lean::v2::Event::of(ev), out)
        }
    }

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
            d.decode_full(e, &mut out).unwrap();
        }
        out.into_iter()
            .map(|e| ((e.at - 1_700_000_000_000_000_000) / 1_000_000, e.kind))
            .collect()
    }

    /// Which events leave a note of a `Build` task that named no artifact.
    fn unattributed(events: &[v2::Event]) -> Vec<(usize, UnattributedBuild)> {
        let mut d = V2Decoder::new();
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (i, e) in events.iter().enumerate() {
            d.decode_full(e, &mut out).unwrap();
            if let Some(n) = d.take_unattributed_build() {
                notes.push((i, n));
            }
        }
        notes
    }

    #[test]
    fn a_build_task_without_artifact_events_is_noted_not_folded() {
        // Skaffold v1.22.0: the Build task is all API v2 says about builds.
        let v1_22 = [
            at(0, task("DevLoop", 0, "InProgress")),
            at(10, task("Build", 0, "InProgress")),
            at(8144, task("Build", 0, "Succeeded")),
            at(9000, task("Deploy", 0, "InProgress")),
        ];
        let notes = unattributed(&v1_22);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let (i, n) = &notes[0];
        assert_eq!(*i, 2, "noted at the task's end");
        assert!((n.seconds - 8.134).abs() < 1e-9, "{n:?}");
        assert_eq!((n.status, n.iteration), (Status::Succeeded, 0));
        assert!(n.to_string().contains("8.134 s"), "{n}");
        let kinds: Vec<_> = decode_all(&v1_22).into_iter().map(|(_, k)| k).collect();
        assert!(
            !kinds.iter().any(|k| matches!(k, EventKind::Build { .. })),
            "{kinds:?}"
        );
        // v1.23+: per-artifact events inside the task; nothing to note.
        let later = [
            at(0, task("DevLoop", 1, "InProgress")),
            at(10, task("Build", 1, "InProgress")),
            at(11, build("web", "Cache", "Failed")),
            at(12, build("web", "Build", "InProgress")),
            at(900, build("web", "Build", "Succeeded")),
            at(901, task("Build", 1, "Succeeded")),
        ];
        assert!(unattributed(&later).is_empty());
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

    fn iterations(evs: &[(i64, EventKind)]) -> Vec<i64> {
        evs.iter()
            .filter_map(|(_, k)| match k {
                EventKind::DevLoop { iteration, .. } => Some(*iteration),
                _ => None,
            })
            .collect()
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
    fn after_a_config_reload_iterations_restart_at_zero_like_v1() {
        // The v2 counter is package-level (event/v2/task.go) and goes on across the
        // new runner; the new run id comes first (runner/new.go, LogMetaEvent).
        let evs = decode_all(&[
            at(0, meta("run-a")),
            at(1, task("DevLoop", 1, "InProgress")),
            at(2, meta("run-a")),
            at(3, task("DevLoop", 1, "Succeeded")),
            at(4, task("DevLoop", 2, "InProgress")),
            at(5, task("DevLoop", 2, "Succeeded")),
            at(6, meta("run-b")),
            at(7, task("DevLoop", 3, "InProgress")),
            at(8, meta("run-b")),
            at(9, task("DevLoop", 3, "Succeeded")),
            at(10, task("DevLoop", 4, "InProgress")),
        ]);
        assert_eq!(iterations(&evs), [0, 0, 1, 1, 0, 0, 1]);
        let metas = evs.iter().filter(|(_, k)| k.name() == "meta").count();
        assert_eq!(metas, 2, "one run per run id");
    }

    #[test]
    fn every_sync_attempt_is_a_sync_and_every_failed_one_a_failed_loop_report() {
        // runner/dev.go, getSyncHandler in a backoff.Retry: the log line, then (on
        // failure) DevLoop TaskFailed, per attempt; since v2.17 the loop then succeeds.
        let mut evs = vec![at(0, task("DevLoop", 3, "InProgress"))];
        for n in 0..4 {
            evs.push(at(
                10 + n * 100,
                log("Syncing 2 files for web:v1@sha256:00\n"),
            ));
            evs.push(at(60 + n * 100, task("DevLoop", 3, "Failed")));
        }
        evs.push(at(500, task("DevLoop", 3, "Succeeded")));
        let out = decode_all(&evs);
        let syncs: Vec<_> = out
            .iter()
            .filter_map(|(t, k)| match k {
                EventKind::FileSync { status, .. } => Some((*t, *status)),
                _ => None,
            })
            .collect();
        assert_eq!(syncs.len(), 8);
        for (n, pair) in syncs.chunks(2).enumerate() {
            let n = n as i64;
            assert_eq!(
                pair,
                [
                    (10 + n * 100, Status::InProgress),
                    (60 + n * 100, Status::Failed)
                ]
            );
        }
        assert_eq!(iterations(&out), [2, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn a_failed_sync_has_the_code_v1_gives_it() {
        let failed = |code: StatusCode| {
            E::TaskEvent(v2::TaskEvent {
                id: "DevLoop-2".into(),
                task: "DevLoop".into(),
                iteration: 2,
                status: "Failed".into(),
                actionable_err: Some(v2::ActionableErr {
                    err_code: code as i32,
                    message: "copying files: exit status 1".into(),
                    suggestions: vec![],
                }),
                ..Default::default()
            })
        };
        for (sent, v1) in [
            (StatusCode::UnknownError, "SYNC_UNKNOWN"),
            (StatusCode::SyncInitError, "SYNC_INIT_ERROR"),
        ] {
            let evs = decode_all(&[
                at(0, task("DevLoop", 2, "InProgress")),
                at(10, log("Syncing 1 files for web\n")),
                at(50, failed(sent)),
            ]);
            assert!(
                matches!(&evs[2].1, EventKind::FileSync { error: Some(e), .. } if e.code.as_deref() == Some(v1)),
                "{sent:?}: {evs:?}"
            );
        }
    }

    #[test]
    fn only_testers_that_ran_are_tests() {
        let tester = |status: &str| {
            E::TestEvent(v2::TestSubtaskEvent {
                id: "0".into(),
                task_id: "Test-1".into(),
                status: status.into(),
                actionable_err: (status == "Failed").then(|| v2::ActionableErr {
                    err_code: StatusCode::TestUserConfigErr as i32,
                    message: "cst failed".into(),
                    suggestions: vec![],
                }),
            })
        };
        // runner/test.go sends the Test task even when no tester is configured.
        let none = decode_all(&[
            at(0, task("Test", 1, "InProgress")),
            at(1, task("Test", 1, "Succeeded")),
        ]);
        assert!(none.is_empty(), "{none:?}");
        let ran = decode_all(&[
            at(0, task("Test", 1, "InProgress")),
            at(1, tester("InProgress")),
            at(5, tester("Failed")),
            at(6, task("Test", 1, "Failed")),
        ]);
        assert_eq!(
            ran,
            [
                (
                    1,
                    EventKind::Test {
                        status: Status::InProgress,
                        error: None
                    }
                ),
                (
                    5,
                    EventKind::Test {
                        status: Status::Failed,
                        error: Some(ErrorInfo {
                            code: Some("TEST_USER_CONFIG_ERR".into()),
                            message: "cst failed".into()
                        })
                    }
                ),
            ]
        );
    }

    fn deploys_and_checks(evs: &[(i64, EventKind)]) -> Vec<(i64, &'static str, Status)> {
        evs.iter()
            .filter_map(|(t, k)| match k {
                EventKind::Deploy { status, .. } => Some((*t, "deploy", *status)),
                EventKind::StatusCheck { status, .. } => Some((*t, "check", *status)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_status_check_inside_the_deployer_keeps_the_deploy_open_like_v1() {
        // deploy/deploy_mux.go: with --iterative-status-check or deploy hooks the
        // check runs before the deployer's end; a failed one fails the deployer.
        for (end, st) in [("Failed", Status::Failed), ("Succeeded", Status::Succeeded)] {
            let evs = decode_all(&[
                at(0, task("Deploy", 1, "InProgress")),
                at(1, deployer("InProgress")),
                at(200, task("StatusCheck", 1, "InProgress")),
                at(900, task("StatusCheck", 1, end)),
                at(901, deployer(end)),
                at(902, task("Deploy", 1, end)),
            ]);
            assert_eq!(
                deploys_and_checks(&evs),
                [
                    (0, "deploy", Status::InProgress),
                    (200, "check", Status::InProgress),
                    (900, "check", st),
                    (901, "deploy", st),
                ],
                "{end}"
            );
        }
    }

    #[test]
    fn cancelled_builds_are_cancelled_however_skaffold_says_it() {
        let canceled = |step_status: &str, code: StatusCode| {
            E::BuildSubtaskEvent(v2::BuildSubtaskEvent {
                id: "web".into(),
                task_id: "Build-1".into(),
                artifact: "web".into(),
                step: "Build".into(),
                status: step_status.into(),
                actionable_err: Some(v2::ActionableErr {
                    err_code: code as i32,
                    message: "context canceled".into(),
                    suggestions: vec![],
                }),
                ..Default::default()
            })
        };
        let evs = decode_all(&[
            // build/scheduler.go: Ctrl-C mid-build, and while waiting for a dependency.
            at(0, canceled("Canceled", StatusCode::BuildCancelled)),
            // A Docker daemon that cancelled the build (build/docker/errors.go).
            at(1, canceled("Failed", StatusCode::BuildDockerCancelled)),
        ]);
        for (_, k) in evs {
            assert_eq!(
                k,
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::Canceled,
                    error: None
                }
            );
        }
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
    fn a_deployer_with_an_overlong_id_is_closed_like_any_other() {
        let long = |status: &str| match deployer(status) {
            E::DeploySubtaskEvent(d) => E::DeploySubtaskEvent(v2::DeploySubtaskEvent {
                id: "d".repeat(MAX_NAME + 10),
                ..d
            }),
            _ => unreachable!(),
        };
        let evs = decode_all(&[
            at(0, task("Deploy", 1, "InProgress")),
            at(5, long("InProgress")),
            at(900, long("Succeeded")),
            at(905, task("StatusCheck", 1, "InProgress")),
        ]);
        // The status check starts after the deployer ended: the deploy ended with it.
        assert!(
            evs.contains(&(
                900,
                EventKind::Deploy {
                    status: Status::Succeeded,
                    error: None
                }
            )),
            "{evs:?}"
        );
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
                } => Some((*t, &**image, *file_count, *status)),
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

    /// The bytes heroku/color (Skaffold's colour library) writes for `Fprintf` in
    /// colour `sgr`: the start code, the text (newline included), the reset code.
    fn coloured(sgr: &str, text: &str) -> String {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    }

    #[test]
    fn the_sync_line_is_matched_through_any_escape_sequence() {
        // Every colour `--color` can select (output/color.go: 91-95, 31-37; Blue = 34
        // is the default), plus bold, 256-colour and true-colour SGRs.
        for sgr in [
            "34",
            "91",
            "92",
            "93",
            "94",
            "95",
            "31",
            "32",
            "33",
            "35",
            "36",
            "37",
            "1;34",
            "38;5;33",
            "38;2;0;0;255",
            "",
        ] {
            let line = coloured(sgr, "Syncing 2 files for web:v1\n");
            assert!(is_sync_line(line.as_bytes()), "{line:?}");
            assert_eq!(
                parse_sync_line(&line),
                Some(("web:v1".into(), 2)),
                "{line:?}"
            );
        }
        // Other CSI sequences (cursor, erase), an OSC 8 hyperlink around the image
        // (both terminators), a charset designation, escapes inside the word.
        for line in [
            "\x1b[2K\x1b[1GSyncing 2 files for web:v1\n",
            "Syncing 2 files for \x1b]8;;https://x.example/web\x1b\\web:v1\x1b]8;;\x1b\\\n",
            "Syncing 2 files for \x1b]8;;https://x.example/web\x07web:v1\x1b]8;;\x07\n",
            "\x1b(BSyncing 2 files for web:v1\n",
            "Sync\x1b[0ming 2 files for \x1b[1mweb:v1\x1b[22m\n",
        ] {
            assert!(is_sync_line(line.as_bytes()), "{line:?}");
            assert_eq!(
                parse_sync_line(line),
                Some(("web:v1".into(), 2)),
                "{line:?}"
            );
        }
        // Coloured lines that are not the sync line stay unmatched.
        for line in [
            coloured("34", "Watching for changes...\n"),
            coloured("34", "Syncin"),
            "\x1b[34m".to_owned(),
            coloured("34", " Syncing 2 files for web\n"),
            coloured("33", "Press Ctrl+C to exit\n"),
        ] {
            assert!(!is_sync_line(line.as_bytes()), "{line:?}");
            assert_eq!(parse_sync_line(&line), None, "{line:?}");
        }
        // Plain lines take the plain path (nothing to strip, nothing allocated).
        assert!(matches!(
            plain_text("Syncing 1 files for a\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(!is_sync_line(b"syncing 1 files for a"));
    }

    #[test]
    fn a_coloured_sync_line_opens_and_closes_a_sync_like_a_plain_one() {
        let plain = decode_all(&[
            at(0, task("DevLoop", 2, "InProgress")),
            at(10, log("Syncing 3 files for gcr.io/p/web:v2@sha256:0123\n")),
            at(400, task("DevLoop", 2, "Succeeded")),
        ]);
        let colour = decode_all(&[
            at(0, task("DevLoop", 2, "InProgress")),
            at(
                10,
                log(&coloured(
                    "34",
                    "Syncing 3 files for gcr.io/p/web:v2@sha256:0123\n",
                )),
            ),
            at(400, task("DevLoop", 2, "Succeeded")),
        ]);
        assert_eq!(plain, colour);
        assert_eq!(
            colour
                .iter()
                .filter(|(_, k)| matches!(
                    k,
                    EventKind::FileSync { image, file_count: 3, .. }
                        if image == "gcr.io/p/web:v2@sha256:0123"
                ))
                .count(),
            2,
            "{colour:?}"
        );
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
            let err = d.decode_full(&at(10, log(line)), &mut out).unwrap_err();
            assert_eq!(err.reason(), "absurd_value", "{line}: {err}");
        }
        assert!(out.is_empty());
        d.decode_full(&at(10, log("Syncing 2147483647 files for web\n")), &mut out)
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
            d.decode_full(&empty, &mut out).unwrap_err().reason(),
            "empty_event"
        );
        let bad = at(0, task("Deploy", 1, "Exploded"));
        assert_eq!(
            d.decode_full(&bad, &mut out).unwrap_err().reason(),
            "unknown_status"
        );
        let mut no_time = at(0, task("Deploy", 1, "InProgress"));
        no_time.timestamp = None;
        assert_eq!(
            d.decode_full(&no_time, &mut out).unwrap_err().reason(),
            "missing_field"
        );
        assert!(out.is_empty());
    }
}
