//! The resources Skaffold status-checks, as it names them, split into the parts that
//! become labels (`namespace`, `kind`, `name`) and span attributes.
//!
//! Skaffold sends one string per resource, the same in v1 `ResourceStatusCheckEvent`
//! and v2 `StatusCheckSubtaskEvent` (`resource` and `id`). Its forms, from Skaffold's
//! source (after v2.24.0):
//!
//! - `kind/name` when the namespace is `default`, else `namespace:kind/name`
//!   (`kubernetes/status/resource/deployment.go` `Resource.String`): `kind` is
//!   Skaffold's lowercase resource type, `deployment` or `statefulset`.
//! - `pods`: all standalone pods of a namespace, checked as one resource (type
//!   `standalone-pods`; the namespace is not in the string).
//! - `[namespace:]config-connector-resource/GROUP/VERSION, Kind=KIND[, Name=NAME]` and
//!   the same with `custom-resource`: the name is the object's `GroupVersionKind`
//!   string plus its name (`kubernetes/status/status_check.go`).
//! - `[namespace:]kind/name` of the pods (and config-connector objects) *inside* a
//!   checked resource (`diag/validator/resource.go`): `kind` is the object's Kind, or
//!   `pod` when the API left it empty. v1 and v2 report a pod with a problem as
//!   `In Progress`; since v1.31 v2 also sends `Succeeded` for every pod of a workload
//!   that rolled out (`resource/deployment.go` `CheckStatus`).
//! - Cloud Run (v2 only, `deploy/cloudrun`): `projects/P/locations/R/services/S`,
//!   `namespaces/P/jobs/J`, `namespaces/P/workerpools/W`.
//!
//! The labels use Kubernetes' own words, so they join with kube-state-metrics (which
//! labels by `namespace`) and read like Flux's and Argo CD's `kind`/`name`:
//! `namespace` is the object's namespace (`default` where Skaffold leaves it out; the
//! project for Cloud Run, its namespace in the Knative-style API), `kind` its Kind as
//! in a manifest (`Deployment`, `StatefulSet`, `Pod`, a custom resource's Kind; Cloud
//! Run's `Service`, `Job`, `WorkerPool`), `name` its `metadata.name`. Parts Skaffold
//! does not say stay empty.
//!
//! Structural, never validating: an unknown form keeps its whole text as the name.

/// Where a resource runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// A Kubernetes object.
    Kubernetes,
    /// A Cloud Run service, job or worker pool.
    CloudRun,
    /// A form this module does not know.
    Unknown,
}

/// A resource string split into its parts (borrowed from the input, or static).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// The namespace (`default` for Skaffold's `kind/name`); `None` when not given.
    pub namespace: Option<&'a str>,
    /// The Kind, spelled as in a manifest; `None` when not given.
    pub kind: Option<&'a str>,
    /// The object's name; empty for the `pods` group.
    pub name: &'a str,
    /// Kubernetes, Cloud Run, or unknown.
    pub platform: Platform,
}

/// Skaffold's lowercase resource types (and the validator's `pod`) → Kinds.
const KINDS: [(&str, &str); 7] = [
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("pod", "Pod"),
    ("daemonset", "DaemonSet"),
    ("replicaset", "ReplicaSet"),
    ("job", "Job"),
    ("cronjob", "CronJob"),
];

/// Skaffold's resource types whose name is a `GroupVersionKind` string.
const GVK_TYPES: [&str; 2] = ["config-connector-resource", "custom-resource"];

impl<'a> ResourceRef<'a> {
    /// Splits Skaffold's resource string `r`.
    pub fn parse(r: &'a str) -> Self {
        if r == "pods" {
            return Self {
                namespace: None,
                kind: Some("Pod"),
                name: "",
                platform: Platform::Kubernetes,
            };
        }
        if let Some(cloud_run) = Self::cloud_run(r) {
            return cloud_run;
        }
        let Some((head, name)) = r.split_once('/') else {
            return Self {
                namespace: None,
                kind: None,
                name: r,
                platform: Platform::Unknown,
            };
        };
        let (namespace, ty) = match head.split_once(':') {
            Some((ns, ty)) => (Some(ns).filter(|ns| !ns.is_empty()), ty),
            None => (Some("default"), head),
        };
        if GVK_TYPES.contains(&ty)
            && let Some((kind, name)) = gvk_kind_and_name(name)
        {
            return Self {
                namespace,
                kind: Some(kind),
                name,
                platform: Platform::Kubernetes,
            };
        }
        let kind = KINDS
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(ty, |(_, kind)| *kind);
        Self {
            namespace,
            kind: Some(kind).filter(|k| !k.is_empty()),
            name,
            platform: Platform::Kubernetes,
        }
    }

    fn cloud_run(r: &'a str) -> Option<Self> {
        let parts: Vec<&str> = r.split('/').collect();
        let (project, kind, name) = match parts.as_slice() {
            ["projects", p, "locations", region, "services", s] if !region.is_empty() => {
                (*p, "Service", *s)
            }
            ["namespaces", p, "jobs", j] => (*p, "Job", *j),
            ["namespaces", p, "workerpools", w] => (*p, "WorkerPool", *w),
            _ => return None,
        };
        if project.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            namespace: Some(project),
            kind: Some(kind),
            name,
            platform: Platform::CloudRun,
        })
    }

    /// A pod that Skaffold reports *inside* a checked resource (not the `pods`
    /// group): its name changes with every rollout, and the resource it belongs to
    /// measures the same rollout.
    pub fn is_member_pod(&self) -> bool {
        self.platform == Platform::Kubernetes && self.kind == Some("Pod") && !self.name.is_empty()
    }
}

/// `GROUP/VERSION, Kind=KIND[, Name=NAME]` (`schema.GroupVersionKind.String()` plus
/// Skaffold's `, Name=`) → (KIND, NAME or "").
fn gvk_kind_and_name(s: &str) -> Option<(&str, &str)> {
    let (_, rest) = s.split_once(", Kind=")?;
    let (kind, name) = match rest.split_once(", Name=") {
        Some((kind, name)) => (kind, name),
        None => (rest, ""),
    };
    (!kind.is_empty()).then_some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k8s(
        ns: Option<&'static str>,
        kind: &'static str,
        name: &'static str,
    ) -> ResourceRef<'static> {
        ResourceRef {
            namespace: ns,
            kind: Some(kind),
            name,
            platform: Platform::Kubernetes,
        }
    }

    #[test]
    fn splits_every_form_skaffold_sends() {
        let cases = [
            // Resource.String: default namespace left out, others kept
            ("deployment/web", k8s(Some("default"), "Deployment", "web")),
            (
                "shop:deployment/web",
                k8s(Some("shop"), "Deployment", "web"),
            ),
            (
                "shop:statefulset/db",
                k8s(Some("shop"), "StatefulSet", "db"),
            ),
            (":deployment/web", k8s(None, "Deployment", "web")),
            // standalone pods: one resource, no namespace, no name
            ("pods", k8s(None, "Pod", "")),
            // the validator's pods: `pod` when the Kind was empty, else the Kind
            (
                "pod/web-6b8f7c-x2x9z",
                k8s(Some("default"), "Pod", "web-6b8f7c-x2x9z"),
            ),
            (
                "shop:Pod/web-6b8f7c-x2x9z",
                k8s(Some("shop"), "Pod", "web-6b8f7c-x2x9z"),
            ),
            (
                "infra:StorageBucket/b1",
                k8s(Some("infra"), "StorageBucket", "b1"),
            ),
            // config connector and custom resources: GroupVersionKind plus name
            (
                "infra:config-connector-resource/storage.cnrm.cloud.google.com/v1beta1, Kind=StorageBucket, Name=b1",
                k8s(Some("infra"), "StorageBucket", "b1"),
            ),
            (
                "custom-resource/example.com/v1, Kind=Widget, Name=w",
                k8s(Some("default"), "Widget", "w"),
            ),
            (
                "custom-resource/example.com/v1, Kind=Widget",
                k8s(Some("default"), "Widget", ""),
            ),
            // a GVK name that does not parse keeps Skaffold's type and the text
            (
                "custom-resource/odd",
                k8s(Some("default"), "custom-resource", "odd"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ResourceRef::parse(input), want, "{input}");
        }
    }

    #[test]
    fn cloud_run_names_are_project_kind_and_name() {
        let cr = |ns, kind, name| ResourceRef {
            namespace: Some(ns),
            kind: Some(kind),
            name,
            platform: Platform::CloudRun,
        };
        assert_eq!(
            ResourceRef::parse("projects/p1/locations/europe-west1/services/api"),
            cr("p1", "Service", "api")
        );
        assert_eq!(
            ResourceRef::parse("namespaces/p1/jobs/migrate"),
            cr("p1", "Job", "migrate")
        );
        assert_eq!(
            ResourceRef::parse("namespaces/p1/workerpools/pool"),
            cr("p1", "WorkerPool", "pool")
        );
        // not quite Cloud Run: read as Kubernetes `kind/name`
        assert_eq!(
            ResourceRef::parse("namespaces/p1/things/x").platform,
            Platform::Kubernetes
        );
    }

    #[test]
    fn unknown_forms_keep_their_text_as_the_name() {
        assert_eq!(
            ResourceRef::parse("something"),
            ResourceRef {
                namespace: None,
                kind: None,
                name: "something",
                platform: Platform::Unknown,
            }
        );
        assert_eq!(ResourceRef::parse("").name, "");
    }

    #[test]
    fn only_pods_inside_a_resource_are_member_pods() {
        assert!(ResourceRef::parse("pod/web-1").is_member_pod());
        assert!(ResourceRef::parse("shop:Pod/web-1").is_member_pod());
        assert!(!ResourceRef::parse("pods").is_member_pod());
        assert!(!ResourceRef::parse("deployment/web").is_member_pod());
    }
}
