//! Every attribute key the exporter emits on spans, span events and the OTLP
//! resource, in one place. Keys follow the OpenTelemetry semantic conventions
//! [`VERSION`] (CI/CD, VCS, Kubernetes, container, error, service, deployment and user
//! attributes); `skaffold.*` keys are our own, for what the conventions do not cover.
//!
//! Changing a key here changes what users' dashboards and trace queries see: treat
//! this module as a public contract, like the metric names in `sink::contract`.

/// The semantic-conventions release the keys below follow.
pub const VERSION: &str = "1.40.0";
/// Its schema URL, recorded on the instrumentation scope of every span.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.40.0";

// === CI/CD (docs/cicd, registry `cicd.*`) ===

/// `RUN`, `BUILD` or `SYNC`: what the dev-loop iteration did (root span).
pub const CICD_PIPELINE_ACTION_NAME: &str = "cicd.pipeline.action.name";
/// `--pipeline-name` (default: the git repository's name, else `skaffold`).
pub const CICD_PIPELINE_NAME: &str = "cicd.pipeline.name";
/// `<run>-<iteration>`: Skaffold's run and the iteration (root span).
pub const CICD_PIPELINE_RUN_ID: &str = "cicd.pipeline.run.id";
/// `success`, `failure`, `error`, `cancellation` (root span).
pub const CICD_PIPELINE_RESULT: &str = "cicd.pipeline.result";
/// The task's name, as the span's name (`build leeroy-web`, `deploy`, ...).
pub const CICD_PIPELINE_TASK_NAME: &str = "cicd.pipeline.task.name";
/// The task's run id: `<run>-<iteration>-<span id>`.
pub const CICD_PIPELINE_TASK_RUN_ID: &str = "cicd.pipeline.task.run.id";
/// `build`, `test`, `deploy` (well-known) or our custom `status_check`, `rollout`,
/// `sync`, `render`, `verify`, `exec`.
pub const CICD_PIPELINE_TASK_TYPE: &str = "cicd.pipeline.task.type";
/// Same values as [`CICD_PIPELINE_RESULT`], per task.
pub const CICD_PIPELINE_TASK_RUN_RESULT: &str = "cicd.pipeline.task.run.result";

// === errors (docs/general/recording-errors.md) ===

/// Skaffold's StatusCode name (`BUILD_USER_ERROR`, ...), else `_OTHER`.
pub const ERROR_TYPE: &str = "error.type";
/// The fallback value of [`ERROR_TYPE`].
pub const ERROR_TYPE_OTHER: &str = "_OTHER";

// === containers and Kubernetes ===

/// The artifact's image name (build spans) or the synced image's name, without tag
/// and digest (sync spans; see `sink::image`).
pub const CONTAINER_IMAGE_NAME: &str = "container.image.name";
/// The synced image's tag, as a one-element string array (sync spans, when the
/// reference Skaffold sent has a tag).
pub const CONTAINER_IMAGE_TAGS: &str = "container.image.tags";
/// `name@digest` of the synced image, as a one-element string array (sync spans, when
/// the reference Skaffold sent has a digest).
pub const CONTAINER_IMAGE_REPO_DIGESTS: &str = "container.image.repo_digests";
/// Namespace of a status-checked Kubernetes resource (`default` where Skaffold's
/// `kind/name` leaves it out; see `sink::resource`).
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
/// `k8s.<kind>.name` for the kinds the conventions define (deployment, statefulset,
/// daemonset, replicaset, job, cronjob, pod); see [`k8s_kind_name_key`].
pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_STATEFULSET_NAME: &str = "k8s.statefulset.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_DAEMONSET_NAME: &str = "k8s.daemonset.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_REPLICASET_NAME: &str = "k8s.replicaset.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_JOB_NAME: &str = "k8s.job.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_CRONJOB_NAME: &str = "k8s.cronjob.name";
/// See [`K8S_DEPLOYMENT_NAME`].
pub const K8S_POD_NAME: &str = "k8s.pod.name";

/// The semconv key naming a resource of `kind`, if the conventions define one.
pub fn k8s_kind_name_key(kind: &str) -> Option<&'static str> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deployments" => K8S_DEPLOYMENT_NAME,
        "statefulset" | "statefulsets" => K8S_STATEFULSET_NAME,
        "daemonset" | "daemonsets" => K8S_DAEMONSET_NAME,
        "replicaset" | "replicasets" => K8S_REPLICASET_NAME,
        "job" | "jobs" => K8S_JOB_NAME,
        "cronjob" | "cronjobs" => K8S_CRONJOB_NAME,
        "pod" | "pods" => K8S_POD_NAME,
        _ => return None,
    })
}

// === resource ===

/// `skaffold` unless `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
pub const SERVICE_NAME: &str = "service.name";
/// A random id per exporter process (Prometheus' `instance` after OTLP ingestion).
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// The exporter's version.
pub const SERVICE_VERSION: &str = "service.version";
/// `development`.
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
/// The git repository's name (last path element of `remote.origin.url`, else the
/// checkout's directory name).
pub const VCS_REPOSITORY_NAME: &str = "vcs.repository.name";
/// The checked-out branch (the spans' resource only: never on metrics).
pub const VCS_REF_HEAD_NAME: &str = "vcs.ref.head.name";
/// The checked-out commit (the spans' resource only: never on metrics).
pub const VCS_REF_HEAD_REVISION: &str = "vcs.ref.head.revision";
/// Salted SHA-256 of the OS user name, or of the process's user (`/etc/passwd`
/// name, else `uid:<n>`) when `$USER` is unset (unless `--user-name` is given).
pub const USER_HASH: &str = "user.hash";
/// The developer's name, only when given explicitly with `--user-name`.
pub const USER_NAME: &str = "user.name";

// === skaffold.* (ours) ===

/// Dev-loop iteration (0 is the initial loop).
pub const SKAFFOLD_ITERATION: &str = "skaffold.iteration";
/// Skaffold's version, from its MetaEvent.
pub const SKAFFOLD_VERSION: &str = "skaffold.version";
/// `initial`, `rebuild`, `sync`, `redeploy`: the `kind` label of `skaffold_dev_loops_total`.
pub const SKAFFOLD_LOOP_KIND: &str = "skaffold.loop.kind";
/// Files synced (file-sync spans).
pub const SKAFFOLD_SYNC_FILE_COUNT: &str = "skaffold.sync.file_count";
/// The resource as Skaffold names it (`namespace:kind/name`, `kind/name`, `pods`, a
/// Cloud Run name), on rollout spans.
pub const SKAFFOLD_RESOURCE: &str = "skaffold.resource";
/// The resource's Kind as in a manifest (`Deployment`, `StatefulSet`, `Pod`, ...), on
/// rollout spans.
pub const SKAFFOLD_RESOURCE_KIND: &str = "skaffold.resource.kind";
/// The resource's name, on rollout spans.
pub const SKAFFOLD_RESOURCE_NAME: &str = "skaffold.resource.name";
/// Subtask id (API v2 deployers, testers, ...), on subtask spans.
pub const SKAFFOLD_SUBTASK_ID: &str = "skaffold.subtask.id";
/// Why the exporter ended a span Skaffold never ended: `disconnected`, `new_run`,
/// `terminated`. Absent on spans Skaffold ended itself.
pub const SKAFFOLD_SPAN_END_REASON: &str = "skaffold.span.end_reason";

// === span events ===

/// Name of the root-span event for a port forward.
pub const EVENT_PORT_FORWARD: &str = "skaffold.port_forward";
/// Local port of a port forward (event attribute).
pub const SKAFFOLD_PORT_FORWARD_LOCAL_PORT: &str = "skaffold.port_forward.local_port";
/// `kind/name` of the forwarded resource (event attribute).
pub const SKAFFOLD_PORT_FORWARD_RESOURCE: &str = "skaffold.port_forward.resource";
/// Name of the root-span event for a build-cache lookup (API v2).
pub const EVENT_BUILD_CACHE: &str = "skaffold.build_cache";
/// `true` on a cache hit (event attribute).
pub const SKAFFOLD_BUILD_CACHE_HIT: &str = "skaffold.build_cache.hit";

/// Every key above that can appear on a span, an event or the resource (for the
/// docs/team.md and a test that the list and the docs agree).
pub const ALL: &[&str] = &[
    CICD_PIPELINE_ACTION_NAME,
    CICD_PIPELINE_NAME,
    CICD_PIPELINE_RUN_ID,
    CICD_PIPELINE_RESULT,
    CICD_PIPELINE_TASK_NAME,
    CICD_PIPELINE_TASK_RUN_ID,
    CICD_PIPELINE_TASK_TYPE,
    CICD_PIPELINE_TASK_RUN_RESULT,
    ERROR_TYPE,
    CONTAINER_IMAGE_NAME,
    CONTAINER_IMAGE_TAGS,
    CONTAINER_IMAGE_REPO_DIGESTS,
    K8S_NAMESPACE_NAME,
    K8S_DEPLOYMENT_NAME,
    K8S_STATEFULSET_NAME,
    K8S_DAEMONSET_NAME,
    K8S_REPLICASET_NAME,
    K8S_JOB_NAME,
    K8S_CRONJOB_NAME,
    K8S_POD_NAME,
    SERVICE_NAME,
    SERVICE_INSTANCE_ID,
    SERVICE_VERSION,
    DEPLOYMENT_ENVIRONMENT_NAME,
    VCS_REPOSITORY_NAME,
    VCS_REF_HEAD_NAME,
    VCS_REF_HEAD_REVISION,
    USER_HASH,
    USER_NAME,
    SKAFFOLD_ITERATION,
    SKAFFOLD_VERSION,
    SKAFFOLD_LOOP_KIND,
    SKAFFOLD_SYNC_FILE_COUNT,
    SKAFFOLD_RESOURCE,
    SKAFFOLD_RESOURCE_KIND,
    SKAFFOLD_RESOURCE_NAME,
    SKAFFOLD_SUBTASK_ID,
    SKAFFOLD_SPAN_END_REASON,
    SKAFFOLD_PORT_FORWARD_LOCAL_PORT,
    SKAFFOLD_PORT_FORWARD_RESOURCE,
    SKAFFOLD_BUILD_CACHE_HIT,
];
