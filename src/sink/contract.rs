//! The metric contract: every metric family the exporter exposes (the Skaffold
//! families and the exporter's own), with its names, help text, unit, type and label
//! names, in one backend-neutral table. The Prometheus registry (`/metrics`,
//! `sink::prometheus`, `sink::self_metrics`, `sink::otlp`, `sink::process`) and the
//! OTLP push (`sink::otlp_metrics`) both build their instruments from it, so the
//! two cannot drift apart. It also holds the [`Recorder`] trait through which
//! `sink::mapping` hands its updates to either backend.
//!
//! Names here are a public contract: dashboards and alert rules depend on them, and
//! docs/metrics.md documents each one (a test keeps the two in step).

use std::time::SystemTime;

/// The default bucket set, shared by every duration histogram (seconds).
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0,
];

/// [`DEFAULT_BUCKETS`] written as `--buckets` takes it, the default `--help` shows
/// (a test in `config` keeps the two equal).
pub const DEFAULT_BUCKETS_ARG: &str = "0.1,0.25,0.5,1,2.5,5,10,20,30,60,120,300,600,900,1800,3600";

/// Instrument kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (`_total`).
    Counter,
    /// Duration histogram in seconds, with the configured buckets.
    Histogram,
    /// Gauge with labels.
    Gauge,
    /// Gauge without labels.
    PlainGauge,
}

/// How one metric family is named and described in both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Prometheus name without `_total` / unit suffix (`skaffold_build_duration`).
    pub name: &'static str,
    /// OTLP instrument name; Prometheus' OTLP translation turns it into the same
    /// series name as `/metrics` (`skaffold.build.duration` in `s` →
    /// `skaffold_build_duration_seconds`). `None`: on `/metrics` only.
    pub otel_name: Option<&'static str>,
    /// OTLP unit (`s`, or a `{annotation}` that the translation drops, or none); `s`
    /// is the Prometheus unit `seconds` too.
    pub otel_unit: &'static str,
    /// Help text (both backends).
    pub help: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Label names, in exposition order.
    pub labels: &'static [&'static str],
}

impl Spec {
    /// Whether the family is in seconds (Prometheus adds the `_seconds` suffix).
    pub fn is_seconds(&self) -> bool {
        self.otel_unit == "s"
    }

    /// The family's name as a Prometheus scrape shows it (`skaffold_builds_total`,
    /// `skaffold_build_duration_seconds`).
    pub fn exposed_name(&self) -> String {
        let unit = if self.is_seconds() { "_seconds" } else { "" };
        let total = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        format!("{}{unit}{total}", self.name)
    }

    /// The label pairs of an update with label `values` (in [`Self::labels`] order);
    /// an empty value leaves its label out (Prometheus reads an empty label as an
    /// absent one: a resource Skaffold names without a namespace).
    pub fn label_pairs<'v>(
        &self,
        values: &'v [&'v str],
    ) -> impl Iterator<Item = (&'static str, &'v str)> + 'v {
        self.labels
            .iter()
            .zip(values)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, *v))
    }
}

/// A family of both backends.
const fn spec(
    name: &'static str,
    otel_name: &'static str,
    otel_unit: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Spec {
    Spec {
        name,
        otel_name: Some(otel_name),
        otel_unit,
        help,
        kind,
        labels,
    }
}

/// A family of `/metrics` only.
const fn metrics_only(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Spec {
    Spec {
        otel_name: None,
        ..spec(name, "", "", kind, labels, help)
    }
}

/// Declares an enum of families and its table, in one list (so the enum's order is
/// the table's by construction), with `ALL` and `spec()`.
macro_rules! families {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $table:ident {
            $($variant:ident => $spec:expr,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum $name {
            $($variant,)*
        }

        #[doc = concat!("The family of every [`", stringify!($name), "`], in its order.")]
        pub const $table: &[Spec] = &[$($spec,)*];

        impl $name {
            /// Every variant, in table order.
            pub const ALL: &[$name] = &[$($name::$variant,)*];

            /// The variant's family.
            pub fn spec(self) -> &'static Spec {
                &$table[self as usize]
            }
        }
    };
}

use Kind::{Counter as C, Gauge as G, Histogram as H, PlainGauge as P};

families! {
    /// One instrument of the Skaffold families, which `sink::mapping` updates from
    /// transitions; registration (and exposition) order.
    pub enum Instrument in SPECS {
        Builds => spec(
            "skaffold_builds",
            "skaffold.builds",
            "{build}",
            C,
            &["artifact", "result"],
            "Artifact builds finished, by artifact and result",
        ),
        BuildDuration => spec(
            "skaffold_build_duration",
            "skaffold.build.duration",
            "s",
            H,
            &["artifact", "result"],
            "Artifact build time from Skaffold's start to end event",
        ),
        Deploys => spec(
            "skaffold_deploys",
            "skaffold.deploys",
            "{deploy}",
            C,
            &["result"],
            "Deploys finished, by result",
        ),
        DeployDuration => spec(
            "skaffold_deploy_duration",
            "skaffold.deploy.duration",
            "s",
            H,
            &["result"],
            "Deploy time (the deployer, without the status check)",
        ),
        StatusChecks => spec(
            "skaffold_status_checks",
            "skaffold.status_checks",
            "{check}",
            C,
            &["result"],
            "Status checks finished, by result",
        ),
        StatusCheckDuration => spec(
            "skaffold_status_check_duration",
            "skaffold.status_check.duration",
            "s",
            H,
            &["result"],
            "Status check time (waiting for resources to stabilise)",
        ),
        Tests => spec(
            "skaffold_tests",
            "skaffold.tests",
            "{test}",
            C,
            &["result"],
            "Test phases finished, by result",
        ),
        TestDuration => spec(
            "skaffold_test_duration",
            "skaffold.test.duration",
            "s",
            H,
            &["result"],
            "Test phase time",
        ),
        Renders => spec(
            "skaffold_renders",
            "skaffold.renders",
            "{render}",
            C,
            &["result"],
            "Render phases finished, by result (API v2 only)",
        ),
        RenderDuration => spec(
            "skaffold_render_duration",
            "skaffold.render.duration",
            "s",
            H,
            &["result"],
            "Render phase time (API v2 only)",
        ),
        Verifies => spec(
            "skaffold_verifies",
            "skaffold.verifies",
            "{verify}",
            C,
            &["result"],
            "Verify phases finished, by result (API v2 only)",
        ),
        VerifyDuration => spec(
            "skaffold_verify_duration",
            "skaffold.verify.duration",
            "s",
            H,
            &["result"],
            "Verify phase time (API v2 only)",
        ),
        Execs => spec(
            "skaffold_execs",
            "skaffold.execs",
            "{exec}",
            C,
            &["result"],
            "Custom action (exec) phases finished, by result (API v2 only)",
        ),
        ExecDuration => spec(
            "skaffold_exec_duration",
            "skaffold.exec.duration",
            "s",
            H,
            &["result"],
            "Custom action (exec) phase time (API v2 only)",
        ),
        BuildCache => spec(
            "skaffold_build_cache",
            "skaffold.build_cache",
            "{lookup}",
            C,
            &["artifact", "result"],
            "Build-cache lookups, by artifact and result (hit or miss; API v2 only)",
        ),
        RolloutDuration => spec(
            "skaffold_resource_rollout_duration",
            "skaffold.resource_rollout.duration",
            "s",
            H,
            &["namespace", "kind", "name", "resource", "result"],
            "Time from the status check's start until a resource succeeded or failed",
        ),
        FileSyncs => spec(
            "skaffold_file_syncs",
            "skaffold.file_syncs",
            "{sync}",
            C,
            &["image", "result"],
            "File syncs finished, by image and result",
        ),
        FileSyncDuration => spec(
            "skaffold_file_sync_duration",
            "skaffold.file_sync.duration",
            "s",
            H,
            &["image", "result"],
            "File sync time",
        ),
        SyncedFiles => spec(
            "skaffold_synced_files",
            "skaffold.synced_files",
            "{file}",
            C,
            &["image"],
            "Files synced to running containers, by image",
        ),
        DevLoops => spec(
            "skaffold_dev_loops",
            "skaffold.dev_loops",
            "{iteration}",
            C,
            &["kind", "result"],
            "Dev-loop iterations finished, by kind and result",
        ),
        DevLoopDuration => spec(
            "skaffold_dev_loop_duration",
            "skaffold.dev_loop.duration",
            "s",
            H,
            &["kind", "result"],
            "Dev-loop iteration time, from its start to its end event",
        ),
        DeployStreak => spec(
            "skaffold_deploy_consecutive_failures",
            "skaffold.deploy.consecutive_failures",
            "{failure}",
            P,
            &[],
            "Failed deploys since the last successful one",
        ),
        BuildStreak => spec(
            "skaffold_build_consecutive_failures",
            "skaffold.build.consecutive_failures",
            "{failure}",
            G,
            &["artifact"],
            "Failed builds of an artifact since its last successful build",
        ),
        Errors => spec(
            "skaffold_errors",
            "skaffold.errors",
            "{error}",
            C,
            &["phase", "code"],
            "Failures by phase and Skaffold status code, each failure counted once at the phase that failed",
        ),
        PortForwards => spec(
            "skaffold_port_forwards",
            "skaffold.port_forwards",
            "{forward}",
            P,
            &[],
            "Port forwards announced in the current Skaffold run",
        ),
        Info => spec(
            "skaffold_info",
            "skaffold.info",
            "",
            G,
            &["version"],
            "Skaffold version of the current run (value is always 1)",
        ),
    }
}

families! {
    /// One of the exporter's own families, in `/metrics` registration (and
    /// exposition) order. `sink::self_metrics` holds the values of the first ten,
    /// `sink::otlp` (`OtlpStats`, registered only when OTLP is on) the OTLP ones,
    /// `sink::process` the build info.
    pub enum Own in OWN {
        Connected => spec(
            "skaffold_exporter_connected",
            "skaffold_exporter.connected",
            "",
            P,
            &[],
            "1 while the exporter is subscribed to Skaffold's event stream, else 0",
        ),
        Reconnects => spec(
            "skaffold_exporter_reconnects",
            "skaffold_exporter.reconnects",
            "",
            C,
            &[],
            "Re-subscriptions to Skaffold's event stream after the first one",
        ),
        Events => spec(
            "skaffold_exporter_events",
            "skaffold_exporter.events",
            "",
            C,
            &["event"],
            "Skaffold events folded into metrics, by event type",
        ),
        ReplayedSkipped => spec(
            "skaffold_exporter_replayed_events_skipped",
            "skaffold_exporter.replayed_events_skipped",
            "",
            C,
            &[],
            "Events Skaffold replayed after a reconnect that were already counted",
        ),
        Invalid => spec(
            "skaffold_exporter_invalid_events",
            "skaffold_exporter.invalid_events",
            "",
            C,
            &["reason"],
            "Events that could not be interpreted, by reason",
        ),
        LastEventTimestamp => spec(
            "skaffold_exporter_last_event_timestamp",
            "skaffold_exporter.last_event_timestamp",
            "s",
            P,
            &[],
            "Skaffold's timestamp of the newest event folded (Unix seconds)",
        ),
        FoldStalled => spec(
            "skaffold_exporter_fold_stalled",
            "skaffold_exporter.fold_stalled",
            "",
            P,
            &[],
            "1 while the reader has waited more than 5 s for room in the fold's queue or its byte budget (the reader waits; nothing is lost), else 0",
        ),
        FoldStalls => spec(
            "skaffold_exporter_fold_stalls",
            "skaffold_exporter.fold_stalls",
            "",
            C,
            &[],
            "Times the reader waited more than 5 s for room in the fold's queue or its byte budget (nothing was lost)",
        ),
        LabelValuesFolded => spec(
            "skaffold_exporter_label_values_folded",
            "skaffold_exporter.label_values_folded",
            "",
            C,
            &["label"],
            "Label values folded into 'other' by the --max-label-values cap, by label",
        ),
        LogEventsSkipped => spec(
            "skaffold_exporter_log_events_skipped",
            "skaffold_exporter.log_events_skipped",
            "",
            C,
            &["event"],
            "Skaffold's own log lines and the application's log lines (API v2) skipped without decoding, by event",
        ),
        SpansExported => spec(
            "skaffold_exporter_spans_exported",
            "skaffold_exporter.spans_exported",
            "",
            C,
            &[],
            "Spans the OTLP exporter handed to the collector",
        ),
        SpansDropped => spec(
            "skaffold_exporter_spans_dropped",
            "skaffold_exporter.spans_dropped",
            "",
            C,
            &[],
            "Spans dropped because the OTLP export queue was full (collector slow or down)",
        ),
        OtlpExportErrors => spec(
            "skaffold_exporter_otlp_export_errors",
            "skaffold_exporter.otlp_export_errors",
            "",
            C,
            &["signal"],
            "OTLP export requests that failed, by signal (traces, metrics)",
        ),
        BuildInfo => metrics_only(
            "skaffold_exporter_build_info",
            G,
            &["version", "revision"],
            "The exporter's version and the git commit it was built from; always 1",
        ),
    }
}

impl Own {
    /// The one-label set `{<the family's label>="value"}` of a family with one label.
    pub fn label(self, value: &'static str) -> OwnLabel {
        [(self.spec().labels[0], value)]
    }
}

/// The label set of the exporter's own one-label families (`{event="build"}`); its
/// name comes from the family's [`Spec::labels`].
pub type OwnLabel = [(&'static str, &'static str); 1];

/// Every family of the contract: the Skaffold ones, then the exporter's own.
pub fn families() -> impl Iterator<Item = &'static Spec> {
    SPECS.iter().chain(OWN)
}

/// Label values of one update, in the instrument's label order.
pub type Labels<'a> = &'a [&'a str];

/// The trace that produced a histogram observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplar {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Skaffold's timestamp of the event that ended the span.
    pub at: SystemTime,
}

/// A metrics backend: receives the updates `sink::mapping::Mapping::record` decides
/// on.
pub trait Recorder: std::fmt::Debug {
    /// Adds `by` to a counter (`by == 0` creates the series at zero).
    fn add(&mut self, i: Instrument, labels: Labels<'_>, by: u64);
    /// Records a histogram observation (seconds).
    fn observe(&mut self, i: Instrument, labels: Labels<'_>, value: f64, ex: Option<&Exemplar>);
    /// Sets a gauge.
    fn set(&mut self, i: Instrument, labels: Labels<'_>, value: i64);
    /// Forgets every series of a gauge (`skaffold_info` on a version change).
    fn clear(&mut self, i: Instrument);
    /// A Skaffold run started (its MetaEvent, stamped `at` by Skaffold); the run's
    /// updates follow. The OTLP push starts the run's own series here.
    fn run_started(&mut self, _at: crate::core::Nanos) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_otlp_name_translates_to_the_prometheus_one() {
        let mut seen = std::collections::HashSet::new();
        for s in families() {
            assert!(seen.insert(s.name), "{} twice", s.name);
            if let Some(otel) = s.otel_name {
                // Prometheus' OTLP translation: `.` → `_`.
                assert_eq!(otel.replace('.', "_"), s.name);
            }
            assert_eq!(
                s.kind == Kind::Histogram,
                s.is_seconds() && s.kind != Kind::PlainGauge
            );
        }
    }
}
