//! Dev-loop iterations: the open one, how each ends and what it was.
//!
//! From DevLoopEvents when Skaffold sends them; before v1.9 *derived* from the
//! phases (the rules are in the module docs of `state`). A new iteration abandons the
//! phases earlier ones left open; a phase's end may close a derived iteration.

use super::{State, outcome};
use crate::core::event::{ErrorInfo, Nanos, Status};
use crate::core::reason::Reason;
use crate::core::transition::{Finished, LoopKind, Outcome, Phase, Transition};

/// One dev-loop iteration, while it is open.
#[derive(Debug, Clone, Default)]
pub(super) struct Loop {
    iteration: i64,
    started_at: Option<Nanos>,
    /// An artifact was built in it.
    pub(super) built: bool,
    /// A file sync ran in it.
    pub(super) synced: bool,
    /// A deploy started in it.
    pub(super) deployed: bool,
    /// Its deploy ended.
    pub(super) deploy_ended: bool,
    derived: bool,
    /// The first failure reported in this iteration (its code is the iteration's).
    pub(super) failure: Option<ErrorInfo>,
    /// A phase of this iteration was cancelled.
    pub(super) canceled: bool,
}

impl Loop {
    fn new(iteration: i64, at: Nanos, derived: bool) -> Self {
        Self {
            iteration,
            started_at: Some(at),
            derived,
            ..Self::default()
        }
    }

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

    /// The iteration's result, given what its terminal event said.
    fn outcome(&self, reported: Outcome) -> Outcome {
        match reported {
            _ if self.failure.is_some() => Outcome::Failure,
            // Skaffold reports a Ctrl-C during a build as a failed iteration.
            Outcome::Failure if self.canceled => Outcome::Canceled,
            other => other,
        }
    }
}

impl State {
    pub(super) fn dev_loop(
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
                    out.push(Transition::Anomaly(Reason::DevLoopWithoutEnd));
                }
                self.open_loop(iteration, at, false, out);
            }
            _ => {
                let Some(result) = outcome(status) else {
                    return;
                };
                match self.run.dev_loop.take() {
                    Some(l) if l.iteration == iteration => {
                        self.run.ended_loop = Some(iteration);
                        self.close_loop(&l, result, at, error.clone(), out);
                    }
                    other => {
                        self.run.dev_loop = other;
                        if self.run.ended_loop == Some(iteration) {
                            // A later terminal event of an iteration that already
                            // ended (sync retries): the same iteration, absorbed.
                            return;
                        }
                        out.push(Transition::Anomaly(Reason::TerminalWithoutStart));
                        let l = Loop {
                            iteration,
                            ..Loop::default()
                        };
                        self.close_loop(&l, result, at, error.clone(), out);
                    }
                }
            }
        }
    }

    /// A build, test, deploy or sync started: opens a derived iteration if needed.
    pub(super) fn begin(&mut self, at: Nanos, out: &mut Vec<Transition>) {
        if self.run.has_dev_loop_events {
            return;
        }
        if let Some(l) = &self.run.dev_loop
            && l.deploy_ended
            && self.run.open.single(Phase::StatusCheck).is_none()
        {
            // Deployed, no status check followed: that iteration ended at the last event.
            let l = self.run.dev_loop.take().expect("checked above");
            let end = self.run.last_at.unwrap_or(at);
            self.close_loop(&l, Outcome::Success, end, None, out);
        }
        if self.run.dev_loop.is_none() {
            let iteration = self.run.derived_iterations;
            self.run.derived_iterations += 1;
            self.open_loop(iteration, at, true, out);
        }
    }

    /// Opens an iteration (the phases earlier ones left open are abandoned) and
    /// reports its start.
    fn open_loop(&mut self, iteration: i64, at: Nanos, derived: bool, out: &mut Vec<Transition>) {
        self.abandon_open(out);
        self.run.dev_loop = Some(Loop::new(iteration, at, derived));
        out.push(Transition::Started {
            phase: Phase::DevLoop,
            subject: None,
            at,
            iteration: Some(iteration),
        });
    }

    /// A new iteration starts: phases of earlier ones that never ended (a lost or
    /// reordered terminal event) are dropped and counted, so their start cannot
    /// stretch the next duration of the same phase across iterations.
    fn abandon_open(&mut self, out: &mut Vec<Transition>) {
        let stale = self.run.open.abandon();
        self.run.resources.clear();
        out.extend((0..stale).map(|_| Transition::Anomaly(Reason::PhaseWithoutEnd)));
    }

    /// Closes a derived iteration whose phases all ended (see [`State::stream_ended`]).
    pub(super) fn close_derived(&mut self, out: &mut Vec<Transition>) {
        let r = &self.run;
        let idle = r.open.is_idle();
        let Some(end) = r.last_at else {
            return;
        };
        if idle
            && let Some(l) = &r.dev_loop
            && l.derived
            && (l.built || l.deployed || l.synced)
        {
            let l = self.run.dev_loop.take().expect("checked above");
            self.close_loop(&l, Outcome::Success, end, None, out);
        }
    }

    /// A phase ended: closes a derived iteration when the rule says so.
    pub(super) fn after_terminal(
        &mut self,
        phase: Phase,
        result: Outcome,
        at: Nanos,
        out: &mut Vec<Transition>,
    ) {
        let others_open = self.run.open.concurrent();
        let Some(l) = self.run.dev_loop.as_mut() else {
            return;
        };
        if !l.derived {
            return;
        }
        let close = match phase {
            // A failure ends the iteration once the builds and syncs still running
            // (concurrent builds) have ended too.
            _ if l.failure.is_some() => !others_open,
            Phase::StatusCheck => true,
            Phase::FileSync => !l.built && !l.deployed && !others_open,
            _ => false,
        };
        if close {
            let l = self.run.dev_loop.take().expect("checked above");
            self.close_loop(&l, result, at, None, out);
        }
    }

    /// The current iteration: the open one, else the last one that ended in this run
    /// (its sync retries come after its end).
    #[inline]
    pub(super) fn iteration(&self) -> Option<i64> {
        self.run
            .dev_loop
            .as_ref()
            .map(|l| l.iteration)
            .or(self.run.ended_loop)
    }

    /// Ends an iteration. `reported` is what its terminal event said (derived
    /// iterations: success); the result and the error code follow the iteration's
    /// first failure. A failed iteration is a failure of its own (counted) only when
    /// none of its phases failed.
    fn close_loop(
        &self,
        l: &Loop,
        reported: Outcome,
        at: Nanos,
        error: Option<ErrorInfo>,
        out: &mut Vec<Transition>,
    ) {
        let outcome = l.outcome(reported);
        let error =
            (outcome == Outcome::Failure).then(|| l.failure.clone().or(error).unwrap_or_default());
        if outcome == Outcome::Failure && l.failure.is_none() {
            out.push(Transition::Failure {
                phase: Phase::DevLoop,
                code: error.as_ref().and_then(|e| e.code.clone()),
                at,
            });
        }
        out.push(Transition::Finished(Finished {
            phase: Phase::DevLoop,
            subject: None,
            outcome,
            started_at: l.started_at,
            finished_at: at,
            error,
            file_count: 0,
            iteration: Some(l.iteration),
            loop_kind: Some(l.kind()),
        }));
    }
}
