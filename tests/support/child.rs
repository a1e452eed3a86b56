//! The real `skaffold-exporter` binary as a child process: its stderr collected line
//! by line, signals, and a black-hole TCP peer (accepts, never answers).

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running exporter binary.
pub struct Exporter {
    /// The process.
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    /// Starts the binary with `args`; `configure` sets its environment. `RUST_LOG` is
    /// removed unless `configure` sets it.
    pub fn start(args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skaffold-exporter"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env("USER", "child-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("the exporter binary runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The binary reading Skaffold at `skaffold` and exporting over OTLP/HTTP to
    /// `collector`: spans, and metrics (`--otlp-metrics`) every `interval_ms`.
    /// Returns once it has subscribed.
    pub async fn otlp_http(skaffold: SocketAddr, collector: SocketAddr, interval_ms: u32) -> Self {
        let exp = Self::start(
            &[
                "--skaffold-addr",
                &skaffold.to_string(),
                "--listen",
                "127.0.0.1:0",
                "--otlp-metrics",
            ],
            |c| {
                c.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
                    .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                    .env("OTEL_METRIC_EXPORT_INTERVAL", interval_ms.to_string());
            },
        );
        exp.wait_for_log("Subscribed to Skaffold").await;
        exp
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Its stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text` (at most 20 s).
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `/metrics` address it logged (`serving /metrics on http://ADDR`).
    pub async fn http_addr(&self) -> SocketAddr {
        self.wait_for_log("/metrics on http://").await;
        let log = self.log();
        let at = log.find("/metrics on http://").unwrap() + "/metrics on http://".len();
        let rest = &log[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        rest[..end]
            .trim_end_matches('.')
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {rest}"))
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .expect("signal the exporter");
    }

    /// Waits for the exit; panics when it takes 10 s more than `limit`. Returns how long
    /// it took and the status.
    pub async fn exit_within(&mut self, limit: Duration) -> (Duration, ExitStatus) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (start.elapsed(), status);
            }
            if start.elapsed() > limit + Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("still running {:?} later:\n{}", start.elapsed(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accepts TCP connections and holds them without reading or answering; counts them.
pub async fn black_hole() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, accepted)
}
