//! The `skaffold-exporter` binary: parses flags, starts the exporter (or the demo),
//! runs until ctrl-c / SIGTERM. Shutdown is bounded (`app::SHUTDOWN_BUDGET`); a
//! second ctrl-c / SIGTERM during it exits at once (130 / 143).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use skaffold_exporter::app;
use skaffold_exporter::config::{Cli, Command, Settings, SourceSettings};
use skaffold_exporter::simulator::{Simulator, scenario};

fn main() -> ExitCode {
    skaffold_exporter::replay::stdout::guard_stdio();
    let cli = Cli::parse();
    skaffold_exporter::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skaffold-exporter: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
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
    });
    // Work given up at the shutdown deadline (an export to a collector that never
    // answers, on a blocking thread) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn run(args: skaffold_exporter::config::ExporterArgs) -> anyhow::Result<()> {
    let source = SourceSettings::try_from(&args)?;
    let otlp = args.otlp_settings()?;
    let settings = Settings::try_from(args)?;
    let running = app::start_all(settings, source, otlp).await?;
    let signal = app::shutdown_signal().await;
    app::exit_on_second_signal();
    tracing::info!(
        signal = signal.name(),
        "Shutting down (a second signal ends the process at once)."
    );
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
    check_time_scale(args.time_scale)?;
    let source = args.source_settings()?;
    let listener = tokio::net::TcpListener::bind(args.skaffold_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--skaffold-listen)",
                args.skaffold_listen
            )
        })?;
    let skaffold_addr = listener.local_addr()?;
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
        scenario::DEMO_LOG_LIMIT,
    ));
    let mut exporter = args.exporter;
    exporter.skaffold_addr = skaffold_addr.to_string();
    let otlp = exporter.otlp_settings()?;
    let settings = Settings::try_from(exporter)?;
    let running = app::start_all(settings, source, otlp).await?;
    eprintln!(
        "demo: simulated Skaffold on {skaffold_addr}; metrics on http://{}/metrics (ctrl-c to stop)",
        running.http_addr
    );
    app::shutdown_signal().await;
    app::exit_on_second_signal();
    player.abort();
    running.shutdown().await;
    // The simulated Skaffold exits as Skaffold does: its streams end (also those of
    // other subscribers of --skaffold-listen) and its connections get
    // `SHUTDOWN_GRACE` to close.
    let _ = stop.send(true);
    let _ = server.await;
    Ok(())
}

/// `--time-scale` must be a positive, finite number: at 0 the simulated Skaffold
/// would emit as fast as the CPU allows, forever.
fn check_time_scale(scale: f64) -> anyhow::Result<()> {
    if scale.is_finite() && scale > 0.0 {
        return Ok(());
    }
    anyhow::bail!(
        "--time-scale must be a positive number of real seconds per simulated second (1 = real time, 0.2 = five times faster), got {scale}"
    )
}
