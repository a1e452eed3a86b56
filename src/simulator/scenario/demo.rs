//! The demo's dev session: a realistic random `skaffold dev` (initial loop, syncs,
//! rebuilds, redeploys, occasional failures and config reloads) in two flavours, and
//! the player that runs it forever against a [`Simulator`].

use super::{DEFAULT_RUN_ID, Position, Script, now_nanos, play};
use crate::pb::enums::StatusCode;
use crate::simulator::Simulator;

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
