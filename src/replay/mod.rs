//! `skaffold-exporter replay FILE...`: folds Skaffold's event log files
//! (`--event-log-file`, its `.v2` sibling) and HTTP-gateway captures through the same
//! pipeline as a live stream, then prints the metrics (Prometheus or OpenMetrics
//! text) and a per-iteration summary table. This is how a team backfills history,
//! and how a bug report's stream is turned into numbers.
//!
//! Inputs are read line by line (JSON Lines) or as one document (a JSON array, or
//! the captured fixtures' `{"records": [...]}`), detected from their first line;
//! `-` is stdin. A malformed line, or one that parses but is rejected (unknown status,
//! missing field...), is reported as `file:line: ...` on stderr and counted; the rest
//! is still folded, and the exit code says some lines were bad (1). An input that
//! cannot be read (at all, or from some line on) fails the command (2), after what was
//! folded has been printed. The end of the inputs is the end of Skaffold's stream, as
//! when a live Skaffold disconnects.
//!
//! With `--otlp`, the spans are exported as the live exporter exports them (same
//! `OTEL_*` settings, same trees and ids for the same session).
//!
//! Each input is a Skaffold session of its own: after the first, the stream ends (as
//! at a disconnect) and the next input's first event starts a new run, so captures of
//! unrelated sessions never merge. Skaffold writes every event to both the v1 file
//! and its `.v2` sibling; when both `FILE` and `FILE.v2` are given, only `FILE.v2` is
//! folded, so nothing counts twice.
//!
//! This module wires the command together; the parts live where their kind lives:
//! the flags with the other CLI settings ([`crate::config::ReplayArgs`]), the inputs
//! with the other sources ([`crate::source::file::input`]), the fold and its counts
//! in [`Replayer`], the table in [`summary`], the way out in [`stdout`], the progress
//! bar the reader's progress is drawn with in `progress`.

mod progress;
mod replayer;
pub mod stdout;
pub mod summary;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

pub use crate::config::{Format, IdentityArgs, Output, ReplayArgs};
use crate::pipeline::{Pipeline, Progress};
use crate::sink::contract::Own;
use crate::sink::otlp_setup::{OtlpConfigError, OtlpSettings};
use crate::source::file::input::Records as _;
pub use crate::source::file::input::{Input, open_inputs, select_inputs};
use progress::ProgressBar;
pub use replayer::{MAX_DIAGNOSTICS, Replayer};
use stdout::write_stdout;

/// Spans queued for export by `replay --otlp`: a replay folds far faster than
/// Skaffold sends events, so it gets more room than the live exporter's queue.
pub const REPLAY_SPAN_QUEUE: usize = 16_384;

/// Why `replay --otlp` cannot export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayOtlpError {
    /// An `OTEL_*` variable the exporter cannot honour.
    #[error(transparent)]
    Config(#[from] OtlpConfigError),
    /// No traces endpoint, or tracing turned off: spans are what `--otlp` asks for.
    #[error(
        "replay --otlp exports spans, but no OTLP traces endpoint is configured: set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and neither OTEL_TRACES_EXPORTER=none nor OTEL_SDK_DISABLED=true)"
    )]
    NoTracesEndpoint,
}

/// The OTLP settings of `replay --otlp`: the live exporter's, from the `OTEL_*`
/// variables read through `env`, spans only. An error when no traces endpoint is
/// configured (or tracing is turned off), since spans are what `--otlp` asks for.
pub fn otlp_settings(
    env: impl Fn(&str) -> Option<String>,
    identity: &IdentityArgs,
) -> Result<OtlpSettings, ReplayOtlpError> {
    let mut s = identity.otlp_settings(env, false)?;
    if s.traces.is_none() {
        return Err(ReplayOtlpError::NoTracesEndpoint);
    }
    s.metrics = None;
    // A log file is history by definition: export every iteration of it.
    s.skip_history = false;
    s.span_queue = s.span_queue.max(REPLAY_SPAN_QUEUE);
    Ok(s)
}

/// Runs `replay`: folds the inputs, prints, optionally serves. `setup` may add
/// observers to the pipeline first.
pub async fn run(
    args: ReplayArgs,
    setup: impl FnOnce(&mut Pipeline) + Send + 'static,
) -> anyhow::Result<ExitCode> {
    let buckets = args.metrics.buckets()?;
    let max_label_values = args.metrics.max_label_values()?;
    if args.follow && args.files.len() != 1 {
        anyhow::bail!("--follow reads one input; got {}", args.files.len());
    }
    let mut replayer = if args.otlp {
        let otlp = otlp_settings(|k| std::env::var(k).ok(), &args.identity)?;
        Replayer::with_otlp(&buckets, max_label_values, &otlp)?
    } else {
        Replayer::new(&buckets, max_label_values)
    };
    setup(replayer.pipeline_mut());
    let inputs = open_inputs(&args.files, &mut replayer);

    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    if args.serve {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        let addr = listener.local_addr()?;
        let progress = Arc::new(Progress::default());
        progress.connected.store(true, Ordering::Release);
        replayer.set_progress(progress.clone());
        let shared = Arc::new(crate::server::http::Shared {
            registry: replayer.registry(),
            progress,
            upstream: None,
            wait_for_history: false,
        });
        server = Some(tokio::spawn(crate::server::http::serve(
            listener,
            shared,
            shutdown_rx,
        )));
        eprintln!("replay: serving http://{addr}/metrics");
    }

    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::signal::shutdown_signal().await;
            stop.store(true, Ordering::Release);
        });
    }
    // A followed input has no end to show progress towards.
    let bar = std::io::stderr().is_terminal() && !args.follow;
    let follow = args.follow;
    let stop2 = stop.clone();
    let mut replayer = tokio::task::spawn_blocking(move || {
        let mut replayer = replayer;
        for input in inputs {
            let mut progress = ProgressBar::new(bar);
            if let Err(e) = input.feed(&mut replayer, follow, &stop2, &mut progress) {
                replayer.unreadable(format!("{e:#}"));
            }
        }
        replayer
    })
    .await?;
    // What was read is folded (and printed) even when an input failed midway.
    replayer.finish().await;
    replayer.caught_up();

    for d in replayer.diagnostics() {
        eprintln!("{d}");
    }
    if replayer.diagnostics_omitted() > 0 {
        eprintln!(
            "replay: {} more notes not shown",
            replayer.diagnostics_omitted()
        );
    }
    eprintln!(
        "replay: {} records, {} events folded, {} not folded (see the notes), {} malformed, {} rejected",
        replayer.records(),
        replayer.folded(),
        replayer.skipped(),
        replayer.malformed(),
        replayer.rejected()
    );
    let text = replayer.metrics_text(Format::Prometheus);
    let spans_lost = if args.otlp {
        // The contract's names, as this text shows them.
        let get = |own: Own, labels: &str| {
            sample(&text, &format!("{}{labels}", own.spec().exposed_name())).unwrap_or(0.0)
        };
        let dropped = get(Own::SpansDropped, "");
        let failed = get(Own::OtlpExportErrors, "{signal=\"traces\"}");
        eprintln!(
            "replay: {} spans exported over OTLP",
            get(Own::SpansExported, "")
        );
        if dropped > 0.0 || failed > 0.0 {
            eprintln!(
                "replay: {dropped} spans dropped (OTLP export queue full), {failed} OTLP export requests failed"
            );
        }
        dropped > 0.0 || failed > 0.0
    } else {
        false
    };
    write_stdout(replayer.report(args.format, args.output).as_bytes())?;
    if replayer.unreadable_count() > 0 {
        eprintln!(
            "replay: {} input(s) could not be read (whole or in part); what was read is folded above",
            replayer.unreadable_count()
        );
        return Ok(ExitCode::from(2));
    }

    if let Some(server) = server {
        if !stop.load(Ordering::Acquire) {
            eprintln!("replay: still serving /metrics (ctrl-c to stop)");
            crate::signal::shutdown_signal().await;
        }
        let _ = shutdown.send(true);
        let _ = server.await;
    }
    Ok(
        if replayer.malformed() > 0 || replayer.rejected() > 0 || spans_lost {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The value of the sample `series` (name and labels exactly as printed) in
/// Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn otlp(vars: &[(&str, &str)]) -> Result<OtlpSettings, ReplayOtlpError> {
        let m: HashMap<&str, &str> = vars.iter().copied().collect();
        let identity = IdentityArgs {
            pipeline_name: Some("shop".into()),
            user_name: None,
        };
        otlp_settings(|k| m.get(k).map(|v| (*v).to_owned()), &identity)
    }

    #[test]
    fn otlp_is_the_live_exporters_spans_only() {
        let s = otlp(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ])
        .unwrap();
        assert_eq!(s.traces.unwrap().url, "http://c:4317");
        assert!(s.metrics.is_none(), "replay pushes no metrics");
        assert_eq!(s.pipeline_name.as_deref(), Some("shop"));
        assert!(s.span_queue >= REPLAY_SPAN_QUEUE);
        for off in [
            &[][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
        ] {
            let e = otlp(off).unwrap_err();
            assert_eq!(e, ReplayOtlpError::NoTracesEndpoint, "{off:?}");
            assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        }
        assert_eq!(
            otlp(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]).unwrap_err(),
            ReplayOtlpError::Config(OtlpConfigError::Protocol("carrier-pigeon".into()))
        );
    }
}
