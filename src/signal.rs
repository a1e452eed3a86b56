//! Process signals, at the edge: what ends the exporter and `replay --serve`, and the
//! second signal that ends a shutdown at once.

/// The signal that asked for shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// ctrl-c (SIGINT).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// Its name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The exit code when it ends the process at once: 128 + the signal number, as a
    /// shell reports a process killed by it.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// Resolves on ctrl-c or SIGTERM, saying which.
pub async fn shutdown_signal() -> Signal {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => Signal::Interrupt,
        _ = term => Signal::Terminate,
    }
}

/// From now on, ctrl-c or SIGTERM ends the process at once (exit code 130 or 143):
/// call it when shutdown starts, so that a second signal is never ignored. The
/// listeners are in place when it returns.
pub fn exit_on_second_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::spawn(async move {
            let s = tokio::select! {
                _ = int.recv() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
            exit_now(s);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        exit_now(Signal::Interrupt);
    });
}

fn exit_now(s: Signal) -> ! {
    eprintln!(
        "skaffold-exporter: {} during shutdown; exiting now",
        s.name()
    );
    std::process::exit(s.exit_code())
}
