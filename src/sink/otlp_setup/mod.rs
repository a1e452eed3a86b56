//! OTLP setup: everything between the command line and a running OTLP export, in
//! three parts.
//!
//! - `config`: the `OTEL_*` environment variables and the OTLP flags, validated into
//!   [`OtlpSettings`].
//! - `resource`: the OTLP resource: service, `service.instance.id`, VCS checkout,
//!   developer identity ([`resource_attributes`]).
//! - `lifecycle`: exporter construction, [`Telemetry::start`] and [`shutdown`].
//!
//! The items are re-exported here, so callers name them `sink::otlp_setup::…`.

mod config;
mod lifecycle;
mod resource;

pub use config::{
    Endpoint, OtlpConfigError, OtlpSettings, Protocol, SHUTDOWN_TIMEOUT, SPAN_QUEUE,
    parse_resource_attributes,
};
pub use lifecycle::{Telemetry, TelemetryError, metric_exporter, shutdown, span_exporter};
pub use resource::{
    GitInfo, INSTANCE_ID_NAMESPACE, InstanceIds, SLOTS, Sidecar, SlotClaim, TRACE_ONLY_ATTRIBUTES,
    host_name, metric_resource_attributes, process_user, repo_name, resource, resource_attributes,
    user_hash, user_of_uid,
};

/// Settings read from `vars` as the environment, for the unit tests.
#[cfg(test)]
fn settings(vars: &[(&str, &str)], metrics: bool) -> Result<OtlpSettings, OtlpConfigError> {
    let m: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    OtlpSettings::from_env(|k| m.get(k).cloned(), metrics, None, None)
}
