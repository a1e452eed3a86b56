//! Sinks: where transitions go. `prometheus` holds the metric contract; `exposition`
//! renders it; `labels` caps user-controlled label values; `otlp` builds and exports
//! spans; `semconv` holds every OpenTelemetry attribute key.

pub mod exposition;
pub mod labels;
pub mod otlp;
pub mod otlp_metrics;
pub mod otlp_setup;
pub mod prometheus;
pub mod semconv;

pub use prometheus::{DEFAULT_BUCKETS, Metrics, SelfMetrics};
