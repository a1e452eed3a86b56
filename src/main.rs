//! The `skaffold-exporter` binary: parses flags, starts the exporter (or the demo),
//! runs until ctrl-c / SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use skaffold_exporter::app;
use skaffold_exporter::config::{Cli, Command, Settings, SourceSettings};
use skaffold_exporter::simulator::{Simulator, scenario};

#[tokio::main]
async fn main() -> ExitCode {
    skaffold_exporter::replay::guard_stdio();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,hyper=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.exporter).await,
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Demo(args)) => demo(args).await,
        Some(Command::Replay(args)) => return replay(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skaffold-exporter: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: skaffold_exporter::config::ExporterArgs) -> anyhow::Result<()> {
    let source = SourceSettings::try_from(&args).map_err(anyhow::Error::msg)?;
    let otlp = args.otlp_settings().map_err(anyhow::Error::msg)?;
    let settings = Settings::try_from(args).map_err(anyhow::Error::msg)?;
    let running = app::start_all(settings, source, otlp).await?;
    app::shutdown_signal().await;
    tracing::info!("Shutting down.");
    running.shutdown().await;
    Ok(())
}

async fn replay(args: skaffold_exporter::replay::ReplayArgs) -> ExitCode {
    // `replay --otlp` builds its span sink itself, from the OTEL_* variables.
    match skaffold_exporter::replay::run(args, |_| {}).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skaffold-exporter: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn demo(args: skaffold_exporter::config::DemoArgs) -> anyhow::Result<()> {
    let source = args.source_settings().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(args.skaffold_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--skaffold-listen)",
                args.skaffold_listen
            )
        })?;
    let skaffold_addr = listener.local_addr()?;
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        anyhow::bail!("--time-scale must be a non-negative number");
    }
    let sim = Simulator::new();
    // Like Skaffold v1.22+: API v1 and v2 side by side on one port.
    sim.enable_v2();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(sim.clone().serve(listener, stop_rx));
    let player = tokio::spawn(scenario::run_demo(
        sim,
        args.scenario,
        args.time_scale,
        args.seed,
    ));
    let mut exporter = args.exporter;
    exporter.skaffold_addr = skaffold_addr.to_string();
    let otlp = exporter.otlp_settings().map_err(anyhow::Error::msg)?;
    let settings = Settings::try_from(exporter).map_err(anyhow::Error::msg)?;
    let running = app::start_all(settings, source, otlp).await?;
    eprintln!(
        "demo: simulated Skaffold on {skaffold_addr}; metrics on http://{}/metrics (ctrl-c to stop)",
        running.http_addr
    );
    app::shutdown_signal().await;
    player.abort();
    running.shutdown().await;
    let _ = stop.send(true);
    let _ = server.await;
    Ok(())
}
