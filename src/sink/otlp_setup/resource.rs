//! The OTLP resource: what every span and metric push says about where it comes
//! from. The service and its `service.instance.id` (stable per exporter and per
//! Skaffold run: [`Sidecar`], [`SlotClaim`], [`InstanceIds`]), the git checkout
//! ([`GitInfo`]), the developer's identity (`user.name`, or a salted `user.hash`),
//! then `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` over all of them.
//!
//! Not to be confused with `sink::resource`, the Kubernetes resources Skaffold
//! status-checks.

use std::collections::BTreeMap;
use std::path::Path;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::super::semconv as k;
use super::config::OtlpSettings;
use crate::core::Nanos;

// === git ===

/// What the local git checkout says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// Repository name.
    pub repository: Option<String>,
    /// Branch (`None` on a detached HEAD).
    pub branch: Option<String>,
    /// Commit.
    pub revision: Option<String>,
}

impl GitInfo {
    /// Reads `dir`'s checkout with the `git` command, else from the `.git` files.
    pub fn read(dir: &Path) -> Self {
        Self::from_command(dir).unwrap_or_else(|| Self::from_files(dir))
    }

    fn from_command(dir: &Path) -> Option<Self> {
        let git = |args: &[&str]| -> Option<String> {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !s.is_empty()).then_some(s)
        };
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let repository = git(&["config", "--get", "remote.origin.url"])
            .and_then(|u| repo_name(&u))
            .or_else(|| repo_name(&top));
        let branch = git(&["symbolic-ref", "--short", "-q", "HEAD"]);
        let revision = git(&["rev-parse", "HEAD"]);
        Some(GitInfo {
            repository,
            branch,
            revision,
        })
    }

    fn from_files(dir: &Path) -> Self {
        let Some(top) = dir.ancestors().find(|d| d.join(".git").exists()) else {
            return GitInfo::default();
        };
        let mut gitdir = top.join(".git");
        if gitdir.is_file() {
            // A worktree or submodule: `gitdir: <path>`.
            if let Some(p) = std::fs::read_to_string(&gitdir)
                .ok()
                .and_then(|s| s.strip_prefix("gitdir:").map(|p| p.trim().to_owned()))
            {
                gitdir = top.join(p);
            }
        }
        let read = |p: &str| std::fs::read_to_string(gitdir.join(p)).ok();
        let head = read("HEAD").unwrap_or_default();
        let head = head.trim();
        let (branch, revision) = match head.strip_prefix("ref:") {
            Some(r) => {
                let r = r.trim();
                let rev = read(r).map(|s| s.trim().to_owned()).or_else(|| {
                    read("packed-refs")?.lines().find_map(|l| {
                        let (sha, name) = l.split_once(' ')?;
                        (name == r).then(|| sha.to_owned())
                    })
                });
                (r.strip_prefix("refs/heads/").map(str::to_owned), rev)
            }
            None => (None, (!head.is_empty()).then(|| head.to_owned())),
        };
        let origin = read("config").and_then(|c| {
            let mut in_origin = false;
            for line in c.lines() {
                let l = line.trim();
                if l.starts_with('[') {
                    in_origin = l == "[remote \"origin\"]";
                } else if in_origin && let Some(u) = l.strip_prefix("url") {
                    return Some(u.trim_start_matches([' ', '=']).trim().to_owned());
                }
            }
            None
        });
        GitInfo {
            repository: origin
                .and_then(|u| repo_name(&u))
                .or_else(|| repo_name(&top.to_string_lossy())),
            branch,
            revision,
        }
    }
}

/// `git@host:org/repo.git`, `https://host/org/repo`, `/path/to/repo` → `repo`.
pub fn repo_name(url: &str) -> Option<String> {
    let last = url.trim_end_matches('/').rsplit(['/', ':', '\\']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then(|| name.to_owned())
}

// === user identity ===

/// The user this process runs as, for when `$USER` is unset (usual in CI
/// containers): its name in `/etc/passwd`, else `uid:<n>`. `None` only where there
/// is no uid (not Unix).
pub fn process_user() -> Option<String> {
    #[cfg(unix)]
    {
        let uid = rustix::process::getuid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Some(user_of_uid(uid, &passwd))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The name `passwd` (the `/etc/passwd` format) gives `uid`, else `uid:<uid>`.
pub fn user_of_uid(uid: u32, passwd: &str) -> String {
    passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?;
            (!name.is_empty() && id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// Per-commit identity: on spans only. On the metrics resource it would make
/// Prometheus' `target_info` grow a series per commit and branch.
pub const TRACE_ONLY_ATTRIBUTES: [&str; 2] = [k::VCS_REF_HEAD_NAME, k::VCS_REF_HEAD_REVISION];

/// The metrics resource's attributes: `attrs` without [`TRACE_ONLY_ATTRIBUTES`].
pub fn metric_resource_attributes(attrs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = attrs.clone();
    for key in TRACE_ONLY_ATTRIBUTES {
        a.remove(key);
    }
    a
}

/// Salted SHA-256 of the OS user name, hex (the `user.hash` resource attribute).
pub fn user_hash(user: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"skaffold-exporter/user.hash/v1:");
    h.update(user.as_bytes());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

// === service.instance.id ===

/// The namespace the OpenTelemetry semantic conventions give for name-based (v5)
/// `service.instance.id`s.
pub const INSTANCE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x4d63009a_8d0f_11ee_aad7_4c796ed8e320);

/// What tells one exporter from every other one running at the same time, and names
/// the same one again after a restart: the host, the Skaffold it reads, and its slot
/// among the exporters of that Skaffold on this host ([`SlotClaim`]: 0 unless another
/// one is running). Not the `/metrics` address: an exporter restarted on another
/// `--listen` port is the same one (a new id would push the run's replayed history
/// as a new series, counted again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// The host name.
    pub host: String,
    /// Skaffold's address (`localhost:50051`, or the HTTP gateway's URL).
    pub target: String,
    /// Its slot (`0`, `1`, ...; `pid:<n>` when no slot could be claimed).
    pub slot: String,
}

impl Sidecar {
    /// This host's sidecar reading `target` in `slot`.
    pub fn here(target: impl Into<String>, slot: impl Into<String>) -> Self {
        Sidecar {
            host: host_name(),
            target: target.into(),
            slot: slot.into(),
        }
    }

    /// `service.instance.id` of this sidecar's pushes for the Skaffold run that
    /// started at `run` (Skaffold's timestamp of the run's MetaEvent); `None`: the
    /// sidecar itself (its spans, metrics before any run). A UUID v5 in
    /// [`INSTANCE_ID_NAMESPACE`] of the four, so the host name and address stay
    /// private.
    pub fn instance_id(&self, run: Option<Nanos>) -> String {
        let run = run.map(|r| r.to_string()).unwrap_or_default();
        let name = format!(
            "skaffold-exporter\n{}\n{}\n{}\n{run}",
            self.host, self.target, self.slot
        );
        Uuid::new_v5(&INSTANCE_ID_NAMESPACE, name.as_bytes()).to_string()
    }
}

/// Most exporters of one Skaffold on one host that get a slot of their own.
pub const SLOTS: u32 = 64;

/// The lowest free slot among the exporters reading one Skaffold on this host, held
/// until dropped (or the process ends, also by a crash: the kernel releases it). A
/// restarted exporter finds its slot free again and so keeps its
/// `service.instance.id`; two exporters running at once get different ones.
///
/// The lock is an abstract Unix socket on Linux (scoped like the network: two
/// containers of one pod, which share the host name, see each other's), a locked
/// file in the temporary directory elsewhere.
#[derive(Debug)]
pub struct SlotClaim {
    slot: String,
    _lock: Option<SlotLock>,
}

#[derive(Debug)]
enum SlotLock {
    #[cfg(target_os = "linux")]
    Socket(#[allow(dead_code)] std::os::unix::net::UnixListener),
    #[cfg(not(target_os = "linux"))]
    File(#[allow(dead_code)] std::fs::File),
}

impl SlotClaim {
    /// Claims the lowest free slot for exporters of `target` on `host`; `pid:<n>`
    /// (unique, not stable across restarts) when none can be claimed.
    pub fn take(host: &str, target: &str) -> Self {
        let key = Uuid::new_v5(
            &INSTANCE_ID_NAMESPACE,
            format!("skaffold-exporter slot\n{host}\n{target}").as_bytes(),
        )
        .simple()
        .to_string();
        for slot in 0..SLOTS {
            match try_lock(&key, slot) {
                Ok(Some(lock)) => {
                    return SlotClaim {
                        slot: slot.to_string(),
                        _lock: Some(lock),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot claim a slot for service.instance.id: a restarted exporter will push its runs under new ids.");
                    break;
                }
            }
        }
        SlotClaim {
            slot: format!("pid:{}", std::process::id()),
            _lock: None,
        }
    }

    /// The slot.
    pub fn slot(&self) -> &str {
        &self.slot
    }
}

/// Locks slot `slot` of `key`: `None` when another process (or claim) holds it.
#[cfg(target_os = "linux")]
fn try_lock(key: &str, slot: u32) -> std::io::Result<Option<SlotLock>> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let addr = SocketAddr::from_abstract_name(format!("skaffold-exporter/{key}/{slot}"))?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Some(SlotLock::Socket(l))),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Locks slot `slot` of `key`: `None` when another process (or claim) holds it.
#[cfg(not(target_os = "linux"))]
fn try_lock(key: &str, slot: u32) -> std::io::Result<Option<SlotLock>> {
    let dir = std::env::temp_dir().join("skaffold-exporter");
    std::fs::create_dir_all(&dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{key}-{slot}.lock")))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(SlotLock::File(f))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The host name (`uname -n`; `$COMPUTERNAME` elsewhere), empty if unknown.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// The `service.instance.id`s of one exporter: the user's, when
/// `OTEL_RESOURCE_ATTRIBUTES` sets one (then for everything), else the sidecar's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIds {
    /// The sidecar.
    pub sidecar: Sidecar,
    /// `service.instance.id` from `OTEL_RESOURCE_ATTRIBUTES`.
    pub fixed: Option<String>,
}

impl InstanceIds {
    /// For `s` (its sidecar, else this host's under `replay`).
    pub fn of(s: &OtlpSettings) -> Self {
        InstanceIds {
            sidecar: s
                .sidecar
                .clone()
                .unwrap_or_else(|| Sidecar::here("replay", "")),
            fixed: s
                .resource_attributes
                .iter()
                .rev()
                .find(|(key, _)| key == k::SERVICE_INSTANCE_ID)
                .map(|(_, v)| v.clone()),
        }
    }

    /// The id of run `run`'s metrics (`None`: spans, metrics before any run).
    pub fn for_run(&self, run: Option<Nanos>) -> String {
        self.fixed
            .clone()
            .unwrap_or_else(|| self.sidecar.instance_id(run))
    }
}

// === attributes ===

/// The resource attributes, in order (later keys win over earlier ones): defaults,
/// pipeline, VCS, identity, then `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
pub fn resource_attributes(
    s: &OtlpSettings,
    git: &GitInfo,
    instance: &str,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |key: &str, v: String| {
        a.insert(key.to_owned(), v);
    };
    put(k::SERVICE_NAME, "skaffold".into());
    put(k::SERVICE_INSTANCE_ID, instance.to_owned());
    put(k::SERVICE_VERSION, env!("CARGO_PKG_VERSION").into());
    put(k::DEPLOYMENT_ENVIRONMENT_NAME, "development".into());
    // The pipeline identifies CI runs of one pipeline across exporter processes
    // (the alert rules group by it; the gateway promotes it to `pipeline`).
    put(k::CICD_PIPELINE_NAME, s.pipeline(git));
    if let Some(r) = &git.repository {
        put(k::VCS_REPOSITORY_NAME, r.clone());
    }
    if let Some(b) = &git.branch {
        put(k::VCS_REF_HEAD_NAME, b.clone());
    }
    if let Some(r) = &git.revision {
        put(k::VCS_REF_HEAD_REVISION, r.clone());
    }
    match (&s.user_name, &s.os_user) {
        (Some(name), _) => put(k::USER_NAME, name.clone()),
        (None, Some(user)) => put(k::USER_HASH, user_hash(user)),
        (None, None) => {}
    }
    for (key, v) in &s.resource_attributes {
        put(key, v.clone());
    }
    if let Some(n) = &s.service_name {
        put(k::SERVICE_NAME, n.clone());
    }
    a
}

/// The OTLP resource.
pub fn resource(attrs: &BTreeMap<String, String>) -> Resource {
    Resource::builder_empty()
        .with_schema_url(
            attrs
                .iter()
                .map(|(key, v)| KeyValue::new(key.clone(), v.clone())),
            k::SCHEMA_URL,
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::super::settings;
    use super::*;

    #[test]
    fn resource_has_identity_vcs_and_env_overrides() {
        let mut s = settings(
            &[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "team=dev%20ex,deployment.environment.name=test",
                ),
                ("USER", "alice"),
            ],
            false,
        )
        .unwrap();
        let git = GitInfo {
            repository: Some("shop".into()),
            branch: Some("feature/x".into()),
            revision: Some("abc".into()),
        };
        let a = resource_attributes(&s, &git, "id-1");
        assert_eq!(a["service.name"], "skaffold");
        assert_eq!(a["service.instance.id"], "id-1");
        assert_eq!(a["deployment.environment.name"], "test");
        assert_eq!(a["team"], "dev ex");
        assert_eq!(a["vcs.repository.name"], "shop");
        assert_eq!(a["vcs.ref.head.name"], "feature/x");
        assert_eq!(a["user.hash"], user_hash("alice"));
        assert!(!a.contains_key("user.name"));
        assert_ne!(user_hash("alice"), "alice");
        s.user_name = Some("Alice A.".into());
        s.service_name = Some("svc".into());
        let a = resource_attributes(&s, &git, "id-1");
        assert_eq!(a["user.name"], "Alice A.");
        assert!(!a.contains_key("user.hash"));
        assert_eq!(a["service.name"], "svc");
        assert_eq!(s.pipeline(&git), "shop");
        assert_eq!(s.pipeline(&GitInfo::default()), "skaffold");
    }

    #[test]
    fn the_user_comes_from_the_uid_when_user_is_unset() {
        let passwd =
            "# comment\nroot:x:0:0:root:/root:/bin/bash\nci:x:1001:1001::/home/ci:/bin/sh\n";
        assert_eq!(user_of_uid(0, passwd), "root");
        assert_eq!(user_of_uid(1001, passwd), "ci");
        assert_eq!(user_of_uid(4242, passwd), "uid:4242");
        assert_eq!(user_of_uid(7, ""), "uid:7");
        let s = settings(&[], false).unwrap();
        #[cfg(unix)]
        assert!(s.os_user.is_some(), "no identity without $USER");
        let a = resource_attributes(&s, &GitInfo::default(), "id");
        #[cfg(unix)]
        assert_eq!(a["user.hash"], user_hash(&process_user().unwrap()));
    }

    #[test]
    fn per_commit_identity_stays_off_the_metrics_resource() {
        let s = settings(&[("USER", "alice")], false).unwrap();
        let git = GitInfo {
            repository: Some("shop".into()),
            branch: Some("main".into()),
            revision: Some("abc".into()),
        };
        let traces = resource_attributes(&s, &git, "id");
        assert_eq!(traces["vcs.ref.head.revision"], "abc");
        assert_eq!(traces["vcs.ref.head.name"], "main");
        assert_eq!(traces["cicd.pipeline.name"], "shop");
        let metrics = metric_resource_attributes(&traces);
        assert!(!metrics.contains_key("vcs.ref.head.revision"));
        assert!(!metrics.contains_key("vcs.ref.head.name"));
        assert_eq!(metrics["vcs.repository.name"], "shop");
        assert_eq!(metrics["cicd.pipeline.name"], "shop");
        assert_eq!(metrics.len() + 2, traces.len());
    }

    #[test]
    fn names_repositories_from_urls_and_paths() {
        assert_eq!(
            repo_name("git@github.com:org/shop.git").as_deref(),
            Some("shop")
        );
        assert_eq!(repo_name("https://h/org/shop/").as_deref(), Some("shop"));
        assert_eq!(repo_name("/work/main").as_deref(), Some("main"));
    }

    #[test]
    fn the_instance_id_is_stable_per_sidecar_and_run_and_unique_among_them() {
        let a = Sidecar {
            host: "laptop".into(),
            target: "localhost:50051".into(),
            slot: "0".into(),
        };
        let run = Some(1_700_000_000_123_456_789);
        let id = a.instance_id(run);
        // A restart: the same inputs give the same id (and it is a v5 UUID in the
        // semantic conventions' namespace, not the inputs in clear).
        assert_eq!(a.clone().instance_id(run), id);
        let u = Uuid::parse_str(&id).unwrap();
        assert_eq!(u.get_version_num(), 5);
        assert_eq!(
            u,
            Uuid::new_v5(
                &Uuid::parse_str("4d63009a-8d0f-11ee-aad7-4c796ed8e320").unwrap(),
                b"skaffold-exporter\nlaptop\nlocalhost:50051\n0\n1700000000123456789"
            )
        );
        assert!(!id.contains("laptop"));
        // Anything that tells exporters or runs apart gives another id.
        let other = |f: &dyn Fn(&mut Sidecar)| {
            let mut b = a.clone();
            f(&mut b);
            b.instance_id(run)
        };
        let ids = [
            id.clone(),
            other(&|b| b.slot = "1".into()),
            other(&|b| b.host = "ci-runner-7".into()),
            other(&|b| b.target = "localhost:50052".into()),
            a.instance_id(Some(1_700_000_000_123_456_790)),
            a.instance_id(None),
        ];
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        assert!(!host_name().is_empty());
    }

    #[test]
    fn exporters_of_one_skaffold_running_at_once_get_different_slots_a_restart_the_same() {
        let target = format!("localhost:{}", fastrand::u32(1..u32::MAX));
        let first = SlotClaim::take("laptop", &target);
        let second = SlotClaim::take("laptop", &target);
        assert_eq!((first.slot(), second.slot()), ("0", "1"));
        // Another Skaffold: its own slots.
        let elsewhere = SlotClaim::take("laptop", &format!("{target}0"));
        assert_eq!(elsewhere.slot(), "0");
        // The first one ends; its restart takes its slot again.
        drop(first);
        assert_eq!(SlotClaim::take("laptop", &target).slot(), "0");
        drop(second);
    }

    #[test]
    fn otel_resource_attributes_override_the_instance_id_everywhere() {
        let mut s = settings(&[("USER", "alice")], false).unwrap();
        s.sidecar = Some(Sidecar::here("localhost:50051", "0"));
        let ids = InstanceIds::of(&s);
        assert_eq!(ids.for_run(None), ids.sidecar.instance_id(None));
        assert_ne!(ids.for_run(Some(1)), ids.for_run(Some(2)));
        let a = resource_attributes(&s, &GitInfo::default(), &ids.for_run(None));
        assert_eq!(a["service.instance.id"], ids.sidecar.instance_id(None));

        let mut s = settings(
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=x,service.instance.id=job-42",
            )],
            false,
        )
        .unwrap();
        s.sidecar = Some(Sidecar::here("localhost:50051", "0"));
        let ids = InstanceIds::of(&s);
        assert_eq!(ids.for_run(None), "job-42");
        assert_eq!(ids.for_run(Some(1)), "job-42");
        let a = resource_attributes(&s, &GitInfo::default(), &ids.for_run(None));
        assert_eq!(a["service.instance.id"], "job-42");
        // Without a sidecar (`replay`): this host, and still one id per run.
        let ids = InstanceIds::of(&settings(&[], false).unwrap());
        assert_eq!(ids.sidecar.target, "replay");
        assert_ne!(ids.for_run(Some(1)), ids.for_run(Some(2)));
    }

    #[test]
    fn reads_git_files_without_the_git_command() {
        let dir = std::env::temp_dir().join(format!("skx-git-{}", fastrand::u64(..)));
        std::fs::create_dir_all(dir.join(".git/refs/heads")).unwrap();
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(dir.join(".git/refs/heads/main"), "0123abcd\n").unwrap();
        std::fs::write(
            dir.join(".git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@h:org/shop.git\n",
        )
        .unwrap();
        let g = GitInfo::from_files(&dir.join("sub"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            g,
            GitInfo {
                repository: Some("shop".into()),
                branch: Some("main".into()),
                revision: Some("0123abcd".into()),
            }
        );
    }
}
