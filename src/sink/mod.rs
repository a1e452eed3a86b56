//! Sinks: where transitions go. `prometheus` holds the metric contract; `exposition`
//! renders it; `labels` caps user-controlled label values.

pub mod exposition;
pub mod labels;
pub mod prometheus;

pub use prometheus::{DEFAULT_BUCKETS, Metrics, SelfMetrics};
