//! Skaffold's newest status code, as Skaffold emits it, over every source: a dev loop
//! whose render fails because Skaffold could not install its Helm plugin
//! (`helm/bin.go` → `helm.PluginErr` → `RENDER_HELM_PLUGIN_ERR = 1410`, v2.17+).
//!
//! `runner/dev.go` then sends, for the iteration: over v1 a `DevLoopEvent` `Failed`
//! whose error carries the render phase's code (`event.DevLoopFailedInPhase`,
//! entry `Update failed with error code RENDER_HELM_PLUGIN_ERR`); over v2 the
//! `Render` task `Failed` (`runner/render.go`) and the `DevLoop` task `Failed`, both
//! with `errCode` 1410. Gateway and event-log JSON name the code
//! (`"errCode": "RENDER_HELM_PLUGIN_ERR"`), so a decoder without the value loses it.

mod support;

use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::pb::{v1, v2};
use skaffold_exporter::simulator::scenario::Script;
use support::every_source::every_source;
use support::sample;

const MESSAGE: &str = "Failed to install Helm plugin: exit status 1";

fn render_failure_session() -> Script {
    let v1_err = Some(v1::ActionableErr {
        err_code: C::RenderHelmPluginErr as i32,
        message: MESSAGE.into(),
        suggestions: vec![],
    });
    let v2_err = Some(v2::ActionableErr {
        err_code: C::RenderHelmPluginErr as i32,
        message: MESSAGE.into(),
        suggestions: vec![],
    });
    // v2 counts iterations one ahead of v1 (DevLoop-2 is v1's iteration 1).
    let task = |name: &str, status: &str, err: Option<v2::ActionableErr>| {
        v2::event::EventType::TaskEvent(v2::TaskEvent {
            id: format!("{name}-2"),
            task: name.into(),
            description: String::new(),
            iteration: 2,
            status: status.into(),
            actionable_err: err,
        })
    };
    let mut s = Script::new();
    s.meta(0, "v2.17.0")
        .dev_loop(1000, 0, "In Progress")
        .build(500, "web", "In Progress", C::Ok)
        .build(2500, "web", "Complete", C::Ok)
        .deploy(100, "In Progress", C::Ok)
        .deploy(800, "Complete", C::Ok)
        .status_check(100, "Started", C::Ok)
        .status_check(100, "Succeeded", C::Ok)
        .dev_loop(50, 0, "Succeeded")
        .dev_loop(2000, 1, "In Progress")
        .build(100, "web", "In Progress", C::Ok)
        .build(1200, "web", "Complete", C::Ok)
        // The Build task ends with the builds; the render starts and fails.
        .push_v2(
            0,
            vec![
                task("Build", "Succeeded", None),
                task("Render", "InProgress", None),
            ],
        )
        .push_v2(300, vec![task("Render", "Failed", v2_err.clone())])
        .push(
            0,
            v1::event::EventType::DevLoopEvent(v1::DevLoopEvent {
                iteration: 1,
                status: "Failed".into(),
                err: v1_err,
            }),
            "Update failed with error code RENDER_HELM_PLUGIN_ERR",
        )
        .push_v2(0, vec![task("DevLoop", "Failed", v2_err)]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_plugin_render_failure_is_counted_under_its_own_code_over_every_source() {
    let script = render_failure_session();
    for (source, text) in every_source(&script).await {
        let s = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
        assert_eq!(
            s(
                "skaffold_dev_loops_total",
                &[("kind", "rebuild"), ("result", "failure")]
            ),
            Some(1.0),
            "{source}"
        );
        assert_eq!(
            s(
                "skaffold_dev_loops_total",
                &[("kind", "initial"), ("result", "success")]
            ),
            Some(1.0),
            "{source}"
        );
        support::assert_no_invalid_events(&text, source);
        // Every failure counted carries Skaffold's code by name; none is UNKNOWN.
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("skaffold_errors_total{") && !l.ends_with(" 0"))
            .collect();
        assert!(!errors.is_empty(), "{source}: no error counted\n{text}");
        for line in &errors {
            assert!(
                line.contains("code=\"RENDER_HELM_PLUGIN_ERR\""),
                "{source}: {line}"
            );
        }
        if source.ends_with("v1") {
            // v1 has no render phase: the dev loop's failure carries the code.
            assert_eq!(
                s(
                    "skaffold_errors_total",
                    &[("phase", "dev_loop"), ("code", "RENDER_HELM_PLUGIN_ERR")]
                ),
                Some(1.0),
                "{source}"
            );
        } else {
            // v2 reports the render itself. (Which phases a failure is counted under
            // in skaffold_errors_total is the one-failure-counts-once rule of issue 9
            // item 5; only the code is this test's business.)
            assert_eq!(
                s("skaffold_renders_total", &[("result", "failure")]),
                Some(1.0),
                "{source}"
            );
        }
    }
}
