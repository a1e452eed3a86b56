//! Sinks: where transitions go. `contract` holds the metric contract (every family's
//! names, help, unit, type and labels, for both backends); `mapping` turns transitions
//! into updates of it; `metrics` feeds them to `prometheus` (the `/metrics` registry)
//! and `otlp_metrics` (the OTLP push); `self_metrics` holds the exporter's own health;
//! `exposition` renders `/metrics`; `labels` caps user-controlled label values; `image`
//! turns the image references Skaffold sends into label values and span attributes;
//! `resource` does the same for the resources Skaffold status-checks; `otlp` builds and
//! exports spans; `otlp_setup` turns the OTLP flags and `OTEL_*` variables into a
//! running export (resource, exporters, shutdown); `semconv` holds every OpenTelemetry
//! attribute key; `process` exposes the exporter's own process and build; `loop_log`
//! logs one line per finished dev-loop iteration.

pub mod contract;
pub mod exposition;
pub mod image;
pub mod labels;
pub mod loop_log;
pub mod mapping;
pub mod metrics;
pub mod otlp;
pub mod otlp_metrics;
pub mod otlp_setup;
pub mod process;
pub mod prometheus;
pub mod resource;
pub mod self_metrics;
pub mod semconv;

pub use contract::{DEFAULT_BUCKETS, DEFAULT_BUCKETS_ARG};
pub use labels::DEFAULT_MAX_LABEL_VALUES;
pub use metrics::Metrics;
pub use self_metrics::SelfMetrics;
