//! One INFO log line per finished dev-loop iteration, from the fold's transitions:
//! kind, result, total seconds, seconds per phase (first start to last end of the
//! phase in that iteration, from Skaffold's timestamps), the slowest artifact build,
//! and on failure the phase that failed and Skaffold's error code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::core::{Event, Finished, Nanos, Outcome, Phase, Transition, TransitionObserver};

/// Iterations whose phases are remembered at once (older ones are forgotten).
const KEEP: usize = 8;

/// What one iteration did so far.
#[derive(Debug, Default, Clone, PartialEq)]
struct Iteration {
    /// Per phase: first start and last end.
    phases: BTreeMap<Phase, (Nanos, Nanos)>,
    /// The slowest artifact build: name and seconds.
    slowest: Option<(String, f64)>,
    /// The first failure: phase and Skaffold's code.
    failure: Option<(Phase, Option<String>)>,
}

/// The phases reported, in the order they run.
const ORDER: [Phase; 8] = [
    Phase::Build,
    Phase::Test,
    Phase::Render,
    Phase::Deploy,
    Phase::StatusCheck,
    Phase::Verify,
    Phase::FileSync,
    Phase::Exec,
];

/// Builds the iteration lines; [`TransitionObserver`] logs them.
#[derive(Debug, Default)]
pub struct LoopLog {
    iterations: BTreeMap<i64, Iteration>,
}

impl LoopLog {
    /// The iteration's record (the latest one when Skaffold did not say).
    fn slot(&mut self, iteration: Option<i64>) -> &mut Iteration {
        let i = iteration
            .or_else(|| self.iterations.keys().next_back().copied())
            .unwrap_or(0);
        if !self.iterations.contains_key(&i) {
            while self.iterations.len() >= KEEP {
                self.iterations.pop_first();
            }
        }
        self.iterations.entry(i).or_default()
    }

    /// The line for a transition that ends an iteration, if it is one.
    pub fn line(&mut self, t: &Transition) -> Option<String> {
        match t {
            Transition::RunStarted { .. } => self.iterations.clear(),
            Transition::Finished(f) if f.phase == Phase::DevLoop => return Some(self.finish(f)),
            Transition::Finished(f) if ORDER.contains(&f.phase) => {
                let it = self.slot(f.iteration);
                let start = f.started_at.unwrap_or(f.finished_at);
                let span = it.phases.entry(f.phase).or_insert((start, f.finished_at));
                span.0 = span.0.min(start);
                span.1 = span.1.max(f.finished_at);
                if f.outcome == Outcome::Failure && it.failure.is_none() {
                    it.failure = Some((f.phase, f.error.as_ref().and_then(|e| e.code.clone())));
                }
                if f.phase == Phase::Build
                    && let (Some(name), Some(secs)) = (&f.subject, f.duration_seconds())
                    && it.slowest.as_ref().is_none_or(|(_, s)| secs > *s)
                {
                    it.slowest = Some((name.clone(), secs));
                }
            }
            _ => {}
        }
        None
    }

    fn finish(&mut self, f: &Finished) -> String {
        let it = f
            .iteration
            .and_then(|i| self.iterations.remove(&i))
            .unwrap_or_default();
        let kind = f.loop_kind.map_or("unknown", |k| k.as_str());
        let mut line = format!(
            "Dev loop iteration {} ({kind}) {}",
            f.iteration.map_or("?".to_owned(), |i| i.to_string()),
            match f.outcome {
                Outcome::Success => "succeeded",
                Outcome::Failure => "failed",
                Outcome::Canceled => "was canceled",
            }
        );
        if let Some(s) = f.duration_seconds() {
            let _ = write!(line, " in {s:.2} s");
        }
        let phases: Vec<String> = ORDER
            .iter()
            .filter_map(|p| {
                let (a, b) = it.phases.get(p)?;
                Some(format!(
                    "{} {:.2} s",
                    p.as_str().replace('_', " "),
                    (b - a) as f64 / 1e9
                ))
            })
            .collect();
        if !phases.is_empty() {
            let _ = write!(line, ": {}", phases.join(", "));
        }
        if let Some((name, secs)) = &it.slowest {
            let _ = write!(line, "; slowest artifact {name} ({secs:.2} s)");
        }
        if f.outcome == Outcome::Failure {
            let (phase, code) = it.failure.map_or((Phase::DevLoop, None), |(p, c)| (p, c));
            let code = f
                .error
                .as_ref()
                .and_then(|e| e.code.clone())
                .filter(|_| code.is_none())
                .or(code);
            let _ = write!(line, "; failed in {}", phase.as_str().replace('_', " "));
            if let Some(code) = code {
                let _ = write!(line, " with {code}");
            }
        }
        line
    }
}

impl TransitionObserver for LoopLog {
    fn observe(&mut self, _event: &Event, t: &Transition) {
        // The log level is set at start: with INFO off (RUST_LOG=warn) there is
        // nothing to gather or format.
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        if let Some(line) = self.line(t) {
            tracing::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ErrorInfo, LoopKind};

    const S: Nanos = 1_000_000_000;

    fn done(phase: Phase, subject: Option<&str>, from: Nanos, to: Nanos, it: i64) -> Transition {
        Transition::Finished(Finished {
            phase,
            subject: subject.map(str::to_owned),
            outcome: Outcome::Success,
            started_at: Some(from),
            finished_at: to,
            error: None,
            file_count: 0,
            iteration: Some(it),
            loop_kind: None,
        })
    }

    fn dev_loop(it: i64, kind: LoopKind, outcome: Outcome, from: Nanos, to: Nanos) -> Transition {
        Transition::Finished(Finished {
            phase: Phase::DevLoop,
            subject: None,
            outcome,
            started_at: Some(from),
            finished_at: to,
            error: (outcome == Outcome::Failure).then(|| ErrorInfo {
                code: Some("DEVINIT_REGISTER_BUILD_DEPS".into()),
                message: String::new(),
            }),
            file_count: 0,
            iteration: Some(it),
            loop_kind: Some(kind),
        })
    }

    #[test]
    fn one_line_per_iteration_with_phases_and_the_slowest_artifact() {
        let mut log = LoopLog::default();
        // Two builds in parallel: the phase is first start to last end.
        assert_eq!(
            log.line(&done(Phase::Build, Some("web"), 10 * S, 13 * S, 0)),
            None
        );
        assert_eq!(
            log.line(&done(Phase::Build, Some("api"), 11 * S, 15 * S + S / 2, 0)),
            None
        );
        log.line(&done(Phase::Deploy, None, 16 * S, 17 * S, 0));
        log.line(&done(Phase::StatusCheck, None, 17 * S, 19 * S, 0));
        // A resource is part of the status check, not a phase of its own.
        log.line(&done(
            Phase::Resource,
            Some("deployment/web"),
            17 * S,
            19 * S,
            0,
        ));
        let line = log
            .line(&dev_loop(
                0,
                LoopKind::Initial,
                Outcome::Success,
                9 * S,
                20 * S,
            ))
            .unwrap();
        assert_eq!(
            line,
            "Dev loop iteration 0 (initial) succeeded in 11.00 s: build 5.50 s, deploy 1.00 s, status check 2.00 s; slowest artifact api (4.50 s)"
        );
        // The next iteration starts from nothing.
        log.line(&Transition::Finished(Finished {
            outcome: Outcome::Failure,
            error: Some(ErrorInfo {
                code: Some("BUILD_DOCKER_ERROR".into()),
                message: "exit status 1".into(),
            }),
            ..match done(Phase::Build, Some("web"), 30 * S, 31 * S, 1) {
                Transition::Finished(f) => f,
                _ => unreachable!(),
            }
        }));
        let line = log
            .line(&dev_loop(
                1,
                LoopKind::Rebuild,
                Outcome::Failure,
                29 * S,
                31 * S,
            ))
            .unwrap();
        assert_eq!(
            line,
            "Dev loop iteration 1 (rebuild) failed in 2.00 s: build 1.00 s; slowest artifact web (1.00 s); failed in build with BUILD_DOCKER_ERROR"
        );
        // A failed iteration without a failed phase names the iteration's own code.
        let line = log
            .line(&dev_loop(
                2,
                LoopKind::Redeploy,
                Outcome::Failure,
                40 * S,
                41 * S,
            ))
            .unwrap();
        assert!(
            line.ends_with("failed in 1.00 s; failed in dev loop with DEVINIT_REGISTER_BUILD_DEPS"),
            "{line}"
        );
        assert!(
            log.iterations.is_empty(),
            "finished iterations are forgotten"
        );
    }

    #[test]
    fn memory_is_bounded_when_iterations_never_finish() {
        let mut log = LoopLog::default();
        for i in 0..100 {
            log.line(&done(Phase::Build, Some("web"), i * S, i * S + 1, i));
        }
        assert_eq!(log.iterations.len(), KEEP);
    }
}
