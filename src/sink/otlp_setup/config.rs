//! OTLP settings: the standard `OTEL_*` environment variables and the exporter's
//! three OTLP flags, read and validated into [`OtlpSettings`].
//!
//! Honoured: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp`/`none`),
//! `OTEL_METRICS_EXPORTER` (`otlp` turns the metrics push on),
//! `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`, `..._PROTOCOL` (`grpc`,
//! `http/protobuf`), `..._TIMEOUT` (ms), `..._HEADERS` and `..._COMPRESSION` (read by
//! the exporter itself), `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`. Tracing is off unless an endpoint is configured.

use std::path::PathBuf;
use std::time::Duration;

use super::resource::{GitInfo, Sidecar, process_user};
use crate::catch_up::Gate;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

impl Protocol {
    /// As `OTEL_EXPORTER_OTLP_PROTOCOL` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }

    fn parse(s: &str) -> Result<Self, OtlpConfigError> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(OtlpConfigError::Protocol(other.to_owned())),
        }
    }
}

/// An `OTEL_*` variable the exporter cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpConfigError {
    /// `OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL` other than `grpc` or `http/protobuf`.
    #[error("unsupported OTLP protocol {0:?}: use grpc or http/protobuf")]
    Protocol(String),
    /// `OTEL_SDK_DISABLED` neither `true` nor `false`.
    #[error("OTEL_SDK_DISABLED must be true or false, got {0:?}")]
    SdkDisabled(String),
    /// A compression other than `none` (none is built in).
    #[error(
        "{name}={value} is not supported: this build sends OTLP uncompressed (unset it, or set none)"
    )]
    Compression {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// `OTEL_TRACES_EXPORTER` other than `otlp` or `none`.
    #[error("OTEL_TRACES_EXPORTER={0} is not supported: use otlp or none")]
    TracesExporter(String),
    /// `OTEL_METRICS_EXPORTER` other than `otlp`, `none` or `prometheus`.
    #[error("OTEL_METRICS_EXPORTER={0} is not supported: use otlp or none")]
    MetricsExporter(String),
    /// A timeout or interval that is not a positive number of milliseconds.
    #[error("{name} must be a positive number of milliseconds, got {value:?}")]
    Millis {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Full URL (`http://host:4317` for gRPC, `http://host:4318/v1/traces` for HTTP).
    pub url: String,
    /// Transport.
    pub protocol: Protocol,
}

/// Validated OTLP settings. `Default` is "everything off".
#[derive(Debug, Clone, Default)]
pub struct OtlpSettings {
    /// Where spans go; `None`: tracing off.
    pub traces: Option<Endpoint>,
    /// Where metrics go; `None`: no metrics push.
    pub metrics: Option<Endpoint>,
    /// Per-request span export timeout (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`); `None`: the exporter's default (10 s).
    pub timeout: Option<Duration>,
    /// Per-request metrics export timeout (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`); `None`: the exporter's default (10 s).
    pub metrics_timeout: Option<Duration>,
    /// Metrics push interval (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s).
    pub metric_interval: Option<Duration>,
    /// `--pipeline-name`.
    pub pipeline_name: Option<String>,
    /// `--user-name`.
    pub user_name: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, parsed.
    pub resource_attributes: Vec<(String, String)>,
    /// The OS user (for `user.hash`): `$USER`, `$USERNAME` or `$LOGNAME`, else the
    /// process's uid (see [`process_user`]).
    pub os_user: Option<String>,
    /// Directory whose git checkout names the repository (default: the working dir).
    pub checkout: Option<PathBuf>,
    /// Spans buffered for export; beyond it they are dropped and counted.
    pub span_queue: usize,
    /// How long shutdown waits for the last exports.
    pub shutdown_timeout: Duration,
    /// Leave out the iterations that ended before the exporter started (the live
    /// exporter: Skaffold replays them, and the exporter running then sent them);
    /// `false` (`replay`, tests): export every iteration.
    pub skip_history: bool,
    /// What names this exporter in `service.instance.id` (the live exporter sets it
    /// from its bound `/metrics` address and Skaffold's; `None`: this host,
    /// `replay`).
    pub sidecar: Option<Sidecar>,
    /// Holds the metrics push back until Skaffold's replay is folded (the live
    /// exporter); `None`: push from the start (`replay`).
    pub catch_up: Option<Gate>,
}

/// Default span queue (the SDK's batch processor default).
pub const SPAN_QUEUE: usize = 2048;
/// Default shutdown flush timeout.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl OtlpSettings {
    /// Tracing or the metrics push is on.
    pub fn enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }

    /// Reads the standard variables through `env` (`std::env::var` in the binary, a
    /// map in tests), plus the three flags.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        otlp_metrics: bool,
        pipeline_name: Option<String>,
        user_name: Option<String>,
    ) -> Result<Self, OtlpConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let disabled = match get("OTEL_SDK_DISABLED").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => return Err(OtlpConfigError::SdkDisabled(v)),
        };
        // No compression is built in: the exporter would ignore the setting.
        for name in [
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ] {
            if let Some(v) = get(name)
                && !v.trim().eq_ignore_ascii_case("none")
            {
                return Err(OtlpConfigError::Compression { name, value: v });
            }
        }
        let protocol = |signal: &str| -> Result<Protocol, OtlpConfigError> {
            match get(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
                .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            {
                Some(p) => Protocol::parse(&p),
                None => Ok(Protocol::HttpProtobuf),
            }
        };
        let endpoint = |signal: &str,
                        path: &str,
                        default: bool|
         -> Result<Option<Endpoint>, OtlpConfigError> {
            let protocol = protocol(signal)?;
            if let Some(url) = get(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")) {
                return Ok(Some(Endpoint { url, protocol }));
            }
            let base = match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(b) => b,
                None if default => match protocol {
                    Protocol::Grpc => "http://localhost:4317".to_owned(),
                    Protocol::HttpProtobuf => "http://localhost:4318".to_owned(),
                },
                None => return Ok(None),
            };
            let url = match protocol {
                Protocol::Grpc => base,
                Protocol::HttpProtobuf => format!("{}/{path}", base.trim_end_matches('/')),
            };
            Ok(Some(Endpoint { url, protocol }))
        };
        let exporter = |name: &str| get(name).map(|v| v.trim().to_ascii_lowercase());
        let traces = match exporter("OTEL_TRACES_EXPORTER").as_deref() {
            _ if disabled => None,
            Some("none") => None,
            Some("otlp") | None => endpoint("TRACES", "v1/traces", false)?,
            Some(other) => return Err(OtlpConfigError::TracesExporter(other.to_owned())),
        };
        let metrics_on = match exporter("OTEL_METRICS_EXPORTER").as_deref() {
            Some("otlp") => true,
            Some("none") | None | Some("prometheus") => otlp_metrics,
            Some(other) => return Err(OtlpConfigError::MetricsExporter(other.to_owned())),
        };
        let metrics = if metrics_on && !disabled {
            endpoint("METRICS", "v1/metrics", true)?
        } else {
            None
        };
        let millis = |name: &'static str| -> Result<Option<Duration>, OtlpConfigError> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|ms| *ms > 0)
                        .map(Duration::from_millis)
                        .ok_or_else(|| OtlpConfigError::Millis {
                            name,
                            value: v.clone(),
                        })
                })
                .transpose()
        };
        let any = millis("OTEL_EXPORTER_OTLP_TIMEOUT")?;
        let timeout = millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")?.or(any);
        let metrics_timeout = millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")?.or(any);
        Ok(OtlpSettings {
            traces,
            metrics,
            timeout,
            metrics_timeout,
            metric_interval: millis("OTEL_METRIC_EXPORT_INTERVAL")?,
            pipeline_name: pipeline_name.filter(|p| !p.trim().is_empty()),
            user_name: user_name.filter(|u| !u.trim().is_empty()),
            service_name: get("OTEL_SERVICE_NAME"),
            resource_attributes: get("OTEL_RESOURCE_ATTRIBUTES")
                .map(|v| parse_resource_attributes(&v))
                .unwrap_or_default(),
            os_user: get("USER")
                .or_else(|| get("USERNAME"))
                .or_else(|| get("LOGNAME"))
                .or_else(process_user),
            checkout: None,
            span_queue: SPAN_QUEUE,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            skip_history: true,
            sidecar: None,
            catch_up: None,
        })
    }

    /// The pipeline name: `--pipeline-name`, else the git repository's name, else
    /// `skaffold`.
    pub fn pipeline(&self, git: &GitInfo) -> String {
        self.pipeline_name
            .clone()
            .or_else(|| git.repository.clone())
            .unwrap_or_else(|| "skaffold".to_owned())
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage octets).
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::settings;
    use super::*;

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        let s = settings(&[], false).unwrap();
        assert!(s.traces.is_none() && s.metrics.is_none() && !s.enabled());
    }

    #[test]
    fn endpoints_follow_the_spec() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")], true).unwrap();
        assert_eq!(s.traces.unwrap().url, "http://c:4318/v1/traces");
        assert_eq!(s.metrics.unwrap().url, "http://c:4318/v1/metrics");
        let s = settings(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9"),
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
            ],
            false,
        )
        .unwrap();
        let t = s.traces.unwrap();
        assert_eq!((t.url.as_str(), t.protocol), ("http://t:9", Protocol::Grpc));
        assert_eq!(s.metrics.unwrap().url, "http://c:4317");
        assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.metrics_timeout, Some(Duration::from_millis(1500)));
        // Each signal's own timeout wins over the shared one, for its signal only.
        let s = settings(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.metrics_timeout, Some(Duration::from_millis(700)));
        let s = settings(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            false,
        )
        .unwrap();
        assert!(s.traces.is_none());
        let s = settings(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            true,
        )
        .unwrap();
        assert!(!s.enabled());
        assert!(
            settings(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ],
                false
            )
            .is_err()
        );
    }

    #[test]
    fn each_refused_variable_is_its_own_error_with_the_message_users_see() {
        let refused = |vars: &[(&str, &str)]| settings(vars, true).unwrap_err();
        let cases = [
            (
                refused(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
                OtlpConfigError::Protocol("http/json".into()),
                r#"unsupported OTLP protocol "http/json": use grpc or http/protobuf"#,
            ),
            (
                refused(&[("OTEL_SDK_DISABLED", " Maybe ")]),
                OtlpConfigError::SdkDisabled("maybe".into()),
                r#"OTEL_SDK_DISABLED must be true or false, got "maybe""#,
            ),
            (
                refused(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")]),
                OtlpConfigError::Compression {
                    name: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                    value: "gzip".into(),
                },
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip is not supported: this build sends OTLP uncompressed (unset it, or set none)",
            ),
            (
                refused(&[("OTEL_TRACES_EXPORTER", "Zipkin")]),
                OtlpConfigError::TracesExporter("zipkin".into()),
                "OTEL_TRACES_EXPORTER=zipkin is not supported: use otlp or none",
            ),
            (
                refused(&[("OTEL_METRICS_EXPORTER", "console")]),
                OtlpConfigError::MetricsExporter("console".into()),
                "OTEL_METRICS_EXPORTER=console is not supported: use otlp or none",
            ),
            (
                refused(&[("OTEL_METRIC_EXPORT_INTERVAL", "0")]),
                OtlpConfigError::Millis {
                    name: "OTEL_METRIC_EXPORT_INTERVAL",
                    value: "0".into(),
                },
                r#"OTEL_METRIC_EXPORT_INTERVAL must be a positive number of milliseconds, got "0""#,
            ),
        ];
        for (got, want, message) in cases {
            assert_eq!(got, want);
            assert_eq!(got.to_string(), message);
        }
    }
}
