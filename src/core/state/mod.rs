//! The fold: `State::apply(&Event) -> Vec<Transition>`. Pure: no I/O, no clock.
//!
//! Per-run state (open phases, the current dev loop, port forwards) resets on every
//! MetaEvent; lifetime state (failure streaks) survives runs, because a deploy that
//! keeps failing across Skaffold restarts is still failing.
//!
//! Dev-loop iterations come from `DevLoopEvent`. One Skaffold iteration is one loop:
//! its duration ends at its first terminal event, and later terminal events of the
//! same iteration are absorbed. Skaffold sends several: each failed file-sync attempt
//! (1 + 3 retries, `runner/dev.go`, `doDev` and `getSyncHandler`) reports DevLoop
//! `Failed`, and since v2.17 the iteration then goes on and ends `Succeeded`. Its
//! result is `failure` when a failure was reported for it (a phase failed, or a
//! DevLoop `Failed` with nothing cancelled), `canceled` when Skaffold reported it
//! failed but only cancellations happened in it (Ctrl-C during a build:
//! `build/scheduler.go`), else `success`. The first iteration of each run (a new
//! MetaEvent, e.g. after a config reload) is `initial`.
//!
//! Skaffold older than v1.9 sends no DevLoopEvent; until a run shows one, iterations
//! are *derived*: an iteration opens at the first build, test, deploy or file-sync
//! start while none is open, and closes at the end of the status check, at a failure
//! (once no concurrent build or sync is still running), at the end of a sync when
//! nothing else ran, when a deploy already ended and no status check followed, at the
//! next start, and otherwise, when every phase ended, at the end of the run (new
//! MetaEvent, TerminationEvent, Skaffold gone, end of a log file).
//!
//! Every failure is counted once ([`Transition::Failure`]), at the innermost phase
//! that reported it.
//!
//! The fold is split by what it tracks: `open` keeps the phases running now (one
//! table for every kind), `phases` turns each phase's events into transitions, and
//! `iteration` keeps the dev-loop iterations.

mod iteration;
mod open;
mod phases;

use std::collections::BTreeMap;

// The keys are XXH3 hashes already: hashing them again with SipHash only costs.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use self::iteration::Loop;
use self::open::OpenPhases;
use super::event::{ErrorInfo, Event, EventKind, Nanos, Status};
use super::transition::{Outcome, Phase, RunEnd, Transition};

/// Most entries tracked at once per kind (open builds, syncs, subtasks and resources,
/// artifacts with a failure streak, names seen in a run), so a flood of names cannot
/// grow memory without end. An entry is a 64-bit hash of the name (see `key`), some
/// 40 bytes whatever the name's length: 250,000 of each kind are at most ~10 MB each.
/// Past the limit the event is still counted where it can be (a resource's rollout,
/// a build's or a sync's result: what the sink folds into `other` still counts), and
/// `too_many_open` says that something went untracked.
pub const MAX_OPEN: usize = 250_000;

/// The key of a name in the fold's maps: XXH3 of it (a collision of two names in one
/// run is as likely as one in 2^64 / n²).
type Key = u64;

#[inline]
fn key(name: &str) -> Key {
    twox_hash::XxHash3_64::oneshot(name.as_bytes())
}

/// The fold's state. Owned by one task; never shared.
#[derive(Debug, Default)]
pub struct State {
    run: Run,
    /// Failed deploys since the last success (survives runs).
    deploy_streak: u64,
    /// Failed builds per artifact since its last success (survives runs).
    build_streaks: HashMap<Key, u64>,
    /// An unrelated session begins: the next event starts a run (see
    /// [`State::begin_session`]).
    session_pending: bool,
}

/// Per-run state.
#[derive(Debug, Default)]
struct Run {
    /// The phases running now, by kind, with their starts.
    open: OpenPhases,
    seen_artifacts: HashSet<Key>,
    seen_images: HashSet<Key>,
    /// Resources of the current status check: first In Progress, and whether ended.
    resources: HashMap<Key, (Option<Nanos>, bool)>,
    /// The first failed resource of the current status check.
    check_failure: Option<ErrorInfo>,
    /// A status check failed while the deploy was open (the status check ran inside
    /// the deployer: `--iterative-status-check` or deploy hooks, `deploy/deploy_mux.go`):
    /// the deploy's failure that follows is the same failure.
    check_failed_in_deploy: bool,
    ports: HashSet<i32>,
    dev_loop: Option<Loop>,
    /// The last iteration (from DevLoopEvents) that ended in this run: its later
    /// terminal events are absorbed, and phases reported after its end (sync retries)
    /// belong to it.
    ended_loop: Option<i64>,
    /// A DevLoopEvent was seen in this run: no derived iterations from now on.
    has_dev_loop_events: bool,
    derived_iterations: i64,
    last_at: Option<Nanos>,
    /// Skaffold's newest timestamp in this run (the end of a run that ends unseen).
    newest_at: Option<Nanos>,
}

/// What a phase's status means for it: its result, `None` while it runs.
#[inline]
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

    /// Skaffold's newest timestamp in the current run, once anything was folded.
    pub fn newest_at(&self) -> Option<Nanos> {
        self.run.newest_at
    }

    /// What follows comes from an unrelated Skaffold session (the next input of a
    /// replay; the caller ended the stream before): the run is over, and the next
    /// event starts a new one even when it is not a MetaEvent (a capture that begins
    /// mid-session). Lifetime state (failure streaks) survives, as across runs.
    pub fn begin_session(&mut self) {
        self.run = Run::default();
        self.session_pending = true;
    }

    /// Folds one event into the state and returns what it concluded.
    pub fn apply(&mut self, ev: &Event) -> Vec<Transition> {
        let mut out = Vec::new();
        self.apply_into(ev, &mut out);
        out
    }

    /// [`State::apply`] into `out` (empty), so the fold reuses one buffer instead of
    /// allocating one per event.
    pub fn apply_into(&mut self, ev: &Event, out: &mut Vec<Transition>) {
        debug_assert!(out.is_empty(), "apply_into appends to an empty buffer");
        let at = ev.at;
        if std::mem::take(&mut self.session_pending) && !matches!(ev.kind, EventKind::Meta { .. }) {
            out.push(Transition::RunStarted { version: None, at });
        }
        match &ev.kind {
            EventKind::Meta { version } => {
                // A complete derived iteration of the previous run ends with that run.
                self.close_derived(out);
                if let Some(newest) = self.run.newest_at {
                    // Whatever the MetaEvent concluded about the old run happened
                    // at its time.
                    let last_at = if out.is_empty() {
                        newest
                    } else {
                        newest.max(at)
                    };
                    out.push(Transition::RunEnded {
                        last_at,
                        by: RunEnd::NewRun { at },
                    });
                }
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
            } => self.build(artifact, *status, error, at, out),
            EventKind::Test { status, error } => {
                self.single(Phase::Test, *status, error, at, out);
            }
            EventKind::Deploy { status, error } => {
                if *status == Status::InProgress {
                    self.run.check_failed_in_deploy = false;
                }
                self.single(Phase::Deploy, *status, error, at, out);
            }
            EventKind::StatusCheck { status, error } => {
                if *status == Status::InProgress {
                    self.run.resources.clear();
                    self.run.check_failure = None;
                }
                self.single(Phase::StatusCheck, *status, error, at, out);
            }
            EventKind::ResourceStatus {
                resource,
                status,
                error,
            } => self.resource(resource, *status, error, at, out),
            EventKind::FileSync {
                image,
                file_count,
                status,
                error,
            } => self.sync(image, *file_count, *status, error, at, out),
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
            } => self.dev_loop(*iteration, *status, error, at, out),
            // Skaffold is terminating: a complete derived iteration ends here, then
            // the run.
            EventKind::Termination { .. } => {
                self.close_derived(out);
                out.push(Transition::RunEnded {
                    last_at: self.run.newest_at.map_or(at, |n| n.max(at)),
                    by: RunEnd::Terminated { at },
                });
            }
            EventKind::Debug => {}
            EventKind::BuildCache { artifact, status } => {
                let hit = match status {
                    Status::Succeeded => true,
                    Status::Failed => false,
                    _ => {
                        self.run.last_at = Some(at);
                        self.run.newest_at = Some(self.run.newest_at.map_or(at, |n| n.max(at)));
                        return;
                    }
                };
                out.push(Transition::CacheChecked {
                    artifact: artifact.to_string(),
                    hit,
                    at,
                    iteration: self.iteration(),
                });
            }
            EventKind::Render { status, error } => {
                self.single(Phase::Render, *status, error, at, out);
            }
            EventKind::Verify { status, error } => {
                self.single(Phase::Verify, *status, error, at, out);
            }
            EventKind::Exec { status, error } => {
                self.single(Phase::Exec, *status, error, at, out);
            }
            EventKind::Subtask {
                phase,
                id,
                status,
                error,
            } => self.subtask(*phase, id, *status, error, at, out),
            EventKind::RunIdentified { run_id } => {
                out.push(Transition::RunIdentified {
                    run_id: run_id.clone(),
                    at,
                });
            }
        }
        self.run.last_at = Some(at);
        self.run.newest_at = Some(self.run.newest_at.map_or(at, |n| n.max(at)));
    }

    /// Skaffold's stream ended (it exited, or a log file ended). A derived iteration
    /// whose phases all ended is complete: `skaffold run --status-check=false` and
    /// `skaffold build` sessions have no status check or DevLoopEvent to close it.
    /// It ends, successfully, at the last event. Iterations with phases still open
    /// stay open (a reconnect may bring their end).
    /// Ends with [`Transition::RunEnded`] (`StreamEnded`) once anything was folded.
    pub fn stream_ended(&mut self) -> Vec<Transition> {
        let mut out = Vec::new();
        self.close_derived(&mut out);
        if let Some(last_at) = self.run.newest_at {
            out.push(Transition::RunEnded {
                last_at,
                by: RunEnd::StreamEnded,
            });
        }
        out
    }

    /// Open phases, for diagnostics and the summary (sorted, stable).
    pub fn open_phases(&self) -> BTreeMap<&'static str, usize> {
        let open = &self.run.open;
        BTreeMap::from([
            ("build", open.count(Phase::Build)),
            ("test", open.count(Phase::Test)),
            ("deploy", open.count(Phase::Deploy)),
            ("status_check", open.count(Phase::StatusCheck)),
            ("file_sync", open.count(Phase::FileSync)),
            ("dev_loop", self.run.dev_loop.iter().count()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::ErrorInfo;
    use crate::core::reason::Reason;
    use crate::core::transition::LoopKind;

    const S: Nanos = 1_000_000_000;

    fn ev(at_s: f64, kind: EventKind) -> Event {
        Event {
            at: (at_s * S as f64) as Nanos,
            kind,
        }
    }
    fn build(a: &str, status: Status) -> EventKind {
        EventKind::Build {
            artifact: a.into(),
            status,
            error: None,
        }
    }
    fn deploy(status: Status) -> EventKind {
        EventKind::Deploy {
            status,
            error: None,
        }
    }
    fn check(status: Status) -> EventKind {
        EventKind::StatusCheck {
            status,
            error: None,
        }
    }
    fn res(r: &str, status: Status) -> EventKind {
        EventKind::ResourceStatus {
            resource: r.into(),
            status,
            error: None,
        }
    }
    fn dev(i: i64, status: Status) -> EventKind {
        EventKind::DevLoop {
            iteration: i,
            status,
            error: None,
        }
    }
    fn sync(image: &str, n: u64, status: Status) -> EventKind {
        EventKind::FileSync {
            image: image.into(),
            file_count: n,
            status,
            error: None,
        }
    }

    fn fold(events: &[Event]) -> (State, Vec<Transition>) {
        let mut st = State::new();
        let out = events.iter().flat_map(|e| st.apply(e)).collect();
        (st, out)
    }

    fn finished(ts: &[Transition]) -> Vec<(Phase, Option<String>, Outcome, Option<f64>)> {
        ts.iter()
            .filter_map(|t| match t {
                Transition::Finished(f) => Some((
                    f.phase,
                    f.subject.clone(),
                    f.outcome,
                    f.duration_seconds().map(|d| (d * 1000.0).round() / 1000.0),
                )),
                _ => None,
            })
            .collect()
    }

    /// [`finished`] of one phase.
    fn only(ts: &[Transition], phase: Phase) -> Vec<(Phase, Option<String>, Outcome, Option<f64>)> {
        finished(ts).into_iter().filter(|f| f.0 == phase).collect()
    }

    fn anomalies(ts: &[Transition]) -> Vec<&'static str> {
        ts.iter()
            .filter_map(|t| match t {
                Transition::Anomaly(r) => Some(r.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dev_iteration_measures_every_phase_from_skaffold_timestamps() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(
                0.0,
                EventKind::Meta {
                    version: Some("v2.16.1".into()),
                },
            ),
            ev(1.0, dev(0, InProgress)),
            ev(1.5, build("web", InProgress)),
            ev(4.0, build("web", Succeeded)),
            ev(4.1, deploy(InProgress)),
            ev(5.1, deploy(Succeeded)),
            ev(5.2, check(InProgress)),
            ev(5.3, res("deployment/web", InProgress)),
            ev(6.0, res("deployment/web", InProgress)),
            ev(7.2, res("deployment/web", Succeeded)),
            ev(7.3, check(Succeeded)),
            ev(7.5, dev(0, Succeeded)),
        ]);
        assert_eq!(
            finished(&ts),
            [
                (
                    Phase::Build,
                    Some("web".into()),
                    Outcome::Success,
                    Some(2.5)
                ),
                (Phase::Deploy, None, Outcome::Success, Some(1.0)),
                (
                    Phase::Resource,
                    Some("deployment/web".into()),
                    Outcome::Success,
                    Some(2.0)
                ),
                (Phase::StatusCheck, None, Outcome::Success, Some(2.1)),
                (Phase::DevLoop, None, Outcome::Success, Some(6.5)),
            ]
        );
        let kinds: Vec<_> = ts
            .iter()
            .filter_map(|t| match t {
                Transition::Finished(f) => f.loop_kind,
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [LoopKind::Initial]);
        assert!(anomalies(&ts).is_empty());
    }

    #[test]
    fn classifies_later_iterations_by_what_ran() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, sync("web", 3, InProgress)),
            ev(1.2, sync("web", 3, Succeeded)),
            ev(1.3, dev(1, Succeeded)),
            ev(2.0, dev(2, InProgress)),
            ev(2.1, build("app", InProgress)),
            ev(3.1, build("app", Succeeded)),
            ev(3.2, deploy(InProgress)),
            ev(3.3, deploy(Succeeded)),
            ev(3.4, dev(2, Succeeded)),
            ev(4.0, dev(3, InProgress)),
            ev(4.1, deploy(InProgress)),
            ev(4.4, deploy(Failed)),
            ev(4.5, dev(3, Failed)),
        ]);
        let kinds: Vec<_> = ts
            .iter()
            .filter_map(|t| match t {
                Transition::Finished(f) if f.phase == Phase::DevLoop => {
                    Some((f.loop_kind.unwrap(), f.outcome))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (LoopKind::Sync, Outcome::Success),
                (LoopKind::Rebuild, Outcome::Success),
                (LoopKind::Redeploy, Outcome::Failure),
            ]
        );
    }

    #[test]
    fn duplicate_in_progress_from_pre_v1_9_cache_keeps_the_first_start() {
        use Status::*;
        // Skaffold issue #3812: leeroy-web gets "In Progress" twice.
        let (_, ts) = fold(&[
            ev(10.0, build("web", InProgress)),
            ev(12.0, build("web", InProgress)),
            ev(15.0, build("web", Succeeded)),
        ]);
        assert_eq!(
            finished(&ts)[0],
            (
                Phase::Build,
                Some("web".into()),
                Outcome::Success,
                Some(5.0)
            )
        );
        assert!(anomalies(&ts).is_empty());
    }

    #[test]
    fn resource_polling_counts_one_rollout_per_status_check() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(0.0, check(InProgress)),
            ev(1.0, res("ns:deployment/a", InProgress)),
            ev(2.0, res("ns:deployment/a", Failed)),
            ev(2.5, res("ns:deployment/a", Failed)),
            ev(3.0, check(Failed)),
            ev(10.0, check(InProgress)),
            ev(12.0, res("ns:deployment/a", Succeeded)),
            ev(12.5, check(Succeeded)),
        ]);
        let rollouts = only(&ts, Phase::Resource);
        assert_eq!(
            rollouts,
            [
                (
                    Phase::Resource,
                    Some("ns:deployment/a".into()),
                    Outcome::Failure,
                    Some(2.0)
                ),
                (
                    Phase::Resource,
                    Some("ns:deployment/a".into()),
                    Outcome::Success,
                    Some(2.0)
                ),
            ]
        );
    }

    #[test]
    fn deploy_streak_counts_failures_and_resets_on_success_across_runs() {
        use Status::*;
        let mut st = State::new();
        let mut streaks = vec![];
        let seq = [Failed, Failed, Succeeded, Failed];
        for (i, s) in seq.iter().enumerate() {
            if i == 2 {
                st.apply(&ev(0.0, EventKind::Meta { version: None }));
            }
            st.apply(&ev(i as f64, deploy(InProgress)));
            for t in st.apply(&ev(i as f64 + 0.5, deploy(*s))) {
                if let Transition::DeployStreak(n) = t {
                    streaks.push(n);
                }
            }
        }
        assert_eq!(streaks, [1, 2, 0, 1]);
    }

    #[test]
    fn terminal_without_start_is_counted_but_not_timed() {
        use Status::*;
        let (_, ts) = fold(&[ev(1.0, build("x", Failed)), ev(2.0, dev(4, Succeeded))]);
        assert_eq!(
            finished(&ts),
            [
                (Phase::Build, Some("x".into()), Outcome::Failure, None),
                (Phase::DevLoop, None, Outcome::Success, None),
            ]
        );
        assert_eq!(
            anomalies(&ts),
            ["terminal_without_start", "terminal_without_start"]
        );
        let err = ts.iter().find_map(|t| match t {
            Transition::Finished(f) => f.error.clone(),
            _ => None,
        });
        assert_eq!(err, Some(ErrorInfo::default()));
    }

    #[test]
    fn derives_iterations_when_skaffold_sends_no_dev_loop_events() {
        use Status::*;
        // Skaffold < v1.9: build, deploy, status check; later a sync-only change.
        let (_, ts) = fold(&[
            ev(
                0.0,
                EventKind::Meta {
                    version: Some("v1.5.0".into()),
                },
            ),
            ev(1.0, build("web", InProgress)),
            ev(3.0, build("web", Succeeded)),
            ev(3.5, deploy(InProgress)),
            ev(4.0, deploy(Succeeded)),
            ev(4.1, check(InProgress)),
            ev(6.0, check(Succeeded)),
            ev(20.0, sync("web", 2, InProgress)),
            ev(20.5, sync("web", 2, Succeeded)),
            ev(30.0, build("web", InProgress)),
            ev(31.0, build("web", Failed)),
        ]);
        let loops: Vec<_> = ts
            .iter()
            .filter_map(|t| match t {
                Transition::Finished(f) if f.phase == Phase::DevLoop => Some((
                    f.iteration,
                    f.loop_kind.unwrap(),
                    f.outcome,
                    f.duration_seconds(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            loops,
            [
                (Some(0), LoopKind::Initial, Outcome::Success, Some(5.0)),
                (Some(1), LoopKind::Sync, Outcome::Success, Some(0.5)),
                (Some(2), LoopKind::Rebuild, Outcome::Failure, Some(1.0)),
            ]
        );
    }

    #[test]
    fn derived_iteration_without_status_check_closes_at_next_start() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(1.0, deploy(InProgress)),
            ev(2.0, deploy(Succeeded)),
            ev(9.0, deploy(InProgress)),
        ]);
        let loops = only(&ts, Phase::DevLoop);
        assert_eq!(loops, [(Phase::DevLoop, None, Outcome::Success, Some(1.0))]);
    }

    #[test]
    fn new_run_resets_open_phases_and_port_forwards() {
        use Status::*;
        let mut st = State::new();
        st.apply(&ev(0.0, build("a", InProgress)));
        let port = EventKind::PortForward {
            local_port: 9000,
            resource_type: "service".into(),
            resource_name: "web".into(),
            namespace: "default".into(),
        };
        st.apply(&ev(0.5, port.clone()));
        assert_eq!(st.open_phases()["build"], 1);
        st.apply(&ev(1.0, EventKind::Meta { version: None }));
        assert_eq!(st.open_phases()["build"], 0);
        let ts = st.apply(&ev(2.0, port));
        assert!(matches!(ts[0], Transition::PortForwards { count: 1, .. }));
    }

    #[test]
    fn a_flood_of_distinct_artifacts_is_bounded() {
        use Status::*;
        let mut st = State::new();
        let mut too_many = 0;
        for i in 0..(MAX_OPEN + 50) {
            for t in st.apply(&ev(1.0, build(&format!("a{i}"), InProgress))) {
                if t == Transition::Anomaly(Reason::TooManyOpen) {
                    too_many += 1;
                }
            }
        }
        assert_eq!(too_many, 50);
        assert_eq!(st.open_phases()["build"], MAX_OPEN);
    }

    #[test]
    fn a_lost_terminal_event_does_not_stretch_the_next_iteration() {
        use Status::*;
        // Iteration 1's "Complete" for web never arrived.
        let (_, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, build("web", InProgress)),
            ev(3.0, dev(1, Failed)),
            ev(10.0, dev(2, InProgress)),
            ev(11.0, build("web", InProgress)),
            ev(13.0, build("web", Succeeded)),
            ev(14.0, dev(2, Succeeded)),
        ]);
        let builds = only(&ts, Phase::Build);
        assert_eq!(
            builds,
            [(
                Phase::Build,
                Some("web".into()),
                Outcome::Success,
                Some(2.0)
            )]
        );
        assert_eq!(anomalies(&ts), ["phase_without_end"]);
    }

    #[test]
    fn a_build_only_session_ends_with_the_stream() {
        use Status::*;
        // `skaffold build`: no DevLoopEvent, no deploy, no status check.
        let mut st = State::new();
        for e in [
            ev(0.0, EventKind::Meta { version: None }),
            ev(1.0, build("web", InProgress)),
            ev(4.0, build("web", Succeeded)),
        ] {
            st.apply(&e);
        }
        let ts = st.stream_ended();
        let loops: Vec<_> = finished(&ts);
        assert_eq!(loops, [(Phase::DevLoop, None, Outcome::Success, Some(3.0))]);
        assert_eq!(
            ts.last(),
            Some(&Transition::RunEnded {
                last_at: 4_000_000_000,
                by: RunEnd::StreamEnded
            })
        );
        assert!(finished(&st.stream_ended()).is_empty(), "ends once");
    }

    #[test]
    fn a_run_ends_after_what_its_end_concludes_at_a_new_run_or_a_termination() {
        use Status::*;
        let mut st = State::new();
        assert!(
            st.stream_ended().is_empty(),
            "nothing folded, nothing ended"
        );
        for e in [
            ev(0.0, EventKind::Meta { version: None }),
            ev(1.0, build("web", InProgress)),
            ev(4.0, build("web", Succeeded)),
            ev(3.0, EventKind::Debug),
        ] {
            st.apply(&e);
        }
        // The derived iteration closes first, then the run, then the next begins.
        let ts = st.apply(&ev(9.0, EventKind::Meta { version: None }));
        assert_eq!(finished(&ts).len(), 1);
        let n = ts.len();
        assert_eq!(
            ts[n - 2],
            Transition::RunEnded {
                last_at: 9_000_000_000,
                by: RunEnd::NewRun { at: 9_000_000_000 }
            }
        );
        assert!(matches!(ts[n - 1], Transition::RunStarted { .. }));
        let ts = st.apply(&ev(
            12.0,
            EventKind::Termination {
                status: Failed,
                error: None,
            },
        ));
        assert_eq!(
            ts,
            [Transition::RunEnded {
                last_at: 12_000_000_000,
                by: RunEnd::Terminated { at: 12_000_000_000 }
            }]
        );
    }

    #[test]
    fn an_iteration_with_open_phases_stays_open_when_the_stream_ends() {
        use Status::*;
        let mut st = State::new();
        st.apply(&ev(1.0, build("web", InProgress)));
        assert_eq!(
            st.stream_ended(),
            [Transition::RunEnded {
                last_at: 1_000_000_000,
                by: RunEnd::StreamEnded
            }]
        );
        assert_eq!(st.open_phases()["dev_loop"], 1);
    }

    #[test]
    fn build_streaks_keep_only_failing_artifacts_and_are_bounded() {
        use Status::*;
        let mut st = State::new();
        st.apply(&ev(1.0, build("ok", Succeeded)));
        assert!(st.build_streaks.is_empty());
        let mut refused = 0;
        for i in 0..(MAX_OPEN + 5) {
            for t in st.apply(&ev(2.0, build(&format!("f{i}"), Failed))) {
                if t == Transition::Anomaly(Reason::TooManyOpen) {
                    refused += 1;
                }
            }
        }
        assert_eq!(st.build_streaks.len(), MAX_OPEN);
        assert!(refused >= 5, "{refused}");
        st.apply(&ev(3.0, build("f0", Succeeded)));
        assert_eq!(st.build_streaks.len(), MAX_OPEN - 1);
    }

    #[test]
    fn resources_past_the_tracking_limit_still_count_their_rollout() {
        use Status::*;
        let mut st = State::new();
        st.apply(&ev(1.0, check(InProgress)));
        for i in 0..MAX_OPEN {
            st.apply(&ev(2.0, res(&format!("r{i}"), InProgress)));
        }
        let ts = st.apply(&ev(5.0, res("past", Succeeded)));
        assert!(
            ts.contains(&Transition::Anomaly(Reason::TooManyOpen)),
            "{ts:?}"
        );
        let f = ts
            .iter()
            .find_map(|t| match t {
                Transition::Finished(f) => Some(f),
                _ => None,
            })
            .expect("the rollout is counted");
        assert_eq!(
            (f.phase, f.subject.as_deref(), f.outcome),
            (Phase::Resource, Some("past"), Outcome::Success)
        );
        assert_eq!(
            f.duration_seconds(),
            Some(4.0),
            "from the status check's start"
        );
    }

    #[test]
    fn a_failed_concurrent_build_ends_the_iteration_when_the_others_are_done() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(1.0, build("a", InProgress)),
            ev(1.0, build("b", InProgress)),
            ev(2.0, build("a", Failed)),
            ev(4.0, build("b", Succeeded)),
            ev(9.0, build("a", InProgress)),
        ]);
        let loops = only(&ts, Phase::DevLoop);
        assert_eq!(loops, [(Phase::DevLoop, None, Outcome::Failure, Some(3.0))]);
        assert!(anomalies(&ts).is_empty(), "{:?}", anomalies(&ts));
    }

    #[test]
    fn a_new_run_or_termination_ends_a_complete_derived_iteration() {
        use Status::*;
        for end in [
            EventKind::Meta { version: None },
            EventKind::Termination {
                status: Failed,
                error: None,
            },
        ] {
            let (_, ts) = fold(&[
                ev(1.0, build("a", InProgress)),
                ev(3.0, build("a", Succeeded)),
                ev(10.0, end),
            ]);
            let loops = only(&ts, Phase::DevLoop);
            assert_eq!(loops, [(Phase::DevLoop, None, Outcome::Success, Some(2.0))]);
        }
    }

    // === issue 9: Skaffold's own sequences (runner/dev.go, build/scheduler.go,
    // deploy/deploy_mux.go, cmd/skaffold/app/cmd/dev.go) ===

    fn failing(kind: EventKind, code: &str) -> EventKind {
        let e = Some(ErrorInfo {
            code: Some(code.into()),
            message: format!("{code} happened"),
        });
        match kind {
            EventKind::Build {
                artifact, status, ..
            } => EventKind::Build {
                artifact,
                status,
                error: e,
            },
            EventKind::Deploy { status, .. } => EventKind::Deploy { status, error: e },
            EventKind::StatusCheck { status, .. } => EventKind::StatusCheck { status, error: e },
            EventKind::ResourceStatus {
                resource, status, ..
            } => EventKind::ResourceStatus {
                resource,
                status,
                error: e,
            },
            EventKind::FileSync {
                image,
                file_count,
                status,
                ..
            } => EventKind::FileSync {
                image,
                file_count,
                status,
                error: e,
            },
            EventKind::DevLoop {
                iteration, status, ..
            } => EventKind::DevLoop {
                iteration,
                status,
                error: e,
            },
            other => other,
        }
    }

    /// `skaffold_errors_total` increments: (phase, code).
    fn failures(ts: &[Transition]) -> Vec<(Phase, Option<String>)> {
        ts.iter()
            .filter_map(|t| match t {
                Transition::Failure { phase, code, .. } => Some((*phase, code.clone())),
                _ => None,
            })
            .collect()
    }

    /// (iteration, kind, result, duration, error code) of every dev loop.
    type LoopRow = (Option<i64>, LoopKind, Outcome, Option<f64>, Option<String>);
    fn loops(ts: &[Transition]) -> Vec<LoopRow> {
        ts.iter()
            .filter_map(|t| match t {
                Transition::Finished(f) if f.phase == Phase::DevLoop => Some((
                    f.iteration,
                    f.loop_kind.unwrap(),
                    f.outcome,
                    f.duration_seconds().map(|d| (d * 1000.0).round() / 1000.0),
                    f.error.as_ref().and_then(|e| e.code.clone()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_sync_failing_four_times_is_one_failed_iteration_and_four_failed_syncs() {
        use Status::*;
        // v2.17+ `doDev`: each attempt (1 + 3 retries) sends FileSync In Progress /
        // Failed and DevLoop Failed; then the iteration goes on and succeeds.
        let mut seq = vec![ev(0.0, dev(3, InProgress))];
        for n in 0..4 {
            let t = 1.0 + f64::from(n) * 2.0;
            seq.push(ev(t, sync("web:abc", 2, InProgress)));
            seq.push(ev(
                t + 0.5,
                failing(sync("web:abc", 2, Failed), "SYNC_UNKNOWN"),
            ));
            seq.push(ev(t + 0.5, failing(dev(3, Failed), "SYNC_UNKNOWN")));
        }
        seq.push(ev(9.0, dev(3, Succeeded)));
        let (_, ts) = fold(&seq);
        assert_eq!(
            loops(&ts),
            [(
                Some(3),
                LoopKind::Sync,
                Outcome::Failure,
                Some(1.5),
                Some("SYNC_UNKNOWN".into())
            )]
        );
        let syncs = only(&ts, Phase::FileSync);
        assert_eq!(syncs.len(), 4);
        assert!(
            syncs
                .iter()
                .all(|f| f.2 == Outcome::Failure && f.3 == Some(0.5))
        );
        assert_eq!(
            failures(&ts),
            vec![(Phase::FileSync, Some("SYNC_UNKNOWN".into())); 4]
        );
        assert!(anomalies(&ts).is_empty(), "{:?}", anomalies(&ts));
        // The retries belong to iteration 3 (their spans go under its trace).
        let started: Vec<_> = ts
            .iter()
            .filter_map(|t| match t {
                Transition::Started {
                    phase: Phase::FileSync,
                    iteration,
                    ..
                } => Some(*iteration),
                _ => None,
            })
            .collect();
        assert_eq!(started, [Some(3); 4]);
    }

    #[test]
    fn a_sync_that_succeeds_on_retry_leaves_a_failed_iteration() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, sync("web", 1, InProgress)),
            ev(1.2, failing(sync("web", 1, Failed), "SYNC_UNKNOWN")),
            ev(1.2, failing(dev(1, Failed), "SYNC_UNKNOWN")),
            ev(2.0, sync("web", 1, InProgress)),
            ev(2.3, sync("web", 1, Succeeded)),
            ev(2.3, dev(1, Succeeded)),
            ev(5.0, dev(2, InProgress)),
            ev(5.5, dev(2, Succeeded)),
        ]);
        let l = loops(&ts);
        assert_eq!(l[0].2, Outcome::Failure);
        assert_eq!(l[0].3, Some(1.2));
        assert_eq!(l[1].2, Outcome::Success);
        assert_eq!(l.len(), 2);
        assert!(anomalies(&ts).is_empty());
    }

    #[test]
    fn a_terminal_event_of_another_iteration_is_still_an_anomaly() {
        use Status::*;
        let (_, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, dev(1, Succeeded)),
            ev(2.0, dev(7, Failed)),
        ]);
        assert_eq!(loops(&ts).len(), 2);
        assert_eq!(anomalies(&ts), ["terminal_without_start"]);
    }

    #[test]
    fn the_first_loop_of_every_run_is_initial() {
        use Status::*;
        // A config reload: a new runner sends a new MetaEvent; v1 restarts at 0.
        let (_, ts) = fold(&[
            ev(0.0, EventKind::Meta { version: None }),
            ev(1.0, dev(0, InProgress)),
            ev(2.0, dev(0, Succeeded)),
            ev(3.0, dev(1, InProgress)),
            ev(4.0, dev(1, Succeeded)),
            ev(5.0, EventKind::Meta { version: None }),
            ev(6.0, dev(0, InProgress)),
            ev(8.0, dev(0, Succeeded)),
        ]);
        let kinds: Vec<_> = loops(&ts).into_iter().map(|l| l.1).collect();
        assert_eq!(
            kinds,
            [LoopKind::Initial, LoopKind::Redeploy, LoopKind::Initial]
        );
    }

    #[test]
    fn ctrl_c_during_a_build_cancels_the_build_and_the_iteration() {
        use Status::*;
        let mut st = State::new();
        st.apply(&ev(0.0, failing(build("web", Failed), "BUILD_USER_ERROR")));
        let ts: Vec<_> = [
            ev(1.0, dev(2, InProgress)),
            ev(1.1, build("web", InProgress)),
            // Decoded from v1 `Failed` + BUILD_CANCELLED, or v2 `Canceled`.
            ev(3.0, build("web", Canceled)),
            // Waiting for `web`: cancelled without a start.
            ev(3.0, build("app", Canceled)),
            ev(3.1, failing(dev(2, Failed), "BUILD_CANCELLED")),
        ]
        .iter()
        .flat_map(|e| st.apply(e))
        .collect();
        let builds = only(&ts, Phase::Build);
        assert_eq!(
            builds,
            [
                (
                    Phase::Build,
                    Some("web".into()),
                    Outcome::Canceled,
                    Some(1.9)
                ),
                (Phase::Build, Some("app".into()), Outcome::Canceled, None),
            ]
        );
        assert_eq!(st.build_streaks.get(&key("web")), Some(&1), "unchanged");
        assert_eq!(
            loops(&ts),
            [(
                Some(2),
                LoopKind::Rebuild,
                Outcome::Canceled,
                Some(2.1),
                None
            )]
        );
        assert!(failures(&ts).is_empty());
        assert!(anomalies(&ts).is_empty(), "{:?}", anomalies(&ts));
    }

    #[test]
    fn a_failure_counts_once_at_the_status_check_with_its_first_failed_resource() {
        use Status::*;
        let (st, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, deploy(InProgress)),
            ev(2.0, deploy(Succeeded)),
            ev(2.0, check(InProgress)),
            ev(
                3.0,
                failing(res("deployment/a", Failed), "STATUSCHECK_IMAGE_PULL_ERR"),
            ),
            ev(
                3.5,
                failing(
                    res("deployment/b", Failed),
                    "STATUSCHECK_CONTAINER_TERMINATED",
                ),
            ),
            ev(4.0, failing(check(Failed), "STATUSCHECK_INTERNAL_ERROR")),
            ev(4.1, failing(dev(1, Failed), "STATUSCHECK_INTERNAL_ERROR")),
        ]);
        assert_eq!(
            failures(&ts),
            [(
                Phase::StatusCheck,
                Some("STATUSCHECK_IMAGE_PULL_ERR".into())
            )]
        );
        assert_eq!(
            loops(&ts)[0].4.as_deref(),
            Some("STATUSCHECK_IMAGE_PULL_ERR")
        );
        assert_eq!(st.deploy_streak(), 0, "the deploy itself succeeded");
    }

    #[test]
    fn a_status_check_inside_the_deployer_fails_the_deploy_but_counts_once() {
        use Status::*;
        // `--iterative-status-check` or deploy hooks: the check runs before v1's
        // deploy end, and its failure fails the deploy (runner/deploy.go).
        let (st, ts) = fold(&[
            ev(0.0, dev(1, InProgress)),
            ev(1.0, deploy(InProgress)),
            ev(1.5, check(InProgress)),
            ev(
                3.0,
                failing(res("deployment/a", Failed), "STATUSCHECK_IMAGE_PULL_ERR"),
            ),
            ev(3.0, failing(check(Failed), "STATUSCHECK_IMAGE_PULL_ERR")),
            ev(3.1, failing(deploy(Failed), "DEPLOY_UNKNOWN")),
            ev(3.2, failing(dev(1, Failed), "STATUSCHECK_IMAGE_PULL_ERR")),
        ]);
        assert_eq!(
            failures(&ts),
            [(
                Phase::StatusCheck,
                Some("STATUSCHECK_IMAGE_PULL_ERR".into())
            )]
        );
        let deploys = only(&ts, Phase::Deploy);
        assert_eq!(
            deploys,
            [(Phase::Deploy, None, Outcome::Failure, Some(2.1))]
        );
        assert_eq!(st.deploy_streak(), 1);
        // A later deploy of its own failing is counted again.
        let mut st = st;
        let more: Vec<_> = [
            ev(5.0, dev(2, InProgress)),
            ev(5.1, deploy(InProgress)),
            ev(5.5, failing(deploy(Failed), "DEPLOY_KUBECTL_USER_ERR")),
        ]
        .iter()
        .flat_map(|e| st.apply(e))
        .collect();
        assert_eq!(
            failures(&more),
            [(Phase::Deploy, Some("DEPLOY_KUBECTL_USER_ERR".into()))]
        );
    }

    #[test]
    fn an_iteration_failing_without_a_failed_phase_is_a_failure_of_its_own() {
        use Status::*;
        // `Dev`: watching the files failed (DevLoopFailedWithErrorCode).
        let (_, ts) = fold(&[
            ev(0.0, dev(0, InProgress)),
            ev(1.0, failing(dev(0, Failed), "DEVINIT_REGISTER_BUILD_DEPS")),
        ]);
        assert_eq!(
            failures(&ts),
            [(Phase::DevLoop, Some("DEVINIT_REGISTER_BUILD_DEPS".into()))]
        );
    }
}
