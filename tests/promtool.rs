//! `promtool check metrics` (Prometheus's own linter, from the Debian package) reads
//! our exposition after a session that touches every metric family. promtool does
//! not parse OpenMetrics, so it gets the classic text format that /metrics serves to
//! scrapers that do not ask for OpenMetrics.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use skaffold_exporter::app;
use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::simulator::Simulator;
use skaffold_exporter::simulator::scenario::Script;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    // Under CI the tool is installed by .ci/run; a missing promtool is a failure there.
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is not installed (apt-get install prometheus)"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_the_exposition() {
    let Some(promtool) = promtool() else {
        eprintln!("skipping: promtool not installed (apt-get install prometheus)");
        return;
    };
    let sim = Simulator::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(sim.clone().serve(listener, rx));
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(10, 0, "In Progress")
        .build(10, "web", "In Progress", C::Ok)
        .build(900, "web", "Failed", C::BuildUserError)
        .dev_loop(10, 0, "Failed")
        .dev_loop(10, 1, "In Progress")
        .build(10, "web", "In Progress", C::Ok)
        .build(900, "web", "Complete", C::Ok)
        .deploy(10, "In Progress", C::Ok)
        .deploy(300, "Complete", C::Ok)
        .status_check(10, "Started", C::Ok)
        .resource(10, "ns:deployment/web", "In Progress", C::Ok)
        .resource(800, "ns:deployment/web", "Succeeded", C::Ok)
        .status_check(10, "Succeeded", C::Ok)
        .port(10, 9000, "web")
        .dev_loop(10, 1, "Succeeded")
        .dev_loop(10, 2, "In Progress")
        .sync(10, "web", 2, "In Progress")
        .sync(100, "web", 2, "Succeeded")
        .dev_loop(10, 2, "Succeeded");
    for e in s.entries(1_700_000_000_000_000_000) {
        sim.emit(e);
    }
    let exp = app::start(support::settings(addr)).await.unwrap();
    let mut text = String::new();
    for _ in 0..500 {
        text = support::http_get(exp.http_addr, "/metrics", Some("text/plain;version=0.0.4"))
            .await
            .2;
        if support::sample(
            &text,
            "skaffold_dev_loops_total",
            &[("kind", "sync"), ("result", "success")],
        ) == Some(1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for family in [
        "skaffold_builds_total",
        "skaffold_build_duration_seconds_bucket",
        "skaffold_deploy_duration_seconds_sum",
        "skaffold_status_check_duration_seconds_count",
        "skaffold_resource_rollout_duration_seconds_bucket",
        "skaffold_file_sync_duration_seconds_sum",
        "skaffold_synced_files_total",
        "skaffold_dev_loop_duration_seconds_bucket",
        "skaffold_errors_total",
        "skaffold_build_consecutive_failures",
        "skaffold_info",
    ] {
        assert!(
            support::series_count(&text, family) > 0,
            "{family} missing:\n{text}"
        );
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n---\n{text}"
    );
    exp.shutdown().await;
}
