//! What the fold makes of each phase's events: builds, test, deploy, status check
//! and its resources, file syncs, the v2 phases and subtasks. Each start opens an
//! instance in the open-phase table (`state::open`) and reports it once; each
//! terminal event closes it, reports how it finished, counts its failure once and
//! keeps the failure streaks. What the phases mean for their dev-loop iteration is in
//! `state::iteration`.

use rustc_hash::FxHashSet as HashSet;

use super::open::{Opening, Slot};
use super::{Key, MAX_OPEN, State, key, outcome};
use crate::core::event::{ErrorInfo, Nanos, Status};
use crate::core::reason::Reason;
use crate::core::transition::{Finished, Outcome, Phase, Transition};

impl State {
    pub(super) fn build(
        &mut self,
        artifact: &str,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        // Pre-v1.9 Skaffold sends "In Progress" twice (cache lookup, then the real
        // build): the first one starts the clock.
        let Some((result, started)) = self.concurrent(Phase::Build, artifact, status, at, out)
        else {
            return;
        };
        let failures = self.build_streak(artifact, result, out);
        let f = self.finished(Phase::Build, Some(artifact), result, started, at, error);
        self.ended(f, out);
        out.push(Transition::BuildStreak {
            artifact: artifact.to_owned(),
            failures,
        });
        self.after_terminal(Phase::Build, result, at, out);
    }

    /// Updates an artifact's failure streak. Only artifacts with failures are kept
    /// (a success removes the entry), at most `MAX_OPEN` of them.
    fn build_streak(&mut self, artifact: &str, result: Outcome, out: &mut Vec<Transition>) -> u64 {
        let k = key(artifact);
        let current = self.build_streaks.get(&k).copied().unwrap_or(0);
        let next = match result {
            Outcome::Success => 0,
            Outcome::Failure => current + 1,
            Outcome::Canceled => current,
        };
        if next == 0 {
            self.build_streaks.remove(&k);
        } else if self.build_streaks.contains_key(&k) || self.build_streaks.len() < MAX_OPEN {
            self.build_streaks.insert(k, next);
        } else {
            out.push(Transition::Anomaly(Reason::TooManyOpen));
        }
        next
    }

    /// Test, deploy, status check, render, verify and exec: phases with one instance
    /// at a time.
    pub(super) fn single(
        &mut self,
        phase: Phase,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let slot = Slot::Single(phase);
        if status == Status::InProgress {
            // Only phases Skaffold < v1.9 reported open a derived iteration (the
            // v2-only render / verify / exec never do, so v1 and v2 agree).
            if matches!(phase, Phase::Test | Phase::Deploy) {
                self.begin(at, out);
            }
            if let Some(l) = self.run.dev_loop.as_mut()
                && phase == Phase::Deploy
            {
                l.deployed = true;
            }
            self.open(slot, None, at, out);
            return;
        }
        let Some((result, started)) = self.close(slot, status, out) else {
            return;
        };
        let mut f = self.finished(phase, None, result, started, at, error);
        if phase == Phase::StatusCheck && result == Outcome::Failure {
            // The code of a failed status check is that of its first failed
            // resource: v1 sends that one only with fail-fast
            // (`kubernetes/status/status_check.go`, `getSkaffoldDeployStatus`),
            // v2 `STATUSCHECK_UNKNOWN` (`ActionableErrV2` of a plain error);
            // the resources carry the same codes over both APIs.
            if let (Some(e), Some(first)) = (f.error.as_mut(), &self.run.check_failure)
                && first.code.is_some()
            {
                e.code.clone_from(&first.code);
            }
            self.run.check_failed_in_deploy = self.run.open.single(Phase::Deploy).is_some();
        }
        let counted = !(phase == Phase::Deploy && self.run.check_failed_in_deploy);
        if counted {
            self.ended(f, out);
        } else {
            out.push(Transition::Finished(f));
        }
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

    pub(super) fn resource(
        &mut self,
        resource: &str,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let check_start = self.run.open.single(Phase::StatusCheck);
        let k = key(resource);
        if !self.run.resources.contains_key(&k) {
            if self.run.resources.len() >= MAX_OPEN {
                out.push(Transition::Anomaly(Reason::TooManyOpen));
                // Untracked, but its rollout still counts (from the status check's
                // start); only a repeated terminal would count again.
                if let Some(result) = outcome(status) {
                    let iteration = self.iteration();
                    let mut f = self.finished(
                        Phase::Resource,
                        Some(resource),
                        result,
                        check_start,
                        at,
                        error,
                    );
                    f.iteration = iteration;
                    out.push(Transition::Finished(f));
                }
                return;
            }
            // A rollout runs from the status check's start; without one from the
            // resource's first event.
            let start = check_start.unwrap_or(at);
            self.run.resources.insert(k, (Some(start), false));
            out.push(Transition::Started {
                phase: Phase::Resource,
                subject: Some(resource.to_owned()),
                at: start,
                iteration: self.iteration(),
            });
        }
        let Some(result) = outcome(status) else {
            return;
        };
        let iteration = self.iteration();
        let Some(entry) = self.run.resources.get_mut(&k) else {
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
        if result == Outcome::Failure && self.run.check_failure.is_none() {
            // Not a failure of its own: the status check that contains it is counted.
            self.run.check_failure.clone_from(&f.error);
        }
        out.push(Transition::Finished(f));
    }

    pub(super) fn sync(
        &mut self,
        image: &str,
        file_count: u64,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let Some((result, started)) = self.concurrent(Phase::FileSync, image, status, at, out)
        else {
            return;
        };
        let mut f = self.finished(Phase::FileSync, Some(image), result, started, at, error);
        f.file_count = file_count;
        self.ended(f, out);
        self.after_terminal(Phase::FileSync, result, at, out);
    }

    /// v2 subtasks: timed from their start to their end; no streaks, no iterations.
    pub(super) fn subtask(
        &mut self,
        phase: Phase,
        id: &str,
        status: Status,
        error: &Option<ErrorInfo>,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let slot = Slot::Subtask(phase, key(id));
        if status == Status::InProgress {
            self.open(slot, Some(id), at, out);
        } else if let Some((result, started)) = self.close(slot, status, out) {
            let f = self.finished(phase, Some(id), result, started, at, error);
            out.push(Transition::Finished(f));
        }
    }

    // === opening and closing ===

    /// A build (`subject`: the artifact) or a file sync (the image): phases that run
    /// many at once and open a derived iteration. Reports a subject new in the run,
    /// opens the instance at its start; closes it at its end (see [`State::close`]).
    fn concurrent(
        &mut self,
        phase: Phase,
        subject: &str,
        status: Status,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) -> Option<(Outcome, Option<Nanos>)> {
        let k = key(subject);
        let (seen, slot) = if phase == Phase::Build {
            (&mut self.run.seen_artifacts, Slot::Build(k))
        } else {
            (&mut self.run.seen_images, Slot::Sync(k))
        };
        see(seen, k, phase, subject, out);
        if status != Status::InProgress {
            return self.close(slot, status, out);
        }
        self.begin(at, out);
        if let Some(l) = self.run.dev_loop.as_mut() {
            if phase == Phase::Build {
                l.built = true;
            } else {
                l.synced = true;
            }
        }
        self.open(slot, Some(subject), at, out);
        None
    }

    /// A phase instance started: opens its slot and reports the start, once (a
    /// repeated start keeps the first; past the limit it goes untracked and counted).
    fn open(&mut self, slot: Slot, subject: Option<&str>, at: Nanos, out: &mut Vec<Transition>) {
        match self.run.open.open(slot, at) {
            Opening::Repeated => {}
            Opening::Full => out.push(Transition::Anomaly(Reason::TooManyOpen)),
            Opening::Opened => out.push(Transition::Started {
                phase: slot.phase(),
                subject: subject.map(str::to_owned),
                at,
                iteration: self.iteration(),
            }),
        }
    }

    /// A phase instance reported `status`: when that is a result, closes its slot and
    /// returns the result and the instance's start (`None`: it had none, counted).
    fn close(
        &mut self,
        slot: Slot,
        status: Status,
        out: &mut Vec<Transition>,
    ) -> Option<(Outcome, Option<Nanos>)> {
        let result = outcome(status)?;
        let started = self.run.open.close(slot);
        // A build cancelled while it waited for a dependency gets `Canceled` and
        // nothing before it, over both APIs (`build/scheduler.go`, `scheduler.build`
        // after `waitForDependencies`): normal, not an anomaly.
        let waited = matches!(slot, Slot::Build(_)) && result == Outcome::Canceled;
        if started.is_none() && !waited {
            out.push(Transition::Anomaly(Reason::TerminalWithoutStart));
        }
        Some((result, started))
    }

    /// A phase ended: reports it, counts its failure once and notes what it means for
    /// its iteration.
    fn ended(&mut self, f: Finished, out: &mut Vec<Transition>) {
        match f.outcome {
            Outcome::Failure => {
                out.push(Transition::Failure {
                    phase: f.phase,
                    code: f.error.as_ref().and_then(|e| e.code.clone()),
                    at: f.finished_at,
                });
                if let Some(l) = self.run.dev_loop.as_mut()
                    && l.failure.is_none()
                {
                    l.failure.clone_from(&f.error);
                }
            }
            Outcome::Canceled => {
                if let Some(l) = self.run.dev_loop.as_mut() {
                    l.canceled = true;
                }
            }
            Outcome::Success => {}
        }
        out.push(Transition::Finished(f));
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
}

/// Reports `subject` of `phase` the first time it shows up in a run (at most
/// `MAX_OPEN` names per kind are remembered).
fn see(seen: &mut HashSet<Key>, k: Key, phase: Phase, subject: &str, out: &mut Vec<Transition>) {
    if seen.len() < MAX_OPEN && seen.insert(k) {
        out.push(Transition::SubjectSeen {
            phase,
            subject: subject.to_owned(),
        });
    }
}
