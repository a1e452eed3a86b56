//! The fold: `State::apply(&Event) -> Vec<Transition>`. Pure: no I/O, no clock.
//!
//! Per-run state (open phases, the current dev loop, port forwards) resets on every
//! MetaEvent; lifetime state (failure streaks) survives runs, because a deploy that
//! keeps failing across Skaffold restarts is still failing.
//!
//! Dev-loop iterations come from `DevLoopEvent`. Skaffold older than v1.9 sends none;
//! until a run shows one, iterations are *derived*: an iteration opens at the first
//! build, test, deploy or file-sync start while none is open, and closes at the end of
//! the status check, at the first failure, at the end of a sync when nothing else ran,
//! or, when a deploy already ended and no status check followed, at the next start.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::event::{ErrorInfo, Event, EventKind, Nanos, Status};
use super::transition::{Finished, LoopKind, Outcome, Phase, Transition};

/// Most phases tracked open at once per kind (artifacts, images, resources); more are
/// refused and counted as `too_many_open`, so a flood of names cannot grow memory.
pub const MAX_OPEN: usize = 10_000;

/// The fold's state. Owned by one task; never shared.
#[derive(Debug, Default)]
pub struct State {
    run: Run,
    /// Failed deploys since the last success (survives runs).
    deploy_streak: u64,
    /// Failed builds per artifact since its last success (survives runs).
    build_streaks: HashMap<String, u64>,
}

/// Per-run state.
#[derive(Debug, Default)]
struct Run {
    builds: HashMap<String, Nanos>,
    seen_artifacts: HashSet<String>,
    seen_images: HashSet<String>,
    test: Option<Nanos>,
    deploy: Option<Nanos>,
    status_check: Option<Nanos>,
    /// Resources of the current status check: first In Progress, and whether ended.
    resources: HashMap<String, (Option<Nanos>, bool)>,
    syncs: HashMap<String, Nanos>,
    ports: HashSet<i32>,
    dev_loop: Option<Loop>,
    /// A DevLoopEvent was seen in this run: no derived iterations from now on.
    has_dev_loop_events: bool,
    derived_iterations: i64,
    last_at: Option<Nanos>,
}

impl Run {
    fn slot(&mut self, phase: Phase) -> &mut Option<Nanos> {
        match phase {
            Phase::Test => &mut self.test,
            Phase::Deploy => &mut self.deploy,
            _ => &mut self.status_check,
        }
    }
}

#[derive(Debug, Clone)]
struct Loop {
    iteration: i64,
    started_at: Option<Nanos>,
    built: bool,
    synced: bool,
    deployed: bool,
    deploy_ended: bool,
    derived: bool,
}

impl Loop {
    fn kind(&self) -> LoopKind {
        if self.iteration == 0 {
            LoopKind::Initial
        } else if self.built {
            LoopKind::Rebuild
        } else if self.synced && !self.deployed {
            LoopKind::Sync
        } else {
            LoopKind::Redeploy
        }
    }
}

fn outcome(status: Status) -> Option<Outcome> {
    match status {
        Status::Succeeded => Some(Outcome::Success),
        Status::Failed => Some(Outcome::Failure),
        Status::Canceled => Some(Outcome::Canceled),
        _ => None,
    }
}

impl State {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Failed deploys since the last successful one.
    pub fn deploy_streak(&self) -> u64 {
        self.deploy_streak
    }

    /// Folds one event into the state and returns what it concluded.
    pub fn apply(&mut self, ev: &Event) -> Vec<Transition> {
        let mut out = Vec::new();
        let at = ev.at;
        match &ev.kind {
            EventKind::Meta { version } => {
                self.run = Run::default();
                out.push(Transition::RunStarted {
                    version: version.clone(),
                    at,
                });
            }
            EventKind::Build {
                artifact,
                status,
                error,
            } => self.build(artifact, *status, error, at, &mut out),
            EventKind::Test { status, error } => {
                self.single(Phase::Test, *status, error, at, &mut out);
            }
            EventKind::Deploy { status, error } => {
                self.single(Phase::Deploy, *status, error, at, &mut out);
            }
            EventKind::StatusCheck { status, error } => {
                if *status == Status::InProgress {
                    self.run.resources.clear();
                }
                self.single(Phase::StatusCheck, *status, error, at, &mut out);
            }
            EventKind::ResourceStatus {
                resource,
                status,
                error,
            } => self.resource(resource, *status, error, at, &mut out),
            EventKind::FileSync {
                image,
                file_count,
                status,
                error,
            } => self.sync(image, *file_count, *status, error, at, &mut out),
            EventKind::PortForward {
                local_port,
                resource_type,
                resource_name,
                ..
            } => {
                self.run.ports.insert(*local_port);
                out.push(Transition::PortForwards {
                    count: self.run.ports.len() as u64,
                    local_port: *local_port,
                    resource: format!("{resource_type}/{resource_name}"),
                    at,
                });
            }
            EventKind::DevLoop {
                iteration,
                status,
                error,
            } => self.dev_loop(*iteration, *status, error, at, &mut out),
            EventKind::Termination { .. } | EventKind::Debug => {}
        }
        self.run.last_at = Some(at);
        out
    }

    // === phases ===

    fn build(
        &mut self,
        artifact: &str,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        if self.run.seen_artifacts.len() < MAX_OPEN
            && self.run.seen_artifacts.insert(artifact.to_owned())
        {
            out.push(Transition::SubjectSeen {
                phase: Phase::Build,
                subject: artifact.to_owned(),
            });
        }
        match status {
            Status::InProgress => {
                self.begin(at, out);
                if let Some(l) = self.run.dev_loop.as_mut() {
                    l.built = true;
                }
                // Pre-v1.9 Skaffold sends "In Progress" twice (cache lookup, then the
                // real build): the first one starts the clock.
                if self.run.builds.contains_key(artifact) {
                    return;
                }
                if self.run.builds.len() >= MAX_OPEN {
                    out.push(Transition::Anomaly("too_many_open"));
                    return;
                }
                self.run.builds.insert(artifact.to_owned(), at);
                out.push(Transition::Started {
                    phase: Phase::Build,
                    subject: Some(artifact.to_owned()),
                    at,
                    iteration: self.iteration(),
                });
            }
            _ => {
                let Some(result) = outcome(status) else {
                    return;
                };
                let started = self.run.builds.remove(artifact);
                if started.is_none() {
                    out.push(Transition::Anomaly("terminal_without_start"));
                }
                let streak = self.build_streaks.entry(artifact.to_owned()).or_default();
                match result {
                    Outcome::Success => *streak = 0,
                    Outcome::Failure => *streak += 1,
                    Outcome::Canceled => {}
                }
                let failures = *streak;
                if self.build_streaks.len() > MAX_OPEN {
                    self.build_streaks.retain(|_, n| *n > 0);
                }
                out.push(Transition::Finished(self.finished(
                    Phase::Build,
                    Some(artifact),
                    result,
                    started,
                    at,
                    error,
                )));
                out.push(Transition::BuildStreak {
                    artifact: artifact.to_owned(),
                    failures,
                });
                self.after_terminal(Phase::Build, result, at, out);
            }
        }
    }

    /// Test, deploy and status check: phases with one instance at a time.
    fn single(
        &mut self,
        phase: Phase,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        match status {
            Status::InProgress => {
                if phase != Phase::StatusCheck {
                    self.begin(at, out);
                }
                if let Some(l) = self.run.dev_loop.as_mut()
                    && phase == Phase::Deploy
                {
                    l.deployed = true;
                }
                if self.run.slot(phase).is_none() {
                    *self.run.slot(phase) = Some(at);
                    out.push(Transition::Started {
                        phase,
                        subject: None,
                        at,
                        iteration: self.iteration(),
                    });
                }
            }
            _ => {
                let Some(result) = outcome(status) else {
                    return;
                };
                let started = self.run.slot(phase).take();
                if started.is_none() {
                    out.push(Transition::Anomaly("terminal_without_start"));
                }
                out.push(Transition::Finished(
                    self.finished(phase, None, result, started, at, error),
                ));
                if phase == Phase::Deploy {
                    match result {
                        Outcome::Success => self.deploy_streak = 0,
                        Outcome::Failure => self.deploy_streak += 1,
                        Outcome::Canceled => {}
                    }
                    out.push(Transition::DeployStreak(self.deploy_streak));
                    if let Some(l) = self.run.dev_loop.as_mut() {
                        l.deploy_ended = true;
                    }
                }
                self.after_terminal(phase, result, at, out);
            }
        }
    }

    fn resource(
        &mut self,
        resource: &str,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let check_start = self.run.status_check;
        if !self.run.resources.contains_key(resource) {
            if self.run.resources.len() >= MAX_OPEN {
                out.push(Transition::Anomaly("too_many_open"));
                return;
            }
            // A rollout runs from the status check's start; without one (iterative
            // status check inside the deployer) from the resource's first event.
            let start = Some(check_start.unwrap_or(at));
            self.run
                .resources
                .insert(resource.to_owned(), (start, false));
            out.push(Transition::Started {
                phase: Phase::Resource,
                subject: Some(resource.to_owned()),
                at: start.unwrap_or(at),
                iteration: self.iteration(),
            });
        }
        let Some(result) = outcome(status) else {
            return;
        };
        let iteration = self.iteration();
        let Some(entry) = self.run.resources.get_mut(resource) else {
            return;
        };
        if entry.1 {
            // Polling repeats; one terminal per resource per status check.
            return;
        }
        entry.1 = true;
        let started = entry.0;
        let mut f = self.finished(Phase::Resource, Some(resource), result, started, at, error);
        f.iteration = iteration;
        out.push(Transition::Finished(f));
    }

    fn sync(
        &mut self,
        image: &str,
        file_count: u64,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        if self.run.seen_images.len() < MAX_OPEN && self.run.seen_images.insert(image.to_owned()) {
            out.push(Transition::SubjectSeen {
                phase: Phase::FileSync,
                subject: image.to_owned(),
            });
        }
        match status {
            Status::InProgress => {
                self.begin(at, out);
                if let Some(l) = self.run.dev_loop.as_mut() {
                    l.synced = true;
                }
                if self.run.syncs.contains_key(image) {
                    return;
                }
                if self.run.syncs.len() >= MAX_OPEN {
                    out.push(Transition::Anomaly("too_many_open"));
                    return;
                }
                self.run.syncs.insert(image.to_owned(), at);
                out.push(Transition::Started {
                    phase: Phase::FileSync,
                    subject: Some(image.to_owned()),
                    at,
                    iteration: self.iteration(),
                });
            }
            _ => {
                let Some(result) = outcome(status) else {
                    return;
                };
                let started = self.run.syncs.remove(image);
                if started.is_none() {
                    out.push(Transition::Anomaly("terminal_without_start"));
                }
                let mut f = self.finished(Phase::FileSync, Some(image), result, started, at, error);
                f.file_count = file_count;
                out.push(Transition::Finished(f));
                self.after_terminal(Phase::FileSync, result, at, out);
            }
        }
    }

    fn dev_loop(
        &mut self,
        iteration: i64,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        if !self.run.has_dev_loop_events {
            // Real iterations from now on; a derived one still open is dropped.
            self.run.has_dev_loop_events = true;
            self.run.dev_loop = None;
        }
        match status {
            Status::InProgress => {
                if let Some(open) = &self.run.dev_loop
                    && open.iteration == iteration
                {
                    return; // repeated start
                }
                if self.run.dev_loop.is_some() {
                    out.push(Transition::Anomaly("dev_loop_without_end"));
                }
                self.run.dev_loop = Some(Loop {
                    iteration,
                    started_at: Some(at),
                    built: false,
                    synced: false,
                    deployed: false,
                    deploy_ended: false,
                    derived: false,
                });
                out.push(Transition::Started {
                    phase: Phase::DevLoop,
                    subject: None,
                    at,
                    iteration: Some(iteration),
                });
            }
            _ => {
                let Some(result) = outcome(status) else {
                    return;
                };
                let open = match self.run.dev_loop.take() {
                    Some(l) if l.iteration == iteration => l,
                    other => {
                        self.run.dev_loop = other;
                        out.push(Transition::Anomaly("terminal_without_start"));
                        Loop {
                            iteration,
                            started_at: None,
                            built: false,
                            synced: false,
                            deployed: false,
                            deploy_ended: false,
                            derived: false,
                        }
                    }
                };
                out.push(self.loop_finished(&open, result, at, error.clone()));
            }
        }
    }

    // === derived iterations (Skaffold < v1.9) ===

    /// A build, test, deploy or sync started: opens a derived iteration if needed.
    fn begin(&mut self, at: Nanos, out: &mut Vec<Transition>) {
        if self.run.has_dev_loop_events {
            return;
        }
        if let Some(l) = &self.run.dev_loop
            && l.deploy_ended
            && self.run.status_check.is_none()
        {
            // Deployed, no status check followed: that iteration ended at the last event.
            let l = self.run.dev_loop.take().expect("checked above");
            let end = self.run.last_at.unwrap_or(at);
            out.push(self.loop_finished(&l, Outcome::Success, end, None));
        }
        if self.run.dev_loop.is_none() {
            let iteration = self.run.derived_iterations;
            self.run.derived_iterations += 1;
            self.run.dev_loop = Some(Loop {
                iteration,
                started_at: Some(at),
                built: false,
                synced: false,
                deployed: false,
                deploy_ended: false,
                derived: true,
            });
            out.push(Transition::Started {
                phase: Phase::DevLoop,
                subject: None,
                at,
                iteration: Some(iteration),
            });
        }
    }

    /// A phase ended: closes a derived iteration when the rule says so.
    fn after_terminal(
        &mut self,
        phase: Phase,
        result: Outcome,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let Some(l) = &self.run.dev_loop else {
            return;
        };
        if !l.derived {
            return;
        }
        let others_open = !self.run.builds.is_empty() || !self.run.syncs.is_empty();
        let close = match (phase, result) {
            (_, Outcome::Failure) => true,
            (Phase::StatusCheck, _) => true,
            (Phase::FileSync, _) => !l.built && !l.deployed && !others_open,
            _ => false,
        };
        if close {
            let l = self.run.dev_loop.take().expect("checked above");
            out.push(self.loop_finished(&l, result, at, None));
        }
    }

    // === helpers ===

    fn iteration(&self) -> Option<i64> {
        self.run.dev_loop.as_ref().map(|l| l.iteration)
    }

    fn finished(
        &self,
        phase: Phase,
        subject: Option<&str>,
        outcome: Outcome,
        started_at: Option<Nanos>,
        finished_at: Nanos,
        error: &Option<ErrorInfo>,
    ) -> Finished {
        Finished {
            phase,
            subject: subject.map(str::to_owned),
            outcome,
            started_at,
            finished_at,
            error: if outcome == Outcome::Failure {
                Some(error.clone().unwrap_or_default())
            } else {
                None
            },
            file_count: 0,
            iteration: self.iteration(),
            loop_kind: None,
        }
    }

    fn loop_finished(
        &self,
        l: &Loop,
        outcome: Outcome,
        at: Nanos,
        error: Option<ErrorInfo>,
    ) -> Transition {
        Transition::Finished(Finished {
            phase: Phase::DevLoop,
            subject: None,
            outcome,
            started_at: l.started_at,
            finished_at: at,
            error: (outcome == Outcome::Failure).then(|| error.unwrap_or_default()),
            file_count: 0,
            iteration: Some(l.iteration),
            loop_kind: Some(l.kind()),
        })
    }

    /// Open phases, for diagnostics and the summary (sorted, stable).
    pub fn open_phases(&self) -> BTreeMap<&'static str, usize> {
        let r = &self.run;
        BTreeMap::from([
            ("build", r.builds.len()),
            ("test", r.test.iter().count()),
            ("deploy", r.deploy.iter().count()),
            ("status_check", r.status_check.iter().count()),
            ("file_sync", r.syncs.len()),
            ("dev_loop", r.dev_loop.iter().count()),
        ])
    }
}
