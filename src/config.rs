//! Command-line flags and environment variables (clap), validated into [`Settings`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::simulator::scenario::Flavor;
use crate::sink::otlp_setup::{OtlpConfigError, OtlpSettings};
use crate::sink::{DEFAULT_BUCKETS, DEFAULT_BUCKETS_ARG, DEFAULT_MAX_LABEL_VALUES};

/// Default `--queue-capacity`: enough for the reader to stay busy while the fold
/// takes a batch (`app::FOLD_BATCH`), small enough to keep memory low.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Largest `--queue-capacity`: a queue slot holds a batch of messages, and a larger
/// queue only holds more memory (tokio refuses capacities beyond `usize::MAX >> 3`).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// Shortest `--backoff-min`: reconnecting faster only burns CPU against a Skaffold
/// that is not there.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Turns Skaffold's event stream into Prometheus metrics.
#[derive(Debug, Parser)]
#[command(
    name = "skaffold-exporter",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run (default: the exporter against a real Skaffold).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Exporter flags.
    #[command(flatten)]
    pub exporter: ExporterArgs,
    /// How the exporter's own log on stderr is written: `text` (coloured only on a
    /// terminal, never with NO_COLOR) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SKAFFOLD_EXPORTER_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: crate::logging::LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run against a real Skaffold (`skaffold dev --rpc-port 50051`); the default
    /// when no subcommand is given, with the same flags.
    Run(ExporterArgs),
    /// Start a simulated Skaffold that plays realistic dev sessions, and run the
    /// exporter against it.
    // The demo starts its own Skaffold: `--skaffold-addr` is ignored and
    // `--skaffold-http` refused, so `demo --help` does not list them (both are still
    // accepted, as before).
    #[command(
        mut_arg("skaffold_addr", |a| a.hide(true)),
        mut_arg("skaffold_http", |a| a.hide(true))
    )]
    Demo(DemoArgs),
    /// Fold Skaffold event log files (`--event-log-file`, `FILE.v2`) or HTTP-gateway
    /// captures and print the metrics and a per-iteration summary.
    // A replay's label cap and buckets come from its flags alone: a
    // SKAFFOLD_EXPORTER_* variable set for the live exporter does not change them.
    #[command(
        mut_arg("max_label_values", |a| a.env(None)),
        mut_arg("buckets", |a| a.env(None))
    )]
    Replay(ReplayArgs),
}

/// Flags of the exporter itself.
#[derive(Debug, Clone, Args)]
pub struct ExporterArgs {
    /// Skaffold's gRPC address (`skaffold dev --rpc-port PORT`; Skaffold binds 127.0.0.1).
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_SKAFFOLD_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub skaffold_addr: String,
    /// Which Skaffold event API to read: v1, v2 (Skaffold v1.26+; also releases
    /// `skaffold --wait-for-connection`) or auto (v2 when offered, else v1; decided
    /// once, never both).
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_API",
        value_enum,
        default_value = "auto"
    )]
    pub api: crate::source::Api,
    /// Read events from Skaffold's HTTP gateway instead of gRPC, e.g.
    /// `http://127.0.0.1:50052` (`skaffold dev --rpc-http-port 50052`); `/v1/state`
    /// is then fetched from it too. `--skaffold-addr` stays the gRPC passthrough's
    /// upstream.
    #[arg(long, env = "SKAFFOLD_EXPORTER_SKAFFOLD_HTTP")]
    pub skaffold_http: Option<String>,
    /// Address for the HTTP server (/metrics, /healthz, /readyz, /v1/state).
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub listen: SocketAddr,
    /// Address for the gRPC passthrough (proto.SkaffoldService/GetState); off unless given.
    #[arg(long, env = "SKAFFOLD_EXPORTER_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// Forward Skaffold's control RPCs (Execute, AutoBuild, AutoSync, AutoDeploy, Handle)
    /// through the gRPC passthrough. Off by default: they change what Skaffold does.
    #[arg(long, env = "SKAFFOLD_EXPORTER_ALLOW_CONTROL")]
    pub allow_control: bool,
    /// Label cap and histogram buckets.
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// How far the reader may run ahead of the fold, in messages. When the queue is
    /// full the reader waits (and HTTP/2 flow control holds Skaffold); nothing is
    /// dropped.
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_QUEUE_CAPACITY",
        default_value_t = DEFAULT_QUEUE_CAPACITY
    )]
    pub queue_capacity: usize,
    /// Deadline for calls to Skaffold (GetState), e.g. `2s`, `500ms`.
    #[arg(long, env = "SKAFFOLD_EXPORTER_UPSTREAM_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// First reconnect delay.
    #[arg(long, env = "SKAFFOLD_EXPORTER_BACKOFF_MIN", default_value = "250ms", value_parser = parse_duration)]
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    #[arg(long, env = "SKAFFOLD_EXPORTER_BACKOFF_MAX", default_value = "30s", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Push the metrics over OTLP too (same as `OTEL_METRICS_EXPORTER=otlp`); endpoint,
    /// protocol and headers come from the standard `OTEL_EXPORTER_OTLP_*` variables.
    /// Traces are on whenever an OTLP endpoint is configured.
    #[arg(long, env = "SKAFFOLD_EXPORTER_OTLP_METRICS")]
    pub otlp_metrics: bool,
    /// Pipeline and developer names on OTLP telemetry.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

impl ExporterArgs {
    /// The OTLP settings: these flags plus the standard `OTEL_*` environment variables.
    pub fn otlp_settings(&self) -> Result<OtlpSettings, OtlpConfigError> {
        self.identity
            .otlp_settings(|k| std::env::var(k).ok(), self.otlp_metrics)
    }
}

/// How OTLP telemetry names the pipeline and the developer: flags of the exporter and
/// of `replay` (both with their `SKAFFOLD_EXPORTER_*` variables), declared once.
#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArgs {
    /// Pipeline name on what is sent over OTLP (`cicd.pipeline.name`; root spans are
    /// `RUN <name>`). Default: the name of the working directory's git repository,
    /// else `skaffold`.
    #[arg(long, env = "SKAFFOLD_EXPORTER_PIPELINE_NAME")]
    pub pipeline_name: Option<String>,
    /// Identify the developer as `user.name=NAME` on what is sent over OTLP, instead
    /// of the default `user.hash` (a salted hash of the OS user name).
    #[arg(long, env = "SKAFFOLD_EXPORTER_USER_NAME")]
    pub user_name: Option<String>,
}

impl IdentityArgs {
    /// The OTLP settings: the standard `OTEL_*` variables read through `env`, these
    /// names (checked there, for every command: a blank one counts as not given) and
    /// `otlp_metrics` (`--otlp-metrics`).
    pub fn otlp_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
        otlp_metrics: bool,
    ) -> Result<OtlpSettings, OtlpConfigError> {
        OtlpSettings::from_env(
            env,
            otlp_metrics,
            self.pipeline_name.clone(),
            self.user_name.clone(),
        )
    }
}

/// How the metrics are shaped: the label cap and the histogram buckets. Flags of the
/// exporter (with their `SKAFFOLD_EXPORTER_*` variables) and of `replay` (without).
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Most distinct artifacts / images / resources per label; the rest become `other`.
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_MAX_LABEL_VALUES",
        default_value_t = DEFAULT_MAX_LABEL_VALUES
    )]
    pub max_label_values: usize,
    /// Histogram buckets in seconds, comma-separated and increasing.
    #[arg(
        long,
        env = "SKAFFOLD_EXPORTER_BUCKETS",
        value_delimiter = ',',
        default_value = DEFAULT_BUCKETS_ARG
    )]
    pub buckets: Option<Vec<f64>>,
}

impl MetricsArgs {
    /// The histogram buckets (the default when none are given), checked: positive,
    /// finite and strictly increasing.
    pub fn buckets(&self) -> Result<Vec<f64>, SettingsError> {
        let buckets = self
            .buckets
            .clone()
            .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
        if buckets.is_empty()
            || buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
            || buckets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(SettingsError::Buckets(buckets));
        }
        Ok(buckets)
    }

    /// The label cap, checked: at least 1.
    pub fn max_label_values(&self) -> Result<usize, SettingsError> {
        match self.max_label_values {
            0 => Err(SettingsError::MaxLabelValues),
            n => Ok(n),
        }
    }
}

/// Flags of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Exporter flags (`--skaffold-addr` is ignored: the demo starts its own Skaffold;
    /// `--skaffold-http` is refused: the demo's Skaffold has no HTTP gateway).
    #[command(flatten)]
    pub exporter: ExporterArgs,
    /// Where the simulated Skaffold listens (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub skaffold_listen: SocketAddr,
    /// Which session to play.
    #[arg(long, value_enum, default_value = "normal")]
    pub scenario: Flavor,
    /// Real seconds per simulated second, above 0 (0.2 plays five times faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Random seed of the session.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl DemoArgs {
    /// Where the demo's exporter reads events: `--api` as given, over gRPC from the
    /// simulated Skaffold (which serves API v1 and v2, and no HTTP gateway).
    pub fn source_settings(&self) -> Result<SourceSettings, SettingsError> {
        if let Some(url) = &self.exporter.skaffold_http {
            return Err(SettingsError::DemoGateway(url.clone()));
        }
        Ok(SourceSettings {
            api: self.exporter.api,
            skaffold_http: None,
        })
    }
}

/// Text format of the printed metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what `promtool check metrics` reads).
    Prometheus,
    /// OpenMetrics text 1.0.0 (ends with `# EOF`).
    Openmetrics,
}

/// What to print to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The summary table, then the metrics.
    Both,
    /// Only the metrics.
    Metrics,
    /// Only the summary table.
    Summary,
}

/// Flags of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Files to replay; `-` reads stdin. Skaffold's `--event-log-file` output (JSON
    /// Lines of v1 LogEntry; `FILE.v2` holds v2 Events), HTTP-gateway captures
    /// (`{"result": ...}` lines or arrays) and `{"records": [...]}` documents are
    /// detected automatically.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Text format of the printed metrics.
    #[arg(long, value_enum, default_value = "prometheus")]
    pub format: Format,
    /// What to print to stdout.
    #[arg(long, value_enum, default_value = "both")]
    pub output: Output,
    /// Keep reading the (single) input as it grows, like `tail -f`, until ctrl-c;
    /// then print.
    #[arg(long)]
    pub follow: bool,
    /// Keep serving /metrics on --listen after the replay (and while following),
    /// until ctrl-c.
    #[arg(long)]
    pub serve: bool,
    /// Address for /metrics with --serve.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Label cap and histogram buckets (their environment variables are the live
    /// exporter's only: see [`Command::Replay`]).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Export the spans (one trace per dev-loop iteration) over OTLP, as the live
    /// exporter does: endpoint, protocol, headers and timeouts from the standard
    /// `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT` is required). Spans still
    /// open at the end of the input end as when Skaffold disconnects. Metrics are not
    /// pushed (they are printed, or served with --serve).
    #[arg(long)]
    pub otlp: bool,
    /// Pipeline and developer names on the spans (`--otlp`).
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Parses `250ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 2s, 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses `--skaffold-http`: an `http://host:port` URL (Skaffold's gateway has no TLS).
pub fn parse_http_url(url: &str) -> Result<http::Uri, SettingsError> {
    let uri: http::Uri =
        url.trim_end_matches('/')
            .parse()
            .map_err(|e: http::uri::InvalidUri| SettingsError::GatewayUrl {
                url: url.to_owned(),
                error: e.to_string(),
            })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(SettingsError::GatewayScheme(url.to_owned()));
    }
    // Host and port as --skaffold-addr takes them (a port from 1 to 65535, no default:
    // Skaffold's gateway port is whatever --rpc-http-port says).
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let problem = if authority.contains('@') {
        Some("no user name or password")
    } else {
        host_port_problem(authority)
    };
    if let Some(why) = problem {
        return Err(SettingsError::GatewayHostPort {
            why,
            url: url.to_owned(),
        });
    }
    Ok(uri)
}

/// Checks `--skaffold-addr`: `host:port` (`127.0.0.1:50051`, `localhost:50051`,
/// `[::1]:50051`), no scheme, the port a number from 1 to 65535.
pub fn check_host_port(addr: &str) -> Result<(), SettingsError> {
    match host_port_problem(addr) {
        None => Ok(()),
        Some(why) => Err(SettingsError::SkaffoldAddr {
            why,
            addr: addr.to_owned(),
        }),
    }
}

/// What is wrong with `addr` as `host:port`, if anything.
fn host_port_problem(addr: &str) -> Option<&'static str> {
    if addr.contains("://") {
        return Some("no scheme: the exporter speaks gRPC to it");
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some("no port");
    };
    let host = match host.strip_prefix('[') {
        Some(h) => match h.strip_suffix(']') {
            Some(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => h,
            _ => return Some("bad IPv6 address"),
        },
        None => host,
    };
    if host.is_empty() {
        return Some("no host");
    }
    if addr.starts_with('[') {
        // An IPv6 address, checked above.
    } else if host.contains(':') {
        return Some("put an IPv6 address in brackets: [::1]:50051");
    } else if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Some("not a host name or IP address");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => None,
        _ => Some("the port must be a number from 1 to 65535"),
    }
}

/// Where the events come from (`--api`, `--skaffold-http`); kept apart from
/// [`Settings`] so code that builds `Settings` by hand keeps the default (gRPC at
/// `--skaffold-addr`, `--api auto`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSettings {
    /// Which event API.
    pub api: crate::source::Api,
    /// Skaffold's HTTP gateway: events and `/v1/state` come from it when set.
    pub skaffold_http: Option<http::Uri>,
}

impl TryFrom<&ExporterArgs> for SourceSettings {
    type Error = SettingsError;

    fn try_from(a: &ExporterArgs) -> Result<Self, SettingsError> {
        Ok(SourceSettings {
            api: a.api,
            skaffold_http: a.skaffold_http.as_deref().map(parse_http_url).transpose()?,
        })
    }
}

/// Validated exporter settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Skaffold's gRPC address.
    pub skaffold_addr: String,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// gRPC passthrough listen address.
    pub grpc_listen: Option<SocketAddr>,
    /// Forward control RPCs.
    pub allow_control: bool,
    /// Label cardinality cap.
    pub max_label_values: usize,
    /// Histogram buckets.
    pub buckets: Vec<f64>,
    /// How far the reader may run ahead of the fold (messages).
    pub queue_capacity: usize,
    /// Deadline for upstream calls.
    pub upstream_timeout: Duration,
    /// Reconnect backoff bounds.
    pub backoff: (Duration, Duration),
}

impl Default for Settings {
    /// The defaults of the command line (no flags, no environment), so code that
    /// builds settings (tests, benches, embedders) starts from the documented values.
    fn default() -> Self {
        let args = <Cli as clap::Parser>::try_parse_from(["skaffold-exporter"])
            .expect("the defaults parse")
            .exporter;
        Settings::try_from(args).expect("the defaults are valid")
    }
}

/// Why exporter flags (or their `SKAFFOLD_EXPORTER_*` variables) were refused; the
/// message names the flag and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// `--buckets` not positive, finite and strictly increasing.
    #[error("--buckets must be positive, finite and strictly increasing, got {0:?}")]
    Buckets(Vec<f64>),
    /// `--max-label-values 0`.
    #[error("--max-label-values must be at least 1")]
    MaxLabelValues,
    /// `--queue-capacity` out of range.
    #[error("--queue-capacity must be from 1 to {MAX_QUEUE_CAPACITY}, got {0}")]
    QueueCapacity(usize),
    /// `--backoff-min` below the floor or above `--backoff-max`.
    #[error(
        "--backoff-min ({min:?}) must be at least {MIN_BACKOFF:?} and not above --backoff-max ({max:?})"
    )]
    Backoff {
        /// `--backoff-min`.
        min: Duration,
        /// `--backoff-max`.
        max: Duration,
    },
    /// `--upstream-timeout 0`.
    #[error("--upstream-timeout must be positive, got 0")]
    UpstreamTimeout,
    /// `--skaffold-addr` is not `host:port`.
    #[error("--skaffold-addr must be host:port like 127.0.0.1:50051 ({why}), got {addr:?}")]
    SkaffoldAddr {
        /// What is wrong with it.
        why: &'static str,
        /// The value given.
        addr: String,
    },
    /// `--skaffold-http` does not parse as a URL.
    #[error("--skaffold-http must be a URL like http://127.0.0.1:50052, got {url:?}: {error}")]
    GatewayUrl {
        /// The value given.
        url: String,
        /// The URL parser's complaint.
        error: String,
    },
    /// `--skaffold-http` is not an `http://` URL with an authority.
    #[error(
        "--skaffold-http must be an http:// URL with host and port (Skaffold's gateway has no TLS), got {0:?}"
    )]
    GatewayScheme(String),
    /// `--skaffold-http`'s authority is not `host:port`.
    #[error(
        "--skaffold-http must be http://host:port like http://127.0.0.1:50052 ({why}), got {url:?}"
    )]
    GatewayHostPort {
        /// What is wrong with it.
        why: &'static str,
        /// The value given.
        url: String,
    },
    /// `demo --skaffold-http`: the demo's Skaffold has no gateway.
    #[error(
        "--skaffold-http ({0}) cannot be used with demo: the demo reads its simulated Skaffold over gRPC (unset it, and SKAFFOLD_EXPORTER_SKAFFOLD_HTTP)"
    )]
    DemoGateway(String),
}

impl TryFrom<ExporterArgs> for Settings {
    type Error = SettingsError;

    fn try_from(a: ExporterArgs) -> Result<Self, SettingsError> {
        let buckets = a.metrics.buckets()?;
        let max_label_values = a.metrics.max_label_values()?;
        if a.queue_capacity == 0 || a.queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(SettingsError::QueueCapacity(a.queue_capacity));
        }
        if a.backoff_min < MIN_BACKOFF || a.backoff_min > a.backoff_max {
            return Err(SettingsError::Backoff {
                min: a.backoff_min,
                max: a.backoff_max,
            });
        }
        if a.upstream_timeout.is_zero() {
            return Err(SettingsError::UpstreamTimeout);
        }
        check_host_port(&a.skaffold_addr)?;
        Ok(Settings {
            skaffold_addr: a.skaffold_addr,
            listen: a.listen,
            grpc_listen: a.grpc_listen,
            allow_control: a.allow_control,
            max_label_values,
            buckets,
            queue_capacity: a.queue_capacity,
            upstream_timeout: a.upstream_timeout,
            backoff: (a.backoff_min, a.backoff_max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        Settings::try_from(cli.exporter).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_secure_and_documented() {
        let s = settings(&["skaffold-exporter"]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(s.skaffold_addr, "127.0.0.1:50051");
        assert!(s.grpc_listen.is_none());
        assert!(!s.allow_control);
        assert_eq!(s.buckets, DEFAULT_BUCKETS.to_vec());
        assert_eq!(s.max_label_values, 200);
    }

    #[test]
    fn rejects_bad_flags_with_a_clear_message() {
        let e = settings(&["x", "--buckets", "1,0.5"]).unwrap_err();
        assert!(e.contains("strictly increasing"), "{e}");
        let e = settings(&["x", "--max-label-values", "0"]).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = settings(&["x", "--listen", "nowhere"]).unwrap_err();
        assert!(e.contains("--listen"), "{e}");
        let e = settings(&["x", "--upstream-timeout", "3 fortnights"]).unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        for (flag, value) in [
            ("--queue-capacity", "2305843009213693952"),
            ("--queue-capacity", "18446744073709551615"),
            ("--queue-capacity", "0"),
            ("--upstream-timeout", "0"),
            ("--upstream-timeout", "0ms"),
            ("--backoff-min", "0.000001ms"),
            ("--backoff-min", "0"),
        ] {
            let e = settings(&["x", flag, value]).unwrap_err();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
        assert!(settings(&["x", "--queue-capacity", "1048576"]).is_ok());
        assert!(settings(&["x", "--backoff-min", "10ms"]).is_ok());
    }

    #[test]
    fn the_exporter_and_replay_name_the_pipeline_and_developer_alike() {
        let identity = |args: &[&str]| -> IdentityArgs {
            match Cli::try_parse_from(args).unwrap() {
                Cli {
                    command: Some(Command::Replay(r)),
                    ..
                } => r.identity,
                Cli { exporter, .. } => exporter.identity,
            }
        };
        let names = ["--pipeline-name", "shop", "--user-name", "Alice A."];
        let exporter = identity(&[&["x"][..], &names].concat());
        let replay = identity(&[&["x", "replay", "f"][..], &names].concat());
        for (what, i) in [("exporter", exporter), ("replay", replay)] {
            let s = i.otlp_settings(|_| None, false).unwrap();
            assert_eq!(s.pipeline_name.as_deref(), Some("shop"), "{what}");
            assert_eq!(s.user_name.as_deref(), Some("Alice A."), "{what}");
        }
        // A blank name is no name, for both.
        let blank = ["--pipeline-name", " ", "--user-name", ""];
        for args in [
            [&["x"][..], &blank].concat(),
            [&["x", "replay", "f"][..], &blank].concat(),
        ] {
            let s = identity(&args).otlp_settings(|_| None, false).unwrap();
            assert_eq!((s.pipeline_name, s.user_name), (None, None), "{args:?}");
        }
        // One help text per flag, whichever command shows it.
        let cmd = <Cli as clap::CommandFactory>::command();
        let replay = cmd.find_subcommand("replay").unwrap();
        for id in ["pipeline_name", "user_name"] {
            let help = |c: &clap::Command| {
                let a = c.get_arguments().find(|a| a.get_id() == id).unwrap();
                (
                    a.get_long_help().or(a.get_help()).map(|h| h.to_string()),
                    a.get_env().map(|e| e.to_owned()),
                )
            };
            assert_eq!(help(&cmd), help(replay), "{id}");
            assert!(help(&cmd).0.is_some_and(|h| h.contains("OTLP")), "{id}");
        }
    }

    #[test]
    fn source_flags_pick_the_api_and_the_gateway() {
        let cli = Cli::try_parse_from([
            "x",
            "--api",
            "v2",
            "--skaffold-http",
            "http://127.0.0.1:50052/",
        ])
        .unwrap();
        let s = SourceSettings::try_from(&cli.exporter).unwrap();
        assert_eq!(s.api, crate::source::Api::V2);
        assert_eq!(
            s.skaffold_http.unwrap().to_string(),
            "http://127.0.0.1:50052/"
        );
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(
            SourceSettings::try_from(&cli.exporter).unwrap(),
            SourceSettings::default()
        );
        for bad in [
            "https://127.0.0.1:50052",
            "127.0.0.1:50052",
            "http://",
            "http://127.0.0.1:99999",
            "http://127.0.0.1",
            "http://localhost/",
            "http://127.0.0.1:0",
            "http://user:pw@127.0.0.1:50052",
        ] {
            let e = parse_http_url(bad).unwrap_err().to_string();
            assert!(e.contains("--skaffold-http"), "{bad}: {e}");
        }
        assert!(Cli::try_parse_from(["x", "--api", "v3"]).is_err());
    }

    #[test]
    fn skaffold_addr_must_be_host_and_port() {
        for good in [
            "127.0.0.1:50051",
            "localhost:50051",
            "skaffold.dev-ns.svc:1",
            "[::1]:50051",
            "host_name:65535",
        ] {
            assert!(settings(&["x", "--skaffold-addr", good]).is_ok(), "{good}");
        }
        for bad in [
            "http://x:1",
            "grpc://127.0.0.1:50051",
            "127.0.0.1",
            "127.0.0.1:",
            ":50051",
            "127.0.0.1:65536",
            "127.0.0.1:0",
            "127.0.0.1:port",
            "::1:50051",
            "[::1:50051",
            "[nothost]:50051",
            "a b:50051",
            "host/path:1",
        ] {
            let e = settings(&["x", "--skaffold-addr", bad]).unwrap_err();
            assert!(
                e.contains("--skaffold-addr") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let e = settings(&["x", "--skaffold-addr", "http://x:1"]).unwrap_err();
        assert!(e.contains("no scheme"), "{e}");
    }

    #[test]
    fn demo_honours_api_and_refuses_the_gateway() {
        let demo = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Some(Command::Demo(d)) => d,
            other => panic!("{other:?}"),
        };
        let d = demo(&["x", "demo", "--api", "v1"]);
        assert_eq!(d.source_settings().unwrap().api, crate::source::Api::V1);
        let d = demo(&["x", "demo"]);
        assert_eq!(d.source_settings().unwrap(), SourceSettings::default());
        let d = demo(&["x", "demo", "--skaffold-http", "http://127.0.0.1:50052"]);
        let e = d.source_settings().unwrap_err().to_string();
        assert!(e.contains("--skaffold-http") && e.contains("demo"), "{e}");
    }

    #[test]
    fn the_buckets_default_shown_is_the_default_used() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.exporter.metrics.buckets, Some(DEFAULT_BUCKETS.to_vec()));
    }

    #[test]
    fn demo_still_accepts_the_flags_its_help_hides() {
        let cli = Cli::try_parse_from(["x", "demo", "--skaffold-addr", "127.0.0.1:1"]).unwrap();
        let Some(Command::Demo(d)) = cli.command else {
            panic!("not demo")
        };
        assert_eq!(d.exporter.skaffold_addr, "127.0.0.1:1");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1s").is_err());
    }
}
