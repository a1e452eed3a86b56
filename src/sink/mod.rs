//! Sinks: where transitions go. `prometheus` holds the metric contract; `exposition`
//! renders it; `labels` caps user-controlled label values; `image` turns the image
//! references Skaffold sends into label values and span attributes; `resource` does the
//! same for the resources Skaffold status-checks; `otlp` builds and exports spans;
//! `semconv` holds every OpenTelemetry attribute key; `process` exposes the exporter's
//! own process and build; `loop_log` logs one line per finished dev-loop iteration.

pub mod exposition;
pub mod image;
pub mod labels;
pub mod loop_log;
pub mod otlp;
pub mod otlp_metrics;
pub mod otlp_setup;
pub mod process;
pub mod prometheus;
pub mod resource;
pub mod semconv;

pub use prometheus::{DEFAULT_BUCKETS, DEFAULT_BUCKETS_ARG, Metrics, SelfMetrics};
