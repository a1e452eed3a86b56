//! The summary table of `replay`: one row per dev-loop iteration (run, kind, result,
//! the phase that failed and Skaffold's error code, the total and per-phase
//! durations from Skaffold's timestamps, the slowest artifact), collected from the
//! fold's transitions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::core::{Event, LoopKind, Outcome, Phase, Transition};
use crate::pipeline::TransitionObserver;

/// One dev-loop iteration in the summary.
#[derive(Debug, Clone, Default)]
struct Row {
    kind: Option<LoopKind>,
    result: Option<Outcome>,
    total: Option<f64>,
    /// The first failure in the iteration: the phase that failed, and Skaffold's
    /// error code.
    failed: Option<(Phase, Option<String>)>,
    build: Option<f64>,
    deploy: Option<f64>,
    status_check: Option<f64>,
    sync: Option<f64>,
    slowest: Option<(String, f64)>,
}

/// Collects per-iteration figures from the transitions.
#[derive(Debug, Default)]
pub struct Summary {
    run: u32,
    rows: BTreeMap<(u32, i64), Row>,
    /// The iteration running now (failures belong to it).
    current: Option<(u32, i64)>,
}

fn add(slot: &mut Option<f64>, d: Option<f64>) {
    if let Some(d) = d {
        *slot = Some(slot.unwrap_or(0.0) + d);
    }
}

impl Summary {
    fn observe(&mut self, t: &Transition) {
        match t {
            Transition::RunStarted { .. } => {
                self.run += 1;
                self.current = None;
            }
            Transition::Started {
                phase: Phase::DevLoop,
                iteration: Some(i),
                ..
            } => {
                // Events before any MetaEvent are run 1 (a later one starts run 2).
                self.run = self.run.max(1);
                let key = (self.run, *i);
                self.rows.entry(key).or_default();
                self.current = Some(key);
            }
            Transition::Failure { phase, code, .. } => {
                if let Some(row) = self.current.and_then(|k| self.rows.get_mut(&k))
                    && row.failed.is_none()
                {
                    row.failed = Some((*phase, code.clone()));
                }
            }
            Transition::Finished(f) => {
                let Some(iteration) = f.iteration else {
                    return;
                };
                self.run = self.run.max(1);
                let run = self.run;
                let d = f.duration_seconds();
                let row = self.rows.entry((run, iteration)).or_default();
                match f.phase {
                    Phase::DevLoop => {
                        row.kind = f.loop_kind;
                        row.result = Some(f.outcome);
                        row.total = d;
                        if f.outcome == Outcome::Failure && row.failed.is_none() {
                            let code = f.error.as_ref().and_then(|e| e.code.clone());
                            row.failed = Some((Phase::DevLoop, code));
                        }
                    }
                    Phase::Build => {
                        add(&mut row.build, d);
                        if let (Some(d), Some(a)) = (d, &f.subject)
                            && row.slowest.as_ref().is_none_or(|(_, s)| d > *s)
                        {
                            row.slowest = Some((a.clone(), d));
                        }
                    }
                    Phase::Deploy => add(&mut row.deploy, d),
                    Phase::StatusCheck => add(&mut row.status_check, d),
                    Phase::FileSync => add(&mut row.sync, d),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The table: one row per (run, iteration), durations in seconds from Skaffold's
    /// timestamps (phase columns are sums over the iteration; `-` = did not run). A
    /// failed iteration names the phase that failed first and Skaffold's error code
    /// (`-`: Skaffold sent none).
    pub fn table(&self) -> String {
        let secs = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.3}"));
        let mut rows = vec![
            [
                "run",
                "iteration",
                "kind",
                "result",
                "failed_phase",
                "error_code",
                "total_s",
                "build_s",
                "deploy_s",
                "status_check_s",
                "sync_s",
                "slowest_artifact",
            ]
            .map(str::to_owned),
        ];
        for ((run, iteration), r) in &self.rows {
            rows.push([
                run.to_string(),
                iteration.to_string(),
                r.kind.map_or("-", LoopKind::as_str).to_owned(),
                r.result.map_or("in-progress", Outcome::as_str).to_owned(),
                r.failed
                    .as_ref()
                    .filter(|_| r.result == Some(Outcome::Failure))
                    .map_or("-", |(p, _)| p.as_str())
                    .to_owned(),
                r.failed
                    .as_ref()
                    .filter(|_| r.result == Some(Outcome::Failure))
                    .and_then(|(_, c)| c.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                secs(r.total),
                secs(r.build),
                secs(r.deploy),
                secs(r.status_check),
                secs(r.sync),
                r.slowest
                    .as_ref()
                    .map_or("-".to_owned(), |(a, d)| format!("{a} ({d:.3}s)")),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if self.rows.is_empty() {
            out.push_str("(no dev-loop iteration in the input)\n");
        }
        out
    }
}

/// Feeds a shared [`Summary`] from the pipeline's transitions.
pub(super) struct SummaryObserver(pub(super) Arc<Mutex<Summary>>);

impl TransitionObserver for SummaryObserver {
    fn observe(&mut self, _event: &Event, t: &Transition) {
        if let Ok(mut s) = self.0.lock() {
            s.observe(t);
        }
    }
}
