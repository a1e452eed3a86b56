//! Scripted Skaffold sessions: builders for v1 events with Skaffold's real status
//! strings and entry texts, a realistic random dev session for the demo, and a player
//! that emits a script into a [`Simulator`] with Skaffold-style timestamps.

use std::time::Duration;

use super::Simulator;
use crate::core::Nanos;
use crate::pb::enums::StatusCode;
use crate::pb::v1::{self, event::EventType as E};

/// One scripted event: emitted `after` the previous one (virtual time).
#[derive(Debug, Clone)]
pub struct Step {
    /// Virtual time since the previous step.
    pub after: Duration,
    /// The event.
    pub event: E,
    /// `LogEntry.entry` text.
    pub entry: String,
}

/// A script under construction.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

fn err(code: StatusCode, message: &str) -> Option<v1::ActionableErr> {
    Some(v1::ActionableErr {
        err_code: code as i32,
        message: message.to_owned(),
        suggestions: vec![],
    })
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event `after_ms` milliseconds (virtual) after the previous one.
    pub fn push(&mut self, after_ms: u64, event: E, entry: impl Into<String>) -> &mut Self {
        self.steps.push(Step {
            after: Duration::from_millis(after_ms),
            event,
            entry: entry.into(),
        });
        self
    }

    /// MetaEvent as Skaffold's runner sends it.
    pub fn meta(&mut self, after_ms: u64, version: &str) -> &mut Self {
        let text = format!(
            "Starting Skaffold: &{{Version:{version} ConfigVersion:skaffold/v4beta11 GitVersion: GitCommit:0000000 BuildDate:2026-01-01T00:00:00Z GoVersion:go1.22 Compiler:gc Platform:linux/amd64 User:}}"
        );
        self.push(
            after_ms,
            E::MetaEvent(v1::MetaEvent {
                entry: text,
                metadata: None,
            }),
            "",
        )
    }

    /// DevLoopEvent with Skaffold's v1.16+ entry texts.
    pub fn dev_loop(&mut self, after_ms: u64, iteration: i32, status: &str) -> &mut Self {
        let (entry, e) = match status {
            "In Progress" => ("Update initiated".to_owned(), None),
            "Succeeded" => ("Update succeeded".to_owned(), None),
            _ => (
                "Update failed with error code DEVINIT_REGISTER_BUILD_DEPS".to_owned(),
                err(StatusCode::UnknownError, "iteration failed"),
            ),
        };
        self.push(
            after_ms,
            E::DevLoopEvent(v1::DevLoopEvent {
                iteration,
                status: status.into(),
                err: e,
            }),
            entry,
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
        self.push(
            after_ms,
            E::BuildEvent(v1::BuildEvent {
                artifact: artifact.into(),
                status: status.into(),
                err: if failed {
                    "build failed".into()
                } else {
                    String::new()
                },
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "docker build returned exit code 1")
                } else {
                    None
                },
                ..Default::default()
            }),
            entry,
        )
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
        self.push(
            after_ms,
            E::DeployEvent(v1::DeployEvent {
                status: status.into(),
                err: if failed {
                    "kubectl apply failed".into()
                } else {
                    String::new()
                },
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "kubectl apply: exit status 1")
                } else {
                    None
                },
            }),
            entry,
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
        self.push(
            after_ms,
            E::StatusCheckEvent(v1::StatusCheckEvent {
                status: status.into(),
                err_code: if failed { code as i32 } else { 0 },
                actionable_err: if failed {
                    err(code, "1/2 deployment(s) failed")
                } else {
                    None
                },
                ..Default::default()
            }),
            entry,
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
        let code = match status {
            "Succeeded" => StatusCode::StatuscheckSuccess as i32,
            "Failed" => code as i32,
            _ => 0,
        };
        self.push(
            after_ms,
            E::ResourceStatusCheckEvent(v1::ResourceStatusCheckEvent {
                resource: resource.into(),
                status: status.into(),
                message: if status == "Succeeded" {
                    "Succeeded".into()
                } else {
                    "Waiting for rollout".into()
                },
                status_code: code,
                actionable_err: if failed {
                    err(
                        StatusCode::try_from(code).unwrap_or(StatusCode::UnknownError),
                        "container crashed",
                    )
                } else {
                    None
                },
                ..Default::default()
            }),
            entry,
        )
    }

    /// FileSyncEvent.
    pub fn sync(&mut self, after_ms: u64, image: &str, files: i32, status: &str) -> &mut Self {
        let verb = match status {
            "In Progress" => "started",
            "Succeeded" => "succeeded",
            _ => "failed",
        };
        self.push(
            after_ms,
            E::FileSyncEvent(v1::FileSyncEvent {
                file_count: files,
                image: image.into(),
                status: status.into(),
                ..Default::default()
            }),
            format!("File sync {verb} for {files} files for {image}"),
        )
    }

    /// PortEvent for a service forward.
    pub fn port(&mut self, after_ms: u64, local_port: i32, service: &str) -> &mut Self {
        self.push(
            after_ms,
            E::PortEvent(v1::PortEvent {
                local_port,
                namespace: "default".into(),
                resource_type: "service".into(),
                resource_name: service.into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            }),
            format!("Forwarding container  to local port {local_port}"),
        )
    }

    /// Turns the script into log entries stamped from `start` (virtual time).
    pub fn entries(&self, start: Nanos) -> Vec<v1::LogEntry> {
        let mut t = start;
        self.steps
            .iter()
            .map(|s| {
                t += i64::try_from(s.after.as_nanos()).unwrap_or(i64::MAX);
                entry_at(t, s)
            })
            .collect()
    }
}

fn entry_at(t: Nanos, s: &Step) -> v1::LogEntry {
    v1::LogEntry {
        timestamp: Some(prost_types::Timestamp {
            seconds: t.div_euclid(1_000_000_000),
            nanos: t.rem_euclid(1_000_000_000) as i32,
        }),
        event: Some(v1::Event {
            event_type: Some(s.event.clone()),
        }),
        entry: s.entry.clone(),
    }
}

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

/// One later iteration: a sync, a rebuild or a redeploy, with occasional failures.
pub fn next_loop(rng: &mut fastrand::Rng, flavor: Flavor, iteration: i32) -> Script {
    let mut s = Script::new();
    s.dev_loop(rng.u64(2000..6000), iteration, "In Progress");
    let roll = rng.u32(0..100);
    if roll < 45 && flavor == Flavor::Normal {
        let image = DEMO_ARTIFACTS[rng.usize(0..2)];
        let files = rng.i32(1..12);
        s.sync(20, image, files, "In Progress")
            .sync(rng.u64(150..900), image, files, "Succeeded")
            .dev_loop(10, iteration, "Succeeded");
        return s;
    }
    if roll < 85 {
        let a = DEMO_ARTIFACTS[rng.usize(0..DEMO_ARTIFACTS.len())];
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
    s.deploy(20, "In Progress", StatusCode::Ok);
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
    s.dev_loop(10, iteration, "Succeeded");
}

/// Plays a script into `sim`: waits each step's `after` scaled by `time_scale`
/// (0 = no waiting) and stamps it with `clock` advanced by the unscaled `after`.
pub async fn play(sim: &Simulator, script: &Script, clock: &mut Nanos, time_scale: f64) {
    for step in &script.steps {
        if time_scale > 0.0 {
            tokio::time::sleep(step.after.mul_f64(time_scale)).await;
        }
        *clock += i64::try_from(step.after.as_nanos()).unwrap_or(i64::MAX);
        sim.emit(entry_at(*clock, step));
    }
}

/// Now, in nanoseconds since the epoch (for stamping live demo events).
pub fn now_nanos() -> Nanos {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Plays the demo forever: the initial loop, then random iterations.
pub async fn run_demo(sim: Simulator, flavor: Flavor, time_scale: f64, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut clock = now_nanos();
    play(
        &sim,
        &initial_loop(&mut rng, flavor),
        &mut clock,
        time_scale,
    )
    .await;
    for iteration in 1.. {
        let script = next_loop(&mut rng, flavor, iteration);
        play(&sim, &script, &mut clock, time_scale).await;
        // Keep Skaffold's clock near the wall clock when time is scaled.
        clock = clock.max(now_nanos());
    }
}
