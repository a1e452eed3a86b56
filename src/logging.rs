//! The exporter's own log on stderr: human-readable text (coloured only on a terminal,
//! never with `NO_COLOR`) or one JSON object per line (`--log-format json`, for CI
//! and Kubernetes log collectors). `RUST_LOG` sets this crate's level; dependencies
//! stay at `warn` unless `RUST_LOG` names them (`RUST_LOG=debug,h2=debug`), so
//! `RUST_LOG=debug` is not flooded with HTTP/2 frame dumps.

use std::io::IsTerminal as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// This crate's target in `RUST_LOG` directives.
const OURS: &str = "skaffold_exporter";

/// The filter for `RUST_LOG` (`None` or empty: `info` for this crate). A bare level
/// applies to this crate; dependencies get `warn` (or the bare level when it is
/// quieter); directives that name a target are kept as given.
pub fn filter_directives(rust_log: Option<&str>) -> String {
    let mut ours = "info".to_owned();
    let mut others = "warn".to_owned();
    let mut named = Vec::new();
    for d in rust_log.unwrap_or_default().split(',').map(str::trim) {
        if d.is_empty() {
            continue;
        }
        match d.parse::<tracing_subscriber::filter::LevelFilter>() {
            Ok(level) => {
                ours = d.to_owned();
                let warn = tracing_subscriber::filter::LevelFilter::WARN;
                others = if level < warn {
                    d.to_owned()
                } else {
                    "warn".to_owned()
                };
            }
            Err(_) => named.push(d),
        }
    }
    let mut out = format!("{others},{OURS}={ours}");
    for d in named {
        out.push(',');
        out.push_str(d);
    }
    out
}

/// Whether to colour: only on a terminal, and not when `NO_COLOR` is set to anything
/// but the empty string (<https://no-color.org>).
pub fn use_color(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = filter_directives(rust_log.as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("skaffold-exporter: ignoring RUST_LOG ({e}); logging at info");
        tracing_subscriber::EnvFilter::new(filter_directives(None))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(use_color(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).flatten_event(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_ours_and_dependencies_stay_at_warn_unless_named() {
        assert_eq!(filter_directives(None), "warn,skaffold_exporter=info");
        assert_eq!(filter_directives(Some("")), "warn,skaffold_exporter=info");
        assert_eq!(
            filter_directives(Some("debug")),
            "warn,skaffold_exporter=debug"
        );
        assert_eq!(
            filter_directives(Some("trace,h2=debug")),
            "warn,skaffold_exporter=trace,h2=debug"
        );
        // Quieter than warn applies to everything.
        assert_eq!(
            filter_directives(Some("error")),
            "error,skaffold_exporter=error"
        );
        assert_eq!(filter_directives(Some("off")), "off,skaffold_exporter=off");
        // Targets named by the user are theirs, ours included.
        assert_eq!(
            filter_directives(Some("skaffold_exporter::source=trace")),
            "warn,skaffold_exporter=info,skaffold_exporter::source=trace"
        );
        for d in ["debug", "trace,h2=debug", "hyper=info"] {
            tracing_subscriber::EnvFilter::try_new(filter_directives(Some(d))).unwrap();
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(!use_color(false, None));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(use_color(true, Some(OsStr::new(""))));
    }
}
