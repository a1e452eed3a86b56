//! Issue 12, item 9: the rollout metric's labels join with kube-state-metrics.
//! `skaffold_resource_rollout_duration_seconds` carries the resource's `namespace`,
//! `kind` and `name` (besides Skaffold's own `resource` string), for every form of
//! resource string Skaffold sends (read from its source after v2.24.0; see
//! `sink::resource`), the same over API v1 and v2, gRPC, the gateway and both
//! `--event-log-file` files.

mod support;

use skaffold_exporter::pb::enums::StatusCode as C;
use skaffold_exporter::pb::v2;
use skaffold_exporter::simulator::scenario::Script;
use support::every_source::every_source;

const CONFIG_CONNECTOR: &str = "infra:config-connector-resource/storage.cnrm.cloud.google.com/v1beta1, Kind=StorageBucket, Name=assets";
const POD: &str = "pod/web-6b8f7c9d4-x2x9z";

/// One status check over a Deployment in `default` (Skaffold leaves the namespace
/// out), a StatefulSet elsewhere that fails, the standalone pods, and a Config
/// Connector bucket. A pod of the Deployment reports a problem while it starts
/// (`resource/deployment.go` `fetchPods`: v1 and v2 `In Progress`); once the
/// Deployment rolled out, v2 alone also sends `Succeeded` for the pod (`CheckStatus`,
/// since v1.31).
fn status_check_session() -> Script {
    let mut s = Script::new();
    s.meta(0, "v2.24.0")
        .dev_loop(1000, 0, "In Progress")
        .deploy(100, "In Progress", C::Ok)
        .deploy(500, "Complete", C::Ok)
        .status_check(10, "Started", C::Ok);
    for r in [
        "deployment/web",
        "shop:statefulset/db",
        "pods",
        CONFIG_CONNECTOR,
    ] {
        s.resource(100, r, "In Progress", C::Ok);
    }
    s.resource(200, POD, "In Progress", C::StatuscheckContainerCreating)
        .resource(700, "deployment/web", "Succeeded", C::Ok);
    let deploy_task = format!("Deploy-{}", s.position().iteration + 1);
    s.push_v2(
        0,
        vec![v2::event::EventType::StatusCheckSubtaskEvent(
            v2::StatusCheckSubtaskEvent {
                id: POD.into(),
                task_id: deploy_task,
                resource: POD.into(),
                status: "Succeeded".into(),
                message: "Succeeded".into(),
                status_code: C::StatuscheckSuccess as i32,
                actionable_err: None,
            },
        )],
    )
    .resource(300, "pods", "Succeeded", C::Ok)
    .resource(400, CONFIG_CONNECTOR, "Succeeded", C::Ok)
    .resource(
        500,
        "shop:statefulset/db",
        "Failed",
        C::StatuscheckContainerTerminated,
    )
    .status_check(10, "Failed", C::StatuscheckContainerTerminated)
    .dev_loop(10, 0, "Failed");
    s
}

/// The `skaffold_resource_rollout_duration_seconds_count` lines, label sets as
/// exposed, sorted.
fn rollout_counts(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("skaffold_resource_rollout_duration_seconds_count"))
        .collect();
    lines.sort_unstable();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_are_labelled_by_namespace_kind_and_name_over_every_source() {
    let script = status_check_session();
    for (source, text) in every_source(&script).await {
        support::assert_no_invalid_events(&text, source);
        pretty_assertions::assert_eq!(
            rollout_counts(&text),
            [
                // the standalone pods: no namespace or name in Skaffold's string, so none here
                "skaffold_resource_rollout_duration_seconds_count{kind=\"Pod\",resource=\"pods\",result=\"success\"} 1",
                // `kind/name`: Skaffold leaves out the namespace `default`
                "skaffold_resource_rollout_duration_seconds_count{namespace=\"default\",kind=\"Deployment\",name=\"web\",resource=\"deployment/web\",result=\"success\"} 1",
                // a Config Connector object: its Kind and name from the GroupVersionKind string
                "skaffold_resource_rollout_duration_seconds_count{namespace=\"infra\",kind=\"StorageBucket\",name=\"assets\",resource=\"infra:config-connector-resource/storage.cnrm.cloud.google.com/v1beta1, Kind=StorageBucket, Name=assets\",result=\"success\"} 1",
                "skaffold_resource_rollout_duration_seconds_count{namespace=\"shop\",kind=\"StatefulSet\",name=\"db\",resource=\"shop:statefulset/db\",result=\"failure\"} 1",
            ],
            "{source}"
        );
        // The Deployment's pod (v2 reports it `Succeeded`) makes no series.
        assert!(!text.contains(POD), "{source}: {POD} has a series");
    }
}
